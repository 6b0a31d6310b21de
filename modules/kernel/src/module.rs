//! The [`Module`] trait: what the composition root needs to host a bounded context.

use std::sync::Arc;

use async_trait::async_trait;
use contracts::EventType;
use futures::future::BoxFuture;
use sea_orm::{DatabaseConnection, DbErr};
use tokio_util::sync::CancellationToken;

use crate::auth::VerificationKey;
use crate::{EventHandler, Outbox};

/// Registers a module's HTTP routes on one actix worker's app; built once, called per worker.
pub type Routes = Arc<dyn Fn(&mut actix_web::web::ServiceConfig) + Send + Sync>;

/// What a hosted module gets from the composition root: its own pool, its own outbox, and the
/// effective settings (a module reads its own section, and the shared ones it needs).
#[derive(Clone)]
pub struct ModuleContext {
    pub db: DatabaseConnection,
    pub outbox: Outbox,
    pub settings: Arc<serde_json::Value>,
}

impl ModuleContext {
    pub fn new(name: &'static str, db: DatabaseConnection, settings: Arc<serde_json::Value>) -> Self {
        Self { outbox: Outbox::new(name, db.clone()), db, settings }
    }

    /// Deserialises the settings section `key` (`"users"`, `"auth"`), absent fields defaulted.
    pub fn section<T: serde::de::DeserializeOwned + Default>(&self, key: &str) -> anyhow::Result<T> {
        match self.settings.get(key) {
            None | Some(serde_json::Value::Null) => Ok(T::default()),
            Some(value) => serde_json::from_value(value.clone())
                .map_err(|e| anyhow::anyhow!("invalid settings section `{key}`: {e}")),
        }
    }
}

/// A bounded context, as the registry knows it: what it is, whether or not this process hosts it.
#[async_trait]
pub trait Module: Send + Sync + 'static {
    /// The module's name: its key in settings, its table prefix, its queue name.
    fn name(&self) -> &'static str;

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

    /// What housekeeping purges for it besides its outbox and inbox.
    fn purges(&self) -> Vec<Arc<dyn crate::housekeeping::Purge>> {
        Vec::new()
    }

    /// Keys that verify the access tokens this module issues (the users module's).
    fn verification_keys(&self) -> Vec<VerificationKey> {
        Vec::new()
    }
}
