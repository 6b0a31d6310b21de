//! The events the notifications module consumes: an account's address, whose each order is, and
//! the facts a customer is told of. Each is decoded by the kernel and handed to a use case of
//! `service.rs`; once their messages are committed, the worker is woken to send them.

use actix_web::web;
use async_trait::async_trait;
use kernel::{Envelope, EventRoutes, HandlerError, Handles};
use orders_contracts::{OrderCancelled, OrderConfirmed, OrderCreated, OrderRejected};
use payments_contracts::{PaymentFailed, PaymentRefunded};
use sea_orm::DatabaseTransaction;
use serde_json::json;
use shipping_contracts::{ShipmentDelivered, ShipmentDispatched};
use users_contracts::{EmailVerificationRequested, PasswordResetRequested, UserRegistered};
use webhooks_contracts::WebhookEndpointDisabled;

use crate::domain::{Kind, Recipient};
use crate::service::{Notifications, OrderSummary};

pub struct NotificationsEvents(pub web::Data<Notifications>);

/// What the module consumes: its `consumes()` and its dispatch, in one list.
pub fn routes() -> EventRoutes<NotificationsEvents> {
    EventRoutes::new()
        .on::<UserRegistered>()
        .on::<EmailVerificationRequested>()
        .on::<PasswordResetRequested>()
        .on::<OrderCreated>()
        .on::<OrderConfirmed>()
        .on::<OrderRejected>()
        .on::<OrderCancelled>()
        .on::<PaymentFailed>()
        .on::<PaymentRefunded>()
        .on::<ShipmentDispatched>()
        .on::<ShipmentDelivered>()
        .on::<WebhookEndpointDisabled>()
        .after_commit(|events| events.0.wake())
}

#[async_trait]
impl Handles<UserRegistered> for NotificationsEvents {
    async fn handle(&self, txn: &DatabaseTransaction, event: UserRegistered, _: &Envelope) -> Result<(), HandlerError> {
        let recipient = Recipient { user_id: event.user_id, email: event.email, name: event.name };
        Ok(self.0.registered(txn, recipient).await?)
    }
}

#[async_trait]
impl Handles<EmailVerificationRequested> for NotificationsEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: EmailVerificationRequested,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        let recipient = Recipient { user_id: event.user_id, email: event.email, name: event.name };
        let (token, expires_at) = (&event.token, event.expires_at);
        Ok(self.0.link_requested(txn, Kind::VerifyEmail, recipient, token, expires_at, cause.id).await?)
    }
}

#[async_trait]
impl Handles<PasswordResetRequested> for NotificationsEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: PasswordResetRequested,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        let recipient = Recipient { user_id: event.user_id, email: event.email, name: event.name };
        let (token, expires_at) = (&event.token, event.expires_at);
        Ok(self.0.link_requested(txn, Kind::PasswordReset, recipient, token, expires_at, cause.id).await?)
    }
}

#[async_trait]
impl Handles<OrderCreated> for NotificationsEvents {
    async fn handle(&self, txn: &DatabaseTransaction, event: OrderCreated, _: &Envelope) -> Result<(), HandlerError> {
        Ok(self.0.order_placed(txn, event.order_id, event.user_id).await?)
    }
}

#[async_trait]
impl Handles<OrderConfirmed> for NotificationsEvents {
    async fn handle(&self, txn: &DatabaseTransaction, event: OrderConfirmed, _: &Envelope) -> Result<(), HandlerError> {
        let lines = event
            .lines
            .iter()
            .map(|line| {
                json!({
                    "name": line.name, "sku": line.sku, "quantity": line.quantity,
                    "unit_price": line.unit_price.to_words(), "line_total": line.line_total.to_words(),
                })
            })
            .collect();
        let address = &event.shipping_address;
        let address = [Some(address.name()), Some(address.line1()), address.line2(), Some(address.city())]
            .into_iter()
            .flatten()
            .chain([address.postal_code(), address.country()])
            .map(str::to_owned)
            .collect();
        let order = OrderSummary {
            order_id: event.order_id,
            user_id: event.user_id,
            lines,
            total: event.total.to_words(),
            address,
        };
        Ok(self.0.order_confirmed(txn, order).await?)
    }
}

#[async_trait]
impl Handles<OrderCancelled> for NotificationsEvents {
    async fn handle(&self, txn: &DatabaseTransaction, event: OrderCancelled, _: &Envelope) -> Result<(), HandlerError> {
        Ok(self.0.order_cancelled(txn, event.order_id, event.user_id).await?)
    }
}

#[async_trait]
impl Handles<OrderRejected> for NotificationsEvents {
    async fn handle(&self, txn: &DatabaseTransaction, event: OrderRejected, _: &Envelope) -> Result<(), HandlerError> {
        Ok(self.0.order_rejected(txn, event.order_id, event.user_id).await?)
    }
}

#[async_trait]
impl Handles<PaymentFailed> for NotificationsEvents {
    async fn handle(&self, txn: &DatabaseTransaction, event: PaymentFailed, _: &Envelope) -> Result<(), HandlerError> {
        let values = json!({ "reason": event.reason, "retryable": event.retryable });
        Ok(self.0.about_order(txn, Kind::PaymentFailed, event.order_id, event.payment_id, values).await?)
    }
}

#[async_trait]
impl Handles<PaymentRefunded> for NotificationsEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: PaymentRefunded,
        _: &Envelope,
    ) -> Result<(), HandlerError> {
        let values = json!({ "amount": event.amount.to_words() });
        Ok(self.0.about_order(txn, Kind::PaymentRefunded, event.order_id, event.payment_id, values).await?)
    }
}

#[async_trait]
impl Handles<ShipmentDispatched> for NotificationsEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: ShipmentDispatched,
        _: &Envelope,
    ) -> Result<(), HandlerError> {
        let values = json!({ "carrier": event.carrier, "tracking_number": event.tracking_number });
        Ok(self.0.about_order(txn, Kind::ShipmentDispatched, event.order_id, event.shipment_id, values).await?)
    }
}

#[async_trait]
impl Handles<ShipmentDelivered> for NotificationsEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: ShipmentDelivered,
        _: &Envelope,
    ) -> Result<(), HandlerError> {
        Ok(self.0.about_order(txn, Kind::ShipmentDelivered, event.order_id, event.shipment_id, json!({})).await?)
    }
}

#[async_trait]
impl Handles<WebhookEndpointDisabled> for NotificationsEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: WebhookEndpointDisabled,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        Ok(self.0.webhook_disabled(txn, &event, cause.id).await?)
    }
}
