//! The events the orders module consumes: the catalog's products (kept as a local copy) and
//! inventory's answers to `OrderCreated`.
//!
//! Races, decided: an order cancelled while its reservation was under way ignores the late
//! `StockReserved` or `StockReservationFailed`. Inventory handles `OrderCancelled` after the
//! `OrderCreated` it follows (one producer's events arrive in order; a cancel that overtakes its
//! order leaves a tombstone there), so whatever it reserved is released: an order that ends
//! without shipping never keeps stock.

use async_trait::async_trait;
use contracts::catalog::{ProductCreated, ProductDiscontinued, ProductSnapshot, ProductUpdated};
use contracts::inventory::{StockReservationFailed, StockReserved};
use contracts::orders::{self as events, OrderLine as LineEvent, ShippingAddress as AddressEvent};
use contracts::{EventType, IntegrationEvent};
use kernel::{Envelope, EventHandler, HandlerError, Outbox};
use sea_orm::DatabaseTransaction;

use crate::domain::{Money, Order, OrderEvent, OrderId};
use crate::persistence::{self, ProductCopy};
use crate::service::price;

pub fn consumed() -> Vec<EventType> {
    vec![
        ProductCreated::event_type(),
        ProductUpdated::event_type(),
        ProductDiscontinued::event_type(),
        StockReserved::event_type(),
        StockReservationFailed::event_type(),
    ]
}

pub struct OrdersHandler {
    pub outbox: Outbox,
}

#[async_trait]
impl EventHandler for OrdersHandler {
    async fn handle(&self, txn: &DatabaseTransaction, envelope: &Envelope) -> Result<(), HandlerError> {
        if envelope.is::<ProductCreated>() {
            copy_product(txn, &envelope.decode::<ProductCreated>()?.0).await
        } else if envelope.is::<ProductUpdated>() {
            copy_product(txn, &envelope.decode::<ProductUpdated>()?.0).await
        } else if envelope.is::<ProductDiscontinued>() {
            let event = envelope.decode::<ProductDiscontinued>()?;
            Ok(persistence::discontinue_product(txn, event.product_id).await?)
        } else if envelope.is::<StockReserved>() {
            let event = envelope.decode::<StockReserved>()?;
            self.answer(txn, envelope, event.order_id.into(), OrderEvent::StockReserved, None).await
        } else if envelope.is::<StockReservationFailed>() {
            let event = envelope.decode::<StockReservationFailed>()?;
            let short: Vec<String> = event
                .shortages
                .iter()
                .map(|s| format!("{} available of {} requested for {}", s.available, s.requested, s.product_id))
                .collect();
            let reason = format!("not enough stock: {}", short.join("; "));
            self.answer(txn, envelope, event.order_id.into(), OrderEvent::StockRefused, Some(reason)).await
        } else {
            Err(HandlerError::Malformed(format!("orders does not consume {}", envelope.event)))
        }
    }
}

async fn copy_product(txn: &DatabaseTransaction, p: &ProductSnapshot) -> Result<(), HandlerError> {
    let copy = ProductCopy {
        product_id: p.product_id,
        sku: p.sku.clone(),
        name: p.name.clone(),
        price: Money { amount: p.price.amount, currency: p.price.currency.clone() },
        active: p.status == "active",
    };
    Ok(persistence::upsert_product(txn, &copy, &p.status).await?)
}

impl OrdersHandler {
    /// Applies inventory's answer to a pending order and tells the others what became of it.
    #[tracing::instrument(skip_all, fields(order.id = %id, answer = ?event))]
    async fn answer(
        &self,
        txn: &DatabaseTransaction,
        cause: &Envelope,
        id: OrderId,
        event: OrderEvent,
        reason: Option<String>,
    ) -> Result<(), HandlerError> {
        let Some(mut order) = persistence::find(txn, id, true).await? else {
            return Err(HandlerError::Malformed(format!("no order {id}")));
        };
        if let Err(e) = order.apply(event, kernel::db::now()) {
            // Cancelled meanwhile: inventory releases on OrderCancelled, nothing to do here.
            tracing::info!(reason = %e, "stock answer for an order that moved on; ignored");
            return Ok(());
        }
        order.rejection_reason = reason;
        persistence::update_order(txn, &order).await?;
        match event {
            OrderEvent::StockReserved => self.outbox.publish(txn, &confirmed(&order), Some(cause)).await?,
            _ => {
                let rejected = events::OrderRejected {
                    order_id: id.as_uuid(),
                    user_id: order.user_id,
                    reason: order.rejection_reason.clone().unwrap_or_default(),
                };
                self.outbox.publish(txn, &rejected, Some(cause)).await?
            }
        }
        tracing::info!(status = order.status.as_str(), "order answered");
        Ok(())
    }
}

fn confirmed(order: &Order) -> events::OrderConfirmed {
    let a = &order.shipping_address;
    events::OrderConfirmed {
        order_id: order.id.as_uuid(),
        user_id: order.user_id,
        lines: order
            .lines
            .iter()
            .map(|l| LineEvent {
                product_id: l.product_id,
                sku: l.sku.clone(),
                name: l.name.clone(),
                quantity: l.quantity.get(),
                unit_price: price(&l.unit_price),
                line_total: price(&l.total()),
            })
            .collect(),
        shipping_address: AddressEvent {
            name: a.name.clone(),
            line1: a.line1.clone(),
            line2: a.line2.clone(),
            city: a.city.clone(),
            postal_code: a.postal_code.clone(),
            country: a.country.clone(),
        },
        total: price(&order.total),
    }
}
