//! The events the orders module consumes — the catalog's products (kept as a local copy), the
//! basket's checkouts (each becomes an order), inventory's answers to `OrderCreated`, payments' news of the order's payment, and shipping's
//! news of the order's shipment — each decoded into the arguments of its use case in `service.rs`,
//! which decides what it does.

use async_trait::async_trait;
use basket_contracts::BasketCheckedOut;
use catalog_contracts::{ProductCreated, ProductDiscontinued, ProductSnapshot, ProductUpdated};
use contracts::ProductStatus;
use inventory_contracts::{StockReservationFailed, StockReserved};
use kernel::{Envelope, EventRoutes, HandlerError, Handles};
use payments_contracts::{PaymentActionRequired, PaymentFailed, PaymentRefunded, PaymentSucceeded};
use sea_orm::DatabaseTransaction;
use shipping_contracts::{
    ShipmentAddressChangeRefused, ShipmentAddressChanged, ShipmentCancelled, ShipmentDelivered, ShipmentDispatched,
};

use crate::domain::{OrderLine, PaymentMethod};
use crate::service::{
    AddressAnswer, CheckedOut, OrderNewsError, Orders, PaymentNews, ProductCopy, ShipmentNews, Shortage, StockAnswer,
};

/// The events orders consumes (its `consumes()`), each handled by [`OrdersEvents`].
pub fn routes() -> EventRoutes<OrdersEvents> {
    EventRoutes::new()
        .on::<ProductCreated>()
        .on::<ProductUpdated>()
        .on::<ProductDiscontinued>()
        .on::<BasketCheckedOut>()
        .on::<StockReserved>()
        .on::<StockReservationFailed>()
        .on::<PaymentActionRequired>()
        .on::<PaymentSucceeded>()
        .on::<PaymentFailed>()
        .on::<PaymentRefunded>()
        .on::<ShipmentDispatched>()
        .on::<ShipmentDelivered>()
        .on::<ShipmentCancelled>()
        .on::<ShipmentAddressChanged>()
        .on::<ShipmentAddressChangeRefused>()
}

/// Hands each consumed event to its use case.
pub struct OrdersEvents {
    orders: Orders,
}

impl OrdersEvents {
    pub fn new(orders: Orders) -> Self {
        Self { orders }
    }
}

#[async_trait]
impl Handles<ProductCreated> for OrdersEvents {
    async fn handle(&self, txn: &DatabaseTransaction, event: ProductCreated, _: &Envelope) -> Result<(), HandlerError> {
        Ok(self.orders.copy_product(txn, &event.0.try_into()?).await?)
    }
}

#[async_trait]
impl Handles<ProductUpdated> for OrdersEvents {
    async fn handle(&self, txn: &DatabaseTransaction, event: ProductUpdated, _: &Envelope) -> Result<(), HandlerError> {
        Ok(self.orders.copy_product(txn, &event.0.try_into()?).await?)
    }
}

#[async_trait]
impl Handles<ProductDiscontinued> for OrdersEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: ProductDiscontinued,
        _: &Envelope,
    ) -> Result<(), HandlerError> {
        Ok(self.orders.discontinue_product(txn, event.product_id, &event.sku, version(event.version)?).await?)
    }
}

#[async_trait]
impl Handles<BasketCheckedOut> for OrdersEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: BasketCheckedOut,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        // The basket checks both before it publishes: either failing here is a bug between the two.
        if event.lines.is_empty() {
            return Err(HandlerError::Malformed("a checkout without lines".into()));
        }
        let payment_method = event
            .payment_method
            .as_deref()
            .map(PaymentMethod::parse)
            .transpose()
            .map_err(|e| HandlerError::Malformed(format!("paymentMethod {e}")))?;
        let lines = event.lines.into_iter().map(|l| OrderLine {
            product_id: l.product_id,
            sku: l.sku,
            name: l.name,
            quantity: l.quantity,
            unit_price: l.unit_price,
        });
        let checkout = CheckedOut {
            order_id: event.order_id.into(),
            user_id: event.user_id,
            lines: lines.collect(),
            shipping_address: event.shipping_address,
            payment_method,
        };
        Ok(self.orders.place_checked_out(txn, cause, checkout).await?)
    }
}

#[async_trait]
impl Handles<StockReserved> for OrdersEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: StockReserved,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        Ok(self.orders.apply_stock_answer(txn, cause, event.order_id.into(), StockAnswer::Reserved).await?)
    }
}

#[async_trait]
impl Handles<StockReservationFailed> for OrdersEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: StockReservationFailed,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        let shortages = event.shortages.into_iter().map(Shortage::from).collect();
        Ok(self.orders.apply_stock_answer(txn, cause, event.order_id.into(), StockAnswer::Refused(shortages)).await?)
    }
}

#[async_trait]
impl Handles<PaymentActionRequired> for OrdersEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: PaymentActionRequired,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        let news = PaymentNews::ActionRequired { attempt: event.attempt, client_secret: event.client_secret };
        Ok(self.orders.apply_payment(txn, cause, event.order_id.into(), news).await?)
    }
}

#[async_trait]
impl Handles<PaymentSucceeded> for OrdersEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: PaymentSucceeded,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        let news = PaymentNews::Succeeded { attempt: event.attempt, paid_at: event.paid_at };
        Ok(self.orders.apply_payment(txn, cause, event.order_id.into(), news).await?)
    }
}

#[async_trait]
impl Handles<PaymentFailed> for OrdersEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: PaymentFailed,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        let news = PaymentNews::Failed { attempt: event.attempt, reason: event.reason, retryable: event.retryable };
        Ok(self.orders.apply_payment(txn, cause, event.order_id.into(), news).await?)
    }
}

#[async_trait]
impl Handles<PaymentRefunded> for OrdersEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: PaymentRefunded,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        let news = PaymentNews::Refunded { refunded_at: event.refunded_at };
        Ok(self.orders.apply_payment(txn, cause, event.order_id.into(), news).await?)
    }
}

#[async_trait]
impl Handles<ShipmentDispatched> for OrdersEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: ShipmentDispatched,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        Ok(self.orders.follow_shipment(txn, cause, event.order_id.into(), ShipmentNews::Dispatched).await?)
    }
}

#[async_trait]
impl Handles<ShipmentDelivered> for OrdersEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: ShipmentDelivered,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        Ok(self.orders.follow_shipment(txn, cause, event.order_id.into(), ShipmentNews::Delivered).await?)
    }
}

#[async_trait]
impl Handles<ShipmentCancelled> for OrdersEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: ShipmentCancelled,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        Ok(self.orders.follow_shipment(txn, cause, event.order_id.into(), ShipmentNews::Cancelled).await?)
    }
}

#[async_trait]
impl Handles<ShipmentAddressChanged> for OrdersEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: ShipmentAddressChanged,
        _: &Envelope,
    ) -> Result<(), HandlerError> {
        let answer = AddressAnswer::Changed(event.shipping_address);
        Ok(self.orders.settle_address_change(txn, event.order_id.into(), answer).await?)
    }
}

#[async_trait]
impl Handles<ShipmentAddressChangeRefused> for OrdersEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: ShipmentAddressChangeRefused,
        _: &Envelope,
    ) -> Result<(), HandlerError> {
        let answer = AddressAnswer::Refused { reason: event.reason };
        Ok(self.orders.settle_address_change(txn, event.order_id.into(), answer).await?)
    }
}

/// News of an unknown order can never apply (dead-lettered at once); a delivery ahead of its
/// dispatch is retried until the dispatch is handled.
impl From<OrderNewsError> for HandlerError {
    fn from(e: OrderNewsError) -> Self {
        match e {
            OrderNewsError::UnknownOrder(_) => HandlerError::Malformed(e.to_string()),
            OrderNewsError::DeliveredBeforeShipped(_) => HandlerError::Failed(e.into()),
            OrderNewsError::Unexpected(e) => HandlerError::Failed(e),
        }
    }
}

impl TryFrom<ProductSnapshot> for ProductCopy {
    type Error = HandlerError;

    fn try_from(p: ProductSnapshot) -> Result<Self, HandlerError> {
        Ok(ProductCopy {
            product_id: p.product_id,
            sku: p.sku,
            name: p.name,
            price: Some(p.price),
            active: p.status == ProductStatus::Active,
            version: version(p.version)?,
        })
    }
}

fn version(version: u64) -> Result<i64, HandlerError> {
    i64::try_from(version).map_err(|_| HandlerError::Malformed(format!("product version {version} is out of range")))
}

impl From<inventory_contracts::Shortage> for Shortage {
    fn from(s: inventory_contracts::Shortage) -> Self {
        Shortage { product_id: s.product_id, requested: s.requested, available: s.available }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::{Address, AddressForm, Currency, IntegrationEvent, Money};
    use kernel::testing::{Engine, TestDatabase, published, published_of};
    use kernel::{Outbox, Principal, Role};
    use migrations::MigratorTrait;
    use orders_contracts as events;
    use orders_contracts::OrderCancellationRequested;
    use sea_orm::DatabaseConnection;
    use uuid::Uuid;

    use crate::NAME;
    use crate::domain::{
        Order, OrderId, OrderLimits, OrderLine, OrderStatus, PaymentMethod, PaymentStatus, Quantity, Timeline,
    };
    use crate::persistence;
    use crate::service::{AddressChanged, Cancelled, ChangeOrderError};

    /// A migrated SQLite database of the module's own, dropped with the [`TestDatabase`].
    async fn database() -> (TestDatabase, DatabaseConnection) {
        let database = TestDatabase::fresh(Engine::Sqlite).await.expect("SQLite is always there");
        let db = database.connect(NAME).await;
        migrations::Migrator::up(&db, None).await.expect("migrated");
        (database, db)
    }

    fn orders(db: &DatabaseConnection) -> Orders {
        Orders::new(db.clone(), Outbox::new(NAME, db.clone()), limits(), std::time::Duration::from_secs(900))
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
            cancellation_reason: None,
            payment_method: Some(PaymentMethod::parse("pm_card_visa").expect("valid")),
            payment: None,
            created_at: now,
            updated_at: now,
            timeline: Timeline::default(),
        };
        persistence::insert_order(db, &order).await.expect("inserted");
        order
    }

    /// The order placed, its stock reserved and its payment succeeded: confirmed.
    async fn confirmed(db: &DatabaseConnection) -> Order {
        let order = placed(db).await;
        deliver(db, &reserved(&order)).await.expect("handled");
        deliver(db, &succeeded(&order, 1)).await.expect("handled");
        order
    }

    fn succeeded(order: &Order, attempt: u32) -> PaymentSucceeded {
        PaymentSucceeded {
            payment_id: Uuid::now_v7(),
            order_id: order.id.as_uuid(),
            attempt,
            amount: order.total,
            paid_at: kernel::db::now(),
        }
    }

    fn failed(order: &Order, attempt: u32, retryable: bool) -> PaymentFailed {
        PaymentFailed {
            payment_id: Uuid::now_v7(),
            order_id: order.id.as_uuid(),
            attempt,
            code: "card_declined".into(),
            reason: "Your card was declined.".into(),
            retryable,
        }
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
        let handled = routes().bind(OrdersEvents::new(orders(db))).handle(&txn, &envelope).await;
        txn.commit().await.expect("committed");
        handled
    }

    async fn reload(db: &DatabaseConnection, order: &Order) -> Order {
        persistence::find(db, order.id, false).await.expect("loaded").expect("the order")
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
        Principal { user_id: order.user_id, role: Role::Customer, email_verified: true }
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
        let orders = orders(&db);
        let order = confirmed(&db).await;
        let Ok(Cancelled::Requested(cancelling)) = orders.cancel(order.id, &owner(&order)).await else {
            panic!("a confirmed order is not cancelled at once")
        };
        assert_eq!(cancelling.status, OrderStatus::Cancelling);
        assert!(cancelling.timeline.cancellation_requested_at.is_some());
        // Asking again changes nothing and publishes nothing more.
        assert!(matches!(orders.cancel(order.id, &owner(&order)).await, Ok(Cancelled::Requested(_))));
        assert_eq!(reload(&db, &order).await, cancelling);
        assert_eq!(published_of::<OrderCancellationRequested>(&db, NAME).await.len(), 1);

        deliver(&db, &shipment_cancelled(&order)).await.expect("handled");
        deliver(&db, &shipment_cancelled(&order)).await.expect("handled");
        let cancelled = reload(&db, &order).await;
        assert_eq!(cancelled.status, OrderStatus::Cancelled);
        assert!(cancelled.timeline.cancelled_at.is_some());
        let released = published_of::<events::OrderCancelled>(&db, NAME).await;
        assert_eq!(released.len(), 1, "one OrderCancelled for two ShipmentCancelled");
        assert_eq!(released[0].items[0].quantity.get(), 2);
        assert!(matches!(orders.cancel(order.id, &owner(&order)).await, Err(ChangeOrderError::WrongState(_))));
    }

    #[tokio::test]
    async fn a_dispatch_ships_a_cancelling_order_and_nothing_is_released() {
        let (_dir, db) = database().await;
        let orders = orders(&db);
        let order = confirmed(&db).await;
        orders.cancel(order.id, &owner(&order)).await.expect("requested");
        deliver(&db, &dispatched(&order)).await.expect("handled");
        let shipped = reload(&db, &order).await;
        assert_eq!(shipped.status, OrderStatus::Shipped);
        assert!(shipped.timeline.shipped_at.is_some());
        // A late cancellation of the shipment (it cannot come, shipping refuses) changes nothing.
        deliver(&db, &shipment_cancelled(&order)).await.expect("handled");
        assert_eq!(reload(&db, &order).await, shipped);
        assert!(published_of::<events::OrderCancelled>(&db, NAME).await.is_empty());
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
        let orders = orders(&db);
        let pending = placed(&db).await;
        let Ok(Cancelled::Now(cancelled)) = orders.cancel(pending.id, &owner(&pending)).await else {
            panic!("a pending order is cancelled at once")
        };
        assert_eq!(cancelled.status, OrderStatus::Cancelled);
        assert_eq!(published_of::<events::OrderCancelled>(&db, NAME).await.len(), 1);

        let confirmed = confirmed(&db).await;
        let early = ShipmentDelivered { shipment_id: Uuid::now_v7(), order_id: confirmed.id.as_uuid() };
        assert!(matches!(deliver(&db, &early).await, Err(HandlerError::Failed(_))), "retried later");
        assert_eq!(reload(&db, &confirmed).await.status, OrderStatus::Confirmed);
    }

    #[tokio::test]
    async fn a_reserved_order_is_charged_and_only_its_payment_confirms_it() {
        let (_dir, db) = database().await;
        let order = placed(&db).await;
        deliver(&db, &reserved(&order)).await.expect("handled");
        let awaiting = reload(&db, &order).await;
        assert_eq!(awaiting.status, OrderStatus::AwaitingPayment);
        let payment = awaiting.payment.clone().expect("a payment");
        assert_eq!((payment.status, payment.attempt), (PaymentStatus::Processing, 1));
        assert!(payment.due_at > awaiting.updated_at);
        let requested = published_of::<events::OrderPaymentRequested>(&db, NAME).await;
        assert_eq!(requested.len(), 1);
        assert_eq!(
            (requested[0].amount, requested[0].payment_method.as_deref(), requested[0].attempt),
            (order.total, Some("pm_card_visa"), 1)
        );
        assert!(published_of::<events::OrderConfirmed>(&db, NAME).await.is_empty(), "not paid yet");

        let action = PaymentActionRequired {
            payment_id: Uuid::now_v7(),
            order_id: order.id.as_uuid(),
            attempt: 1,
            client_secret: "pi_1_secret".into(),
        };
        deliver(&db, &action).await.expect("handled");
        let payment = reload(&db, &order).await.payment.expect("a payment");
        assert_eq!(
            (payment.status, payment.client_secret.as_deref()),
            (PaymentStatus::RequiresAction, Some("pi_1_secret"))
        );

        deliver(&db, &succeeded(&order, 1)).await.expect("handled");
        deliver(&db, &succeeded(&order, 1)).await.expect("handled");
        let paid = reload(&db, &order).await;
        assert_eq!(paid.status, OrderStatus::Confirmed);
        assert!(paid.timeline.confirmed_at.is_some() && paid.payment.as_ref().is_some_and(|p| p.paid_at.is_some()));
        assert_eq!(published_of::<events::OrderConfirmed>(&db, NAME).await.len(), 1, "one confirmation for two");
        // A failure that overtook nothing, for the attempt that succeeded, changes nothing.
        deliver(&db, &failed(&order, 1, false)).await.expect("handled");
        assert_eq!(reload(&db, &order).await, paid);
    }

    #[tokio::test]
    async fn a_declined_payment_rejects_the_order_and_releases_its_stock() {
        let (_dir, db) = database().await;
        let order = placed(&db).await;
        deliver(&db, &reserved(&order)).await.expect("handled");
        deliver(&db, &failed(&order, 2, false)).await.expect("handled");
        assert_eq!(reload(&db, &order).await.status, OrderStatus::AwaitingPayment, "another attempt's news");
        deliver(&db, &failed(&order, 1, false)).await.expect("handled");
        deliver(&db, &failed(&order, 1, false)).await.expect("handled");
        let rejected = reload(&db, &order).await;
        assert_eq!(rejected.status, OrderStatus::Rejected);
        assert_eq!(rejected.rejection_reason.as_deref(), Some("payment failed: Your card was declined."));
        assert_eq!(rejected.payment.as_ref().map(|p| p.status), Some(PaymentStatus::Failed));
        assert_eq!(published_of::<events::OrderRejected>(&db, NAME).await.len(), 1);
        let released = published_of::<events::OrderCancelled>(&db, NAME).await;
        assert_eq!(released.len(), 1);
        assert_eq!(released[0].items[0].quantity.get(), 2);
        assert!(matches!(
            orders(&db).pay(order.id, &owner(&order), PaymentMethod::parse("pm_card_visa").expect("valid")).await,
            Err(ChangeOrderError::WrongState(OrderStatus::Rejected))
        ));
    }

    #[tokio::test]
    async fn an_unusable_method_waits_for_another_and_one_request_runs_at_a_time() {
        let (_dir, db) = database().await;
        let orders = orders(&db);
        let mut order = placed(&db).await;
        order.payment_method = None;
        persistence::update_order(&db, &order).await.expect("saved");
        deliver(&db, &reserved(&order)).await.expect("handled");
        let waiting = reload(&db, &order).await;
        assert_eq!(
            waiting.payment.as_ref().map(|p| (p.status, p.attempt)),
            Some((PaymentStatus::RequiresPaymentMethod, 0))
        );
        assert!(published_of::<events::OrderPaymentRequested>(&db, NAME).await.is_empty(), "nothing to charge");

        let visa = || PaymentMethod::parse("pm_card_visa").expect("valid");
        let paying = orders.pay(order.id, &owner(&order), visa()).await.expect("requested");
        assert_eq!(paying.payment.as_ref().map(|p| (p.status, p.attempt)), Some((PaymentStatus::Processing, 1)));
        assert!(matches!(
            orders.pay(order.id, &owner(&order), visa()).await,
            Err(ChangeOrderError::PaymentUnderWay(PaymentStatus::Processing))
        ));
        deliver(&db, &failed(&order, 1, true)).await.expect("handled");
        let unusable = reload(&db, &order).await;
        assert_eq!(unusable.status, OrderStatus::AwaitingPayment);
        assert_eq!(unusable.payment.as_ref().map(|p| p.status), Some(PaymentStatus::RequiresPaymentMethod));
        assert_eq!(
            unusable.payment.as_ref().and_then(|p| p.failure_reason.as_deref()),
            Some("Your card was declined.")
        );
        orders.pay(order.id, &owner(&order), visa()).await.expect("requested again");
        let requests = published_of::<events::OrderPaymentRequested>(&db, NAME).await;
        assert_eq!(requests.iter().map(|r| r.attempt).collect::<Vec<_>>(), [1, 2]);
        deliver(&db, &succeeded(&order, 2)).await.expect("handled");
        assert_eq!(reload(&db, &order).await.status, OrderStatus::Confirmed);
    }

    #[tokio::test]
    async fn an_unpaid_order_is_cancelled_when_due_and_a_late_payment_is_only_recorded() {
        let (_dir, db) = database().await;
        let orders = orders(&db);
        let order = placed(&db).await;
        deliver(&db, &reserved(&order)).await.expect("handled");
        assert_eq!(orders.cancel_overdue().await.expect("scanned"), 0, "not due yet");
        let mut due = reload(&db, &order).await;
        if let Some(payment) = due.payment.as_mut() {
            payment.due_at = kernel::db::now() - chrono::Duration::seconds(1);
        }
        persistence::update_order(&db, &due).await.expect("saved");
        assert_eq!(orders.cancel_overdue().await.expect("scanned"), 1);
        assert_eq!(orders.cancel_overdue().await.expect("scanned"), 0, "once");
        let cancelled = reload(&db, &order).await;
        assert_eq!(cancelled.status, OrderStatus::Cancelled);
        assert_eq!(cancelled.cancellation_reason, Some(crate::domain::CancellationReason::PaymentTimeout));
        assert_eq!(published_of::<events::OrderCancelled>(&db, NAME).await.len(), 1);

        // The payment succeeded meanwhile: the order stays cancelled; payments refunds it.
        deliver(&db, &succeeded(&order, 1)).await.expect("handled");
        let late = reload(&db, &order).await;
        assert_eq!(late.status, OrderStatus::Cancelled);
        assert!(late.payment.as_ref().is_some_and(|p| p.paid_at.is_some()));
        assert!(published_of::<events::OrderConfirmed>(&db, NAME).await.is_empty());
        let refunded = PaymentRefunded {
            payment_id: Uuid::now_v7(),
            order_id: order.id.as_uuid(),
            attempt: 1,
            amount: order.total,
            refunded_at: kernel::db::now(),
        };
        deliver(&db, &refunded).await.expect("handled");
        let payment = reload(&db, &order).await.payment.expect("a payment");
        assert_eq!(payment.status, PaymentStatus::Refunded);
        assert!(payment.refunded_at.is_some() && payment.paid_at.is_some());
    }

    fn bath() -> Address {
        address("Bath")
    }

    #[tokio::test]
    async fn a_confirmed_orders_address_changes_only_when_shipping_says_so() {
        let (_dir, db) = database().await;
        let orders = orders(&db);
        let pending = placed(&db).await;
        let Ok(AddressChanged::Now(moved)) = orders.change_address(pending.id, &owner(&pending), bath()).await else {
            panic!("a pending order moves at once")
        };
        assert_eq!((moved.shipping_address.city(), moved.address_change.as_ref()), ("Bath", None));
        assert!(published(&db, NAME).await.is_empty(), "nothing to ask");

        let order = confirmed(&db).await;
        let Ok(AddressChanged::Requested(requested)) = orders.change_address(order.id, &owner(&order), bath()).await
        else {
            panic!("a confirmed order asks shipping")
        };
        assert_eq!(requested.shipping_address.city(), "London");
        assert_eq!(requested.address_change.as_ref().map(|c| c.address.city()), Some("Bath"));
        assert_eq!(reload(&db, &order).await, requested);
        let mut asked = published_of::<events::OrderAddressChangeRequested>(&db, NAME).await;
        assert_eq!(asked.len(), 1);
        let asked = asked.remove(0);
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
