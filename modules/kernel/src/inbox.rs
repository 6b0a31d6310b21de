//! The inbox: each consumed event has its effect at most once, and failing ones end in a
//! dead-letter table instead of blocking the rest.
//!
//! The inbox records `(consumer, event id)` in the same transaction as the handler's effect, so a
//! redelivered event finds its row and does nothing; the [delivery pipeline](crate::delivery) runs
//! every bus's deliveries through it ([`Inbox::process`] does the same for one envelope). The
//! in-process bus also uses the inbox table as the consumer's durable queue ([`Inbox::enqueue`],
//! [`Inbox::due`], and [`Inbox::settle`] to carry out what the pipeline decided): an event accepted
//! for a consumer survives a crash before it is handled.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use serde::Serialize;
use tracing::Instrument;

use crate::db::{self, KernelTables};
use crate::delivery::Disposition;
use crate::{Envelope, EventHandler, HandlerError, Outbox};

/// One module's inbox and dead-letter table.
#[derive(Clone)]
pub struct Inbox {
    module: &'static str,
    table: Arc<str>,
    dead_letters: Arc<str>,
    db: DatabaseConnection,
    /// The consuming module's outbox: handlers publish through it, and it is woken after commit.
    outbox: Outbox,
}

/// What [`Inbox::process`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processed {
    Handled,
    /// The event had been handled (or dead-lettered) before: nothing was done.
    Duplicate,
}

/// An event waiting in a consumer's queue (in-process bus).
#[derive(Debug, Clone)]
pub struct Queued {
    pub event_id: String,
    pub payload: String,
    pub attempts: u32,
}

/// An event that was given up on, kept for inspection and replay.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub id: i64,
    pub consumer: String,
    pub event_id: String,
    pub event: String,
    pub payload: String,
    pub error: String,
    pub attempts: u32,
    pub failed_at: DateTime<Utc>,
}

impl Inbox {
    pub fn new(outbox: Outbox) -> Self {
        let module = outbox.module();
        let tables = KernelTables::of(module);
        let db = outbox.db().clone();
        Self { module, table: tables.inbox.into(), dead_letters: tables.dead_letters.into(), db, outbox }
    }

    pub fn module(&self) -> &'static str {
        self.module
    }

    /// Runs `handler` for `envelope` unless `consumer` handled it before, and commits its effect
    /// together with the record that it did.
    pub async fn process(
        &self,
        consumer: &str,
        envelope: &Envelope,
        handler: &dyn EventHandler,
    ) -> Result<Processed, HandlerError> {
        let mut outcomes = self.process_batch(consumer, std::slice::from_ref(envelope), handler).await?;
        outcomes.pop().unwrap_or(Ok(Processed::Duplicate))
    }

    /// Handles several events in one transaction, each in a savepoint of its own: one that fails
    /// is rolled back alone and reported, the others commit together. One commit for many events
    /// is what lets a single-writer SQLite keep up under load. If the commit itself fails, nothing
    /// was handled; once it succeeded with an event handled, [`EventHandler::committed`] runs. A [transient](HandlerError::is_transient) failure ends the batch there: the
    /// outcomes are one shorter than `envelopes` per event not tried, so that the events behind it
    /// wait with it and keep their order.
    pub(crate) async fn process_batch(
        &self,
        consumer: &str,
        envelopes: &[Envelope],
        handler: &dyn EventHandler,
    ) -> Result<Vec<Result<Processed, HandlerError>>, DbErr> {
        use sea_orm::TransactionTrait;
        let txn = crate::db::begin_write(&self.db).await?;
        let mut outcomes = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            let savepoint = txn.begin().await?;
            let outcome: Result<Processed, HandlerError> = async {
                if !self.claim(&savepoint, consumer, envelope).await? {
                    return Ok(Processed::Duplicate);
                }
                handler.handle(&savepoint, envelope).await?;
                Ok(Processed::Handled)
            }
            .instrument(
                tracing::info_span!("inbox.process", consumer, event.id = %envelope.id, event.name = %envelope.event),
            )
            .await;
            // A duplicate may have failed its insert (PostgreSQL then refuses to release the
            // savepoint): it has nothing to keep either way.
            match outcome {
                Ok(Processed::Handled) => savepoint.commit().await?,
                _ => savepoint.rollback().await?,
            }
            let transient = matches!(&outcome, Err(e) if e.is_transient());
            outcomes.push(outcome);
            if transient {
                break;
            }
        }
        self.outbox.commit(txn).await?;
        if outcomes.iter().any(|o| matches!(o, Ok(Processed::Handled))) {
            handler.committed();
        }
        Ok(outcomes)
    }

    /// Marks the event handled by `consumer` in `txn`; `false` if it already was.
    async fn claim<C: ConnectionTrait>(&self, txn: &C, consumer: &str, envelope: &Envelope) -> Result<bool, DbErr> {
        let now = db::now();
        // Queued by the in-process bus and not handled yet: take it. (A concurrent claim waits for
        // the row lock, then finds `processed_at` set.)
        let update = Query::update()
            .table(Alias::new(&*self.table))
            .value("processed_at", now)
            .and_where(Expr::col("consumer").eq(consumer))
            .and_where(Expr::col("event_id").eq(envelope.id.to_string()))
            .and_where(Expr::col("processed_at").is_null())
            .and_where(Expr::col("dead").eq(false))
            .to_owned();
        if txn.execute(&update).await?.rows_affected() == 1 {
            return Ok(true);
        }
        // Not queued (a broker delivery): record it. The unique key turns a second delivery into a
        // violation, on every engine, where an upsert's row count would differ between drivers.
        match txn.execute(&self.insert_row(consumer, envelope, Some(now))?).await {
            Ok(_) => Ok(true),
            Err(e) if db::is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The inbox row of `envelope` for `consumer`; `processed_at` is `None` for a queued event.
    fn insert_row(
        &self,
        consumer: &str,
        envelope: &Envelope,
        processed_at: Option<DateTime<Utc>>,
    ) -> Result<sea_orm::sea_query::InsertStatement, DbErr> {
        Ok(Query::insert()
            .into_table(Alias::new(&*self.table))
            .columns([
                "consumer",
                "event_id",
                "event",
                "version",
                "payload",
                "received_at",
                "processed_at",
                "attempts",
                "dead",
            ])
            .values_panic(self.row_values(consumer, envelope, processed_at)?)
            .to_owned())
    }

    fn row_values(
        &self,
        consumer: &str,
        envelope: &Envelope,
        processed_at: Option<DateTime<Utc>>,
    ) -> Result<[sea_orm::sea_query::SimpleExpr; 9], DbErr> {
        let payload = serde_json::to_string(envelope).map_err(|e| DbErr::Json(e.to_string()))?;
        Ok([
            consumer.into(),
            envelope.id.to_string().into(),
            envelope.event.clone().into(),
            envelope.version.into(),
            payload.into(),
            db::now().into(),
            processed_at.into(),
            0i32.into(),
            false.into(),
        ])
    }

    /// Queues `envelope` for `consumer` (in-process bus); a repeat of a known event is ignored.
    pub async fn enqueue(&self, consumer: &str, envelope: &Envelope) -> Result<(), DbErr> {
        self.enqueue_all(consumer, std::slice::from_ref(envelope)).await
    }

    /// Queues `envelopes` for `consumer` in one statement; known events are ignored.
    pub async fn enqueue_all(&self, consumer: &str, envelopes: &[Envelope]) -> Result<(), DbErr> {
        let Some((first, rest)) = envelopes.split_first() else { return Ok(()) };
        let mut insert = self.insert_row(consumer, first, None)?;
        for envelope in rest {
            insert.values_panic(self.row_values(consumer, envelope, None)?);
        }
        insert.on_conflict(
            OnConflict::columns(["consumer", "event_id"]).do_nothing_on(["consumer", "event_id"]).to_owned(),
        );
        self.db.execute(&insert).await?;
        Ok(())
    }

    /// Queued events of `consumer` that are due, oldest first.
    pub async fn due(&self, consumer: &str, limit: u64) -> Result<Vec<Queued>, DbErr> {
        let now = db::now();
        let select = Query::select()
            .columns(["event_id", "payload", "attempts"])
            .from(Alias::new(&*self.table))
            .and_where(Expr::col("consumer").eq(consumer))
            .and_where(Expr::col("processed_at").is_null())
            .and_where(Expr::col("dead").eq(false))
            .and_where(Expr::col("next_attempt_at").is_null().or(Expr::col("next_attempt_at").lte(now)))
            .order_by("seq", Order::Asc)
            .limit(limit)
            .to_owned();
        self.db
            .query_all(&select)
            .await?
            .into_iter()
            .map(|row| {
                Ok(Queued {
                    event_id: row.try_get("", "event_id")?,
                    payload: row.try_get("", "payload")?,
                    attempts: u32::try_from(row.try_get::<i32>("", "attempts")?).unwrap_or(0),
                })
            })
            .collect()
    }

    /// When the earliest queued retry of `consumer` falls due, if any is waiting.
    pub async fn next_retry_at(&self, consumer: &str) -> Result<Option<DateTime<Utc>>, DbErr> {
        let select = Query::select()
            .column("next_attempt_at")
            .from(Alias::new(&*self.table))
            .and_where(Expr::col("consumer").eq(consumer))
            .and_where(Expr::col("processed_at").is_null())
            .and_where(Expr::col("dead").eq(false))
            .and_where(Expr::col("next_attempt_at").is_not_null())
            .order_by("next_attempt_at", Order::Asc)
            .limit(1)
            .to_owned();
        match self.db.query_one(&select).await? {
            Some(row) => Ok(Some(row.try_get("", "next_attempt_at")?)),
            None => Ok(None),
        }
    }

    /// Carries out, for an event of this inbox's queue (in-process bus), what the delivery
    /// pipeline decided: a retry is scheduled (`attempts` recorded, due after its delay), a dead
    /// letter moves to the dead-letter table; `Done` was recorded by the claim, and a released
    /// event stays as it is. On an error nothing changed: the event is delivered again.
    pub async fn settle(&self, consumer: &str, queued: &Queued, disposition: &Disposition) -> Result<(), DbErr> {
        match disposition {
            Disposition::Done | Disposition::Release => Ok(()),
            Disposition::Retry { attempts, delay, error } => {
                let at = db::now() + chrono::Duration::from_std(*delay).unwrap_or_default();
                self.schedule_retry(consumer, &queued.event_id, *attempts, at, error).await
            }
            Disposition::DeadLetter { attempts, error } => self.dead_letter(consumer, queued, *attempts, error).await,
        }
    }

    /// Records a failed attempt and when to try again.
    async fn schedule_retry(
        &self,
        consumer: &str,
        event_id: &str,
        attempts: u32,
        at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), DbErr> {
        let update = Query::update()
            .table(Alias::new(&*self.table))
            .value("attempts", attempts as i32)
            .value("next_attempt_at", at)
            .value("last_error", error)
            .and_where(Expr::col("consumer").eq(consumer))
            .and_where(Expr::col("event_id").eq(event_id))
            .to_owned();
        self.db.execute(&update).await?;
        Ok(())
    }

    /// Gives up on a queued event: it moves to the dead-letter table, in one transaction.
    async fn dead_letter(&self, consumer: &str, queued: &Queued, attempts: u32, error: &str) -> Result<(), DbErr> {
        let txn = crate::db::begin_write(&self.db).await?;
        let update = Query::update()
            .table(Alias::new(&*self.table))
            .value("attempts", attempts as i32)
            .value("dead", true)
            .value("last_error", error)
            .and_where(Expr::col("consumer").eq(consumer))
            .and_where(Expr::col("event_id").eq(queued.event_id.as_str()))
            .to_owned();
        txn.execute(&update).await?;
        let event = serde_json::from_str::<Envelope>(&queued.payload).map(|e| e.event).unwrap_or_default();
        self.record_dead_letter(&txn, consumer, &queued.event_id, &event, &queued.payload, attempts, error).await?;
        txn.commit().await
    }

    #[allow(clippy::too_many_arguments)]
    async fn record_dead_letter<C: ConnectionTrait>(
        &self,
        conn: &C,
        consumer: &str,
        event_id: &str,
        event: &str,
        payload: &str,
        attempts: u32,
        error: &str,
    ) -> Result<(), DbErr> {
        let insert = Query::insert()
            .into_table(Alias::new(&*self.dead_letters))
            .columns(["consumer", "event_id", "event", "payload", "error", "attempts", "failed_at"])
            .values_panic([
                consumer.into(),
                event_id.into(),
                event.into(),
                payload.into(),
                error.into(),
                (attempts as i32).into(),
                db::now().into(),
            ])
            .to_owned();
        conn.execute(&insert).await?;
        Ok(())
    }

    /// Deletes the records of events handled before `cutoff`; returns how many. A redelivery older
    /// than that would have a second effect, so `cutoff` must lie far beyond any redelivery.
    pub async fn purge_processed(&self, cutoff: DateTime<Utc>) -> Result<u64, DbErr> {
        db::purge_before(&self.db, &self.table, "processed_at", cutoff).await
    }

    /// The dead letters of this module, newest first.
    pub async fn dead_letter_list(&self, limit: u64) -> Result<Vec<DeadLetter>, DbErr> {
        let select = Query::select()
            .columns(["id", "consumer", "event_id", "event", "payload", "error", "attempts", "failed_at"])
            .from(Alias::new(&*self.dead_letters))
            .order_by("id", Order::Desc)
            .limit(limit)
            .to_owned();
        self.db
            .query_all(&select)
            .await?
            .into_iter()
            .map(|row| {
                Ok(DeadLetter {
                    id: row.try_get("", "id")?,
                    consumer: row.try_get("", "consumer")?,
                    event_id: row.try_get("", "event_id")?,
                    event: row.try_get("", "event")?,
                    payload: row.try_get("", "payload")?,
                    error: row.try_get("", "error")?,
                    attempts: u32::try_from(row.try_get::<i32>("", "attempts")?).unwrap_or(0),
                    failed_at: row.try_get("", "failed_at")?,
                })
            })
            .collect()
    }

    /// Queues a dead-lettered event again with its attempts reset, and forgets the dead letter;
    /// `false` if there is no dead letter `id`. Meant for after the cause is fixed.
    pub async fn replay(&self, id: i64) -> Result<bool, DbErr> {
        let txn = db::begin_write(&self.db).await?;
        let select = Query::select()
            .columns(["consumer", "event_id"])
            .from(Alias::new(&*self.dead_letters))
            .and_where(Expr::col("id").eq(id))
            .to_owned();
        let Some(row) = txn.query_one(&select).await? else {
            return Ok(false);
        };
        let (consumer, event_id): (String, String) = (row.try_get("", "consumer")?, row.try_get("", "event_id")?);
        let requeue = Query::update()
            .table(Alias::new(&*self.table))
            .value("dead", false)
            .value("attempts", 0)
            .value("next_attempt_at", Option::<DateTime<Utc>>::None)
            .value("last_error", Option::<String>::None)
            .and_where(Expr::col("consumer").eq(consumer.as_str()))
            .and_where(Expr::col("event_id").eq(event_id.as_str()))
            .to_owned();
        txn.execute(&requeue).await?;
        let forget =
            Query::delete().from_table(Alias::new(&*self.dead_letters)).and_where(Expr::col("id").eq(id)).to_owned();
        txn.execute(&forget).await?;
        txn.commit().await?;
        tracing::info!(consumer, event.id = event_id, "dead letter queued again");
        Ok(true)
    }

    /// How many events this module has dead-lettered.
    pub async fn dead_letter_count(&self) -> Result<u64, DbErr> {
        db::count(&self.db, &self.dead_letters, Expr::value(true)).await
    }
}
