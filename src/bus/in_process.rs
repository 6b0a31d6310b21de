//! The in-process bus: events travel inside one process, with the guarantees of a broker.
//!
//! `publish` writes the envelope into the inbox table of every subscribed consumer (its durable
//! queue, in the consumer module's own database) and returns once all have it; a worker per
//! consumer then hands batches of queued events, oldest first, to the consumer's
//! [`Pipeline`], which handles them and decides what becomes of each failure
//! (see `kernel::delivery` for what it guarantees on every bus), and carries out its decisions
//! in the queue ([`Inbox::settle`](kernel::Inbox::settle)): a retry waits in its row until due, a
//! dead letter moves to the consumer's dead-letter table. So an event the relay saw accepted is
//! queued durably: a crash before it is handled only delays it, and a failing consumer retries on
//! its own queue without holding up the others.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use kernel::bus::RetryPolicy;
use kernel::{BusError, Consumer, Disposition, Envelope, EventBus, Listener, Pipeline, Received};
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
    pipeline: Pipeline,
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
        for subscriber in self.consumers.read().await.iter().filter(|s| s.pipeline.consumer().wants(envelope)) {
            let consumer = subscriber.pipeline.consumer();
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
            let consumer = subscriber.pipeline.consumer();
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
        let pipeline = Pipeline::new(consumer, self.policy);
        self.consumers.write().await.push(Subscriber { pipeline, wake: Arc::new(Notify::new()) });
        Ok(())
    }

    async fn listen(&self, listener: Arc<dyn Listener>) -> Result<(), BusError> {
        self.listeners.write().await.push(listener);
        Ok(())
    }

    async fn run(&self, shutdown: CancellationToken) -> Result<(), BusError> {
        let tracker = TaskTracker::new();
        for subscriber in self.consumers.read().await.iter().cloned() {
            tracker.spawn(consume(subscriber, shutdown.clone()));
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

/// One consumer's worker: takes due events off its queue, hands them to the consumer's pipeline,
/// and carries out its decisions in the queue, until shutdown.
#[tracing::instrument(name = "bus.worker", skip_all, fields(consumer = subscriber.pipeline.consumer().name))]
async fn consume(subscriber: Subscriber, shutdown: CancellationToken) {
    let pipeline = &subscriber.pipeline;
    let consumer = pipeline.consumer();
    let policy = *pipeline.policy();
    // Whether a retry may be scheduled: only this worker schedules them, so after the first look
    // the queue is asked for the next one only when a delivery was sent back since.
    let mut retries_pending = true;
    // Failures in a row to read or write the queue (the database unreachable or busy): the next
    // pass waits longer.
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
        let received: Vec<Received> =
            batch.iter().map(|q| Received { payload: q.payload.as_bytes(), attempt: q.attempts + 1 }).collect();
        let dispositions = pipeline.deliver(&received, &shutdown).await;
        let mut unsettled = false;
        for (queued, disposition) in batch.iter().zip(&dispositions) {
            retries_pending |= matches!(disposition, Disposition::Retry { .. });
            if let Err(e) = consumer.inbox.settle(consumer.name, queued, disposition).await {
                // The row is unchanged: the event comes again, on the same attempt.
                tracing::error!(event.id = %queued.event_id, error = %e, "cannot record a delivery outcome");
                unsettled = true;
            }
        }
        if dispositions.contains(&Disposition::Release) {
            return; // stopping: the released events stay queued
        }
        if unsettled {
            outage += 1;
            tokio::select! {
                _ = tokio::time::sleep(policy.outage_delay(outage)) => continue,
                _ = shutdown.cancelled() => return,
            }
        }
        outage = 0;
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
