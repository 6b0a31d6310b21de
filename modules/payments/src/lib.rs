//! The payments module: takes an order's money with a payment provider and gives it back when the
//! order ends unshipped.
//!
//! Orders' `OrderPaymentRequested` (one per attempt) becomes a payment that the worker creates and
//! confirms with the provider; the answer is published as `PaymentSucceeded`, `PaymentFailed` or
//! `PaymentActionRequired` (the customer completes 3-D Secure, then the provider's webhook
//! decides). `OrderCancelled` cancels an open payment or refunds a paid one (`PaymentRefunded`),
//! and a success that arrives after the order ended is refunded too. `service.rs` says how money
//! never moves twice.
//!
//! The provider is the embedded fake (`payments.provider = "fake"`, the default: Stripe's test
//! payment methods, no network) or Stripe. For Stripe's test mode:
//! `BAZAAR__PAYMENTS__PROVIDER=stripe`, `BAZAAR__PAYMENTS__STRIPE__API_KEY=sk_test_…`, and the
//! webhook's signing secret in `BAZAAR__PAYMENTS__STRIPE__WEBHOOK_SECRET=whsec_…` — the one
//! `stripe listen --forward-to localhost:8080/payments/webhooks/stripe` prints, or the endpoint's
//! in the dashboard (events `payment_intent.succeeded`, `payment_intent.payment_failed`,
//! `charge.refunded`). `payments.stripe.api_base` points at a Stripe-compatible server instead
//! (localstripe in tests).

mod domain;
mod events;
mod http;
mod persistence;
mod provider;
mod service;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::web;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contracts::{EventType, IntegrationEvent};
use futures::FutureExt;
use futures::future::BoxFuture;
use kernel::housekeeping::Purge;
use kernel::settings::{Checks, Section, SectionSpec, SettingsError};
use kernel::{EventHandler, HealthCheck, Hosted, Module, ModuleContext, Routes};
use migrations::MigratorTrait;
use payments_contracts::{PaymentActionRequired, PaymentFailed, PaymentRefunded, PaymentSucceeded};
use sea_orm::{DatabaseConnection, DbErr};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::provider::PaymentProvider;
use crate::provider::fake::FakeProvider;
use crate::provider::stripe::StripeProvider;
use crate::service::{Payments, Timing};

/// The module's name: its settings section, its tables' prefix, its queue.
pub const NAME: &str = "payments";

/// Which provider takes the money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ProviderKind {
    /// Embedded, no network: Stripe's test payment methods, kept in the module's database.
    #[default]
    Fake,
    Stripe,
}

/// The module's `[payments]` section.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
struct PaymentsSection {
    /// `fake` (the default) or `stripe`.
    provider: ProviderKind,
    /// How often the worker looks for due payments when no event woke it.
    poll_interval_ms: u64,
    /// How long a payment waits in `processing` or `requires_action` for the provider's news
    /// before the worker asks the provider (a webhook may be lost).
    reconcile_after_secs: u64,
    fake: FakeSection,
    stripe: StripeSection,
    /// Whether the settings were checked for production: the fake provider's development
    /// endpoints are then refused. Not a setting: `check` records it (the module's context does
    /// not carry the environment).
    #[serde(skip)]
    production: AtomicBool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct FakeSection {
    /// 0: the fake answers at once; more: it answers `processing` and decides that much later,
    /// the way a webhook would.
    answer_delay_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
struct StripeSection {
    /// The secret API key (`sk_test_…` in test mode); required with `provider = "stripe"`.
    #[serde(serialize_with = "kernel::settings::redacted_optional")]
    api_key: Option<SecretString>,
    /// The webhook endpoint's signing secret (`whsec_…`); required with `provider = "stripe"`.
    #[serde(serialize_with = "kernel::settings::redacted_optional")]
    webhook_secret: Option<SecretString>,
    /// Stripe's API, or a Stripe-compatible server (localstripe in tests).
    api_base: String,
    timeout_secs: u64,
}

impl Default for StripeSection {
    fn default() -> Self {
        Self { api_key: None, webhook_secret: None, api_base: "https://api.stripe.com".into(), timeout_secs: 10 }
    }
}

impl Default for PaymentsSection {
    fn default() -> Self {
        Self {
            provider: ProviderKind::Fake,
            poll_interval_ms: 1000,
            reconcile_after_secs: 60,
            fake: FakeSection::default(),
            stripe: StripeSection::default(),
            production: AtomicBool::new(false),
        }
    }
}

impl Section for PaymentsSection {
    const KEY: &'static str = NAME;

    fn check(&self, checks: Checks) -> Result<(), SettingsError> {
        self.production.store(checks.production, Ordering::Relaxed);
        if self.poll_interval_ms == 0 {
            return Err(SettingsError::new("payments.poll_interval_ms", "must be at least 1"));
        }
        if self.reconcile_after_secs == 0 {
            return Err(SettingsError::new("payments.reconcile_after_secs", "must be at least 1"));
        }
        if self.provider == ProviderKind::Stripe {
            if self.stripe.api_key.is_none() {
                return Err(SettingsError::new(
                    "payments.stripe.api_key",
                    "is required with payments.provider = \"stripe\" (BAZAAR__PAYMENTS__STRIPE__API_KEY)",
                ));
            }
            if self.stripe.webhook_secret.is_none() {
                return Err(SettingsError::new(
                    "payments.stripe.webhook_secret",
                    "is required with payments.provider = \"stripe\" (BAZAAR__PAYMENTS__STRIPE__WEBHOOK_SECRET)",
                ));
            }
            if !(self.stripe.api_base.starts_with("https://") || self.stripe.api_base.starts_with("http://")) {
                return Err(SettingsError::new("payments.stripe.api_base", "must be an http(s) URL"));
            }
            if self.stripe.timeout_secs == 0 {
                return Err(SettingsError::new("payments.stripe.timeout_secs", "must be at least 1"));
            }
        }
        Ok(())
    }
}

#[derive(OpenApi)]
#[openapi(
    paths(http::list_payments, http::get_payment, http::confirm_payment, http::fail_payment, http::stripe_webhook),
    tags((name = "payments", description = "Payments of orders, and the payment provider's webhook"))
)]
struct PaymentsApi;

pub struct PaymentsModule;

#[async_trait]
impl Module for PaymentsModule {
    fn name(&self) -> &'static str {
        NAME
    }

    fn path_prefixes(&self) -> &'static [&'static str] {
        &["/payments"]
    }

    fn settings(&self) -> Vec<SectionSpec> {
        vec![SectionSpec::of::<PaymentsSection>()]
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        PaymentsApi::openapi()
    }

    fn publishes(&self) -> Vec<EventType> {
        vec![
            PaymentActionRequired::event_type(),
            PaymentSucceeded::event_type(),
            PaymentFailed::event_type(),
            PaymentRefunded::event_type(),
        ]
    }

    fn consumes(&self) -> Vec<EventType> {
        events::routes().events()
    }

    async fn migrate(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        migrations::Migrator::up(db, None).await
    }

    async fn start(&self, ctx: ModuleContext) -> anyhow::Result<Box<dyn Hosted>> {
        let section = ctx.section::<PaymentsSection>();
        let production = section.production.load(Ordering::Relaxed);
        let timing = Timing {
            poll_interval: Duration::from_millis(section.poll_interval_ms),
            reconcile_after: Duration::from_secs(section.reconcile_after_secs),
        };
        let (provider, fake, stripe): (Arc<dyn PaymentProvider>, _, _) = match section.provider {
            ProviderKind::Fake => {
                if production {
                    tracing::warn!("payments.provider is \"fake\" in production: no money is taken");
                }
                let fake =
                    Arc::new(FakeProvider::new(ctx.db.clone(), Duration::from_millis(section.fake.answer_delay_ms)));
                (fake.clone(), Some(fake), None)
            }
            ProviderKind::Stripe => {
                let key = section
                    .stripe
                    .api_key
                    .clone()
                    .ok_or_else(|| anyhow::anyhow!("payments.stripe.api_key is not set"))?;
                let stripe = Arc::new(StripeProvider::new(
                    &section.stripe.api_base,
                    key,
                    Duration::from_secs(section.stripe.timeout_secs),
                )?);
                (stripe.clone(), None, Some(stripe))
            }
        };
        let dev_endpoints = fake.is_some() && !production;
        let service = Payments::new(ctx.db, ctx.outbox, provider, fake, dev_endpoints, timing);
        let webhook = http::StripeWebhook { secret: stripe.as_ref().and(section.stripe.webhook_secret.clone()) };
        Ok(Box::new(HostedPayments { service: web::Data::new(service), webhook: web::Data::new(webhook), stripe }))
    }
}

struct HostedPayments {
    service: web::Data<Payments>,
    webhook: web::Data<http::StripeWebhook>,
    stripe: Option<Arc<StripeProvider>>,
}

impl Hosted for HostedPayments {
    fn routes(&self) -> Routes {
        let (service, webhook) = (self.service.clone(), self.webhook.clone());
        Arc::new(move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(service.clone())
                .app_data(webhook.clone())
                .service(http::stripe_webhook)
                .service(http::list_payments)
                .service(http::get_payment)
                .service(http::confirm_payment)
                .service(http::fail_payment);
        })
    }

    fn handler(&self) -> Option<Arc<dyn EventHandler>> {
        Some(events::routes().bind(events::PaymentsEvents(self.service.clone())))
    }

    fn background_tasks(&self, shutdown: CancellationToken) -> Vec<BoxFuture<'static, ()>> {
        vec![self.service.clone().into_inner().run(shutdown).boxed()]
    }

    fn purges(&self) -> Vec<Arc<dyn Purge>> {
        vec![Arc::new(OldProviderEvents(self.service.clone()))]
    }

    fn checks(&self) -> Vec<Arc<dyn HealthCheck>> {
        match &self.stripe {
            Some(stripe) => vec![Arc::new(StripeReachable::new(stripe.clone()))],
            None => Vec::new(),
        }
    }
}

/// A provider's event id is remembered for `housekeeping.retention_hours`: Stripe retries a
/// webhook for three days at most.
struct OldProviderEvents(web::Data<Payments>);

#[async_trait]
impl Purge for OldProviderEvents {
    fn what(&self) -> &'static str {
        "provider events past the retention"
    }

    async fn purge(&self, _now: DateTime<Utc>, cutoff: DateTime<Utc>) -> anyhow::Result<u64> {
        self.0.forget_provider_events_before(cutoff).await
    }
}

/// Whether Stripe answers: reported, not required (payments wait for it; the rest of the shop works).
/// An answer is kept for [`StripeReachable::FOR`]: readiness probes come every few seconds from
/// every replica, and each would otherwise be a call to Stripe, under its rate limit.
struct StripeReachable {
    stripe: Arc<StripeProvider>,
    last: tokio::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>,
}

impl StripeReachable {
    const FOR: Duration = Duration::from_secs(30);

    fn new(stripe: Arc<StripeProvider>) -> Self {
        Self { stripe, last: tokio::sync::Mutex::new(None) }
    }
}

#[async_trait]
impl HealthCheck for StripeReachable {
    fn name(&self) -> &'static str {
        "provider"
    }

    fn required(&self) -> bool {
        false
    }

    async fn check(&self) -> Result<(), String> {
        // Held across the call: probes arriving meanwhile wait for its answer instead of asking too.
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = last.as_ref()
            && at.elapsed() < Self::FOR
        {
            return answer.clone();
        }
        let answer = self.stripe.reachable().await;
        *last = Some((std::time::Instant::now(), answer.clone()));
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEVELOPMENT: Checks = Checks { production: false };

    #[test]
    fn stripe_needs_its_key_and_its_webhook_secret() {
        assert!(PaymentsSection::default().check(DEVELOPMENT).is_ok(), "the fake needs nothing");
        let mut section = PaymentsSection { provider: ProviderKind::Stripe, ..Default::default() };
        let missing = section.check(DEVELOPMENT).expect_err("refused");
        assert_eq!(missing.key, "payments.stripe.api_key");
        section.stripe.api_key = Some("sk_test_1".into());
        let missing = section.check(DEVELOPMENT).expect_err("refused");
        assert_eq!(missing.key, "payments.stripe.webhook_secret");
        section.stripe.webhook_secret = Some("whsec_1".into());
        assert!(section.check(Checks { production: true }).is_ok());
        assert!(section.production.load(Ordering::Relaxed), "recorded for the development endpoints");
        let shown = serde_json::to_value(&section).expect("serialises");
        assert_eq!((shown["stripe"]["api_key"].as_str(), shown["provider"].as_str()), (Some("***"), Some("stripe")));
    }

    /// A readiness probe every few seconds is not a call to Stripe each: one answer serves 30 s.
    #[tokio::test]
    async fn the_stripe_check_asks_stripe_once_for_many_probes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = calls.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n").await;
            }
        });
        let stripe = StripeProvider::new(&base, "sk_test_1".into(), Duration::from_secs(5)).expect("a client");
        let check = StripeReachable::new(Arc::new(stripe));
        for _ in 0..3 {
            assert_eq!(check.check().await, Err("answered 503 Service Unavailable".to_owned()));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
