//! What customers are told, read off a real SMTP server: [aiosmtpd](https://aiosmtpd.readthedocs.io)
//! 1.4.6 (PyPI, installed on first use, [`PyPeer`]) on a free 127.0.0.1 port, with a handler that
//! decodes each message with Python's `email` package (a peer's MIME parser, not ours) and appends
//! it to a JSON-lines file. It refuses recipients whose address starts with `nobody` (550), and can
//! be stopped and started again on its port (a mail server that is down for a while).

use std::collections::BTreeMap;
use std::process::Child;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{As, Stack, TestApp, assert_problem, eventually};
use crate::peers::PyPeer;

const PEER: PyPeer = PyPeer { package: "aiosmtpd", version: "1.4.6", import: "aiosmtpd.controller" };

/// Run by the venv's python in the server's folder: `launcher.py PORT DELAY_MS`.
const LAUNCHER: &str = r#"
import email, email.policy, json, os, sys, time
from aiosmtpd.controller import Controller

port, delay = int(sys.argv[1]), int(sys.argv[2]) / 1000

class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("nobody"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text, html = msg.get_body(("plain",)), msg.get_body(("html",))
        record = {
            "to": envelope.rcpt_tos, "from": envelope.mail_from, "messageId": msg["Message-ID"],
            "subject": str(msg["Subject"]), "text": text.get_content() if text else "",
            "html": html.get_content() if html else "",
        }
        with open("messages.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        return "250 OK"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        # Slow before the message is taken, never after: a client killed meanwhile sent nothing.
        if delay:
            time.sleep(delay)
        envelope.mail_from = address
        return "250 OK"

controller = Controller(Handler(), hostname="127.0.0.1", port=port)
controller.start()
open("ready-%d" % os.getpid(), "w").close()
while True:
    time.sleep(3600)
"#;

/// One message as the server received it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mail {
    pub to: Vec<String>,
    pub message_id: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// A running aiosmtpd; killed when dropped.
pub struct TestSmtp {
    port: u16,
    python: std::path::PathBuf,
    delay_ms: u64,
    child: Mutex<Option<Child>>,
    dir: tempfile::TempDir,
}

impl TestSmtp {
    /// Installs aiosmtpd if needed and starts it; `None` (the test skips) when it cannot be
    /// installed and services are optional.
    pub async fn start() -> Option<Self> {
        Self::start_slow(0).await
    }

    /// [`start`](Self::start), taking `delay_ms` to accept each message's sender.
    pub async fn start_slow(delay_ms: u64) -> Option<Self> {
        let python = PEER.installed().await?;
        let dir = tempfile::tempdir().expect("a folder");
        std::fs::write(dir.path().join("launcher.py"), LAUNCHER).expect("the launcher written");
        let port = crate::split::free_port();
        let server = Self { port, python, delay_ms, child: Mutex::new(None), dir };
        server.up().await;
        Some(server)
    }

    /// The app's settings for sending here.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("notifications.transport", "smtp".to_owned()),
            ("notifications.smtp.host", "127.0.0.1".to_owned()),
            ("notifications.smtp.port", self.port.to_string()),
            ("notifications.smtp.tls", "none".to_owned()),
            ("notifications.smtp.timeout_secs", "5".to_owned()),
            ("jobs.poll_interval_ms", "200".to_owned()),
            ("jobs.retry_first_delay_secs", "1".to_owned()),
            ("jobs.retry_max_delay_secs", "2".to_owned()),
        ]
    }

    /// [`settings`](Self::settings) as a process's environment (`BAZAAR__…`).
    pub fn env(&self) -> Vec<(String, String)> {
        crate::helpers::as_env(&self.settings())
    }

    /// Starts the server (again) on its port and waits until it accepts connections.
    pub async fn up(&self) {
        let args = [self.port.to_string(), self.delay_ms.to_string()];
        let mut child = crate::peers::launch(&self.python, self.dir.path(), "smtp.log", &args);
        crate::peers::until_ready(&mut child, self.dir.path(), "smtp.log").await;
        *self.child.lock().expect("not poisoned") = Some(child);
    }

    /// Stops the server: connections are refused until [`up`](Self::up).
    pub fn down(&self) {
        if let Some(mut child) = self.child.lock().expect("not poisoned").take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Every message received so far, oldest first.
    pub fn received(&self) -> Vec<Mail> {
        let lines = std::fs::read_to_string(self.dir.path().join("messages.jsonl")).unwrap_or_default();
        // The last line may be half-written: only whole lines count.
        lines.lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
    }

    /// The messages to `address`, once at least `n` arrived (within `seconds`).
    pub async fn to(&self, address: &str, n: usize, seconds: u64) -> Vec<Mail> {
        eventually(seconds, || async {
            let mails: Vec<Mail> = self.received().into_iter().filter(|m| m.to.iter().any(|t| t == address)).collect();
            (mails.len() >= n).then_some(mails)
        })
        .await
    }
}

impl Drop for TestSmtp {
    fn drop(&mut self) {
        self.down();
    }
}

/// A registered customer: the address mail goes to, and a token for the API.
pub struct Customer {
    pub email: String,
    pub user_id: String,
    pub token: String,
}

impl TestApp {
    /// Registers a customer through the API (so the shop learns of them as it would) and logs in.
    pub async fn customer_named(&self, local: &str, name: &str) -> Customer {
        let email = format!("{local}-{}@example.com", Uuid::now_v7().simple());
        let registered = self.register(&email, "a long enough password", name).await;
        assert_eq!(registered.status(), 201, "{:?}", registered.text().await);
        let user: Value = registered.json().await.expect("JSON");
        let login: Value = self.login(&email, "a long enough password").await.json().await.expect("JSON");
        let token = login["accessToken"].as_str().expect("a token").to_owned();
        Customer { email, user_id: user["id"].as_str().expect("an id").to_owned(), token }
    }

    /// `GET /admin/notifications?userId=` (every page's items).
    pub async fn notifications_of(&self, user_id: &str) -> Vec<Value> {
        let path = format!("/admin/notifications?userId={user_id}&limit=100");
        let page: Value =
            self.request(Method::GET, &path, As::Admin).send().await.expect("sent").json().await.expect("JSON");
        page["items"].as_array().cloned().unwrap_or_default()
    }
}

/// The token of the link `path?token=…` in a message.
fn token_in(text: &str, path: &str) -> String {
    let start = text.find(path).unwrap_or_else(|| panic!("a link to {path} in {text}")) + path.len();
    text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
}

/// `text` as the templates write it into HTML.
fn html_escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
        .replace('/', "&#x2f;")
}

/// The subjects of `mails`, each with how often it came.
fn subjects(mails: &[Mail]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for mail in mails {
        *counts.entry(mail.subject.clone()).or_default() += 1;
    }
    counts
}

/// A customer's life in the shop, told by mail: welcome; an order paid, confirmed, dispatched and
/// delivered; a declined card; an order cancelled after payment and refunded. Each message comes
/// once, to the customer's address, with what it is about.
pub async fn a_customers_story_by_mail(app: &TestApp, smtp: &TestSmtp) {
    let ada = app.customer_named("ada", "Ada Lovelace").await;
    let product = app.stocked_product(&format!("MAIL-{}", Uuid::now_v7().simple()), 10, crate::orders::eur(1250)).await;

    let delivered = app.place_paid(&ada.token, &product, 2, Some("pm_card_visa")).await;
    assert_eq!(app.decided(&ada.token, &delivered).await["status"], "confirmed");
    let shipment = app.shipment_of(&ada.token, &delivered).await;
    let dispatched: Value = app.dispatch(&shipment, As::Admin).await.json().await.expect("JSON");
    assert_eq!(app.deliver(&shipment, As::Admin).await.status(), 200);
    app.order_until(&ada.token, &delivered, "delivered").await;

    let declined = app.place_paid(&ada.token, &product, 1, Some("pm_card_chargeDeclined")).await;
    app.decided(&ada.token, &declined).await;

    let cancelled = app.place_paid(&ada.token, &product, 1, Some("pm_card_visa")).await;
    assert_eq!(app.decided(&ada.token, &cancelled).await["status"], "confirmed");
    assert_eq!(app.cancel(&ada.token, &cancelled).await.status(), 202);
    app.order_until(&ada.token, &cancelled, "cancelled").await;

    let (first, third) = (delivered["id"].as_str().expect("an id"), cancelled["id"].as_str().expect("an id"));
    let expected: BTreeMap<String, usize> = [
        "Welcome to Bazaar".to_owned(),
        format!("Your order {first} is confirmed"),
        format!("Your order {first} is on its way"),
        format!("Your order {first} was delivered"),
        format!("The payment for your order {} did not go through", declined["id"].as_str().expect("an id")),
        format!("Your order {third} is confirmed"),
        format!("Your order {third} is cancelled"),
        format!("12.50 EUR refunded for your order {third}"),
    ]
    .into_iter()
    .map(|subject| (subject, 1))
    .collect();
    smtp.to(&ada.email, expected.len() + 1, 30).await;
    // Anything sent twice would come within the worker's next polls.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mails: Vec<Mail> = smtp.received().into_iter().filter(|m| m.to.contains(&ada.email)).collect();
    let mut expected = expected;
    expected.insert("Confirm your e-mail address for Bazaar".to_owned(), 1);
    assert_eq!(subjects(&mails), expected, "each fact once: {mails:#?}");
    let verify = mails.iter().find(|m| m.subject.starts_with("Confirm your e-mail")).expect("sent");
    let token = token_in(&verify.text, "/verify-email?token=");
    let verified = app
        .request(Method::POST, "/users/verify", As::Anonymous)
        .json(&json!({"token": token}))
        .send()
        .await
        .expect("sent");
    assert_eq!(verified.status(), 204, "the mailed link verifies: {:?}", verified.text().await);
    let me = app.get_json_as(&ada.token, "/users/me").await;
    assert_eq!(me["emailVerified"], true, "{me}");
    let ids: std::collections::BTreeSet<&str> = mails.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(ids.len(), mails.len(), "a Message-ID each");

    let confirmation = mails.iter().find(|m| m.subject == format!("Your order {first} is confirmed")).expect("sent");
    let text = &confirmation.text;
    assert!(text.starts_with("Hello Ada Lovelace,"), "{text}");
    let line = format!(
        "2 × {} ({}) at 12.50 EUR: 25.00 EUR",
        product["name"].as_str().expect("a name"),
        product["sku"].as_str().expect("a sku")
    );
    assert!(text.contains(&line), "{line} in {text}");
    assert!(text.contains("Total: 25.00 EUR"), "{text}");
    let address = crate::orders::address();
    for part in ["line1", "city", "postalCode", "country"] {
        let value = address[part].as_str().expect("a string");
        assert!(text.contains(value), "{part} {value} in {text}");
        assert!(confirmation.html.contains(&html_escaped(value)), "{part} in the HTML part: {}", confirmation.html);
    }
    let on_its_way = mails.iter().find(|m| m.subject.ends_with("is on its way")).expect("sent");
    for field in ["carrier", "trackingNumber"] {
        let value = dispatched[field].as_str().unwrap_or_else(|| panic!("{field} in {dispatched}"));
        assert!(on_its_way.text.contains(value) && on_its_way.html.contains(value), "{field} {value}: {on_its_way:?}");
    }

    // The admin's record: every message sent, one attempt each, as received.
    let recorded = app.notifications_of(&ada.user_id).await;
    assert_eq!(recorded.len(), mails.len(), "{recorded:#?}");
    for message in &recorded {
        assert_eq!((message["status"].as_str(), message["attempts"].as_u64()), (Some("sent"), Some(1)), "{message}");
        assert_eq!(message["to"], ada.email.as_str());
        assert!(ids.contains(message["messageId"].as_str().expect("an id")), "{message}");
    }
}

mod in_every_topology {
    use super::*;

    #[tokio::test]
    async fn a_one_process_sqlite_in_process() {
        let Some(smtp) = TestSmtp::start().await else { return };
        let settings = smtp.settings();
        let overrides: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let app = crate::helpers::spawn_app_with(&overrides).await;
        a_customers_story_by_mail(&app, &smtp).await;
    }

    #[tokio::test]
    async fn b_one_process_postgres_rabbitmq() {
        let Some(smtp) = TestSmtp::start().await else { return };
        let Some(stack) = Stack::new(crate::engines::Engine::Postgres, true).await else { return };
        let settings = smtp.settings();
        let overrides: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        a_customers_story_by_mail(&stack.spawn(&overrides).await, &smtp).await;
    }

    #[tokio::test]
    async fn c_split_processes_mariadb_postgres_rabbitmq() {
        let Some(smtp) = TestSmtp::start().await else { return };
        let env = smtp.env();
        let extra: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let Some((shop, _processes)) = crate::split::Split::start_with(&extra).await else { return };
        a_customers_story_by_mail(&shop, &smtp).await;
    }
}

/// The mail server is down while orders are placed: the messages wait (queued, their attempts and
/// the last error recorded), and once it is back every one arrives, none twice.
#[tokio::test]
async fn mail_queued_while_the_server_is_down_all_arrives_once_it_is_back() {
    let Some(smtp) = TestSmtp::start().await else { return };
    let settings = smtp.settings();
    let overrides: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = crate::helpers::spawn_app_with(&overrides).await;
    smtp.down();
    let mut customers = Vec::new();
    for i in 0..5 {
        customers.push(app.customer_named("down", &format!("Customer {i}")).await);
    }
    let waiting = eventually(20, || async {
        let listed = app.notifications_of(&customers[0].user_id).await;
        let welcome = listed.into_iter().find(|m| m["kind"] == "welcome")?;
        (welcome["attempts"].as_u64() >= Some(2)).then_some(welcome)
    })
    .await;
    assert_eq!(waiting["status"], "queued", "{waiting}");
    assert!(waiting["lastError"].as_str().is_some_and(|e| !e.is_empty()), "{waiting}");
    assert!(smtp.received().is_empty());
    let metrics = app.metrics().await;
    assert!(
        metrics.lines().any(|l| l.starts_with("bazaar_jobs{")
            && l.contains("status=\"queued\"")
            && l.contains("send_message")
            && !l.ends_with(" 0")),
        "queued jobs counted: {metrics}"
    );

    smtp.up().await;
    for customer in &customers {
        // A welcome and the link to confirm the address.
        let mails = smtp.to(&customer.email, 2, 30).await;
        assert!(mails.iter().any(|m| m.subject == "Welcome to Bazaar"), "{mails:?}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received = smtp.received();
    let ids: std::collections::BTreeSet<&str> = received.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(ids.len(), received.len(), "none twice: {received:#?}");
    let welcome =
        app.notifications_of(&customers[0].user_id).await.into_iter().find(|m| m["kind"] == "welcome").expect("listed");
    assert_eq!(welcome["status"], "sent", "{welcome}");
    assert!(welcome["lastError"].is_null(), "{welcome}");
}

/// A recipient the server refuses for good (550) is not retried by itself: its job is `failed`
/// and listed for admins, the message says so, and an admin's retry sends it once the cause is
/// gone.
#[tokio::test]
async fn a_refused_recipient_fails_visibly_and_an_admin_retry_sends_it() {
    let Some(smtp) = TestSmtp::start().await else { return };
    let settings = smtp.settings();
    let overrides: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = crate::helpers::spawn_app_with(&overrides).await;
    let nobody = app.customer_named("nobody", "No Body").await;
    let failed = eventually(20, || async {
        let listed = app.notifications_of(&nobody.user_id).await;
        listed.into_iter().find(|m| m["kind"] == "welcome" && m["status"] == "failed")
    })
    .await;
    assert!(failed["lastError"].as_str().is_some_and(|e| e.contains("550")), "{failed}");
    let job_id = failed["jobId"].as_str().expect("its job").to_owned();

    let jobs = app.get_json("/admin/jobs?status=failed", As::Admin).await;
    let job =
        jobs.as_array().expect("a list").iter().find(|j| j["id"] == job_id.as_str()).expect("listed as failed").clone();
    assert_eq!(
        (job["module"].as_str(), job["type"].as_str(), job["status"].as_str()),
        (Some("notifications"), Some("send_message"), Some("failed")),
        "{job}"
    );
    assert_problem(app.request(Method::GET, "/admin/jobs", As::Customer).send().await.expect("sent"), 403).await;
    assert_problem(app.request(Method::GET, "/admin/jobs", As::Anonymous).send().await.expect("sent"), 401).await;
    assert_problem(app.request(Method::GET, "/admin/notifications", As::Customer).send().await.expect("sent"), 403)
        .await;
    let bad = app.request(Method::GET, "/admin/jobs?status=stuck", As::Admin).send().await.expect("sent");
    assert_problem(bad, 400).await;

    // The cause stays: a retry fails again, and stays failed.
    let retry = format!("/admin/jobs/notifications/{job_id}/retry");
    assert_eq!(app.request(Method::POST, &retry, As::Admin).send().await.expect("sent").status(), 202);
    let again = eventually(20, || async {
        let listed = app.notifications_of(&nobody.user_id).await;
        listed
            .into_iter()
            .find(|m| m["kind"] == "welcome" && m["status"] == "failed" && m["attempts"].as_u64() == Some(2))
    })
    .await;
    assert_eq!(again["jobId"], job_id.as_str());
    assert!(smtp.received().is_empty(), "refused, so nothing arrived");
    let unknown = format!("/admin/jobs/notifications/{}/retry", Uuid::now_v7());
    assert_problem(app.request(Method::POST, &unknown, As::Admin).send().await.expect("sent"), 404).await;
    assert_problem(app.request(Method::POST, &retry, As::Customer).send().await.expect("sent"), 403).await;
}

/// A forgotten password, end to end: the reset link arrives by mail, its token sets a new password
/// once, every session of the account ends; an unknown address gets the same answer and no mail.
#[tokio::test]
async fn a_password_reset_arrives_by_mail_and_its_link_works_once() {
    let Some(smtp) = TestSmtp::start().await else { return };
    let settings = smtp.settings();
    let overrides: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = crate::helpers::spawn_app_with(&overrides).await;
    let ada = app.customer_named("reset", "Ada Lovelace").await;
    let login: Value = app.login(&ada.email, "a long enough password").await.json().await.expect("JSON");
    let refresh = login["refreshToken"].as_str().expect("a refresh token").to_owned();

    let ask = |email: String| {
        let app = &app;
        async move {
            let response = app
                .request(Method::POST, "/auth/password-reset", As::Anonymous)
                .json(&json!({"email": email}))
                .send()
                .await
                .expect("sent");
            (response.status().as_u16(), response.text().await.expect("a body"))
        }
    };
    let unknown = format!("nobody-{}@example.com", Uuid::now_v7().simple());
    assert_eq!(ask(ada.email.clone()).await, ask(unknown.clone()).await, "the same answer either way");
    // … in about the same time: no step (a password hash, a mail sent in the request) that only
    // one of the two takes. Medians of a few, each address asked once (the limit is per address).
    let mut known = Vec::new();
    let mut strangers = Vec::new();
    for i in 0..4 {
        let other = app.customer_named("timing", &format!("Timing {i}")).await;
        let started = std::time::Instant::now();
        assert_eq!(ask(other.email).await.0, 202);
        known.push(started.elapsed());
        let started = std::time::Instant::now();
        assert_eq!(ask(format!("nobody-{i}-{}@example.com", Uuid::now_v7().simple())).await.0, 202);
        strangers.push(started.elapsed());
    }
    let median = |mut times: Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let (known, strangers) = (median(known), median(strangers));
    let slack = Duration::from_millis(25);
    assert!(known <= strangers * 3 + slack && strangers <= known * 3 + slack, "known {known:?}, unknown {strangers:?}");
    let mails = smtp.to(&ada.email, 3, 30).await;
    let reset = mails.iter().find(|m| m.subject == "Reset your Bazaar password").expect("the reset mail");
    assert!(reset.text.starts_with("Hello Ada Lovelace,"), "{}", reset.text);
    let token = token_in(&reset.text, "http://localhost:8080/reset-password?token=");
    assert!(reset.html.contains(&token), "the HTML part has the link too");

    let confirm = |token: String| {
        let app = &app;
        async move {
            let body = json!({"token": token, "password": "another long password"});
            app.request(Method::POST, "/auth/password-reset/confirm", As::Anonymous)
                .json(&body)
                .send()
                .await
                .expect("sent")
        }
    };
    assert_eq!(confirm(token.clone()).await.status(), 204);
    assert_problem(confirm(token).await, 400).await;
    assert_eq!(app.login(&ada.email, "a long enough password").await.status(), 401, "the old password is gone");
    assert_eq!(app.login(&ada.email, "another long password").await.status(), 200);
    let refreshed = app
        .request(Method::POST, "/auth/refresh", As::Anonymous)
        .json(&json!({"refreshToken": refresh}))
        .send()
        .await
        .expect("sent");
    assert_problem(refreshed, 401).await;

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(smtp.received().iter().all(|m| !m.to.contains(&unknown)), "no mail to an unknown address");
    let recorded = app.notifications_of(&ada.user_id).await;
    let kept = recorded.iter().find(|m| m["kind"] == "password_reset").expect("recorded");
    assert_eq!(kept["status"], "sent", "{kept}");
}

/// With no mail server (the embedded default), each message is an `.eml` file in the mail folder.
#[tokio::test]
async fn the_default_transport_writes_each_message_as_an_eml_file() {
    let app = crate::helpers::spawn_app().await;
    let grace = app.customer_named("grace", "Grace Hopper").await;
    let listed = eventually(20, || async {
        let listed = app.notifications_of(&grace.user_id).await;
        listed.iter().all(|m| m["status"] == "sent").then_some(listed).filter(|l| !l.is_empty())
    })
    .await;
    let welcome = listed.iter().find(|m| m["kind"] == "welcome").expect("a welcome");
    let file = app.mail_dir().join(format!("{}.eml", welcome["id"].as_str().expect("an id")));
    let eml = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert!(eml.contains(&format!("To: {}", grace.email)), "{eml}");
    assert!(eml.contains("Subject: Welcome to Bazaar"), "{eml}");
    assert!(eml.contains(&format!("Message-ID: {}", welcome["messageId"].as_str().expect("an id"))), "{eml}");
    assert!(eml.contains("multipart/alternative"), "{eml}");
}

/// `kill -9` of the process while messages are being sent, then a restart: every message arrives;
/// one the server took in the instant before the kill, but whose sending was not yet recorded, may
/// come again — with the same Message-ID, at most once per message under way.
#[tokio::test]
async fn a_kill_mid_batch_loses_no_message_and_repeats_only_one_under_way() {
    let Some(smtp) = TestSmtp::start_slow(150).await else { return };
    let env: Vec<(String, String)> = smtp
        .env()
        .into_iter()
        .chain([
            ("BAZAAR__JOBS__CONCURRENCY".to_owned(), "2".to_owned()),
            // The killed process's claims are taken up again when their lease ends: 8 s and a quarter.
            ("BAZAAR__JOBS__TIMEOUT_SECS".to_owned(), "8".to_owned()),
        ])
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut process = crate::process::ServeProcess::start(&env).await;
    let database = crate::engines::TestDatabase::create(crate::engines::Engine::Sqlite, process.dir.path()).await;
    let folder = tempfile::tempdir().expect("a folder");
    let app = TestApp::external(
        process.address.clone(),
        Vec::new(),
        Default::default(),
        database.expect("SQLite"),
        folder,
        Box::new(()),
    );
    // Registered while the server is down, so that the whole batch is waiting when it comes back.
    smtp.down();
    let mut customers = Vec::new();
    for i in 0..12 {
        customers.push(app.customer_named("kill", &format!("Customer {i}")).await);
    }
    smtp.up().await;
    eventually(30, || async { (smtp.received().len() >= 3).then_some(()) }).await;
    process.child.start_kill().expect("killed");
    process.child.wait().await.expect("reaped");
    let sent_before = smtp.received().len();
    assert!(sent_before < customers.len(), "killed mid-batch: {sent_before} sent");

    let dir = process.dir.clone();
    drop(process);
    let restarted = crate::process::ServeProcess::start_in(dir, &env).await;
    let _keep = restarted;
    for customer in &customers {
        smtp.to(&customer.email, 2, 60).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received = smtp.received();
    let mut per_id: BTreeMap<&str, usize> = BTreeMap::new();
    for mail in &received {
        *per_id.entry(mail.message_id.as_str()).or_default() += 1;
    }
    assert_eq!(per_id.len(), 2 * customers.len(), "two messages per customer, none lost: {received:#?}");
    let repeated = per_id.values().filter(|n| **n > 1).count();
    assert!(per_id.values().all(|n| *n <= 2) && repeated <= 2, "at most the 2 under way came twice: {per_id:?}");
}
