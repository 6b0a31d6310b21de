//! The basket module's use cases, the ones an event triggers included. Each write is one
//! transaction: the lines, the basket's version and (at checkout) the event.
//!
//! Concurrent edits (two tabs) lose nothing: every line is a row, and every change raises the
//! basket's version with a conditional `UPDATE … WHERE id = ? AND version = ?` in the same
//! transaction. A change that finds the version moved since it read the basket — another change
//! came first — is rolled back and tried again on the basket as it is now, a few times; the same
//! goes for a race to create a customer's basket (a unique key) and for a deadlock. A client that
//! sends `If-Match` asks for its change only on the version it saw: otherwise it gets the basket
//! as it is (409).

use anyhow::Context;
use basket_contracts::{self as events, BasketCheckedOut, CheckedOutLine};
use chrono::{DateTime, Utc};
use kernel::Outbox;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr};
use uuid::Uuid;

use crate::domain::{
    Address, Basket, BasketId, BasketLimits, BasketView, GuestToken, Holder, Line, LineChange, OverLimit,
    PaymentMethod, Prices, ProductCopy,
};
use crate::persistence::{self, BasketRow};

/// How many times a change is tried when other changes keep coming first.
const ATTEMPTS: u32 = 10;

pub struct Baskets {
    db: DatabaseConnection,
    outbox: Outbox<events::Basket>,
    limits: BasketLimits,
    /// Unchanged for this long, a basket is abandoned: a guest's is gone, and housekeeping purges it.
    ttl: chrono::Duration,
}

/// A change of the lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    /// The product's line holds this many units (0 removes it), at the copy's price now.
    Set { product_id: Uuid, units: u32 },
    /// No line is left.
    Clear,
}

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// No guest basket has this token (or it expired).
    #[error("no basket with this token")]
    NotFound,
    /// `If-Match` named another version than the basket's (or changes kept coming first): the
    /// basket as it is now.
    #[error("the basket is at version {}", .0.version)]
    Mismatch(Box<BasketView>),
    #[error(transparent)]
    OverLimit(OverLimit),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("no guest basket with this token")]
    NotFound,
    /// The merged basket would break these limits: nothing changed.
    #[error("the merged basket would exceed the limits")]
    OverLimit(Vec<OverLimit>),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// A validated checkout request.
pub struct Checkout {
    pub shipping_address: Address,
    pub payment_method: Option<PaymentMethod>,
    pub prices: Prices,
}

/// An `Idempotency-Key` and the hash of the request body it came with.
pub struct Idempotency {
    pub key: String,
    pub request_hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// `(field, message)` for each problem: `lines` (empty) or `lines[i]`.
    #[error("the basket cannot be checked out")]
    Invalid(Vec<(String, String)>),
    #[error("this Idempotency-Key was used with another request")]
    KeyReused,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// One try of a change: done, or another change came first (the transaction is dropped, and the
/// change tried again).
enum Step<T> {
    Done(T),
    Raced,
}

/// Whether a write lost a race to a concurrent one and may simply be tried again: the same row
/// inserted first, a deadlock, a serialization failure, SQLite busy.
fn lost_race(e: &anyhow::Error) -> bool {
    e.downcast_ref::<DbErr>().is_some_and(|e| kernel::db::is_unique_violation(e) || kernel::db::is_transient(e))
}

impl Baskets {
    pub fn new(db: DatabaseConnection, outbox: Outbox, limits: BasketLimits, ttl: std::time::Duration) -> Self {
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        Self { db, outbox: outbox.bind(), limits, ttl }
    }

    /// A new guest basket, empty, and the token that opens it (only its hash is kept).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn create_guest(&self) -> anyhow::Result<(GuestToken, BasketView)> {
        let token = GuestToken::generate();
        let now = kernel::db::now();
        let row = persistence::insert_basket(&self.db, BasketId::generate(), None, Some(&token.hash()), now)
            .await
            .context("failed to create a guest basket")?;
        tracing::info!(basket.id = %row.id, "guest basket created");
        Ok((token, Basket { id: row.id, version: row.version, lines: Vec::new() }.view(&[])))
    }

    /// The customer's basket, created if it was not yet.
    #[tracing::instrument(level = "debug", skip_all, fields(user.id = %user_id))]
    pub async fn open(&self, user_id: Uuid) -> anyhow::Result<BasketView> {
        if persistence::find_by_user(&self.db, user_id).await.context("failed to find a basket")?.is_none() {
            let inserted =
                persistence::insert_basket(&self.db, user_id.into(), Some(user_id), None, kernel::db::now()).await;
            // A unique violation: a concurrent first write created it.
            if let Err(e) = inserted
                && !kernel::db::is_unique_violation(&e)
            {
                return Err(anyhow::Error::new(e).context("failed to create a basket"));
            }
        }
        self.view(&Holder::Customer(user_id)).await.map_err(|e| match e {
            EditError::Unexpected(e) => e,
            other => anyhow::anyhow!("a customer's basket: {other}"),
        })
    }

    /// The basket as it is, priced from the copy. A customer without one has an empty one.
    pub async fn view(&self, holder: &Holder) -> Result<BasketView, EditError> {
        let now = kernel::db::now();
        match self.row(&self.db, holder, now).await? {
            Some(row) => Ok(self.render(&self.db, row.id, row.version).await?),
            None => match holder {
                Holder::Customer(user_id) => {
                    Ok(Basket { id: (*user_id).into(), version: 0, lines: Vec::new() }.view(&[]))
                }
                Holder::Guest(_) => Err(EditError::NotFound),
            },
        }
    }

    /// Changes the lines, on `if_match`'s version only when given; returns the basket changed.
    #[tracing::instrument(level = "debug", skip_all, fields(edit = ?edit))]
    pub async fn edit(&self, holder: &Holder, if_match: Option<i64>, edit: Edit) -> Result<BasketView, EditError> {
        for attempt in 1..=ATTEMPTS {
            let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
            match self.try_edit(&txn, holder, if_match, edit).await {
                Ok(Step::Done(view)) => {
                    txn.commit().await.context("failed to commit a basket change")?;
                    return Ok(view);
                }
                Ok(Step::Raced) => tracing::debug!(attempt, "the basket changed meanwhile; trying again"),
                Err(EditError::Unexpected(e)) if attempt < ATTEMPTS && lost_race(&e) => {
                    tracing::debug!(attempt, error = %e, "lost a race; trying again")
                }
                Err(e) => return Err(e),
            }
        }
        Err(EditError::Mismatch(Box::new(self.view(holder).await?)))
    }

    async fn try_edit(
        &self,
        txn: &DatabaseTransaction,
        holder: &Holder,
        if_match: Option<i64>,
        edit: Edit,
    ) -> Result<Step<BasketView>, EditError> {
        let now = kernel::db::now();
        let row = match self.row(txn, holder, now).await? {
            Some(row) => row,
            None => match holder {
                Holder::Customer(user_id) => {
                    persistence::insert_basket(txn, (*user_id).into(), Some(*user_id), None, now)
                        .await
                        .context("failed to create a basket")?
                }
                Holder::Guest(_) => return Err(EditError::NotFound),
            },
        };
        if if_match.is_some_and(|expected| expected != row.version) {
            return Err(EditError::Mismatch(Box::new(self.render(txn, row.id, row.version).await?)));
        }
        let lines = persistence::lines(txn, row.id).await.context("failed to load the lines")?;
        let changed = match edit {
            Edit::Set { product_id, units } => {
                match self.limits.set(&lines, product_id, units).map_err(EditError::OverLimit)? {
                    LineChange::Put(quantity) => {
                        // Setting a line accepts the product's price now.
                        let copies =
                            persistence::products(txn, &[product_id]).await.context("failed to load a product")?;
                        let accepted = copies.first().and_then(|c| c.price);
                        let line = Line { product_id, quantity, accepted };
                        persistence::put_line(txn, row.id, &line, now).await.context("failed to write a line")?;
                        true
                    }
                    LineChange::Remove => {
                        persistence::delete_line(txn, row.id, product_id).await.context("failed to delete a line")?;
                        true
                    }
                    LineChange::Nothing => false,
                }
            }
            Edit::Clear if lines.is_empty() => false,
            Edit::Clear => {
                persistence::delete_lines(txn, row.id).await.context("failed to empty a basket")?;
                true
            }
        };
        if !changed {
            return Ok(Step::Done(self.render(txn, row.id, row.version).await?));
        }
        if !persistence::bump(txn, row.id, row.version, now).await.context("failed to raise a basket's version")? {
            return Ok(Step::Raced);
        }
        Ok(Step::Done(self.render(txn, row.id, row.version + 1).await?))
    }

    /// Adds a guest basket's quantities into the customer's, within the limits (or not at all),
    /// then deletes the guest basket; returns the customer's basket.
    #[tracing::instrument(level = "debug", skip_all, fields(user.id = %user_id))]
    pub async fn merge(&self, user_id: Uuid, guest: &GuestToken) -> Result<BasketView, MergeError> {
        for attempt in 1..=ATTEMPTS {
            let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
            match self.try_merge(&txn, user_id, guest).await {
                Ok(Step::Done(view)) => {
                    txn.commit().await.context("failed to commit a merge")?;
                    tracing::info!(basket.id = %view.id, "guest basket merged");
                    return Ok(view);
                }
                Ok(Step::Raced) => tracing::debug!(attempt, "a basket changed meanwhile; trying again"),
                Err(MergeError::Unexpected(e)) if attempt < ATTEMPTS && lost_race(&e) => {
                    tracing::debug!(attempt, error = %e, "lost a race; trying again")
                }
                Err(e) => return Err(e),
            }
        }
        Err(anyhow::anyhow!("the baskets kept changing during {ATTEMPTS} attempts to merge them").into())
    }

    async fn try_merge(
        &self,
        txn: &DatabaseTransaction,
        user_id: Uuid,
        guest: &GuestToken,
    ) -> Result<Step<BasketView>, MergeError> {
        let now = kernel::db::now();
        let not_found = |e: EditError| match e {
            EditError::Unexpected(e) => MergeError::Unexpected(e),
            _ => MergeError::NotFound,
        };
        let from = self.row(txn, &Holder::Guest(guest.clone()), now).await.map_err(not_found)?;
        let from = from.ok_or(MergeError::NotFound)?;
        let into = match persistence::find_by_user(txn, user_id).await.context("failed to find a basket")? {
            Some(row) => row,
            None => persistence::insert_basket(txn, user_id.into(), Some(user_id), None, now)
                .await
                .context("failed to create a basket")?,
        };
        let held = persistence::lines(txn, into.id).await.context("failed to load the lines")?;
        let added = persistence::lines(txn, from.id).await.context("failed to load the guest's lines")?;
        let changed = self.limits.merge(&held, &added).map_err(MergeError::OverLimit)?;
        for line in &changed {
            persistence::put_line(txn, into.id, line, now).await.context("failed to write a line")?;
        }
        // Conditional too: a guest basket merged twice at once adds its quantities once.
        let guest_taken =
            persistence::bump(txn, from.id, from.version, now).await.context("failed to take a basket")?;
        if !guest_taken
            || !persistence::bump(txn, into.id, into.version, now).await.context("failed to raise a version")?
        {
            return Ok(Step::Raced);
        }
        persistence::delete_basket(txn, from.id).await.context("failed to delete a guest basket")?;
        Ok(Step::Done(self.render(txn, into.id, into.version + 1).await?))
    }

    /// Checks the customer's basket out: `BasketCheckedOut` (with a new order id) is published, the
    /// basket emptied and the `Idempotency-Key` remembered, in one transaction; returns the order
    /// id. A repeat of a key with the same request answers the first order id again.
    #[tracing::instrument(level = "debug", skip_all, fields(user.id = %user_id))]
    pub async fn checkout(
        &self,
        user_id: Uuid,
        request: &Checkout,
        idempotency: Option<&Idempotency>,
    ) -> Result<Uuid, CheckoutError> {
        if let Some(key) = idempotency
            && let Some(order_id) = self.replay(user_id, key).await?
        {
            return Ok(order_id);
        }
        for attempt in 1..=ATTEMPTS {
            let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
            match self.try_checkout(&txn, user_id, request, idempotency).await {
                Ok(Step::Done(CheckedOut::New(order_id, basket_id))) => {
                    self.outbox.commit(txn).await.context("failed to commit a checkout")?;
                    tracing::info!(order.id = %order_id, basket.id = %basket_id, "basket checked out");
                    return Ok(order_id);
                }
                Ok(Step::Done(CheckedOut::Repeated)) => {
                    drop(txn);
                    let key = idempotency.context("a repeat without a key")?;
                    return self
                        .replay(user_id, key)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("an idempotency key vanished after a conflict").into());
                }
                Ok(Step::Raced) => tracing::debug!(attempt, "the basket changed meanwhile; trying again"),
                // A concurrent repeat of this request may have checked the basket out meanwhile:
                // then the basket is empty, and its answer is this one's.
                Err(CheckoutError::Invalid(errors)) => {
                    drop(txn);
                    if let Some(key) = idempotency
                        && let Some(order_id) = self.replay(user_id, key).await?
                    {
                        return Ok(order_id);
                    }
                    return Err(CheckoutError::Invalid(errors));
                }
                Err(CheckoutError::Unexpected(e)) if attempt < ATTEMPTS && lost_race(&e) => {
                    tracing::debug!(attempt, error = %e, "lost a race; trying again")
                }
                Err(e) => return Err(e),
            }
        }
        Err(anyhow::anyhow!("the basket kept changing during {ATTEMPTS} attempts to check it out").into())
    }

    async fn try_checkout(
        &self,
        txn: &DatabaseTransaction,
        user_id: Uuid,
        request: &Checkout,
        idempotency: Option<&Idempotency>,
    ) -> Result<Step<CheckedOut>, CheckoutError> {
        let empty = || CheckoutError::Invalid(vec![("lines".to_owned(), "the basket is empty".to_owned())]);
        let row =
            persistence::find_by_user(txn, user_id).await.context("failed to find a basket")?.ok_or_else(empty)?;
        let view = self.render(txn, row.id, row.version).await?;
        let lines = view.checkout(request.prices).map_err(CheckoutError::Invalid)?;
        let now = kernel::db::now();
        persistence::delete_lines(txn, row.id).await.context("failed to empty a basket")?;
        if !persistence::bump(txn, row.id, row.version, now).await.context("failed to raise a basket's version")? {
            return Ok(Step::Raced);
        }
        let order_id = Uuid::now_v7();
        if let Some(key) = idempotency {
            match persistence::remember(txn, user_id, &key.key, &key.request_hash, order_id).await {
                Ok(()) => {}
                // A concurrent repeat won: answer as it did.
                Err(e) if kernel::db::is_unique_violation(&e) => return Ok(Step::Done(CheckedOut::Repeated)),
                Err(e) => return Err(anyhow::Error::new(e).context("failed to remember an idempotency key").into()),
            }
        }
        let event = BasketCheckedOut {
            order_id,
            user_id,
            basket_id: row.id.as_uuid(),
            lines: lines
                .into_iter()
                .map(|l| CheckedOutLine {
                    product_id: l.product_id,
                    sku: l.sku,
                    name: l.name,
                    quantity: l.quantity,
                    unit_price: l.unit_price,
                })
                .collect(),
            shipping_address: request.shipping_address.clone(),
            payment_method: request.payment_method.as_ref().map(|m| m.as_str().to_owned()),
        };
        self.outbox.publish(txn, &event, None).await?;
        Ok(Step::Done(CheckedOut::New(order_id, row.id)))
    }

    async fn replay(&self, user_id: Uuid, key: &Idempotency) -> Result<Option<Uuid>, CheckoutError> {
        match persistence::remembered(&self.db, user_id, &key.key).await.context("failed to read a key")? {
            Some(r) if r.request_hash == key.request_hash => Ok(Some(r.order_id)),
            Some(_) => Err(CheckoutError::KeyReused),
            None => Ok(None),
        }
    }

    /// Keeps the copy of a catalog product, unless the one kept is newer (a higher version).
    #[tracing::instrument(level = "debug", skip_all, fields(product.id = %copy.product_id, product.version = copy.version))]
    pub async fn copy_product(&self, txn: &DatabaseTransaction, copy: &ProductCopy) -> anyhow::Result<()> {
        persistence::copy_product(txn, copy).await.context("failed to copy a product")
    }

    /// The copy becomes discontinued, unless it is newer than the discontinuation; with no copy
    /// yet, a discontinued placeholder keeps the late `ProductCreated` from reviving it.
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

    /// Deletes the baskets unchanged for `basket.ttl_days` by `now` (housekeeping); returns how many.
    pub async fn purge_abandoned(&self, now: DateTime<Utc>) -> anyhow::Result<u64> {
        persistence::purge_abandoned(&self.db, now - self.ttl).await.context("failed to purge abandoned baskets")
    }

    /// Forgets the checkout `Idempotency-Key`s remembered before `cutoff` (housekeeping).
    pub async fn forget_idempotency_keys_before(&self, cutoff: DateTime<Utc>) -> anyhow::Result<u64> {
        persistence::forget_idempotency_keys_before(&self.db, cutoff).await.context("failed to purge idempotency keys")
    }

    /// The holder's basket row: `None` for a customer without one yet, or a guest token that opens
    /// none (never given, merged, or expired though not yet purged).
    async fn row(
        &self,
        db: &impl sea_orm::ConnectionTrait,
        holder: &Holder,
        now: DateTime<Utc>,
    ) -> Result<Option<BasketRow>, EditError> {
        Ok(match holder {
            Holder::Customer(user_id) => {
                persistence::find_by_user(db, *user_id).await.context("failed to find a basket")?
            }
            Holder::Guest(token) => persistence::find_by_token(db, &token.hash())
                .await
                .context("failed to find a basket")?
                .filter(|row| row.updated_at >= now - self.ttl),
        })
    }

    /// The basket `id` at `version`, priced from the copy.
    async fn render(
        &self,
        db: &impl sea_orm::ConnectionTrait,
        id: BasketId,
        version: i64,
    ) -> anyhow::Result<BasketView> {
        let lines = persistence::lines(db, id).await.context("failed to load the lines")?;
        let ids: Vec<Uuid> = lines.iter().map(|l| l.product_id).collect();
        let copies = persistence::products(db, &ids).await.context("failed to load products")?;
        Ok(Basket { id, version, lines }.view(&copies))
    }
}

/// What a checkout's transaction did.
enum CheckedOut {
    /// An order id, and the basket it came from.
    New(Uuid, BasketId),
    /// A concurrent request with the same key checked out first.
    Repeated,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use actix_web::web;
    use catalog_contracts::{ProductCreated, ProductDiscontinued, ProductSnapshot, ProductUpdated};
    use contracts::{AddressForm, IntegrationEvent, ProductStatus};
    use kernel::Envelope;
    use kernel::testing::{Engine, TestDatabase, published_of};
    use migrations::MigratorTrait;

    use super::*;
    use crate::NAME;
    use crate::domain::{Availability, Currency, Money, Quantity};
    use crate::events::{BasketEvents, routes};

    const DAY: Duration = Duration::from_secs(86_400);

    /// The module on a fresh database: 3 products of 10 units at most, baskets kept `ttl`.
    struct Shop {
        _database: TestDatabase,
        db: DatabaseConnection,
        baskets: web::Data<Baskets>,
    }

    async fn shop_on(engine: Engine, ttl: Duration) -> Option<Shop> {
        let database = TestDatabase::fresh(engine).await?;
        let db = database.connect(NAME).await;
        migrations::Migrator::up(&db, None).await.expect("migrated");
        let limits = BasketLimits::new(3, 10).expect("valid");
        let baskets = Baskets::new(db.clone(), Outbox::new(NAME, db.clone()), limits, ttl);
        Some(Shop { _database: database, db, baskets: web::Data::new(baskets) })
    }

    async fn shop() -> Shop {
        shop_on(Engine::Sqlite, 30 * DAY).await.expect("SQLite is always there")
    }

    fn eur(amount: i64) -> Money {
        Money::new(amount, Currency::parse("EUR").expect("valid")).expect("valid")
    }

    fn snapshot(product_id: Uuid, price: i64, version: u64) -> ProductSnapshot {
        ProductSnapshot {
            product_id,
            sku: format!("SKU-{version}-{}", &product_id.simple().to_string()[24..]),
            name: format!("Product v{version}"),
            description: String::new(),
            price: eur(price),
            status: ProductStatus::Active,
            version,
        }
    }

    fn address() -> Address {
        Address::parse(&AddressForm {
            name: Some("Ada Lovelace".into()),
            line1: Some("12 St James's Square".into()),
            line2: None,
            city: Some("London".into()),
            postal_code: Some("SW1Y 4JH".into()),
            country: Some("GB".into()),
        })
        .expect("valid")
    }

    fn checkout_at(prices: Prices) -> Checkout {
        Checkout {
            shipping_address: address(),
            payment_method: Some(PaymentMethod::parse("pm_card_visa").expect("valid")),
            prices,
        }
    }

    fn key(key: &str, body: &str) -> Idempotency {
        Idempotency { key: key.to_owned(), request_hash: body.to_owned() }
    }

    impl Shop {
        async fn deliver<E: IntegrationEvent>(&self, event: &E) {
            let envelope = Envelope::new(event).expect("serialises");
            let txn = kernel::db::begin_write(&self.db).await.expect("a transaction");
            routes().bind(BasketEvents(self.baskets.clone())).handle(&txn, &envelope).await.expect("handled");
            txn.commit().await.expect("committed");
        }

        /// A product the copy knows, at `price`.
        async fn product(&self, price: i64) -> Uuid {
            let id = Uuid::now_v7();
            self.deliver(&ProductCreated(snapshot(id, price, 1))).await;
            id
        }

        async fn set(&self, holder: &Holder, product_id: Uuid, units: u32) -> Result<BasketView, EditError> {
            self.baskets.edit(holder, None, Edit::Set { product_id, units }).await
        }

        async fn units(&self, holder: &Holder) -> Vec<(Uuid, u32)> {
            let view = self.baskets.view(holder).await.expect("a basket");
            view.lines.iter().map(|l| (l.product_id, l.quantity.get())).collect()
        }
    }

    #[tokio::test]
    async fn lines_are_set_changed_and_removed_and_every_change_raises_the_version() {
        let shop = shop().await;
        let (mug, pot) = (shop.product(500).await, shop.product(250).await);
        let me = Holder::Customer(Uuid::now_v7());
        let empty = shop.baskets.view(&me).await.expect("an empty basket");
        assert_eq!((empty.version, empty.lines.len(), empty.total), (0, 0, 0));

        shop.set(&me, mug, 2).await.expect("added");
        let view = shop.set(&me, pot, 1).await.expect("added");
        assert_eq!((view.version, view.total, view.currency.map(|c| c.code())), (2, 1250, Some("EUR")));
        assert_eq!(view.lines[0].line_total, Some(eur(1000)));
        let view = shop.set(&me, mug, 3).await.expect("changed");
        assert_eq!((view.version, view.total), (3, 1750));
        let view = shop.baskets.edit(&me, None, Edit::Set { product_id: pot, units: 0 }).await.expect("removed");
        assert_eq!((view.version, shop.units(&me).await), (4, vec![(mug, 3)]));
        let unchanged = shop.set(&me, pot, 0).await.expect("nothing to remove");
        assert_eq!(unchanged.version, 4, "nothing changed, no new version");
        let cleared = shop.baskets.edit(&me, None, Edit::Clear).await.expect("emptied");
        assert_eq!((cleared.version, cleared.lines.len()), (5, 0));
    }

    #[tokio::test]
    async fn the_limits_are_refused_naming_the_field_and_nothing_changes() {
        let shop = shop().await;
        let me = Holder::Customer(Uuid::now_v7());
        let too_many = shop.set(&me, shop.product(1).await, 11).await;
        assert!(matches!(&too_many, Err(EditError::OverLimit(e)) if e.field == "quantity"), "{too_many:?}");
        for _ in 0..3 {
            shop.set(&me, shop.product(1).await, 10).await.expect("within the limits");
        }
        let fourth = shop.set(&me, shop.product(1).await, 1).await;
        assert!(matches!(&fourth, Err(EditError::OverLimit(e)) if e.field == "lines"), "{fourth:?}");
        assert_eq!(shop.baskets.view(&me).await.expect("a basket").version, 3);
    }

    #[tokio::test]
    async fn a_stale_if_match_is_refused_with_the_basket_as_it_is() {
        let shop = shop().await;
        let (mug, pot) = (shop.product(500).await, shop.product(250).await);
        let me = Holder::Customer(Uuid::now_v7());
        let seen = shop.set(&me, mug, 1).await.expect("added");
        shop.set(&me, pot, 1).await.expect("another tab adds a line");
        let stale = shop.baskets.edit(&me, Some(seen.version), Edit::Set { product_id: mug, units: 5 }).await;
        let now = match stale {
            Err(EditError::Mismatch(now)) => now,
            other => panic!("{other:?}"),
        };
        assert_eq!((now.version, now.lines.len()), (2, 2));
        let fresh = shop.baskets.edit(&me, Some(now.version), Edit::Set { product_id: mug, units: 5 }).await;
        assert_eq!(fresh.expect("current").version, 3);
    }

    #[tokio::test]
    async fn a_price_is_accepted_when_the_line_is_set_and_a_change_is_flagged_after() {
        let shop = shop().await;
        let mug = shop.product(500).await;
        let unknown = Uuid::now_v7();
        let me = Holder::Customer(Uuid::now_v7());
        shop.set(&me, mug, 1).await.expect("added");
        let view = shop.set(&me, unknown, 1).await.expect("an unknown product may be added");
        assert_eq!(view.lines[1].availability, Availability::Unknown);

        shop.deliver(&ProductUpdated(snapshot(mug, 600, 2))).await;
        let view = shop.baskets.view(&me).await.expect("a basket");
        let change = view.lines[0].price_changed.expect("flagged");
        assert_eq!((change.from, change.to), (Some(eur(500)), eur(600)));
        let view = shop.set(&me, mug, 2).await.expect("set again");
        assert_eq!(view.lines[0].price_changed, None, "setting the line accepted the price now");
    }

    #[tokio::test]
    async fn a_guest_basket_merges_into_the_customers_within_the_limits_and_is_gone_after() {
        let shop = shop().await;
        let (mug, pot, cup, jar) =
            (shop.product(100).await, shop.product(200).await, shop.product(300).await, shop.product(400).await);
        let (token, guest_basket) = shop.baskets.create_guest().await.expect("a guest basket");
        assert_eq!(guest_basket.version, 0);
        let guest = Holder::Guest(token.clone());
        shop.set(&guest, mug, 4).await.expect("added");
        shop.set(&guest, cup, 1).await.expect("added");
        let user = Uuid::now_v7();
        let me = Holder::Customer(user);
        shop.set(&me, mug, 6).await.expect("added");
        shop.set(&me, pot, 1).await.expect("added");

        let merged = shop.baskets.merge(user, &token).await.expect("merged");
        assert_eq!(shop.units(&me).await, vec![(mug, 10), (pot, 1), (cup, 1)]);
        assert_eq!(merged.version, 3);
        assert!(matches!(shop.baskets.view(&guest).await, Err(EditError::NotFound)), "the guest basket is gone");
        assert!(matches!(shop.baskets.merge(user, &token).await, Err(MergeError::NotFound)));

        // Beyond the limits: nothing changes on either side.
        let (token, _) = shop.baskets.create_guest().await.expect("a guest basket");
        let guest = Holder::Guest(token.clone());
        shop.set(&guest, mug, 1).await.expect("added");
        shop.set(&guest, jar, 1).await.expect("added");
        let errors = match shop.baskets.merge(user, &token).await {
            Err(MergeError::OverLimit(errors)) => errors,
            other => panic!("{other:?}"),
        };
        assert_eq!(errors.len(), 2, "11 mugs, and a fourth product: {errors:?}");
        assert_eq!(shop.units(&me).await, vec![(mug, 10), (pot, 1), (cup, 1)]);
        assert_eq!(shop.units(&guest).await, vec![(mug, 1), (jar, 1)]);
    }

    #[tokio::test]
    async fn a_checkout_publishes_basket_checked_out_empties_the_basket_and_replays_its_key() {
        let shop = shop().await;
        let (mug, gone) = (shop.product(500).await, shop.product(100).await);
        let user = Uuid::now_v7();
        let me = Holder::Customer(user);
        let empty = shop.baskets.checkout(user, &checkout_at(Prices::Accepted), None).await;
        assert!(matches!(&empty, Err(CheckoutError::Invalid(e)) if e[0].0 == "lines"), "{empty:?}");

        shop.set(&me, mug, 2).await.expect("added");
        shop.set(&me, gone, 1).await.expect("added");
        shop.deliver(&ProductDiscontinued { product_id: gone, sku: "GONE".into(), version: 2 }).await;
        shop.deliver(&ProductUpdated(snapshot(mug, 550, 2))).await;
        let errors = match shop.baskets.checkout(user, &checkout_at(Prices::Accepted), None).await {
            Err(CheckoutError::Invalid(errors)) => errors,
            other => panic!("{other:?}"),
        };
        let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["lines[0]", "lines[1]"], "a changed price, a discontinued product: {errors:?}");
        shop.set(&me, gone, 0).await.expect("removed");

        let first = key("k-1", "body");
        let order_id = shop.baskets.checkout(user, &checkout_at(Prices::Current), Some(&first)).await.expect("out");
        let again = shop.baskets.checkout(user, &checkout_at(Prices::Current), Some(&first)).await.expect("replayed");
        assert_eq!(again, order_id);
        let reused = shop.baskets.checkout(user, &checkout_at(Prices::Current), Some(&key("k-1", "other"))).await;
        assert!(matches!(reused, Err(CheckoutError::KeyReused)), "{reused:?}");
        let emptied = shop.baskets.checkout(user, &checkout_at(Prices::Current), Some(&key("k-2", "body"))).await;
        assert!(matches!(emptied, Err(CheckoutError::Invalid(_))), "the basket was emptied: {emptied:?}");

        let published = published_of::<BasketCheckedOut>(&shop.db, NAME).await;
        assert_eq!(published.len(), 1);
        let event = &published[0];
        assert_eq!((event.order_id, event.user_id, event.basket_id), (order_id, user, user));
        assert_eq!(event.payment_method.as_deref(), Some("pm_card_visa"));
        assert_eq!(event.lines.len(), 1);
        let line = &event.lines[0];
        assert_eq!((line.product_id, line.quantity, line.unit_price), (mug, Quantity::new(2).expect("2"), eur(550)));
        assert_eq!(line.name, "Product v2");
        assert!(shop.baskets.view(&me).await.expect("a basket").lines.is_empty());
    }

    #[tokio::test]
    async fn the_copy_keeps_the_newest_version_of_a_product() {
        let shop = shop().await;
        let mug = Uuid::now_v7();
        shop.deliver(&ProductUpdated(snapshot(mug, 300, 3))).await;
        shop.deliver(&ProductCreated(snapshot(mug, 100, 1))).await;
        shop.deliver(&ProductDiscontinued { product_id: mug, sku: "OLD".into(), version: 2 }).await;
        let me = Holder::Customer(Uuid::now_v7());
        let view = shop.set(&me, mug, 1).await.expect("added");
        assert_eq!((view.lines[0].unit_price, view.lines[0].availability), (Some(eur(300)), Availability::Available));
        shop.deliver(&ProductDiscontinued { product_id: mug, sku: "MUG".into(), version: 4 }).await;
        let view = shop.baskets.view(&me).await.expect("a basket");
        assert_eq!(view.lines[0].availability, Availability::Discontinued);
    }

    #[tokio::test]
    async fn abandoned_baskets_are_purged_and_an_expired_guest_token_opens_nothing() {
        let shop = shop().await;
        let user = Uuid::now_v7();
        let me = Holder::Customer(user);
        shop.set(&me, shop.product(100).await, 1).await.expect("added");
        let now = kernel::db::now();
        assert_eq!(shop.baskets.purge_abandoned(now).await.expect("purged"), 0, "not abandoned yet");
        let later = now + chrono::Duration::days(31);
        assert_eq!(shop.baskets.purge_abandoned(later).await.expect("purged"), 1);
        let view = shop.baskets.view(&me).await.expect("an empty basket");
        assert_eq!((view.version, view.lines.len()), (0, 0));
        let lines = persistence::lines(&shop.db, BasketId::from(user)).await.expect("read");
        assert!(lines.is_empty(), "its lines went with it");

        let short = shop_on(Engine::Sqlite, Duration::ZERO).await.expect("SQLite is always there");
        let (token, _) = short.baskets.create_guest().await.expect("a guest basket");
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(matches!(short.baskets.view(&Holder::Guest(token)).await, Err(EditError::NotFound)));
    }

    /// Two tabs (and more) change one basket at once: every change lands, each with a version of
    /// its own — on every engine, where the conditional update and the retries do the work.
    #[tokio::test]
    async fn concurrent_edits_of_different_products_all_land_on_every_engine() {
        for engine in [Engine::Sqlite, Engine::Postgres, Engine::Mysql] {
            let Some(shop) = shop_on(engine, 30 * DAY).await else { continue };
            let user = Uuid::now_v7();
            let products = [shop.product(100).await, shop.product(200).await, shop.product(300).await];
            let edits = products.iter().map(|&p| {
                let baskets = shop.baskets.clone();
                tokio::spawn(async move {
                    baskets.edit(&Holder::Customer(user), None, Edit::Set { product_id: p, units: 2 }).await
                })
            });
            for edit in futures_join(edits).await {
                edit.expect("joined").unwrap_or_else(|e| panic!("{engine:?}: {e:?}"));
            }
            let view = shop.baskets.view(&Holder::Customer(user)).await.expect("a basket");
            assert_eq!((view.lines.len(), view.version, view.total), (3, 3, 1200), "{engine:?}");
        }
    }

    /// Merge, checkout and purge on each engine: the upserts, the unique keys, the cascade.
    #[tokio::test]
    async fn a_guest_merges_checks_out_and_is_purged_on_every_engine() {
        for engine in [Engine::Sqlite, Engine::Postgres, Engine::Mysql] {
            let Some(shop) = shop_on(engine, 30 * DAY).await else { continue };
            let mug = shop.product(500).await;
            let (token, _) = shop.baskets.create_guest().await.expect("a guest basket");
            shop.set(&Holder::Guest(token.clone()), mug, 2).await.expect("added");
            let user = Uuid::now_v7();
            shop.set(&Holder::Customer(user), mug, 1).await.expect("added");
            shop.baskets.merge(user, &token).await.expect("merged");
            assert_eq!(shop.units(&Holder::Customer(user)).await, vec![(mug, 3)], "{engine:?}");

            let upper = key("Key-1", "body");
            let lower = key("key-1", "body");
            let order = shop.baskets.checkout(user, &checkout_at(Prices::Accepted), Some(&upper)).await.expect("out");
            shop.set(&Holder::Customer(user), mug, 1).await.expect("added");
            let other = shop.baskets.checkout(user, &checkout_at(Prices::Accepted), Some(&lower)).await.expect("out");
            assert_ne!(order, other, "{engine:?}: keys that differ in case are two checkouts");
            assert_eq!(published_of::<BasketCheckedOut>(&shop.db, NAME).await.len(), 2, "{engine:?}");

            let later = kernel::db::now() + chrono::Duration::days(31);
            assert_eq!(shop.baskets.purge_abandoned(later).await.expect("purged"), 1, "{engine:?}");
            assert_eq!(shop.baskets.forget_idempotency_keys_before(later).await.expect("purged"), 2, "{engine:?}");
        }
    }

    /// Awaits every task, in order.
    async fn futures_join<T>(
        tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>,
    ) -> Vec<Result<T, tokio::task::JoinError>> {
        let mut results = Vec::new();
        for task in tasks.collect::<Vec<_>>() {
            results.push(task.await);
        }
        results
    }
}
