//! The webhooks module: the shop's events, told to other systems (an ERP, a warehouse, a
//! marketing tool) over HTTP, signed per the [Standard Webhooks](https://www.standardwebhooks.com)
//! specification.
//!
//! Admins register endpoints (`POST /webhooks`: a URL and the public events it wants; its
//! `whsec_…` secret is shown once). The module consumes the internal events that have a public
//! counterpart (`public.rs`: `order.confirmed`, `shipment.dispatched`, … — a contract of its own,
//! versioned, not the internal envelope) and turns each into one delivery per subscribed endpoint,
//! sent by the kernel's durable jobs: retried with backoff for `webhooks.retry_for_hours`, in
//! order per endpoint and order, the endpoint disabled after `webhooks.disable_after_failures`
//! consecutive failed attempts. `sender.rs` says how a delivery is kept from reaching inside the
//! network; `service.rs` how each is sent once.

mod domain;
mod events;
mod http;
mod persistence;
mod public;
mod sender;
mod service;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use async_trait::async_trait;
use contracts::{EventType, IntegrationEvent};
use futures::FutureExt;
use futures::future::BoxFuture;
use kernel::jobs::{JobsSection, Queue, Worker};
use kernel::settings::{Checks, Section, SectionSpec, SettingsError};
use kernel::{EventHandler, Hosted, Module, ModuleContext, Routes};
use migrations::MigratorTrait;
use sea_orm::{DatabaseConnection, DbErr};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::sender::Sender;
use crate::service::{Deliver, Policy, Webhooks};

/// The module's name: its settings section, its tables' prefix, its queue.
pub const NAME: &str = "webhooks";

/// The module's `[webhooks]` section.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
struct WebhooksSection {
    /// Accept `http://` endpoints (development and tests); refused in production.
    allow_http: bool,
    /// Deliver to private, loopback and link-local addresses (a receiver inside the cluster).
    allow_private_networks: bool,
    /// A delivery not answered with a 2xx is retried (the `[jobs]` backoff) for this long.
    retry_for_hours: u64,
    /// An attempt not answered in this time failed.
    timeout_secs: u64,
    /// Failed attempts in a row, across an endpoint's deliveries, after which it is disabled.
    disable_after_failures: u32,
    /// At most this much of an answer is read.
    max_response_bytes: usize,
}

impl Default for WebhooksSection {
    fn default() -> Self {
        Self {
            allow_http: false,
            allow_private_networks: false,
            retry_for_hours: 72,
            timeout_secs: 15,
            disable_after_failures: 50,
            max_response_bytes: 64 * 1024,
        }
    }
}

impl Section for WebhooksSection {
    const KEY: &'static str = NAME;

    fn check(&self, checks: Checks) -> Result<(), SettingsError> {
        if checks.production && self.allow_http {
            return Err(SettingsError::new("webhooks.allow_http", "endpoints must be https in production"));
        }
        for (key, value) in [
            ("webhooks.retry_for_hours", self.retry_for_hours),
            ("webhooks.timeout_secs", self.timeout_secs),
            ("webhooks.disable_after_failures", u64::from(self.disable_after_failures)),
            ("webhooks.max_response_bytes", self.max_response_bytes as u64),
        ] {
            if value == 0 {
                return Err(SettingsError::new(key, "must be at least 1"));
            }
        }
        Ok(())
    }
}

#[derive(OpenApi)]
#[openapi(
    paths(
        http::create_endpoint,
        http::list_endpoints,
        http::get_endpoint,
        http::update_endpoint,
        http::delete_endpoint,
        http::rotate_secret,
        http::list_deliveries,
        http::redeliver,
        http::ping,
    ),
    components(schemas(
        public::OrderCreatedData,
        public::OrderConfirmedData,
        public::OrderRejectedData,
        public::OrderCancelledData,
        public::PaymentSucceededData,
        public::PaymentFailedData,
        public::PaymentRefundedData,
        public::ShipmentDispatchedData,
        public::ShipmentDeliveredData,
        public::ShipmentCancelledData,
        public::PingData,
    )),
    tags((name = "webhooks", description = "The shop's events, sent to other systems (Standard Webhooks)"))
)]
struct WebhooksApi;

pub struct WebhooksModule;

#[async_trait]
impl Module for WebhooksModule {
    fn name(&self) -> &'static str {
        NAME
    }

    fn path_prefixes(&self) -> &'static [&'static str] {
        &["/webhooks"]
    }

    fn settings(&self) -> Vec<SectionSpec> {
        vec![SectionSpec::of::<WebhooksSection>(), SectionSpec::of::<JobsSection>()]
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        let mut api = WebhooksApi::openapi();
        api.webhooks = Some(public::openapi_webhooks());
        api
    }

    fn publishes(&self) -> Vec<EventType> {
        vec![webhooks_contracts::WebhookEndpointDisabled::event_type()]
    }

    fn consumes(&self) -> Vec<EventType> {
        events::routes().events()
    }

    async fn migrate(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        migrations::Migrator::up(db, None).await
    }

    async fn start(&self, ctx: ModuleContext) -> anyhow::Result<Box<dyn Hosted>> {
        let section = ctx.section::<WebhooksSection>();
        let sender = Sender::new(
            Duration::from_secs(section.timeout_secs),
            section.allow_private_networks,
            section.max_response_bytes,
        )?;
        let retry_for = Duration::from_secs(section.retry_for_hours * 3600);
        let policy = Policy {
            allow_http: section.allow_http,
            allow_private: sender.allow_private(),
            retry_for,
            disable_after: section.disable_after_failures,
        };
        // The module ends a delivery when its window is over; the job's own window is an hour
        // longer, so that the job never ends first and leaves the delivery pending.
        let mut jobs = (*ctx.section::<JobsSection>()).clone();
        jobs.give_up_after_hours = section.retry_for_hours + 1;
        jobs.timeout_secs = jobs.timeout_secs.max(section.timeout_secs + 5);
        let queue = Queue::new(NAME, ctx.db.clone());
        let service = web::Data::new(Webhooks::new(ctx.db, ctx.outbox, queue.clone(), sender, policy));
        Ok(Box::new(HostedWebhooks { service, queue, jobs: Arc::new(jobs) }))
    }
}

struct HostedWebhooks {
    service: web::Data<Webhooks>,
    queue: Queue,
    jobs: Arc<JobsSection>,
}

impl Hosted for HostedWebhooks {
    fn routes(&self) -> Routes {
        let service = self.service.clone();
        Arc::new(move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(service.clone())
                .service(http::create_endpoint)
                .service(http::list_endpoints)
                .service(http::get_endpoint)
                .service(http::update_endpoint)
                .service(http::delete_endpoint)
                .service(http::rotate_secret)
                .service(http::list_deliveries)
                .service(http::redeliver)
                .service(http::ping);
        })
    }

    fn handler(&self) -> Option<Arc<dyn EventHandler>> {
        Some(events::routes().bind(events::WebhooksEvents(self.service.clone())))
    }

    fn background_tasks(&self, shutdown: CancellationToken) -> Vec<BoxFuture<'static, ()>> {
        let service = self.service.clone();
        let worker = Worker::new(self.queue.clone(), &self.jobs).handle(move |job: Deliver, attempt| {
            let service = service.clone();
            async move { service.deliver(job, attempt).await }
        });
        vec![worker.run(shutdown).boxed()]
    }

    fn jobs(&self) -> Option<Queue> {
        Some(self.queue.clone())
    }
}
