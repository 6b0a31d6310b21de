//! Events published by the shipping module.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::IntegrationEvent;
use crate::orders::OrderItem;

const SOURCE: &str = "shipping";

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
