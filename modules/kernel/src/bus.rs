//! The event bus: the only way modules talk to each other.
//!
//! Publishing goes through a module's [`Outbox`](crate::Outbox): the event is written in the same
//! transaction as the state change and the relay hands it to [`EventBus::publish`]. Consuming goes
//! through a [`Consumer`]: the bus hands what it received to the consumer's
//! [`Pipeline`](crate::delivery::Pipeline), which decodes it, runs the module's [`EventHandler`]
//! through the inbox at most once per event, whatever the bus redelivers, and decides what becomes
//! of a failure; the bus only carries out that decision.

use std::sync::Arc;

use async_trait::async_trait;
use contracts::EventType;
use sea_orm::DatabaseTransaction;

use crate::{Envelope, Inbox};

/// Carries envelopes from publishing modules to consuming modules.
///
/// Implementations (in-process, RabbitMQ) give the same guarantees: [`publish`](Self::publish)
/// returns `Ok` only once the envelope is durably accepted for every consumer that subscribed to
/// it, and every accepted envelope is handed to each such consumer until it is handled or
/// dead-lettered.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Which bus this is, for logs and `/health/ready`.
    fn kind(&self) -> &'static str;

    /// Accepts one envelope for delivery; `Ok` means durably accepted.
    async fn publish(&self, envelope: &Envelope) -> Result<(), BusError>;

    /// Accepts envelopes in order and stops at the first refusal; returns how many were accepted
    /// and why the next one was not. Buses that can pipeline (publisher confirms) override it.
    async fn publish_all(&self, envelopes: &[Envelope]) -> (usize, Option<BusError>) {
        for (accepted, envelope) in envelopes.iter().enumerate() {
            if let Err(e) = self.publish(envelope).await {
                return (accepted, Some(e));
            }
        }
        (envelopes.len(), None)
    }

    /// Registers a consumer; delivery starts with [`run`](Self::run).
    async fn subscribe(&self, consumer: Consumer) -> Result<(), BusError>;

    /// Registers a listener of this process; from [`run`](Self::run) on, it hears every event it
    /// listens for while the process runs.
    async fn listen(&self, listener: Arc<dyn Listener>) -> Result<(), BusError>;

    /// Delivers to the subscribed consumers until `shutdown` is cancelled, then waits for the
    /// handlers in flight to finish.
    async fn run(&self, shutdown: tokio_util::sync::CancellationToken) -> Result<(), BusError>;

    /// `Ok` while the bus can accept and deliver events.
    async fn check(&self) -> Result<(), BusError> {
        Ok(())
    }

    /// Events dead-lettered for `consumer` that the bus itself holds (a broker's dead-letter
    /// queue); `None` where dead letters live in the module's database only.
    async fn dead_letter_depth(&self, _consumer: &str) -> Option<u64> {
        None
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("the bus is shutting down")]
    ShuttingDown,
    #[error("the bus is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// What a module does with the events it consumes. The effect must be written through `txn`:
/// the inbox commits it together with the record that the event was handled.
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    async fn handle(&self, txn: &DatabaseTransaction, envelope: &Envelope) -> Result<(), HandlerError>;

    /// Called once a transaction in which this handler handled at least one event committed: the
    /// moment a worker that acts on what the handler wrote can see it (a wake-up sent from
    /// `handle` itself comes before the commit, and the worker would find nothing).
    fn committed(&self) {}
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The envelope can never be handled (its data does not decode): dead-letter it at once.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// Handling failed this time. If the cause is a [transient](crate::db::is_transient) database
    /// failure it is retried for as long as that lasts; otherwise it is retried with backoff, then
    /// dead-lettered.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl HandlerError {
    /// Whether the infrastructure failed rather than the handler (a database unreachable, a lock
    /// timeout): such a failure never uses up the event's attempts.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Malformed(_) => false,
            Self::Failed(e) => crate::db::is_transient_cause(e.as_ref()),
        }
    }
}

impl From<sea_orm::DbErr> for HandlerError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Failed(e.into())
    }
}

/// What every process acts on, not one consuming module: each process hears each event while it
/// runs (on a broker, through a queue of its own that goes with it). No inbox and no retry: what a
/// listener does must be in memory and idempotent (forgetting a user's older tokens, say); an event
/// published while a process is away is not heard by it.
#[async_trait]
pub trait Listener: Send + Sync + 'static {
    fn events(&self) -> Vec<EventType>;

    async fn hear(&self, envelope: &Envelope);

    /// Whether `envelope` is one of its [`events`](Self::events).
    fn listens_for(&self, envelope: &Envelope) -> bool {
        self.events().iter().any(|t| envelope.matches(t))
    }
}

/// One module's subscription: the events it wants, how it handles them, and its inbox.
#[derive(Clone)]
pub struct Consumer {
    /// The consuming module's name; one queue per consumer.
    pub name: &'static str,
    pub events: Vec<EventType>,
    pub handler: Arc<dyn EventHandler>,
    pub inbox: Inbox,
}

impl Consumer {
    pub fn wants(&self, envelope: &Envelope) -> bool {
        self.events.iter().any(|t| envelope.matches(t))
    }
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("name", &self.name).field("events", &self.events).finish()
    }
}

/// What becomes of an event whose handling failed, as the [delivery pipeline](crate::delivery)
/// decides it for every bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The infrastructure failed, not the handler: try it again after a wait
    /// ([`outage_delay`](RetryPolicy::outage_delay)), its attempts untouched, for as long as the
    /// failure lasts.
    Wait,
    /// The handler failed: deliver it again after `delay` (the [retry
    /// schedule](RetryPolicy::retry_delay)); `attempts` have failed so far.
    Retry { attempts: u32, delay: std::time::Duration },
    /// Give up: to the dead letters, after `attempts` (at once if it can never be handled).
    DeadLetter { attempts: u32 },
}

/// The longest wait between two tries while the infrastructure is failing: a database back from
/// an outage is used again within this, and trying a dead one this often costs nothing.
pub const OUTAGE_MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(5);

/// How a consumer retries a failing handler before it dead-letters the event.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Deliveries in all, the first included, before the event is dead-lettered.
    pub max_attempts: u32,
    pub base_delay: std::time::Duration,
    pub max_delay: std::time::Duration,
}

impl RetryPolicy {
    /// The wait after `attempts` failed attempts before the next: exponential from `base_delay`,
    /// capped at `max_delay`, without jitter. One schedule for every bus: a broker's retry queues
    /// are declared with exactly these delays as their TTLs ([`retry_delays`](Self::retry_delays)).
    pub fn retry_delay(&self, attempts: u32) -> std::time::Duration {
        self.base_delay.saturating_mul(1 << attempts.saturating_sub(1).min(16)).min(self.max_delay)
    }

    /// Every wait a retry can take under this policy, shortest first, each once.
    pub fn retry_delays(&self) -> Vec<std::time::Duration> {
        let mut delays: Vec<_> = (1..self.max_attempts).map(|attempts| self.retry_delay(attempts)).collect();
        delays.dedup();
        delays
    }

    pub fn exhausted(&self, attempts: u32) -> bool {
        attempts >= self.max_attempts
    }

    /// The wait before the next try after `failures` transient failures in a row: exponential,
    /// capped at [`OUTAGE_MAX_DELAY`], jittered.
    pub fn outage_delay(&self, failures: u32) -> std::time::Duration {
        backoff(failures.max(1), self.base_delay, self.max_delay.min(OUTAGE_MAX_DELAY))
    }

    /// What to do with an event whose attempt number `attempt` (the first is 1) failed with
    /// `error`.
    pub fn verdict(&self, error: &HandlerError, attempt: u32) -> Verdict {
        match error {
            HandlerError::Malformed(_) => Verdict::DeadLetter { attempts: attempt },
            e if e.is_transient() => Verdict::Wait,
            _ if self.exhausted(attempt) => Verdict::DeadLetter { attempts: attempt },
            _ => Verdict::Retry { attempts: attempt, delay: self.retry_delay(attempt) },
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: std::time::Duration::from_millis(200),
            max_delay: std::time::Duration::from_secs(30),
        }
    }
}

/// Exponential backoff with "equal jitter": half the delay is fixed, half random.
pub fn backoff(attempt: u32, base: std::time::Duration, max: std::time::Duration) -> std::time::Duration {
    use rand::Rng;
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(max);
    let half = exp / 2;
    let jitter = rand::rng().random_range(0..=half.as_millis() as u64);
    half + std::time::Duration::from_millis(jitter)
}

/// Metric names, shared by the buses, the relay and `/metrics`. What a consumer's deliveries
/// become (consumed, failed, retried, waited, dead-lettered) is recorded once, by the
/// [delivery pipeline](crate::delivery), labelled `module` (the consuming module), on every bus.
pub mod metric {
    /// Envelopes a bus accepted from a module's relay.
    pub const PUBLISHED: &str = "bazaar_bus_published_total";
    /// Events a consumer handled (duplicates not counted).
    pub const CONSUMED: &str = "bazaar_bus_consumed_total";
    /// From an event's `occurredAt` to the commit of its consumer's handling, per consuming
    /// `module` and `event`: the bus's end-to-end delay, the relay, the broker and retries included.
    pub const DELAY: &str = "bazaar_bus_event_delay_seconds";
    /// Handler failures that send an event back for another try: [`RETRIED`] plus [`WAITED`].
    pub const FAILED: &str = "bazaar_bus_failed_total";
    /// Events given up on.
    pub const DEAD_LETTERED: &str = "bazaar_bus_dead_lettered_total";
    /// Handler failures of the handler's own, sent back for another attempt (one used up).
    pub const RETRIED: &str = "bazaar_bus_retried_total";
    /// Messages handed to a broker, and those it confirmed, by publishing module.
    pub const BROKER_PUBLISHED: &str = "bazaar_bus_broker_published_total";
    pub const BROKER_CONFIRMED: &str = "bazaar_bus_broker_confirmed_total";
    /// Handler failures that were the infrastructure's, retried without using up an attempt.
    pub const WAITED: &str = "bazaar_bus_transient_failures_total";
    pub const OUTBOX_PENDING: &str = "bazaar_outbox_pending";
    pub const DEAD_LETTERS: &str = "bazaar_dead_letters";
    /// 1 while a broker bus is connected, 0 while it is not (the process stays ready meanwhile).
    pub const CONNECTED: &str = "bazaar_bus_connected";
    /// Connections to the broker opened again after one was lost.
    pub const RECONNECTIONS: &str = "bazaar_bus_reconnections_total";
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for _ in 0..50 {
            let first = backoff(1, base, max);
            assert!(first >= Duration::from_millis(50) && first <= base, "{first:?}");
            let third = backoff(3, base, max);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400), "{third:?}");
            assert!(backoff(30, base, max) <= max);
        }
    }

    #[test]
    fn a_transient_failure_waits_however_often_it_comes_and_a_logic_failure_uses_up_attempts() {
        let policy = RetryPolicy { max_attempts: 3, ..RetryPolicy::default() };
        let unreachable = || {
            HandlerError::Failed(anyhow::Error::new(sea_orm::DbErr::ConnectionAcquire(
                sea_orm::ConnAcquireErr::Timeout,
            )))
        };
        for attempt in 1..50 {
            assert_eq!(policy.verdict(&unreachable(), attempt), Verdict::Wait);
        }
        for outage in 1..50 {
            let delay = policy.outage_delay(outage);
            assert!(delay <= OUTAGE_MAX_DELAY, "{delay:?}");
        }
        let own = || HandlerError::Failed(anyhow::anyhow!("the order is unknown"));
        assert_eq!(policy.verdict(&own(), 1), Verdict::Retry { attempts: 1, delay: policy.retry_delay(1) });
        assert_eq!(policy.verdict(&own(), 3), Verdict::DeadLetter { attempts: 3 });
        let malformed = HandlerError::Malformed("no orderId".into());
        assert_eq!(policy.verdict(&malformed, 1), Verdict::DeadLetter { attempts: 1 });
    }

    #[test]
    fn the_retry_schedule_doubles_from_the_base_delay_up_to_the_cap_and_names_each_delay_once() {
        let policy = RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        let delays: Vec<u64> = (1..6).map(|n| policy.retry_delay(n).as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        let declared: Vec<u64> = policy.retry_delays().iter().map(|d| d.as_millis() as u64).collect();
        assert_eq!(declared, [100, 200, 400, 500]);
        assert!(RetryPolicy { max_attempts: 1, ..policy }.retry_delays().is_empty());
    }

    #[test]
    fn a_policy_is_exhausted_after_max_attempts() {
        let policy = RetryPolicy { max_attempts: 3, ..RetryPolicy::default() };
        assert!(!policy.exhausted(2));
        assert!(policy.exhausted(3));
    }
}
