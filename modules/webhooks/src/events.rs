//! The events the webhooks module consumes: the facts it tells subscribers of. Each internal event
//! becomes its public payload (`public.rs`) and is handed to `service.rs`; once the deliveries are
//! committed, the worker is woken to send them.

use actix_web::web;
use async_trait::async_trait;
use kernel::{Envelope, EventRoutes, HandlerError, Handles};
use orders_contracts::{OrderCancelled, OrderConfirmed, OrderCreated, OrderRejected};
use payments_contracts::{PaymentFailed, PaymentRefunded, PaymentSucceeded};
use sea_orm::DatabaseTransaction;
use shipping_contracts::{ShipmentCancelled, ShipmentDelivered, ShipmentDispatched};

use crate::public::*;
use crate::service::Webhooks;

pub struct WebhooksEvents(pub web::Data<Webhooks>);

/// What the module consumes: its `consumes()` and its dispatch, in one list.
pub fn routes() -> EventRoutes<WebhooksEvents> {
    EventRoutes::new()
        .on::<OrderCreated>()
        .on::<OrderConfirmed>()
        .on::<OrderRejected>()
        .on::<OrderCancelled>()
        .on::<PaymentSucceeded>()
        .on::<PaymentFailed>()
        .on::<PaymentRefunded>()
        .on::<ShipmentDispatched>()
        .on::<ShipmentDelivered>()
        .on::<ShipmentCancelled>()
        .after_commit(|events| events.0.wake())
}

#[async_trait]
impl Handles<OrderCreated> for WebhooksEvents {
    async fn handle(&self, txn: &DatabaseTransaction, e: OrderCreated, cause: &Envelope) -> Result<(), HandlerError> {
        let items = e.items.into_iter().map(|i| ItemData { product_id: i.product_id, quantity: i.quantity }).collect();
        let data = OrderCreatedData { order_id: e.order_id, user_id: e.user_id, items };
        Ok(self.0.record(txn, EventKind::OrderCreated, e.order_id, &data, cause).await?)
    }
}

#[async_trait]
impl Handles<OrderConfirmed> for WebhooksEvents {
    async fn handle(&self, txn: &DatabaseTransaction, e: OrderConfirmed, cause: &Envelope) -> Result<(), HandlerError> {
        let lines = e
            .lines
            .into_iter()
            .map(|l| LineData {
                product_id: l.product_id,
                sku: l.sku,
                name: l.name,
                quantity: l.quantity,
                unit_price: l.unit_price,
                line_total: l.line_total,
            })
            .collect();
        let data = OrderConfirmedData {
            order_id: e.order_id,
            user_id: e.user_id,
            lines,
            shipping_address: e.shipping_address,
            total: e.total,
        };
        Ok(self.0.record(txn, EventKind::OrderConfirmed, e.order_id, &data, cause).await?)
    }
}

#[async_trait]
impl Handles<OrderRejected> for WebhooksEvents {
    async fn handle(&self, txn: &DatabaseTransaction, e: OrderRejected, cause: &Envelope) -> Result<(), HandlerError> {
        let data = OrderRejectedData { order_id: e.order_id, user_id: e.user_id, reason: e.reason };
        Ok(self.0.record(txn, EventKind::OrderRejected, e.order_id, &data, cause).await?)
    }
}

#[async_trait]
impl Handles<OrderCancelled> for WebhooksEvents {
    async fn handle(&self, txn: &DatabaseTransaction, e: OrderCancelled, cause: &Envelope) -> Result<(), HandlerError> {
        let data = OrderCancelledData { order_id: e.order_id, user_id: e.user_id };
        Ok(self.0.record(txn, EventKind::OrderCancelled, e.order_id, &data, cause).await?)
    }
}

#[async_trait]
impl Handles<PaymentSucceeded> for WebhooksEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        e: PaymentSucceeded,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        let data = PaymentSucceededData {
            order_id: e.order_id,
            payment_id: e.payment_id,
            amount: e.amount,
            paid_at: e.paid_at,
        };
        Ok(self.0.record(txn, EventKind::PaymentSucceeded, e.order_id, &data, cause).await?)
    }
}

#[async_trait]
impl Handles<PaymentFailed> for WebhooksEvents {
    async fn handle(&self, txn: &DatabaseTransaction, e: PaymentFailed, cause: &Envelope) -> Result<(), HandlerError> {
        let data = PaymentFailedData {
            order_id: e.order_id,
            payment_id: e.payment_id,
            code: e.code,
            reason: e.reason,
            retryable: e.retryable,
        };
        Ok(self.0.record(txn, EventKind::PaymentFailed, e.order_id, &data, cause).await?)
    }
}

#[async_trait]
impl Handles<PaymentRefunded> for WebhooksEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        e: PaymentRefunded,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        let data = PaymentRefundedData {
            order_id: e.order_id,
            payment_id: e.payment_id,
            amount: e.amount,
            refunded_at: e.refunded_at,
        };
        Ok(self.0.record(txn, EventKind::PaymentRefunded, e.order_id, &data, cause).await?)
    }
}

#[async_trait]
impl Handles<ShipmentDispatched> for WebhooksEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        e: ShipmentDispatched,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        let data = ShipmentDispatchedData {
            order_id: e.order_id,
            shipment_id: e.shipment_id,
            carrier: e.carrier,
            tracking_number: e.tracking_number,
        };
        Ok(self.0.record(txn, EventKind::ShipmentDispatched, e.order_id, &data, cause).await?)
    }
}

#[async_trait]
impl Handles<ShipmentDelivered> for WebhooksEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        e: ShipmentDelivered,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        let data = ShipmentDeliveredData { order_id: e.order_id, shipment_id: e.shipment_id };
        Ok(self.0.record(txn, EventKind::ShipmentDelivered, e.order_id, &data, cause).await?)
    }
}

#[async_trait]
impl Handles<ShipmentCancelled> for WebhooksEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        e: ShipmentCancelled,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        let data = ShipmentCancelledData { order_id: e.order_id, shipment_id: e.shipment_id, reason: e.reason };
        Ok(self.0.record(txn, EventKind::ShipmentCancelled, e.order_id, &data, cause).await?)
    }
}
