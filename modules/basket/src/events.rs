//! The events the basket module consumes — the catalog's products, kept as the module's own copy —
//! each decoded into the arguments of its use case in `service.rs`.

use actix_web::web;
use async_trait::async_trait;
use catalog_contracts::{ProductCreated, ProductDiscontinued, ProductSnapshot, ProductUpdated};
use contracts::ProductStatus;
use kernel::{Envelope, EventRoutes, HandlerError, Handles};
use sea_orm::DatabaseTransaction;

use crate::domain::ProductCopy;
use crate::service::Baskets;

/// The events basket consumes (its `consumes()`), each handled by [`BasketEvents`].
pub fn routes() -> EventRoutes<BasketEvents> {
    EventRoutes::new().on::<ProductCreated>().on::<ProductUpdated>().on::<ProductDiscontinued>()
}

pub struct BasketEvents(pub web::Data<Baskets>);

#[async_trait]
impl Handles<ProductCreated> for BasketEvents {
    async fn handle(&self, txn: &DatabaseTransaction, event: ProductCreated, _: &Envelope) -> Result<(), HandlerError> {
        Ok(self.0.copy_product(txn, &copy(event.0)?).await?)
    }
}

#[async_trait]
impl Handles<ProductUpdated> for BasketEvents {
    async fn handle(&self, txn: &DatabaseTransaction, event: ProductUpdated, _: &Envelope) -> Result<(), HandlerError> {
        Ok(self.0.copy_product(txn, &copy(event.0)?).await?)
    }
}

#[async_trait]
impl Handles<ProductDiscontinued> for BasketEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: ProductDiscontinued,
        _: &Envelope,
    ) -> Result<(), HandlerError> {
        Ok(self.0.discontinue_product(txn, event.product_id, &event.sku, version(event.version)?).await?)
    }
}

fn copy(p: ProductSnapshot) -> Result<ProductCopy, HandlerError> {
    Ok(ProductCopy {
        product_id: p.product_id,
        sku: p.sku,
        name: p.name,
        price: Some(p.price),
        active: p.status == ProductStatus::Active,
        version: version(p.version)?,
    })
}

fn version(version: u64) -> Result<i64, HandlerError> {
    i64::try_from(version).map_err(|_| HandlerError::Malformed(format!("product version {version} is out of range")))
}
