//! The catalog module: products with their sku, name, description, price and status.
//!
//! Admins create, revise and discontinue products; anyone reads them. Every change publishes
//! `ProductCreated`, `ProductUpdated` or `ProductDiscontinued` (see `catalog_contracts`) through
//! the module's outbox. It consumes nothing. This crate is the template the other modules follow.

mod domain;
mod http;
mod persistence;
mod service;

use std::sync::Arc;

use actix_web::web;
use async_trait::async_trait;
use catalog_contracts::{ProductCreated, ProductDiscontinued, ProductUpdated};
use contracts::{EventType, IntegrationEvent};
use kernel::caching::Freshness;
use kernel::settings::{Checks, Section, SectionSpec, SettingsError};
use kernel::{Hosted, Module, ModuleContext, Routes};
use migrations::MigratorTrait;
use sea_orm::{DatabaseConnection, DbErr};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

pub use service::Catalog;

#[derive(OpenApi)]
#[openapi(
    paths(http::list_products, http::get_product, http::create_product, http::update_product, http::discontinue_product),
    tags((name = "catalog", description = "Products and their prices"))
)]
struct CatalogApi;

/// The module's name: its settings section, its tables' prefix, its queue.
pub const NAME: &str = "catalog";

/// The module's `[catalog]` section.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct CatalogSection {
    /// How long browsers and shared caches may keep a product or a list page without asking
    /// again (`Cache-Control: public, max-age=N`). 0, the default: kept but revalidated with the
    /// `ETag` every time (`no-cache`), so never stale; a 304 costs no body.
    http_max_age_secs: u64,
}

impl Section for CatalogSection {
    const KEY: &'static str = NAME;

    fn check(&self, _checks: Checks) -> Result<(), SettingsError> {
        match self.http_max_age_secs {
            0..=86_400 => Ok(()),
            n => {
                Err(SettingsError::new("catalog.http_max_age_secs", format!("must be at most 86400 (a day), not {n}")))
            }
        }
    }
}

pub struct CatalogModule;

#[async_trait]
impl Module for CatalogModule {
    fn name(&self) -> &'static str {
        NAME
    }

    fn path_prefixes(&self) -> &'static [&'static str] {
        &["/products"]
    }

    fn settings(&self) -> Vec<SectionSpec> {
        vec![SectionSpec::of::<CatalogSection>()]
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        CatalogApi::openapi()
    }

    fn publishes(&self) -> Vec<EventType> {
        vec![ProductCreated::event_type(), ProductUpdated::event_type(), ProductDiscontinued::event_type()]
    }

    async fn migrate(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        migrations::Migrator::up(db, None).await
    }

    async fn start(&self, ctx: ModuleContext) -> anyhow::Result<Box<dyn Hosted>> {
        let freshness = Freshness { max_age_secs: ctx.section::<CatalogSection>().http_max_age_secs };
        Ok(Box::new(HostedCatalog {
            catalog: web::Data::new(Catalog::new(ctx.db, ctx.outbox)),
            caching: web::Data::new(http::HttpCaching(freshness)),
        }))
    }
}

struct HostedCatalog {
    catalog: web::Data<Catalog>,
    caching: web::Data<http::HttpCaching>,
}

impl Hosted for HostedCatalog {
    fn routes(&self) -> Routes {
        let (catalog, caching) = (self.catalog.clone(), self.caching.clone());
        Arc::new(move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(catalog.clone())
                .app_data(caching.clone())
                .service(http::list_products)
                .service(http::get_product)
                .service(http::create_product)
                .service(http::update_product)
                .service(http::discontinue_product);
        })
    }
}
