//! The orders module's use cases, the ones the customer asks for over HTTP and the ones another
//! module's event triggers. Each write is one transaction: the order and its event. An
//! event-triggered use case writes through the transaction the delivery pipeline gives it, which
//! commits the effect with the record that the event was handled.
//!
//! Races, decided: an order cancelled while its reservation was under way ignores the late
//! `StockReserved` or `StockReservationFailed`. Inventory handles `OrderCancelled` after the
//! `OrderCreated` it follows (one producer's events arrive in order; a cancel that overtakes its
//! order leaves a tombstone there), so whatever it reserved is released: an order that ends
//! without shipping never keeps stock. Once confirmed, the order ends as shipping says: it is
//! `cancelled` (and `OrderCancelled` releases its stock) only on `ShipmentCancelled`, and a
//! `ShipmentDispatched` ships it even while `cancelling` — the dispatch won that race.

use anyhow::Context;
use kernel::jobs::{Job, JobError, Queue};
use kernel::{Envelope, Outbox, Principal};
use orders_contracts::{self as events, OrderItem, OrderLine as LineEvent};
use sea_orm::{DatabaseConnection, DatabaseTransaction};
use uuid::Uuid;

use crate::domain::{
    Address, AddressChange, CancellationReason, GroupBy, Money, Order, OrderEvent, OrderId, OrderLimits, OrderLine,
    OrderStatus, Payment, PaymentMethod, PaymentStatus, Quantity, Report, ReportId, ReportRange, ReportStatus,
    SalesTally, Timeline,
};
use crate::persistence;
/// The local copy of a catalog product that [`Orders::copy_product`] keeps.
pub(crate) use crate::persistence::ProductCopy;

#[derive(Clone)]
pub struct Orders {
    db: DatabaseConnection,
    outbox: Outbox<events::Orders>,
    limits: OrderLimits,
    /// How long an order may await its payment before it is cancelled.
    payment_timeout: chrono::Duration,
    /// The module's background jobs (`orders_jobs`): the sales reports' computation.
    jobs: Queue,
}

/// A validated request to place an order; products are checked by [`Orders::place`].
pub struct PlaceOrder {
    pub items: Vec<(Uuid, Quantity)>,
    pub shipping_address: Address,
    /// Without one, the order awaits a method (`POST /orders/{id}/payment`) once its stock is reserved.
    pub payment_method: Option<PaymentMethod>,
}

/// A basket checked out (`BasketCheckedOut`): the order to create, under the id the basket gave
/// it, at the prices the customer accepted there.
pub struct CheckedOut {
    pub order_id: OrderId,
    pub user_id: Uuid,
    pub lines: Vec<OrderLine>,
    pub shipping_address: Address,
    pub payment_method: Option<PaymentMethod>,
}

/// An `Idempotency-Key` and the hash of the request body it came with.
pub struct Idempotency {
    pub key: String,
    pub request_hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PlaceOrderError {
    /// `(field, message)` for each problem.
    #[error("invalid order")]
    Invalid(Vec<(String, String)>),
    #[error("this Idempotency-Key was used with another request")]
    KeyReused,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// What a cancel did.
#[derive(Debug)]
pub enum Cancelled {
    /// The order was pending: it is cancelled.
    Now(Order),
    /// The order was confirmed: shipping is asked, and the order is `cancelling` until it answers.
    Requested(Order),
}

/// What an address change did.
#[derive(Debug)]
pub enum AddressChanged {
    /// The order was pending (or already had that address): the address is the new one.
    Now(Order),
    /// The order was confirmed: shipping is asked, and the order shows the request until it answers.
    Requested(Order),
}

/// What placing an order answered: a new order, or the replay of the first answer to a key.
pub enum Placed {
    New(Box<Order>),
    Replayed(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeOrderError {
    #[error("no order {0}")]
    NotFound(OrderId),
    #[error("the order is {}", .0.as_str())]
    WrongState(OrderStatus),
    /// A payment request is under way (or done): a new method would risk a second charge.
    #[error("the order's payment is {}; it takes a new method only when it requires one", .0.as_str())]
    PaymentUnderWay(PaymentStatus),
    #[error("an address change of the order is waiting for shipping's answer")]
    AddressChangePending,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Inventory's answer to an order's `OrderCreated`.
#[derive(Debug)]
pub enum StockAnswer {
    Reserved,
    /// Nothing is reserved: these products were short.
    Refused(Vec<Shortage>),
}

/// A product inventory could not reserve enough of for an order.
#[derive(Debug)]
pub struct Shortage {
    pub product_id: Uuid,
    pub requested: u32,
    pub available: u32,
}

/// Shipping's news of an order's shipment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShipmentNews {
    Dispatched,
    Delivered,
    Cancelled,
}

impl ShipmentNews {
    fn event(self) -> OrderEvent {
        match self {
            Self::Dispatched => OrderEvent::Ship,
            Self::Delivered => OrderEvent::Deliver,
            Self::Cancelled => OrderEvent::ShipmentCancelled,
        }
    }
}

/// The payments module's news of an order's payment, for the attempt it names.
#[derive(Debug)]
pub enum PaymentNews {
    /// The customer must complete it with the provider.
    ActionRequired {
        attempt: u32,
        client_secret: String,
    },
    Succeeded {
        attempt: u32,
        paid_at: chrono::DateTime<chrono::Utc>,
    },
    /// Declined (`retryable == false`: the order is rejected), or the method was unusable and the
    /// order takes another.
    Failed {
        attempt: u32,
        reason: String,
        retryable: bool,
    },
    Refunded {
        refunded_at: chrono::DateTime<chrono::Utc>,
    },
}

/// Shipping's answer to an order's `OrderAddressChangeRequested`.
#[derive(Debug)]
pub enum AddressAnswer {
    /// The shipment goes to this address now.
    Changed(Address),
    /// The shipment keeps its address.
    Refused { reason: String },
}

/// Why another module's news of an order could not be applied to it.
#[derive(Debug, thiserror::Error)]
pub enum OrderNewsError {
    /// No such order here: the news can never apply.
    #[error("no order {0}")]
    UnknownOrder(OrderId),
    /// The delivery overtook its dispatch (which is being retried): apply it after that one.
    #[error("order {0} is delivered before it shipped; retry")]
    DeliveredBeforeShipped(OrderId),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl Orders {
    pub fn new(
        db: DatabaseConnection,
        outbox: Outbox,
        limits: OrderLimits,
        payment_timeout: std::time::Duration,
    ) -> Self {
        let payment_timeout = chrono::Duration::from_std(payment_timeout).unwrap_or(chrono::Duration::MAX);
        let jobs = Queue::new(crate::NAME, db.clone());
        Self { db, outbox: outbox.bind(), limits, payment_timeout, jobs }
    }

    /// The module's job table: its worker and the admin API share it (and its wake-ups).
    pub fn jobs(&self) -> &Queue {
        &self.jobs
    }

    /// Forgets the `Idempotency-Key`s remembered before `cutoff` (housekeeping).
    pub async fn forget_idempotency_keys_before(&self, cutoff: chrono::DateTime<chrono::Utc>) -> anyhow::Result<u64> {
        persistence::forget_idempotency_keys_before(&self.db, cutoff).await.context("failed to purge idempotency keys")
    }

    /// Places an order at the prices of the local product copy. With an idempotency key, a repeat
    /// replays the first answer; concurrent repeats create one order (the key is unique).
    #[tracing::instrument(level = "debug", skip_all, fields(user.id = %user_id))]
    pub async fn place(
        &self,
        user_id: Uuid,
        request: PlaceOrder,
        idempotency: Option<Idempotency>,
        render: impl Fn(&Order) -> String,
    ) -> Result<Placed, PlaceOrderError> {
        if let Some(key) = &idempotency
            && let Some(replay) = self.replay(user_id, key).await?
        {
            return Ok(replay);
        }
        let order = self.price(user_id, request).await?;
        let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
        persistence::insert_order(&txn, &order).await.context("failed to insert an order")?;
        if let Some(key) = &idempotency {
            let stored =
                persistence::remember(&txn, user_id, &key.key, &key.request_hash, order.id, &render(&order)).await;
            match stored {
                Ok(()) => {}
                // A concurrent repeat won: drop this order, answer as it did.
                Err(e) if kernel::db::is_unique_violation(&e) => {
                    drop(txn);
                    return self
                        .replay(user_id, key)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("an idempotency key vanished after a conflict").into());
                }
                Err(e) => return Err(anyhow::Error::new(e).context("failed to remember an idempotency key").into()),
            }
        }
        self.outbox.publish(&txn, &created(&order), None).await?;
        self.outbox.commit(txn).await.context("failed to commit an order")?;
        tracing::info!(order.id = %order.id, "order placed");
        Ok(Placed::New(Box::new(order)))
    }

    /// Creates the order a basket's checkout asked for, once whatever delivers it: `pending`, and
    /// `OrderCreated` as `place` does, or — when the local copy says a line's product is
    /// discontinued, or the lines break the order limits — `rejected` with the reason (the basket
    /// is emptied already, so the customer learns why from the order). A product the copy does
    /// not know yet is ordered at the basket's price: the basket's copy of the catalog was ahead.
    #[tracing::instrument(skip_all, fields(order.id = %checkout.order_id, user.id = %checkout.user_id))]
    pub async fn place_checked_out(
        &self,
        txn: &DatabaseTransaction,
        cause: &Envelope,
        checkout: CheckedOut,
    ) -> anyhow::Result<()> {
        if persistence::find(txn, checkout.order_id, false).await.context("failed to read an order")?.is_some() {
            tracing::info!("checkout placed before; ignored");
            return Ok(());
        }
        let ids: Vec<Uuid> = checkout.lines.iter().map(|l| l.product_id).collect();
        let products = persistence::products(txn, &ids).await.context("failed to load products")?;
        let items: Vec<(Uuid, Quantity)> = checkout.lines.iter().map(|l| (l.product_id, l.quantity)).collect();
        let mut problems: Vec<String> =
            self.limits.check(&items).into_iter().map(|(field, message)| format!("{field} {message}")).collect();
        for line in &checkout.lines {
            if products.iter().any(|p| p.product_id == line.product_id && !p.active) {
                problems.push(format!("{} is discontinued", line.sku));
            }
        }
        let currency = checkout.lines.first().context("a checkout without lines")?.unit_price.currency();
        if checkout.lines.iter().any(|l| l.unit_price.currency() != currency) {
            problems.push("the lines mix currencies".to_owned());
        }
        let total = checkout.lines.iter().try_fold(Money::zero(currency), |sum, l| sum.checked_add(l.total()));
        let total = total.unwrap_or_else(|| {
            problems.push("the total is too large".to_owned());
            Money::zero(currency)
        });
        let now = kernel::db::now();
        let rejected_now = !problems.is_empty();
        let order = Order {
            id: checkout.order_id,
            user_id: checkout.user_id,
            status: if rejected_now { OrderStatus::Rejected } else { OrderStatus::Pending },
            lines: checkout.lines,
            shipping_address: checkout.shipping_address,
            address_change: None,
            total,
            rejection_reason: rejected_now.then(|| format!("the basket cannot be ordered: {}", problems.join("; "))),
            cancellation_reason: None,
            payment_method: checkout.payment_method,
            payment: None,
            created_at: now,
            updated_at: now,
            timeline: Timeline { rejected_at: rejected_now.then_some(now), ..Timeline::default() },
        };
        persistence::insert_order(txn, &order).await.context("failed to insert an order")?;
        if rejected_now {
            self.outbox.publish(txn, &rejected(&order), Some(cause)).await?;
            tracing::info!(reason = order.rejection_reason.as_deref(), "checkout rejected");
        } else {
            self.outbox.publish(txn, &created(&order), Some(cause)).await?;
            tracing::info!("checkout placed");
        }
        Ok(())
    }

    async fn replay(&self, user_id: Uuid, key: &Idempotency) -> Result<Option<Placed>, PlaceOrderError> {
        match persistence::remembered(&self.db, user_id, &key.key).await.context("failed to read a key")? {
            Some(r) if r.request_hash == key.request_hash => Ok(Some(Placed::Replayed(r.response))),
            Some(_) => Err(PlaceOrderError::KeyReused),
            None => Ok(None),
        }
    }

    /// The order the request describes, within the limits, priced from the local product copy.
    async fn price(&self, user_id: Uuid, request: PlaceOrder) -> Result<Order, PlaceOrderError> {
        let ids: Vec<Uuid> = request.items.iter().map(|(id, _)| *id).collect();
        let products = persistence::products(&self.db, &ids).await.context("failed to load products")?;
        let mut errors = self.limits.check(&request.items);
        let mut lines = Vec::with_capacity(request.items.len());
        for (i, (product_id, quantity)) in request.items.into_iter().enumerate() {
            match products.iter().find(|p| p.product_id == product_id) {
                Some(ProductCopy { active: true, price: Some(price), sku, name, .. }) => lines.push(OrderLine {
                    product_id,
                    sku: sku.clone(),
                    name: name.clone(),
                    quantity,
                    unit_price: *price,
                }),
                Some(_) => errors.push((format!("items[{i}].productId"), "is discontinued".to_owned())),
                None => errors.push((format!("items[{i}].productId"), "is not a known product".to_owned())),
            }
        }
        let currency = lines.first().map(|l| l.unit_price.currency());
        if lines.iter().any(|l| Some(l.unit_price.currency()) != currency) {
            errors.push(("items".to_owned(), "mixes currencies; place one order per currency".to_owned()));
        }
        if !errors.is_empty() {
            return Err(PlaceOrderError::Invalid(errors));
        }
        let currency = currency.context("an order without lines")?;
        let total = lines.iter().try_fold(Money::zero(currency), |sum, l| sum.checked_add(l.total()));
        let total =
            total.ok_or_else(|| PlaceOrderError::Invalid(vec![("items".into(), "the total is too large".into())]))?;
        let now = kernel::db::now();
        Ok(Order {
            id: OrderId::generate(),
            user_id,
            status: OrderStatus::Pending,
            lines,
            shipping_address: request.shipping_address,
            address_change: None,
            total,
            rejection_reason: None,
            cancellation_reason: None,
            payment_method: request.payment_method,
            payment: None,
            created_at: now,
            updated_at: now,
            timeline: Timeline::default(),
        })
    }

    /// The order, if `who` may see it: its owner or an admin. Anyone else is told it does not exist.
    pub async fn get(&self, id: OrderId, who: &Principal) -> anyhow::Result<Option<Order>> {
        let order = persistence::find(&self.db, id, false).await.context("failed to load an order")?;
        Ok(order.filter(|o| who.is_admin() || o.user_id == who.user_id))
    }

    /// `who`'s orders, or everyone's for an admin.
    pub async fn list(
        &self,
        who: &Principal,
        status: Option<OrderStatus>,
        after: Option<OrderId>,
        limit: u64,
    ) -> anyhow::Result<Vec<Order>> {
        let owner = (!who.is_admin()).then_some(who.user_id);
        persistence::list(&self.db, owner, status, after, limit).await.context("failed to list orders")
    }

    /// Changes the shipping address. A pending order takes it at once (its `OrderConfirmed` will
    /// carry it). Once confirmed, shipping is the authority, as for a cancel: the order records the
    /// request and `OrderAddressChangeRequested` asks shipping, whose answer changes the address
    /// (`ShipmentAddressChanged`) or not (`ShipmentAddressChangeRefused`). One request at a time:
    /// shipping's answers then reach the order in the order shipping gave them.
    #[tracing::instrument(level = "debug", skip_all, fields(order.id = %id))]
    pub async fn change_address(
        &self,
        id: OrderId,
        who: &Principal,
        address: Address,
    ) -> Result<AddressChanged, ChangeOrderError> {
        let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
        let mut order = self.load_for(&txn, id, who).await?;
        if !order.status.accepts_address_change() {
            return Err(ChangeOrderError::WrongState(order.status));
        }
        if order.address_change.is_some() {
            return Err(ChangeOrderError::AddressChangePending);
        }
        if order.shipping_address == address {
            return Ok(AddressChanged::Now(order));
        }
        let now = kernel::db::now();
        order.updated_at = now;
        if order.status == OrderStatus::Pending {
            order.shipping_address = address;
            persistence::update_order(&txn, &order).await.context("failed to save an order")?;
            txn.commit().await.context("failed to commit an address change")?;
            return Ok(AddressChanged::Now(order));
        }
        let event = events::OrderAddressChangeRequested {
            order_id: id.as_uuid(),
            user_id: order.user_id,
            shipping_address: address.clone(),
        };
        order.address_change = Some(AddressChange { address, requested_at: now });
        persistence::update_order(&txn, &order).await.context("failed to save an order")?;
        self.outbox.publish(&txn, &event, None).await?;
        self.outbox.commit(txn).await.context("failed to commit an address change request")?;
        tracing::info!("address change requested");
        Ok(AddressChanged::Requested(order))
    }

    /// Cancels an order. A pending one, or one awaiting its payment, is `cancelled` at once and
    /// `OrderCancelled` tells inventory to release whatever it reserved and payments to cancel (or
    /// refund) whatever it started. A confirmed one becomes `cancelling` and
    /// `OrderCancellationRequested` asks shipping, the authority once an order is confirmed: it
    /// cancels the shipment unless it was dispatched. Asking again while `cancelling` changes nothing.
    #[tracing::instrument(level = "debug", skip_all, fields(order.id = %id))]
    pub async fn cancel(&self, id: OrderId, who: &Principal) -> Result<Cancelled, ChangeOrderError> {
        let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
        let mut order = self.load_for(&txn, id, who).await?;
        if order.status == OrderStatus::Cancelling {
            return Ok(Cancelled::Requested(order));
        }
        order.apply(OrderEvent::Cancel, kernel::db::now()).map_err(|e| ChangeOrderError::WrongState(e.from))?;
        if order.status == OrderStatus::Cancelled {
            order.cancellation_reason = Some(CancellationReason::Customer);
        }
        persistence::update_order(&txn, &order).await.context("failed to save an order")?;
        if order.status == OrderStatus::Cancelling {
            let event = events::OrderCancellationRequested { order_id: id.as_uuid(), user_id: order.user_id };
            self.outbox.publish(&txn, &event, None).await?;
            self.outbox.commit(txn).await.context("failed to commit a cancellation request")?;
            tracing::info!("order cancellation requested");
            return Ok(Cancelled::Requested(order));
        }
        self.outbox.publish(&txn, &cancelled(&order), None).await?;
        self.outbox.commit(txn).await.context("failed to commit a cancellation")?;
        tracing::info!("order cancelled");
        Ok(Cancelled::Now(order))
    }

    /// Gives an order awaiting its payment a (new) payment method: the order had none, or the last
    /// was unusable. A request under way (or done) is 409: two could both charge.
    #[tracing::instrument(level = "debug", skip_all, fields(order.id = %id))]
    pub async fn pay(&self, id: OrderId, who: &Principal, method: PaymentMethod) -> Result<Order, ChangeOrderError> {
        let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
        let mut order = self.load_for(&txn, id, who).await?;
        if order.status != OrderStatus::AwaitingPayment {
            return Err(ChangeOrderError::WrongState(order.status));
        }
        let status = order.payment.as_ref().map_or(PaymentStatus::RequiresPaymentMethod, |p| p.status);
        if status != PaymentStatus::RequiresPaymentMethod {
            return Err(ChangeOrderError::PaymentUnderWay(status));
        }
        let request = request_payment(&mut order, method)?;
        order.updated_at = kernel::db::now();
        persistence::update_order(&txn, &order).await.context("failed to save an order")?;
        self.outbox.publish(&txn, &request, None).await?;
        self.outbox.commit(txn).await.context("failed to commit a payment request")?;
        tracing::info!(attempt = request.attempt, "payment requested");
        Ok(order)
    }

    /// Applies the payments module's news to the order. A success confirms an order awaiting its
    /// payment (`OrderConfirmed`, with what shipping needs); a decline rejects it (`OrderRejected`,
    /// and `OrderCancelled` so inventory releases its stock); an unusable method leaves it awaiting
    /// another. The money facts (paid, refunded) are recorded whatever the order's status — a
    /// payment that succeeds after the order was cancelled is refunded by payments, and the order
    /// shows both. Other news of an attempt that is not the current one changes nothing.
    #[tracing::instrument(skip_all, fields(order.id = %id, payment = ?news))]
    pub async fn apply_payment(
        &self,
        txn: &DatabaseTransaction,
        cause: &Envelope,
        id: OrderId,
        news: PaymentNews,
    ) -> Result<(), OrderNewsError> {
        let mut order = find_for_news(txn, id).await?;
        let now = kernel::db::now();
        let Some(payment) = order.payment.as_mut() else {
            tracing::warn!("payment news for an order that never awaited payment; ignored");
            return Ok(());
        };
        let current = |attempt: u32, payment: &Payment| {
            attempt == payment.attempt
                && matches!(payment.status, PaymentStatus::Processing | PaymentStatus::RequiresAction)
        };
        let mut publish: Vec<Publish> = Vec::new();
        match news {
            PaymentNews::ActionRequired { attempt, client_secret } => {
                if !current(attempt, payment) {
                    tracing::info!("action required for a payment that moved on; ignored");
                    return Ok(());
                }
                payment.status = PaymentStatus::RequiresAction;
                payment.client_secret = Some(client_secret);
            }
            PaymentNews::Succeeded { attempt, paid_at } => {
                if payment.paid_at.is_some() {
                    tracing::info!("already paid; ignored");
                    return Ok(());
                }
                payment.paid_at = Some(paid_at);
                if payment.status != PaymentStatus::Refunded {
                    payment.status = PaymentStatus::Succeeded;
                }
                payment.attempt = payment.attempt.max(attempt);
                payment.failure_reason = None;
                if order.apply(OrderEvent::Paid, now).is_ok() {
                    publish.push(Publish::Confirmed);
                } else {
                    tracing::warn!(status = order.status.as_str(), "paid after the order ended: payments refunds it");
                }
            }
            PaymentNews::Failed { attempt, reason, retryable } => {
                if !current(attempt, payment) {
                    tracing::info!("failure of a payment that moved on; ignored");
                    return Ok(());
                }
                payment.failure_reason = Some(reason.clone());
                payment.client_secret = None;
                if retryable {
                    payment.status = PaymentStatus::RequiresPaymentMethod;
                } else {
                    payment.status = PaymentStatus::Failed;
                    if order.apply(OrderEvent::PaymentDeclined, now).is_ok() {
                        order.rejection_reason = Some(format!("payment failed: {reason}"));
                        publish.push(Publish::Rejected);
                        publish.push(Publish::Cancelled);
                    }
                }
            }
            PaymentNews::Refunded { refunded_at } => {
                if payment.refunded_at.is_some() {
                    return Ok(());
                }
                payment.status = PaymentStatus::Refunded;
                payment.refunded_at = Some(refunded_at);
            }
        }
        order.updated_at = now;
        persistence::update_order(txn, &order).await.context("failed to save an order")?;
        for event in publish {
            match event {
                Publish::Confirmed => self.outbox.publish(txn, &confirmed(&order), Some(cause)).await?,
                Publish::Rejected => self.outbox.publish(txn, &rejected(&order), Some(cause)).await?,
                Publish::Cancelled => self.outbox.publish(txn, &cancelled(&order), Some(cause)).await?,
            }
        }
        tracing::info!(status = order.status.as_str(), "order follows its payment");
        Ok(())
    }

    /// Cancels the orders whose payment is overdue (`OrderCancelled`: inventory releases, payments
    /// cancels the payment under way or refunds one that succeeded meanwhile); returns how many.
    /// Each in its own transaction, the order locked and checked again: a payment that confirmed
    /// it meanwhile wins.
    pub async fn cancel_overdue(&self) -> anyhow::Result<u64> {
        let now = kernel::db::now();
        let mut cancelled_orders = 0;
        for id in persistence::overdue(&self.db, now, 100).await.context("failed to find overdue orders")? {
            let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
            let Some(mut order) = persistence::find(&txn, id, true).await.context("failed to load an order")? else {
                continue;
            };
            let due = order.payment.as_ref().is_some_and(|p| p.due_at < now);
            if !due || order.apply(OrderEvent::PaymentTimedOut, now).is_err() {
                continue;
            }
            order.cancellation_reason = Some(CancellationReason::PaymentTimeout);
            persistence::update_order(&txn, &order).await.context("failed to save an order")?;
            self.outbox.publish(&txn, &cancelled(&order), None).await?;
            self.outbox.commit(txn).await.context("failed to commit a payment timeout")?;
            tracing::info!(order.id = %id, "order cancelled: not paid in time");
            cancelled_orders += 1;
        }
        Ok(cancelled_orders)
    }

    /// Keeps the local copy of a catalog product: an event is applied only if it is newer than the
    /// copy (a higher product version), so one delivered late — a retry, a redelivery — never undoes
    /// a later change or a discontinuation. Events from before versions (version 0) change only a
    /// copy that has seen no versioned event, and never reactivate a discontinued one.
    #[tracing::instrument(level = "debug", skip_all, fields(product.id = %copy.product_id, product.version = copy.version))]
    pub async fn copy_product(&self, txn: &DatabaseTransaction, copy: &ProductCopy) -> anyhow::Result<()> {
        persistence::copy_product(txn, copy).await.context("failed to copy a product")
    }

    /// The copy becomes discontinued, unless it is newer than the discontinuation; with no copy yet,
    /// a discontinued placeholder keeps the late `ProductCreated` from making the product orderable.
    #[tracing::instrument(level = "debug", skip_all, fields(product.id = %product_id, product.version = version))]
    pub async fn discontinue_product(
        &self,
        txn: &DatabaseTransaction,
        product_id: Uuid,
        sku: &str,
        version: i64,
    ) -> anyhow::Result<()> {
        persistence::discontinue_product(txn, product_id, sku, version).await.context("failed to discontinue a product")
    }

    /// Applies inventory's answer to a pending order and tells the others what became of it: it
    /// awaits its payment until `orders.payment_timeout_secs` from now (`OrderPaymentRequested`, when
    /// the customer gave a method), or `OrderRejected` (with the shortages).
    #[tracing::instrument(skip_all, fields(order.id = %id, answer = ?answer))]
    pub async fn apply_stock_answer(
        &self,
        txn: &DatabaseTransaction,
        cause: &Envelope,
        id: OrderId,
        answer: StockAnswer,
    ) -> Result<(), OrderNewsError> {
        let mut order = find_for_news(txn, id).await?;
        let (event, reason) = match answer {
            StockAnswer::Reserved => (OrderEvent::StockReserved, None),
            StockAnswer::Refused(shortages) => (OrderEvent::StockRefused, Some(not_enough_stock(&shortages))),
        };
        if let Err(e) = order.apply(event, kernel::db::now()) {
            // Cancelled meanwhile: inventory releases on OrderCancelled, nothing to do here.
            tracing::info!(reason = %e, "stock answer for an order that moved on; ignored");
            return Ok(());
        }
        order.rejection_reason = reason;
        if event == OrderEvent::StockReserved {
            let due_at = order.updated_at + self.payment_timeout;
            order.payment = Some(Payment {
                status: PaymentStatus::RequiresPaymentMethod,
                attempt: 0,
                client_secret: None,
                failure_reason: None,
                due_at,
                paid_at: None,
                refunded_at: None,
            });
        }
        let request = match (event, order.payment_method.clone()) {
            (OrderEvent::StockReserved, Some(method)) => Some(request_payment(&mut order, method)?),
            _ => None,
        };
        persistence::update_order(txn, &order).await.context("failed to save an order")?;
        match event {
            OrderEvent::StockReserved => {
                if let Some(request) = request {
                    self.outbox.publish(txn, &request, Some(cause)).await?;
                }
            }
            _ => self.outbox.publish(txn, &rejected(&order), Some(cause)).await?,
        }
        tracing::info!(status = order.status.as_str(), "order answered");
        Ok(())
    }

    /// Follows the order's shipment: shipped, delivered, or cancelled (and then `OrderCancelled`
    /// releases its stock). A repeat finds the order moved on already and does nothing.
    #[tracing::instrument(skip_all, fields(order.id = %id, shipment = ?news))]
    pub async fn follow_shipment(
        &self,
        txn: &DatabaseTransaction,
        cause: &Envelope,
        id: OrderId,
        news: ShipmentNews,
    ) -> Result<(), OrderNewsError> {
        let mut order = find_for_news(txn, id).await?;
        if news == ShipmentNews::Delivered && matches!(order.status, OrderStatus::Confirmed | OrderStatus::Cancelling) {
            return Err(OrderNewsError::DeliveredBeforeShipped(id));
        }
        if let Err(e) = order.apply(news.event(), kernel::db::now()) {
            tracing::info!(reason = %e, "shipment news for an order that moved on; ignored");
            return Ok(());
        }
        if order.status == OrderStatus::Cancelled {
            // Nothing ships: an address change still waiting is moot.
            order.address_change = None;
            order.cancellation_reason = Some(CancellationReason::ShipmentCancelled);
        }
        persistence::update_order(txn, &order).await.context("failed to save an order")?;
        if order.status == OrderStatus::Cancelled {
            self.outbox.publish(txn, &cancelled(&order), Some(cause)).await?;
        }
        tracing::info!(status = order.status.as_str(), "order follows its shipment");
        Ok(())
    }

    /// Shipping's answer to the order's address change: the shipment's address becomes the
    /// order's, or stays as it was; either way the request is settled. Orders asks one change at a
    /// time, so an answer with no request waiting is a repeat, and changes nothing.
    #[tracing::instrument(skip_all, fields(order.id = %id, changed = matches!(answer, AddressAnswer::Changed(_))))]
    pub async fn settle_address_change(
        &self,
        txn: &DatabaseTransaction,
        id: OrderId,
        answer: AddressAnswer,
    ) -> Result<(), OrderNewsError> {
        if let AddressAnswer::Refused { reason } = &answer {
            tracing::info!(%reason, "address change refused by shipping");
        }
        let mut order = find_for_news(txn, id).await?;
        if order.address_change.take().is_none() {
            tracing::info!("no address change waiting; ignored");
            return Ok(());
        }
        if let AddressAnswer::Changed(address) = answer {
            order.shipping_address = address;
        }
        order.updated_at = kernel::db::now();
        persistence::update_order(txn, &order).await.context("failed to save an order")?;
        tracing::info!("address change settled");
        Ok(())
    }

    async fn load_for(
        &self,
        txn: &DatabaseTransaction,
        id: OrderId,
        who: &Principal,
    ) -> Result<Order, ChangeOrderError> {
        let order = persistence::find(txn, id, true).await.context("failed to load an order")?;
        order.filter(|o| who.is_admin() || o.user_id == who.user_id).ok_or(ChangeOrderError::NotFound(id))
    }
}

/// The order another module's event is about, locked for the change.
async fn find_for_news(txn: &DatabaseTransaction, id: OrderId) -> Result<Order, OrderNewsError> {
    let order = persistence::find(txn, id, true).await.context("failed to load an order")?;
    order.ok_or(OrderNewsError::UnknownOrder(id))
}

/// The rejection reason of an order inventory could not reserve: each shortage, in its words.
fn not_enough_stock(shortages: &[Shortage]) -> String {
    let short: Vec<String> = shortages
        .iter()
        .map(|s| format!("{} available of {} requested for {}", s.available, s.requested, s.product_id))
        .collect();
    format!("not enough stock: {}", short.join("; "))
}

/// What [`Orders::apply_payment`] publishes.
enum Publish {
    Confirmed,
    Rejected,
    Cancelled,
}

/// The order's next payment attempt, with `method`: `OrderPaymentRequested` for it.
fn request_payment(order: &mut Order, method: PaymentMethod) -> anyhow::Result<events::OrderPaymentRequested> {
    let payment = order.payment.as_mut().context("an order awaiting payment has no payment")?;
    payment.attempt += 1;
    payment.status = PaymentStatus::Processing;
    payment.failure_reason = None;
    payment.client_secret = None;
    let request = events::OrderPaymentRequested {
        order_id: order.id.as_uuid(),
        user_id: order.user_id,
        amount: order.total,
        payment_method: Some(method.as_str().to_owned()),
        attempt: payment.attempt,
    };
    order.payment_method = Some(method);
    Ok(request)
}

/// `OrderCreated` for `order`: what inventory reserves.
fn created(order: &Order) -> events::OrderCreated {
    let items = order.lines.iter().map(|l| OrderItem { product_id: l.product_id, quantity: l.quantity });
    events::OrderCreated { order_id: order.id.as_uuid(), user_id: order.user_id, items: items.collect() }
}

/// `OrderRejected` for `order`, with its reason.
fn rejected(order: &Order) -> events::OrderRejected {
    events::OrderRejected {
        order_id: order.id.as_uuid(),
        user_id: order.user_id,
        reason: order.rejection_reason.clone().unwrap_or_default(),
    }
}

/// `OrderConfirmed` for `order`: what shipping needs to ship it.
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

/// `OrderCancelled` for `order`, with its items: inventory releases what it holds for them.
fn cancelled(order: &Order) -> events::OrderCancelled {
    let items = order.lines.iter().map(|l| OrderItem { product_id: l.product_id, quantity: l.quantity });
    events::OrderCancelled { order_id: order.id.as_uuid(), user_id: order.user_id, items: items.collect() }
}

/// The job that computes a sales report (`sales_report`), enqueued with the report's row.
///
/// Its effect is idempotent: a run reads the orders again and overwrites the same row's CSV, so a
/// run repeated after a crash or a timeout writes what the first would have; a report already
/// `done` is left as it is (the run is a no-op), so a downloaded CSV never changes. Its unique key
/// is the report's id: one job per report, whatever happens to the request.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SalesReportJob {
    pub report_id: Uuid,
}

impl Job for SalesReportJob {
    const NAME: &'static str = "sales_report";

    fn unique_key(&self) -> Option<String> {
        Some(self.report_id.to_string())
    }
}

/// Orders read per page of a report: each page is two short statements, and a burst of CPU (in
/// the driver's threads) that requests wait behind on a small machine; 2 000 a page made the
/// reads' p99 2.7× its idle value during a report (bench/README.md).
const REPORT_PAGE: u64 = 500;

impl Orders {
    /// Records a sales report, `queued`, with its job, in one transaction; the worker is woken
    /// once it is committed.
    #[tracing::instrument(level = "debug", skip_all, fields(user.id = %requested_by))]
    pub async fn request_sales_report(
        &self,
        requested_by: Uuid,
        range: ReportRange,
        group_by: GroupBy,
    ) -> anyhow::Result<Report> {
        let report = Report {
            id: ReportId::generate(),
            range,
            group_by,
            status: ReportStatus::Queued,
            requested_by,
            requested_at: kernel::db::now(),
            finished_at: None,
            row_count: None,
            error: None,
        };
        let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
        persistence::insert_report(&txn, &report).await.context("failed to insert a report")?;
        let job = SalesReportJob { report_id: report.id.as_uuid() };
        self.jobs.enqueue(&txn, &job).await.context("failed to enqueue a report's job")?;
        txn.commit().await.context("failed to commit a report")?;
        self.jobs.wake();
        Ok(report)
    }

    pub async fn report(&self, id: ReportId) -> anyhow::Result<Option<Report>> {
        persistence::find_report(&self.db, id).await.context("failed to load a report")
    }

    /// The newest `limit` reports.
    pub async fn reports(&self, limit: u64) -> anyhow::Result<Vec<Report>> {
        persistence::recent_reports(&self.db, limit).await.context("failed to list reports")
    }

    /// The report and, once it is done, its CSV.
    pub async fn report_csv(&self, id: ReportId) -> anyhow::Result<Option<(Report, Option<String>)>> {
        let Some(report) = self.report(id).await? else { return Ok(None) };
        let csv = match report.status {
            ReportStatus::Done => persistence::report_csv(&self.db, id).await.context("failed to load a report")?,
            _ => None,
        };
        Ok(Some((report, csv)))
    }

    /// The `sales_report` job: adds up the sales of the report's range, page by page (keyset on
    /// `(confirmed_at, id)`, [`REPORT_PAGE`] orders a page, each page read outside any transaction
    /// and followed by a pause as long as it took), and stores the CSV. Its status follows: `running`,
    /// then `done`; a failure is recorded on the report (`queued` again while the job is retried,
    /// `failed` when a row cannot be read as a sale, which no retry mends).
    #[tracing::instrument(skip_all, fields(report.id = %id))]
    pub async fn run_sales_report(&self, id: ReportId) -> Result<(), JobError> {
        let Some(report) = self.report(id).await.map_err(JobError::Retry)? else {
            return Err(JobError::Permanent(anyhow::anyhow!("no report {id}")));
        };
        if report.status == ReportStatus::Done {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let now = kernel::db::now();
        persistence::set_report_status(&self.db, id, ReportStatus::Running, report.error.clone(), now)
            .await
            .context("failed to mark a report running")?;
        match self.tally(&report).await {
            Ok((tally, sales)) => {
                let csv = tally.to_csv().map_err(|e| JobError::Permanent(anyhow::anyhow!("cannot write CSV: {e}")))?;
                let rows = tally.rows();
                persistence::finish_report(&self.db, id, csv, rows, kernel::db::now())
                    .await
                    .context("failed to store a report")?;
                tracing::info!(sales, rows, elapsed_ms = started.elapsed().as_millis() as u64, "sales report done");
                Ok(())
            }
            Err(e) => {
                let (status, message) = match &e {
                    JobError::Permanent(e) => (ReportStatus::Failed, format!("{e:#}")),
                    JobError::Retry(e) => (ReportStatus::Queued, format!("{e:#}; retried")),
                };
                if let Err(record) =
                    persistence::set_report_status(&self.db, id, status, Some(message), kernel::db::now()).await
                {
                    tracing::warn!(error = %record, "cannot record a report's failure");
                }
                Err(e)
            }
        }
    }

    /// Every sale of the report's range, added up; and how many sales were read.
    async fn tally(&self, report: &Report) -> Result<(SalesTally, u64), JobError> {
        self.tally_in_pages(report, REPORT_PAGE).await
    }

    async fn tally_in_pages(&self, report: &Report, page_size: u64) -> Result<(SalesTally, u64), JobError> {
        let mut tally = SalesTally::new(report.group_by);
        let (mut after, mut sales) = (None, 0u64);
        loop {
            let started = std::time::Instant::now();
            let (page, read, last) =
                persistence::sales_page(&self.db, &report.range, after, page_size).await.map_err(|e| match e {
                    // A row that does not read as a sale: no retry mends it.
                    sea_orm::DbErr::Custom(e) => JobError::Permanent(anyhow::anyhow!("{e}")),
                    e => JobError::Retry(anyhow::Error::new(e).context("failed to read sales")),
                })?;
            for sale in &page {
                tally.add(sale);
            }
            sales += page.len() as u64;
            if (read as u64) < page_size {
                return Ok((tally, sales));
            }
            after = last;
            // Between pages, as long as the page took: the report takes at most about half of a
            // core, and requests get the rest; it is background work, done in seconds either way.
            tokio::time::sleep(started.elapsed()).await;
        }
    }
}

#[cfg(test)]
mod report_tests {
    use kernel::testing::{Engine, TestDatabase};
    use migrations::MigratorTrait;
    use sea_orm::ConnectionTrait;
    use sea_orm::sea_query::{Alias, Query};

    use super::*;

    /// An order confirmed at `at`, of `units` of one product at 100 minor units, straight into
    /// the tables.
    async fn order(db: &DatabaseConnection, at: &str, status: &str, units: i32) {
        let (id, at) = (Uuid::now_v7(), at.parse::<chrono::DateTime<chrono::Utc>>().expect("an instant"));
        let total = i64::from(units) * 100;
        let insert = Query::insert()
            .into_table(Alias::new("orders_orders"))
            .columns([
                "id",
                "user_id",
                "status",
                "ship_name",
                "ship_line1",
                "ship_city",
                "ship_postal_code",
                "ship_country",
                "total_amount",
                "currency",
                "created_at",
                "updated_at",
                "confirmed_at",
            ])
            .values_panic([
                id.into(),
                Uuid::now_v7().into(),
                status.into(),
                "Ada".into(),
                "1 Road".into(),
                "London".into(),
                "SW1Y 4JH".into(),
                "GB".into(),
                total.into(),
                "EUR".into(),
                at.into(),
                at.into(),
                at.into(),
            ])
            .to_owned();
        db.execute(&insert).await.expect("an order");
        let line = Query::insert()
            .into_table(Alias::new("orders_lines"))
            .columns(["order_id", "line_no", "product_id", "sku", "name", "quantity", "unit_amount", "line_amount"])
            .values_panic([
                id.into(),
                0i32.into(),
                Uuid::from_u128(1).into(),
                "SKU".into(),
                "Name".into(),
                units.into(),
                100i64.into(),
                total.into(),
            ])
            .to_owned();
        db.execute(&line).await.expect("a line");
    }

    #[tokio::test]
    async fn pages_that_split_orders_confirmed_at_one_instant_lose_and_repeat_none() {
        let database = TestDatabase::fresh(Engine::Sqlite).await.expect("SQLite is always there");
        let db = database.connect(crate::NAME).await;
        migrations::Migrator::up(&db, None).await.expect("migrated");
        for (at, status, units) in [
            ("2026-01-01T10:00:00Z", "confirmed", 1),
            ("2026-01-01T12:00:00Z", "shipped", 2),
            ("2026-01-01T12:00:00Z", "cancelled", 100),
            ("2026-01-01T12:00:00Z", "delivered", 4),
            ("2026-01-01T12:00:00Z", "cancelling", 8),
            ("2026-01-02T09:00:00Z", "rejected", 100),
            ("2026-01-02T09:00:00Z", "confirmed", 16),
            ("2026-01-03T00:00:00Z", "confirmed", 100), // the range's end: excluded
        ] {
            order(&db, at, status, units).await;
        }
        let orders = Orders::new(
            db.clone(),
            Outbox::new(crate::NAME, db.clone()),
            OrderLimits::new(100, 1000).expect("valid"),
            std::time::Duration::from_secs(900),
        );
        let at = |raw: &str| raw.parse().expect("an instant");
        let report = Report {
            id: ReportId::generate(),
            range: ReportRange::new(at("2026-01-01T00:00:00Z"), at("2026-01-03T00:00:00Z")).expect("a range"),
            group_by: GroupBy::Day,
            status: ReportStatus::Queued,
            requested_by: Uuid::now_v7(),
            requested_at: kernel::db::now(),
            finished_at: None,
            row_count: None,
            error: None,
        };
        let expected = "day,currency,orders,units,revenue\n2026-01-01,EUR,4,15,1500\n2026-01-02,EUR,1,16,1600\n";
        for page in [1, 2, 3, 1000] {
            let (tally, sales) = orders.tally_in_pages(&report, page).await.expect("a tally");
            assert_eq!((tally.to_csv().expect("CSV").as_str(), sales), (expected, 5), "pages of {page}");
        }
    }
}
