//! The transactional outbox and its relay.
//!
//! A module writes its events with [`Outbox::publish`] in the transaction that changes its state,
//! so an event exists exactly when the change does. The [`Relay`] hands pending rows to the bus in
//! order and marks them published only once the bus has accepted them; if the process dies in
//! between, the rows are still pending and go out after the restart (at least once: consumers'
//! inboxes drop the repeat).
//!
//! The kernel's outbox is untyped (`Outbox`: rows of [`Envelope`]s for the relay, the inbox and
//! housekeeping). A module publishes through its outbox bound to its own publisher
//! (`Outbox<orders_contracts::Orders>`, from [`Outbox::bind`]), which takes that publisher's events
//! and no other module's: the compiler refuses the rest.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use contracts::{IntegrationEvent, Publisher};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, LockBehavior, LockType, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::Envelope;
use crate::bus::{EventBus, backoff, metric};
use crate::db::{KernelTables, locks_rows};

/// One module's outbox: untyped (`Outbox`) for the kernel, or bound to the module's [`Publisher`]
/// (`Outbox<P>`) to publish its events.
///
/// A bound outbox publishes its own publisher's events only; another module's event does not
/// compile:
///
/// ```compile_fail,E0271
/// # use bazaar_kernel::Outbox;
/// # use contracts::{IntegrationEvent, Publisher};
/// # use sea_orm::DatabaseTransaction;
/// # enum Catalog {}
/// # impl Publisher for Catalog { const NAME: &'static str = "catalog"; }
/// # enum Orders {}
/// # impl Publisher for Orders { const NAME: &'static str = "orders"; }
/// # #[derive(serde::Serialize, serde::Deserialize)]
/// # struct ProductCreated {}
/// # impl IntegrationEvent for ProductCreated {
/// #     type Publisher = Catalog;
/// #     const NAME: &'static str = "ProductCreated";
/// #     const VERSION: u32 = 1;
/// # }
/// async fn place_order(outbox: &Outbox<Orders>, txn: &DatabaseTransaction) -> anyhow::Result<()> {
///     outbox.publish(txn, &ProductCreated {}, None).await // catalog's event, orders' outbox
/// }
/// ```
///
/// while its own does:
///
/// ```no_run
/// # use bazaar_kernel::Outbox;
/// # use contracts::{IntegrationEvent, Publisher};
/// # use sea_orm::DatabaseTransaction;
/// # enum Orders {}
/// # impl Publisher for Orders { const NAME: &'static str = "orders"; }
/// # #[derive(serde::Serialize, serde::Deserialize)]
/// # struct OrderCreated {}
/// # impl IntegrationEvent for OrderCreated {
/// #     type Publisher = Orders;
/// #     const NAME: &'static str = "OrderCreated";
/// #     const VERSION: u32 = 1;
/// # }
/// async fn place_order(outbox: &Outbox<Orders>, txn: &DatabaseTransaction) -> anyhow::Result<()> {
///     outbox.publish(txn, &OrderCreated {}, None).await
/// }
/// ```
pub struct Outbox<P = Unbound> {
    module: &'static str,
    table: Arc<str>,
    lock_table: Arc<str>,
    db: DatabaseConnection,
    wake: Arc<Notify>,
    publisher: PhantomData<fn() -> P>,
}

/// The publisher of an outbox bound to none: the kernel's [`Outbox`], which publishes no event.
pub enum Unbound {}

// Not derived: a derive would require `P: Clone` of the marker.
impl<P> Clone for Outbox<P> {
    fn clone(&self) -> Self {
        self.retyped()
    }
}

impl Outbox {
    pub fn new(module: &'static str, db: DatabaseConnection) -> Self {
        let tables = KernelTables::of(module);
        Self {
            module,
            table: tables.outbox.into(),
            lock_table: tables.outbox_lock.into(),
            db,
            wake: Arc::new(Notify::new()),
            publisher: PhantomData,
        }
    }

    /// This outbox as its module's publisher `P`, which may publish `P`'s events only.
    ///
    /// # Panics
    /// If `P` is another module's publisher than this outbox's module: a bug, found at start-up.
    pub fn bind<P: Publisher>(&self) -> Outbox<P> {
        assert_eq!(P::NAME, self.module, "the {} module's outbox bound to another publisher", self.module);
        self.retyped()
    }

    /// Writes `envelope` in the caller's transaction. Call [`commit`](Self::commit) (or
    /// [`wake`](Self::wake) after committing yourself) so the relay sends it at once.
    pub async fn enqueue<C: ConnectionTrait>(&self, txn: &C, envelope: &Envelope) -> Result<(), DbErr> {
        write(txn, &self.table, envelope).await
    }

    /// Deletes the rows the bus accepted before `cutoff`; returns how many.
    pub async fn purge_published(&self, cutoff: chrono::DateTime<chrono::Utc>) -> Result<u64, DbErr> {
        crate::db::purge_before(&self.db, &self.table, "published_at", cutoff).await
    }

    /// Rows not yet accepted by the bus.
    pub async fn pending(&self) -> Result<u64, DbErr> {
        crate::db::count(&self.db, &self.table, Expr::col("published_at").is_null()).await
    }
}

impl<P: Publisher> Outbox<P> {
    /// Wraps `event` in an envelope (a consequence of `cause`, when there is one: same correlation
    /// and trace) and writes it in the caller's transaction.
    pub async fn publish<E: IntegrationEvent<Publisher = P>>(
        &self,
        txn: &DatabaseTransaction,
        event: &E,
        cause: Option<&Envelope>,
    ) -> anyhow::Result<()> {
        use anyhow::Context;
        let envelope = match cause {
            Some(cause) => Envelope::caused_by(event, cause),
            None => Envelope::new(event),
        }
        .context("failed to serialise an event")?;
        write(txn, &self.table, &envelope).await.with_context(|| format!("failed to write {} to the outbox", E::NAME))
    }
}

impl<P> Outbox<P> {
    /// The same outbox (same rows, same relay to wake) with another publisher type.
    fn retyped<Q>(&self) -> Outbox<Q> {
        Outbox {
            module: self.module,
            table: self.table.clone(),
            lock_table: self.lock_table.clone(),
            db: self.db.clone(),
            wake: self.wake.clone(),
            publisher: PhantomData,
        }
    }

    pub fn module(&self) -> &'static str {
        self.module
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Commits `txn` and wakes the relay.
    pub async fn commit(&self, txn: DatabaseTransaction) -> Result<(), DbErr> {
        txn.commit().await?;
        self.wake();
        Ok(())
    }

    /// Tells the relay that new rows were committed.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Writes `envelope` as a pending row of the outbox `table`.
async fn write<C: ConnectionTrait>(txn: &C, table: &str, envelope: &Envelope) -> Result<(), DbErr> {
    let payload = serde_json::to_string(envelope).map_err(|e| DbErr::Json(e.to_string()))?;
    let insert = Query::insert()
        .into_table(Alias::new(table))
        .columns(["event_id", "event", "version", "routing_key", "payload", "created_at", "attempts"])
        .values_panic([
            envelope.id.to_string().into(),
            envelope.event.clone().into(),
            envelope.version.into(),
            envelope.routing_key().into(),
            payload.into(),
            envelope.occurred_at.into(),
            0i32.into(),
        ])
        .to_owned();
    txn.execute(&insert).await?;
    Ok(())
}

/// Sends one module's outbox to the bus.
pub struct Relay {
    outbox: Outbox,
    bus: Arc<dyn EventBus>,
    batch_size: u64,
    poll_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error(transparent)]
    Bus(#[from] crate::BusError),
}

impl Relay {
    pub fn new(outbox: Outbox, bus: Arc<dyn EventBus>, batch_size: u64, poll_interval: Duration) -> Self {
        Self { outbox, bus, batch_size: Ord::max(batch_size, 1), poll_interval }
    }

    /// Relays until `shutdown` is cancelled; a batch under way is finished first. Wakes on every
    /// [`Outbox::wake`]; the poll interval only catches rows written by another process.
    #[tracing::instrument(name = "outbox.relay", skip_all, fields(module = self.outbox.module))]
    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            match self.relay_batch().await {
                Ok(sent) if sent as u64 >= self.batch_size => {
                    failures = 0;
                    continue;
                }
                Ok(_) => failures = 0,
                Err(e) => {
                    failures += 1;
                    let delay = backoff(failures, Duration::from_millis(100), Duration::from_secs(30));
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "outbox relay failed");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => continue,
                        _ = shutdown.cancelled() => break,
                    }
                }
            }
            tokio::select! {
                _ = self.outbox.wake.notified() => {}
                _ = tokio::time::sleep(self.poll_interval) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        tracing::debug!("outbox relay stopped");
    }

    /// Publishes one batch; returns how many rows the bus accepted.
    async fn relay_batch(&self) -> Result<usize, RelayError> {
        let db = &self.outbox.db;
        if !locks_rows(db.get_database_backend()) {
            return self.publish_pending(db).await;
        }
        // One relay at a time per module, whatever the number of replicas: that keeps the order.
        let txn = db.begin().await?;
        let lease = Query::select()
            .column("id")
            .from(Alias::new(&*self.outbox.lock_table))
            .and_where(Expr::col("id").eq(1))
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .to_owned();
        if txn.query_one(&lease).await?.is_none() {
            txn.rollback().await?;
            return Ok(0);
        }
        let result = self.publish_pending(&txn).await;
        txn.commit().await?;
        result
    }

    async fn publish_pending<C: ConnectionTrait>(&self, conn: &C) -> Result<usize, RelayError> {
        let table = Alias::new(&*self.outbox.table);
        let select = Query::select()
            .columns(["seq", "payload"])
            .from(table.clone())
            .and_where(Expr::col("published_at").is_null())
            .order_by("seq", Order::Asc)
            .limit(self.batch_size)
            .to_owned();
        let rows = conn.query_all(&select).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut batch = Vec::with_capacity(rows.len());
        for row in rows {
            let seq: i64 = row.try_get("", "seq")?;
            let payload: String = row.try_get("", "payload")?;
            match serde_json::from_str::<Envelope>(&payload) {
                Ok(envelope) => batch.push((seq, envelope)),
                // Only this code writes the outbox, so this is corruption: keep the row, skip it.
                Err(e) => tracing::error!(seq, error = %e, "outbox row does not decode; skipped"),
            }
        }
        let envelopes: Vec<Envelope> = batch.iter().map(|(_, e)| e.clone()).collect();
        let (accepted, failure) = self.bus.publish_all(&envelopes).await;
        let now = crate::db::now();
        if accepted > 0 {
            let seqs: Vec<i64> = batch[..accepted].iter().map(|(seq, _)| *seq).collect();
            let update = Query::update()
                .table(table.clone())
                .value("published_at", now)
                .and_where(Expr::col("seq").is_in(seqs))
                .to_owned();
            conn.execute(&update).await?;
            metrics::counter!(metric::PUBLISHED, "module" => self.outbox.module).increment(accepted as u64);
        }
        if let Some(error) = failure {
            let (seq, _) = &batch[accepted];
            let update = Query::update()
                .table(table)
                .value("attempts", Expr::col("attempts").add(1))
                .value("last_error", error.to_string())
                .and_where(Expr::col("seq").eq(*seq))
                .to_owned();
            conn.execute(&update).await?;
            return Err(error.into());
        }
        Ok(accepted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    enum Orders {}

    impl Publisher for Orders {
        const NAME: &'static str = "orders";
    }

    #[test]
    fn an_outbox_binds_to_its_own_modules_publisher() {
        let outbox = Outbox::new("orders", DatabaseConnection::default());
        assert_eq!(outbox.bind::<Orders>().module(), "orders");
    }

    #[test]
    #[should_panic(expected = "the catalog module's outbox bound to another publisher")]
    fn an_outbox_refuses_to_bind_to_another_modules_publisher() {
        Outbox::new("catalog", DatabaseConnection::default()).bind::<Orders>();
    }
}
