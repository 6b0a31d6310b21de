//! A real Stripe-compatible server per test: [localstripe](https://github.com/adrienverge/localstripe)
//! 1.15.10 (PyPI), installed on first use ([`PyPeer`]) and started from a small Python launcher
//! on a free 127.0.0.1 port, its state in memory only (its own launcher binds every interface and
//! pickles to one shared file).
//!
//! What localstripe does and does not do is in `../shared/STACK-NOTES.md`: only the card
//! 4000000000000341 family declines (402), 4000002500003155 asks for 3-D Secure, finished with
//! `_authenticate`; webhooks (`payment_intent.succeeded` / `.payment_failed` only) come ~1 s
//! after, once, signed `t=…,v1=hex`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use serde_json::Value;

use crate::peers::PyPeer;

pub const VERSION: &str = "1.15.10";
/// localstripe takes any `sk_…` key.
pub const API_KEY: &str = "sk_test_bazaar";

/// Run by the venv's python in the server's own folder: binds 127.0.0.1:0, publishes the port
/// through the file `port` (written then renamed: never read half-written), and never touches disk.
const LAUNCHER: &str = r#"
import logging, os, socket
from aiohttp import web
from localstripe import resources
from localstripe.server import app

resources.Store.dump_to_disk = lambda self: None
logging.basicConfig(level=logging.INFO)
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.bind(("127.0.0.1", 0))
with open("port.tmp", "w") as f:
    f.write(str(sock.getsockname()[1]))
os.rename("port.tmp", "port")
web.run_app(app, sock=sock, print=None, access_log=logging.getLogger("aiohttp.access"))
"#;

/// A running localstripe; killed when dropped.
pub struct LocalStripe {
    base_url: String,
    python: PathBuf,
    client: reqwest::Client,
    child: Child,
    dir: tempfile::TempDir,
}

const PEER: PyPeer = PyPeer { package: "localstripe", version: VERSION, import: "localstripe.server" };

impl LocalStripe {
    /// Installs localstripe if needed, starts it and waits until it answers; `None` (the test
    /// skips) when it cannot be installed and services are optional.
    pub async fn start() -> Option<Self> {
        let python = PEER.installed().await?;
        let dir = tempfile::tempdir().expect("a folder");
        std::fs::write(dir.path().join("launcher.py"), LAUNCHER).expect("the launcher written");
        let child = crate::peers::launch(&python, dir.path(), "localstripe.log", &[]);
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("a client");
        let mut server = Self { base_url: String::new(), python, client, child, dir };
        server.wait_until_ready().await;
        Some(server)
    }

    async fn wait_until_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("a status") {
                panic!("localstripe exited ({status}):\n{}", self.log());
            }
            assert!(tokio::time::Instant::now() < deadline, "localstripe not ready after 30 s:\n{}", self.log());
            if self.base_url.is_empty()
                && let Ok(port) = std::fs::read_to_string(self.dir.path().join("port"))
            {
                self.base_url = format!("http://127.0.0.1:{}", port.trim());
            }
            if !self.base_url.is_empty() {
                let probe = self.request(Method::GET, "/v1/customers").send().await;
                if probe.is_ok_and(|r| r.status() == 200) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// What the server logged (its access log among it).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("localstripe.log")).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT`: the app's `payments.stripe.api_base`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// A request to `path` with the API key.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base_url)).bearer_auth(API_KEY)
    }

    /// `form` to `path`, the answer as `(status, JSON)`.
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let response = self.request(Method::POST, path).form(form).send().await.expect("sent");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON"))
    }

    pub async fn get(&self, path: &str) -> Value {
        let response = self.request(Method::GET, path).send().await.expect("sent");
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.expect("JSON")
    }

    /// Every event is sent to `url`, signed with `secret` (one webhook per `id`).
    pub async fn configure_webhook(&self, id: &str, url: &str, secret: &str) {
        let response = self
            .client
            .post(format!("{}/_config/webhooks/{id}", self.base_url))
            .form(&[("url", url), ("secret", secret)])
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 200, "webhook {id} configured");
    }

    /// A card payment method with `number` (e.g. 4000000000000341, which declines): its id.
    pub async fn card(&self, number: &str) -> String {
        let (status, method) = self
            .post(
                "/v1/payment_methods",
                &[
                    ("type", "card"),
                    ("card[number]", number),
                    ("card[exp_month]", "12"),
                    ("card[exp_year]", "2034"),
                    ("card[cvc]", "123"),
                ],
            )
            .await;
        assert_eq!(status, 200, "{method}");
        method["id"].as_str().expect("an id").to_owned()
    }

    pub async fn payment_intent(&self, id: &str) -> Value {
        self.get(&format!("/v1/payment_intents/{id}")).await
    }

    /// Every payment intent.
    pub async fn payment_intents(&self) -> Vec<Value> {
        let list = self.get("/v1/payment_intents?limit=100").await;
        list["data"].as_array().expect("a list").clone()
    }

    /// The payment intents whose metadata or description mention `needle` (e.g. an order id), or
    /// every one when `needle` is empty.
    pub async fn payment_intents_mentioning(&self, needle: &str) -> Vec<Value> {
        let all = self.payment_intents().await;
        all.into_iter().filter(|intent| intent.to_string().contains(needle)).collect()
    }

    /// Completes (or fails) the 3-D Secure step of a `requires_action` intent, as the customer's
    /// browser would.
    pub async fn authenticate(&self, intent: &str, client_secret: &str, success: bool) -> Value {
        let success = if success { "true" } else { "false" };
        let path = format!("/v1/payment_intents/{intent}/_authenticate");
        let (status, answer) = self.post(&path, &[("client_secret", client_secret), ("success", success)]).await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    /// The `v1` signature of `payload` at `timestamp`, as Stripe computes it (HMAC-SHA256 of
    /// `timestamp.payload`, hex), by Python's own `hmac`: the reference the app's must agree with.
    pub fn sign(&self, secret: &str, timestamp: i64, payload: &[u8]) -> String {
        use std::io::Write;
        let script = "import hashlib, hmac, sys\nprint(hmac.new(sys.argv[1].encode(), sys.stdin.buffer.read(), hashlib.sha256).hexdigest())";
        let mut child = Command::new(&self.python)
            .args(["-c", script, secret])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python starts");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(format!("{timestamp}.").as_bytes()).expect("written");
        stdin.write_all(payload).expect("written");
        drop(stdin);
        let output = child.wait_with_output().expect("signed");
        assert!(output.status.success());
        String::from_utf8(output.stdout).expect("hex").trim().to_owned()
    }

    /// The `Stripe-Signature` header of `payload` signed with `secret` now.
    pub fn signature_header(&self, secret: &str, payload: &[u8]) -> String {
        let now = chrono::Utc::now().timestamp();
        format!("t={now},v1={}", self.sign(secret, now, payload))
    }
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One webhook as it arrived.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Delivery {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_owned()
    }

    pub fn signature(&self) -> &str {
        self.headers.get("stripe-signature").map(String::as_str).unwrap_or_default()
    }
}

/// A tiny HTTP listener on 127.0.0.1 that answers 200 to every POST and keeps what it got.
pub struct WebhookRecorder {
    pub url: String,
    received: Arc<Mutex<Vec<Delivery>>>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookRecorder {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let url = format!("http://{}/webhooks", listener.local_addr().expect("an address"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    if let Some(delivery) = receive(stream).await {
                        store.lock().expect("not poisoned").push(delivery);
                    }
                });
            }
        });
        Self { url, received, task }
    }

    pub fn received(&self) -> Vec<Delivery> {
        self.received.lock().expect("not poisoned").clone()
    }

    /// The first delivery of an event of `event_type` about `object` (an id), within `seconds`.
    pub async fn wait_for(&self, event_type: &str, object: &str, seconds: u64) -> Delivery {
        crate::helpers::eventually(seconds, || async {
            self.received()
                .into_iter()
                .find(|d| d.event_type() == event_type && d.json()["data"]["object"]["id"] == object)
        })
        .await
    }
}

impl Drop for WebhookRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP/1.1 request with a `Content-Length` body and answers 200.
async fn receive(mut stream: tokio::net::TcpStream) -> Option<Delivery> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let headers: BTreeMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
    Some(Delivery { headers, body })
}

/// The harness itself, against localstripe directly: a card that pays, one that declines, and
/// a signed webhook that reaches a local listener.
#[tokio::test]
async fn localstripe_charges_a_card_declines_another_and_signs_its_webhooks() {
    let Some(stripe) = LocalStripe::start().await else { return };
    let recorder = WebhookRecorder::start().await;
    let secret = "whsec_harness";
    stripe.configure_webhook("harness", &recorder.url, secret).await;

    // Created, then confirmed: two calls, as the payments module makes them.
    let (status, intent) = stripe
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "1299"),
                ("currency", "eur"),
                ("payment_method", "pm_card_visa"),
                ("metadata[order_id]", "o-1"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{intent}");
    assert_eq!(intent["status"], "requires_confirmation", "{intent}");
    let id = intent["id"].as_str().expect("an id");
    assert!(id.starts_with("pi_"), "{id}");
    let (status, confirmed) = stripe.post(&format!("/v1/payment_intents/{id}/confirm"), &[]).await;
    assert_eq!((status, confirmed["status"].as_str()), (200, Some("succeeded")), "{confirmed}");
    assert_eq!(stripe.payment_intent(id).await["status"], "succeeded");
    assert_eq!(stripe.payment_intents_mentioning("o-1").await.len(), 1);

    // The declining card family: created, then the confirm is refused with HTTP 402 (whose error
    // names no `payment_intent` there, unlike Stripe's) and the intent waits for another method.
    let declining = stripe.card("4000000000000341").await;
    let (status, refused) = stripe
        .post("/v1/payment_intents", &[("amount", "500"), ("currency", "eur"), ("payment_method", &declining)])
        .await;
    assert_eq!(status, 200, "{refused}");
    let refused = refused["id"].as_str().expect("an id").to_owned();
    let (status, declined) = stripe.post(&format!("/v1/payment_intents/{refused}/confirm"), &[]).await;
    assert_eq!(status, 402, "{declined}");
    assert_eq!(declined["error"]["code"], "card_declined", "{declined}");
    assert_eq!(stripe.payment_intent(&refused).await["status"], "requires_payment_method");
    let refused = refused.as_str();

    // The success's webhook, signed `t=…,v1=hex` over `t.body` with the secret.
    let delivery = recorder.wait_for("payment_intent.succeeded", id, 10).await;
    let signature = delivery.signature().to_owned();
    let (t, v1) = signature.split_once(',').expect("t=…,v1=…");
    let t: i64 = t.strip_prefix("t=").expect("t=").parse().expect("a timestamp");
    let v1 = v1.strip_prefix("v1=").expect("v1=");
    assert!((chrono::Utc::now().timestamp() - t).abs() < 60, "a fresh timestamp: {signature}");
    assert_eq!(v1.len(), 64, "hex SHA-256: {signature}");
    assert_eq!(v1, stripe.sign(secret, t, &delivery.body), "signed over t.body with the secret");
    assert_ne!(v1, stripe.sign("whsec_other", t, &delivery.body));
    assert_eq!(delivery.json()["data"]["object"]["status"], "succeeded");
    assert!(delivery.json()["id"].as_str().is_some_and(|e| e.starts_with("evt_")), "an event id");
    let failed = recorder.wait_for("payment_intent.payment_failed", refused, 10).await;
    assert!(failed.signature().starts_with("t="));

    // 3-D Secure: requires_action until the customer authenticates.
    let secure = stripe.card("4000002500003155").await;
    let (status, pending) = stripe
        .post(
            "/v1/payment_intents",
            &[("amount", "700"), ("currency", "eur"), ("payment_method", &secure), ("confirm", "true")],
        )
        .await;
    assert_eq!((status, pending["status"].as_str()), (200, Some("requires_action")), "{pending}");
    let pending_id = pending["id"].as_str().expect("an id");
    let done = stripe.authenticate(pending_id, pending["client_secret"].as_str().expect("a secret"), true).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    recorder.wait_for("payment_intent.succeeded", pending_id, 10).await;

    // A refund of the paid one.
    let (status, refund) = stripe.post("/v1/refunds", &[("payment_intent", id)]).await;
    assert_eq!((status, refund["status"].as_str()), (200, Some("succeeded")), "{refund}");
}

/// Two servers at once share nothing: each test has its own state.
#[tokio::test]
async fn two_localstripes_run_side_by_side_with_separate_state() {
    let Some(first) = LocalStripe::start().await else { return };
    let Some(second) = LocalStripe::start().await else { return };
    assert_ne!(first.base_url(), second.base_url());
    let (status, _) = first
        .post("/v1/payment_intents", &[("amount", "100"), ("currency", "eur"), ("payment_method", "pm_card_visa")])
        .await;
    assert_eq!(status, 200);
    assert_eq!(first.payment_intents().await.len(), 1);
    assert!(second.payment_intents().await.is_empty());
}
