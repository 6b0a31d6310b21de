//! The delivery guarantees of BRIEF.md, one contract suite run on both buses (in-process, and
//! RabbitMQ at 127.0.0.1:5672) and on every engine: outbox crash survival, inbox de-duplication,
//! fan-out, ordering, retry then success, dead-lettering after N attempts. Then what only the
//! broker has: publisher confirms and lost connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bazaar::bus::{InProcessBus, RabbitMqBus, RabbitMqConfig, Topology};
use catalog_contracts::ProductDiscontinued;
use contracts::IntegrationEvent;
use kernel::bus::RetryPolicy;
use kernel::inbox::Processed;
use kernel::outbox::Relay;
use kernel::{Consumer, Envelope, EventBus, EventHandler, HandlerError, Inbox, Outbox};
use sea_orm::sea_query::{Alias, ColumnDef, Expr, ExprTrait, Query, Table};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction};
use tokio_util::sync::CancellationToken;

use crate::broker::{Proxy, TestBroker};
use crate::engines::{Engine, TestDatabase, on_every_engine};
use crate::helpers::eventually;

/// Runs each contract test on the in-process bus with every engine, and on RabbitMQ with SQLite
/// and PostgreSQL.
macro_rules! on_every_bus {
    ($($name:ident),* $(,)?) => {
        mod in_process_sqlite {
            $( #[tokio::test] async fn $name() { super::$name(crate::engines::Engine::Sqlite, super::Carrier::InProcess).await } )*
        }
        mod in_process_postgres {
            $( #[tokio::test] async fn $name() { super::$name(crate::engines::Engine::Postgres, super::Carrier::InProcess).await } )*
        }
        mod in_process_mysql {
            $( #[tokio::test] async fn $name() { super::$name(crate::engines::Engine::Mysql, super::Carrier::InProcess).await } )*
        }
        mod rabbitmq_sqlite {
            $( #[tokio::test] async fn $name() { super::$name(crate::engines::Engine::Sqlite, super::Carrier::RabbitMq).await } )*
        }
        mod rabbitmq_postgres {
            $( #[tokio::test] async fn $name() { super::$name(crate::engines::Engine::Postgres, super::Carrier::RabbitMq).await } )*
        }
    };
}

on_every_bus!(
    an_event_committed_before_a_crash_is_delivered_after_the_restart,
    a_redelivered_event_has_no_second_effect,
    every_consuming_module_gets_each_event_once,
    one_producers_events_for_one_aggregate_arrive_in_order,
    a_failing_handler_is_retried_with_backoff_until_it_succeeds,
    a_transient_database_error_is_retried_for_as_long_as_it_lasts_without_using_up_attempts,
    after_n_failures_an_event_is_dead_lettered_and_the_rest_keeps_flowing,
    an_event_whose_data_does_not_decode_is_dead_lettered_at_once,
    a_transient_failure_holds_back_the_events_behind_it,
    a_batch_with_every_kind_of_failure_ends_the_same_on_every_bus,
);

mod rabbitmq_only {
    #[tokio::test]
    async fn a_publish_the_broker_refuses_stays_in_the_outbox_until_it_is_confirmed() {
        super::a_publish_the_broker_refuses_stays_in_the_outbox_until_it_is_confirmed().await
    }
    #[tokio::test]
    async fn a_lost_connection_is_restored_and_no_event_is_lost() {
        super::a_lost_connection_is_restored_and_no_event_is_lost().await
    }
    #[tokio::test]
    async fn a_connection_the_broker_closes_is_reopened_and_no_event_is_lost() {
        super::a_connection_the_broker_closes_is_reopened_and_no_event_is_lost().await
    }
    #[tokio::test]
    async fn a_message_that_is_not_an_envelope_goes_to_the_dead_letter_queue() {
        super::a_message_that_is_not_an_envelope_goes_to_the_dead_letter_queue().await
    }
}

on_every_engine!(
    a_handler_hears_of_each_commit_of_its_effects_and_of_nothing_else,
    an_event_accepted_for_a_consumer_survives_a_crash_before_it_is_handled,
    the_relay_retries_with_backoff_while_the_bus_refuses,
    several_relays_on_one_outbox_publish_each_event_once_in_order,
    housekeeping_purges_what_was_published_and_handled_but_keeps_the_rest,
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    InProcess,
    RabbitMq,
}

const PRODUCER: &str = "producer";

/// The kernel's tables of `module` and a `<module>_effects` table, on `database`.
async fn module_db(database: &TestDatabase, module: &'static str) -> DatabaseConnection {
    crate::helpers::init_logs();
    let db = kernel::db::connect(&database.url_for(module), 5).await.expect("a database");
    let manager = migrations_kernel::SchemaManager::new(&db);
    migrations_kernel::MigrationTrait::up(&migrations_kernel::KernelTables::new(module), &manager)
        .await
        .expect("kernel tables");
    let effects = Table::create()
        .table(Alias::new(format!("{module}_effects")))
        .if_not_exists()
        .col(ColumnDef::new("event_id").string_len(36).not_null())
        .col(ColumnDef::new("sku").string_len(64).not_null())
        .to_owned();
    db.execute(&effects).await.expect("an effects table");
    db
}

/// A consumer that records each event it handles in `<module>_effects`, failing as told.
struct Recorder {
    module: &'static str,
    calls: AtomicU32,
    fail_first: u32,
    /// Whether the first failures are the database's (unreachable) rather than the handler's own.
    transient: bool,
    fail_sku: Option<&'static str>,
    /// How many commits of its effects it was told of ([`EventHandler::committed`]).
    committed: AtomicU32,
    /// The skus handled, in the order their effects committed... or were attempted: a rolled-back
    /// attempt is not removed, so tests of order use a handler that does not fail.
    seen: std::sync::Mutex<Vec<String>>,
}

impl Recorder {
    fn new(module: &'static str) -> Self {
        Self {
            module,
            calls: AtomicU32::new(0),
            fail_first: 0,
            transient: false,
            fail_sku: None,
            committed: AtomicU32::new(0),
            seen: Default::default(),
        }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("not poisoned").clone()
    }
}

#[async_trait]
impl EventHandler for Recorder {
    async fn handle(&self, txn: &DatabaseTransaction, envelope: &Envelope) -> Result<(), HandlerError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let event: ProductDiscontinued = envelope.decode()?;
        if call <= self.fail_first && self.transient {
            let unreachable = sea_orm::DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout);
            return Err(HandlerError::Failed(
                anyhow::Error::new(unreachable).context(format!("failure number {call}")),
            ));
        }
        if call <= self.fail_first || self.fail_sku == Some(event.sku.as_str()) {
            return Err(HandlerError::Failed(anyhow::anyhow!("failure number {call}")));
        }
        let insert = Query::insert()
            .into_table(Alias::new(format!("{}_effects", self.module)))
            .columns(["event_id", "sku"])
            .values_panic([envelope.id.to_string().into(), event.sku.clone().into()])
            .to_owned();
        txn.execute(&insert).await?;
        self.seen.lock().expect("not poisoned").push(event.sku);
        Ok(())
    }

    fn committed(&self) {
        self.committed.fetch_add(1, Ordering::SeqCst);
    }
}

/// How many times `module` had an effect for `sku`.
async fn effects(db: &DatabaseConnection, module: &str, sku: &str) -> usize {
    let select = Query::select()
        .column("event_id")
        .from(Alias::new(format!("{module}_effects")))
        .and_where(Expr::col("sku").eq(sku))
        .to_owned();
    db.query_all(&select).await.expect("effects").len()
}

fn event(sku: &str) -> Envelope {
    Envelope::new(&ProductDiscontinued { product_id: uuid::Uuid::now_v7(), sku: sku.to_owned(), version: 1 })
        .expect("an envelope")
}

fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy { max_attempts, base_delay: Duration::from_millis(10), max_delay: Duration::from_millis(50) }
}

fn consumer(name: &'static str, db: &DatabaseConnection, handler: Arc<dyn EventHandler>) -> Consumer {
    let outbox = Outbox::new(name, db.clone());
    Consumer { name, events: vec![ProductDiscontinued::event_type()], handler, inbox: Inbox::new(outbox) }
}

/// A running bus with a relay for the producer's outbox; stops when dropped.
struct Running {
    bus: Arc<dyn EventBus>,
    shutdown: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Where a test's buses travel: in the process, or through a prefix of its own on RabbitMQ.
struct Buses {
    broker: Option<TestBroker>,
}

impl Buses {
    /// `None` (the test skips) when the broker is needed and unreachable.
    async fn create(carrier: Carrier) -> Option<Self> {
        match carrier {
            Carrier::InProcess => Some(Self { broker: None }),
            Carrier::RabbitMq => Some(Self { broker: Some(TestBroker::create().await?) }),
        }
    }

    fn bus(&self, consumers: &[Consumer], policy: RetryPolicy, url: Option<String>) -> Arc<dyn EventBus> {
        let Some(broker) = &self.broker else { return Arc::new(InProcessBus::new(policy)) };
        let topology =
            Topology::new(&broker.prefix, consumers.iter().map(|c| (c.name.to_owned(), c.events.clone())), &policy);
        broker.owns(&topology);
        let config = RabbitMqConfig {
            url: url.unwrap_or_else(|| broker.url.clone()).into(),
            prefetch: 16,
            confirm_timeout: Duration::from_secs(2),
            reconnect_max_delay: Duration::from_millis(500),
            policy,
        };
        Arc::new(RabbitMqBus::new(config, topology))
    }

    async fn start(&self, producer: &Outbox, consumers: Vec<Consumer>, policy: RetryPolicy) -> Running {
        self.start_via(producer, consumers, policy, None).await
    }

    /// Starts a bus (through `url` to the broker, if given) and a relay; returns once the bus is ready.
    async fn start_via(
        &self,
        producer: &Outbox,
        consumers: Vec<Consumer>,
        policy: RetryPolicy,
        url: Option<String>,
    ) -> Running {
        let bus = self.bus(&consumers, policy, url);
        for consumer in consumers {
            bus.subscribe(consumer).await.expect("subscribed");
        }
        let shutdown = CancellationToken::new();
        let running = bus.clone();
        let token = shutdown.clone();
        tokio::spawn(async move { running.run(token).await });
        eventually(10, || async { bus.check().await.ok() }).await;
        let relay = Relay::new(producer.clone(), bus.clone(), 100, Duration::from_millis(50));
        tokio::spawn(relay.run(shutdown.clone()));
        Running { bus, shutdown }
    }

    /// What `consumer` dead-lettered: its dead-letter table, or its queue on the broker.
    async fn dead_letters(&self, consumer: &Consumer) -> Vec<(String, u32, String)> {
        match &self.broker {
            None => {
                let dead = consumer.inbox.dead_letter_list(100).await.expect("dead letters");
                dead.into_iter().map(|d| (d.payload, d.attempts, d.error)).collect()
            }
            Some(broker) => {
                let queue = format!("{}.{}.dead", broker.prefix, consumer.name);
                broker.peek(&queue).await.into_iter().map(|m| (m.payload, m.attempts, m.error)).collect()
            }
        }
    }
}

async fn commit_event(outbox: &Outbox, envelope: &Envelope) {
    let txn = kernel::db::begin_write(outbox.db()).await.expect("a transaction");
    outbox.enqueue(&txn, envelope).await.expect("enqueued");
    outbox.commit(txn).await.expect("committed");
}

/// A test's database and buses; `None` when a service it needs is unreachable.
async fn setup(engine: Engine, carrier: Carrier, dir: &std::path::Path) -> Option<(TestDatabase, Buses)> {
    let database = TestDatabase::create(engine, dir).await?;
    Some((database, Buses::create(carrier).await?))
}

async fn an_event_committed_before_a_crash_is_delivered_after_the_restart(engine: Engine, carrier: Carrier) {
    let dir = tempfile::tempdir().expect("a folder");
    let Some((database, buses)) = setup(engine, carrier, dir.path()).await else { return };
    {
        // The state change and its event commit, then the process dies before any relay runs.
        let producer = Outbox::new(PRODUCER, module_db(&database, PRODUCER).await);
        commit_event(&producer, &event("CRASH-1")).await;
        assert_eq!(producer.pending().await.expect("pending"), 1);
    }
    let reconnected = kernel::db::connect(&database.url_for(PRODUCER), 5).await.expect("the database again");
    let producer = Outbox::new(PRODUCER, reconnected);
    let consumer_db = module_db(&database, "consumer").await;
    let consumers = vec![consumer("consumer", &consumer_db, Arc::new(Recorder::new("consumer")))];
    let _running = buses.start(&producer, consumers, policy(3)).await;
    eventually(10, || async { (effects(&consumer_db, "consumer", "CRASH-1").await == 1).then_some(()) }).await;
    eventually(10, || async { (producer.pending().await.expect("pending") == 0).then_some(()) }).await;
}

async fn an_event_accepted_for_a_consumer_survives_a_crash_before_it_is_handled(engine: Engine) {
    let dir = tempfile::tempdir().expect("a folder");
    let Some(database) = TestDatabase::create(engine, dir.path()).await else { return };
    let consumer_db = module_db(&database, "consumer").await;
    {
        let bus = InProcessBus::new(policy(3));
        bus.subscribe(consumer("consumer", &consumer_db, Arc::new(Recorder::new("consumer"))))
            .await
            .expect("subscribed");
        bus.publish(&event("QUEUED-1")).await.expect("accepted");
        // The bus never ran: the process died with the event queued.
    }
    let producer = Outbox::new(PRODUCER, module_db(&database, PRODUCER).await);
    let _running = Buses { broker: None }
        .start(&producer, vec![consumer("consumer", &consumer_db, Arc::new(Recorder::new("consumer")))], policy(3))
        .await;
    eventually(10, || async { (effects(&consumer_db, "consumer", "QUEUED-1").await == 1).then_some(()) }).await;
}

async fn a_redelivered_event_has_no_second_effect(engine: Engine, carrier: Carrier) {
    let dir = tempfile::tempdir().expect("a folder");
    let Some((database, buses)) = setup(engine, carrier, dir.path()).await else { return };
    let producer = Outbox::new(PRODUCER, module_db(&database, PRODUCER).await);
    let consumer_db = module_db(&database, "consumer").await;
    let recorder = Arc::new(Recorder::new("consumer"));
    let running = buses.start(&producer, vec![consumer("consumer", &consumer_db, recorder.clone())], policy(3)).await;
    let first = event("ONCE-1");
    commit_event(&producer, &first).await;
    eventually(10, || async { (effects(&consumer_db, "consumer", "ONCE-1").await == 1).then_some(()) }).await;

    // The relay died after the bus accepted the event but before it marked the row: it goes again,
    // and the bus itself delivers it once more.
    producer.db().execute_unprepared("UPDATE producer_outbox SET published_at = NULL").await.expect("reset");
    producer.wake();
    running.bus.publish(&first).await.expect("accepted again");
    // And the inbox itself refuses a second effect, whatever a bus redelivers.
    let inbox = Inbox::new(Outbox::new("consumer", consumer_db.clone()));
    assert_eq!(inbox.process("consumer", &first, recorder.as_ref()).await.expect("processed"), Processed::Duplicate);

    let marker = event("AFTER-1");
    commit_event(&producer, &marker).await;
    eventually(10, || async { (effects(&consumer_db, "consumer", "AFTER-1").await == 1).then_some(()) }).await;
    eventually(10, || async { (producer.pending().await.expect("pending") == 0).then_some(()) }).await;
    assert_eq!(effects(&consumer_db, "consumer", "ONCE-1").await, 1);
}

/// `committed` is how a module wakes a worker that acts on what its handler wrote (payments):
/// once per commit that holds an effect, never for a repeat or a failure, which commit nothing.
async fn a_handler_hears_of_each_commit_of_its_effects_and_of_nothing_else(engine: Engine) {
    let dir = tempfile::tempdir().expect("a folder");
    let Some(database) = TestDatabase::create(engine, dir.path()).await else { return };
    let db = module_db(&database, "consumer").await;
    let inbox = Inbox::new(Outbox::new("consumer", db.clone()));
    let recorder = Recorder { fail_sku: Some("REFUSED-1"), ..Recorder::new("consumer") };
    let told = || recorder.committed.load(Ordering::SeqCst);

    let first = event("TOLD-1");
    assert_eq!(inbox.process("consumer", &first, &recorder).await.expect("processed"), Processed::Handled);
    assert_eq!((told(), effects(&db, "consumer", "TOLD-1").await), (1, 1));
    assert_eq!(inbox.process("consumer", &first, &recorder).await.expect("processed"), Processed::Duplicate);
    assert_eq!(told(), 1, "a repeat commits nothing");
    assert!(inbox.process("consumer", &event("REFUSED-1"), &recorder).await.is_err());
    assert_eq!(told(), 1, "a failure is rolled back");
    assert_eq!(inbox.process("consumer", &event("TOLD-2"), &recorder).await.expect("processed"), Processed::Handled);
    assert_eq!(told(), 2);
}

async fn every_consuming_module_gets_each_event_once(engine: Engine, carrier: Carrier) {
    let dir = tempfile::tempdir().expect("a folder");
    let Some((database, buses)) = setup(engine, carrier, dir.path()).await else { return };
    let producer = Outbox::new(PRODUCER, module_db(&database, PRODUCER).await);
    let names = ["first", "second", "third"];
    let mut dbs = Vec::new();
    for name in names {
        dbs.push(module_db(&database, name).await);
    }
    let consumers = names.iter().zip(&dbs).map(|(n, db)| consumer(n, db, Arc::new(Recorder::new(n)))).collect();
    let _running = buses.start(&producer, consumers, policy(3)).await;
    for i in 0..5 {
        commit_event(&producer, &event(&format!("FAN-{i}"))).await;
    }
    for (name, db) in names.iter().zip(&dbs) {
        for i in 0..5 {
            let sku = format!("FAN-{i}");
            eventually(10, || async { (effects(db, name, &sku).await >= 1).then_some(()) }).await;
        }
    }
    // Nothing more arrives: each module had each event once.
    eventually(10, || async { (producer.pending().await.expect("pending") == 0).then_some(()) }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (name, db) in names.iter().zip(&dbs) {
        for i in 0..5 {
            assert_eq!(effects(db, name, &format!("FAN-{i}")).await, 1, "{name} FAN-{i}");
        }
    }
}

async fn one_producers_events_for_one_aggregate_arrive_in_order(engine: Engine, carrier: Carrier) {
    let dir = tempfile::tempdir().expect("a folder");
    let Some((database, buses)) = setup(engine, carrier, dir.path()).await else { return };
    let producer = Outbox::new(PRODUCER, module_db(&database, PRODUCER).await);
    let consumer_db = module_db(&database, "consumer").await;
    let recorder = Arc::new(Recorder::new("consumer"));
    let _running = buses.start(&producer, vec![consumer("consumer", &consumer_db, recorder.clone())], policy(3)).await;
    let product_id = uuid::Uuid::now_v7();
    let skus: Vec<String> = (0..60).map(|i| format!("STEP-{i:02}")).collect();
    // In bursts, so that the relay and the consumer see batches of several sizes.
    for (i, sku) in skus.iter().enumerate() {
        let envelope =
            Envelope::new(&ProductDiscontinued { product_id, sku: sku.clone(), version: 1 }).expect("an envelope");
        commit_event(&producer, &envelope).await;
        if i % 7 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    eventually(15, || async { (recorder.seen().len() >= skus.len()).then_some(()) }).await;
    assert_eq!(recorder.seen(), skus, "handled in the order they were committed");
}

async fn a_failing_handler_is_retried_with_backoff_until_it_succeeds(engine: Engine, carrier: Carrier) {
    let dir = tempfile::tempdir().expect("a folder");
    let Some((database, buses)) = setup(engine, carrier, dir.path()).await else { return };
    let producer = Outbox::new(PRODUCER, module_db(&database, PRODUCER).await);
    let consumer_db = module_db(&database, "consumer").await;
    let recorder = Arc::new(Recorder { fail_first: 2, ..Recorder::new("consumer") });
    let consumers = vec![consumer("consumer", &consumer_db, recorder.clone())];
    let _running = buses.start(&producer, consumers.clone(), policy(5)).await;
    commit_event(&producer, &event("RETRY-1")).await;
    eventually(10, || async { (effects(&consumer_db, "consumer", "RETRY-1").await == 1).then_some(()) }).await;
    assert_eq!(recorder.calls.load(Ordering::SeqCst), 3);
    assert!(buses.dead_letters(&consumers[0]).await.is_empty());
}

/// The database unreachable (a restart, a failover) is not the handler's fault: twice as many
/// failures as `max_attempts` allows, and the event is still handled, once, when it is back.
async fn a_transient_database_error_is_retried_for_as_long_as_it_lasts_without_using_up_attempts(
    engine: Engine,
    carrier: Carrier,
) {
    let dir = tempfile::tempdir().expect("a folder");
    let Some((database, buses)) = setup(engine, carrier, dir.path()).await else { return };
    let producer = Outbox::new(PRODUCER, module_db(&database, PRODUCER).await);
    let consumer_db = module_db(&database, "consumer").await;
    let recorder = Arc::new(Recorder { fail_first: 6, transient: true, ..Recorder::new("consumer") });
    let consumers = vec![consumer("consumer", &consumer_db, recorder.clone())];
    let _running = buses.start(&producer, consumers.clone(), policy(3)).await;
    commit_event(&producer, &event("OUTAGE-1")).await;
    eventually(10, || async { (effects(&consumer_db, "consumer", "OUTAGE-1").await == 1).then_some(()) }).await;
    assert_eq!(recorder.calls.load(Ordering::SeqCst), 7, "6 transient failures, then handled");
    assert!(buses.dead_letters(&consumers[0]).await.is_empty());
}

async fn after_n_failures_an_event_is_dead_lettered_and_the_rest_keeps_flowing(engine: Engine, carrier: Carrier) {
    let dir = tempfile::tempdir().expect("a folder");
    let Some((database, buses)) = setup(engine, carrier, dir.path()).await else { return };
    let producer = Outbox::new(PRODUCER, module_db(&database, PRODUCER).await);
    let failing_db = module_db(&database, "failing").await;
    let healthy_db = module_db(&database, "healthy").await;
    let failing = Arc::new(Recorder { fail_sku: Some("POISON"), ..Recorder::new("failing") });
    let consumers = vec![
        consumer("failing", &failing_db, failing.clone()),
        consumer("healthy", &healthy_db, Arc::new(Recorder::new("healthy"))),
    ];
    let _running = buses.start(&producer, consumers.clone(), policy(3)).await;

    commit_event(&producer, &event("POISON")).await;
    commit_event(&producer, &event("FINE-1")).await;
    // The healthy consumer and the failing one's later events are not held up by the poison.
    eventually(10, || async { (effects(&healthy_db, "healthy", "POISON").await == 1).then_some(()) }).await;
    eventually(10, || async { (effects(&failing_db, "failing", "FINE-1").await == 1).then_some(()) }).await;

    let dead = eventually(10, || async {
        let dead = buses.dead_letters(&consumers[0]).await;
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(dead.len(), 1);
    let (payload, attempts, error) = &dead[0];
    assert_eq!(*attempts, 3);
    assert!(error.contains("failure number"), "{error}");
    assert!(payload.contains("POISON") && payload.contains("ProductDiscontinued"), "{payload}");
    assert_eq!(effects(&failing_db, "failing", "POISON").await, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(failing.calls.load(Ordering::SeqCst), 4, "3 attempts at the poison, 1 for the fine event; no more");
    assert!(buses.dead_letters(&consumers[1]).await.is_empty());
}

async fn an_event_whose_data_does_not_decode_is_dead_lettered_at_once(engine: Engine, carrier: Carrier) {
    let dir = tempfile::tempdir().expect("a folder");
    let Some((database, buses)) = setup(engine, carrier, dir.path()).await else { return };
    let producer = Outbox::new(PRODUCER, module_db(&database, PRODUCER).await);
    let consumer_db = module_db(&database, "consumer").await;
    let recorder = Arc::new(Recorder::new("consumer"));
    let consumers = vec![consumer("consumer", &consumer_db, recorder.clone())];
    let _running = buses.start(&producer, consumers.clone(), policy(5)).await;
    let mut malformed = event("BROKEN");
    malformed.data = serde_json::json!({"productId": 42});
    commit_event(&producer, &malformed).await;
    let dead = eventually(10, || async {
        let dead = buses.dead_letters(&consumers[0]).await;
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(dead[0].1, 1);
    assert!(dead[0].2.contains("malformed"), "{}", dead[0].2);
    assert_eq!(recorder.calls.load(Ordering::SeqCst), 1, "never retried");
}

/// A bus that refuses the first `refusals` publishes, then records what it accepts.
struct FlakyBus {
    refusals: AtomicU32,
    accepted: std::sync::Mutex<Vec<uuid::Uuid>>,
}

impl FlakyBus {
    fn new(refusals: u32) -> Self {
        Self { refusals: AtomicU32::new(refusals), accepted: std::sync::Mutex::new(Vec::new()) }
    }

    fn accepted(&self) -> Vec<uuid::Uuid> {
        self.accepted.lock().expect("not poisoned").clone()
    }
}

#[async_trait]
impl EventBus for FlakyBus {
    fn kind(&self) -> &'static str {
        "flaky"
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), kernel::BusError> {
        if self.refusals.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(kernel::BusError::Unavailable("the broker is down".into()));
        }
        self.accepted.lock().expect("not poisoned").push(envelope.id);
        Ok(())
    }

    async fn subscribe(&self, _: Consumer) -> Result<(), kernel::BusError> {
        Ok(())
    }

    async fn listen(&self, _: Arc<dyn kernel::Listener>) -> Result<(), kernel::BusError> {
        Ok(())
    }

    async fn run(&self, shutdown: CancellationToken) -> Result<(), kernel::BusError> {
        shutdown.cancelled().await;
        Ok(())
    }
}

async fn relay_to(outbox: &Outbox, bus: Arc<dyn EventBus>, shutdown: &CancellationToken) {
    let relay = Relay::new(outbox.clone(), bus, 10, Duration::from_millis(50));
    tokio::spawn(relay.run(shutdown.clone()));
}

async fn outbox_attempts(db: &DatabaseConnection) -> (i32, Option<String>) {
    let select = Query::select().columns(["attempts", "last_error"]).from(Alias::new("producer_outbox")).to_owned();
    let row = db.query_one(&select).await.expect("a query").expect("a row");
    (row.try_get("", "attempts").expect("attempts"), row.try_get("", "last_error").expect("last_error"))
}

async fn the_relay_retries_with_backoff_while_the_bus_refuses(engine: Engine) {
    let dir = tempfile::tempdir().expect("a folder");
    let Some(database) = TestDatabase::create(engine, dir.path()).await else { return };
    let producer = Outbox::new(PRODUCER, module_db(&database, PRODUCER).await);
    let bus = Arc::new(FlakyBus::new(2));
    let shutdown = CancellationToken::new();
    let envelope = event("LATER-1");
    commit_event(&producer, &envelope).await;
    relay_to(&producer, bus.clone(), &shutdown).await;
    eventually(10, || async { (producer.pending().await.expect("pending") == 0).then_some(()) }).await;
    assert_eq!(bus.accepted(), [envelope.id], "published once, after the refusals");
    let (attempts, last_error) = outbox_attempts(producer.db()).await;
    assert_eq!(attempts, 2);
    assert!(last_error.expect("the last refusal").contains("broker is down"));
    shutdown.cancel();
}

async fn several_relays_on_one_outbox_publish_each_event_once_in_order(engine: Engine) {
    let dir = tempfile::tempdir().expect("a folder");
    let Some(database) = TestDatabase::create(engine, dir.path()).await else { return };
    let producer = Outbox::new(PRODUCER, module_db(&database, PRODUCER).await);
    let bus = Arc::new(FlakyBus::new(0));
    let shutdown = CancellationToken::new();
    // Three replicas, each with its own pool, as three processes would have.
    for _ in 0..3 {
        let replica = kernel::db::connect(&database.url_for(PRODUCER), 3).await.expect("a pool");
        relay_to(&Outbox::new(PRODUCER, replica), bus.clone(), &shutdown).await;
    }
    let mut committed = Vec::new();
    for i in 0..60 {
        let envelope = event(&format!("MANY-{i}"));
        commit_event(&producer, &envelope).await;
        committed.push(envelope.id);
    }
    eventually(20, || async { (producer.pending().await.expect("pending") == 0).then_some(()) }).await;
    shutdown.cancel();
    let accepted = bus.accepted();
    if engine == Engine::Sqlite {
        // One process per SQLite file: replicas are not a SQLite topology, only at-least-once holds.
        assert!(committed.iter().all(|id| accepted.contains(id)));
    } else {
        assert_eq!(accepted, committed, "each event once, in commit order, across replicas");
    }
}

async fn housekeeping_purges_what_was_published_and_handled_but_keeps_the_rest(engine: Engine) {
    let dir = tempfile::tempdir().expect("a folder");
    let Some(database) = TestDatabase::create(engine, dir.path()).await else { return };
    let producer = Outbox::new(PRODUCER, module_db(&database, PRODUCER).await);
    let consumer_db = module_db(&database, "consumer").await;
    let consumers = vec![consumer("consumer", &consumer_db, Arc::new(Recorder::new("consumer")))];
    let running = Buses { broker: None }.start(&producer, consumers, policy(3)).await;
    commit_event(&producer, &event("OLD-1")).await;
    eventually(10, || async { (effects(&consumer_db, "consumer", "OLD-1").await == 1).then_some(()) }).await;
    eventually(10, || async { (producer.pending().await.expect("pending") == 0).then_some(()) }).await;
    drop(running);
    // An event still queued for the consumer must survive the purge.
    let queued = Inbox::new(Outbox::new("consumer", consumer_db.clone()));
    queued.enqueue("consumer", &event("WAITING-1")).await.expect("queued");

    let cutoff = kernel::db::now() + chrono::Duration::seconds(1);
    assert_eq!(producer.purge_published(cutoff).await.expect("purged"), 1);
    assert_eq!(queued.purge_processed(cutoff).await.expect("purged"), 1);
    assert_eq!(queued.due("consumer", 10).await.expect("due").len(), 1, "the queued event stays");
}

async fn rabbitmq_setup(dir: &std::path::Path) -> Option<(TestDatabase, Buses)> {
    setup(Engine::Sqlite, Carrier::RabbitMq, dir).await
}

async fn a_publish_the_broker_refuses_stays_in_the_outbox_until_it_is_confirmed() {
    use lapin::options::{QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions};
    use lapin::types::{AMQPValue, FieldTable};
    let dir = tempfile::tempdir().expect("a folder");
    let Some((database, buses)) = rabbitmq_setup(dir.path()).await else { return };
    let broker = buses.broker.as_ref().expect("a broker");
    let producer = Outbox::new(PRODUCER, module_db(&database, PRODUCER).await);
    let consumer_db = module_db(&database, "consumer").await;
    let _running = buses
        .start(&producer, vec![consumer("consumer", &consumer_db, Arc::new(Recorder::new("consumer")))], policy(3))
        .await;

    // A full queue that rejects publishes, bound to the same key: the broker nacks the message.
    let connection = broker.connect().await;
    let channel = connection.create_channel().await.expect("a channel");
    let full = format!("{}.full", broker.prefix);
    let mut arguments = FieldTable::default();
    arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(0));
    arguments.insert("x-overflow".into(), AMQPValue::LongString("reject-publish".into()));
    channel.queue_declare(full.as_str().into(), QueueDeclareOptions::default(), arguments).await.expect("declared");
    channel
        .queue_bind(
            full.as_str().into(),
            format!("{}.events", broker.prefix).into(),
            ProductDiscontinued::event_type().routing_key().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bound");

    commit_event(&producer, &event("REFUSED-1")).await;
    let (attempts, last_error) = eventually(10, || async {
        let (attempts, last_error) = outbox_attempts(producer.db()).await;
        (attempts >= 2).then_some((attempts, last_error))
    })
    .await;
    assert!(attempts >= 2);
    assert!(last_error.expect("the refusal").contains("nack"));
    assert_eq!(producer.pending().await.expect("pending"), 1, "not marked sent without a confirm");

    channel.queue_delete(full.as_str().into(), QueueDeleteOptions::default()).await.expect("deleted");
    let _ = connection.close(200, "done".into()).await;
    eventually(15, || async { (producer.pending().await.expect("pending") == 0).then_some(()) }).await;
    eventually(10, || async { (effects(&consumer_db, "consumer", "REFUSED-1").await == 1).then_some(()) }).await;
}

async fn a_lost_connection_is_restored_and_no_event_is_lost() {
    let dir = tempfile::tempdir().expect("a folder");
    let Some((database, buses)) = rabbitmq_setup(dir.path()).await else { return };
    let broker = buses.broker.as_ref().expect("a broker");
    let proxy = Proxy::to("127.0.0.1:5672").await;
    let producer = Outbox::new(PRODUCER, module_db(&database, PRODUCER).await);
    let consumer_db = module_db(&database, "consumer").await;
    let recorder = Arc::new(Recorder::new("consumer"));
    let consumers = vec![consumer("consumer", &consumer_db, recorder.clone())];
    let running = buses.start_via(&producer, consumers, policy(3), Some(proxy.url(&broker.url))).await;

    let skus: Vec<String> = (0..40).map(|i| format!("STREAM-{i:02}")).collect();
    for (i, sku) in skus.iter().enumerate() {
        if i == 15 {
            proxy.cut();
            eventually(10, || async { running.bus.check().await.is_err().then_some(()) }).await;
        }
        if i == 30 {
            // The outbox kept every write while the broker was away.
            assert!(producer.pending().await.expect("pending") >= 1);
            proxy.restore();
        }
        commit_event(&producer, &event(sku)).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eventually(20, || async { running.bus.check().await.ok() }).await;
    eventually(20, || async { (producer.pending().await.expect("pending") == 0).then_some(()) }).await;
    for sku in &skus {
        eventually(10, || async { (effects(&consumer_db, "consumer", sku).await >= 1).then_some(()) }).await;
    }
    for sku in &skus {
        assert_eq!(effects(&consumer_db, "consumer", sku).await, 1, "{sku} exactly once");
    }
}

async fn a_connection_the_broker_closes_is_reopened_and_no_event_is_lost() {
    let dir = tempfile::tempdir().expect("a folder");
    let Some((database, buses)) = rabbitmq_setup(dir.path()).await else { return };
    let broker = buses.broker.as_ref().expect("a broker");
    let producer = Outbox::new(PRODUCER, module_db(&database, PRODUCER).await);
    let consumer_db = module_db(&database, "consumer").await;
    let consumers = vec![consumer("consumer", &consumer_db, Arc::new(Recorder::new("consumer")))];
    let running = buses.start(&producer, consumers, policy(3)).await;

    let skus: Vec<String> = (0..30).map(|i| format!("CLOSED-{i:02}")).collect();
    for (i, sku) in skus.iter().enumerate() {
        if i == 12 {
            let Some(closed) = broker.close_connections() else { return };
            assert!(closed >= 1, "the bus's connection is named after its prefix");
        }
        commit_event(&producer, &event(sku)).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eventually(20, || async { running.bus.check().await.ok() }).await;
    eventually(20, || async { (producer.pending().await.expect("pending") == 0).then_some(()) }).await;
    for sku in &skus {
        eventually(10, || async { (effects(&consumer_db, "consumer", sku).await >= 1).then_some(()) }).await;
    }
    for sku in &skus {
        assert_eq!(effects(&consumer_db, "consumer", sku).await, 1, "{sku} exactly once");
    }
}

async fn a_message_that_is_not_an_envelope_goes_to_the_dead_letter_queue() {
    use lapin::BasicProperties;
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    let dir = tempfile::tempdir().expect("a folder");
    let Some((database, buses)) = rabbitmq_setup(dir.path()).await else { return };
    let broker = buses.broker.as_ref().expect("a broker");
    let producer = Outbox::new(PRODUCER, module_db(&database, PRODUCER).await);
    let consumer_db = module_db(&database, "consumer").await;
    let recorder = Arc::new(Recorder::new("consumer"));
    let consumers = vec![consumer("consumer", &consumer_db, recorder.clone())];
    let _running = buses.start(&producer, consumers.clone(), policy(5)).await;

    let connection = broker.connect().await;
    let channel = connection.create_channel().await.expect("a channel");
    channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
    let confirm = channel
        .basic_publish(
            format!("{}.events", broker.prefix).into(),
            ProductDiscontinued::event_type().routing_key().into(),
            BasicPublishOptions::default(),
            b"this is not JSON",
            BasicProperties::default(),
        )
        .await
        .expect("published");
    assert!(confirm.await.expect("confirmed").is_ack());
    let _ = connection.close(200, "done".into()).await;

    let dead = eventually(10, || async {
        let dead = buses.dead_letters(&consumers[0]).await;
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(dead[0].0, "this is not JSON");
    assert!(dead[0].2.contains("does not decode"), "{}", dead[0].2);
    assert_eq!(recorder.calls.load(Ordering::SeqCst), 0, "the handler never saw it");
}

/// How a [`Scripted`] handler fails.
#[derive(Debug, Clone, Copy)]
enum Fail {
    /// The database unreachable: the infrastructure's failure, not the handler's.
    Transient,
    /// The handler's own refusal.
    Own,
}

/// A consumer that fails as scripted per sku (the envelope's `data.sku`), then records an effect
/// in `<module>_effects`; it remembers every call and, in order, the calls that succeeded.
struct Scripted {
    module: &'static str,
    /// The next failures of each sku, first first; then it succeeds.
    script: std::sync::Mutex<std::collections::HashMap<&'static str, Vec<Fail>>>,
    /// Skus that fail every time.
    always: Vec<(&'static str, Fail)>,
    calls: std::sync::Mutex<Vec<String>>,
    succeeded: std::sync::Mutex<Vec<String>>,
}

impl Scripted {
    fn new(module: &'static str, script: &[(&'static str, &[Fail])], always: &[(&'static str, Fail)]) -> Self {
        Self {
            module,
            script: std::sync::Mutex::new(script.iter().map(|(sku, fails)| (*sku, fails.to_vec())).collect()),
            always: always.to_vec(),
            calls: Default::default(),
            succeeded: Default::default(),
        }
    }

    fn calls_for(&self, sku: &str) -> usize {
        self.calls.lock().expect("not poisoned").iter().filter(|s| *s == sku).count()
    }

    /// The skus whose handling succeeded, in order, keeping only `among`.
    fn succeeded_among(&self, among: &[&str]) -> Vec<String> {
        let succeeded = self.succeeded.lock().expect("not poisoned");
        succeeded.iter().filter(|s| among.contains(&s.as_str())).cloned().collect()
    }
}

#[async_trait]
impl EventHandler for Scripted {
    async fn handle(&self, txn: &DatabaseTransaction, envelope: &Envelope) -> Result<(), HandlerError> {
        let sku = envelope.data["sku"].as_str().unwrap_or_default().to_owned();
        self.calls.lock().expect("not poisoned").push(sku.clone());
        let event: ProductDiscontinued = envelope.decode()?;
        let scripted = self
            .script
            .lock()
            .expect("not poisoned")
            .get_mut(sku.as_str())
            .and_then(|fails| (!fails.is_empty()).then(|| fails.remove(0)));
        let fail = scripted.or_else(|| self.always.iter().find(|(s, _)| *s == sku).map(|(_, f)| *f));
        match fail {
            Some(Fail::Transient) => {
                let unreachable = sea_orm::DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout);
                return Err(HandlerError::Failed(
                    anyhow::Error::new(unreachable).context(format!("{sku} met an outage")),
                ));
            }
            Some(Fail::Own) => return Err(HandlerError::Failed(anyhow::anyhow!("{sku} failed on its own"))),
            None => {}
        }
        let insert = Query::insert()
            .into_table(Alias::new(format!("{}_effects", self.module)))
            .columns(["event_id", "sku"])
            .values_panic([envelope.id.to_string().into(), event.sku.into()])
            .to_owned();
        txn.execute(&insert).await?;
        self.succeeded.lock().expect("not poisoned").push(sku);
        Ok(())
    }
}

/// A transient failure is held by the pipeline, on every bus, and what was published after it waits
/// for it: the in-process bus once let later events overtake it (it put the event aside in its
/// queue), the RabbitMQ bus did not (it held the delivery).
async fn a_transient_failure_holds_back_the_events_behind_it(engine: Engine, carrier: Carrier) {
    let dir = tempfile::tempdir().expect("a folder");
    let Some((database, buses)) = setup(engine, carrier, dir.path()).await else { return };
    let producer = Outbox::new(PRODUCER, module_db(&database, PRODUCER).await);
    let consumer_db = module_db(&database, "consumer").await;
    let scripted = Arc::new(Scripted::new("consumer", &[("HELD", &[Fail::Transient; 8])], &[]));
    let consumers = vec![consumer("consumer", &consumer_db, scripted.clone())];
    let _running = buses.start(&producer, consumers.clone(), policy(3)).await;
    commit_event(&producer, &event("HELD")).await;
    eventually(10, || async { (scripted.calls_for("HELD") >= 1).then_some(()) }).await;
    commit_event(&producer, &event("AFTER")).await;
    for sku in ["HELD", "AFTER"] {
        eventually(10, || async { (effects(&consumer_db, "consumer", sku).await == 1).then_some(()) }).await;
    }
    assert_eq!(scripted.succeeded_among(&["HELD", "AFTER"]), ["HELD", "AFTER"], "nothing overtook the held event");
    assert_eq!(scripted.calls_for("HELD"), 9, "8 transient failures on attempt 1 of 3, then handled");
    assert_eq!(scripted.calls_for("AFTER"), 1);
    assert!(buses.dead_letters(&consumers[0]).await.is_empty());
}

/// One transaction commits six events that fare differently; whichever bus carries them, each
/// ends the same: the same calls, the same effects, the same dead letters with the same attempts,
/// and the transient failure reorders nothing.
async fn a_batch_with_every_kind_of_failure_ends_the_same_on_every_bus(engine: Engine, carrier: Carrier) {
    let dir = tempfile::tempdir().expect("a folder");
    let Some((database, buses)) = setup(engine, carrier, dir.path()).await else { return };
    let producer = Outbox::new(PRODUCER, module_db(&database, PRODUCER).await);
    let consumer_db = module_db(&database, "consumer").await;
    let scripted = Arc::new(Scripted::new(
        "consumer",
        &[("RETRIED", &[Fail::Own]), ("HELD", &[Fail::Transient; 3])],
        &[("POISON", Fail::Own)],
    ));
    let consumers = vec![consumer("consumer", &consumer_db, scripted.clone())];
    let _running = buses.start(&producer, consumers.clone(), policy(3)).await;

    let mut broken = event("BROKEN");
    broken.data = serde_json::json!({"productId": 42, "sku": "BROKEN"});
    let batch = [event("FIRST"), event("RETRIED"), event("POISON"), broken, event("HELD"), event("LAST")];
    let txn = kernel::db::begin_write(producer.db()).await.expect("a transaction");
    for envelope in &batch {
        producer.enqueue(&txn, envelope).await.expect("enqueued");
    }
    producer.commit(txn).await.expect("committed");

    for sku in ["FIRST", "RETRIED", "HELD", "LAST"] {
        eventually(10, || async { (effects(&consumer_db, "consumer", sku).await == 1).then_some(()) }).await;
    }
    let mut dead = eventually(10, || async {
        let dead = buses.dead_letters(&consumers[0]).await;
        (dead.len() >= 2).then_some(dead)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    dead.sort_by_key(|(payload, ..)| !payload.contains("POISON"));
    assert_eq!(dead.len(), 2, "{dead:?}");
    let (poison, broken) = (&dead[0], &dead[1]);
    assert!(
        poison.0.contains("POISON") && poison.1 == 3 && poison.2.contains("POISON failed on its own"),
        "{poison:?}"
    );
    assert!(broken.0.contains("BROKEN") && broken.1 == 1 && broken.2.contains("malformed event"), "{broken:?}");
    let calls = ["FIRST", "RETRIED", "POISON", "BROKEN", "HELD", "LAST"].map(|sku| scripted.calls_for(sku));
    assert_eq!(calls, [1, 2, 3, 1, 4, 1], "calls of FIRST, RETRIED, POISON, BROKEN, HELD, LAST");
    for (sku, expected) in [("FIRST", 1), ("RETRIED", 1), ("POISON", 0), ("BROKEN", 0), ("HELD", 1), ("LAST", 1)] {
        assert_eq!(effects(&consumer_db, "consumer", sku).await, expected, "{sku}");
    }
    assert_eq!(scripted.succeeded_among(&["FIRST", "HELD", "LAST"]), ["FIRST", "HELD", "LAST"]);
}
