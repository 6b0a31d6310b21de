//! The Stripe provider (`payments.provider = "stripe"`): a small typed client of the PaymentIntents
//! and Refunds APIs (form-encoded requests, `Authorization: Bearer`, an `Idempotency-Key` on every
//! write), reading only the fields Bazaar uses; and the webhook's signature check.
//!
//! Stripe answers a decline with HTTP 402 and the intent in `error.payment_intent`; a request it
//! refuses (an unknown payment method, an intent in another state) with another 4xx; a 429 or
//! 5xx, or no answer, is tried again later with the same idempotency key.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;

use super::{NewIntent, PaymentProvider, ProviderError, Refund};
use crate::domain::{Failure, Intent, IntentStatus};

pub const NAME: &str = "stripe";

pub struct StripeProvider {
    http: reqwest::Client,
    api_base: String,
    api_key: SecretString,
}

/// A PaymentIntent, with the fields used.
#[derive(Debug, Deserialize)]
pub struct PaymentIntent {
    pub id: String,
    pub status: String,
    pub client_secret: Option<String>,
    #[serde(default)]
    pub amount: i64,
    #[serde(default)]
    pub currency: String,
    pub last_payment_error: Option<ApiError>,
}

/// Stripe's `error` object (and an intent's `last_payment_error`).
#[derive(Debug, Default, Deserialize)]
pub struct ApiError {
    pub code: Option<String>,
    pub decline_code: Option<String>,
    pub message: Option<String>,
    pub payment_intent: Option<Box<PaymentIntent>>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: ApiError,
}

#[derive(Debug, Deserialize)]
struct RefundObject {
    id: String,
    status: Option<String>,
}

impl ApiError {
    /// The failure it names: the decline code when there is one (`insufficient_funds`), else the code.
    fn failure(&self, retryable: bool) -> Failure {
        let code = self.decline_code.clone().or_else(|| self.code.clone()).unwrap_or_else(|| "payment_failed".into());
        Failure { code, message: self.message.clone().unwrap_or_else(|| "The payment failed.".into()), retryable }
    }
}

impl PaymentIntent {
    pub fn into_intent(self) -> Intent {
        let status = IntentStatus::parse(&self.status).unwrap_or(IntentStatus::Processing);
        // A failed attempt leaves the intent waiting for another method: that is a decline,
        // unless the method itself was unusable.
        let failure = match status {
            IntentStatus::RequiresPaymentMethod => self.last_payment_error.as_ref().map(|e| {
                let unusable = matches!(e.code.as_deref(), Some("resource_missing" | "payment_method_unactivated"));
                e.failure(unusable)
            }),
            _ => None,
        };
        Intent { id: self.id, status, client_secret: self.client_secret, failure }
    }
}

impl StripeProvider {
    pub fn new(api_base: &str, api_key: SecretString, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .context("failed to build the Stripe client")?;
        Ok(Self { http, api_base: api_base.trim_end_matches('/').to_owned(), api_key })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api_base)
    }

    /// POSTs `form` to `path` with `key`; the object on 2xx, the error otherwise.
    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        form: &[(&str, String)],
        key: &str,
    ) -> Result<T, (reqwest::StatusCode, ApiError)> {
        let request = self
            .http
            .post(self.url(path))
            .bearer_auth(self.api_key.expose_secret())
            .header("Idempotency-Key", key)
            .form(form);
        self.send(request).await
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, (reqwest::StatusCode, ApiError)> {
        let unreachable = |e: reqwest::Error| {
            let message = format!("Stripe is unreachable: {}", e.without_url());
            (reqwest::StatusCode::SERVICE_UNAVAILABLE, ApiError { message: Some(message), ..Default::default() })
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| {
                let message = format!("Stripe's answer does not parse: {e}");
                (reqwest::StatusCode::BAD_GATEWAY, ApiError { message: Some(message), ..Default::default() })
            });
        }
        let error = serde_json::from_slice::<ErrorBody>(&body).map(|b| b.error).unwrap_or_default();
        Err((status, error))
    }

    /// Maps a refused call: 402 a decline, 429/5xx/401/403 passing (or a configuration to fix: try
    /// again later), another 4xx a request Stripe will not do — `wrong_state` says which of those
    /// mean "the intent is in another state" for this call.
    fn refused(&self, (status, mut error): (reqwest::StatusCode, ApiError), wrong_state: bool) -> ProviderError {
        let code = error.code.clone().unwrap_or_default();
        match status.as_u16() {
            402 => {
                let intent = error.payment_intent.take().map(|pi| Box::new(pi.into_intent()));
                ProviderError::Refused { failure: error.failure(false), intent }
            }
            401 | 403 | 408 | 409 | 429 | 500.. => ProviderError::Unavailable(anyhow::anyhow!(
                "Stripe answered {status}: {}",
                error.message.unwrap_or_default()
            )),
            // localstripe names no code for a confirmation or cancellation in the wrong state.
            _ if wrong_state && (code == "payment_intent_unexpected_state" || code.is_empty()) => {
                ProviderError::WrongState(error.message.unwrap_or(code))
            }
            _ => ProviderError::Refused { failure: error.failure(true), intent: None },
        }
    }

    /// A cheap authenticated call: whether Stripe answers, and accepts the key.
    pub async fn reachable(&self) -> Result<(), String> {
        let request = self.http.get(self.url("/v1/balance")).bearer_auth(self.api_key.expose_secret());
        match request.send().await {
            Ok(response) if response.status().is_server_error() => Err(format!("answered {}", response.status())),
            Ok(response) if response.status() == reqwest::StatusCode::UNAUTHORIZED => {
                Err("refuses payments.stripe.api_key".into())
            }
            Ok(_) => Ok(()),
            Err(e) if e.is_timeout() => Err("did not answer in time".into()),
            Err(_) => Err("unreachable".into()),
        }
    }
}

#[async_trait]
impl PaymentProvider for StripeProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn create(&self, new: &NewIntent, key: &str) -> Result<Intent, ProviderError> {
        let form = [
            ("amount", new.amount.amount_minor().to_string()),
            ("currency", new.amount.currency().code().to_ascii_lowercase()),
            ("payment_method", new.payment_method.clone()),
            // Cards only: a method that redirects would need a `return_url`.
            ("payment_method_types[]", "card".to_owned()),
            ("metadata[order_id]", new.order_id.to_string()),
            ("metadata[attempt]", new.attempt.to_string()),
        ];
        let intent: PaymentIntent =
            self.post("/v1/payment_intents", &form, key).await.map_err(|e| self.refused(e, false))?;
        // A key reused with another request would be refused by Stripe; this guards the rest.
        if intent.amount != new.amount.amount_minor()
            || !intent.currency.eq_ignore_ascii_case(new.amount.currency().code())
        {
            return Err(anyhow::anyhow!(
                "Stripe's intent {} is for {} {}, not the order's amount",
                intent.id,
                intent.amount,
                intent.currency
            )
            .into());
        }
        Ok(intent.into_intent())
    }

    async fn confirm(&self, id: &str, key: &str) -> Result<Intent, ProviderError> {
        let path = format!("/v1/payment_intents/{id}/confirm");
        let intent: PaymentIntent = self.post(&path, &[], key).await.map_err(|e| self.refused(e, true))?;
        Ok(intent.into_intent())
    }

    async fn cancel(&self, id: &str, key: &str) -> Result<Intent, ProviderError> {
        let path = format!("/v1/payment_intents/{id}/cancel");
        let intent: PaymentIntent = self.post(&path, &[], key).await.map_err(|e| self.refused(e, true))?;
        Ok(intent.into_intent())
    }

    async fn refund(&self, id: &str, key: &str) -> Result<Refund, ProviderError> {
        let form = [("payment_intent", id.to_owned())];
        match self.post::<RefundObject>("/v1/refunds", &form, key).await {
            Ok(refund) => {
                Ok(Refund { id: Some(refund.id), status: refund.status.unwrap_or_else(|| "succeeded".into()) })
            }
            // Refunded already (from the dashboard, say): the money is back all the same.
            Err((_, error)) if error.code.as_deref() == Some("charge_already_refunded") => {
                Ok(Refund { id: None, status: "succeeded".into() })
            }
            Err(e) => Err(self.refused(e, false)),
        }
    }

    async fn retrieve(&self, id: &str) -> Result<Intent, ProviderError> {
        let request =
            self.http.get(self.url(&format!("/v1/payment_intents/{id}"))).bearer_auth(self.api_key.expose_secret());
        let intent: PaymentIntent = self.send(request).await.map_err(|e| self.refused(e, false))?;
        Ok(intent.into_intent())
    }
}

/// How old a signed webhook may be.
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Stripe-Signature header")]
    Missing,
    #[error("the Stripe-Signature header has no timestamp or no v1 signature")]
    Malformed,
    #[error("the signature is older than the tolerance")]
    TooOld,
    #[error("no signature matches")]
    Mismatch,
}

/// Checks a `Stripe-Signature` header (`t=…,v1=…[,v1=…]`) against the raw `payload`: one `v1`
/// must be the hex HMAC-SHA256 of `"{t}.{payload}"` under `secret` (compared in constant time),
/// and `t` within [`SIGNATURE_TOLERANCE_SECS`] of `now` (Unix seconds).
pub fn verify_signature(header: Option<&str>, payload: &[u8], secret: &[u8], now: i64) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v1)) => signatures.extend(hex::decode(v1).ok()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - timestamp).abs() > SIGNATURE_TOLERANCE_SECS {
        return Err(SignatureError::TooOld);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    let any = signatures.iter().any(|signature| mac.clone().verify_slice(signature).is_ok());
    if any { Ok(()) } else { Err(SignatureError::Mismatch) }
}

/// A webhook event, with the fields used.
#[derive(Debug, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: EventData,
}

#[derive(Debug, Deserialize)]
pub struct EventData {
    pub object: serde_json::Value,
}

/// What a webhook event says about a payment.
#[derive(Debug)]
pub enum News {
    /// `payment_intent.succeeded` / `payment_intent.payment_failed`: the intent as it is.
    Intent(Intent),
    /// `charge.refunded`: the charge of this intent was refunded.
    Refunded { intent_id: String, refund_id: Option<String> },
    /// Any other event: acknowledged, ignored.
    Ignored,
}

impl Event {
    pub fn news(self) -> Result<News, serde_json::Error> {
        Ok(match self.kind.as_str() {
            "payment_intent.succeeded" | "payment_intent.payment_failed" => {
                let intent: PaymentIntent = serde_json::from_value(self.data.object)?;
                let mut intent = intent.into_intent();
                if self.kind == "payment_intent.payment_failed" && intent.failure.is_none() {
                    intent.failure = Some(Failure::declined("payment_failed", "The payment failed."));
                }
                News::Intent(intent)
            }
            "charge.refunded" => {
                #[derive(Deserialize)]
                struct Charge {
                    payment_intent: Option<String>,
                    refunds: Option<Refunds>,
                }
                #[derive(Deserialize)]
                struct Refunds {
                    data: Vec<RefundObject>,
                }
                let charge: Charge = serde_json::from_value(self.data.object)?;
                match charge.payment_intent {
                    Some(intent_id) => News::Refunded {
                        intent_id,
                        refund_id: charge.refunds.and_then(|r| r.data.into_iter().next()).map(|r| r.id),
                    },
                    None => News::Ignored,
                }
            }
            _ => News::Ignored,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The header Stripe would send for `payload` at `t`.
    pub(crate) fn sign(payload: &[u8], secret: &[u8], t: i64) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key");
        mac.update(format!("{t}.").as_bytes());
        mac.update(payload);
        format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
    }

    const SECRET: &[u8] = b"whsec_test";
    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_signature_of_the_payload_at_its_time_is_accepted() {
        let payload = br#"{"id":"evt_1"}"#;
        assert_eq!(verify_signature(Some(&sign(payload, SECRET, NOW)), payload, SECRET, NOW), Ok(()));
        assert_eq!(verify_signature(Some(&sign(payload, SECRET, NOW - 299)), payload, SECRET, NOW), Ok(()));
    }

    #[test]
    fn a_wrong_secret_a_tampered_body_or_an_old_signature_is_refused() {
        let payload = br#"{"id":"evt_1"}"#;
        let header = sign(payload, b"whsec_other", NOW);
        assert_eq!(verify_signature(Some(&header), payload, SECRET, NOW), Err(SignatureError::Mismatch));
        let header = sign(payload, SECRET, NOW);
        let tampered = br#"{"id":"evt_2"}"#;
        assert_eq!(verify_signature(Some(&header), tampered, SECRET, NOW), Err(SignatureError::Mismatch));
        let old = sign(payload, SECRET, NOW - 301);
        assert_eq!(verify_signature(Some(&old), payload, SECRET, NOW), Err(SignatureError::TooOld));
        assert_eq!(verify_signature(None, payload, SECRET, NOW), Err(SignatureError::Missing));
        assert_eq!(verify_signature(Some("v1=abcd"), payload, SECRET, NOW), Err(SignatureError::Malformed));
        assert_eq!(verify_signature(Some(&format!("t={NOW}")), payload, SECRET, NOW), Err(SignatureError::Malformed));
    }

    #[test]
    fn any_of_several_v1_signatures_may_match() {
        let payload = br#"{"id":"evt_1"}"#;
        let good = sign(payload, SECRET, NOW);
        let good_v1 = good.split_once(",v1=").map(|(_, v1)| v1.to_owned()).expect("a v1");
        let header = format!("t={NOW},v1={},v0=ignored,v1={good_v1}", "00".repeat(32));
        assert_eq!(verify_signature(Some(&header), payload, SECRET, NOW), Ok(()));
        let none = format!("t={NOW},v1={},v1=zz", "00".repeat(32));
        assert_eq!(verify_signature(Some(&none), payload, SECRET, NOW), Err(SignatureError::Mismatch));
    }

    #[test]
    fn webhook_events_say_what_became_of_the_intent() {
        let failed: Event = serde_json::from_str(
            r#"{"id":"evt_1","type":"payment_intent.payment_failed","data":{"object":{"id":"pi_1","object":"payment_intent",
            "status":"requires_payment_method","client_secret":"pi_1_secret_x","amount":1299,"currency":"eur",
            "last_payment_error":{"code":"card_declined","decline_code":"insufficient_funds","message":"Your card has insufficient funds."}}}}"#,
        )
        .expect("parses");
        let News::Intent(intent) = failed.news().expect("parses") else { panic!("an intent") };
        let failure = intent.failure.expect("a failure");
        assert_eq!((failure.code.as_str(), failure.retryable), ("insufficient_funds", false));

        let refunded: Event = serde_json::from_str(
            r#"{"id":"evt_2","type":"charge.refunded","data":{"object":{"id":"ch_1","payment_intent":"pi_1","refunds":{"data":[{"id":"re_1","status":"succeeded"}]}}}}"#,
        )
        .expect("parses");
        assert!(
            matches!(refunded.news(), Ok(News::Refunded { intent_id, refund_id: Some(r) }) if intent_id == "pi_1" && r == "re_1")
        );
        let other: Event =
            serde_json::from_str(r#"{"id":"evt_3","type":"customer.created","data":{"object":{}}}"#).expect("parses");
        assert!(matches!(other.news(), Ok(News::Ignored)));
    }
}

/// Against a Stripe-compatible server: `BAZAAR_TEST_LOCALSTRIPE=http://127.0.0.1:PORT` (localstripe,
/// see `../shared/STACK-NOTES.md`); skipped when unset.
#[cfg(test)]
mod localstripe {
    use super::*;
    use crate::domain::Money;

    fn stripe() -> Option<(StripeProvider, String)> {
        let base = std::env::var("BAZAAR_TEST_LOCALSTRIPE").ok()?;
        let stripe = StripeProvider::new(&base, "sk_test_bazaar".into(), Duration::from_secs(5)).expect("a client");
        Some((stripe, base))
    }

    fn new(method: &str) -> NewIntent {
        NewIntent {
            amount: Money::new(1299, contracts::Currency::parse("EUR").expect("valid")).expect("valid"),
            payment_method: method.into(),
            order_id: uuid::Uuid::now_v7(),
            attempt: 1,
        }
    }

    fn key(step: &str) -> String {
        format!("{}:{step}", uuid::Uuid::now_v7())
    }

    /// A card payment method of localstripe's, by number.
    async fn card(base: &str, number: &str) -> String {
        #[derive(Deserialize)]
        struct Created {
            id: String,
        }
        let form = [
            ("type", "card"),
            ("card[number]", number),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2040"),
            ("card[cvc]", "123"),
        ];
        let response = reqwest::Client::new()
            .post(format!("{base}/v1/payment_methods"))
            .bearer_auth("sk_test_bazaar")
            .form(&form)
            .send()
            .await
            .expect("localstripe answers");
        response.json::<Created>().await.expect("a payment method").id
    }

    #[tokio::test]
    async fn a_card_is_charged_refunded_declined_or_asked_for_an_action() {
        let Some((stripe, base)) = stripe() else {
            eprintln!("skipped: BAZAAR_TEST_LOCALSTRIPE is not set");
            return;
        };
        assert_eq!(stripe.reachable().await, Ok(()));

        let created = stripe.create(&new("pm_card_visa"), &key("create")).await.expect("created");
        assert_eq!(created.status, IntentStatus::RequiresConfirmation);
        let paid = stripe.confirm(&created.id, &key("confirm")).await.expect("confirmed");
        assert_eq!(paid.status, IntentStatus::Succeeded);
        assert!(matches!(stripe.confirm(&created.id, &key("confirm")).await, Err(ProviderError::WrongState(_))));
        assert!(matches!(stripe.cancel(&created.id, &key("cancel")).await, Err(ProviderError::WrongState(_))));
        let refund = stripe.refund(&created.id, &key("refund")).await.expect("refunded");
        assert!(refund.id.is_some_and(|id| id.starts_with("re_")));

        let declined = stripe.create(&new("pm_card_chargeCustomerFail"), &key("create")).await.expect("created");
        match stripe.confirm(&declined.id, &key("confirm")).await {
            Err(ProviderError::Refused { failure, intent }) => {
                assert_eq!((failure.code.as_str(), failure.retryable), ("card_declined", false));
                // Stripe names the intent in `error.payment_intent`; localstripe does not.
                assert!(intent.is_none_or(|i| i.status == IntentStatus::RequiresPaymentMethod));
            }
            other => panic!("not declined: {other:?}"),
        }
        let read = stripe.retrieve(&declined.id).await.expect("read");
        assert_eq!(read.status, IntentStatus::RequiresPaymentMethod);
        assert!(read.failure.is_some_and(|f| !f.retryable));

        let three_d = card(&base, "4000002500003155").await;
        let pending = stripe.create(&new(&three_d), &key("create")).await.expect("created");
        let pending = stripe.confirm(&pending.id, &key("confirm")).await.expect("confirmed");
        assert_eq!(pending.status, IntentStatus::RequiresAction);
        assert!(pending.client_secret.is_some());
        let canceled = stripe.cancel(&pending.id, &key("cancel")).await.expect("canceled");
        assert_eq!(canceled.status, IntentStatus::Canceled);

        match stripe.create(&new("pm_doesNotExist"), &key("create")).await {
            Err(ProviderError::Refused { failure, .. }) => assert!(failure.retryable, "{failure:?}"),
            other => panic!("not refused: {other:?}"),
        }
    }
}
