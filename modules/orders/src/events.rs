//! The events the orders module consumes: the catalog's products (kept as a local copy),
//! inventory's answers to `OrderCreated`, and shipping's news of the order's shipment.
//!
//! Races, decided: an order cancelled while its reservation was under way ignores the late
//! `StockReserved` or `StockReservationFailed`. Inventory handles `OrderCancelled` after the
//! `OrderCreated` it follows (one producer's events arrive in order; a cancel that overtakes its
//! order leaves a tombstone there), so whatever it reserved is released: an order that ends
//! without shipping never keeps stock. Once confirmed, the order ends as shipping says: it is
//! `cancelled` (and `OrderCancelled` releases its stock) only on `ShipmentCancelled`, and a
//! `ShipmentDispatched` ships it even while `cancelling` — the dispatch won that race.

use async_trait::async_trait;
use catalog_contracts::{ProductCreated, ProductDiscontinued, ProductSnapshot, ProductUpdated};
use contracts::{EventType, IntegrationEvent, ProductStatus};
use inventory_contracts::{StockReservationFailed, StockReserved};
use kernel::{Envelope, EventHandler, HandlerError, Outbox};
use orders_contracts::{self as events, OrderLine as LineEvent};
use sea_orm::DatabaseTransaction;
use shipping_contracts::{
    ShipmentAddressChangeRefused, ShipmentAddressChanged, ShipmentCancelled, ShipmentDelivered, ShipmentDispatched,
};

use crate::domain::{Address, Order, OrderEvent, OrderId, OrderStatus};
use crate::persistence::{self, ProductCopy};
use crate::service::{self, cancelled};

pub fn consumed() -> Vec<EventType> {
    vec![
        ProductCreated::event_type(),
        ProductUpdated::event_type(),
        ProductDiscontinued::event_type(),
        StockReserved::event_type(),
        StockReservationFailed::event_type(),
        ShipmentDispatched::event_type(),
        ShipmentDelivered::event_type(),
        ShipmentCancelled::event_type(),
        ShipmentAddressChanged::event_type(),
        ShipmentAddressChangeRefused::event_type(),
    ]
}

pub struct OrdersHandler {
    outbox: Outbox<events::Orders>,
}

impl OrdersHandler {
    pub fn new(outbox: Outbox) -> Self {
        Self { outbox: outbox.bind() }
    }
}

#[async_trait]
impl EventHandler for OrdersHandler {
    async fn handle(&self, txn: &DatabaseTransaction, envelope: &Envelope) -> Result<(), HandlerError> {
        if envelope.is::<ProductCreated>() {
            Ok(service::copy_product(txn, &product_copy(envelope.decode::<ProductCreated>()?.0)?).await?)
        } else if envelope.is::<ProductUpdated>() {
            Ok(service::copy_product(txn, &product_copy(envelope.decode::<ProductUpdated>()?.0)?).await?)
        } else if envelope.is::<ProductDiscontinued>() {
            let event = envelope.decode::<ProductDiscontinued>()?;
            Ok(service::discontinue_product(txn, event.product_id, &event.sku, version(event.version)?).await?)
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
        } else if envelope.is::<ShipmentDispatched>() {
            let event = envelope.decode::<ShipmentDispatched>()?;
            self.shipment(txn, envelope, event.order_id.into(), OrderEvent::Ship).await
        } else if envelope.is::<ShipmentDelivered>() {
            let event = envelope.decode::<ShipmentDelivered>()?;
            self.shipment(txn, envelope, event.order_id.into(), OrderEvent::Deliver).await
        } else if envelope.is::<ShipmentCancelled>() {
            let event = envelope.decode::<ShipmentCancelled>()?;
            self.shipment(txn, envelope, event.order_id.into(), OrderEvent::ShipmentCancelled).await
        } else if envelope.is::<ShipmentAddressChanged>() {
            let event = envelope.decode::<ShipmentAddressChanged>()?;
            address_answer(txn, event.order_id.into(), Some(event.shipping_address)).await
        } else if envelope.is::<ShipmentAddressChangeRefused>() {
            let event = envelope.decode::<ShipmentAddressChangeRefused>()?;
            tracing::info!(order.id = %event.order_id, reason = %event.reason, "address change refused by shipping");
            address_answer(txn, event.order_id.into(), None).await
        } else {
            Err(HandlerError::Malformed(format!("orders does not consume {}", envelope.event)))
        }
    }
}

/// Shipping's answer to the order's address change: the shipment's address becomes the order's
/// (`Some`), or stays as it was (`None`); either way the request is settled. Orders asks one change
/// at a time, so an answer with no request waiting is a repeat, and changes nothing.
#[tracing::instrument(skip_all, fields(order.id = %id, changed = new.is_some()))]
async fn address_answer(txn: &DatabaseTransaction, id: OrderId, new: Option<Address>) -> Result<(), HandlerError> {
    let Some(mut order) = persistence::find(txn, id, true).await? else {
        return Err(HandlerError::Malformed(format!("no order {id}")));
    };
    if order.address_change.take().is_none() {
        tracing::info!("no address change waiting; ignored");
        return Ok(());
    }
    if let Some(address) = new {
        order.shipping_address = address;
    }
    order.updated_at = kernel::db::now();
    persistence::update_order(txn, &order).await?;
    tracing::info!("address change settled");
    Ok(())
}

fn product_copy(p: ProductSnapshot) -> Result<ProductCopy, HandlerError> {
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

    /// Follows the order's shipment: shipped, delivered, or cancelled (and then `OrderCancelled`
    /// releases its stock). A repeat finds the order moved on already and does nothing.
    #[tracing::instrument(skip_all, fields(order.id = %id, shipment = ?event))]
    async fn shipment(
        &self,
        txn: &DatabaseTransaction,
        cause: &Envelope,
        id: OrderId,
        event: OrderEvent,
    ) -> Result<(), HandlerError> {
        let Some(mut order) = persistence::find(txn, id, true).await? else {
            return Err(HandlerError::Malformed(format!("no order {id}")));
        };
        if event == OrderEvent::Deliver && matches!(order.status, OrderStatus::Confirmed | OrderStatus::Cancelling) {
            // Delivered before its dispatch was handled here (that one is being retried): wait for it.
            return Err(HandlerError::Failed(anyhow::anyhow!("order {id} is delivered before it shipped; retry")));
        }
        if let Err(e) = order.apply(event, kernel::db::now()) {
            tracing::info!(reason = %e, "shipment news for an order that moved on; ignored");
            return Ok(());
        }
        if order.status == OrderStatus::Cancelled {
            // Nothing ships: an address change still waiting is moot.
            order.address_change = None;
        }
        persistence::update_order(txn, &order).await?;
        if order.status == OrderStatus::Cancelled {
            self.outbox.publish(txn, &cancelled(&order), Some(cause)).await?;
        }
        tracing::info!(status = order.status.as_str(), "order follows its shipment");
        Ok(())
    }
}

fn confirmed(order: &Order) -> events::OrderConfirmed {
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
                quantity: l.quantity,
                unit_price: l.unit_price,
                line_total: l.total(),
            })
            .collect(),
        shipping_address: order.shipping_address.clone(),
        total: order.total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::{AddressForm, Currency};
    use kernel::{Principal, Role};
    use migrations::MigratorTrait;
    use orders_contracts::OrderCancellationRequested;
    use sea_orm::sea_query::{Alias, Order as SortOrder, Query};
    use sea_orm::{ConnectionTrait, DatabaseConnection};
    use uuid::Uuid;

    use crate::domain::{Money, OrderLimits, OrderLine, Quantity, Timeline};
    use crate::service::{AddressChanged, Cancelled, ChangeOrderError, Orders};

    async fn database() -> (tempfile::TempDir, DatabaseConnection) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let url = format!("sqlite://{}/orders.db?mode=rwc", dir.path().display());
        let db = kernel::db::connect(&url, 5).await.expect("a database");
        migrations::Migrator::up(&db, None).await.expect("migrated");
        (dir, db)
    }

    fn outbox(db: &DatabaseConnection) -> Outbox {
        Outbox::new("orders", db.clone())
    }

    fn limits() -> OrderLimits {
        OrderLimits::new(100, 1000).expect("valid")
    }

    /// A pending order of two units, saved.
    async fn placed(db: &DatabaseConnection) -> Order {
        let now = kernel::db::now();
        let order = Order {
            id: OrderId::generate(),
            user_id: Uuid::now_v7(),
            status: OrderStatus::Pending,
            lines: vec![OrderLine {
                product_id: Uuid::now_v7(),
                sku: "MUG-1".into(),
                name: "Mug".into(),
                quantity: Quantity::parse(2).expect("valid"),
                unit_price: eur(500),
            }],
            shipping_address: address("London"),
            address_change: None,
            total: eur(1000),
            rejection_reason: None,
            created_at: now,
            updated_at: now,
            timeline: Timeline::default(),
        };
        persistence::insert_order(db, &order).await.expect("inserted");
        order
    }

    fn eur(amount: i64) -> Money {
        Money::new(amount, Currency::parse("EUR").expect("valid")).expect("valid")
    }

    fn address(city: &str) -> Address {
        let form = AddressForm {
            name: Some("Ada".into()),
            line1: Some("1 Main St".into()),
            city: Some(city.into()),
            postal_code: Some("N1".into()),
            country: Some("GB".into()),
            ..Default::default()
        };
        Address::parse(&form).expect("valid")
    }

    async fn deliver<E: IntegrationEvent>(db: &DatabaseConnection, event: &E) -> Result<(), HandlerError> {
        let envelope = Envelope::new(event).expect("serialises");
        let txn = kernel::db::begin_write(db).await.expect("a transaction");
        let handled = OrdersHandler::new(outbox(db)).handle(&txn, &envelope).await;
        txn.commit().await.expect("committed");
        handled
    }

    async fn reload(db: &DatabaseConnection, order: &Order) -> Order {
        persistence::find(db, order.id, false).await.expect("loaded").expect("the order")
    }

    /// What the module published, in order.
    async fn published(db: &DatabaseConnection) -> Vec<Envelope> {
        let select = Query::select()
            .column("payload")
            .from(Alias::new("orders_outbox"))
            .order_by("seq", SortOrder::Asc)
            .to_owned();
        db.query_all(&select)
            .await
            .expect("outbox rows")
            .into_iter()
            .map(|row| serde_json::from_str(&row.try_get::<String>("", "payload").expect("a payload")).expect("JSON"))
            .collect()
    }

    fn reserved(order: &Order) -> StockReserved {
        StockReserved { order_id: order.id.as_uuid(), items: Vec::new() }
    }

    fn dispatched(order: &Order) -> ShipmentDispatched {
        ShipmentDispatched {
            shipment_id: Uuid::now_v7(),
            order_id: order.id.as_uuid(),
            items: Vec::new(),
            carrier: "DHL".into(),
            tracking_number: "T1".into(),
        }
    }

    fn shipment_cancelled(order: &Order) -> ShipmentCancelled {
        ShipmentCancelled { shipment_id: Uuid::now_v7(), order_id: order.id.as_uuid(), reason: "asked".into() }
    }

    fn owner(order: &Order) -> Principal {
        Principal { user_id: order.user_id, role: Role::Customer }
    }

    fn snapshot(product_id: Uuid, name: &str, status: &str, version: u64) -> ProductSnapshot {
        ProductSnapshot {
            product_id,
            sku: "MUG-1".into(),
            name: name.into(),
            description: String::new(),
            price: eur(500),
            status: ProductStatus::parse(status).expect("a status"),
            version,
        }
    }

    /// `(name, active, version)` of the copy.
    async fn copy(db: &DatabaseConnection, product_id: Uuid) -> (String, bool, i64) {
        let copies = persistence::products(db, &[product_id]).await.expect("read");
        let copy = copies.into_iter().next().expect("a copy");
        (copy.name, copy.active, copy.version)
    }

    #[tokio::test]
    async fn events_from_before_versions_apply_only_until_a_versioned_one_has() {
        let (_dir, db) = database().await;
        let id = Uuid::now_v7();
        deliver(&db, &ProductCreated(snapshot(id, "Mug", "active", 0))).await.expect("handled");
        // An old catalog's update: the copy has seen no versioned event, the last one wins as before.
        deliver(&db, &ProductUpdated(snapshot(id, "Old catalog", "active", 0))).await.expect("handled");
        assert_eq!(copy(&db, id).await, ("Old catalog".into(), true, 0));
        deliver(&db, &ProductUpdated(snapshot(id, "New catalog", "active", 7))).await.expect("handled");
        deliver(&db, &ProductUpdated(snapshot(id, "Late and old", "active", 0))).await.expect("handled");
        deliver(&db, &ProductUpdated(snapshot(id, "Same version", "active", 7))).await.expect("handled");
        assert_eq!(copy(&db, id).await, ("New catalog".into(), true, 7));

        let legacy = Uuid::now_v7();
        deliver(&db, &ProductCreated(snapshot(legacy, "Mug", "active", 0))).await.expect("handled");
        let gone = ProductDiscontinued { product_id: legacy, sku: "MUG-1".into(), version: 0 };
        deliver(&db, &gone).await.expect("handled");
        deliver(&db, &ProductUpdated(snapshot(legacy, "Renamed", "active", 0))).await.expect("handled");
        assert_eq!(copy(&db, legacy).await, ("Renamed".into(), false, 0), "never reactivated");
    }

    #[tokio::test]
    async fn a_discontinuation_ahead_of_its_creation_keeps_the_product_discontinued() {
        let (_dir, db) = database().await;
        let id = Uuid::now_v7();
        let gone = ProductDiscontinued { product_id: id, sku: "MUG-1".into(), version: 2 };
        deliver(&db, &gone).await.expect("handled");
        deliver(&db, &ProductCreated(snapshot(id, "Mug", "active", 1))).await.expect("handled");
        assert_eq!(copy(&db, id).await, ("MUG-1".into(), false, 2), "the placeholder stays");
        deliver(&db, &ProductUpdated(snapshot(id, "Mug", "discontinued", 3))).await.expect("handled");
        assert_eq!(copy(&db, id).await, ("Mug".into(), false, 3));
        deliver(&db, &gone).await.expect("handled");
        assert_eq!(copy(&db, id).await, ("Mug".into(), false, 3), "an older discontinuation changes nothing");
    }

    #[tokio::test]
    async fn a_confirmed_order_is_only_cancelling_until_shipping_cancels_its_shipment() {
        let (_dir, db) = database().await;
        let orders = Orders::new(db.clone(), outbox(&db), limits());
        let order = placed(&db).await;
        deliver(&db, &reserved(&order)).await.expect("handled");
        let Ok(Cancelled::Requested(cancelling)) = orders.cancel(order.id, &owner(&order)).await else {
            panic!("a confirmed order is not cancelled at once")
        };
        assert_eq!(cancelling.status, OrderStatus::Cancelling);
        assert!(cancelling.timeline.cancellation_requested_at.is_some());
        // Asking again changes nothing and publishes nothing more.
        assert!(matches!(orders.cancel(order.id, &owner(&order)).await, Ok(Cancelled::Requested(_))));
        assert_eq!(reload(&db, &order).await, cancelling);
        let requests = published(&db).await.into_iter().filter(|e| e.is::<OrderCancellationRequested>()).count();
        assert_eq!(requests, 1);

        deliver(&db, &shipment_cancelled(&order)).await.expect("handled");
        deliver(&db, &shipment_cancelled(&order)).await.expect("handled");
        let cancelled = reload(&db, &order).await;
        assert_eq!(cancelled.status, OrderStatus::Cancelled);
        assert!(cancelled.timeline.cancelled_at.is_some());
        let events = published(&db).await;
        let released: Vec<_> = events.iter().filter(|e| e.is::<events::OrderCancelled>()).collect();
        assert_eq!(released.len(), 1, "one OrderCancelled for two ShipmentCancelled");
        let released = released[0].decode::<events::OrderCancelled>().expect("OrderCancelled");
        assert_eq!(released.items[0].quantity.get(), 2);
        assert!(matches!(orders.cancel(order.id, &owner(&order)).await, Err(ChangeOrderError::WrongState(_))));
    }

    #[tokio::test]
    async fn a_dispatch_ships_a_cancelling_order_and_nothing_is_released() {
        let (_dir, db) = database().await;
        let orders = Orders::new(db.clone(), outbox(&db), limits());
        let order = placed(&db).await;
        deliver(&db, &reserved(&order)).await.expect("handled");
        orders.cancel(order.id, &owner(&order)).await.expect("requested");
        deliver(&db, &dispatched(&order)).await.expect("handled");
        let shipped = reload(&db, &order).await;
        assert_eq!(shipped.status, OrderStatus::Shipped);
        assert!(shipped.timeline.shipped_at.is_some());
        // A late cancellation of the shipment (it cannot come, shipping refuses) changes nothing.
        deliver(&db, &shipment_cancelled(&order)).await.expect("handled");
        assert_eq!(reload(&db, &order).await, shipped);
        assert!(!published(&db).await.iter().any(|e| e.is::<events::OrderCancelled>()));
        assert!(matches!(
            orders.cancel(order.id, &owner(&order)).await,
            Err(ChangeOrderError::WrongState(OrderStatus::Shipped))
        ));
        let delivered = ShipmentDelivered { shipment_id: Uuid::now_v7(), order_id: order.id.as_uuid() };
        deliver(&db, &delivered).await.expect("handled");
        deliver(&db, &delivered).await.expect("handled");
        let done = reload(&db, &order).await;
        assert_eq!(done.status, OrderStatus::Delivered);
        assert_eq!(done.timeline.shipped_at, shipped.timeline.shipped_at);
    }

    #[tokio::test]
    async fn a_pending_order_is_cancelled_at_once_and_a_delivery_before_its_dispatch_waits() {
        let (_dir, db) = database().await;
        let orders = Orders::new(db.clone(), outbox(&db), limits());
        let pending = placed(&db).await;
        let Ok(Cancelled::Now(cancelled)) = orders.cancel(pending.id, &owner(&pending)).await else {
            panic!("a pending order is cancelled at once")
        };
        assert_eq!(cancelled.status, OrderStatus::Cancelled);
        assert_eq!(published(&db).await.iter().filter(|e| e.is::<events::OrderCancelled>()).count(), 1);

        let confirmed = placed(&db).await;
        deliver(&db, &reserved(&confirmed)).await.expect("handled");
        let early = ShipmentDelivered { shipment_id: Uuid::now_v7(), order_id: confirmed.id.as_uuid() };
        assert!(matches!(deliver(&db, &early).await, Err(HandlerError::Failed(_))), "retried later");
        assert_eq!(reload(&db, &confirmed).await.status, OrderStatus::Confirmed);
    }

    fn bath() -> Address {
        address("Bath")
    }

    #[tokio::test]
    async fn a_confirmed_orders_address_changes_only_when_shipping_says_so() {
        let (_dir, db) = database().await;
        let orders = Orders::new(db.clone(), outbox(&db), limits());
        let pending = placed(&db).await;
        let Ok(AddressChanged::Now(moved)) = orders.change_address(pending.id, &owner(&pending), bath()).await else {
            panic!("a pending order moves at once")
        };
        assert_eq!((moved.shipping_address.city(), moved.address_change.as_ref()), ("Bath", None));
        assert!(published(&db).await.is_empty(), "nothing to ask");

        let order = placed(&db).await;
        deliver(&db, &reserved(&order)).await.expect("handled");
        let Ok(AddressChanged::Requested(requested)) = orders.change_address(order.id, &owner(&order), bath()).await
        else {
            panic!("a confirmed order asks shipping")
        };
        assert_eq!(requested.shipping_address.city(), "London");
        assert_eq!(requested.address_change.as_ref().map(|c| c.address.city()), Some("Bath"));
        assert_eq!(reload(&db, &order).await, requested);
        let asked: Vec<_> =
            published(&db).await.into_iter().filter(|e| e.is::<events::OrderAddressChangeRequested>()).collect();
        assert_eq!(asked.len(), 1);
        let asked = asked[0].decode::<events::OrderAddressChangeRequested>().expect("the request");
        assert_eq!((asked.order_id, asked.shipping_address.city()), (order.id.as_uuid(), "Bath"));
        // One change at a time.
        assert!(matches!(
            orders.change_address(order.id, &owner(&order), placed(&db).await.shipping_address).await,
            Err(ChangeOrderError::AddressChangePending)
        ));

        let changed = ShipmentAddressChanged {
            shipment_id: Uuid::now_v7(),
            order_id: order.id.as_uuid(),
            shipping_address: asked.shipping_address.clone(),
        };
        deliver(&db, &changed).await.expect("handled");
        let moved = reload(&db, &order).await;
        assert_eq!((moved.shipping_address.city(), moved.address_change.as_ref()), ("Bath", None));
        // A copy finds no request waiting: nothing changes.
        let stale = ShipmentAddressChanged { shipping_address: order.shipping_address.clone(), ..changed };
        deliver(&db, &stale).await.expect("handled");
        assert_eq!(reload(&db, &order).await, moved);

        let Ok(AddressChanged::Requested(_)) =
            orders.change_address(order.id, &owner(&order), order.shipping_address.clone()).await
        else {
            panic!("asked again")
        };
        let refused = ShipmentAddressChangeRefused {
            shipment_id: Uuid::now_v7(),
            order_id: order.id.as_uuid(),
            reason: "late".into(),
        };
        deliver(&db, &refused).await.expect("handled");
        let kept = reload(&db, &order).await;
        assert_eq!((kept.shipping_address.city(), kept.address_change.as_ref()), ("Bath", None));
        deliver(&db, &refused).await.expect("handled");
        assert_eq!(reload(&db, &order).await, kept);
    }
}
