//! The basket module: a customer's basket (and a guest's, behind a token), priced from the
//! module's own copy of the catalog, and its checkout.
//!
//! A basket's lines are rows; every change raises the basket's version (its `ETag`) with a
//! conditional update, so edits from two tabs both land (`service.rs`). A guest opens a basket
//! with `POST /basket` and carries the `Basket-Token` it gets; signed in, the guest basket merges
//! into the customer's (`POST /basket/merge`). `POST /basket/checkout` publishes
//! `BasketCheckedOut` (`basket_contracts`) with a new order id, empties the basket and answers 202:
//! orders makes the order of it. Prices come from the copy kept from the catalog's `Product*`
//! events, never from the catalog itself. `[basket]` sets the limits and how long an untouched
//! basket lives (`basket.ttl_days`): abandoned baskets are purged by housekeeping.

mod domain;
mod events;
mod http;
mod persistence;
mod service;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use async_trait::async_trait;
use basket_contracts::BasketCheckedOut;
use chrono::{DateTime, Utc};
use contracts::{EventType, IntegrationEvent};
use kernel::housekeeping::Purge;
use kernel::settings::{Checks, Section, SectionSpec, SettingsError};
use kernel::{EventHandler, Hosted, Module, ModuleContext, Routes};
use migrations::MigratorTrait;
use sea_orm::{DatabaseConnection, DbErr};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

use crate::domain::BasketLimits;
use crate::service::Baskets;

/// The module's name: its settings section, its tables' prefix, its queue.
pub const NAME: &str = "basket";

/// The module's `[basket]` section: what one basket may hold (422 beyond), and how long a basket
/// nobody changes is kept.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
struct BasketSection {
    /// Products in one basket.
    max_lines: u32,
    /// Units of one product in one basket (at most 1000).
    max_quantity: u32,
    /// Days a basket lives without a change; then it is abandoned: a guest's token opens nothing,
    /// and housekeeping deletes it.
    ttl_days: u32,
}

impl Default for BasketSection {
    fn default() -> Self {
        Self { max_lines: 50, max_quantity: 99, ttl_days: 30 }
    }
}

impl BasketSection {
    fn limits(&self) -> Result<BasketLimits, SettingsError> {
        BasketLimits::new(self.max_lines, self.max_quantity).map_err(|(key, message)| SettingsError::new(key, message))
    }

    fn ttl(&self) -> Result<Duration, SettingsError> {
        match self.ttl_days {
            1..=3650 => Ok(Duration::from_secs(u64::from(self.ttl_days) * 86_400)),
            n => Err(SettingsError::new("basket.ttl_days", format!("must be 1 to 3650, not {n}"))),
        }
    }
}

impl Section for BasketSection {
    const KEY: &'static str = NAME;

    fn check(&self, _checks: Checks) -> Result<(), SettingsError> {
        self.limits()?;
        self.ttl().map(drop)
    }
}

#[derive(OpenApi)]
#[openapi(
    paths(
        http::open_basket,
        http::get_basket,
        http::clear_basket,
        http::set_quantity,
        http::remove_item,
        http::merge_basket,
        http::checkout
    ),
    tags((name = "basket", description = "The customer's (or a guest's) basket, and its checkout"))
)]
struct BasketApi;

pub struct BasketModule;

#[async_trait]
impl Module for BasketModule {
    fn name(&self) -> &'static str {
        NAME
    }

    fn path_prefixes(&self) -> &'static [&'static str] {
        &["/basket"]
    }

    fn settings(&self) -> Vec<SectionSpec> {
        vec![SectionSpec::of::<BasketSection>()]
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        BasketApi::openapi()
    }

    fn publishes(&self) -> Vec<EventType> {
        vec![BasketCheckedOut::event_type()]
    }

    fn consumes(&self) -> Vec<EventType> {
        events::routes().events()
    }

    async fn migrate(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        migrations::Migrator::up(db, None).await
    }

    async fn start(&self, ctx: ModuleContext) -> anyhow::Result<Box<dyn Hosted>> {
        let section = ctx.section::<BasketSection>();
        let (limits, ttl) = (section.limits()?, section.ttl()?);
        let baskets = web::Data::new(Baskets::new(ctx.db, ctx.outbox, limits, ttl));
        Ok(Box::new(HostedBasket { baskets }))
    }
}

struct HostedBasket {
    baskets: web::Data<Baskets>,
}

impl Hosted for HostedBasket {
    fn routes(&self) -> Routes {
        let baskets = self.baskets.clone();
        Arc::new(move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(baskets.clone())
                .service(http::open_basket)
                .service(http::get_basket)
                .service(http::clear_basket)
                .service(http::set_quantity)
                .service(http::remove_item)
                .service(http::merge_basket)
                .service(http::checkout);
        })
    }

    fn handler(&self) -> Option<Arc<dyn EventHandler>> {
        Some(events::routes().bind(events::BasketEvents(self.baskets.clone())))
    }

    fn purges(&self) -> Vec<Arc<dyn Purge>> {
        vec![Arc::new(AbandonedBaskets(self.baskets.clone())), Arc::new(OldIdempotencyKeys(self.baskets.clone()))]
    }
}

/// A basket nobody changed for `basket.ttl_days` goes, with its lines.
struct AbandonedBaskets(web::Data<Baskets>);

#[async_trait]
impl Purge for AbandonedBaskets {
    fn what(&self) -> &'static str {
        "baskets abandoned past basket.ttl_days"
    }

    async fn purge(&self, now: DateTime<Utc>, _cutoff: DateTime<Utc>) -> anyhow::Result<u64> {
        self.0.purge_abandoned(now).await
    }
}

/// A checkout's `Idempotency-Key` is remembered for `housekeeping.retention_hours`, as orders'.
struct OldIdempotencyKeys(web::Data<Baskets>);

#[async_trait]
impl Purge for OldIdempotencyKeys {
    fn what(&self) -> &'static str {
        "checkout idempotency keys past the retention"
    }

    async fn purge(&self, _now: DateTime<Utc>, cutoff: DateTime<Utc>) -> anyhow::Result<u64> {
        self.0.forget_idempotency_keys_before(cutoff).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEVELOPMENT: Checks = Checks { production: false };

    #[test]
    fn the_section_has_its_defaults_and_refuses_what_cannot_work() {
        let section = BasketSection::default();
        assert!(section.check(DEVELOPMENT).is_ok());
        assert_eq!((section.max_lines, section.max_quantity, section.ttl_days), (50, 99, 30));
        for (broken, key) in [
            (BasketSection { max_lines: 0, ..Default::default() }, "basket.max_lines"),
            (BasketSection { max_quantity: 1001, ..Default::default() }, "basket.max_quantity"),
            (BasketSection { ttl_days: 0, ..Default::default() }, "basket.ttl_days"),
        ] {
            assert_eq!(broken.check(DEVELOPMENT).expect_err("refused").key, key);
        }
    }
}
