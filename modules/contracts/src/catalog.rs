//! Events published by the catalog module.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::IntegrationEvent;

const SOURCE: &str = "catalog";

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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProductCreated(pub ProductSnapshot);

impl IntegrationEvent for ProductCreated {
    const NAME: &'static str = "ProductCreated";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = SOURCE;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProductUpdated(pub ProductSnapshot);

impl IntegrationEvent for ProductUpdated {
    const NAME: &'static str = "ProductUpdated";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = SOURCE;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductDiscontinued {
    pub product_id: Uuid,
    pub sku: String,
}

impl IntegrationEvent for ProductDiscontinued {
    const NAME: &'static str = "ProductDiscontinued";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = SOURCE;
}
