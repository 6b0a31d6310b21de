//! Events published by the shipping module.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use contracts::{IntegrationEvent, Publisher};

/// A shipment's items and address are the order's, in the orders module's words: shipping conforms
/// to them (it consumes orders' events anyway). A shared validated `Address` is meant to replace
/// `ShippingAddress` in every contract.
pub use orders_contracts::{OrderItem, ShippingAddress};

/// The shipping module, as the publisher of these events.
pub enum Shipping {}

impl Publisher for Shipping {
    const NAME: &'static str = "shipping";
}

/// A confirmed order has a shipment, `pending` until an admin dispatches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentCreated {
    pub shipment_id: Uuid,
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub items: Vec<OrderItem>,
    pub shipping_address: ShippingAddress,
}

impl IntegrationEvent for ShipmentCreated {
    type Publisher = Shipping;
    const NAME: &'static str = "ShipmentCreated";
    const VERSION: u32 = 1;
}

/// The order's parcel left the warehouse: its reserved units leave stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentDispatched {
    pub shipment_id: Uuid,
    pub order_id: Uuid,
    pub items: Vec<OrderItem>,
    pub carrier: String,
    pub tracking_number: String,
}

impl IntegrationEvent for ShipmentDispatched {
    type Publisher = Shipping;
    const NAME: &'static str = "ShipmentDispatched";
    const VERSION: u32 = 1;
}

/// The parcel reached the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentDelivered {
    pub shipment_id: Uuid,
    pub order_id: Uuid,
}

impl IntegrationEvent for ShipmentDelivered {
    type Publisher = Shipping;
    const NAME: &'static str = "ShipmentDelivered";
    const VERSION: u32 = 1;
}

/// The shipment will never be dispatched: the order may end, and its stock be released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentCancelled {
    pub shipment_id: Uuid,
    pub order_id: Uuid,
    pub reason: String,
}

impl IntegrationEvent for ShipmentCancelled {
    type Publisher = Shipping;
    const NAME: &'static str = "ShipmentCancelled";
    const VERSION: u32 = 1;
}

/// The shipment will go to a new address, as the customer asked: the order shows it too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentAddressChanged {
    pub shipment_id: Uuid,
    pub order_id: Uuid,
    pub shipping_address: ShippingAddress,
}

impl IntegrationEvent for ShipmentAddressChanged {
    type Publisher = Shipping;
    const NAME: &'static str = "ShipmentAddressChanged";
    const VERSION: u32 = 1;
}

/// Too late to change the address: the shipment was dispatched, delivered or cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentAddressChangeRefused {
    pub shipment_id: Uuid,
    pub order_id: Uuid,
    pub reason: String,
}

impl IntegrationEvent for ShipmentAddressChangeRefused {
    type Publisher = Shipping;
    const NAME: &'static str = "ShipmentAddressChangeRefused";
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
        vec![OrderItem { product_id: id(4), quantity: 2 }]
    }

    fn address() -> ShippingAddress {
        ShippingAddress {
            name: "Ada Lovelace".into(),
            line1: "1 Royal Crescent".into(),
            line2: Some("Flat 2".into()),
            city: "Bath".into(),
            postal_code: "BA1 2LR".into(),
            country: "GB".into(),
        }
    }

    /// `event` encodes to exactly `json`, and `json` decodes to `event`.
    fn pinned<E: IntegrationEvent + PartialEq + std::fmt::Debug>(event: E, json: &str) {
        assert_eq!(serde_json::to_string(&event).expect("encodes"), json);
        assert_eq!(serde_json::from_str::<E>(json).expect("decodes"), event);
    }

    #[test]
    fn every_event_keeps_its_wire_format() {
        pinned(
            ShipmentCreated {
                shipment_id: id(1),
                order_id: id(2),
                user_id: id(3),
                items: items(),
                shipping_address: address(),
            },
            r#"{"shipmentId":"00000000-0000-0000-0000-000000000001","orderId":"00000000-0000-0000-0000-000000000002","userId":"00000000-0000-0000-0000-000000000003","items":[{"productId":"00000000-0000-0000-0000-000000000004","quantity":2}],"shippingAddress":{"name":"Ada Lovelace","line1":"1 Royal Crescent","line2":"Flat 2","city":"Bath","postalCode":"BA1 2LR","country":"GB"}}"#,
        );
        pinned(
            ShipmentDispatched {
                shipment_id: id(1),
                order_id: id(2),
                items: items(),
                carrier: "DHL".into(),
                tracking_number: "JD01".into(),
            },
            r#"{"shipmentId":"00000000-0000-0000-0000-000000000001","orderId":"00000000-0000-0000-0000-000000000002","items":[{"productId":"00000000-0000-0000-0000-000000000004","quantity":2}],"carrier":"DHL","trackingNumber":"JD01"}"#,
        );
        pinned(
            ShipmentDelivered { shipment_id: id(1), order_id: id(2) },
            r#"{"shipmentId":"00000000-0000-0000-0000-000000000001","orderId":"00000000-0000-0000-0000-000000000002"}"#,
        );
        pinned(
            ShipmentCancelled { shipment_id: id(1), order_id: id(2), reason: "asked".into() },
            r#"{"shipmentId":"00000000-0000-0000-0000-000000000001","orderId":"00000000-0000-0000-0000-000000000002","reason":"asked"}"#,
        );
        pinned(
            ShipmentAddressChanged { shipment_id: id(1), order_id: id(2), shipping_address: address() },
            r#"{"shipmentId":"00000000-0000-0000-0000-000000000001","orderId":"00000000-0000-0000-0000-000000000002","shippingAddress":{"name":"Ada Lovelace","line1":"1 Royal Crescent","line2":"Flat 2","city":"Bath","postalCode":"BA1 2LR","country":"GB"}}"#,
        );
        pinned(
            ShipmentAddressChangeRefused {
                shipment_id: id(1),
                order_id: id(2),
                reason: "the shipment is dispatched".into(),
            },
            r#"{"shipmentId":"00000000-0000-0000-0000-000000000001","orderId":"00000000-0000-0000-0000-000000000002","reason":"the shipment is dispatched"}"#,
        );
    }
}
