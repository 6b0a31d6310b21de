//! Bazaar's shared kernel: what every module needs and no module owns.
//!
//! - [`bus`]: the [`EventBus`] trait modules talk through, and the handler side of it;
//! - [`delivery`]: the one delivery pipeline every bus hands its deliveries to: decode, batch,
//!   inbox, handler, and the retry-or-dead-letter decision the bus then carries out;
//! - [`db`]: a module's connections, and which database errors are transient ([`db::is_transient`]);
//! - [`envelope`]: the [`Envelope`] every integration event travels in;
//! - [`outbox`] and [`inbox`]: the transactional outbox with its relay, and the inbox that makes
//!   redelivery harmless, with retries and a dead-letter table;
//! - [`error`]: [`ApiError`], the one way HTTP errors leave Bazaar (RFC 9457 problem+json);
//! - [`auth`]: the Bearer JWT extractors ([`Principal`], [`Admin`], and [`auth::Verified`] for what
//!   needs a verified e-mail address);
//! - [`caching`]: `ETag`, `Cache-Control` and `304 Not Modified` for public reads;
//! - [`client`]: the client's address through trusted proxies ([`ClientAddr`]);
//! - [`housekeeping`]: purging what the outbox and inbox no longer need;
//! - [`jobs`]: durable background jobs, enqueued with the state change they follow;
//! - [`pagination`]: cursor pages;
//! - [`openapi`]: JSON Schemas of what the parsers accept, for request fields;
//! - [`module`]: the [`Module`] trait the composition root hosts;
//! - [`settings`]: a module's typed settings section ([`settings::Section`]);
//! - [`routing`]: the events a module consumes and who handles each ([`routing::EventRoutes`]).

pub mod auth;
pub mod bus;
pub mod caching;
pub mod client;
pub mod db;
pub mod delivery;
pub mod envelope;
pub mod error;
pub mod housekeeping;
pub mod inbox;
pub mod jobs;
pub mod module;
pub mod openapi;
pub mod outbox;
pub mod pagination;
pub mod redact;
pub mod routing;
pub mod settings;
#[cfg(feature = "testing")]
pub mod testing;

pub use auth::{Admin, JwtVerifier, Principal, Role};
pub use bus::{BusError, Consumer, EventBus, EventHandler, HandlerError, Listener};
pub use client::ClientAddr;
pub use delivery::{Disposition, Pipeline, Received};
pub use envelope::Envelope;
pub use error::{ApiError, FieldError};
pub use inbox::Inbox;
pub use module::{HealthCheck, Hosted, Module, ModuleContext, Routes};
pub use outbox::Outbox;
pub use pagination::{Page, after_cursor, page_limit};
pub use routing::{EventRoutes, Handles};
/// For [`uuid_id!`].
pub use uuid;

/// Declares a UUID newtype id (`kernel::uuid_id!(OrderId);`): `generate()` (UUID v7, so ids sort
/// in creation order and page cursors follow it), `as_uuid()`, `From<Uuid>` and `Display`.
#[macro_export]
macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name($crate::uuid::Uuid);

        impl $name {
            #[allow(dead_code, reason = "some ids are only ever received, never made")]
            pub fn generate() -> Self {
                Self($crate::uuid::Uuid::now_v7())
            }

            pub fn as_uuid(&self) -> $crate::uuid::Uuid {
                self.0
            }
        }

        impl From<$crate::uuid::Uuid> for $name {
            fn from(id: $crate::uuid::Uuid) -> Self {
                Self(id)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}
