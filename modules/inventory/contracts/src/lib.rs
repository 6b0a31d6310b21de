//! Events published by the inventory module.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use contracts::{IntegrationEvent, Publisher};

/// Reserved items are the order's items, in the orders module's words: inventory conforms to them
/// (it consumes orders' events anyway).
pub use orders_contracts::OrderItem;

/// The inventory module, as the publisher of these events.
pub enum Inventory {}

impl Publisher for Inventory {
    const NAME: &'static str = "inventory";
}

/// Every item of the order is reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockReserved {
    pub order_id: Uuid,
    pub items: Vec<OrderItem>,
}

impl IntegrationEvent for StockReserved {
    type Publisher = Inventory;
    const NAME: &'static str = "StockReserved";
    const VERSION: u32 = 1;
}

/// A line that could not be reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shortage {
    pub product_id: Uuid,
    pub requested: u32,
    pub available: u32,
}

/// Some item could not be reserved; nothing is reserved for the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockReservationFailed {
    pub order_id: Uuid,
    pub shortages: Vec<Shortage>,
}

impl IntegrationEvent for StockReservationFailed {
    type Publisher = Inventory;
    const NAME: &'static str = "StockReservationFailed";
    const VERSION: u32 = 1;
}

/// The order's reservation is released (the order was cancelled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockReleased {
    pub order_id: Uuid,
    pub items: Vec<OrderItem>,
}

impl IntegrationEvent for StockReleased {
    type Publisher = Inventory;
    const NAME: &'static str = "StockReleased";
    const VERSION: u32 = 1;
}

/// The JSON of every event, byte for byte: consumers on other versions decode it.
#[cfg(test)]
mod wire {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn items() -> Vec<OrderItem> {
        vec![OrderItem { product_id: id(3), quantity: 7 }]
    }

    /// `event` encodes to exactly `json`, and `json` decodes to `event`.
    fn pinned<E: IntegrationEvent + PartialEq + std::fmt::Debug>(event: E, json: &str) {
        assert_eq!(serde_json::to_string(&event).expect("encodes"), json);
        assert_eq!(serde_json::from_str::<E>(json).expect("decodes"), event);
    }

    #[test]
    fn every_event_keeps_its_wire_format() {
        let reserved = r#"{"orderId":"00000000-0000-0000-0000-000000000001","items":[{"productId":"00000000-0000-0000-0000-000000000003","quantity":7}]}"#;
        pinned(StockReserved { order_id: id(1), items: items() }, reserved);
        pinned(StockReleased { order_id: id(1), items: items() }, reserved);
        pinned(
            StockReservationFailed {
                order_id: id(1),
                shortages: vec![Shortage { product_id: id(3), requested: 7, available: 0 }],
            },
            r#"{"orderId":"00000000-0000-0000-0000-000000000001","shortages":[{"productId":"00000000-0000-0000-0000-000000000003","requested":7,"available":0}]}"#,
        );
    }
}
