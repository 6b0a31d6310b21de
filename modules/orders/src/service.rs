//! The orders module's use cases. Each write is one transaction: the order and its event.

use anyhow::Context;
use kernel::{Outbox, Principal};
use orders_contracts::{self as events, OrderItem};
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr};
use uuid::Uuid;

use crate::domain::{
    Address, AddressChange, Money, Order, OrderEvent, OrderId, OrderLimits, OrderLine, OrderStatus, Quantity, Timeline,
};
use crate::persistence::{self, ProductCopy};

#[derive(Clone)]
pub struct Orders {
    db: DatabaseConnection,
    outbox: Outbox<events::Orders>,
    limits: OrderLimits,
}

/// A validated request to place an order; products are checked by [`Orders::place`].
pub struct PlaceOrder {
    pub items: Vec<(Uuid, Quantity)>,
    pub shipping_address: Address,
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
    #[error("an address change of the order is waiting for shipping's answer")]
    AddressChangePending,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl Orders {
    pub fn new(db: DatabaseConnection, outbox: Outbox, limits: OrderLimits) -> Self {
        Self { db, outbox: outbox.bind(), limits }
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
        let items = order.lines.iter().map(|l| OrderItem { product_id: l.product_id, quantity: l.quantity });
        let event = events::OrderCreated { order_id: order.id.as_uuid(), user_id, items: items.collect() };
        self.outbox.publish(&txn, &event, None).await?;
        self.outbox.commit(txn).await.context("failed to commit an order")?;
        tracing::info!(order.id = %order.id, "order placed");
        Ok(Placed::New(Box::new(order)))
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

    /// Cancels an order. A pending one is `cancelled` at once and `OrderCancelled` tells inventory
    /// to release whatever it reserved. A confirmed one becomes `cancelling` and
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

/// Keeps the local copy of a catalog product: an event is applied only if it is newer than the
/// copy (a higher product version), so one delivered late — a retry, a redelivery — never undoes
/// a later change or a discontinuation. Events from before versions (version 0) change only a copy
/// that has seen no versioned event, and never reactivate a discontinued one.
#[tracing::instrument(level = "debug", skip_all, fields(product.id = %copy.product_id, product.version = copy.version))]
pub(crate) async fn copy_product(txn: &DatabaseTransaction, copy: &ProductCopy) -> Result<(), DbErr> {
    persistence::copy_product(txn, copy).await
}

/// The copy becomes discontinued, unless it is newer than the discontinuation; with no copy yet,
/// a discontinued placeholder keeps the late `ProductCreated` from making the product orderable.
#[tracing::instrument(level = "debug", skip_all, fields(product.id = %product_id, product.version = version))]
pub(crate) async fn discontinue_product(
    txn: &DatabaseTransaction,
    product_id: Uuid,
    sku: &str,
    version: i64,
) -> Result<(), DbErr> {
    persistence::discontinue_product(txn, product_id, sku, version).await
}

/// `OrderCancelled` for `order`, with its items: inventory releases what it holds for them.
pub(crate) fn cancelled(order: &Order) -> events::OrderCancelled {
    let items = order.lines.iter().map(|l| OrderItem { product_id: l.product_id, quantity: l.quantity });
    events::OrderCancelled { order_id: order.id.as_uuid(), user_id: order.user_id, items: items.collect() }
}
