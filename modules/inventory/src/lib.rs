//! The inventory module: stock per product (on hand, reserved) and reservations per order.
//!
//! Every product the catalog creates gets a stock row; admins set how many units are on hand and
//! anyone reads the stock. When an order is created, every line is reserved or none is, and the
//! module publishes `StockReserved` or `StockReservationFailed`; a cancelled order releases its
//! reservation (`StockReleased`), and a dispatched shipment turns it into units sold. Conditional
//! updates in the database keep concurrent orders from ever reserving more than is on hand.

mod domain;
mod events;
mod http;
mod persistence;
mod service;

use std::sync::Arc;

use actix_web::web;
use async_trait::async_trait;
use contracts::{EventType, IntegrationEvent};
use inventory_contracts::{StockReleased, StockReservationFailed, StockReserved};
use kernel::{EventHandler, Hosted, Module, ModuleContext, Routes};
use migrations::MigratorTrait;
use sea_orm::{DatabaseConnection, DbErr};
use utoipa::OpenApi;

pub use service::Inventory;

use crate::events::InventoryEvents;

#[derive(OpenApi)]
#[openapi(
    paths(http::get_stock, http::set_stock),
    tags((name = "inventory", description = "Stock per product"))
)]
struct InventoryApi;

/// The module's name: its settings section, its tables' prefix, its queue.
pub const NAME: &str = "inventory";

pub struct InventoryModule;

#[async_trait]
impl Module for InventoryModule {
    fn name(&self) -> &'static str {
        NAME
    }

    fn path_prefixes(&self) -> &'static [&'static str] {
        &["/inventory"]
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        InventoryApi::openapi()
    }

    fn publishes(&self) -> Vec<EventType> {
        vec![StockReserved::event_type(), StockReservationFailed::event_type(), StockReleased::event_type()]
    }

    fn consumes(&self) -> Vec<EventType> {
        events::routes().events()
    }

    async fn migrate(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        migrations::Migrator::up(db, None).await
    }

    async fn start(&self, ctx: ModuleContext) -> anyhow::Result<Box<dyn Hosted>> {
        Ok(Box::new(HostedInventory { inventory: web::Data::new(Inventory::new(ctx.db, ctx.outbox)) }))
    }
}

struct HostedInventory {
    inventory: web::Data<Inventory>,
}

impl Hosted for HostedInventory {
    fn routes(&self) -> Routes {
        let inventory = self.inventory.clone();
        Arc::new(move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(inventory.clone()).service(http::get_stock).service(http::set_stock);
        })
    }

    fn handler(&self) -> Option<Arc<dyn EventHandler>> {
        Some(events::routes().bind(InventoryEvents::new(self.inventory.get_ref().clone())))
    }
}
