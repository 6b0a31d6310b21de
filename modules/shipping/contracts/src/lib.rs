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
