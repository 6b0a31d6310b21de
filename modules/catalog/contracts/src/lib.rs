//! Events published by the catalog module.
//!
//! Every change of a product raises its `version` by one, and each event carries the version the
//! change produced, so a consumer keeping a copy applies an event only if it is newer than its copy
//! (events of one product may arrive late: a retry, a redelivery). Events published before
//! versions existed decode with `version` 0: consumers apply those only to a copy that has seen no
//! versioned event either (as before versions, the last one wins), and a versioned event always
//! wins over them.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use contracts::{IntegrationEvent, Publisher};

/// The catalog module, as the publisher of these events.
pub enum Catalog {}

impl Publisher for Catalog {
    const NAME: &'static str = "catalog";
}

/// A price in integer minor units of an ISO 4217 currency (`{"amount": 1999, "currency": "EUR"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub amount: i64,
    pub currency: String,
}

/// A product's full state, carried by `ProductCreated` and `ProductUpdated` so that consumers can
/// keep a local copy without asking the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductSnapshot {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price: Price,
    /// `active` or `discontinued`.
    pub status: String,
    /// The product's version after this change: 1 when created, one more on every change.
    /// 0 (absent) in events published before versions existed.
    #[serde(default)]
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProductCreated(pub ProductSnapshot);

impl IntegrationEvent for ProductCreated {
    type Publisher = Catalog;
    const NAME: &'static str = "ProductCreated";
    const VERSION: u32 = 1;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProductUpdated(pub ProductSnapshot);

impl IntegrationEvent for ProductUpdated {
    type Publisher = Catalog;
    const NAME: &'static str = "ProductUpdated";
    const VERSION: u32 = 1;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductDiscontinued {
    pub product_id: Uuid,
    pub sku: String,
    /// The product's version after its discontinuation; 0 (absent) in events published before
    /// versions existed.
    #[serde(default)]
    pub version: u64,
}

impl IntegrationEvent for ProductDiscontinued {
    type Publisher = Catalog;
    const NAME: &'static str = "ProductDiscontinued";
    const VERSION: u32 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_published_before_versions_decodes_as_version_0() {
        let id = Uuid::now_v7();
        let old = serde_json::json!({"productId": id, "sku": "A-1"});
        let event: ProductDiscontinued = serde_json::from_value(old).expect("decodes");
        assert_eq!(event, ProductDiscontinued { product_id: id, sku: "A-1".into(), version: 0 });
        let old = serde_json::json!({"productId": id, "sku": "A-1", "name": "A", "description": "",
            "price": {"amount": 1, "currency": "EUR"}, "status": "active"});
        let event: ProductUpdated = serde_json::from_value(old).expect("decodes");
        assert_eq!(event.0.version, 0);
        let new = serde_json::to_value(ProductUpdated(ProductSnapshot { version: 3, ..event.0 })).expect("encodes");
        assert_eq!(new["version"], 3);
    }
}

/// The JSON of every event, byte for byte: consumers on other versions decode it.
#[cfg(test)]
mod wire {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn snapshot() -> ProductSnapshot {
        ProductSnapshot {
            product_id: id(1),
            sku: "MUG-1".into(),
            name: "Mug".into(),
            description: "350 ml".into(),
            price: Price { amount: 1299, currency: "EUR".into() },
            status: "active".into(),
            version: 2,
        }
    }

    /// `event` encodes to exactly `json`, and `json` decodes to `event`.
    fn pinned<E: IntegrationEvent + PartialEq + std::fmt::Debug>(event: E, json: &str) {
        assert_eq!(serde_json::to_string(&event).expect("encodes"), json);
        assert_eq!(serde_json::from_str::<E>(json).expect("decodes"), event);
    }

    #[test]
    fn every_event_keeps_its_wire_format() {
        let data = r#"{"productId":"00000000-0000-0000-0000-000000000001","sku":"MUG-1","name":"Mug","description":"350 ml","price":{"amount":1299,"currency":"EUR"},"status":"active","version":2}"#;
        pinned(ProductCreated(snapshot()), data);
        pinned(ProductUpdated(snapshot()), data);
        pinned(
            ProductDiscontinued { product_id: id(1), sku: "MUG-1".into(), version: 3 },
            r#"{"productId":"00000000-0000-0000-0000-000000000001","sku":"MUG-1","version":3}"#,
        );
    }
}
