//! The transactional outbox and its relay.
//!
//! A module writes its events with [`Outbox::enqueue`] in the transaction that changes its state,
//! so an event exists exactly when the change does. The [`Relay`] hands pending rows to the bus in
//! order and marks them published only once the bus has accepted them; if the process dies in
//! between, the rows are still pending and go out after the restart (at least once: consumers'
//! inboxes drop the repeat).

use std::sync::Arc;
use std::time::Duration;

use sea_orm::sea_query::{Alias, Expr, ExprTrait, LockBehavior, LockType, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::Envelope;
use crate::bus::{EventBus, backoff, metric};
use crate::db::{KernelTables, locks_rows};

/// One module's outbox.
#[derive(Clone)]
pub struct Outbox {
    module: &'static str,
    table: Arc<str>,
    lock_table: Arc<str>,
    db: DatabaseConnection,
    wake: Arc<Notify>,
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
        }
    }

    pub fn module(&self) -> &'static str {
        self.module
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Writes `envelope` in the caller's transaction. Call [`commit`](Self::commit) (or
    /// [`wake`](Self::wake) after committing yourself) so the relay sends it at once.
    pub async fn enqueue<C: ConnectionTrait>(&self, txn: &C, envelope: &Envelope) -> Result<(), DbErr> {
        let payload = serde_json::to_string(envelope).map_err(|e| DbErr::Json(e.to_string()))?;
        let insert = Query::insert()
            .into_table(Alias::new(&*self.table))
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

    /// Wraps `event` in an envelope (a consequence of `cause`, when there is one: same correlation
    /// and trace) and writes it in the caller's transaction.
    pub async fn publish<E: contracts::IntegrationEvent>(
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
        self.enqueue(txn, &envelope).await.with_context(|| format!("failed to write {} to the outbox", E::NAME))
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

    /// Deletes the rows the bus accepted before `cutoff`; returns how many.
    pub async fn purge_published(&self, cutoff: chrono::DateTime<chrono::Utc>) -> Result<u64, DbErr> {
        crate::db::purge_before(&self.db, &self.table, "published_at", cutoff).await
    }

    /// Rows not yet accepted by the bus.
    pub async fn pending(&self) -> Result<u64, DbErr> {
        crate::db::count(&self.db, &self.table, Expr::col("published_at").is_null()).await
    }
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
