//! The payments module. Scaffolded with one of everything — a route, an event it publishes, one it
//! consumes, a settings section, a table — to be replaced by the context's own:
//! `POST /payments/notes` adds a note and publishes `NoteAdded` (see `payments_contracts`); a
//! user's registration (`UserRegistered`) adds one too. `modules/README.md` describes the rooms.

mod domain;
mod events;
mod http;
mod persistence;
mod service;

use std::sync::Arc;

use actix_web::web;
use async_trait::async_trait;
use contracts::{EventType, IntegrationEvent};
use kernel::settings::{Checks, Section, SectionSpec, SettingsError};
use kernel::{EventHandler, Hosted, Module, ModuleContext, Routes};
use migrations::MigratorTrait;
use payments_contracts::NoteAdded;
use sea_orm::{DatabaseConnection, DbErr};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

use crate::service::Payments;

/// The module's name: its settings section, its tables' prefix, its queue.
pub const NAME: &str = "payments";

/// The module's `[payments]` section.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
struct PaymentsSection {
    /// The longest note, in characters.
    max_note_length: usize,
}

impl Default for PaymentsSection {
    fn default() -> Self {
        Self { max_note_length: 500 }
    }
}

impl Section for PaymentsSection {
    const KEY: &'static str = NAME;

    fn check(&self, _checks: Checks) -> Result<(), SettingsError> {
        match self.max_note_length {
            1..=10_000 => Ok(()),
            n => Err(SettingsError::new("payments.max_note_length", format!("must be 1 to 10000, not {n}"))),
        }
    }
}

#[derive(OpenApi)]
#[openapi(paths(http::add_note), tags((name = "payments", description = "The payments module")))]
struct PaymentsApi;

pub struct PaymentsModule;

#[async_trait]
impl Module for PaymentsModule {
    fn name(&self) -> &'static str {
        NAME
    }

    fn path_prefixes(&self) -> &'static [&'static str] {
        &["/payments"]
    }

    fn settings(&self) -> Vec<SectionSpec> {
        vec![SectionSpec::of::<PaymentsSection>()]
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        PaymentsApi::openapi()
    }

    fn publishes(&self) -> Vec<EventType> {
        vec![NoteAdded::event_type()]
    }

    fn consumes(&self) -> Vec<EventType> {
        events::routes().events()
    }

    async fn migrate(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        migrations::Migrator::up(db, None).await
    }

    async fn start(&self, ctx: ModuleContext) -> anyhow::Result<Box<dyn Hosted>> {
        let section = ctx.section::<PaymentsSection>();
        let service = Payments::new(ctx.db, ctx.outbox, section.max_note_length);
        Ok(Box::new(HostedPayments { service: web::Data::new(service) }))
    }
}

struct HostedPayments {
    service: web::Data<Payments>,
}

impl Hosted for HostedPayments {
    fn routes(&self) -> Routes {
        let service = self.service.clone();
        Arc::new(move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(service.clone()).service(http::add_note);
        })
    }

    fn handler(&self) -> Option<Arc<dyn EventHandler>> {
        Some(events::routes().bind(events::PaymentsEvents(self.service.clone())))
    }
}
