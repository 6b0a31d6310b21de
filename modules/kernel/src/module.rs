//! The [`Module`] trait: what the composition root needs to host a bounded context.

use std::sync::Arc;

use async_trait::async_trait;
use contracts::EventType;
use futures::future::BoxFuture;
use sea_orm::{DatabaseConnection, DbErr};
use tokio_util::sync::CancellationToken;

use crate::auth::VerificationKey;
use crate::settings::{Section, SectionSpec, Sections};
use crate::{EventHandler, Outbox};

/// Registers a module's HTTP routes on one actix worker's app; built once, called per worker.
pub type Routes = Arc<dyn Fn(&mut actix_web::web::ServiceConfig) + Send + Sync>;

/// What a hosted module gets from the composition root: its own pool, its own outbox, and the
/// settings sections it declared ([`Module::settings`]) — no other module's.
#[derive(Clone)]
pub struct ModuleContext {
    pub db: DatabaseConnection,
    pub outbox: Outbox,
    sections: Sections,
}

impl ModuleContext {
    pub fn new(name: &'static str, db: DatabaseConnection, sections: Sections) -> Self {
        Self { outbox: Outbox::new(name, db.clone()), db, sections }
    }

    /// The section `T`, parsed and checked when the settings were loaded (its defaults if the
    /// module did not declare it).
    pub fn section<T: Section>(&self) -> Arc<T> {
        self.sections.get::<T>()
    }
}

/// A bounded context, as the registry knows it: what it is, whether or not this process hosts it.
#[async_trait]
pub trait Module: Send + Sync + 'static {
    /// The module's name: its key in settings, its table prefix, its queue name. Each module
    /// crate declares it once, as its `NAME` constant.
    fn name(&self) -> &'static str;

    /// The HTTP path prefixes it serves (`/orders`): a gateway or an Ingress routes them to the
    /// process hosting it. Every route of [`openapi`](Self::openapi) starts with one of them.
    fn path_prefixes(&self) -> &'static [&'static str];

    /// The settings sections it reads: its own (`[<name>]`), and a shared one it needs. Only the
    /// modules that declare a section receive it, secrets included.
    fn settings(&self) -> Vec<SectionSpec> {
        Vec::new()
    }

    /// The module's part of the OpenAPI document.
    fn openapi(&self) -> utoipa::openapi::OpenApi;

    /// The events it publishes.
    fn publishes(&self) -> Vec<EventType>;

    /// The events it consumes; its [`Hosted::handler`] handles them.
    fn consumes(&self) -> Vec<EventType> {
        Vec::new()
    }

    /// Brings its schema (its own tables and the kernel's) up to date.
    async fn migrate(&self, db: &DatabaseConnection) -> Result<(), DbErr>;

    /// Builds the module to host in this process: its state is made once, here.
    async fn start(&self, ctx: ModuleContext) -> anyhow::Result<Box<dyn Hosted>>;
}

/// A module running in this process.
pub trait Hosted: Send + Sync {
    /// Its HTTP routes.
    fn routes(&self) -> Routes;

    /// The handler of the events in [`Module::consumes`].
    fn handler(&self) -> Option<Arc<dyn EventHandler>> {
        None
    }

    /// Work that runs beside the HTTP server until `shutdown` is cancelled.
    fn background_tasks(&self, _shutdown: CancellationToken) -> Vec<BoxFuture<'static, ()>> {
        Vec::new()
    }

    /// Its durable jobs' table, when it runs any: the admin API lists and retries them, the
    /// metrics count them and housekeeping purges the finished ones. Its worker is one of its
    /// [`background_tasks`](Self::background_tasks).
    fn jobs(&self) -> Option<crate::jobs::Queue> {
        None
    }

    /// What housekeeping purges for it besides its outbox and inbox.
    fn purges(&self) -> Vec<Arc<dyn crate::housekeeping::Purge>> {
        Vec::new()
    }

    /// Keys that verify the access tokens this module issues (the users module's).
    fn verification_keys(&self) -> Vec<VerificationKey> {
        Vec::new()
    }

    /// What `/health/ready` checks for it besides its database (a provider it calls, say).
    fn checks(&self) -> Vec<Arc<dyn HealthCheck>> {
        Vec::new()
    }
}

/// A dependency of a hosted module that readiness reports, as `<module>.<name>`; each check gets
/// the database ping's 2 s.
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// Its name within the module (`provider`).
    fn name(&self) -> &'static str;

    /// Whether the process is not ready while it fails (503); otherwise it is only `degraded`.
    fn required(&self) -> bool;

    /// `Err` says what is wrong, in words fit for the readiness answer (no secrets, no hosts).
    async fn check(&self) -> Result<(), String>;
}
