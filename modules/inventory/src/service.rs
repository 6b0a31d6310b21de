//! The inventory's use cases.
//!
//! Reading and setting a product's stock run in transactions of their own. The use cases events
//! trigger (tracking a product; reserving, releasing and selling an order's stock) run in the
//! transaction the inbox hands the event handler, so their effect commits exactly once, together
//! with the events they publish.

use anyhow::Context;
use inventory_contracts::{StockReleased, StockReservationFailed, StockReserved};
use kernel::{Envelope, Outbox};
use orders_contracts::OrderItem;
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};

use crate::domain::{
    Lines, OnHand, OrderId, ProductId, Reservation, ReservationEvent, ReservationStatus, Shortage, StockLevel,
};
use crate::persistence;

#[derive(Clone)]
pub struct Inventory {
    db: DatabaseConnection,
    outbox: Outbox<inventory_contracts::Inventory>,
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
    pub fn new(db: DatabaseConnection, outbox: Outbox) -> Self {
        Self { db, outbox: outbox.bind() }
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

/// What [`Inventory::reserve`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Every line is held.
    Reserved(Lines),
    /// Some line was short; nothing is held.
    Rejected(Vec<Shortage>),
    /// The order was seen before (reserved, rejected, or cancelled first): nothing was done.
    AlreadyKnown(ReservationStatus),
}

/// The use cases events trigger: each writes its effect, and the events it publishes, through the
/// transaction the inbox hands it, with the event that caused it as their cause.
impl Inventory {
    /// Gives a new product a stock row with nothing in it, unless it has one. The product's version
    /// does not matter here: the row is only ever inserted, never overwritten, so a late or
    /// repeated event changes nothing.
    #[tracing::instrument(skip_all, fields(product.id = %product))]
    pub async fn track_product(&self, txn: &DatabaseTransaction, product: ProductId) -> anyhow::Result<()> {
        let added = persistence::insert_stock_if_absent(txn, product, kernel::db::now())
            .await
            .context("failed to add a stock row")?;
        if !added {
            tracing::debug!("the product has a stock row already");
        }
        Ok(())
    }

    /// Holds every line of a new order, or none, and says which: `StockReserved` or
    /// `StockReservationFailed`. The lines are reserved in a savepoint that is rolled back as soon
    /// as one of them is short, and the outcome is recorded so that it happens once: an order seen
    /// before reserves and publishes nothing.
    #[tracing::instrument(skip_all, fields(order.id = %order))]
    pub async fn reserve(
        &self,
        txn: &DatabaseTransaction,
        order: OrderId,
        lines: Lines,
        cause: &Envelope,
    ) -> anyhow::Result<ReserveOutcome> {
        if let Some(known) = persistence::find_reservation(txn, order).await.context("failed to load a reservation")? {
            tracing::info!(reservation.status = known.status.as_str(), "order known already; nothing reserved");
            return Ok(ReserveOutcome::AlreadyKnown(known.status));
        }
        let now = kernel::db::now();
        let savepoint = txn.begin().await.context("failed to open a savepoint")?;
        let mut short = Vec::new();
        for (product, quantity) in lines.iter() {
            let held =
                persistence::reserve(&savepoint, product, quantity, now).await.context("failed to reserve stock")?;
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
        // A concurrent first event of this order makes this a unique violation: the transaction
        // fails and the retry finds the order known.
        persistence::insert_reservation(txn, &reservation, now).await.context("failed to record a reservation")?;
        if status == ReservationStatus::Reserved {
            let reserved = StockReserved { order_id: order.as_uuid(), items: items(&reservation.lines) };
            self.outbox.publish(txn, &reserved, Some(cause)).await?;
            tracing::info!("stock reserved");
            Ok(ReserveOutcome::Reserved(reservation.lines))
        } else {
            let failed = StockReservationFailed {
                order_id: order.as_uuid(),
                shortages: shortages
                    .iter()
                    .map(|s| inventory_contracts::Shortage {
                        product_id: s.product_id.as_uuid(),
                        requested: s.requested,
                        available: s.available,
                    })
                    .collect(),
            };
            self.outbox.publish(txn, &failed, Some(cause)).await?;
            tracing::info!(shortages = shortages.len(), "stock reservation failed");
            Ok(ReserveOutcome::Rejected(shortages))
        }
    }

    /// Lets go of what a cancelled order holds and says so (`StockReleased`); returns the lines
    /// released, if it held any. An order not seen yet is recorded as cancelled, so its late
    /// `OrderCreated` reserves nothing.
    #[tracing::instrument(skip_all, fields(order.id = %order))]
    pub async fn release(
        &self,
        txn: &DatabaseTransaction,
        order: OrderId,
        cause: &Envelope,
    ) -> anyhow::Result<Option<Lines>> {
        let now = kernel::db::now();
        let Some(reservation) =
            persistence::find_reservation(txn, order).await.context("failed to load a reservation")?
        else {
            let tombstone =
                Reservation { order_id: order, status: ReservationStatus::Cancelled, lines: Lines::default() };
            persistence::insert_reservation(txn, &tombstone, now).await.context("failed to record a cancellation")?;
            tracing::info!("order cancelled before it was seen");
            return Ok(None);
        };
        if !transition(txn, &reservation, ReservationEvent::Cancel).await? {
            return Ok(None);
        }
        for (product, quantity) in reservation.lines.iter() {
            let released =
                persistence::release(txn, product, quantity, now).await.context("failed to release stock")?;
            anyhow::ensure!(released, "product {product} holds fewer than the {quantity} units order {order} reserved");
        }
        let released = StockReleased { order_id: order.as_uuid(), items: items(&reservation.lines) };
        self.outbox.publish(txn, &released, Some(cause)).await?;
        tracing::info!("stock released");
        Ok(Some(reservation.lines))
    }

    /// Takes what a dispatched order holds out of the warehouse; `true` if it held anything.
    #[tracing::instrument(skip_all, fields(order.id = %order))]
    pub async fn sell(&self, txn: &DatabaseTransaction, order: OrderId) -> anyhow::Result<bool> {
        let Some(reservation) =
            persistence::find_reservation(txn, order).await.context("failed to load a reservation")?
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
}

/// The lines as the events about a reservation carry them.
fn items(lines: &Lines) -> Vec<OrderItem> {
    lines.iter().map(|(product, quantity)| OrderItem { product_id: product.as_uuid(), quantity }).collect()
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
    use kernel::Module;
    use kernel::testing::{Engine, TestDatabase};
    use orders_contracts::OrderCreated;
    use uuid::Uuid;

    /// The kit's fresh database, with the inventory's tables.
    pub(crate) async fn migrated(database: &TestDatabase) -> DatabaseConnection {
        let db = database.connect(crate::NAME).await;
        crate::InventoryModule.migrate(&db).await.expect("migrated");
        db
    }

    /// The use cases on `db`, publishing through the module's outbox there.
    pub(crate) fn inventory(db: &DatabaseConnection) -> Inventory {
        Inventory::new(db.clone(), Outbox::new(crate::NAME, db.clone()))
    }

    /// A product with a stock row and `on_hand` units.
    pub(crate) async fn stocked(db: &DatabaseConnection, on_hand: i64) -> ProductId {
        let product = ProductId::from(Uuid::now_v7());
        let txn = kernel::db::begin_write(db).await.expect("a transaction");
        inventory(db).track_product(&txn, product).await.expect("tracked");
        txn.commit().await.expect("committed");
        let on_hand = OnHand::try_from(on_hand).expect("valid");
        inventory(db).set_on_hand(product, on_hand).await.expect("set");
        product
    }

    async fn reserve_now(db: &DatabaseConnection, lines: &[(ProductId, u32)]) -> ReserveOutcome {
        let order_id = Uuid::now_v7();
        let cause =
            Envelope::new(&OrderCreated { order_id, user_id: Uuid::now_v7(), items: Vec::new() }).expect("JSON");
        let txn = kernel::db::begin_write(db).await.expect("a transaction");
        let lines = lines.iter().map(|(p, units)| (*p, crate::domain::Quantity::new(*units).expect("valid")));
        let lines = Lines::sum(lines).expect("valid");
        let outcome = inventory(db).reserve(&txn, OrderId::from(order_id), lines, &cause).await.expect("handled");
        txn.commit().await.expect("committed");
        outcome
    }

    #[tokio::test]
    async fn a_new_product_has_no_stock_and_tracking_it_again_changes_nothing() {
        let database = TestDatabase::fresh(Engine::Sqlite).await.expect("SQLite needs no server");
        let db = migrated(&database).await;
        let product = stocked(&db, 3).await;
        let txn = kernel::db::begin_write(&db).await.expect("a transaction");
        inventory(&db).track_product(&txn, product).await.expect("tracked");
        txn.commit().await.expect("committed");
        let stock = inventory(&db).get(product).await.expect("loaded").expect("a row");
        assert_eq!((stock.on_hand, stock.reserved, stock.available()), (3, 0, 3));
    }

    #[tokio::test]
    async fn on_hand_cannot_go_below_what_is_reserved() {
        let database = TestDatabase::fresh(Engine::Sqlite).await.expect("SQLite needs no server");
        let db = migrated(&database).await;
        let inventory = inventory(&db);
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
        let database = TestDatabase::fresh(Engine::Sqlite).await.expect("SQLite needs no server");
        let db = migrated(&database).await;
        let unknown = ProductId::from(Uuid::now_v7());
        let result = inventory(&db).set_on_hand(unknown, OnHand::try_from(1).expect("valid")).await;
        assert!(matches!(result, Err(SetOnHandError::NotFound(id)) if id == unknown));
    }

    #[tokio::test]
    async fn an_order_reserves_every_line_or_none() {
        let database = TestDatabase::fresh(Engine::Sqlite).await.expect("SQLite needs no server");
        let db = migrated(&database).await;
        let inventory = inventory(&db);
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
