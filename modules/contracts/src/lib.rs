//! What Bazaar's published language is made of: [`IntegrationEvent`], its [`Publisher`] and its
//! [`EventType`] on the bus. The events themselves live with the module that publishes them, one
//! crate each (`modules/<module>/contracts`, `<module>_contracts`), so a module depends on exactly
//! the events it publishes and the ones it consumes.
//!
//! An event's name, version and publisher are part of its type, so a consumer names exactly the
//! version it understands; a breaking change gets a new version.
//!
//! The words events are made of are the [`vocabulary`]'s: [`Money`], [`Currency`], [`Quantity`],
//! [`Address`], [`Role`], [`ProductStatus`], types that are valid by construction and that the
//! modules' domains and HTTP bodies use too. [`schema`] holds the JSON Schemas of what their
//! parsers accept.

pub mod schema;
pub mod vocabulary;

pub use vocabulary::{Address, AddressForm, Currency, Invalid, Money, ProductStatus, Quantity, Role};

use serde::{Serialize, de::DeserializeOwned};

/// The module that publishes a set of events: each contracts crate declares one
/// (`pub enum Orders {}`), and a module's outbox publishes only its own publisher's events.
pub trait Publisher: 'static {
    /// The module's name, the `source` of its events.
    const NAME: &'static str;
}

/// An event one module publishes for others to consume.
pub trait IntegrationEvent: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The module that publishes it.
    type Publisher: Publisher;
    /// The event's name, as it appears in the envelope's `event` field.
    const NAME: &'static str;
    /// The schema version of `data`.
    const VERSION: u32;
    /// The module that publishes it, by name: always its [`Publisher`]'s (do not override).
    const SOURCE: &'static str = <Self::Publisher as Publisher>::NAME;

    /// The event's identity on the bus.
    fn event_type() -> EventType {
        EventType { source: Self::SOURCE, name: Self::NAME, version: Self::VERSION }
    }
}

/// An event's identity on the bus: who publishes it, its name and its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct EventType {
    pub source: &'static str,
    pub name: &'static str,
    pub version: u32,
}

impl EventType {
    /// The RabbitMQ routing key: `<source>.<event-in-kebab-case>.v<version>`.
    pub fn routing_key(&self) -> String {
        routing_key(self.source, self.name, self.version)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.v{}", self.source, self.name, self.version)
    }
}

/// `<source>.<event-in-kebab-case>.v<version>`, e.g. `orders.order-created.v1`.
pub fn routing_key(source: &str, event: &str, version: u32) -> String {
    format!("{source}.{}.v{version}", kebab_case(event))
}

fn kebab_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    enum Catalog {}

    impl Publisher for Catalog {
        const NAME: &'static str = "catalog";
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    struct ProductDiscontinued {}

    impl IntegrationEvent for ProductDiscontinued {
        type Publisher = Catalog;
        const NAME: &'static str = "ProductDiscontinued";
        const VERSION: u32 = 1;
    }

    #[test]
    fn routing_keys_are_kebab_case_with_the_version() {
        assert_eq!(routing_key("orders", "OrderCreated", 1), "orders.order-created.v1");
        assert_eq!(ProductDiscontinued::event_type().routing_key(), "catalog.product-discontinued.v1");
    }

    #[test]
    fn an_events_source_is_its_publishers_name() {
        assert_eq!(ProductDiscontinued::SOURCE, "catalog");
        assert_eq!(ProductDiscontinued::event_type().source, "catalog");
    }
}
