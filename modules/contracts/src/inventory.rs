//! Events published by the inventory module.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::IntegrationEvent;
use crate::orders::OrderItem;

const SOURCE: &str = "inventory";

/// Every item of the order is reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockReserved {
    pub order_id: Uuid,
    pub items: Vec<OrderItem>,
}

impl IntegrationEvent for StockReserved {
    const NAME: &'static str = "StockReserved";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = SOURCE;
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
    const NAME: &'static str = "StockReservationFailed";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = SOURCE;
}

/// The order's reservation is released (the order was cancelled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockReleased {
    pub order_id: Uuid,
    pub items: Vec<OrderItem>,
}

impl IntegrationEvent for StockReleased {
    const NAME: &'static str = "StockReleased";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = SOURCE;
}
