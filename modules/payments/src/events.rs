//! The events the payments module consumes — an order's request for a payment, and its end —
//! each decoded and handed to its use case in `service.rs`.

use actix_web::web;
use async_trait::async_trait;
use kernel::{Envelope, EventRoutes, HandlerError, Handles};
use orders_contracts::{OrderCancelled, OrderPaymentRequested};
use sea_orm::DatabaseTransaction;

use crate::service::{PaymentRequest, Payments};

/// The events payments consumes (its `consumes()`), each handled by [`PaymentsEvents`]. Once
/// their rows are committed, the worker is woken to act on them.
pub fn routes() -> EventRoutes<PaymentsEvents> {
    EventRoutes::new().on::<OrderPaymentRequested>().on::<OrderCancelled>().after_commit(|events| events.0.wake())
}

pub struct PaymentsEvents(pub web::Data<Payments>);

#[async_trait]
impl Handles<OrderPaymentRequested> for PaymentsEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: OrderPaymentRequested,
        _: &Envelope,
    ) -> Result<(), HandlerError> {
        let request = PaymentRequest {
            order_id: event.order_id,
            user_id: event.user_id,
            amount: event.amount,
            payment_method: event.payment_method,
            attempt: event.attempt,
        };
        Ok(self.0.request_payment(txn, request).await?)
    }
}

#[async_trait]
impl Handles<OrderCancelled> for PaymentsEvents {
    async fn handle(&self, txn: &DatabaseTransaction, event: OrderCancelled, _: &Envelope) -> Result<(), HandlerError> {
        Ok(self.0.end_order(txn, event.order_id).await?)
    }
}
