//! The real RabbitMQ (127.0.0.1:5672, guest/guest, or `BAZAAR_TEST_RABBITMQ`) for tests: each test
//! gets a name prefix of its own, and its exchange and queues are deleted when it ends. A proxy
//! between a bus and the broker lets a test cut the connection as a network failure would.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bazaar::bus::Topology;
use lapin::options::{BasicGetOptions, ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::types::AMQPValue;
use lapin::{Connection, ConnectionProperties};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A prefix of its own on the test broker; its topology is deleted on drop.
pub struct TestBroker {
    pub url: String,
    pub prefix: String,
    topologies: Mutex<Vec<Topology>>,
}

/// A message read (and left) in a dead-letter queue.
#[derive(Debug)]
pub struct DeadMessage {
    pub payload: String,
    pub attempts: u32,
    pub error: String,
}

impl TestBroker {
    /// `None` (the test skips) when RabbitMQ is unreachable and services are optional.
    pub async fn create() -> Option<Self> {
        let url =
            std::env::var("BAZAAR_TEST_RABBITMQ").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
        match Connection::connect(&url, ConnectionProperties::default()).await {
            Ok(connection) => {
                let _ = connection.close(200, "probe".into()).await;
            }
            Err(e) if std::env::var("BAZAAR_REQUIRE_SERVICES").is_ok_and(|v| v == "1") => {
                panic!("RabbitMQ at {url} is required (BAZAAR_REQUIRE_SERVICES=1) but unreachable: {e}")
            }
            Err(e) => {
                eprintln!("skipped: RabbitMQ at {url} is unreachable: {e}");
                return None;
            }
        }
        let prefix = format!("bazaar-test-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        Some(Self { url, prefix, topologies: Mutex::new(Vec::new()) })
    }

    /// Deletes `topology`'s exchange and queues when the test ends.
    pub fn owns(&self, topology: &Topology) {
        self.topologies.lock().expect("not poisoned").push(topology.clone());
    }

    pub async fn connect(&self) -> Connection {
        Connection::connect(&self.url, ConnectionProperties::default()).await.expect("a connection to RabbitMQ")
    }

    /// The messages in `queue`, oldest first, left in place.
    pub async fn peek(&self, queue: &str) -> Vec<DeadMessage> {
        let connection = self.connect().await;
        let channel = connection.create_channel().await.expect("a channel");
        let mut messages = Vec::new();
        while let Some(message) =
            channel.basic_get(queue.into(), BasicGetOptions { no_ack: false }).await.expect("basic.get")
        {
            let headers = message.delivery.properties.headers().clone().unwrap_or_default();
            let attempts = match headers.inner().get("x-bazaar-attempt") {
                Some(AMQPValue::LongUInt(n)) => *n,
                _ => 1,
            };
            let error = match headers.inner().get("x-bazaar-error") {
                Some(AMQPValue::LongString(s)) => s.to_string(),
                _ => String::new(),
            };
            messages.push(DeadMessage {
                payload: String::from_utf8_lossy(&message.delivery.data).into(),
                attempts,
                error,
            });
        }
        // Closing the channel returns the unacknowledged messages to the queue.
        let _ = connection.close(200, "peeked".into()).await;
        messages
    }
}

impl TestBroker {
    /// The broker's ids of the connections whose name carries this test's prefix, sorted: the
    /// same ids later mean the same connections. `None` without `rabbitmqctl` (a laptop whose
    /// broker runs elsewhere), unless services are required.
    pub fn connections(&self) -> Option<Vec<String>> {
        let listed = match std::process::Command::new("rabbitmqctl")
            .args(["list_connections", "pid", "client_properties", "-q"])
            .output()
        {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
            failed if std::env::var("BAZAAR_REQUIRE_SERVICES").is_ok_and(|v| v == "1") => {
                panic!("rabbitmqctl is required (BAZAAR_REQUIRE_SERVICES=1): {failed:?}")
            }
            failed => {
                eprintln!("skipped: rabbitmqctl is unavailable: {failed:?}");
                return None;
            }
        };
        let mine = format!("\"bazaar {} (pid", self.prefix);
        let mut pids: Vec<String> = listed
            .lines()
            .filter(|l| l.contains(&mine))
            .filter_map(|l| l.split('\t').next())
            .map(str::to_owned)
            .collect();
        pids.sort();
        Some(pids)
    }

    /// Closes, from the broker's side (`rabbitmqctl close_connection`), every connection whose
    /// name carries this test's prefix; returns how many. `None` without `rabbitmqctl`.
    pub fn close_connections(&self) -> Option<usize> {
        let pids = self.connections()?;
        for pid in &pids {
            let closed = std::process::Command::new("rabbitmqctl")
                .args(["close_connection", pid, "closed by a test"])
                .status()
                .expect("rabbitmqctl runs");
            assert!(closed.success(), "rabbitmqctl close_connection {pid}");
        }
        Some(pids.len())
    }

    /// Puts `count` messages straight into `queue` (through the default exchange), confirmed.
    pub async fn fill(&self, queue: &str, count: usize) {
        use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
        let connection = self.connect().await;
        let channel = connection.create_channel().await.expect("a channel");
        channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
        for i in 0..count {
            let confirm = channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions { mandatory: true, ..Default::default() },
                    format!("dead letter {i}").as_bytes(),
                    lapin::BasicProperties::default(),
                )
                .await
                .expect("published");
            let confirmation = confirm.await.expect("confirmed");
            assert!(matches!(confirmation, lapin::Confirmation::Ack(None)), "{queue}: {confirmation:?}");
        }
        let _ = connection.close(200, "filled".into()).await;
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let topologies = std::mem::take(&mut *self.topologies.lock().unwrap_or_else(|e| e.into_inner()));
        if topologies.is_empty() {
            return;
        }
        let url = self.url.clone();
        // Drop cannot await, and the test's runtime may be going away: use a runtime of its own.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(async {
                let connection = Connection::connect(&url, ConnectionProperties::default()).await?;
                let channel = connection.create_channel().await?;
                for topology in &topologies {
                    for queue in topology.queues() {
                        channel.queue_delete(queue.into(), QueueDeleteOptions::default()).await?;
                    }
                    channel.exchange_delete(topology.exchange().into(), ExchangeDeleteOptions::default()).await?;
                }
                connection.close(200, "cleaned up".into()).await
            })
        })
        .join();
        if !matches!(deleted, Ok(Ok(()))) {
            eprintln!("could not delete a test topology: {deleted:?}");
        }
    }
}

/// A TCP proxy to the broker that a test can cut (every connection closed, new ones refused)
/// and restore, as a network failure or a broker restart would.
pub struct Proxy {
    pub port: u16,
    down: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn to(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let port = listener.local_addr().expect("an address").port();
        let down = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let upstream = upstream.to_owned();
        let (refuse, tasks) = (down.clone(), links.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if refuse.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().expect("not poisoned").push(link);
            }
        });
        Self { port, down, links, accept }
    }

    /// `url` (an amqp URL to the broker) with this proxy's port.
    pub fn url(&self, url: &str) -> String {
        let mut url = url::Url::parse(url).expect("an amqp URL");
        url.set_port(Some(self.port)).expect("a port");
        url.to_string()
    }

    /// Closes every proxied connection and refuses new ones.
    pub fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for link in self.links.lock().expect("not poisoned").drain(..) {
            link.abort();
        }
    }

    pub fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
