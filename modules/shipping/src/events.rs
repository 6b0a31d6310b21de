//! The events shipping consumes, and the events their handling publishes.
//!
//! Races, decided: shipping is the authority over cancelling a confirmed order. A customer's
//! `OrderCancellationRequested` cancels the pending shipment (`ShipmentCancelled`, on which orders
//! cancels the order and inventory releases its stock); if the request overtook `OrderConfirmed`,
//! a cancelled tombstone takes the shipment's place, so the late confirmation opens nothing; if
//! the shipment was dispatched first, the request is refused and the `ShipmentDispatched` already
//! sent ships the order. The status moves by conditional update under a row lock, so a dispatch
//! and a cancellation of one shipment never both succeed.
//!
//! Likewise shipping is the authority over a confirmed order's address. `OrderAddressChangeRequested`
//! changes a pending shipment's address (`ShipmentAddressChanged`, on which orders takes it) and is
//! refused by any other (`ShipmentAddressChangeRefused`, on which orders keeps the old one); a dispatch
//! and an address change of one shipment are ordered by its row lock, so the parcel always leaves
//! with the address orders ends up showing. A request that overtook `OrderConfirmed` is recorded,
//! and the shipment opens with it: `ShipmentCreated` carries that address and `ShipmentAddressChanged`
//! follows, as if the request had come second.

use async_trait::async_trait;
use contracts::{EventType, IntegrationEvent};
use kernel::{Envelope, EventHandler, HandlerError, Outbox};
use orders_contracts::{OrderAddressChangeRequested, OrderCancellationRequested, OrderCancelled, OrderConfirmed};
use sea_orm::DatabaseTransaction;
use shipping_contracts::{ShipmentAddressChangeRefused, ShipmentAddressChanged, ShipmentCancelled, ShipmentCreated};

use crate::domain::{Address, Line, OrderId, Shipment, ShipmentStatus};
use crate::service::{self, AddressOutcome, CancelOutcome, items};

/// The reasons a shipment is cancelled, as `ShipmentCancelled` gives them.
pub const CANCELLED_BY_CUSTOMER: &str = "the customer cancelled the order";
pub const ORDER_ENDED: &str = "the order was cancelled";

pub fn consumed() -> Vec<EventType> {
    vec![
        OrderConfirmed::event_type(),
        OrderCancellationRequested::event_type(),
        OrderCancelled::event_type(),
        OrderAddressChangeRequested::event_type(),
    ]
}

pub struct ShippingEvents {
    outbox: Outbox<shipping_contracts::Shipping>,
}

impl ShippingEvents {
    pub fn new(outbox: Outbox) -> Self {
        Self { outbox: outbox.bind() }
    }

    #[tracing::instrument(skip_all, fields(order.id = %event.order_id))]
    async fn order_confirmed(
        &self,
        txn: &DatabaseTransaction,
        cause: &Envelope,
        event: OrderConfirmed,
    ) -> Result<(), HandlerError> {
        let lines = event
            .lines
            .into_iter()
            .map(|l| Line { product_id: l.product_id, sku: l.sku, name: l.name, quantity: l.quantity })
            .collect();
        let order_id = OrderId::from(event.order_id);
        let Some((shipment, requested)) =
            service::open(txn, order_id, event.user_id, lines, event.shipping_address).await?
        else {
            return Ok(());
        };
        let created = ShipmentCreated {
            shipment_id: shipment.id.as_uuid(),
            order_id: event.order_id,
            user_id: event.user_id,
            items: items(&shipment),
            shipping_address: shipped_to(&shipment)?,
        };
        self.outbox.publish(txn, &created, Some(cause)).await?;
        if requested {
            // The customer's change came before the shipment: orders is waiting for this answer.
            self.address_changed(txn, cause, &shipment).await?;
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(order.id = %event.order_id))]
    async fn address_change_requested(
        &self,
        txn: &DatabaseTransaction,
        cause: &Envelope,
        event: OrderAddressChangeRequested,
    ) -> Result<(), HandlerError> {
        let order_id = OrderId::from(event.order_id);
        match service::change_address(txn, order_id, event.shipping_address).await? {
            AddressOutcome::Changed(shipment) => self.address_changed(txn, cause, &shipment).await,
            AddressOutcome::Refused(shipment) => {
                let refused = ShipmentAddressChangeRefused {
                    shipment_id: shipment.id.as_uuid(),
                    order_id: event.order_id,
                    reason: format!("the shipment is {}", shipment.status.as_str()),
                };
                Ok(self.outbox.publish(txn, &refused, Some(cause)).await?)
            }
            AddressOutcome::Unchanged | AddressOutcome::Recorded => Ok(()),
        }
    }

    async fn address_changed(
        &self,
        txn: &DatabaseTransaction,
        cause: &Envelope,
        s: &Shipment,
    ) -> Result<(), HandlerError> {
        let event = ShipmentAddressChanged {
            shipment_id: s.id.as_uuid(),
            order_id: s.order_id.as_uuid(),
            shipping_address: shipped_to(s)?,
        };
        Ok(self.outbox.publish(txn, &event, Some(cause)).await?)
    }

    #[tracing::instrument(skip_all, fields(order.id = %event.order_id))]
    async fn cancellation_requested(
        &self,
        txn: &DatabaseTransaction,
        cause: &Envelope,
        event: OrderCancellationRequested,
    ) -> Result<(), HandlerError> {
        let order_id = OrderId::from(event.order_id);
        match service::cancel(txn, order_id, event.user_id, CANCELLED_BY_CUSTOMER).await? {
            CancelOutcome::Cancelled(shipment) => self.cancelled(txn, cause, &shipment).await,
            CancelOutcome::AlreadyCancelled => Ok(()),
            CancelOutcome::Refused(status) => {
                tracing::info!(shipment.status = status.as_str(), "too late to cancel: the order ships");
                Ok(())
            }
        }
    }

    #[tracing::instrument(skip_all, fields(order.id = %event.order_id))]
    async fn order_cancelled(
        &self,
        txn: &DatabaseTransaction,
        cause: &Envelope,
        event: OrderCancelled,
    ) -> Result<(), HandlerError> {
        match service::cancel_pending(txn, OrderId::from(event.order_id), ORDER_ENDED).await? {
            Some(shipment) => self.cancelled(txn, cause, &shipment).await,
            None => Ok(()),
        }
    }

    async fn cancelled(&self, txn: &DatabaseTransaction, cause: &Envelope, s: &Shipment) -> Result<(), HandlerError> {
        debug_assert_eq!(s.status, ShipmentStatus::Cancelled);
        let event = ShipmentCancelled {
            shipment_id: s.id.as_uuid(),
            order_id: s.order_id.as_uuid(),
            reason: s.cancellation_reason.clone().unwrap_or_default(),
        };
        Ok(self.outbox.publish(txn, &event, Some(cause)).await?)
    }
}

#[async_trait]
impl EventHandler for ShippingEvents {
    async fn handle(&self, txn: &DatabaseTransaction, envelope: &Envelope) -> Result<(), HandlerError> {
        if envelope.is::<OrderConfirmed>() {
            self.order_confirmed(txn, envelope, envelope.decode()?).await
        } else if envelope.is::<OrderCancellationRequested>() {
            self.cancellation_requested(txn, envelope, envelope.decode()?).await
        } else if envelope.is::<OrderCancelled>() {
            self.order_cancelled(txn, envelope, envelope.decode()?).await
        } else if envelope.is::<OrderAddressChangeRequested>() {
            self.address_change_requested(txn, envelope, envelope.decode()?).await
        } else {
            Err(HandlerError::Malformed(format!(
                "shipping does not consume {}.{}.v{}",
                envelope.source, envelope.event, envelope.version
            )))
        }
    }
}

/// The address of an open shipment (only a tombstone has none).
fn shipped_to(s: &Shipment) -> Result<Address, HandlerError> {
    s.address.clone().ok_or_else(|| HandlerError::Failed(anyhow::anyhow!("shipment {} has no address", s.id)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::{AddressForm, Currency, Money, Quantity};
    use orders_contracts::{OrderItem, OrderLine};
    use sea_orm::sea_query::{Alias, Order, Query};
    use sea_orm::{ConnectionTrait, DatabaseConnection};
    use shipping_contracts::ShipmentDispatched;
    use uuid::Uuid;

    use crate::domain::{Carrier, TrackingNumber};
    use crate::persistence;
    use crate::service::tests::database;
    use crate::service::{Dispatch, Shipments};

    fn handler(db: &DatabaseConnection) -> ShippingEvents {
        ShippingEvents::new(Outbox::new("shipping", db.clone()))
    }

    /// Handles `event` in a transaction of its own, as the inbox would, and returns its envelope.
    async fn deliver<E: IntegrationEvent>(db: &DatabaseConnection, event: &E) -> Envelope {
        let envelope = Envelope::new(event).expect("serialises");
        let txn = kernel::db::begin_write(db).await.expect("a transaction");
        handler(db).handle(&txn, &envelope).await.expect("handled");
        txn.commit().await.expect("committed");
        envelope
    }

    /// What the module published, in order.
    async fn published(db: &DatabaseConnection) -> Vec<Envelope> {
        let select = Query::select()
            .column("payload")
            .from(Alias::new("shipping_outbox"))
            .order_by("seq", Order::Asc)
            .to_owned();
        db.query_all(&select)
            .await
            .expect("outbox rows")
            .into_iter()
            .map(|row| serde_json::from_str(&row.try_get::<String>("", "payload").expect("a payload")).expect("JSON"))
            .collect()
    }

    async fn shipment_of(db: &DatabaseConnection, order_id: Uuid) -> Option<Shipment> {
        persistence::find_by_order(db, OrderId::from(order_id), false).await.expect("loaded")
    }

    fn eur(amount: i64) -> Money {
        Money::new(amount, Currency::parse("EUR").expect("valid")).expect("valid")
    }

    fn two() -> Quantity {
        Quantity::new(2).expect("valid")
    }

    fn address(city: &str) -> Address {
        let form = AddressForm {
            name: Some("Ada".into()),
            line1: Some("1 Main St".into()),
            city: Some(city.into()),
            postal_code: Some("N1 9GU".into()),
            country: Some("GB".into()),
            ..Default::default()
        };
        Address::parse(&form).expect("valid")
    }

    fn confirmed(order_id: Uuid, product: Uuid) -> OrderConfirmed {
        OrderConfirmed {
            order_id,
            user_id: Uuid::now_v7(),
            lines: vec![OrderLine {
                product_id: product,
                sku: "MUG-1".into(),
                name: "Mug".into(),
                quantity: two(),
                unit_price: eur(500),
                line_total: eur(1000),
            }],
            shipping_address: address("London"),
            total: eur(1000),
        }
    }

    fn dispatch(tracking_number: &str) -> Dispatch {
        Dispatch {
            carrier: Carrier::parse("DHL").expect("valid"),
            tracking_number: TrackingNumber::parse(tracking_number).expect("valid"),
        }
    }

    fn requested(order_id: Uuid) -> OrderCancellationRequested {
        OrderCancellationRequested { order_id, user_id: Uuid::now_v7() }
    }

    fn order_cancelled(order_id: Uuid) -> OrderCancelled {
        OrderCancelled { order_id, user_id: Uuid::now_v7(), items: Vec::new() }
    }

    #[tokio::test]
    async fn a_confirmed_order_opens_one_pending_shipment_with_its_lines() {
        let (_dir, db) = database().await;
        let (order_id, product) = (Uuid::now_v7(), Uuid::now_v7());
        let cause = deliver(&db, &confirmed(order_id, product)).await;
        let shipment = shipment_of(&db, order_id).await.expect("a shipment");
        assert_eq!(shipment.status, ShipmentStatus::Pending);
        assert_eq!(shipment.address.as_ref().map(|a| a.city()), Some("London"));
        let events = published(&db).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].causation_id, Some(cause.id));
        let created = events[0].decode::<ShipmentCreated>().expect("ShipmentCreated");
        assert_eq!((created.shipment_id, created.order_id), (shipment.id.as_uuid(), order_id));
        assert_eq!(created.items, [OrderItem { product_id: product, quantity: two() }]);
        // The same order confirmed again (another envelope) opens nothing more.
        deliver(&db, &confirmed(order_id, product)).await;
        assert_eq!(shipment_of(&db, order_id).await, Some(shipment));
        assert_eq!(published(&db).await.len(), 1);
    }

    #[tokio::test]
    async fn a_cancellation_request_cancels_a_pending_shipment_once() {
        let (_dir, db) = database().await;
        let order_id = Uuid::now_v7();
        deliver(&db, &confirmed(order_id, Uuid::now_v7())).await;
        deliver(&db, &requested(order_id)).await;
        let cancelled = shipment_of(&db, order_id).await.expect("a shipment");
        assert_eq!(cancelled.status, ShipmentStatus::Cancelled);
        assert!(cancelled.timeline.cancelled_at.is_some());
        deliver(&db, &requested(order_id)).await;
        deliver(&db, &order_cancelled(order_id)).await;
        assert_eq!(shipment_of(&db, order_id).await, Some(cancelled.clone()));
        let events = published(&db).await;
        let cancellations: Vec<_> = events.iter().filter(|e| e.is::<ShipmentCancelled>()).collect();
        assert_eq!(cancellations.len(), 1);
        let event = cancellations[0].decode::<ShipmentCancelled>().expect("ShipmentCancelled");
        assert_eq!((event.shipment_id, event.reason.as_str()), (cancelled.id.as_uuid(), CANCELLED_BY_CUSTOMER));
        // Dispatching it is refused.
        let shipments = Shipments::new(db.clone(), Outbox::new("shipping", db.clone()));
        let dispatched = shipments.dispatch(cancelled.id, dispatch("T1")).await;
        assert!(matches!(dispatched, Err(service::ChangeShipmentError::WrongState(ShipmentStatus::Cancelled))));
    }

    #[tokio::test]
    async fn a_request_that_overtakes_the_confirmation_leaves_a_tombstone() {
        let (_dir, db) = database().await;
        let order_id = Uuid::now_v7();
        deliver(&db, &requested(order_id)).await;
        let tombstone = shipment_of(&db, order_id).await.expect("a tombstone");
        assert_eq!((tombstone.status, tombstone.address.as_ref()), (ShipmentStatus::Cancelled, None));
        deliver(&db, &confirmed(order_id, Uuid::now_v7())).await;
        assert_eq!(shipment_of(&db, order_id).await, Some(tombstone));
        let events = published(&db).await;
        assert_eq!(events.len(), 1, "ShipmentCancelled only, no ShipmentCreated");
        assert!(events[0].is::<ShipmentCancelled>());
    }

    #[tokio::test]
    async fn a_dispatched_shipment_refuses_every_cancellation() {
        let (_dir, db) = database().await;
        let order_id = Uuid::now_v7();
        deliver(&db, &confirmed(order_id, Uuid::now_v7())).await;
        let pending = shipment_of(&db, order_id).await.expect("a shipment");
        let shipments = Shipments::new(db.clone(), Outbox::new("shipping", db.clone()));
        let dispatched = shipments.dispatch(pending.id, dispatch("JD01")).await.expect("dispatched");
        deliver(&db, &requested(order_id)).await;
        deliver(&db, &order_cancelled(order_id)).await;
        assert_eq!(shipment_of(&db, order_id).await, Some(dispatched));
        let events = published(&db).await;
        assert_eq!(events.iter().filter(|e| e.is::<ShipmentCancelled>()).count(), 0);
        let sent = events.iter().find(|e| e.is::<ShipmentDispatched>()).expect("dispatched");
        let sent = sent.decode::<ShipmentDispatched>().expect("ShipmentDispatched");
        assert_eq!((sent.items.len(), sent.tracking_number.as_str()), (1, "JD01"));
    }

    #[tokio::test]
    async fn an_ended_order_cancels_its_pending_shipment_and_nothing_else() {
        let (_dir, db) = database().await;
        let order_id = Uuid::now_v7();
        deliver(&db, &order_cancelled(order_id)).await;
        assert_eq!(shipment_of(&db, order_id).await, None, "no tombstone: orders never confirms it after this");
        deliver(&db, &confirmed(order_id, Uuid::now_v7())).await;
        deliver(&db, &order_cancelled(order_id)).await;
        let shipment = shipment_of(&db, order_id).await.expect("a shipment");
        assert_eq!(
            (shipment.status, shipment.cancellation_reason.as_deref()),
            (ShipmentStatus::Cancelled, Some(ORDER_ENDED))
        );
    }

    #[tokio::test]
    async fn an_event_the_module_does_not_consume_is_malformed() {
        let (_dir, db) = database().await;
        let envelope = Envelope::new(&ShipmentCancelled {
            shipment_id: Uuid::now_v7(),
            order_id: Uuid::now_v7(),
            reason: String::new(),
        })
        .expect("JSON");
        let txn = kernel::db::begin_write(&db).await.expect("a transaction");
        let result = handler(&db).handle(&txn, &envelope).await;
        assert!(matches!(result, Err(HandlerError::Malformed(_))), "{result:?}");
    }

    fn move_to(order_id: Uuid, city: &str) -> OrderAddressChangeRequested {
        OrderAddressChangeRequested { order_id, user_id: Uuid::now_v7(), shipping_address: address(city) }
    }

    #[tokio::test]
    async fn a_pending_shipment_takes_a_new_address_and_a_dispatched_one_refuses() {
        let (_dir, db) = database().await;
        let order_id = Uuid::now_v7();
        deliver(&db, &confirmed(order_id, Uuid::now_v7())).await;
        let cause = deliver(&db, &move_to(order_id, "Bath")).await;
        let moved = shipment_of(&db, order_id).await.expect("a shipment");
        assert_eq!(moved.address.as_ref().map(|a| a.city()), Some("Bath"));
        let events = published(&db).await;
        assert_eq!((events.len(), events[1].causation_id), (2, Some(cause.id)));
        let changed = events[1].decode::<ShipmentAddressChanged>().expect("ShipmentAddressChanged");
        assert_eq!((changed.shipment_id, changed.shipping_address.city()), (moved.id.as_uuid(), "Bath"));
        // The same request again: the shipment has that address, nothing to do.
        deliver(&db, &move_to(order_id, "Bath")).await;
        assert_eq!((shipment_of(&db, order_id).await, published(&db).await.len()), (Some(moved.clone()), 2));

        let shipments = Shipments::new(db.clone(), Outbox::new("shipping", db.clone()));
        let dispatched = shipments.dispatch(moved.id, dispatch("T1")).await.expect("dispatched");
        deliver(&db, &move_to(order_id, "York")).await;
        assert_eq!(shipment_of(&db, order_id).await, Some(dispatched));
        let refused = published(&db).await.pop().expect("an answer");
        let refused = refused.decode::<ShipmentAddressChangeRefused>().expect("ShipmentAddressChangeRefused");
        assert_eq!((refused.order_id, refused.reason.as_str()), (order_id, "the shipment is dispatched"));
    }

    #[tokio::test]
    async fn a_request_that_overtakes_the_confirmation_opens_the_shipment_at_the_new_address() {
        let (_dir, db) = database().await;
        let order_id = Uuid::now_v7();
        deliver(&db, &move_to(order_id, "Bath")).await;
        assert_eq!(shipment_of(&db, order_id).await, None);
        assert!(published(&db).await.is_empty(), "answered when the shipment opens");
        deliver(&db, &confirmed(order_id, Uuid::now_v7())).await;
        let shipment = shipment_of(&db, order_id).await.expect("a shipment");
        assert_eq!(shipment.address.as_ref().map(|a| a.city()), Some("Bath"));
        let events = published(&db).await;
        assert_eq!(events.len(), 2);
        let created = events[0].decode::<ShipmentCreated>().expect("ShipmentCreated");
        let changed = events[1].decode::<ShipmentAddressChanged>().expect("ShipmentAddressChanged");
        assert_eq!((created.shipping_address.city(), changed.shipping_address.city()), ("Bath", "Bath"));
        // A repeat of the confirmation opens nothing and says nothing more.
        deliver(&db, &confirmed(order_id, Uuid::now_v7())).await;
        assert_eq!(published(&db).await.len(), 2);

        // Overtaken by a cancel too: the tombstone refuses, and nothing is left recorded.
        let other = Uuid::now_v7();
        deliver(&db, &move_to(other, "Bath")).await;
        deliver(&db, &requested(other)).await;
        deliver(&db, &confirmed(other, Uuid::now_v7())).await;
        let tombstone = shipment_of(&db, other).await.expect("a tombstone");
        assert_eq!((tombstone.status, tombstone.address), (ShipmentStatus::Cancelled, None));
        deliver(&db, &move_to(other, "York")).await;
        let refused = published(&db).await.pop().expect("an answer");
        assert!(refused.is::<ShipmentAddressChangeRefused>());
    }
}
