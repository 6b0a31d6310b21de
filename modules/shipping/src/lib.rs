//! The shipping module: a shipment per confirmed order, its dispatch and delivery, and the last
//! word on cancelling a confirmed order and on changing its address.
//!
//! `OrderConfirmed` opens a `pending` shipment with the order's lines and address
//! (`ShipmentCreated`). Admins dispatch it (`ShipmentDispatched`: the order ships, its units leave
//! stock) and record its delivery (`ShipmentDelivered`). A customer's `OrderCancellationRequested`
//! cancels it while it is pending (`ShipmentCancelled`: the order is cancelled, its stock released)
//! and is refused once it is dispatched; `OrderCancelled` cancels a shipment still pending.
//! `OrderAddressChangeRequested` moves a pending shipment (`ShipmentAddressChanged`) and is refused
//! by any other (`ShipmentAddressChangeRefused`); one that comes before the shipment is kept for it.

mod domain;
mod events;
mod http;
mod persistence;
mod service;

use std::sync::Arc;

use actix_web::web;
use async_trait::async_trait;
use contracts::{EventType, IntegrationEvent};
use kernel::{EventHandler, Hosted, Module, ModuleContext, Routes};
use migrations::MigratorTrait;
use sea_orm::{DatabaseConnection, DbErr};
use shipping_contracts::{
    ShipmentAddressChangeRefused, ShipmentAddressChanged, ShipmentCancelled, ShipmentCreated, ShipmentDelivered,
    ShipmentDispatched,
};
use utoipa::OpenApi;

use crate::events::ShippingEvents;
use crate::service::Shipments;

#[derive(OpenApi)]
#[openapi(
    paths(http::list_shipments, http::get_shipment, http::dispatch_shipment, http::deliver_shipment),
    tags((name = "shipping", description = "Shipments of confirmed orders"))
)]
struct ShippingApi;

/// The module's name: its settings section, its tables' prefix, its queue.
pub const NAME: &str = "shipping";

pub struct ShippingModule;

#[async_trait]
impl Module for ShippingModule {
    fn name(&self) -> &'static str {
        NAME
    }

    fn path_prefixes(&self) -> &'static [&'static str] {
        &["/shipments"]
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        ShippingApi::openapi()
    }

    fn publishes(&self) -> Vec<EventType> {
        vec![
            ShipmentCreated::event_type(),
            ShipmentDispatched::event_type(),
            ShipmentDelivered::event_type(),
            ShipmentCancelled::event_type(),
            ShipmentAddressChanged::event_type(),
            ShipmentAddressChangeRefused::event_type(),
        ]
    }

    fn consumes(&self) -> Vec<EventType> {
        events::routes().events()
    }

    async fn migrate(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        migrations::Migrator::up(db, None).await
    }

    async fn start(&self, ctx: ModuleContext) -> anyhow::Result<Box<dyn Hosted>> {
        Ok(Box::new(HostedShipping { shipments: web::Data::new(Shipments::new(ctx.db, ctx.outbox)) }))
    }
}

struct HostedShipping {
    shipments: web::Data<Shipments>,
}

impl Hosted for HostedShipping {
    fn routes(&self) -> Routes {
        let shipments = self.shipments.clone();
        Arc::new(move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(shipments.clone())
                .service(http::list_shipments)
                .service(http::get_shipment)
                .service(http::dispatch_shipment)
                .service(http::deliver_shipment);
        })
    }

    fn handler(&self) -> Option<Arc<dyn EventHandler>> {
        Some(events::routes().bind(ShippingEvents::new(self.shipments.get_ref().clone())))
    }
}
