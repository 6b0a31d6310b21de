//! The inventory's use cases.
//!
//! Reading and setting a product's stock run in transactions of their own. The stock movements
//! that events drive (reserve, release, sell) run in the transaction the inbox hands the event
//! handler, so their effect commits exactly once, together with the events they cause.

use anyhow::Context;
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};

use crate::domain::{
    Lines, OnHand, OrderId, ProductId, Reservation, ReservationEvent, ReservationStatus, Shortage, StockLevel,
};
use crate::persistence;

#[derive(Clone)]
pub struct Inventory {
    db: DatabaseConnection,
}

#[derive(Debug, thiserror::Error)]
pub enum SetOnHandError {
    #[error("no stock for product {0}")]
    NotFound(ProductId),
    #[error("{reserved} units are reserved")]
    BelowReserved { reserved: i64 },
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl Inventory {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(product.id = %product))]
    pub async fn get(&self, product: ProductId) -> anyhow::Result<Option<StockLevel>> {
        persistence::find_stock(&self.db, product).await.context("failed to load stock")
    }

    /// Sets the units in the warehouse; never below what orders hold.
    #[tracing::instrument(level = "debug", skip_all, fields(product.id = %product, stock.on_hand = on_hand.value()))]
    pub async fn set_on_hand(&self, product: ProductId, on_hand: OnHand) -> Result<StockLevel, SetOnHandError> {
        let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
        let changed = persistence::set_on_hand(&txn, product, on_hand, kernel::db::now())
            .await
            .context("failed to set the stock on hand")?;
        let stock = persistence::find_stock(&txn, product)
            .await
            .context("failed to load stock")?
            .ok_or(SetOnHandError::NotFound(product))?;
        // MySQL counts a row set to its own value as unaffected: that is a success too.
        if !changed && stock.on_hand != on_hand.value() {
            return Err(SetOnHandError::BelowReserved { reserved: stock.reserved });
        }
        txn.commit().await.context("failed to commit the stock on hand")?;
        Ok(stock)
    }
}

/// What [`reserve`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Every line is held.
    Reserved(Lines),
    /// Some line was short; nothing is held.
    Rejected(Vec<Shortage>),
    /// The order was seen before (reserved, rejected, or cancelled first): nothing was done.
    AlreadyKnown(ReservationStatus),
}

/// Gives a product a stock row with nothing in it, unless it has one.
#[tracing::instrument(level = "debug", skip_all, fields(product.id = %product))]
pub async fn track_product(txn: &DatabaseTransaction, product: ProductId) -> anyhow::Result<()> {
    let added = persistence::insert_stock_if_absent(txn, product, kernel::db::now())
        .await
        .context("failed to add a stock row")?;
    if !added {
        tracing::debug!("the product has a stock row already");
    }
    Ok(())
}

/// Holds every line of a new order, or none: the lines are reserved in a savepoint that is rolled
/// back as soon as one of them is short, and the outcome is recorded so that it happens once.
#[tracing::instrument(level = "debug", skip_all, fields(order.id = %order))]
pub async fn reserve(txn: &DatabaseTransaction, order: OrderId, lines: Lines) -> anyhow::Result<ReserveOutcome> {
    if let Some(known) = persistence::find_reservation(txn, order).await.context("failed to load a reservation")? {
        return Ok(ReserveOutcome::AlreadyKnown(known.status));
    }
    let now = kernel::db::now();
    let savepoint = txn.begin().await.context("failed to open a savepoint")?;
    let mut short = Vec::new();
    for (product, quantity) in lines.iter() {
        let held = persistence::reserve(&savepoint, product, quantity, now).await.context("failed to reserve stock")?;
        if !held {
            short.push((product, quantity));
        }
    }
    let status = if short.is_empty() {
        savepoint.commit().await.context("failed to release a savepoint")?;
        ReservationStatus::Reserved
    } else {
        savepoint.rollback().await.context("failed to roll back a savepoint")?;
        ReservationStatus::Rejected
    };
    let mut shortages = Vec::with_capacity(short.len());
    for (product, requested) in short {
        let stock = persistence::find_stock(txn, product).await.context("failed to load stock")?;
        shortages.push(Shortage::of(product, requested, stock));
    }
    let reservation = Reservation { order_id: order, status, lines };
    // A concurrent first event of this order makes this a unique violation: the transaction fails
    // and the retry finds the order known.
    persistence::insert_reservation(txn, &reservation, now).await.context("failed to record a reservation")?;
    Ok(match status {
        ReservationStatus::Reserved => {
            tracing::info!("stock reserved");
            ReserveOutcome::Reserved(reservation.lines)
        }
        _ => {
            tracing::info!(shortages = shortages.len(), "stock reservation failed");
            ReserveOutcome::Rejected(shortages)
        }
    })
}

/// Lets go of what a cancelled order holds; returns the lines released, if it held any. An order
/// not seen yet is recorded as cancelled, so its late `OrderCreated` reserves nothing.
#[tracing::instrument(level = "debug", skip_all, fields(order.id = %order))]
pub async fn release(txn: &DatabaseTransaction, order: OrderId) -> anyhow::Result<Option<Lines>> {
    let now = kernel::db::now();
    let Some(reservation) = persistence::find_reservation(txn, order).await.context("failed to load a reservation")?
    else {
        let tombstone = Reservation { order_id: order, status: ReservationStatus::Cancelled, lines: Lines::default() };
        persistence::insert_reservation(txn, &tombstone, now).await.context("failed to record a cancellation")?;
        tracing::info!("order cancelled before it was seen");
        return Ok(None);
    };
    if !transition(txn, &reservation, ReservationEvent::Cancel).await? {
        return Ok(None);
    }
    for (product, quantity) in reservation.lines.iter() {
        let released = persistence::release(txn, product, quantity, now).await.context("failed to release stock")?;
        anyhow::ensure!(released, "product {product} holds fewer than the {quantity} units order {order} reserved");
    }
    tracing::info!("stock released");
    Ok(Some(reservation.lines))
}

/// Takes what a dispatched order holds out of the warehouse; `true` if it held anything.
#[tracing::instrument(level = "debug", skip_all, fields(order.id = %order))]
pub async fn sell(txn: &DatabaseTransaction, order: OrderId) -> anyhow::Result<bool> {
    let Some(reservation) = persistence::find_reservation(txn, order).await.context("failed to load a reservation")?
    else {
        tracing::warn!("dispatched order has no reservation");
        return Ok(false);
    };
    if !transition(txn, &reservation, ReservationEvent::Dispatch).await? {
        return Ok(false);
    }
    let now = kernel::db::now();
    for (product, quantity) in reservation.lines.iter() {
        let sold =
            persistence::remove_sold(txn, product, quantity, now).await.context("failed to remove sold stock")?;
        anyhow::ensure!(sold, "product {product} holds fewer than the {quantity} units order {order} reserved");
    }
    tracing::info!("reserved stock sold");
    Ok(true)
}

/// Applies `event` to the order if its status allows; `false` if it does not, or if a concurrent
/// event changed the status first (the conditional update decides, not the earlier read).
async fn transition(
    txn: &DatabaseTransaction,
    reservation: &Reservation,
    event: ReservationEvent,
) -> anyhow::Result<bool> {
    let next = match reservation.status.transition(event) {
        Ok(next) => next,
        Err(e) => {
            tracing::debug!(reason = %e, "nothing to do");
            return Ok(false);
        }
    };
    persistence::change_status(txn, reservation.order_id, reservation.status, next, kernel::db::now())
        .await
        .context("failed to update a reservation")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use migrations::MigratorTrait;
    use uuid::Uuid;

    /// A migrated SQLite database in a folder of its own; keep the folder alive while using it.
    pub(crate) async fn database() -> (tempfile::TempDir, DatabaseConnection) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let url = format!("sqlite://{}/inventory.db?mode=rwc", dir.path().display());
        let db = kernel::db::connect(&url, 5).await.expect("a database");
        migrations::Migrator::up(&db, None).await.expect("migrated");
        (dir, db)
    }

    /// A product with a stock row and `on_hand` units.
    pub(crate) async fn stocked(db: &DatabaseConnection, on_hand: i64) -> ProductId {
        let product = ProductId::from(Uuid::now_v7());
        let txn = kernel::db::begin_write(db).await.expect("a transaction");
        track_product(&txn, product).await.expect("tracked");
        txn.commit().await.expect("committed");
        let on_hand = OnHand::try_from(on_hand).expect("valid");
        Inventory::new(db.clone()).set_on_hand(product, on_hand).await.expect("set");
        product
    }

    async fn reserve_now(db: &DatabaseConnection, lines: &[(ProductId, u32)]) -> ReserveOutcome {
        let txn = kernel::db::begin_write(db).await.expect("a transaction");
        let lines = lines.iter().map(|(p, units)| (*p, crate::domain::Quantity::new(*units).expect("valid")));
        let lines = Lines::sum(lines).expect("valid");
        let outcome = reserve(&txn, OrderId::from(Uuid::now_v7()), lines).await.expect("handled");
        txn.commit().await.expect("committed");
        outcome
    }

    #[tokio::test]
    async fn a_new_product_has_no_stock_and_tracking_it_again_changes_nothing() {
        let (_dir, db) = database().await;
        let product = stocked(&db, 3).await;
        let txn = kernel::db::begin_write(&db).await.expect("a transaction");
        track_product(&txn, product).await.expect("tracked");
        txn.commit().await.expect("committed");
        let stock = Inventory::new(db.clone()).get(product).await.expect("loaded").expect("a row");
        assert_eq!((stock.on_hand, stock.reserved, stock.available()), (3, 0, 3));
    }

    #[tokio::test]
    async fn on_hand_cannot_go_below_what_is_reserved() {
        let (_dir, db) = database().await;
        let inventory = Inventory::new(db.clone());
        let product = stocked(&db, 5).await;
        assert!(matches!(reserve_now(&db, &[(product, 3)]).await, ReserveOutcome::Reserved(_)));
        let two = OnHand::try_from(2).expect("valid");
        assert!(matches!(
            inventory.set_on_hand(product, two).await,
            Err(SetOnHandError::BelowReserved { reserved: 3 })
        ));
        let three = OnHand::try_from(3).expect("valid");
        let stock = inventory.set_on_hand(product, three).await.expect("set");
        assert_eq!((stock.on_hand, stock.reserved, stock.available()), (3, 3, 0));
        // The same value again is a success, whatever the engine counts as affected.
        assert!(inventory.set_on_hand(product, three).await.is_ok());
    }

    #[tokio::test]
    async fn setting_the_stock_of_an_unknown_product_is_not_found() {
        let (_dir, db) = database().await;
        let unknown = ProductId::from(Uuid::now_v7());
        let result = Inventory::new(db).set_on_hand(unknown, OnHand::try_from(1).expect("valid")).await;
        assert!(matches!(result, Err(SetOnHandError::NotFound(id)) if id == unknown));
    }

    #[tokio::test]
    async fn an_order_reserves_every_line_or_none() {
        let (_dir, db) = database().await;
        let inventory = Inventory::new(db.clone());
        let (plenty, scarce) = (stocked(&db, 10).await, stocked(&db, 2).await);
        let unknown = ProductId::from(Uuid::now_v7());
        let outcome = reserve_now(&db, &[(plenty, 4), (scarce, 2), (scarce, 1), (unknown, 1)]).await;
        let ReserveOutcome::Rejected(mut shortages) = outcome else { panic!("expected a rejection, got {outcome:?}") };
        shortages.sort_by_key(|s| s.product_id);
        let mut expected = vec![
            Shortage { product_id: scarce, requested: 3, available: 2 },
            Shortage { product_id: unknown, requested: 1, available: 0 },
        ];
        expected.sort_by_key(|s| s.product_id);
        assert_eq!(shortages, expected);
        for product in [plenty, scarce] {
            assert_eq!(inventory.get(product).await.expect("loaded").expect("a row").reserved, 0, "rolled back");
        }
        let outcome = reserve_now(&db, &[(plenty, 4), (scarce, 1), (scarce, 1)]).await;
        assert!(matches!(outcome, ReserveOutcome::Reserved(_)), "{outcome:?}");
        assert_eq!(inventory.get(plenty).await.expect("loaded").expect("a row").reserved, 4);
        assert_eq!(inventory.get(scarce).await.expect("loaded").expect("a row").available(), 0);
    }
}
