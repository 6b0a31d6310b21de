//! The events shipping consumes: each is decoded, its fields mapped to the arguments of its use
//! case in `service.rs` (where the races between them are decided), and handed over with the
//! transaction the inbox commits together with the record that the event was handled.

use async_trait::async_trait;
use kernel::{Envelope, EventRoutes, HandlerError, Handles};
use orders_contracts::{OrderAddressChangeRequested, OrderCancellationRequested, OrderCancelled, OrderConfirmed};
use sea_orm::DatabaseTransaction;

use crate::domain::{Line, OrderId};
use crate::service::Shipments;

/// What shipping consumes, and who handles each: its `consumes()` and its event handler.
pub fn routes() -> EventRoutes<ShippingEvents> {
    EventRoutes::new()
        .on::<OrderConfirmed>()
        .on::<OrderCancellationRequested>()
        .on::<OrderCancelled>()
        .on::<OrderAddressChangeRequested>()
}

pub struct ShippingEvents {
    shipments: Shipments,
}

impl ShippingEvents {
    pub fn new(shipments: Shipments) -> Self {
        Self { shipments }
    }
}

#[async_trait]
impl Handles<OrderConfirmed> for ShippingEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: OrderConfirmed,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        let lines = event
            .lines
            .into_iter()
            .map(|l| Line { product_id: l.product_id, sku: l.sku, name: l.name, quantity: l.quantity })
            .collect();
        let order_id = OrderId::from(event.order_id);
        self.shipments.open(txn, order_id, event.user_id, lines, event.shipping_address, cause).await?;
        Ok(())
    }
}

#[async_trait]
impl Handles<OrderAddressChangeRequested> for ShippingEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: OrderAddressChangeRequested,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        self.shipments.change_address(txn, OrderId::from(event.order_id), event.shipping_address, cause).await?;
        Ok(())
    }
}

#[async_trait]
impl Handles<OrderCancellationRequested> for ShippingEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: OrderCancellationRequested,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        self.shipments.cancel(txn, OrderId::from(event.order_id), event.user_id, cause).await?;
        Ok(())
    }
}

#[async_trait]
impl Handles<OrderCancelled> for ShippingEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: OrderCancelled,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        self.shipments.cancel_pending(txn, OrderId::from(event.order_id), cause).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::{Address, AddressForm, Currency, IntegrationEvent, Money, Quantity};
    use kernel::EventHandler;
    use kernel::testing::{Engine, TestDatabase, published, published_of};
    use orders_contracts::{OrderItem, OrderLine};
    use sea_orm::DatabaseConnection;
    use shipping_contracts::{
        ShipmentAddressChangeRefused, ShipmentAddressChanged, ShipmentCancelled, ShipmentCreated, ShipmentDispatched,
    };
    use std::sync::Arc;
    use uuid::Uuid;

    use crate::NAME;
    use crate::domain::{Carrier, Shipment, ShipmentStatus, TrackingNumber};
    use crate::persistence;
    use crate::service::tests::{migrated, shipments};
    use crate::service::{self, CANCELLED_BY_CUSTOMER, Dispatch, ORDER_ENDED};

    /// The module's event handler, as the inbox calls it.
    fn handler(db: &DatabaseConnection) -> Arc<dyn EventHandler> {
        routes().bind(ShippingEvents::new(shipments(db)))
    }

    /// Handles `event` in a transaction of its own, as the inbox would, and returns its envelope.
    async fn deliver<E: IntegrationEvent>(db: &DatabaseConnection, event: &E) -> Envelope {
        let envelope = Envelope::new(event).expect("serialises");
        let txn = kernel::db::begin_write(db).await.expect("a transaction");
        handler(db).handle(&txn, &envelope).await.expect("handled");
        txn.commit().await.expect("committed");
        envelope
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
        let database = TestDatabase::fresh(Engine::Sqlite).await.expect("SQLite needs no server");
        let db = migrated(&database).await;
        let (order_id, product) = (Uuid::now_v7(), Uuid::now_v7());
        let cause = deliver(&db, &confirmed(order_id, product)).await;
        let shipment = shipment_of(&db, order_id).await.expect("a shipment");
        assert_eq!(shipment.status, ShipmentStatus::Pending);
        assert_eq!(shipment.address.as_ref().map(|a| a.city()), Some("London"));
        let events = published(&db, NAME).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].causation_id, Some(cause.id));
        let created = events[0].decode::<ShipmentCreated>().expect("ShipmentCreated");
        assert_eq!((created.shipment_id, created.order_id), (shipment.id.as_uuid(), order_id));
        assert_eq!(created.items, [OrderItem { product_id: product, quantity: two() }]);
        // The same order confirmed again (another envelope) opens nothing more.
        deliver(&db, &confirmed(order_id, product)).await;
        assert_eq!(shipment_of(&db, order_id).await, Some(shipment));
        assert_eq!(published(&db, NAME).await.len(), 1);
    }

    #[tokio::test]
    async fn a_cancellation_request_cancels_a_pending_shipment_once() {
        let database = TestDatabase::fresh(Engine::Sqlite).await.expect("SQLite needs no server");
        let db = migrated(&database).await;
        let order_id = Uuid::now_v7();
        deliver(&db, &confirmed(order_id, Uuid::now_v7())).await;
        deliver(&db, &requested(order_id)).await;
        let cancelled = shipment_of(&db, order_id).await.expect("a shipment");
        assert_eq!(cancelled.status, ShipmentStatus::Cancelled);
        assert!(cancelled.timeline.cancelled_at.is_some());
        deliver(&db, &requested(order_id)).await;
        deliver(&db, &order_cancelled(order_id)).await;
        assert_eq!(shipment_of(&db, order_id).await, Some(cancelled.clone()));
        let cancellations = published_of::<ShipmentCancelled>(&db, NAME).await;
        assert_eq!(cancellations.len(), 1);
        let event = &cancellations[0];
        assert_eq!((event.shipment_id, event.reason.as_str()), (cancelled.id.as_uuid(), CANCELLED_BY_CUSTOMER));
        // Dispatching it is refused.
        let shipments = shipments(&db);
        let dispatched = shipments.dispatch(cancelled.id, dispatch("T1")).await;
        assert!(matches!(dispatched, Err(service::ChangeShipmentError::WrongState(ShipmentStatus::Cancelled))));
    }

    #[tokio::test]
    async fn a_request_that_overtakes_the_confirmation_leaves_a_tombstone() {
        let database = TestDatabase::fresh(Engine::Sqlite).await.expect("SQLite needs no server");
        let db = migrated(&database).await;
        let order_id = Uuid::now_v7();
        deliver(&db, &requested(order_id)).await;
        let tombstone = shipment_of(&db, order_id).await.expect("a tombstone");
        assert_eq!((tombstone.status, tombstone.address.as_ref()), (ShipmentStatus::Cancelled, None));
        deliver(&db, &confirmed(order_id, Uuid::now_v7())).await;
        assert_eq!(shipment_of(&db, order_id).await, Some(tombstone));
        let events = published(&db, NAME).await;
        assert_eq!(events.len(), 1, "ShipmentCancelled only, no ShipmentCreated");
        assert!(events[0].is::<ShipmentCancelled>());
    }

    #[tokio::test]
    async fn a_dispatched_shipment_refuses_every_cancellation() {
        let database = TestDatabase::fresh(Engine::Sqlite).await.expect("SQLite needs no server");
        let db = migrated(&database).await;
        let order_id = Uuid::now_v7();
        deliver(&db, &confirmed(order_id, Uuid::now_v7())).await;
        let pending = shipment_of(&db, order_id).await.expect("a shipment");
        let shipments = shipments(&db);
        let dispatched = shipments.dispatch(pending.id, dispatch("JD01")).await.expect("dispatched");
        deliver(&db, &requested(order_id)).await;
        deliver(&db, &order_cancelled(order_id)).await;
        assert_eq!(shipment_of(&db, order_id).await, Some(dispatched));
        assert!(published_of::<ShipmentCancelled>(&db, NAME).await.is_empty());
        let sent = published_of::<ShipmentDispatched>(&db, NAME).await.pop().expect("dispatched");
        assert_eq!((sent.items.len(), sent.tracking_number.as_str()), (1, "JD01"));
    }

    #[tokio::test]
    async fn an_ended_order_cancels_its_pending_shipment_and_nothing_else() {
        let database = TestDatabase::fresh(Engine::Sqlite).await.expect("SQLite needs no server");
        let db = migrated(&database).await;
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
        let database = TestDatabase::fresh(Engine::Sqlite).await.expect("SQLite needs no server");
        let db = migrated(&database).await;
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
        let database = TestDatabase::fresh(Engine::Sqlite).await.expect("SQLite needs no server");
        let db = migrated(&database).await;
        let order_id = Uuid::now_v7();
        deliver(&db, &confirmed(order_id, Uuid::now_v7())).await;
        let cause = deliver(&db, &move_to(order_id, "Bath")).await;
        let moved = shipment_of(&db, order_id).await.expect("a shipment");
        assert_eq!(moved.address.as_ref().map(|a| a.city()), Some("Bath"));
        let events = published(&db, NAME).await;
        assert_eq!((events.len(), events[1].causation_id), (2, Some(cause.id)));
        let changed = events[1].decode::<ShipmentAddressChanged>().expect("ShipmentAddressChanged");
        assert_eq!((changed.shipment_id, changed.shipping_address.city()), (moved.id.as_uuid(), "Bath"));
        // The same request again: the shipment has that address, nothing to do.
        deliver(&db, &move_to(order_id, "Bath")).await;
        assert_eq!((shipment_of(&db, order_id).await, published(&db, NAME).await.len()), (Some(moved.clone()), 2));

        let shipments = shipments(&db);
        let dispatched = shipments.dispatch(moved.id, dispatch("T1")).await.expect("dispatched");
        deliver(&db, &move_to(order_id, "York")).await;
        assert_eq!(shipment_of(&db, order_id).await, Some(dispatched));
        let refused = published(&db, NAME).await.pop().expect("an answer");
        let refused = refused.decode::<ShipmentAddressChangeRefused>().expect("ShipmentAddressChangeRefused");
        assert_eq!((refused.order_id, refused.reason.as_str()), (order_id, "the shipment is dispatched"));
    }

    #[tokio::test]
    async fn a_request_that_overtakes_the_confirmation_opens_the_shipment_at_the_new_address() {
        let database = TestDatabase::fresh(Engine::Sqlite).await.expect("SQLite needs no server");
        let db = migrated(&database).await;
        let order_id = Uuid::now_v7();
        deliver(&db, &move_to(order_id, "Bath")).await;
        assert_eq!(shipment_of(&db, order_id).await, None);
        assert!(published(&db, NAME).await.is_empty(), "answered when the shipment opens");
        deliver(&db, &confirmed(order_id, Uuid::now_v7())).await;
        let shipment = shipment_of(&db, order_id).await.expect("a shipment");
        assert_eq!(shipment.address.as_ref().map(|a| a.city()), Some("Bath"));
        let events = published(&db, NAME).await;
        assert_eq!(events.len(), 2);
        let created = events[0].decode::<ShipmentCreated>().expect("ShipmentCreated");
        let changed = events[1].decode::<ShipmentAddressChanged>().expect("ShipmentAddressChanged");
        assert_eq!((created.shipping_address.city(), changed.shipping_address.city()), ("Bath", "Bath"));
        // A repeat of the confirmation opens nothing and says nothing more.
        deliver(&db, &confirmed(order_id, Uuid::now_v7())).await;
        assert_eq!(published(&db, NAME).await.len(), 2);

        // Overtaken by a cancel too: the tombstone refuses, and nothing is left recorded.
        let other = Uuid::now_v7();
        deliver(&db, &move_to(other, "Bath")).await;
        deliver(&db, &requested(other)).await;
        deliver(&db, &confirmed(other, Uuid::now_v7())).await;
        let tombstone = shipment_of(&db, other).await.expect("a tombstone");
        assert_eq!((tombstone.status, tombstone.address), (ShipmentStatus::Cancelled, None));
        deliver(&db, &move_to(other, "York")).await;
        let refused = published(&db, NAME).await.pop().expect("an answer");
        assert!(refused.is::<ShipmentAddressChangeRefused>());
    }
}
