//! The RabbitMQ bus: the same guarantees as the in-process bus, across processes.
//!
//! Topology, declared idempotently on every (re)connection by every process, for every consuming
//! module of the registry (not only the hosted ones), so an event is routable as soon as any
//! process is up:
//! - a durable topic exchange `<prefix>.events`; routing key `<source>.<event-kebab>.v<version>`;
//! - per consuming module a durable quorum queue `<prefix>.<module>`, bound to exactly the keys the
//!   module consumes;
//! - per retry a queue `<prefix>.<module>.retry.<delay>ms` whose messages expire after that delay
//!   and are dead-lettered back to `<prefix>.<module>` (growing delays, one queue each, so a long
//!   wait never holds up a short one);
//! - a dead-letter queue `<prefix>.<module>.dead`.
//!
//! Publishing uses publisher confirms: [`EventBus::publish_all`] reports an envelope accepted only
//! once the broker acked it, so the outbox row stays pending on a nack, a timeout, a lost
//! connection or an unroutable return (`mandatory`).
//!
//! Consuming: each hosted module's worker hands a batch of ready deliveries (up to the prefetch)
//! to the module's [`Pipeline`], which handles them and decides what becomes of
//! each (see `kernel::delivery` for what it guarantees on every bus); the worker only carries that
//! out. A retry is re-published to the retry queue of its delay with the next attempt in a header,
//! a dead letter to the dead-letter queue with its error, each with a confirm, and only then is
//! the batch acked. While the infrastructure fails, the pipeline holds the deliveries concerned
//! unacked: not nack-requeued (that would come straight back with no wait, and a quorum queue
//! counts every return against its delivery limit), nor sent to a retry queue (that is an
//! attempt). Were the channel lost meanwhile they would be delivered again, and the consumer gets
//! no more than its prefetch in the meantime. (The broker's `consumer_timeout`, 30 min by default,
//! closes a channel that holds a delivery longer: they are then redelivered.) A redelivery finds
//! its inbox row.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use contracts::EventType;
use futures::{FutureExt, StreamExt};
use kernel::bus::{RetryPolicy, backoff, metric};
use kernel::{BusError, Consumer, Disposition, Envelope, EventBus, Listener, Pipeline, Received};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::settings::{BusSettings, redact_url};

/// Header with the delivery attempt a retried copy is on (the first delivery has none: 1).
const ATTEMPT: &str = "x-bazaar-attempt";
/// Headers of a dead-lettered copy.
const ERROR: &str = "x-bazaar-error";
const CONSUMER: &str = "x-bazaar-consumer";

/// Names and bindings, from the module registry.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
    /// Every consuming module of the registry and the events it consumes.
    consumers: BTreeMap<String, Vec<EventType>>,
    /// The delays of the retry schedule, shortest first: one retry queue each.
    retry_delays: Vec<Duration>,
}

impl Topology {
    pub fn new(
        prefix: &str,
        consumers: impl IntoIterator<Item = (String, Vec<EventType>)>,
        policy: &RetryPolicy,
    ) -> Self {
        let retry_delays = policy.retry_delays();
        Self {
            prefix: prefix.to_owned(),
            consumers: consumers.into_iter().filter(|(_, events)| !events.is_empty()).collect(),
            retry_delays,
        }
    }

    pub fn exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }

    pub fn queue(&self, module: &str) -> String {
        format!("{}.{module}", self.prefix)
    }

    pub fn dead_letter_queue(&self, module: &str) -> String {
        format!("{}.{module}.dead", self.prefix)
    }

    fn retry_queue(&self, module: &str, delay: Duration) -> String {
        format!("{}.{module}.retry.{}ms", self.prefix, delay.as_millis())
    }

    /// Where a retry due after `delay` waits: the retry queue of that delay (the policy's
    /// schedule declares one per delay), else of the longest declared delay under it, else the
    /// module's queue itself.
    fn retry_queue_after(&self, module: &str, delay: Duration) -> String {
        let declared = self.retry_delays.iter().rev().find(|d| **d <= delay).or(self.retry_delays.first());
        declared.map_or_else(|| self.queue(module), |d| self.retry_queue(module, *d))
    }

    /// Every queue of the topology, for tests and tear-down.
    pub fn queues(&self) -> Vec<String> {
        let mut queues = Vec::new();
        for module in self.consumers.keys() {
            queues.push(self.queue(module));
            queues.push(self.dead_letter_queue(module));
            queues.extend(self.retry_delays.iter().map(|d| self.retry_queue(module, *d)));
        }
        queues.dedup();
        queues
    }

    /// Whether some module consumes `envelope`: only then is an unroutable publish an error.
    fn routed(&self, envelope: &Envelope) -> bool {
        self.consumers.values().flatten().any(|t| envelope.matches(t))
    }

    async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        channel
            .exchange_declare(
                self.exchange().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() },
                FieldTable::default(),
            )
            .await?;
        for (module, events) in &self.consumers {
            let queue = self.queue(module);
            channel.queue_declare(queue.clone().into(), durable, quorum()).await?;
            for event in events {
                channel
                    .queue_bind(
                        queue.clone().into(),
                        self.exchange().into(),
                        event.routing_key().into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
            }
            channel.queue_declare(self.dead_letter_queue(module).into(), durable, quorum()).await?;
            for delay in &self.retry_delays {
                let mut arguments = quorum();
                arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(delay.as_millis() as i64));
                arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
                arguments.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(queue.as_str().into()));
                // Expired messages move back only once the queue has them: none is lost on the way.
                arguments.insert("x-dead-letter-strategy".into(), AMQPValue::LongString("at-least-once".into()));
                arguments.insert("x-overflow".into(), AMQPValue::LongString("reject-publish".into()));
                channel.queue_declare(self.retry_queue(module, *delay).into(), durable, arguments).await?;
            }
        }
        Ok(())
    }
}

fn quorum() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    arguments
}

/// What the bus needs from the settings.
#[derive(Clone)]
pub struct RabbitMqConfig {
    pub url: SecretString,
    pub prefetch: u16,
    pub confirm_timeout: Duration,
    pub reconnect_max_delay: Duration,
    pub policy: RetryPolicy,
}

impl RabbitMqConfig {
    /// `None` unless `bus.rabbitmq.url` is set (validated with the settings).
    pub fn from_settings(bus: &BusSettings) -> Option<Self> {
        Some(Self {
            url: bus.rabbitmq.url.clone()?,
            prefetch: bus.rabbitmq.prefetch,
            confirm_timeout: Duration::from_millis(bus.rabbitmq.confirm_timeout_ms),
            reconnect_max_delay: Duration::from_millis(bus.rabbitmq.reconnect_max_delay_ms),
            policy: bus.retry_policy(),
        })
    }
}

/// A live connection and the confirm-mode channel the relays publish on.
struct Link {
    connection: Connection,
    publisher: Channel,
}

pub struct RabbitMqBus {
    config: RabbitMqConfig,
    topology: Topology,
    link: RwLock<Option<Arc<Link>>>,
    consumers: RwLock<Vec<Consumer>>,
    listeners: RwLock<Vec<Arc<dyn Listener>>>,
}

impl RabbitMqBus {
    pub fn new(config: RabbitMqConfig, topology: Topology) -> Self {
        Self {
            config,
            topology,
            link: RwLock::new(None),
            consumers: RwLock::new(Vec::new()),
            listeners: RwLock::new(Vec::new()),
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Labels of this bus's own metrics: the prefix tells apart the buses of one broker.
    fn labels(&self) -> [(&'static str, String); 2] {
        [("bus", "rabbitmq".to_owned()), ("prefix", self.topology.prefix.clone())]
    }

    fn set_connected(&self, connected: bool) {
        metrics::gauge!(metric::CONNECTED, &self.labels()).set(if connected { 1.0 } else { 0.0 });
    }

    async fn current(&self) -> Result<Arc<Link>, BusError> {
        match self.link.read().await.as_ref() {
            Some(link) if link.connection.status().connected() => Ok(link.clone()),
            _ => Err(BusError::Unavailable("not connected to RabbitMQ".into())),
        }
    }

    /// Connects, declares the topology and opens the publishing channel.
    async fn connect(&self) -> lapin::Result<Link> {
        let name = format!("bazaar {} (pid {})", self.topology.prefix, std::process::id());
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        let connection = Connection::connect(self.config.url.expose_secret(), properties).await?;
        let publisher = connection.create_channel().await?;
        self.topology.declare(&publisher).await?;
        publisher.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(Link { connection, publisher })
    }

    /// One connection's life: consumers run until the connection fails or `shutdown`.
    async fn session(&self, link: Arc<Link>, shutdown: &CancellationToken) {
        let lost = CancellationToken::new();
        // Cancelled when the session ends, whatever ends it: the pipelines release what they hold.
        let stop = CancellationToken::new();
        let mut events = link.connection.events_listener();
        let (watcher, watched) = (lost.clone(), link.clone());
        let watch = tokio::spawn(async move {
            // A channel the broker closes (a declare it refuses, say) is reported here too; only
            // the connection's own failure ends the session. A consumer whose channel fails stops
            // by itself and ends it. The status is looked at again every second as well, should
            // the connection's state change after its error was reported.
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    event = events.next() => match event {
                        Some(lapin::Event::Error(e)) if watched.connection.status().connected() => {
                            tracing::debug!(error = %e, "a RabbitMQ channel was closed");
                        }
                        Some(lapin::Event::Error(e)) => {
                            tracing::warn!(error = %e, "the RabbitMQ connection failed");
                            break;
                        }
                        Some(_) => {}
                        None => break,
                    },
                    _ = every.tick() => if !watched.connection.status().connected() {
                        tracing::warn!("the RabbitMQ connection is gone");
                        break;
                    },
                }
            }
            watcher.cancel();
        });
        let tracker = TaskTracker::new();
        for consumer in self.consumers.read().await.iter().cloned() {
            let worker = Worker {
                link: link.clone(),
                pipeline: Pipeline::new(consumer, self.config.policy),
                topology: self.topology.clone(),
                prefetch: self.config.prefetch,
                confirm_timeout: self.config.confirm_timeout,
                stop: stop.clone(),
            };
            let (lost, shutdown) = (lost.clone(), shutdown.clone());
            tracker.spawn(async move {
                if let Err(e) = worker.run(&lost, &shutdown).await {
                    tracing::warn!(consumer = worker.pipeline.consumer().name, error = %e, "consumer stopped");
                    lost.cancel();
                }
            });
        }
        let listeners = self.listeners.read().await.clone();
        if !listeners.is_empty() {
            let (link, exchange, lost, shutdown) =
                (link.clone(), self.topology.exchange(), lost.clone(), shutdown.clone());
            tracker.spawn(async move {
                if let Err(e) = listen(&link, &exchange, &listeners, &lost, &shutdown).await {
                    tracing::warn!(error = %e, "the process's listeners stopped");
                    lost.cancel();
                }
            });
        }
        tracker.close();
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = lost.cancelled() => {}
        }
        stop.cancel();
        *self.link.write().await = None;
        self.set_connected(false);
        // Consumers finish the batch in hand (ack included), then stop.
        tracker.wait().await;
        watch.abort();
        // On shutdown a clean close; after a failure, whatever is left of the connection goes
        // before the next one is opened.
        let close = async {
            let _ = link.publisher.close(200, "closing".into()).await;
            let _ = link.connection.close(200, "closing".into()).await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), close).await;
    }
}

#[async_trait]
impl EventBus for RabbitMqBus {
    fn kind(&self) -> &'static str {
        "rabbitmq"
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), BusError> {
        match self.publish_all(std::slice::from_ref(envelope)).await {
            (_, Some(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// Sends the batch pipelined, then waits for the confirms in order: the accepted prefix is
    /// what the broker acked, routed, before the first failure.
    async fn publish_all(&self, envelopes: &[Envelope]) -> (usize, Option<BusError>) {
        let link = match self.current().await {
            Ok(link) => link,
            Err(e) => return (0, Some(e)),
        };
        let exchange = self.topology.exchange();
        let mut confirms = Vec::with_capacity(envelopes.len());
        let mut failure = None;
        for envelope in envelopes {
            let payload = match serde_json::to_vec(envelope) {
                Ok(payload) => payload,
                Err(e) => {
                    failure = Some(BusError::Unexpected(e.into()));
                    break;
                }
            };
            let options = BasicPublishOptions { mandatory: self.topology.routed(envelope), ..Default::default() };
            let sent = link
                .publisher
                .basic_publish(
                    exchange.as_str().into(),
                    envelope.routing_key().into(),
                    options,
                    &payload,
                    properties(envelope),
                )
                .await;
            match sent {
                Ok(confirm) => {
                    metrics::counter!(metric::BROKER_PUBLISHED, "module" => envelope.source.clone()).increment(1);
                    confirms.push((envelope, confirm));
                }
                Err(e) => {
                    failure = Some(BusError::Unavailable(format!("cannot publish {}: {e}", envelope.event)));
                    break;
                }
            }
        }
        let deadline = tokio::time::Instant::now() + self.config.confirm_timeout;
        let mut accepted = 0;
        for (envelope, confirm) in confirms {
            let refusal = match tokio::time::timeout_at(deadline, confirm).await {
                Ok(Ok(Confirmation::Ack(None))) => None,
                Ok(Ok(Confirmation::Ack(Some(returned)))) => {
                    Some(format!("{} was unroutable ({})", envelope.event, returned.reply_text))
                }
                Ok(Ok(Confirmation::Nack(_))) => Some(format!("the broker refused {} (nack)", envelope.event)),
                Ok(Ok(Confirmation::NotRequested)) => Some("the channel is not in confirm mode".to_owned()),
                Ok(Err(e)) => Some(format!("no confirm for {}: {e}", envelope.event)),
                Err(_) => Some(format!("no confirm for {} within {:?}", envelope.event, self.config.confirm_timeout)),
            };
            if let Some(refusal) = refusal {
                failure.get_or_insert(BusError::Unavailable(refusal));
                break;
            }
            metrics::counter!(metric::BROKER_CONFIRMED, "module" => envelope.source.clone()).increment(1);
            accepted += 1;
        }
        (accepted, failure)
    }

    async fn listen(&self, listener: Arc<dyn Listener>) -> Result<(), BusError> {
        self.listeners.write().await.push(listener);
        Ok(())
    }

    async fn subscribe(&self, consumer: Consumer) -> Result<(), BusError> {
        if !self.topology.consumers.contains_key(consumer.name) {
            return Err(BusError::Unexpected(anyhow::anyhow!("{} is not a consumer of the topology", consumer.name)));
        }
        self.consumers.write().await.push(consumer);
        Ok(())
    }

    /// Connects and consumes until `shutdown`; reconnects with backoff and jitter whenever the
    /// connection is lost, declaring the topology again each time.
    async fn run(&self, shutdown: CancellationToken) -> Result<(), BusError> {
        let url = redact_url(self.config.url.expose_secret());
        let mut failures = 0;
        let mut sessions = 0u64;
        self.set_connected(false);
        metrics::counter!(metric::RECONNECTIONS, &self.labels()).increment(0);
        while !shutdown.is_cancelled() {
            match self.connect().await {
                Ok(link) => {
                    if sessions > 0 {
                        tracing::info!(url, "reconnected to RabbitMQ");
                        metrics::counter!(metric::RECONNECTIONS, &self.labels()).increment(1);
                    } else {
                        tracing::info!(url, "connected to RabbitMQ");
                    }
                    failures = 0;
                    sessions += 1;
                    let link = Arc::new(link);
                    *self.link.write().await = Some(link.clone());
                    self.set_connected(true);
                    self.session(link, &shutdown).await;
                }
                Err(e) => {
                    failures += 1;
                    let delay = backoff(failures, Duration::from_millis(100), self.config.reconnect_max_delay);
                    tracing::warn!(url, error = %e, retry_in_ms = delay.as_millis() as u64, "cannot reach RabbitMQ");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
            }
        }
        Ok(())
    }

    async fn check(&self) -> Result<(), BusError> {
        self.current().await.map(|_| ())
    }

    /// Asked only of the topology's consumers (no other module has a dead-letter queue), on a
    /// channel of its own: should the broker refuse it, only that channel closes.
    async fn dead_letter_depth(&self, consumer: &str) -> Option<u64> {
        if !self.topology.consumers.contains_key(consumer) {
            return None;
        }
        let link = self.current().await.ok()?;
        let channel = link.connection.create_channel().await.ok()?;
        let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let queue = channel
            .queue_declare(self.topology.dead_letter_queue(consumer).into(), passive, FieldTable::default())
            .await;
        let _ = channel.close(200, "done".into()).await;
        queue.ok().map(|q| u64::from(q.message_count()))
    }
}

/// The process's listeners on one connection: a queue of its own (named by the broker, exclusive,
/// gone with the connection) bound to what they listen for; deliveries need no ack.
async fn listen(
    link: &Link,
    exchange: &str,
    listeners: &[Arc<dyn Listener>],
    lost: &CancellationToken,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let channel = link.connection.create_channel().await?;
    let private = QueueDeclareOptions { exclusive: true, auto_delete: true, ..QueueDeclareOptions::default() };
    let queue = channel.queue_declare("".into(), private, FieldTable::default()).await?;
    let mut keys: Vec<String> = listeners.iter().flat_map(|l| l.events()).map(|t| t.routing_key()).collect();
    keys.dedup();
    for key in keys {
        let (queue, exchange) = (queue.name().clone(), exchange.into());
        channel.queue_bind(queue, exchange, key.into(), QueueBindOptions::default(), FieldTable::default()).await?;
    }
    let no_ack = BasicConsumeOptions { no_ack: true, ..BasicConsumeOptions::default() };
    let mut deliveries = channel.basic_consume(queue.name().clone(), "".into(), no_ack, FieldTable::default()).await?;
    loop {
        let delivery = tokio::select! {
            next = deliveries.next() => next,
            _ = shutdown.cancelled() => return Ok(()),
            _ = lost.cancelled() => return Ok(()),
        };
        let Some(delivery) = delivery else { anyhow::bail!("the broker ended the listeners' consumer") };
        let delivery = delivery?;
        let Ok(envelope) = serde_json::from_slice::<Envelope>(&delivery.data) else {
            tracing::warn!("a listened-for message is not an envelope; ignored");
            continue;
        };
        for listener in listeners.iter().filter(|l| l.listens_for(&envelope)) {
            listener.hear(&envelope).await;
        }
    }
}

/// Persistent, identified by the event id, with the event's name, version and trace in headers.
fn properties(envelope: &Envelope) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert("event".into(), AMQPValue::LongString(envelope.event.as_str().into()));
    headers.insert("version".into(), AMQPValue::LongUInt(envelope.version));
    headers.insert("source".into(), AMQPValue::LongString(envelope.source.as_str().into()));
    if let Some(traceparent) = &envelope.traceparent {
        headers.insert("traceparent".into(), AMQPValue::LongString(traceparent.as_str().into()));
    }
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(envelope.id.to_string().into())
        .with_correlation_id(envelope.correlation_id.to_string().into())
        .with_timestamp(envelope.occurred_at.timestamp().max(0) as u64)
        .with_type(envelope.event.as_str().into())
        .with_headers(headers)
}

/// One hosted module's consumer on one connection.
struct Worker {
    link: Arc<Link>,
    pipeline: Pipeline,
    topology: Topology,
    prefetch: u16,
    confirm_timeout: Duration,
    /// Cancelled when the session ends: the pipeline then releases what it holds.
    stop: CancellationToken,
}

/// Whether a batch was seen through (handled, or re-published and acked), or partly left unacked.
#[derive(Debug, PartialEq, Eq)]
enum Handled {
    Done,
    /// The connection was lost or the bus is stopping while the infrastructure was failing.
    Interrupted,
}

impl Worker {
    async fn run(&self, lost: &CancellationToken, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let name = self.pipeline.consumer().name;
        let channel = self.link.connection.create_channel().await?;
        channel.basic_qos(self.prefetch, BasicQosOptions::default()).await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        let tag = format!("{}.{}.{}", self.topology.queue(name), std::process::id(), uuid::Uuid::new_v4());
        let mut deliveries = channel
            .basic_consume(
                self.topology.queue(name).into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        loop {
            let first = tokio::select! {
                next = deliveries.next() => next,
                _ = shutdown.cancelled() => break,
                _ = lost.cancelled() => return Ok(()),
            };
            let Some(first) = first else { anyhow::bail!("the broker ended the consumer") };
            let mut batch = vec![first?];
            while batch.len() < usize::from(self.prefetch) {
                match deliveries.next().now_or_never() {
                    Some(Some(Ok(delivery))) => batch.push(delivery),
                    _ => break,
                }
            }
            if self.handle(&channel, batch).await? == Handled::Interrupted {
                // What was not settled is not acked: it goes back to the queue with the channel.
                if lost.is_cancelled() {
                    return Ok(());
                }
                break;
            }
        }
        // Stop the flow, then leave: unacked deliveries go back to the queue with the channel.
        let _ = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await;
        let _ = channel.close(200, "shutdown".into()).await;
        Ok(())
    }

    /// Hands a batch to the pipeline and carries out its decisions: a retry or a dead letter is
    /// re-published (confirmed) before its original is acked; a released delivery is left unacked.
    async fn handle(&self, channel: &Channel, batch: Vec<Delivery>) -> anyhow::Result<Handled> {
        let Some(last_tag) = batch.last().map(|d| d.delivery_tag) else { return Ok(Handled::Done) };
        let received: Vec<Received> =
            batch.iter().map(|d| Received { payload: &d.data, attempt: attempt_of(d) }).collect();
        let dispositions = self.pipeline.deliver(&received, &self.stop).await;
        let name = self.pipeline.consumer().name;
        let mut settled = Vec::with_capacity(batch.len());
        for (delivery, disposition) in batch.iter().zip(&dispositions) {
            let mut headers = delivery.properties.headers().clone().unwrap_or_default();
            match disposition {
                Disposition::Done => {}
                Disposition::Retry { attempts, delay, .. } => {
                    headers.insert(ATTEMPT.into(), AMQPValue::LongUInt(attempts + 1));
                    let queue = self.topology.retry_queue_after(name, *delay);
                    self.republish(channel, delivery, &queue, headers).await?;
                }
                Disposition::DeadLetter { attempts, error } => {
                    headers.insert(ATTEMPT.into(), AMQPValue::LongUInt(*attempts));
                    headers.insert(ERROR.into(), AMQPValue::LongString(LongString::from(error.as_str())));
                    headers.insert(CONSUMER.into(), AMQPValue::LongString(name.into()));
                    let queue = self.topology.dead_letter_queue(name);
                    self.republish(channel, delivery, &queue, headers).await?;
                }
                Disposition::Release => continue,
            }
            settled.push(delivery.delivery_tag);
        }
        if settled.len() == batch.len() {
            channel.basic_ack(last_tag, BasicAckOptions { multiple: true }).await?;
            return Ok(Handled::Done);
        }
        for tag in settled {
            channel.basic_ack(tag, BasicAckOptions::default()).await?;
        }
        Ok(Handled::Interrupted)
    }

    /// Sends a copy of `delivery` with `headers` to `queue` and waits for the broker's confirm:
    /// only then may the original be acked.
    async fn republish(
        &self,
        channel: &Channel,
        delivery: &Delivery,
        queue: &str,
        headers: FieldTable,
    ) -> anyhow::Result<()> {
        let properties = delivery.properties.clone().with_headers(headers);
        let confirm = channel
            .basic_publish(
                ShortString::from(""),
                queue.into(),
                BasicPublishOptions { mandatory: true, ..Default::default() },
                &delivery.data,
                properties,
            )
            .await?;
        // Not confirmed: the consumer fails, the connection is rebuilt, and the original (never
        // acked) comes again.
        match tokio::time::timeout(self.confirm_timeout, confirm).await {
            Ok(Ok(Confirmation::Ack(None))) => Ok(()),
            Ok(Ok(refused)) => anyhow::bail!("{queue} refused a re-published delivery: {refused:?}"),
            Ok(Err(e)) => anyhow::bail!("no confirm from {queue}: {e}"),
            Err(_) => anyhow::bail!("no confirm from {queue} within {:?}", self.confirm_timeout),
        }
    }
}

/// The attempt a delivery is on: 1, or what a retry stamped on it.
fn attempt_of(delivery: &Delivery) -> u32 {
    let header = delivery.properties.headers().as_ref().and_then(|h| h.inner().get(ATTEMPT).cloned());
    match header {
        Some(AMQPValue::LongUInt(n)) => n.max(1),
        Some(AMQPValue::LongInt(n)) => u32::try_from(n).unwrap_or(1).max(1),
        Some(AMQPValue::LongLongInt(n)) => u32::try_from(n).unwrap_or(1).max(1),
        _ => 1,
    }
}
