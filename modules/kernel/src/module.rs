//! The [`Module`] trait: what the composition root needs to host a bounded context.

use std::sync::Arc;

use async_trait::async_trait;
use contracts::EventType;
use futures::future::BoxFuture;
use sea_orm::{DatabaseConnection, DbErr};
use tokio_util::sync::CancellationToken;

use crate::{EventHandler, Outbox};

/// Registers a module's HTTP routes on one actix worker's app; built once, called per worker.
pub type Routes = Arc<dyn Fn(&mut actix_web::web::ServiceConfig) + Send + Sync>;

/// What a hosted module gets from the composition root: its own pool and its own outbox.
#[derive(Clone)]
pub struct ModuleContext {
    pub db: DatabaseConnection,
    pub outbox: Outbox,
}

impl ModuleContext {
    pub fn new(name: &'static str, db: DatabaseConnection) -> Self {
        Self { outbox: Outbox::new(name, db.clone()), db }
    }
}

/// A bounded context. The value itself holds no state: everything that runs is built from a
/// [`ModuleContext`], so the same value describes a module whether or not this process hosts it.
#[async_trait]
pub trait Module: Send + Sync + 'static {
    /// The module's name: its key in settings, its table prefix, its queue name.
    fn name(&self) -> &'static str;

    /// The module's part of the OpenAPI document.
    fn openapi(&self) -> utoipa::openapi::OpenApi;

    /// The events it publishes.
    fn publishes(&self) -> Vec<EventType>;

    /// The events it consumes; [`handler`](Self::handler) handles them.
    fn consumes(&self) -> Vec<EventType> {
        Vec::new()
    }

    /// Brings its schema (its own tables and the kernel's) up to date.
    async fn migrate(&self, db: &DatabaseConnection) -> Result<(), DbErr>;

    /// Its HTTP routes, with their state built once.
    fn routes(&self, ctx: &ModuleContext) -> Routes;

    /// The handler of the events in [`consumes`](Self::consumes).
    fn handler(&self, _ctx: &ModuleContext) -> Option<Arc<dyn EventHandler>> {
        None
    }

    /// Work that runs beside the HTTP server until `shutdown` is cancelled.
    fn background_tasks(&self, _ctx: &ModuleContext, _shutdown: CancellationToken) -> Vec<BoxFuture<'static, ()>> {
        Vec::new()
    }
}
