//! The delivery pipeline: what becomes of the deliveries a bus hands to a consumer, decided once
//! for every bus.
//!
//! A bus adapter only moves bytes. It receives deliveries (the in-process bus reads them from the
//! consumer's inbox table, the RabbitMQ bus from the module's queue), hands a batch of them to
//! [`Pipeline::deliver`] with the attempt each one is on, and carries out the [`Disposition`] it
//! gets back for each: acknowledge it, deliver it again after a delay as its next attempt,
//! dead-letter it, or leave it where it is. Decoding, the batch's transaction, the inbox claim,
//! the module's [`EventHandler`](crate::EventHandler), the retry-or-dead-letter decision and the
//! metrics of all this happen here, so two buses cannot treat one failure differently.
//!
//! # What the pipeline guarantees, on every bus
//! - **One effect per event.** The inbox records the event in the transaction of the handler's
//!   effect; a delivery of an event handled (or dead-lettered) before is [`Disposition::Done`]
//!   without the handler running.
//! - **One transaction per batch, a savepoint per event.** An event whose handler fails is rolled
//!   back alone; the events before it commit together.
//! - **What can never be handled is dead-lettered at once**, on the attempt it is on: a delivery
//!   that is not an envelope, or whose data the handler cannot decode
//!   ([`HandlerError::Malformed`]).
//! - **A handler's own failure uses up one attempt**: it is delivered again after
//!   [`RetryPolicy::retry_delay`] (one schedule for every bus), behind the events queued after it,
//!   and dead-lettered once `max_attempts` deliveries have failed.
//! - **A failure of the infrastructure costs no attempt and reorders nothing.** A
//!   [transient](HandlerError::is_transient) database error in a handler, or a batch whose
//!   transaction cannot begin or commit, is nobody's fault: the pipeline holds the event (and the
//!   events behind it in the batch, which are not tried meanwhile) and tries them again itself,
//!   in order, with backoff ([`RetryPolicy::outage_delay`], at most
//!   [`OUTAGE_MAX_DELAY`](crate::bus::OUTAGE_MAX_DELAY) apart), for as long as it lasts. The bus
//!   gets the batch's dispositions only once nothing is held, so it takes no new deliveries of
//!   this consumer meanwhile.
//! - **Stopping never loses or spends an attempt.** When `stop` is cancelled while deliveries are
//!   held, they come back as [`Disposition::Release`]: the bus leaves them where they are (queued,
//!   or unacknowledged) and they come again with their attempts untouched. A batch that holds
//!   nothing is finished whatever `stop` says.
//! - **A decision the bus cannot carry out costs no attempt either**: the bus leaves the delivery
//!   as it was (its queue row unchanged, or unacknowledged until its channel goes) and it comes
//!   again on the same attempt; the inbox makes the repeat harmless.
//!
//! Metrics, labelled `module` (the consuming module): [`CONSUMED`](metric::CONSUMED) per event
//! handled, [`RETRIED`](metric::RETRIED) per own failure sent back, [`WAITED`](metric::WAITED) per
//! transient failure held, [`FAILED`](metric::FAILED) for both of those, and
//! [`DEAD_LETTERED`](metric::DEAD_LETTERED) per event given up on.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::bus::{RetryPolicy, Verdict, metric};
use crate::inbox::Processed;
use crate::{Consumer, Envelope, HandlerError};

/// One delivery as a bus received it.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// The bytes the bus carried: an [`Envelope`] in JSON, unless someone sent something else.
    pub payload: &'a [u8],
    /// The attempt this delivery is: 1 for the first, one more after each own failure.
    pub attempt: u32,
}

/// What the bus must do with one delivery, as the pipeline decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Handled, now or before: acknowledge it.
    Done,
    /// The handler failed on its own: deliver it again after `delay`, as attempt `attempts + 1`.
    Retry { attempts: u32, delay: Duration, error: String },
    /// Give up on it after `attempts`: to the dead letters, with `error`.
    DeadLetter { attempts: u32, error: String },
    /// Not settled (the pipeline was stopped while the infrastructure was failing): leave it where
    /// it is; it comes again, its attempts untouched.
    Release,
}

/// One consumer's pipeline; a bus keeps one per consumer it delivers to.
#[derive(Debug, Clone)]
pub struct Pipeline {
    consumer: Consumer,
    policy: RetryPolicy,
}

impl Pipeline {
    pub fn new(consumer: Consumer, policy: RetryPolicy) -> Self {
        Self { consumer, policy }
    }

    pub fn consumer(&self) -> &Consumer {
        &self.consumer
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Handles `batch` in one transaction and returns one disposition per delivery, in order.
    /// Returns only once no delivery is held for a failing infrastructure, or `stop` is cancelled
    /// while some are (those are [`Disposition::Release`]).
    pub async fn deliver(&self, batch: &[Received<'_>], stop: &CancellationToken) -> Vec<Disposition> {
        let mut dispositions: Vec<Option<Disposition>> = vec![None; batch.len()];
        // The deliveries that decode, with their place in the batch, in order.
        let mut pending = Vec::with_capacity(batch.len());
        for (at, received) in batch.iter().enumerate() {
            match serde_json::from_slice::<Envelope>(received.payload) {
                Ok(envelope) => pending.push((at, envelope)),
                Err(e) => {
                    let error = HandlerError::Malformed(format!("the envelope does not decode: {e}"));
                    dispositions[at] = self.decide(None, received.attempt, &error);
                }
            }
        }
        // Tries in a row that the infrastructure failed, for the backoff.
        let mut outage = 0;
        while !pending.is_empty() {
            let held = self.try_once(batch, std::mem::take(&mut pending), &mut dispositions).await;
            if held.is_empty() {
                break;
            }
            outage += 1;
            let delay = self.policy.outage_delay(outage);
            tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    tracing::info!(consumer = self.consumer.name, events = held.len(), "stopping; deliveries held for a failing infrastructure are released");
                    break;
                }
                _ = tokio::time::sleep(delay) => pending = held,
            }
        }
        dispositions.into_iter().map(|d| d.unwrap_or(Disposition::Release)).collect()
    }

    /// One transaction over `pending`: records the dispositions it settles and returns the
    /// deliveries held (the infrastructure failed them, or they were behind one that it failed).
    async fn try_once(
        &self,
        batch: &[Received<'_>],
        pending: Vec<(usize, Envelope)>,
        dispositions: &mut [Option<Disposition>],
    ) -> Vec<(usize, Envelope)> {
        let consumer = &self.consumer;
        let envelopes: Vec<Envelope> = pending.iter().map(|(_, e)| e.clone()).collect();
        let span = tracing::info_span!(
            "bus.consume",
            consumer = consumer.name,
            events = envelopes.len(),
            trace_id = tracing::field::Empty
        );
        if let Some(trace_id) = envelopes.first().and_then(|e| e.trace_id()) {
            span.record("trace_id", trace_id);
        }
        let outcomes = match consumer
            .inbox
            .process_batch(consumer.name, &envelopes, consumer.handler.as_ref())
            .instrument(span)
            .await
        {
            Ok(outcomes) => outcomes,
            // Nothing committed, whatever the cause (the database is failing; no event is to
            // blame): the whole batch is held, no attempt counted.
            Err(e) => {
                tracing::warn!(consumer = consumer.name, error = %e, events = pending.len(), "a batch failed to commit; will retry");
                return pending;
            }
        };
        let mut outcomes = outcomes.into_iter();
        let mut held = Vec::new();
        let mut handled = 0u64;
        let committed = crate::db::now();
        for (at, envelope) in pending {
            match outcomes.next() {
                Some(Ok(Processed::Handled)) => {
                    handled += 1;
                    let delay = (committed - envelope.occurred_at).to_std().unwrap_or_default();
                    metrics::histogram!(metric::DELAY, "module" => self.module(), "event" => envelope.event.clone())
                        .record(delay.as_secs_f64());
                    dispositions[at] = Some(Disposition::Done);
                }
                Some(Ok(Processed::Duplicate)) => dispositions[at] = Some(Disposition::Done),
                Some(Err(error)) => match self.decide(Some(&envelope), batch[at].attempt, &error) {
                    Some(disposition) => dispositions[at] = Some(disposition),
                    None => held.push((at, envelope)),
                },
                // Behind a transient failure: not tried, it waits with it.
                None => held.push((at, envelope)),
            }
        }
        metrics::counter!(metric::CONSUMED, "module" => self.module()).increment(handled);
        held
    }

    /// What becomes of a delivery on `attempt` that failed with `error`; `None` while it is held
    /// for the infrastructure. Logs and counts the decision.
    fn decide(&self, envelope: Option<&Envelope>, attempt: u32, error: &HandlerError) -> Option<Disposition> {
        let consumer = self.consumer.name;
        let module = self.module();
        let event_id = envelope.map(|e| e.id.to_string()).unwrap_or_default();
        let event = envelope.map(|e| e.event.as_str()).unwrap_or_default();
        let message = describe(error);
        match self.policy.verdict(error, attempt) {
            Verdict::Wait => {
                tracing::warn!(
                    consumer,
                    event.id = event_id,
                    event.name = event,
                    attempt,
                    error = message,
                    "handler failed on the infrastructure; will retry without counting an attempt"
                );
                metrics::counter!(metric::WAITED, "module" => module).increment(1);
                metrics::counter!(metric::FAILED, "module" => module).increment(1);
                None
            }
            Verdict::Retry { attempts, delay } => {
                tracing::warn!(
                    consumer,
                    event.id = event_id,
                    event.name = event,
                    attempt,
                    retry_in_ms = delay.as_millis() as u64,
                    error = message,
                    "handler failed; will retry"
                );
                metrics::counter!(metric::RETRIED, "module" => module).increment(1);
                metrics::counter!(metric::FAILED, "module" => module).increment(1);
                Some(Disposition::Retry { attempts, delay, error: message })
            }
            Verdict::DeadLetter { attempts } => {
                tracing::error!(
                    consumer,
                    event.id = event_id,
                    event.name = event,
                    attempts,
                    error = message,
                    "event dead-lettered"
                );
                metrics::counter!(metric::DEAD_LETTERED, "module" => module).increment(1);
                Some(Disposition::DeadLetter { attempts, error: message })
            }
        }
    }

    /// The consuming module, for metric labels.
    fn module(&self) -> &'static str {
        self.consumer.inbox.module()
    }
}

/// A failure as it is kept with its event: the whole chain of causes.
fn describe(error: &HandlerError) -> String {
    match error {
        HandlerError::Failed(e) => format!("{e:#}"),
        malformed => malformed.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use sea_orm::sea_query::{Alias, Expr, Order, Query};
    use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction};

    use super::*;
    use crate::{EventHandler, Inbox, Outbox};

    const MODULE: &str = "consumer";

    /// The kernel's tables of [`MODULE`] (as the kernel migration makes them) and an effects table.
    async fn create_tables(db: &DatabaseConnection) {
        for statement in [
            "CREATE TABLE consumer_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id VARCHAR(36) NOT NULL UNIQUE, \
             event VARCHAR(100) NOT NULL, version INTEGER NOT NULL, routing_key VARCHAR(200) NOT NULL, payload TEXT NOT NULL, \
             created_at TIMESTAMP_WITH_TIMEZONE_TEXT NOT NULL, published_at TIMESTAMP_WITH_TIMEZONE_TEXT, \
             attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT)",
            "CREATE TABLE consumer_inbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, consumer VARCHAR(100) NOT NULL, \
             event_id VARCHAR(36) NOT NULL, event VARCHAR(100) NOT NULL, version INTEGER NOT NULL, payload TEXT NOT NULL, \
             received_at TIMESTAMP_WITH_TIMEZONE_TEXT NOT NULL, processed_at TIMESTAMP_WITH_TIMEZONE_TEXT, \
             attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at TIMESTAMP_WITH_TIMEZONE_TEXT, last_error TEXT, \
             dead BOOLEAN NOT NULL DEFAULT FALSE)",
            "CREATE UNIQUE INDEX uq_consumer_inbox_event ON consumer_inbox (consumer, event_id)",
            "CREATE TABLE consumer_dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT, consumer VARCHAR(100) NOT NULL, \
             event_id VARCHAR(36) NOT NULL, event VARCHAR(100) NOT NULL, payload TEXT NOT NULL, error TEXT NOT NULL, \
             attempts INTEGER NOT NULL, failed_at TIMESTAMP_WITH_TIMEZONE_TEXT NOT NULL)",
            "CREATE TABLE consumer_effects (event_id VARCHAR(36) NOT NULL, sku VARCHAR(64) NOT NULL)",
        ] {
            db.execute_unprepared(statement).await.expect("a kernel table");
        }
    }

    /// An in-memory database with the tables (one connection: every connection would be a new
    /// database).
    async fn database() -> DatabaseConnection {
        let db = crate::db::connect("sqlite::memory:", 1).await.expect("a database");
        create_tables(&db).await;
        db
    }

    #[derive(Debug, Clone, Copy)]
    enum Failure {
        /// The database unreachable, as a handler would meet it.
        Transient,
        /// The handler's own refusal.
        Own,
        /// The event's data does not decode.
        Malformed,
    }

    /// A handler that fails as scripted per sku (the envelope's `data.sku`), then records an effect.
    #[derive(Default)]
    struct Script {
        failures: Mutex<HashMap<String, Vec<Failure>>>,
        /// Fails every time for these skus.
        always: Mutex<HashMap<String, Failure>>,
        calls: Mutex<Vec<String>>,
    }

    impl Script {
        fn fail(self, sku: &str, failures: &[Failure]) -> Self {
            self.failures.lock().expect("not poisoned").insert(sku.to_owned(), failures.to_vec());
            self
        }

        fn always(self, sku: &str, failure: Failure) -> Self {
            self.always.lock().expect("not poisoned").insert(sku.to_owned(), failure);
            self
        }

        fn calls(&self) -> Vec<String> {
            self.calls.lock().expect("not poisoned").clone()
        }

        fn calls_for(&self, sku: &str) -> usize {
            self.calls().iter().filter(|s| *s == sku).count()
        }
    }

    #[async_trait]
    impl EventHandler for Script {
        async fn handle(&self, txn: &DatabaseTransaction, envelope: &Envelope) -> Result<(), HandlerError> {
            let sku = envelope.data["sku"].as_str().unwrap_or_default().to_owned();
            self.calls.lock().expect("not poisoned").push(sku.clone());
            let scripted = {
                let mut failures = self.failures.lock().expect("not poisoned");
                let next = failures.get_mut(&sku).filter(|f| !f.is_empty()).map(|f| f.remove(0));
                next.or_else(|| self.always.lock().expect("not poisoned").get(&sku).copied())
            };
            match scripted {
                Some(Failure::Transient) => {
                    let unreachable = sea_orm::DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout);
                    return Err(HandlerError::Failed(anyhow::Error::new(unreachable).context("failed to load stock")));
                }
                Some(Failure::Own) => {
                    return Err(HandlerError::Failed(
                        anyhow::anyhow!("the product is unknown").context(format!("failed to handle {sku}")),
                    ));
                }
                Some(Failure::Malformed) => return Err(HandlerError::Malformed("no productId".into())),
                None => {}
            }
            let insert = Query::insert()
                .into_table(Alias::new("consumer_effects"))
                .columns(["event_id", "sku"])
                .values_panic([envelope.id.to_string().into(), sku.into()])
                .to_owned();
            txn.execute(&insert).await?;
            Ok(())
        }
    }

    fn envelope(sku: &str) -> Envelope {
        let id = uuid::Uuid::now_v7();
        Envelope {
            id,
            event: "ProductDiscontinued".into(),
            version: 1,
            source: "catalog".into(),
            occurred_at: crate::db::now(),
            correlation_id: id,
            causation_id: None,
            traceparent: None,
            data: serde_json::json!({ "sku": sku }),
        }
    }

    fn json(envelope: &Envelope) -> Vec<u8> {
        serde_json::to_vec(envelope).expect("serialises")
    }

    fn policy() -> RetryPolicy {
        RetryPolicy { max_attempts: 3, base_delay: Duration::from_millis(5), max_delay: Duration::from_millis(20) }
    }

    fn pipeline(db: &DatabaseConnection, handler: Arc<Script>) -> Pipeline {
        pipeline_with(db, handler, policy())
    }

    fn pipeline_with(db: &DatabaseConnection, handler: Arc<Script>, policy: RetryPolicy) -> Pipeline {
        let inbox = Inbox::new(Outbox::new(MODULE, db.clone()));
        Pipeline::new(Consumer { name: MODULE, events: Vec::new(), handler, inbox }, policy)
    }

    /// The skus with an effect, in the order they were written.
    async fn effects(db: &DatabaseConnection) -> Vec<String> {
        let select = Query::select()
            .column("sku")
            .from(Alias::new("consumer_effects"))
            .order_by_expr(Expr::cust("rowid"), Order::Asc)
            .to_owned();
        let rows = db.query_all(&select).await.expect("effects");
        rows.iter().map(|r| r.try_get::<String>("", "sku").expect("a sku")).collect()
    }

    /// The batch of `payloads`, each on `attempt`.
    fn batch(payloads: &[Vec<u8>], attempt: u32) -> Vec<Received<'_>> {
        payloads.iter().map(|p| Received { payload: p, attempt }).collect()
    }

    #[tokio::test]
    async fn a_batch_is_handled_once_and_a_redelivery_is_done_without_the_handler() {
        let db = database().await;
        let script = Arc::new(Script::default());
        let pipeline = pipeline(&db, script.clone());
        let payloads = [json(&envelope("A")), json(&envelope("B"))];
        let stop = CancellationToken::new();
        assert_eq!(pipeline.deliver(&batch(&payloads, 1), &stop).await, [Disposition::Done, Disposition::Done]);
        // Delivered again (a broker's redelivery, or a retry queue's copy): nothing runs twice.
        assert_eq!(pipeline.deliver(&batch(&payloads, 2), &stop).await, [Disposition::Done, Disposition::Done]);
        assert_eq!(script.calls(), ["A", "B"]);
        assert_eq!(effects(&db).await, ["A", "B"]);
    }

    #[tokio::test]
    async fn what_can_never_be_handled_is_dead_lettered_at_once_on_the_attempt_it_is_on() {
        let db = database().await;
        let script = Arc::new(Script::default().always("BROKEN", Failure::Malformed));
        let pipeline = pipeline(&db, script.clone());
        let payloads = [b"this is not JSON".to_vec(), json(&envelope("BROKEN"))];
        let dispositions = pipeline.deliver(&batch(&payloads, 2), &CancellationToken::new()).await;
        match &dispositions[..] {
            [
                Disposition::DeadLetter { attempts: 2, error: not_an_envelope },
                Disposition::DeadLetter { attempts: 2, error: malformed },
            ] => {
                assert!(not_an_envelope.contains("the envelope does not decode"), "{not_an_envelope}");
                assert!(malformed.contains("malformed event: no productId"), "{malformed}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(script.calls(), ["BROKEN"], "the handler never saw what is not an envelope");
    }

    #[tokio::test]
    async fn a_handlers_own_failure_is_retried_on_the_schedule_then_dead_lettered_with_its_causes() {
        let db = database().await;
        let script = Arc::new(Script::default().always("POISON", Failure::Own));
        let pipeline = pipeline(&db, script.clone());
        let payloads = [json(&envelope("POISON"))];
        let stop = CancellationToken::new();
        for attempt in 1..3 {
            let dispositions = pipeline.deliver(&batch(&payloads, attempt), &stop).await;
            let expected = Disposition::Retry {
                attempts: attempt,
                delay: policy().retry_delay(attempt),
                error: "failed to handle POISON: the product is unknown".into(),
            };
            assert_eq!(dispositions, [expected]);
        }
        let dispositions = pipeline.deliver(&batch(&payloads, 3), &stop).await;
        let error = "failed to handle POISON: the product is unknown".to_owned();
        assert_eq!(dispositions, [Disposition::DeadLetter { attempts: 3, error }]);
        assert_eq!(script.calls_for("POISON"), 3);
        assert!(effects(&db).await.is_empty());
    }

    #[tokio::test]
    async fn a_handler_error_in_the_middle_of_a_batch_rolls_back_that_event_alone() {
        let db = database().await;
        let script = Arc::new(Script::default().fail("BAD", &[Failure::Own]));
        let pipeline = pipeline(&db, script.clone());
        let payloads = [json(&envelope("FIRST")), json(&envelope("BAD")), json(&envelope("LAST"))];
        let stop = CancellationToken::new();
        let dispositions = pipeline.deliver(&batch(&payloads, 1), &stop).await;
        assert!(matches!(
            dispositions[..],
            [Disposition::Done, Disposition::Retry { attempts: 1, .. }, Disposition::Done]
        ));
        assert_eq!(effects(&db).await, ["FIRST", "LAST"]);
        // Its retry finds no trace of the failed attempt, and is handled.
        let retry = [payloads[1].clone()];
        assert_eq!(pipeline.deliver(&batch(&retry, 2), &stop).await, [Disposition::Done]);
        assert_eq!(effects(&db).await, ["FIRST", "LAST", "BAD"]);
    }

    #[tokio::test]
    async fn a_transient_failure_holds_its_event_and_those_behind_it_and_costs_no_attempt() {
        let db = database().await;
        let transient = [Failure::Transient; 6];
        let script = Arc::new(Script::default().fail("OUTAGE", &transient).fail("BAD", &[Failure::Own]));
        let pipeline = pipeline(&db, script.clone());
        let skus = ["FIRST", "BAD", "OUTAGE", "BEHIND"];
        let payloads: Vec<Vec<u8>> = skus.iter().map(|s| json(&envelope(s))).collect();
        let dispositions = pipeline.deliver(&batch(&payloads, 3), &CancellationToken::new()).await;
        // Six failures on attempt 3 of 3, and no dead letter: none of them was the handler's.
        let error = "failed to handle BAD: the product is unknown".to_owned();
        assert_eq!(
            dispositions,
            [Disposition::Done, Disposition::DeadLetter { attempts: 3, error }, Disposition::Done, Disposition::Done]
        );
        assert_eq!(script.calls_for("OUTAGE"), 7);
        assert_eq!(script.calls_for("BEHIND"), 1, "not tried while the event before it was held");
        assert_eq!(effects(&db).await, ["FIRST", "OUTAGE", "BEHIND"], "the outage reordered nothing");
    }

    #[tokio::test]
    async fn stopping_while_deliveries_are_held_releases_them_and_settles_the_rest() {
        let db = database().await;
        let script = Arc::new(Script::default().always("OUTAGE", Failure::Transient).fail("BAD", &[Failure::Own]));
        let pipeline = pipeline(&db, script.clone());
        let skus = ["FIRST", "BAD", "OUTAGE", "BEHIND"];
        let payloads: Vec<Vec<u8>> = skus.iter().map(|s| json(&envelope(s))).collect();
        let stop = CancellationToken::new();
        let stopping = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            stopping.cancel();
        });
        let dispositions = pipeline.deliver(&batch(&payloads, 1), &stop).await;
        assert!(matches!(
            dispositions[..],
            [Disposition::Done, Disposition::Retry { attempts: 1, .. }, Disposition::Release, Disposition::Release]
        ));
        assert!(script.calls_for("OUTAGE") >= 2, "tried again while it lasted");
        assert_eq!(script.calls_for("BEHIND"), 0);
        assert_eq!(effects(&db).await, ["FIRST"]);
    }

    /// The batch's transaction cannot begin (another connection holds SQLite's write lock and
    /// this pool does not wait for it): the whole batch waits, no attempt spent, until it can.
    #[tokio::test]
    async fn a_batch_whose_transaction_fails_is_held_without_spending_an_attempt() {
        let dir = std::env::temp_dir().join(format!("bazaar-pipeline-{}", uuid::Uuid::new_v4().simple()));
        let url = format!("sqlite://{}/consumer.db?mode=rwc", dir.display());
        let other = crate::db::connect(&url, 1).await.expect("a database");
        create_tables(&other).await;
        let mut options = sea_orm::ConnectOptions::new(url.clone());
        options.max_connections(1).map_sqlx_sqlite_opts(|o| o.busy_timeout(Duration::ZERO));
        let db = sea_orm::Database::connect(options).await.expect("a pool that does not wait");
        let script = Arc::new(Script::default());
        let pipeline = pipeline(&db, script.clone());

        let holder = crate::db::begin_write(&other).await.expect("the write lock");
        let released = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            holder.rollback().await.expect("released");
        });
        let payloads = [json(&envelope("WAITED"))];
        let dispositions = pipeline.deliver(&batch(&payloads, 3), &CancellationToken::new()).await;
        released.await.expect("the holder let go");
        assert_eq!(dispositions, [Disposition::Done], "on its last attempt, and not dead-lettered");
        assert_eq!(script.calls(), ["WAITED"], "the handler ran once the transaction began");
        assert_eq!(effects(&db).await, ["WAITED"]);
        drop((db, other));
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The in-process bus's queue carries out the decisions in the inbox table itself.
    #[tokio::test]
    async fn a_queued_event_settles_as_decided_in_the_inbox_table() {
        let db = database().await;
        let script = Arc::new(Script::default().fail("RETRIED", &[Failure::Own]).always("DEAD", Failure::Malformed));
        let policy = RetryPolicy { base_delay: Duration::from_millis(300), ..policy() };
        let pipeline = pipeline_with(&db, script.clone(), policy);
        let inbox = &pipeline.consumer().inbox;
        let events = [envelope("RETRIED"), envelope("DEAD"), envelope("FINE")];
        inbox.enqueue_all(MODULE, &events).await.expect("queued");

        let queued = inbox.due(MODULE, 10).await.expect("due");
        let received: Vec<Received> =
            queued.iter().map(|q| Received { payload: q.payload.as_bytes(), attempt: q.attempts + 1 }).collect();
        let dispositions = pipeline.deliver(&received, &CancellationToken::new()).await;
        for (queued, disposition) in queued.iter().zip(&dispositions) {
            inbox.settle(MODULE, queued, disposition).await.expect("settled");
        }
        // The retry is not due before its delay; the dead letter is kept with its cause.
        assert!(inbox.due(MODULE, 10).await.expect("due").is_empty());
        assert!(inbox.next_retry_at(MODULE).await.expect("a retry").is_some());
        let dead = inbox.dead_letter_list(10).await.expect("dead letters");
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].event_id.as_str(), dead[0].attempts), (events[1].id.to_string().as_str(), 1));
        assert!(dead[0].error.contains("no productId"), "{}", dead[0].error);
        tokio::time::sleep(policy.retry_delay(1) + Duration::from_millis(20)).await;
        let again = inbox.due(MODULE, 10).await.expect("due");
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].event_id.as_str(), again[0].attempts), (events[0].id.to_string().as_str(), 1));
    }
}
