//! Webhooks as a subscriber's server sees them: a Python `http.server` on a free 127.0.0.1 port
//! that checks every request with the reference library of the Standard Webhooks spec,
//! [standardwebhooks](https://pypi.org/project/standardwebhooks/) 1.1.0 (PyPI, installed on first
//! use, [`PyPeer`]), and appends what it saw to a JSON-lines file. Its secrets, how many requests
//! it answers 500 and how long it takes to answer are set through `POST /_control`, a path the shop
//! never calls.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{As, Stack, TestApp, assert_problem, eventually};
use crate::orders::{customer, eur};
use crate::peers::PyPeer;

/// The status of a refused registration (a bad URL or event, a refused destination).
const REFUSED: u16 = 422;

const PEER: PyPeer = PyPeer { package: "standardwebhooks", version: "1.1.0", import: "standardwebhooks" };

/// Run by the venv's python in the receiver's folder: `launcher.py PORT`.
const LAUNCHER: &str = r#"
import json, os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from standardwebhooks.webhooks import Webhook

port = int(sys.argv[1])
lock = threading.Lock()
state = {"secrets": [], "fail_next": 0, "delay_ms": 0}

def verify(body, headers):
    """(valid, error, index of the secret that verified it)"""
    if not state["secrets"]:
        return False, "no secret configured", None
    errors = []
    for i, secret in enumerate(state["secrets"]):
        try:
            Webhook(secret).verify(body, headers)
            return True, None, i
        except Exception as e:
            errors.append("%s: %s" % (type(e).__name__, e))
    return False, "; ".join(errors), None

class Handler(BaseHTTPRequestHandler):
    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        arrived = time.time()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/_control":
            change = json.loads(body)
            with lock:
                for key in ("secrets", "fail_next", "delay_ms"):
                    if key in change:
                        state[key] = change[key]
                now = dict(state)
            return self.answer(200, json.dumps(now).encode())
        with lock:
            valid, error, secret_index = verify(body, dict(self.headers.items()))
            failing = valid and state["fail_next"] > 0
            if failing:
                state["fail_next"] -= 1
            delay = state["delay_ms"] / 1000
        status = 400 if not valid else 500 if failing else 200
        try:
            parsed = json.loads(body)
        except Exception:
            parsed = None
        with lock, open("arrived.jsonl", "a") as f:
            f.write(json.dumps({"id": self.headers.get("webhook-id"), "arrivedAt": arrived}) + "\n")
        # Slow before the answer: a sender killed meanwhile never learns it was received.
        if delay:
            time.sleep(delay)
        signature = self.headers.get("webhook-signature")
        record = {
            "id": self.headers.get("webhook-id"), "timestamp": self.headers.get("webhook-timestamp"),
            "signature": signature, "signatures": len((signature or "").split()),
            "valid": valid, "error": error, "secretIndex": secret_index, "path": self.path,
            "contentType": self.headers.get("content-type"), "raw": body.decode("utf-8", "replace"),
            "body": parsed, "status": status, "arrivedAt": arrived, "answeredAt": time.time(),
        }
        with lock, open("received.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        self.answer(status, b"{}")

    def log_message(self, format, *args):
        sys.stderr.write("%s\n" % (format % args))

server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
open("ready-%d" % os.getpid(), "w").close()
server.serve_forever()
"#;

/// One request as the receiver saw it, in the order it answered them.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hook {
    pub id: Option<String>,
    pub timestamp: Option<String>,
    pub signature: Option<String>,
    /// How many space-separated entries `webhook-signature` has.
    pub signatures: usize,
    /// Verified by the library with one of the receiver's secrets.
    pub valid: bool,
    pub error: Option<String>,
    /// Which of the receiver's secrets verified it.
    pub secret_index: Option<usize>,
    pub path: String,
    pub content_type: Option<String>,
    pub raw: String,
    pub body: Value,
    pub status: u16,
    pub arrived_at: f64,
    pub answered_at: f64,
}

impl Hook {
    pub fn event_type(&self) -> &str {
        self.body["type"].as_str().unwrap_or_default()
    }

    pub fn id(&self) -> &str {
        self.id.as_deref().unwrap_or_default()
    }
}

/// A running receiver; killed when dropped.
pub struct Receiver {
    port: u16,
    child: Mutex<Option<Child>>,
    client: reqwest::Client,
    dir: tempfile::TempDir,
}

impl Receiver {
    /// Installs standardwebhooks if needed and starts the receiver; `None` (the test skips) when it
    /// cannot be installed and services are optional.
    pub async fn start() -> Option<Self> {
        let python = PEER.installed().await?;
        let dir = tempfile::tempdir().expect("a folder");
        std::fs::write(dir.path().join("launcher.py"), LAUNCHER).expect("the launcher written");
        let port = crate::split::free_port();
        let mut child = crate::peers::launch(&python, dir.path(), "receiver.log", &[port.to_string()]);
        crate::peers::until_ready(&mut child, dir.path(), "receiver.log").await;
        let receiver = Self { port, child: Mutex::new(None), client: reqwest::Client::new(), dir };
        *receiver.child.lock().expect("not poisoned") = Some(child);
        Some(receiver)
    }

    /// The address of a webhook endpoint on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `POST /_control`: `secrets`, `fail_next` and `delay_ms`, each only if given.
    pub async fn control(&self, change: Value) {
        let response = self.client.post(self.url("/_control")).json(&change).send().await.expect("sent");
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }

    /// Verifies with these secrets from now on (any of them).
    pub async fn trust(&self, secrets: &[&str]) {
        self.control(json!({"secrets": secrets})).await;
    }

    /// Answers 500 to the next `n` requests that verify.
    pub async fn fail_next(&self, n: u64) {
        self.control(json!({"fail_next": n})).await;
    }

    /// Every request received so far, in the order they were answered.
    pub fn received(&self) -> Vec<Hook> {
        let lines = std::fs::read_to_string(self.dir.path().join("received.jsonl")).unwrap_or_default();
        // The last line may be half-written: only whole lines count.
        lines.lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
    }

    /// The webhook-ids of the requests that arrived so far, answered or not yet.
    pub fn arrived(&self) -> Vec<String> {
        let lines = std::fs::read_to_string(self.dir.path().join("arrived.jsonl")).unwrap_or_default();
        let arrivals = lines.lines().filter_map(|line| serde_json::from_str::<Value>(line).ok());
        arrivals.map(|a| a["id"].as_str().unwrap_or_default().to_owned()).collect()
    }

    /// The requests to `path`.
    pub fn received_on(&self, path: &str) -> Vec<Hook> {
        self.received().into_iter().filter(|h| h.path == path).collect()
    }

    /// What `check` makes of the requests received, once it is `Some` (within `seconds`); the
    /// failure shows what came.
    pub async fn until<T>(&self, seconds: u64, what: &str, check: impl Fn(&[Hook]) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Some(found) = check(&self.received()) {
                return found;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{what}: not within {seconds} s; received {:#?}", self.received());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The requests with webhook-id `id`, once at least `n` came.
    pub async fn with_id(&self, id: &str, n: usize, seconds: u64) -> Vec<Hook> {
        self.until(seconds, &format!("{n} request(s) with id {id}"), |hooks| {
            let found: Vec<Hook> = hooks.iter().filter(|h| h.id() == id).cloned().collect();
            (found.len() >= n).then_some(found)
        })
        .await
    }

    /// Sends `body` itself with the given headers, as a forger would; the receiver's status.
    pub async fn forge(&self, path: &str, body: &str, id: &str, timestamp: &str, signature: &str) -> u16 {
        let response = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp)
            .header("webhook-signature", signature)
            .body(body.to_owned())
            .send()
            .await
            .expect("sent");
        response.status().as_u16()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The app's settings for delivering to a receiver on this machine, with fast retries.
fn settings() -> Vec<(&'static str, String)> {
    vec![
        ("webhooks.allow_private_networks", "true".to_owned()),
        ("jobs.poll_interval_ms", "100".to_owned()),
        ("jobs.retry_first_delay_secs", "1".to_owned()),
        ("jobs.retry_max_delay_secs", "1".to_owned()),
    ]
}

/// An app of topology (a) with [`settings`] and `extra` on top.
async fn spawn_with(extra: &[(&'static str, &str)]) -> TestApp {
    let mut all = settings();
    all.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let overrides: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
    crate::helpers::spawn_app_with(&overrides).await
}

fn id(value: &Value) -> &str {
    value["id"].as_str().unwrap_or_else(|| panic!("an id in {value}"))
}

impl TestApp {
    /// `POST /webhooks` as an admin.
    pub async fn post_webhook(&self, body: &Value) -> reqwest::Response {
        self.request(Method::POST, "/webhooks", As::Admin).json(body).send().await.expect("sent")
    }

    /// Registers an endpoint at `url` for `events`; the new endpoint, its secret included.
    pub async fn add_webhook(&self, url: &str, events: &[&str]) -> Value {
        let response = self.post_webhook(&json!({"url": url, "events": events})).await;
        assert_eq!(response.status(), 201, "{url}: {:?}", response.text().await);
        let endpoint: Value = response.json().await.expect("JSON");
        assert!(endpoint["secret"].as_str().is_some_and(|s| s.starts_with("whsec_")), "{endpoint}");
        endpoint
    }

    /// `GET /webhooks/{id}` as an admin.
    pub async fn webhook(&self, endpoint: &Value) -> Value {
        let path = format!("/webhooks/{}", id(endpoint));
        let response = self.request(Method::GET, &path, As::Admin).send().await.expect("sent");
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.expect("JSON")
    }

    /// `GET /webhooks/{id}/deliveries[?status=]` as an admin: newest first.
    pub async fn webhook_deliveries(&self, endpoint: &Value, status: Option<&str>) -> Vec<Value> {
        let mut path = format!("/webhooks/{}/deliveries", id(endpoint));
        if let Some(status) = status {
            path.push_str(&format!("?status={status}"));
        }
        let response = self.request(Method::GET, &path, As::Admin).send().await.expect("sent");
        assert_eq!(response.status(), 200, "{path}");
        let page: Value = response.json().await.expect("JSON");
        page["items"].as_array().unwrap_or_else(|| panic!("a page of deliveries: {page}")).clone()
    }

    /// `POST /webhooks/{id}/test`: the id of the ping's delivery.
    pub async fn ping_webhook(&self, endpoint: &Value) -> String {
        let path = format!("/webhooks/{}/test", id(endpoint));
        let response = self.request(Method::POST, &path, As::Admin).send().await.expect("sent");
        assert_eq!(response.status(), 202, "{path}: {:?}", response.text().await);
        let accepted: Value = response.json().await.expect("JSON");
        let delivery = accepted["deliveryId"].as_str().unwrap_or_else(|| panic!("a deliveryId in {accepted}"));
        assert!(delivery.starts_with("msg_"), "{accepted}");
        delivery.to_owned()
    }

    /// The process's `/metrics` where webhooks are hosted.
    pub async fn webhook_metrics(&self) -> String {
        let url = format!("{}/metrics", self.base("/webhooks"));
        self.client.get(url).send().await.expect("sent").text().await.expect("text")
    }
}

/// The value of a `bazaar_webhook_deliveries_total` line with `outcome`, summed over its labels.
fn deliveries_counted(metrics: &str, outcome: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("bazaar_webhook_deliveries_total{") && l.contains(&format!("outcome=\"{outcome}\"")))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// The checks every delivery passes: verified, a `msg_` id, a fresh timestamp, JSON with
/// `type`, an RFC 3339 `timestamp` and `data`.
fn assert_well_formed(hook: &Hook) {
    assert!(hook.valid, "verified by standardwebhooks: {hook:#?}");
    assert!(hook.id().starts_with("msg_"), "{hook:#?}");
    assert!(hook.content_type.as_deref().is_some_and(|c| c.starts_with("application/json")), "{hook:#?}");
    let sent: i64 = hook.timestamp.as_deref().and_then(|t| t.parse().ok()).expect("a whole number of seconds");
    assert!((chrono::Utc::now().timestamp() - sent).abs() < 120, "{hook:#?}");
    let at = hook.body["timestamp"].as_str().unwrap_or_else(|| panic!("a timestamp in {hook:#?}"));
    chrono::DateTime::parse_from_rfc3339(at).unwrap_or_else(|e| panic!("{at}: {e}"));
    assert!(hook.body["data"].is_object(), "{hook:#?}");
}

/// Subscribed to an order's life, an endpoint receives each of its events once, verified, in
/// the order they happened; a second endpoint for `shipment.delivered` only receives just that,
/// signed with its own secret. The deliveries are listed `delivered`, as received.
pub async fn an_orders_life_by_webhook(app: &TestApp, receiver: &Receiver) {
    let subscribed =
        ["order.created", "order.confirmed", "payment.succeeded", "shipment.dispatched", "shipment.delivered"];
    let shop = app.add_webhook(&receiver.url("/shop"), &subscribed).await;
    let delivered_only = app.add_webhook(&receiver.url("/delivered"), &["shipment.delivered"]).await;
    let (secret, other) =
        (shop["secret"].as_str().expect("a secret"), delivered_only["secret"].as_str().expect("a secret"));
    assert_ne!(secret, other, "a secret per endpoint");
    receiver.trust(&[secret, other]).await;

    let user = Uuid::now_v7();
    let token = customer(&user);
    let product = app.stocked_product(&format!("HOOK-{}", Uuid::now_v7().simple()), 10, eur(1250)).await;
    let order = app.place_paid(&token, &product, 2, Some("pm_card_visa")).await;
    assert_eq!(app.decided(&token, &order).await["status"], "confirmed");
    let shipment = app.shipment_of(&token, &order).await;
    let dispatched = app.dispatch(&shipment, As::Admin).await;
    assert_eq!(dispatched.status(), 200);
    let dispatched: Value = dispatched.json().await.expect("JSON");
    app.order_until(&token, &order, "shipped").await;
    assert_eq!(app.deliver(&shipment, As::Admin).await.status(), 200);
    app.order_until(&token, &order, "delivered").await;

    receiver
        .until(60, "every event of the order", |hooks| {
            let shop = hooks.iter().filter(|h| h.path == "/shop").count();
            let other = hooks.iter().filter(|h| h.path == "/delivered").count();
            (shop >= subscribed.len() && other >= 1).then_some(())
        })
        .await;
    // Anything sent twice would come within the next polls.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let hooks = receiver.received_on("/shop");
    let types: Vec<&str> = hooks.iter().map(Hook::event_type).collect();
    assert_eq!(
        types,
        ["order.created", "payment.succeeded", "order.confirmed", "shipment.dispatched", "shipment.delivered"],
        "each event once, in the order it happened: {hooks:#?}"
    );
    for hook in &hooks {
        assert_well_formed(hook);
        assert_eq!((hook.status, hook.secret_index, hook.signatures), (200, Some(0), 1), "{hook:#?}");
        assert_eq!(hook.body["data"]["orderId"], order["id"], "{hook:#?}");
    }
    let ids: BTreeSet<&str> = hooks.iter().map(Hook::id).collect();
    assert_eq!(ids.len(), hooks.len(), "an id each: {hooks:#?}");
    let data = |event: &str| hooks.iter().find(|h| h.event_type() == event).expect("received").body["data"].clone();
    let created = data("order.created");
    assert_eq!(created["userId"], user.to_string(), "{created}");
    assert!(created["items"].as_array().is_some_and(|items| items.len() == 1), "{created}");
    let paid = data("payment.succeeded");
    assert!(paid["paymentId"].is_string() && !paid["amount"].is_null() && paid["paidAt"].is_string(), "{paid}");
    let confirmed = data("order.confirmed");
    assert_eq!(confirmed["userId"], user.to_string(), "{confirmed}");
    assert_eq!(confirmed["shippingAddress"]["city"], "London", "{confirmed}");
    assert!(
        confirmed["lines"].as_array().is_some_and(|l| l.len() == 1) && !confirmed["total"].is_null(),
        "{confirmed}"
    );
    let on_its_way = data("shipment.dispatched");
    assert_eq!(
        (&on_its_way["shipmentId"], &on_its_way["carrier"], &on_its_way["trackingNumber"]),
        (&shipment["id"], &dispatched["carrier"], &dispatched["trackingNumber"]),
        "{on_its_way}"
    );
    assert_eq!(data("shipment.delivered")["shipmentId"], shipment["id"]);

    let others = receiver.received_on("/delivered");
    assert_eq!(others.len(), 1, "only what it subscribed to: {others:#?}");
    assert_well_formed(&others[0]);
    assert_eq!((others[0].event_type(), others[0].secret_index), ("shipment.delivered", Some(1)), "its own secret");
    assert!(!ids.contains(others[0].id()), "a delivery per endpoint, each with its id");

    let listed = app.webhook_deliveries(&shop, None).await;
    let listed_types: Vec<&str> = listed.iter().map(|d| d["eventType"].as_str().unwrap_or_default()).collect();
    let newest_first: Vec<&str> = types.iter().rev().copied().collect();
    assert_eq!(listed_types, newest_first, "newest first: {listed:#?}");
    for delivery in &listed {
        let hook = hooks.iter().find(|h| h.id() == id(delivery)).unwrap_or_else(|| panic!("received: {delivery}"));
        assert_eq!(delivery["eventType"], hook.event_type());
        assert_eq!(
            (delivery["status"].as_str(), delivery["attempts"].as_u64(), delivery["responseStatus"].as_u64()),
            (Some("delivered"), Some(1), Some(200)),
            "{delivery}"
        );
        assert!(delivery["latencyMs"].is_u64() && delivery["lastError"].is_null(), "{delivery}");
        assert!(delivery["createdAt"].is_string() && delivery["deliveredAt"].is_string(), "{delivery}");
    }
    assert_eq!(app.webhook_deliveries(&shop, Some("delivered")).await.len(), listed.len());
    assert!(app.webhook_deliveries(&shop, Some("pending")).await.is_empty());
    let metrics = app.webhook_metrics().await;
    assert!(deliveries_counted(&metrics, "delivered") >= 6.0, "deliveries counted: {metrics}");
}

mod in_every_topology {
    use super::*;

    #[tokio::test]
    async fn a_one_process_sqlite_in_process() {
        let Some(receiver) = Receiver::start().await else { return };
        an_orders_life_by_webhook(&spawn_with(&[]).await, &receiver).await;
    }

    #[tokio::test]
    async fn b_one_process_postgres_rabbitmq() {
        let Some(receiver) = Receiver::start().await else { return };
        let Some(stack) = Stack::new(crate::engines::Engine::Postgres, true).await else { return };
        let settings = settings();
        let overrides: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        an_orders_life_by_webhook(&stack.spawn(&overrides).await, &receiver).await;
    }

    #[tokio::test]
    async fn c_split_processes_mariadb_postgres_rabbitmq() {
        let Some(receiver) = Receiver::start().await else { return };
        let env = crate::helpers::as_env(&settings());
        let extra: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let Some((shop, _processes)) = crate::split::Split::start_with(&extra).await else { return };
        an_orders_life_by_webhook(&shop, &receiver).await;
    }
}

/// The receiver answers 500 three times: the event is retried with the same webhook-id until it
/// is taken, and the order's next event waits for it.
#[tokio::test]
async fn a_refused_delivery_is_retried_with_the_same_id_and_holds_back_the_orders_next_event() {
    let Some(receiver) = Receiver::start().await else { return };
    let app = spawn_with(&[]).await;
    let endpoint = app.add_webhook(&receiver.url("/retry"), &["order.created", "order.confirmed"]).await;
    receiver.trust(&[endpoint["secret"].as_str().expect("a secret")]).await;
    receiver.fail_next(3).await;

    let token = customer(&Uuid::now_v7());
    let product = app.stocked_product(&format!("RETRY-{}", Uuid::now_v7().simple()), 10, eur(500)).await;
    let order = app.place_paid(&token, &product, 1, Some("pm_card_visa")).await;
    // Between attempts, the delivery waits, its failure recorded.
    let waiting = eventually(20, || async {
        let pending = app.webhook_deliveries(&endpoint, Some("pending")).await;
        pending.into_iter().find(|d| d["attempts"].as_u64() >= Some(1) && d["responseStatus"] == 500)
    })
    .await;
    assert_eq!(waiting["eventType"], "order.created", "{waiting}");
    assert!(waiting["lastError"].as_str().is_some_and(|e| !e.is_empty()), "{waiting}");
    assert!(waiting["deliveredAt"].is_null(), "{waiting}");

    assert_eq!(app.decided(&token, &order).await["status"], "confirmed");
    receiver
        .until(30, "the retried event and the next one", |hooks| {
            hooks.iter().any(|h| h.event_type() == "order.confirmed" && h.status == 200).then_some(())
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let hooks = receiver.received();
    let seen: Vec<(&str, u16)> = hooks.iter().map(|h| (h.event_type(), h.status)).collect();
    assert_eq!(
        seen,
        [
            ("order.created", 500),
            ("order.created", 500),
            ("order.created", 500),
            ("order.created", 200),
            ("order.confirmed", 200)
        ],
        "retried until taken, the next event after it: {hooks:#?}"
    );
    hooks.iter().for_each(assert_well_formed);
    let created: BTreeSet<&str> = hooks[..4].iter().map(Hook::id).collect();
    assert_eq!(created.len(), 1, "one webhook-id for every attempt: {hooks:#?}");
    assert!(hooks.iter().all(|h| h.body["data"]["orderId"] == order["id"]));

    let listed = app.webhook_deliveries(&endpoint, None).await;
    let first = listed.iter().find(|d| d["eventType"] == "order.created").expect("listed");
    assert_eq!(id(first), hooks[0].id());
    assert_eq!(
        (first["status"].as_str(), first["attempts"].as_u64(), first["responseStatus"].as_u64()),
        (Some("delivered"), Some(4), Some(200)),
        "{first}"
    );
    let next = listed.iter().find(|d| d["eventType"] == "order.confirmed").expect("listed");
    assert_eq!((next["status"].as_str(), next["attempts"].as_u64()), (Some("delivered"), Some(1)), "{next}");
    assert!(app.webhook_deliveries(&endpoint, Some("failed")).await.is_empty());
    let metrics = app.webhook_metrics().await;
    assert!(deliveries_counted(&metrics, "failed_attempt") >= 3.0, "failed attempts counted: {metrics}");
}

/// The receiver's verifier is no rubber stamp: a genuine delivery replayed as it came verifies,
/// the same with its body changed or its signature made with another secret does not.
#[tokio::test]
async fn a_tampered_body_or_a_forged_signature_fails_the_receivers_verification() {
    let Some(receiver) = Receiver::start().await else { return };
    let app = spawn_with(&[]).await;
    let endpoint = app.add_webhook(&receiver.url("/genuine"), &["order.created"]).await;
    receiver.trust(&[endpoint["secret"].as_str().expect("a secret")]).await;
    let ping = app.ping_webhook(&endpoint).await;
    let genuine = receiver.with_id(&ping, 1, 20).await.remove(0);
    assert_well_formed(&genuine);
    let (timestamp, signature) =
        (genuine.timestamp.clone().expect("a timestamp"), genuine.signature.clone().expect("a signature"));

    assert_eq!(receiver.forge("/replayed", &genuine.raw, &ping, &timestamp, &signature).await, 200);
    let tampered = genuine.raw.replace(id(&endpoint), &Uuid::now_v7().to_string());
    assert_ne!(tampered, genuine.raw, "the ping names its endpoint: {}", genuine.raw);
    assert_eq!(receiver.forge("/tampered", &tampered, &ping, &timestamp, &signature).await, 400);
    let other_id = format!("msg_{}", Uuid::now_v7().simple());
    assert_eq!(receiver.forge("/other-id", &genuine.raw, &other_id, &timestamp, &signature).await, 400);
    let zeros = base64::engine::general_purpose::STANDARD.encode([0u8; 32]);
    let forged = format!("v1,{zeros}");
    assert_eq!(receiver.forge("/forged", &genuine.raw, &ping, &timestamp, &forged).await, 400);

    let verdicts: BTreeMap<String, bool> = receiver.received().into_iter().map(|h| (h.path, h.valid)).collect();
    let expected: BTreeMap<String, bool> =
        [("/genuine", true), ("/replayed", true), ("/tampered", false), ("/other-id", false), ("/forged", false)]
            .into_iter()
            .map(|(path, valid)| (path.to_owned(), valid))
            .collect();
    assert_eq!(verdicts, expected);
    let forged = receiver.received_on("/forged").remove(0);
    assert!(forged.error.as_deref().is_some_and(|e| e.contains("No matching signature")), "{forged:#?}");
}

/// Asserts a 400 problem for registering `url`; one accepted by mistake is deleted at once, so
/// that nothing is ever sent there.
async fn assert_refused(app: &TestApp, body: Value) -> Value {
    let response = app.post_webhook(&body).await;
    if response.status() == 201 {
        let created: Value = response.json().await.expect("JSON");
        let path = format!("/webhooks/{}", id(&created));
        app.request(Method::DELETE, &path, As::Admin).send().await.expect("sent");
        panic!("accepted, and deleted: {body} → {created}");
    }
    assert_problem(response, REFUSED).await
}

/// By default, an endpoint on this host or a private network is refused: the shop must not be
/// made to call its own neighbours.
#[tokio::test]
async fn endpoints_on_this_host_or_a_private_network_are_refused_by_default() {
    let app = crate::helpers::spawn_app().await;
    for url in [
        "http://127.0.0.1:1/x",
        "http://10.0.0.1/",
        "http://192.168.1.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/",
        "http://localhost/",
    ] {
        assert_refused(&app, json!({"url": url, "events": ["order.confirmed"]})).await;
    }
    let listed: Value =
        app.request(Method::GET, "/webhooks", As::Admin).send().await.expect("sent").json().await.expect("JSON");
    assert_eq!(listed["items"], json!([]), "nothing registered: {listed}");
}

/// The usual disguises of this host and its neighbours are refused too: the rest of the private
/// ranges, the unspecified address, IPv4 mapped into IPv6.
#[tokio::test]
async fn private_addresses_in_disguise_are_refused_too() {
    let app = crate::helpers::spawn_app().await;
    for url in ["http://172.16.0.1/", "http://0.0.0.0:8080/", "http://[::ffff:127.0.0.1]/", "http://[fe80::1]/"] {
        assert_refused(&app, json!({"url": url, "events": ["order.confirmed"]})).await;
    }
}

/// An admin registers an endpoint, reads it (its secret is shown once), changes and deletes it.
#[tokio::test]
async fn an_admin_registers_reads_changes_and_deletes_an_endpoint() {
    // Never called: no event happens in this shop.
    let app = spawn_with(&[]).await;
    let url = "http://127.0.0.1:9/hooks";
    let body = json!({"url": url, "events": ["order.confirmed", "shipment.delivered"], "description": "ERP"});
    let response = app.post_webhook(&body).await;
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    let location = response.headers().get("location").and_then(|l| l.to_str().ok()).map(str::to_owned);
    let created: Value = response.json().await.expect("JSON");
    assert_eq!(location, Some(format!("/webhooks/{}", id(&created))));
    assert_eq!(
        (&created["url"], &created["events"], &created["description"], &created["status"]),
        (&json!(url), &body["events"], &json!("ERP"), &json!("enabled")),
        "{created}"
    );
    assert_eq!(created["consecutiveFailures"], 0, "{created}");
    assert!(created["disabledAt"].is_null() && created["disabledReason"].is_null(), "{created}");
    assert!(created["createdAt"].is_string() && created["updatedAt"].is_string(), "{created}");
    let secret = created["secret"].as_str().and_then(|s| s.strip_prefix("whsec_")).expect("whsec_…");
    let key = base64::engine::general_purpose::STANDARD.decode(secret).expect("base64");
    assert!((24..=64).contains(&key.len()), "24 to 64 random bytes, as the spec advises: {}", key.len());

    for (why, body) in [
        ("an unknown event", json!({"url": url, "events": ["order.shipped"]})),
        ("no event", json!({"url": url, "events": []})),
        ("another scheme", json!({"url": "ftp://127.0.0.1:9/hooks", "events": ["order.confirmed"]})),
        ("no URL", json!({"url": "not a url", "events": ["order.confirmed"]})),
    ] {
        let problem = assert_refused(&app, body).await;
        assert!(problem["detail"].is_string() || problem["errors"].is_array(), "{why}: {problem}");
    }
    let read = app.webhook(&created).await;
    assert!(read["secret"].is_null(), "shown once: {read}");
    assert_eq!((&read["url"], &read["events"]), (&created["url"], &created["events"]));
    let listed: Value =
        app.request(Method::GET, "/webhooks", As::Admin).send().await.expect("sent").json().await.expect("JSON");
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{listed}");
    assert_eq!(items[0]["id"], created["id"]);
    assert!(items[0]["secret"].is_null(), "{listed}");

    let path = format!("/webhooks/{}", id(&created));
    let change = json!({"url": "http://127.0.0.1:9/other", "events": ["order.cancelled"], "description": "ERP 2"});
    let changed = app.request(Method::PUT, &path, As::Admin).json(&change).send().await.expect("sent");
    assert_eq!(changed.status(), 200, "{:?}", changed.text().await);
    let changed: Value = changed.json().await.expect("JSON");
    assert_eq!(
        (&changed["url"], &changed["events"], &changed["description"]),
        (&change["url"], &change["events"], &change["description"]),
        "{changed}"
    );
    assert!(changed["secret"].is_null(), "{changed}");
    let bad = json!({"url": "http://127.0.0.1:9/other", "events": ["order.teleported"]});
    assert_problem(app.request(Method::PUT, &path, As::Admin).json(&bad).send().await.expect("sent"), REFUSED).await;
    assert_eq!(app.webhook(&created).await["events"], change["events"], "a refused change changes nothing");

    assert_eq!(app.request(Method::DELETE, &path, As::Admin).send().await.expect("sent").status(), 204);
    assert_problem(app.request(Method::GET, &path, As::Admin).send().await.expect("sent"), 404).await;
    let unknown = format!("/webhooks/{}", Uuid::now_v7());
    assert_problem(app.request(Method::GET, &unknown, As::Admin).send().await.expect("sent"), 404).await;
    let rotate = format!("{unknown}/rotate-secret");
    assert_problem(app.request(Method::POST, &rotate, As::Admin).send().await.expect("sent"), 404).await;
}

/// `webhooks.disable_after_failures = 3`: an endpoint that keeps failing is disabled after three
/// failed attempts and receives nothing more; an admin's `enabled: true` brings it back.
#[tokio::test]
async fn an_endpoint_failing_again_and_again_is_disabled_until_an_admin_enables_it() {
    let Some(receiver) = Receiver::start().await else { return };
    let admin = "Shop Ops <ops@bazaar.test>";
    let app = spawn_with(&[("webhooks.disable_after_failures", "3"), ("notifications.admin_email", admin)]).await;
    let url = receiver.url("/down");
    let endpoint = app.add_webhook(&url, &["order.created"]).await;
    receiver.trust(&[endpoint["secret"].as_str().expect("a secret")]).await;
    receiver.fail_next(1_000_000).await;

    app.ping_webhook(&endpoint).await;
    let disabled = eventually(30, || async {
        let now = app.webhook(&endpoint).await;
        (now["status"] == "disabled").then_some(now)
    })
    .await;
    assert!(disabled["disabledReason"].as_str().is_some_and(|r| !r.is_empty()), "{disabled}");
    assert!(disabled["disabledAt"].is_string(), "{disabled}");
    assert!(disabled["consecutiveFailures"].as_u64() >= Some(3), "{disabled}");
    // The admin is told, by the notifications module (WebhookEndpointDisabled), at admin_email.
    let told = eventually(20, || async {
        let listed = app.get_json("/admin/notifications", As::Admin).await;
        let items = listed["items"].as_array().cloned().unwrap_or_default();
        items.into_iter().find(|m| m["kind"] == "webhook_disabled")
    })
    .await;
    assert_eq!(told["to"], "ops@bazaar.test", "{told}");
    assert!(told["subject"].as_str().is_some_and(|s| s.contains(&url)), "{told}");
    // Past a few retry delays: a disabled endpoint is called no more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tried = receiver.received();
    assert_eq!(tried.len(), 3, "three attempts, then no more: {tried:#?}");
    assert!(tried.iter().all(|h| h.valid && h.status == 500), "{tried:#?}");

    let token = customer(&Uuid::now_v7());
    let product = app.stocked_product(&format!("DOWN-{}", Uuid::now_v7().simple()), 10, eur(500)).await;
    let order = app.place_paid(&token, &product, 1, Some("pm_card_visa")).await;
    app.decided(&token, &order).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.received().len(), 3, "an event after it was disabled is not sent to it");

    receiver.fail_next(0).await;
    let path = format!("/webhooks/{}", id(&endpoint));
    let enable = json!({"url": url, "events": ["order.created"], "enabled": true});
    let enabled = app.request(Method::PUT, &path, As::Admin).json(&enable).send().await.expect("sent");
    assert_eq!(enabled.status(), 200, "{:?}", enabled.text().await);
    let enabled: Value = enabled.json().await.expect("JSON");
    assert_eq!((enabled["status"].as_str(), enabled["consecutiveFailures"].as_u64()), (Some("enabled"), Some(0)));
    assert!(enabled["disabledAt"].is_null() && enabled["disabledReason"].is_null(), "{enabled}");
    let ping = app.ping_webhook(&endpoint).await;
    let arrived = receiver.with_id(&ping, 1, 20).await;
    assert_well_formed(&arrived[0]);
    assert_eq!((arrived[0].status, arrived[0].event_type()), (200, "webhook.ping"));
    assert_eq!(arrived[0].body["data"]["endpointId"], endpoint["id"]);
}

/// An admin's redelivery sends the same message again, under the same webhook-id.
#[tokio::test]
async fn a_redelivery_sends_the_same_webhook_id_again() {
    let Some(receiver) = Receiver::start().await else { return };
    let app = spawn_with(&[]).await;
    let endpoint = app.add_webhook(&receiver.url("/again"), &["order.created"]).await;
    receiver.trust(&[endpoint["secret"].as_str().expect("a secret")]).await;
    let ping = app.ping_webhook(&endpoint).await;
    let first = receiver.with_id(&ping, 1, 20).await.remove(0);
    assert_well_formed(&first);
    assert_eq!((first.event_type(), &first.body["data"]["endpointId"]), ("webhook.ping", &endpoint["id"]));
    let delivered = eventually(10, || async {
        let listed = app.webhook_deliveries(&endpoint, None).await;
        listed.into_iter().find(|d| d["id"] == ping.as_str() && d["status"] == "delivered")
    })
    .await;
    assert_eq!(delivered["eventType"], "webhook.ping");

    let path = format!("/webhooks/{}/deliveries/{ping}/redeliver", id(&endpoint));
    assert_eq!(app.request(Method::POST, &path, As::Admin).send().await.expect("sent").status(), 202);
    let both = receiver.with_id(&ping, 2, 20).await;
    assert_well_formed(&both[1]);
    assert_eq!(
        (both[1].status, &both[1].body["type"], &both[1].body["data"]),
        (200, &first.body["type"], &first.body["data"])
    );
    let listed = app.webhook_deliveries(&endpoint, None).await;
    assert_eq!(listed.len(), 1, "the same delivery, not a new one: {listed:#?}");
    let unknown = format!("/webhooks/{}/deliveries/msg_{}/redeliver", id(&endpoint), Uuid::now_v7().simple());
    assert_problem(app.request(Method::POST, &unknown, As::Admin).send().await.expect("sent"), 404).await;
    assert_problem(app.request(Method::POST, &path, As::Customer).send().await.expect("sent"), 403).await;
}

/// After a rotation, deliveries carry two signatures: a receiver that knows only the old secret,
/// or only the new one, verifies them.
#[tokio::test]
async fn after_a_secret_rotation_either_secret_verifies() {
    let Some(receiver) = Receiver::start().await else { return };
    let app = spawn_with(&[]).await;
    let endpoint = app.add_webhook(&receiver.url("/rotated"), &["order.created"]).await;
    let old = endpoint["secret"].as_str().expect("a secret").to_owned();
    receiver.trust(&[old.as_str()]).await;
    let before = app.ping_webhook(&endpoint).await;
    let before = receiver.with_id(&before, 1, 20).await.remove(0);
    assert_eq!((before.valid, before.signatures), (true, 1), "{before:#?}");

    let path = format!("/webhooks/{}/rotate-secret", id(&endpoint));
    let rotated = app.request(Method::POST, &path, As::Admin).send().await.expect("sent");
    assert_eq!(rotated.status(), 200, "{:?}", rotated.text().await);
    let rotated: Value = rotated.json().await.expect("JSON");
    let new = rotated["secret"].as_str().expect("a secret").to_owned();
    assert!(new.starts_with("whsec_") && new != old, "{rotated}");

    let with_old = app.ping_webhook(&endpoint).await;
    let with_old = receiver.with_id(&with_old, 1, 20).await.remove(0);
    assert_well_formed(&with_old);
    assert_eq!(with_old.signatures, 2, "the new and the old: {with_old:#?}");

    receiver.trust(&[new.as_str()]).await;
    let with_new = app.ping_webhook(&endpoint).await;
    let with_new = receiver.with_id(&with_new, 1, 20).await.remove(0);
    assert_well_formed(&with_new);
    assert_eq!(with_new.signatures, 2, "{with_new:#?}");

    // Neither secret: the check still bites.
    receiver.trust(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]).await;
    let with_neither = app.ping_webhook(&endpoint).await;
    let with_neither = receiver.with_id(&with_neither, 1, 20).await.remove(0);
    assert!(!with_neither.valid, "{with_neither:#?}");
    assert_problem(app.request(Method::POST, &path, As::Customer).send().await.expect("sent"), 403).await;
}

/// `kill -9` of the process while pings are being delivered, then a restart on the same data:
/// every delivery arrives, verified, under the id listed for it; only one under way at the kill
/// may come twice, with the same id.
#[tokio::test]
async fn a_kill_mid_delivery_loses_no_delivery_and_repeats_only_those_under_way() {
    let Some(receiver) = Receiver::start().await else { return };
    let mut settings = settings();
    settings.extend([
        ("jobs.concurrency", "2".to_owned()),
        // The killed process's claims are taken up again when their lease ends: 4 s and a quarter.
        ("jobs.timeout_secs", "4".to_owned()),
        ("webhooks.timeout_secs", "2".to_owned()),
    ]);
    let env = crate::helpers::as_env(&settings);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let process = crate::process::ServeProcess::start(&env).await;
    let crate::process::ServeProcess { mut child, address, logs, dir } = process;
    let seen = Arc::new(Mutex::new(Vec::new()));
    drain(logs, seen.clone());
    let app = external(address, &dir).await;
    let endpoint = app.add_webhook(&receiver.url("/slow"), &["order.created"]).await;
    receiver.trust(&[endpoint["secret"].as_str().expect("a secret")]).await;
    receiver.control(json!({"delay_ms": 1000})).await;

    let mut pings = BTreeSet::new();
    for _ in 0..8 {
        pings.insert(app.ping_webhook(&endpoint).await);
    }
    assert_eq!(pings.len(), 8, "an id each");
    // The first two answered, the next two arrived and waiting for their answers.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while receiver.arrived().len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "no third ping within 30 s: {:#?}", receiver.received());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed_at = unix_now();
    child.start_kill().expect("killed");
    child.wait().await.expect("reaped");
    let before = receiver.received().len();
    assert!(before < pings.len(), "killed mid-batch: {before} received");
    drop(app);

    let restarted = crate::process::ServeProcess::start_in(dir.clone(), &env).await;
    let crate::process::ServeProcess { child: _restarted, address, logs, .. } = restarted;
    drain(logs, seen.clone());
    let app = external(address, &dir).await;
    let listed = eventually(60, || async {
        let listed = app.webhook_deliveries(&endpoint, None).await;
        (listed.len() == pings.len() && listed.iter().all(|d| d["status"] == "delivered")).then_some(listed)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let listed_ids: BTreeSet<String> = listed.iter().map(|d| id(d).to_owned()).collect();
    assert_eq!(listed_ids, pings, "the deliveries are the pings");
    let hooks = receiver.received();
    let mut per_id: BTreeMap<&str, Vec<&Hook>> = BTreeMap::new();
    for hook in &hooks {
        assert_well_formed(hook);
        per_id.entry(hook.id()).or_default().push(hook);
    }
    let received_ids: BTreeSet<String> = per_id.keys().map(|id| id.to_string()).collect();
    assert_eq!(received_ids, pings, "every delivery under its own id, no other id: {hooks:#?}");
    // Under way at the kill: arrived before it and answered after it, so never recorded as
    // delivered. Each comes again (a receiver must expect that), under its id; any other may only
    // if its answer came shortly before the kill, before its record committed (which waits for
    // SQLite's write lock: seconds on a loaded machine); at most one per job run at once (2).
    let under_way: BTreeSet<&str> = per_id
        .iter()
        .filter(|(_, came)| came[0].arrived_at <= killed_at && came[0].answered_at > killed_at)
        .map(|(id, _)| *id)
        .collect();
    assert!(!under_way.is_empty(), "killed while a delivery was under way: {hooks:#?}");
    let repeated: BTreeSet<&str> = per_id.iter().filter(|(_, came)| came.len() > 1).map(|(id, _)| *id).collect();
    assert!(under_way.is_subset(&repeated), "each under way came again: {under_way:?} {repeated:?}");
    assert!(repeated.len() <= 2, "at most the 2 under way came twice: {per_id:#?}");
    for id in &repeated {
        let came = &per_id[id];
        assert_eq!(came.len(), 2, "{id} came {} times: {came:#?}", came.len());
        assert!(came[0].arrived_at <= killed_at && came[0].answered_at >= killed_at - 10.0, "{id}: {came:#?}");
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs_f64()
}

/// Reads a process's log lines as they come (a pipe nobody reads would block it), keeping them.
fn drain(mut logs: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>, seen: Arc<Mutex<Vec<String>>>) {
    tokio::spawn(async move {
        while let Ok(Some(line)) = logs.next_line().await {
            seen.lock().expect("not poisoned").push(line);
        }
    });
}

/// A [`TestApp`] on a process started by the test, its SQLite files in `dir`.
async fn external(address: String, dir: &tempfile::TempDir) -> TestApp {
    let database = crate::engines::TestDatabase::create(crate::engines::Engine::Sqlite, dir.path()).await;
    TestApp::external(
        address,
        Vec::new(),
        Default::default(),
        database.expect("SQLite"),
        tempfile::tempdir().expect("a folder"),
        Box::new(()),
    )
}

/// The routes are an admin's: anonymous 401, a customer 403.
#[tokio::test]
async fn only_an_admin_may_use_the_webhook_routes() {
    let app = spawn_with(&[]).await;
    let endpoint = app.add_webhook("http://127.0.0.1:9/never", &["order.created"]).await;
    let one = format!("/webhooks/{}", id(&endpoint));
    let routes = [
        (Method::GET, "/webhooks".to_owned()),
        (Method::POST, "/webhooks".to_owned()),
        (Method::GET, one.clone()),
        (Method::PUT, one.clone()),
        (Method::DELETE, one.clone()),
        (Method::POST, format!("{one}/rotate-secret")),
        (Method::GET, format!("{one}/deliveries")),
        (Method::POST, format!("{one}/test")),
    ];
    let body = json!({"url": "http://127.0.0.1:9/never", "events": ["order.created"]});
    for (method, path) in routes {
        let anonymous = app.request(method.clone(), &path, As::Anonymous).json(&body).send().await.expect("sent");
        assert_eq!(anonymous.status(), 401, "{method} {path}");
        assert_problem(anonymous, 401).await;
        let customer = app.request(method.clone(), &path, As::Customer).json(&body).send().await.expect("sent");
        assert_eq!(customer.status(), 403, "{method} {path}");
        assert_problem(customer, 403).await;
    }
    assert_eq!(app.webhook(&endpoint).await["url"], "http://127.0.0.1:9/never", "nothing changed");
}
