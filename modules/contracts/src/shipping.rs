//! Events published by the shipping module.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::IntegrationEvent;
use crate::orders::{OrderItem, ShippingAddress};

const SOURCE: &str = "shipping";

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
    const NAME: &'static str = "ShipmentCreated";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = SOURCE;
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
    const NAME: &'static str = "ShipmentDispatched";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = SOURCE;
}

/// The parcel reached the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentDelivered {
    pub shipment_id: Uuid,
    pub order_id: Uuid,
}

impl IntegrationEvent for ShipmentDelivered {
    const NAME: &'static str = "ShipmentDelivered";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = SOURCE;
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
    const NAME: &'static str = "ShipmentCancelled";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = SOURCE;
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
    const NAME: &'static str = "ShipmentAddressChanged";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = SOURCE;
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
    const NAME: &'static str = "ShipmentAddressChangeRefused";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = SOURCE;
}
