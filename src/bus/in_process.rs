//! The in-process bus: events travel inside one process, with the guarantees of a broker.
//!
//! `publish` writes the envelope into the inbox table of every subscribed consumer (its durable
//! queue, in the consumer module's own database) and returns once all have it; a worker per
//! consumer then hands queued events to the consumer's handler, oldest first. So:
//! - an event the relay saw accepted is queued durably: a crash before it is handled only delays it;
//! - a failing consumer retries with backoff on its own queue and never holds up the others;
//! - after `bus.max_attempts` failures the event moves to the consumer's dead-letter table;
//! - the database failing (unreachable, busy, a lock timeout) is no failure of the event: it is
//!   retried with backoff for as long as that lasts, its attempts untouched;
//! - a redelivered event finds its inbox row and has no second effect.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use kernel::bus::{RetryPolicy, Verdict, metric};
use kernel::inbox::Queued;
use kernel::{BusError, Consumer, Envelope, EventBus, HandlerError, Listener};
use tokio::sync::{Notify, RwLock};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How many queued events a worker takes per query.
const BATCH: u64 = 64;
/// The longest a worker sleeps without looking at its queue (rows written by an earlier run).
const IDLE_POLL: Duration = Duration::from_secs(1);

pub struct InProcessBus {
    consumers: RwLock<Vec<Subscriber>>,
    listeners: RwLock<Vec<Arc<dyn Listener>>>,
    policy: RetryPolicy,
    shutdown: CancellationToken,
}

#[derive(Clone)]
struct Subscriber {
    consumer: Consumer,
    wake: Arc<Notify>,
}

impl InProcessBus {
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            consumers: RwLock::new(Vec::new()),
            listeners: RwLock::new(Vec::new()),
            policy,
            shutdown: CancellationToken::new(),
        }
    }
}

#[async_trait]
impl EventBus for InProcessBus {
    fn kind(&self) -> &'static str {
        "in_process"
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), BusError> {
        if self.shutdown.is_cancelled() {
            return Err(BusError::ShuttingDown);
        }
        for subscriber in self.consumers.read().await.iter().filter(|s| s.consumer.wants(envelope)) {
            let consumer = &subscriber.consumer;
            consumer.inbox.enqueue(consumer.name, envelope).await.map_err(|e| {
                BusError::Unavailable(format!("cannot queue {} for {}: {e}", envelope.event, consumer.name))
            })?;
            subscriber.wake.notify_one();
        }
        self.tell_listeners(std::slice::from_ref(envelope)).await;
        Ok(())
    }

    /// One statement per consumer for the whole batch: the relay's batches cost one write each.
    async fn publish_all(&self, envelopes: &[Envelope]) -> (usize, Option<BusError>) {
        if self.shutdown.is_cancelled() {
            return (0, Some(BusError::ShuttingDown));
        }
        for subscriber in self.consumers.read().await.iter() {
            let consumer = &subscriber.consumer;
            let wanted: Vec<Envelope> = envelopes.iter().filter(|e| consumer.wants(e)).cloned().collect();
            if wanted.is_empty() {
                continue;
            }
            if let Err(e) = consumer.inbox.enqueue_all(consumer.name, &wanted).await {
                // None counts as accepted: the relay sends the batch again, and the consumers that
                // had it already ignore the repeats.
                return (0, Some(BusError::Unavailable(format!("cannot queue events for {}: {e}", consumer.name))));
            }
            subscriber.wake.notify_one();
        }
        self.tell_listeners(envelopes).await;
        (envelopes.len(), None)
    }

    async fn subscribe(&self, consumer: Consumer) -> Result<(), BusError> {
        self.consumers.write().await.push(Subscriber { consumer, wake: Arc::new(Notify::new()) });
        Ok(())
    }

    async fn listen(&self, listener: Arc<dyn Listener>) -> Result<(), BusError> {
        self.listeners.write().await.push(listener);
        Ok(())
    }

    async fn run(&self, shutdown: CancellationToken) -> Result<(), BusError> {
        let tracker = TaskTracker::new();
        for subscriber in self.consumers.read().await.iter().cloned() {
            tracker.spawn(consume(subscriber, self.policy, shutdown.clone()));
        }
        tracker.close();
        shutdown.cancelled().await;
        self.shutdown.cancel();
        tracker.wait().await;
        Ok(())
    }
}

impl InProcessBus {
    /// The process's listeners hear the accepted events at once (a repeat is harmless to them).
    async fn tell_listeners(&self, envelopes: &[Envelope]) {
        for listener in self.listeners.read().await.iter() {
            for envelope in envelopes.iter().filter(|e| listener.listens_for(e)) {
                listener.hear(envelope).await;
            }
        }
    }
}

/// One consumer's worker: takes due events off its queue until shutdown.
#[tracing::instrument(name = "bus.consume", skip_all, fields(consumer = subscriber.consumer.name))]
async fn consume(subscriber: Subscriber, policy: RetryPolicy, shutdown: CancellationToken) {
    let consumer = &subscriber.consumer;
    // Whether a retry may be scheduled: only this worker schedules them, so after the first look
    // the queue is asked for the next one only when a delivery failed since.
    let mut retries_pending = true;
    // Transient failures in a row (the database unreachable or busy): the next pass waits longer.
    let mut outage = 0;
    loop {
        let batch = match consumer.inbox.due(consumer.name, BATCH).await {
            Ok(batch) => batch,
            Err(e) => {
                outage += 1;
                let delay = policy.outage_delay(outage);
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot read the queue; will retry");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
        };
        let full = batch.len() as u64 == BATCH;
        if shutdown.is_cancelled() {
            return; // what was read stays queued
        }
        let pass = deliver(consumer, batch, &policy, outage + 1).await;
        retries_pending |= pass.failed;
        if !pass.committed {
            // Nothing was handled and no attempt counted: the same events come again after a wait.
            outage += 1;
            tokio::select! {
                _ = tokio::time::sleep(policy.outage_delay(outage)) => continue,
                _ = shutdown.cancelled() => return,
            }
        }
        outage = if pass.transient { outage + 1 } else { 0 };
        if full {
            continue;
        }
        let wait = if retries_pending {
            match consumer.inbox.next_retry_at(consumer.name).await {
                Ok(Some(at)) => (at - Utc::now()).to_std().unwrap_or_default().min(IDLE_POLL),
                Ok(None) => {
                    retries_pending = false;
                    IDLE_POLL
                }
                Err(_) => IDLE_POLL,
            }
        } else {
            IDLE_POLL
        };
        tokio::select! {
            _ = subscriber.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// What a pass over a batch did.
struct Pass {
    /// Whether the batch's transaction committed; if not, nothing was handled and nothing counted.
    committed: bool,
    /// Whether some event failed (and waits for another try, or was dead-lettered).
    failed: bool,
    /// Whether some event failed because the infrastructure did.
    transient: bool,
}

/// Hands a batch to the consumer in one transaction, then records what failed; `outage` counts
/// the transient failures in a row should this pass add one.
async fn deliver(consumer: &Consumer, batch: Vec<Queued>, policy: &RetryPolicy, outage: u32) -> Pass {
    let mut decoded = Vec::with_capacity(batch.len());
    let mut failures = Vec::new();
    for queued in batch {
        match serde_json::from_str::<Envelope>(&queued.payload) {
            Ok(envelope) => decoded.push((queued, envelope)),
            Err(e) => failures.push((queued, HandlerError::Malformed(format!("the envelope does not decode: {e}")))),
        }
    }
    let envelopes: Vec<Envelope> = decoded.iter().map(|(_, e)| e.clone()).collect();
    let committed = match consumer.inbox.process_batch(consumer.name, &envelopes, consumer.handler.as_ref()).await {
        Ok(outcomes) => {
            for ((queued, _), outcome) in decoded.into_iter().zip(outcomes) {
                if let Err(e) = outcome {
                    failures.push((queued, e));
                }
            }
            true
        }
        // Nothing was committed, whatever the cause (the database is failing; no event is to
        // blame): the events stay queued, their attempts untouched, and come again after a wait.
        Err(e) => {
            tracing::warn!(error = %e, events = envelopes.len(), "a batch failed to commit; will retry");
            return Pass { committed: false, failed: !failures.is_empty(), transient: true };
        }
    };
    let failed = !failures.is_empty();
    let mut transient = false;
    for (queued, error) in failures {
        transient |= record_failure(consumer, &queued, error, policy, outage).await;
    }
    Pass { committed, failed, transient }
}

/// Schedules another try of a failed event, or dead-letters it; returns whether the failure was
/// transient.
async fn record_failure(
    consumer: &Consumer,
    queued: &Queued,
    error: HandlerError,
    policy: &RetryPolicy,
    outage: u32,
) -> bool {
    let message = match &error {
        HandlerError::Failed(e) => format!("{e:#}"),
        malformed => malformed.to_string(),
    };
    let verdict = policy.verdict(&error, queued.attempts + 1, outage);
    let retry_at = |delay: Duration| kernel::db::now() + chrono::Duration::from_std(delay).unwrap_or_default();
    let result = match verdict {
        Verdict::Wait(delay) => {
            tracing::warn!(event.id = %queued.event_id, attempts = queued.attempts, retry_in_ms = delay.as_millis() as u64, error = message, "handler failed on the infrastructure; will retry without counting an attempt");
            metrics::counter!(metric::WAITED, "module" => consumer.inbox.module()).increment(1);
            let at = retry_at(delay);
            consumer.inbox.schedule_retry(consumer.name, &queued.event_id, queued.attempts, at, &message).await
        }
        Verdict::Retry { attempts, delay } => {
            tracing::warn!(event.id = %queued.event_id, attempts, retry_in_ms = delay.as_millis() as u64, error = message, "handler failed; will retry");
            let at = retry_at(delay);
            consumer.inbox.schedule_retry(consumer.name, &queued.event_id, attempts, at, &message).await
        }
        Verdict::DeadLetter { attempts } => consumer.inbox.dead_letter(consumer.name, queued, attempts, &message).await,
    };
    if let Err(e) = result {
        // The row is unchanged, so the event is delivered again on the next pass.
        tracing::error!(event.id = %queued.event_id, error = %e, "cannot record a delivery outcome");
    }
    matches!(verdict, Verdict::Wait(_))
}
