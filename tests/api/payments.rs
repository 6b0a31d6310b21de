//! The payment step of the order saga (issue 16): `pending → awaiting_payment → confirmed |
//! rejected | cancelled`, through the HTTP API only — with the embedded fake provider, and with
//! the Stripe provider against a real Stripe-compatible server ([`LocalStripe`]) and its webhooks.
//!
//! The happy path and the 50-for-10 race run in every topology (`tests/api/topologies.rs`: one
//! process on SQLite, one on PostgreSQL + RabbitMQ, the split with payments in a process of its
//! own); a SIGKILL of that process runs in the split.

use chrono::{DateTime, FixedOffset};
use reqwest::{Method, Response};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{As, TestApp, assert_problem, eventually, spawn_app_with};
use crate::localstripe::{API_KEY, LocalStripe, WebhookRecorder};
use crate::orders::{customer, eur, order_body};

/// The fake provider's test payment methods (Stripe's names).
const VISA: &str = "pm_card_visa";
const DECLINED: &str = "pm_card_chargeDeclined";
const INSUFFICIENT_FUNDS: &str = "pm_card_chargeDeclinedInsufficientFunds";
const THREE_D_SECURE: &str = "pm_card_threeDSecure2Required";
const AUTHENTICATION_REQUIRED: &str = "pm_card_authenticationRequired";

/// localstripe's cards: one that declines, one that asks for 3-D Secure.
const DECLINING_CARD: &str = "4000000000000341";
const THREE_D_SECURE_CARD: &str = "4000002500003155";
const WEBHOOK_SECRET: &str = "whsec_bazaar_tests";

/// A payment that took money, whatever became of it since.
const CHARGED: [&str; 3] = ["succeeded", "refunding", "refunded"];

/// Statuses an order leaves only by a customer's or shipping's act.
const DECIDED: [&str; 3] = ["confirmed", "rejected", "cancelled"];

fn id(value: &Value) -> &str {
    value["id"].as_str().unwrap_or_else(|| panic!("an id in {value}"))
}

fn at(value: &Value, field: &str) -> DateTime<FixedOffset> {
    let raw = value[field].as_str().unwrap_or_else(|| panic!("{field} is set in {value}"));
    DateTime::parse_from_rfc3339(raw).expect("an RFC 3339 instant")
}

/// An amount in minor units, whether written `1299` beside a `currency` or as `{amount, currency}`.
fn minor_units(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| value["amount"].as_i64())
}

fn currency_of(owner: &Value) -> Option<&str> {
    owner["currency"].as_str().or_else(|| owner["amount"]["currency"].as_str())
}

/// `quantity` units of `product`, paid with `method` (none: the customer pays later).
pub fn paid_order_body(product: &Value, quantity: i64, method: Option<&str>) -> Value {
    let mut body = order_body(&[(&product["id"], quantity)]);
    let fields = body.as_object_mut().expect("an object");
    match method {
        Some(method) => fields.insert("paymentMethod".into(), json!(method)),
        None => fields.remove("paymentMethod"),
    };
    body
}

impl TestApp {
    /// Places an order of `quantity` units of `product` paid with `method`; the new order.
    pub async fn place_paid(&self, token: &str, product: &Value, quantity: i64, method: Option<&str>) -> Value {
        let response = self.place(token, &paid_order_body(product, quantity, method)).await;
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        let order: Value = response.json().await.expect("JSON");
        assert_eq!(order["status"], "pending", "{order}");
        order
    }

    /// The order once `check` holds, within `seconds`.
    pub async fn order_when(&self, token: &str, order: &Value, seconds: u64, check: impl Fn(&Value) -> bool) -> Value {
        eventually(seconds, || async {
            let now = self.order(token, order).await;
            check(&now).then_some(now)
        })
        .await
    }

    /// The order once the saga has decided it: confirmed, rejected or cancelled.
    pub async fn decided(&self, token: &str, order: &Value) -> Value {
        self.decided_within(token, order, 15).await
    }

    pub async fn decided_within(&self, token: &str, order: &Value, seconds: u64) -> Value {
        self.order_when(token, order, seconds, |o| DECIDED.iter().any(|s| o["status"] == *s)).await
    }

    /// The order once its payment is `status` (as orders shows it).
    pub async fn payment_status_until(&self, token: &str, order: &Value, status: &str) -> Value {
        self.order_when(token, order, 15, |o| o["payment"]["status"] == status).await
    }

    /// `GET /payments?orderId=` as `token`: the order's payments.
    pub async fn payments_of(&self, token: &str, order: &Value) -> Vec<Value> {
        let page = self.get_json_as(token, &format!("/payments?orderId={}", id(order))).await;
        page["items"].as_array().unwrap_or_else(|| panic!("a page of payments: {page}")).clone()
    }

    /// The order's payments, as an admin sees them.
    pub async fn payments_of_order(&self, order: &Value) -> Vec<Value> {
        let path = format!("/payments?orderId={}", id(order));
        let page: Value =
            self.request(Method::GET, &path, As::Admin).send().await.expect("sent").json().await.expect("JSON");
        page["items"].as_array().unwrap_or_else(|| panic!("a page of payments: {page}")).clone()
    }

    /// The order's only payment, once it is `status`.
    pub async fn payment_until(&self, token: &str, order: &Value, status: &str) -> Value {
        eventually(15, || async {
            let payments = self.payments_of(token, order).await;
            payments.into_iter().find(|p| p["status"] == status)
        })
        .await
    }

    /// `POST /orders/{id}/payment {paymentMethod}`.
    pub async fn pay(&self, token: &str, order: &Value, method: &str) -> Response {
        let path = format!("/orders/{}/payment", id(order));
        let request = self.request(Method::POST, &path, As::Anonymous).bearer_auth(token);
        request.json(&json!({"paymentMethod": method})).send().await.expect("sent")
    }

    /// The fake provider's `POST /payments/{id}/confirm` or `/fail` (`action`), as `token`.
    pub async fn complete_fake(&self, token: &str, payment: &Value, action: &str) -> Response {
        let path = format!("/payments/{}/{action}", id(payment));
        self.request(Method::POST, &path, As::Anonymous).bearer_auth(token).send().await.expect("sent")
    }

    /// How many `event`s (e.g. `PaymentSucceeded`) payments published about the order.
    pub async fn payment_events(&self, event: &str, order: &Value) -> usize {
        let published = self.published("payments").await;
        published.iter().filter(|e| e.event == event && e.data["orderId"] == order["id"]).count()
    }
}

/// The order's payment as orders shows it agrees with the order: its amount and currency.
fn assert_payment_matches_total(order: &Value) {
    let payment = &order["payment"];
    assert_eq!(minor_units(&payment["amount"]), minor_units(&order["total"]), "{order}");
    assert_eq!(currency_of(payment), order["total"]["currency"].as_str(), "{order}");
}

/// A paid order, from `pending` through `confirmed` to `delivered`: the payment is visible in
/// the order and in payments, for its owner and admins only, and nothing refunds it.
pub async fn happy_path(app: &TestApp) {
    let product = app.stocked_product("PAY-HAPPY", 10, eur(250)).await;
    let token = customer(&Uuid::now_v7());
    let order = app.place_paid(&token, &product, 3, Some(VISA)).await;
    assert_eq!(order["total"], eur(750));

    let confirmed = app.decided(&token, &order).await;
    assert_eq!(confirmed["status"], "confirmed", "{confirmed}");
    let payment = &confirmed["payment"];
    assert_eq!(payment["status"], "succeeded", "{confirmed}");
    assert_eq!(payment["paymentMethod"], VISA, "{confirmed}");
    assert_payment_matches_total(&confirmed);
    assert!(at(&confirmed, "confirmedAt") >= at(payment, "paidAt"), "confirmed once paid: {confirmed}");
    assert!(payment["dueAt"].is_string() && payment["refundedAt"].is_null(), "{confirmed}");
    assert!(payment["failureReason"].is_null(), "{confirmed}");
    assert_eq!(app.levels(&product).await, (10, 3, 7));

    let payments = app.payments_of(&token, &order).await;
    assert_eq!(payments.len(), 1, "one payment: {payments:?}");
    let paid = &payments[0];
    assert_eq!((paid["status"].as_str(), &paid["orderId"]), (Some("succeeded"), &order["id"]), "{paid}");
    assert_eq!(minor_units(&paid["amount"]), Some(750), "{paid}");
    assert_eq!(currency_of(paid), Some("EUR"), "{paid}");
    assert!(paid["paidAt"].is_string() && paid["refundedAt"].is_null(), "{paid}");
    let path = format!("/payments/{}", id(paid));
    let own = app.get_json_as(&token, &path).await;
    assert_eq!((&own["id"], &own["status"]), (&paid["id"], &paid["status"]));
    let admin: Value =
        app.request(Method::GET, &path, As::Admin).send().await.expect("sent").json().await.expect("JSON");
    assert_eq!(admin["id"], paid["id"]);
    let stranger = customer(&Uuid::now_v7());
    let theirs = app.request(Method::GET, &path, As::Anonymous).bearer_auth(&stranger).send().await.expect("sent");
    assert_problem(theirs, 404).await;
    assert!(app.payments_of(&stranger, &order).await.is_empty(), "a stranger lists none of it");
    assert_problem(app.request(Method::GET, &path, As::Anonymous).send().await.expect("sent"), 401).await;

    // Paid: paying again is refused.
    assert_problem(app.pay(&token, &order, VISA).await, 409).await;

    let shipment = app.shipment_of(&token, &order).await;
    assert_eq!(app.dispatch(&shipment, As::Admin).await.status(), 200);
    app.order_until(&token, &order, "shipped").await;
    app.levels_until(&product, (7, 0, 7)).await;
    assert_eq!(app.deliver(&shipment, As::Admin).await.status(), 200);
    let delivered = app.order_until(&token, &order, "delivered").await;
    assert_eq!(delivered["payment"]["status"], "succeeded", "{delivered}");
    assert_eq!(delivered["payment"]["paidAt"], payment["paidAt"]);
    assert!(delivered["payment"]["refundedAt"].is_null(), "{delivered}");
    assert_eq!(app.payments_of(&token, &order).await[0]["status"], "succeeded");
    assert_eq!(app.payment_events("PaymentSucceeded", &order).await, 1);
    assert_eq!(app.payment_events("PaymentRefunded", &order).await, 0);
}

/// 50 customers, each paying, race for the last 10 units: exactly 10 orders are confirmed and
/// paid once each; the 40 rejected are charged nothing.
pub async fn fifty_paid_orders_for_ten_units(app: &TestApp) {
    let product = app.stocked_product("PAY-LAST-10", 10, eur(999)).await;
    let placed = futures::future::join_all((0..50).map(|_| {
        let token = customer(&Uuid::now_v7());
        let product = &product;
        async move {
            let order = app.place_paid(&token, product, 1, Some(VISA)).await;
            (token, order)
        }
    }))
    .await;
    let (mut confirmed, mut rejected) = (0, 0);
    for (token, order) in &placed {
        let decided = app.decided_within(token, order, 30).await;
        let payments = app.payments_of_order(order).await;
        let charged: Vec<&Value> = payments.iter().filter(|p| CHARGED.iter().any(|s| p["status"] == *s)).collect();
        match decided["status"].as_str() {
            Some("confirmed") => {
                confirmed += 1;
                assert_eq!(decided["payment"]["status"], "succeeded", "{decided}");
                assert_eq!(charged.len(), 1, "paid once: {payments:?}");
                assert_eq!(charged[0]["status"], "succeeded", "{payments:?}");
            }
            Some("rejected") => {
                rejected += 1;
                assert!(charged.is_empty(), "a rejected order is charged nothing: {payments:?}");
                assert!(decided["payment"].is_null() || decided["payment"]["paidAt"].is_null(), "{decided}");
            }
            other => panic!("order {} ended {other:?}: {decided}", order["id"]),
        }
    }
    assert_eq!((confirmed, rejected), (10, 40));
    assert_eq!(app.levels(&product).await, (10, 10, 0));
    let published = app.published("payments").await;
    assert_eq!(published.iter().filter(|e| e.event == "PaymentSucceeded").count(), 10, "ten charges in all");
}

/// Declined cards (two of the provider's reasons): the order is rejected with the reason, nothing
/// is charged and the stock is released.
pub async fn declined(app: &TestApp) {
    let product = app.stocked_product("PAY-DECLINE", 10, eur(400)).await;
    let token = customer(&Uuid::now_v7());
    for (method, reason) in [(DECLINED, "declined"), (INSUFFICIENT_FUNDS, "insufficient")] {
        let order = app.place_paid(&token, &product, 2, Some(method)).await;
        let rejected = app.decided(&token, &order).await;
        assert_eq!(rejected["status"], "rejected", "{rejected}");
        let why = rejected["rejectionReason"].as_str().unwrap_or_else(|| panic!("a reason: {rejected}"));
        assert!(why.to_lowercase().contains(reason), "{method}: {why}");
        assert_eq!(rejected["payment"]["status"], "failed", "{rejected}");
        assert!(rejected["payment"]["failureReason"].as_str().is_some_and(|r| !r.is_empty()), "{rejected}");
        assert!(rejected["payment"]["paidAt"].is_null(), "{rejected}");
        assert!(rejected["rejectedAt"].is_string() && rejected["confirmedAt"].is_null(), "{rejected}");
        let payments = app.payments_of(&token, &order).await;
        assert_eq!(payments.len(), 1, "{payments:?}");
        assert_eq!(payments[0]["status"], "failed", "{payments:?}");
        assert!(payments[0]["paidAt"].is_null(), "{payments:?}");
        app.levels_until(&product, (10, 0, 10)).await;
        assert_eq!(app.payment_events("PaymentSucceeded", &order).await, 0);
        // Rejected: nothing more to pay.
        assert_problem(app.pay(&token, &order, VISA).await, 409).await;
    }
}

/// A paid order cancelled before dispatch: shipping grants it, the stock is released and the
/// payment refunded, once.
pub async fn refunded_on_cancel(app: &TestApp) {
    let product = app.stocked_product("PAY-REFUND", 10, eur(300)).await;
    let token = customer(&Uuid::now_v7());
    let order = app.place_paid(&token, &product, 2, Some(VISA)).await;
    let confirmed = app.decided(&token, &order).await;
    assert_eq!(confirmed["status"], "confirmed", "{confirmed}");
    app.shipment_of(&token, &order).await;

    assert_eq!(app.cancel(&token, &order).await.status(), 202);
    let cancelled = app.order_until(&token, &order, "cancelled").await;
    // The customer's cancel of a confirmed order is shipping's to grant.
    assert_eq!(cancelled["cancellationReason"], "shipment_cancelled", "{cancelled}");
    app.levels_until(&product, (10, 0, 10)).await;
    let refunded = app.order_when(&token, &order, 15, |o| o["payment"]["refundedAt"].is_string()).await;
    assert_eq!(refunded["payment"]["status"], "refunded", "{refunded}");
    assert!(at(&refunded["payment"], "refundedAt") >= at(&refunded["payment"], "paidAt"), "{refunded}");
    assert_eq!(refunded["status"], "cancelled");
    let payment = app.payment_until(&token, &order, "refunded").await;
    assert!(payment["refundedAt"].is_string() && payment["paidAt"].is_string(), "{payment}");
    assert_eq!(app.payments_of(&token, &order).await.len(), 1);
    assert_eq!(app.payment_events("PaymentSucceeded", &order).await, 1);
    assert_eq!(app.payment_events("PaymentRefunded", &order).await, 1, "refunded once");
}

#[tokio::test]
async fn an_order_placed_without_a_method_waits_for_one_and_is_confirmed_once_paid() {
    let app = spawn_app_with(&[]).await;
    let product = app.stocked_product("PAY-LATER", 10, eur(150)).await;
    let token = customer(&Uuid::now_v7());
    let order = app.place_paid(&token, &product, 2, None).await;

    let waiting = app.payment_status_until(&token, &order, "requires_payment_method").await;
    assert_eq!(waiting["status"], "awaiting_payment", "{waiting}");
    assert!(waiting["payment"]["paymentMethod"].is_null(), "{waiting}");
    assert_payment_matches_total(&waiting);
    assert!(at(&waiting["payment"], "dueAt") > at(&waiting, "createdAt"), "{waiting}");
    assert_eq!(app.levels(&product).await, (10, 2, 8), "reserved while it waits");
    let payments = app.payments_of(&token, &order).await;
    assert!(payments.iter().all(|p| !CHARGED.iter().any(|s| p["status"] == *s)), "{payments:?}");

    // Someone else's order cannot be paid for through this route.
    let stranger = customer(&Uuid::now_v7());
    assert_problem(app.pay(&stranger, &order, VISA).await, 404).await;

    let response = app.pay(&token, &order, VISA).await;
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
    let confirmed = app.decided(&token, &order).await;
    assert_eq!(confirmed["status"], "confirmed", "{confirmed}");
    assert_eq!(confirmed["payment"]["status"], "succeeded", "{confirmed}");
    assert_eq!(confirmed["payment"]["paymentMethod"], VISA, "{confirmed}");
    assert!(confirmed["payment"]["paidAt"].is_string(), "{confirmed}");
    let succeeded: Vec<Value> =
        app.payments_of(&token, &order).await.into_iter().filter(|p| p["status"] == "succeeded").collect();
    assert_eq!(succeeded.len(), 1, "{succeeded:?}");
    assert_eq!(app.levels(&product).await, (10, 2, 8));
    assert_problem(app.pay(&token, &order, VISA).await, 409).await;
}

#[tokio::test]
async fn paying_again_while_the_payment_is_processing_or_after_it_succeeded_is_a_conflict() {
    // The fake answers `processing` and decides 3 s later, as a provider's webhook would.
    let app = spawn_app_with(&[("payments.fake.answer_delay_ms", "3000")]).await;
    let product = app.stocked_product("PAY-TWICE", 10, eur(150)).await;
    let token = customer(&Uuid::now_v7());
    let order = app.place_paid(&token, &product, 1, Some(VISA)).await;

    let processing = app.payment_status_until(&token, &order, "processing").await;
    assert_eq!(processing["status"], "awaiting_payment", "{processing}");
    assert_problem(app.pay(&token, &order, VISA).await, 409).await;
    assert_problem(app.pay(&token, &order, DECLINED).await, 409).await;

    let confirmed = app.decided(&token, &order).await;
    assert_eq!(confirmed["status"], "confirmed", "{confirmed}");
    assert_eq!(confirmed["payment"]["paymentMethod"], VISA, "the refused attempt changed nothing: {confirmed}");
    assert_problem(app.pay(&token, &order, VISA).await, 409).await;
    let payments = app.payments_of(&token, &order).await;
    assert_eq!(payments.len(), 1, "no second attempt: {payments:?}");
    assert_eq!(payments[0]["status"], "succeeded");
    assert_eq!(app.payment_events("PaymentSucceeded", &order).await, 1);
}

#[tokio::test]
async fn an_unpaid_order_is_cancelled_after_the_payment_timeout_and_releases_its_stock() {
    let app = spawn_app_with(&[("orders.payment_timeout_secs", "2")]).await;
    let product = app.stocked_product("PAY-TIMEOUT", 10, eur(200)).await;
    let token = customer(&Uuid::now_v7());
    // No method at all, and a 3-D Secure the customer never completes.
    let unpaid = app.place_paid(&token, &product, 2, None).await;
    let unauthenticated = app.place_paid(&token, &product, 3, Some(THREE_D_SECURE)).await;

    let waiting = app.order_when(&token, &unauthenticated, 15, |o| o["payment"]["dueAt"].is_string()).await;
    let (created, due) = (at(&waiting, "createdAt"), at(&waiting["payment"], "dueAt"));
    assert!(due > created && due <= created + chrono::Duration::seconds(5), "due 2 s after: {waiting}");
    for order in [&unpaid, &unauthenticated] {
        let cancelled = app.decided(&token, order).await;
        assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
        assert_eq!(cancelled["cancellationReason"], "payment_timeout", "{cancelled}");
        assert!(at(&cancelled, "cancelledAt") >= at(&cancelled["payment"], "dueAt"), "{cancelled}");
        assert!(cancelled["confirmedAt"].is_null() && cancelled["payment"]["paidAt"].is_null(), "{cancelled}");
    }
    app.levels_until(&product, (10, 0, 10)).await;
    // Payments cancels the open one with the provider; nobody was charged.
    let payment = app.payment_until(&token, &unauthenticated, "canceled").await;
    assert!(payment["paidAt"].is_null(), "{payment}");
    for order in [&unpaid, &unauthenticated] {
        let payments = app.payments_of(&token, order).await;
        assert!(payments.iter().all(|p| !CHARGED.iter().any(|s| p["status"] == *s)), "{payments:?}");
        assert_eq!(app.payment_events("PaymentSucceeded", order).await, 0);
        assert_problem(app.pay(&token, order, VISA).await, 409).await;
    }
}

/// The races of a payment still in flight when its order ends — by the timeout, or by the
/// customer's cancel: the order is cancelled and released, and the money is never kept (the payment
/// is cancelled with the provider, or, if it succeeded meanwhile, refunded).
#[tokio::test]
async fn a_payment_in_flight_when_its_order_times_out_or_is_cancelled_is_never_kept() {
    let app = spawn_app_with(&[("payments.fake.answer_delay_ms", "4000"), ("orders.payment_timeout_secs", "2")]).await;
    let product = app.stocked_product("PAY-RACE", 10, eur(200)).await;
    let token = customer(&Uuid::now_v7());
    let placed_at = tokio::time::Instant::now();
    let timed_out = app.place_paid(&token, &product, 2, Some(VISA)).await;
    let withdrawn = app.place_paid(&token, &product, 3, Some(VISA)).await;
    app.payment_status_until(&token, &withdrawn, "processing").await;
    let response = app.cancel(&token, &withdrawn).await;
    assert!(response.status().is_success(), "an order awaiting payment is cancelled: {:?}", response.text().await);

    for (order, reason) in [(&timed_out, "payment_timeout"), (&withdrawn, "customer")] {
        let cancelled = app.decided(&token, order).await;
        assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
        assert_eq!(cancelled["cancellationReason"], reason, "{cancelled}");
    }
    app.levels_until(&product, (10, 0, 10)).await;
    let rests = |p: &Value| p["status"] == "canceled" || p["status"] == "refunded";
    for order in [&timed_out, &withdrawn] {
        eventually(20, || async { app.payments_of(&token, order).await.iter().any(rests).then_some(()) }).await;
    }
    // Past the fake's answer (4 s after its call, itself after the reservation): nothing turns the
    // money around again.
    tokio::time::sleep_until(placed_at + std::time::Duration::from_secs(6)).await;
    for order in [&timed_out, &withdrawn] {
        let payments = app.payments_of(&token, order).await;
        assert_eq!(payments.len(), 1, "{payments:?}");
        assert!(rests(&payments[0]), "{payments:?}");
        let (succeeded, refunded) =
            (app.payment_events("PaymentSucceeded", order).await, app.payment_events("PaymentRefunded", order).await);
        assert_eq!(succeeded, refunded, "every success refunded: {payments:?}");
        if payments[0]["status"] == "refunded" {
            let shown = app.order_when(&token, order, 15, |o| o["payment"]["refundedAt"].is_string()).await;
            assert_eq!(shown["status"], "cancelled", "a late success does not revive the order: {shown}");
        }
    }
}

#[tokio::test]
async fn a_three_d_secure_payment_with_the_fake_waits_for_the_customer_who_confirms_or_fails_it() {
    let app = spawn_app_with(&[]).await;
    let product = app.stocked_product("PAY-3DS", 10, eur(500)).await;
    let token = customer(&Uuid::now_v7());
    let stranger = customer(&Uuid::now_v7());

    let passes = app.place_paid(&token, &product, 1, Some(THREE_D_SECURE)).await;
    let waiting = app.payment_status_until(&token, &passes, "requires_action").await;
    assert_eq!(waiting["status"], "awaiting_payment", "{waiting}");
    assert!(waiting["payment"]["clientSecret"].as_str().is_some_and(|s| !s.is_empty()), "{waiting}");
    let payment = app.payment_until(&token, &passes, "requires_action").await;
    assert_problem(app.complete_fake(&stranger, &payment, "confirm").await, 404).await;
    assert_problem(app.pay(&token, &passes, VISA).await, 409).await;
    let completed = app.complete_fake(&token, &payment, "confirm").await;
    assert!(completed.status().is_success(), "{:?}", completed.text().await);
    let confirmed = app.decided(&token, &passes).await;
    assert_eq!(confirmed["status"], "confirmed", "{confirmed}");
    assert_eq!(confirmed["payment"]["status"], "succeeded", "{confirmed}");
    app.payment_until(&token, &passes, "succeeded").await;

    let fails = app.place_paid(&token, &product, 2, Some(AUTHENTICATION_REQUIRED)).await;
    app.payment_status_until(&token, &fails, "requires_action").await;
    assert_eq!(app.levels(&product).await, (10, 3, 7));
    let payment = app.payment_until(&token, &fails, "requires_action").await;
    let failed = app.complete_fake(&token, &payment, "fail").await;
    assert!(failed.status().is_success(), "{:?}", failed.text().await);
    let rejected = app.decided(&token, &fails).await;
    assert_eq!(rejected["status"], "rejected", "{rejected}");
    assert_eq!(rejected["payment"]["status"], "failed", "{rejected}");
    assert!(rejected["rejectionReason"].is_string(), "{rejected}");
    app.payment_until(&token, &fails, "failed").await;
    app.levels_until(&product, (10, 1, 9)).await;
    assert_eq!(app.payment_events("PaymentSucceeded", &fails).await, 0);
}

/// A shop paying through localstripe, which sends its webhooks both to the shop and to a
/// recorder (same secret: the same signed bytes), so a test can replay what the shop received.
struct StripeShop {
    app: TestApp,
    stripe: LocalStripe,
    recorder: WebhookRecorder,
}

impl StripeShop {
    /// `None` (the test skips) without localstripe. Reconciliation waits a minute: what the
    /// tests see comes from the synchronous answers and the webhooks.
    async fn start() -> Option<Self> {
        let stripe = LocalStripe::start().await?;
        let app = spawn_app_with(&[
            ("payments.provider", "stripe"),
            ("payments.stripe.api_key", API_KEY),
            ("payments.stripe.webhook_secret", WEBHOOK_SECRET),
            ("payments.stripe.api_base", stripe.base_url()),
            ("payments.reconcile_after_secs", "60"),
        ])
        .await;
        let webhook = format!("{}/payments/webhooks/stripe", app.base("/payments"));
        stripe.configure_webhook("bazaar", &webhook, WEBHOOK_SECRET).await;
        let recorder = WebhookRecorder::start().await;
        stripe.configure_webhook("recorder", &recorder.url, WEBHOOK_SECRET).await;
        Some(Self { app, stripe, recorder })
    }

    /// The provider's id of the order's payment (a `pi_…`), once payments has recorded it.
    async fn intent_of(&self, token: &str, order: &Value) -> String {
        eventually(15, || async {
            let payments = self.app.payments_of(token, order).await;
            payments.iter().find_map(|p| p["providerPaymentId"].as_str().map(str::to_owned))
        })
        .await
    }

    /// `body` to the shop's webhook endpoint with `signature` (none: no header).
    async fn deliver(&self, body: &[u8], signature: Option<&str>) -> Response {
        let url = format!("{}/payments/webhooks/stripe", self.app.base("/payments"));
        let mut request = self.app.client.post(url).header("content-type", "application/json").body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("Stripe-Signature", signature);
        }
        request.send().await.expect("sent")
    }

    /// An event of `event_type` about the intent as localstripe has it now, as Stripe shapes one.
    async fn event_about(&self, event_type: &str, intent: &str, overrides: Value) -> Vec<u8> {
        let mut object = self.stripe.payment_intent(intent).await;
        for (k, v) in overrides.as_object().expect("an object") {
            object[k] = v.clone();
        }
        let event = json!({
            "id": format!("evt_test_{}", Uuid::new_v4().simple()),
            "object": "event",
            "api_version": "2020-08-27",
            "created": chrono::Utc::now().timestamp(),
            "livemode": false,
            "type": event_type,
            "data": {"object": object},
        });
        serde_json::to_vec(&event).expect("JSON")
    }
}

#[tokio::test]
async fn with_stripe_a_card_that_pays_confirms_the_order_once_and_the_webhook_changes_nothing() {
    let Some(shop) = StripeShop::start().await else { return };
    let app = &shop.app;
    let product = app.stocked_product("STRIPE-OK", 10, eur(1250)).await;
    let token = customer(&Uuid::now_v7());
    let order = app.place_paid(&token, &product, 2, Some(VISA)).await;
    let confirmed = app.decided(&token, &order).await;
    assert_eq!(confirmed["status"], "confirmed", "{confirmed}");
    assert_eq!(confirmed["payment"]["status"], "succeeded", "{confirmed}");
    assert_payment_matches_total(&confirmed);

    let intent_id = shop.intent_of(&token, &order).await;
    assert!(intent_id.starts_with("pi_"), "{intent_id}");
    let intent = shop.stripe.payment_intent(&intent_id).await;
    assert_eq!(
        (intent["status"].as_str(), intent["amount"].as_i64(), intent["currency"].as_str().map(str::to_lowercase)),
        (Some("succeeded"), Some(2500), Some("eur".to_owned())),
        "{intent}"
    );
    // The webhook of the same success arrives about a second later: no second effect.
    shop.recorder.wait_for("payment_intent.succeeded", &intent_id, 10).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.payment_events("PaymentSucceeded", &order).await, 1);
    let succeeded = shop.stripe.payment_intents().await.into_iter().filter(|i| i["status"] == "succeeded").count();
    assert_eq!(succeeded, 1, "one charge at the provider");
    assert_eq!(app.order(&token, &order).await["status"], "confirmed");
}

#[tokio::test]
async fn with_stripe_a_declined_card_rejects_the_order_and_charges_nothing() {
    let Some(shop) = StripeShop::start().await else { return };
    let app = &shop.app;
    let product = app.stocked_product("STRIPE-NO", 10, eur(800)).await;
    let token = customer(&Uuid::now_v7());
    let card = shop.stripe.card(DECLINING_CARD).await;
    let order = app.place_paid(&token, &product, 2, Some(&card)).await;
    let rejected = app.decided(&token, &order).await;
    assert_eq!(rejected["status"], "rejected", "{rejected}");
    let why = rejected["rejectionReason"].as_str().unwrap_or_else(|| panic!("a reason: {rejected}"));
    assert!(why.to_lowercase().contains("declined"), "{why}");
    assert_eq!(rejected["payment"]["status"], "failed", "{rejected}");
    app.levels_until(&product, (10, 0, 10)).await;
    let payments = app.payments_of(&token, &order).await;
    assert!(payments.iter().all(|p| p["status"] == "failed"), "{payments:?}");
    assert!(shop.stripe.payment_intents().await.iter().all(|i| i["status"] != "succeeded"), "nothing charged");
    // Its payment_failed webhook comes later and changes nothing.
    let intent_id = shop.intent_of(&token, &order).await;
    shop.recorder.wait_for("payment_intent.payment_failed", &intent_id, 10).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.payment_events("PaymentFailed", &order).await, 1);
    assert_eq!(app.order(&token, &order).await["status"], "rejected");
}

#[tokio::test]
async fn with_stripe_three_d_secure_waits_for_the_customer_and_the_webhook_confirms_the_order() {
    let Some(shop) = StripeShop::start().await else { return };
    let app = &shop.app;
    let product = app.stocked_product("STRIPE-3DS", 10, eur(900)).await;
    let token = customer(&Uuid::now_v7());
    let card = shop.stripe.card(THREE_D_SECURE_CARD).await;
    let order = app.place_paid(&token, &product, 1, Some(&card)).await;
    let waiting = app.payment_status_until(&token, &order, "requires_action").await;
    assert_eq!(waiting["status"], "awaiting_payment", "{waiting}");
    let client_secret = waiting["payment"]["clientSecret"].as_str().expect("the client secret").to_owned();
    let intent_id = shop.intent_of(&token, &order).await;
    assert_eq!(shop.stripe.payment_intent(&intent_id).await["client_secret"], client_secret.as_str());

    // The customer's browser authenticates with the provider; only its webhook tells the shop.
    shop.stripe.authenticate(&intent_id, &client_secret, true).await;
    let confirmed = app.decided(&token, &order).await;
    assert_eq!(confirmed["status"], "confirmed", "{confirmed}");
    assert_eq!(confirmed["payment"]["status"], "succeeded", "{confirmed}");
    app.payment_until(&token, &order, "succeeded").await;

    // A failed authentication: localstripe sends no webhook for it, so the test sends the one
    // Stripe documents (`payment_intent.payment_failed`), signed with the shop's secret.
    let failing = app.place_paid(&token, &product, 2, Some(&card)).await;
    let waiting = app.payment_status_until(&token, &failing, "requires_action").await;
    let client_secret = waiting["payment"]["clientSecret"].as_str().expect("the client secret").to_owned();
    let intent_id = shop.intent_of(&token, &failing).await;
    shop.stripe.authenticate(&intent_id, &client_secret, false).await;
    let failure = json!({
        "code": "payment_intent_authentication_failure",
        "message": "The provided PaymentMethod has failed authentication.",
        "type": "invalid_request_error",
    });
    let body =
        shop.event_about("payment_intent.payment_failed", &intent_id, json!({"last_payment_error": failure})).await;
    let signature = shop.stripe.signature_header(WEBHOOK_SECRET, &body);
    assert_eq!(shop.deliver(&body, Some(&signature)).await.status(), 200);
    let rejected = app.decided(&token, &failing).await;
    assert_eq!(rejected["status"], "rejected", "{rejected}");
    app.levels_until(&product, (10, 1, 9)).await;
}

#[tokio::test]
async fn with_stripe_a_paid_order_cancelled_before_dispatch_is_refunded_once() {
    let Some(shop) = StripeShop::start().await else { return };
    let app = &shop.app;
    let product = app.stocked_product("STRIPE-REFUND", 10, eur(600)).await;
    let token = customer(&Uuid::now_v7());
    let order = app.place_paid(&token, &product, 2, Some(VISA)).await;
    assert_eq!(app.decided(&token, &order).await["status"], "confirmed");
    let intent_id = shop.intent_of(&token, &order).await;
    app.shipment_of(&token, &order).await;

    assert_eq!(app.cancel(&token, &order).await.status(), 202);
    app.order_until(&token, &order, "cancelled").await;
    app.levels_until(&product, (10, 0, 10)).await;
    // localstripe sends no `charge.refunded`: the refund call's own answer decides.
    let refunded = app.order_when(&token, &order, 15, |o| o["payment"]["refundedAt"].is_string()).await;
    assert_eq!(refunded["payment"]["status"], "refunded", "{refunded}");
    app.payment_until(&token, &order, "refunded").await;
    let refunds = shop.stripe.get(&format!("/v1/refunds?payment_intent={intent_id}&limit=100")).await;
    let of_this: Vec<&Value> = refunds["data"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|r| r["payment_intent"] == intent_id.as_str())
        .collect();
    assert_eq!(of_this.len(), 1, "refunded once at the provider: {refunds}");
    assert_eq!(of_this[0]["amount"], 1200, "in full: {refunds}");
    assert_eq!(app.payment_events("PaymentRefunded", &order).await, 1);
}

#[tokio::test]
async fn with_stripe_a_forged_webhook_is_refused_without_effect() {
    let Some(shop) = StripeShop::start().await else { return };
    let app = &shop.app;
    let product = app.stocked_product("STRIPE-FORGED", 10, eur(700)).await;
    let token = customer(&Uuid::now_v7());
    let card = shop.stripe.card(THREE_D_SECURE_CARD).await;
    let order = app.place_paid(&token, &product, 1, Some(&card)).await;
    app.payment_status_until(&token, &order, "requires_action").await;
    let intent_id = shop.intent_of(&token, &order).await;

    // "It succeeded", claims someone without the secret.
    let forged = shop.event_about("payment_intent.succeeded", &intent_id, json!({"status": "succeeded"})).await;
    let now = chrono::Utc::now().timestamp();
    let right = shop.stripe.sign(WEBHOOK_SECRET, now, &forged);
    let stale = now - 600;
    let bad_signatures = [
        None,
        Some("nonsense".to_owned()),
        Some(format!("t={now},v1={}", shop.stripe.sign("whsec_guessed", now, &forged))),
        Some(format!("t={now},v1={}", "0".repeat(64))),
        // The right MAC with another timestamp, and a genuine one too old to accept.
        Some(format!("t={},v1={right}", now + 1)),
        Some(format!("t={stale},v1={}", shop.stripe.sign(WEBHOOK_SECRET, stale, &forged))),
    ];
    for signature in &bad_signatures {
        assert_problem(shop.deliver(&forged, signature.as_deref()).await, 400).await;
    }
    // The right signature over other bytes.
    let tampered = String::from_utf8(forged.clone()).expect("UTF-8").replace("\"livemode\":false", "\"livemode\":true");
    assert_problem(shop.deliver(tampered.as_bytes(), Some(&format!("t={now},v1={right}"))).await, 400).await;

    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let still = app.order(&token, &order).await;
    assert_eq!(
        (still["status"].as_str(), still["payment"]["status"].as_str()),
        (Some("awaiting_payment"), Some("requires_action"))
    );
    assert_eq!(app.payments_of(&token, &order).await[0]["status"], "requires_action");
    assert_eq!(app.payment_events("PaymentSucceeded", &order).await, 0);

    // Events it does not handle are acknowledged and ignored.
    let other = shop.event_about("payment_intent.created", &intent_id, json!({})).await;
    let signature = shop.stripe.signature_header(WEBHOOK_SECRET, &other);
    assert_eq!(shop.deliver(&other, Some(&signature)).await.status(), 200);
    assert_eq!(app.order(&token, &order).await["payment"]["status"], "requires_action");
}

#[tokio::test]
async fn with_stripe_a_signed_webhook_delivered_three_times_has_one_effect() {
    let Some(shop) = StripeShop::start().await else { return };
    let app = &shop.app;
    let product = app.stocked_product("STRIPE-TWICE", 10, eur(450)).await;
    let token = customer(&Uuid::now_v7());
    let card = shop.stripe.card(THREE_D_SECURE_CARD).await;
    let order = app.place_paid(&token, &product, 1, Some(&card)).await;
    let waiting = app.payment_status_until(&token, &order, "requires_action").await;
    let intent_id = shop.intent_of(&token, &order).await;
    shop.stripe.authenticate(&intent_id, waiting["payment"]["clientSecret"].as_str().expect("a secret"), true).await;

    // The shop's copy confirms the order; the recorder's is the same signed bytes.
    let delivery = shop.recorder.wait_for("payment_intent.succeeded", &intent_id, 10).await;
    let confirmed = app.decided(&token, &order).await;
    assert_eq!(confirmed["status"], "confirmed", "{confirmed}");
    for _ in 0..2 {
        let again = shop.deliver(&delivery.body, Some(delivery.signature())).await;
        assert_eq!(again.status(), 200, "a repeat is acknowledged");
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.payment_events("PaymentSucceeded", &order).await, 1, "one effect");
    let now = app.order(&token, &order).await;
    assert_eq!((&now["status"], &now["payment"]["paidAt"]), (&confirmed["status"], &confirmed["payment"]["paidAt"]));
    let payments = app.payments_of(&token, &order).await;
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0]["status"], "succeeded");
    assert_eq!(shop.stripe.payment_intent(&intent_id).await["status"], "succeeded");
}

/// A stream of paid orders while the process hosting payments is killed with SIGKILL and
/// restarted: every order still ends confirmed or rejected, and none is charged twice.
#[tokio::test]
async fn killing_the_payments_process_mid_stream_charges_no_order_twice_and_strands_none() {
    let Some((shop, split)) = crate::split::Split::start().await else { return };
    let product = shop.stocked_product("PAY-CRASH", 30, eur(500)).await;
    let token = customer(&Uuid::now_v7());
    let placed_so_far = std::sync::atomic::AtomicUsize::new(0);
    let placing = async {
        let mut placed = Vec::new();
        for _ in 0..40 {
            placed.push(shop.place_paid(&token, &product, 1, Some(VISA)).await);
            placed_so_far.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(15)).await;
        }
        placed
    };
    let crashing = async {
        while placed_so_far.load(std::sync::atomic::Ordering::SeqCst) < 8 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        split.kill("payments");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        split.restart("payments").await;
    };
    let (placed, ()) = tokio::join!(placing, crashing);
    let mut confirmed = 0;
    for order in &placed {
        // A payment row the dead process had leased waits for its lease to lapse.
        let decided = shop.decided_within(&token, order, 120).await;
        let payments = shop.payments_of_order(order).await;
        let charged = payments.iter().filter(|p| CHARGED.iter().any(|s| p["status"] == *s)).count();
        assert!(charged <= 1, "order {} charged {charged} times: {payments:?}", order["id"]);
        match decided["status"].as_str() {
            Some("confirmed") => {
                confirmed += 1;
                assert_eq!(charged, 1, "{payments:?}");
            }
            Some("rejected") => assert_eq!(charged, 0, "{payments:?}"),
            other => panic!("order {} ended {other:?}: {decided}", order["id"]),
        }
    }
    assert_eq!(confirmed, 30, "exactly the stock was sold, and paid for");
    assert_eq!(shop.levels(&product).await, (30, 30, 0));
    let published = shop.published("payments").await;
    let mut succeeded: Vec<&Value> =
        published.iter().filter(|e| e.event == "PaymentSucceeded").map(|e| &e.data["orderId"]).collect();
    succeeded.sort_by_key(|v| v.to_string());
    let before = succeeded.len();
    succeeded.dedup();
    assert_eq!((before, succeeded.len()), (30, 30), "one PaymentSucceeded per paid order");
}
