//! The webhooks module's use cases: endpoints (registered, changed, rotated, deleted) and
//! deliveries.
//!
//! A public event becomes, in the internal event's transaction, one delivery row per enabled
//! endpoint subscribed to it (its body written once, so every attempt sends the same bytes) and
//! its [`Deliver`] job, in the lane of that endpoint and order: one order's deliveries to one
//! endpoint go one at a time, in the order their events were handled, a failing one holding the
//! later ones back until it succeeds or is given up.
//!
//! An attempt signs the body anew (the timestamp is the attempt's), POSTs it and records the
//! answer. A delivery is sent at least once and, but for one window, once: a crash after the
//! receiver answered and before the row says so sends it again, with the same `webhook-id`.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use kernel::Outbox;
use kernel::jobs::{Attempt, Job, JobError, Queue};
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use webhooks_contracts::WebhookEndpointDisabled;

use crate::domain::{Delivery, DeliveryId, DeliveryStatus, Endpoint, EndpointUrl, Secret, is_internal};
use crate::persistence::{self, AttemptRecord};
use crate::public::{Body, EventKind, PingData};
use crate::sender::{self, Sender};

/// How long the secret before a rotation still signs.
const OLD_SECRET_SIGNS_FOR: chrono::Duration = chrono::Duration::hours(24);

/// Metric names, labelled `outcome`.
mod metric {
    /// Attempts: `delivered`, `failed_attempt`; deliveries given up: `given_up`.
    pub const DELIVERIES: &str = "bazaar_webhook_deliveries_total";
    /// Endpoints disabled after too many consecutive failures.
    pub const DISABLED: &str = "bazaar_webhook_endpoints_disabled_total";
}

/// Attempts one delivery. Idempotent: a delivery that is no longer `pending` is not sent (a
/// redelivery reopens it first).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deliver {
    pub delivery: Uuid,
    /// `<endpoint id>:<order id>`: one order's deliveries to one endpoint, in order. None for a
    /// ping or a redelivery.
    pub lane: Option<String>,
}

impl Job for Deliver {
    const NAME: &'static str = "deliver";

    fn lane(&self) -> Option<String> {
        self.lane.clone()
    }
}

/// The module's settings that its use cases follow.
pub struct Policy {
    /// `http://` endpoints are accepted (not in production).
    pub allow_http: bool,
    pub allow_private: bool,
    pub retry_for: Duration,
    pub disable_after: u32,
}

/// What an admin gives for an endpoint.
pub struct EndpointInput {
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("no such webhook endpoint or delivery")]
    NotFound,
    #[error("the endpoint is disabled")]
    Disabled,
    #[error("the delivery is still being attempted")]
    StillPending,
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for WebhookError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Unexpected(e.into())
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> WebhookError {
    WebhookError::Invalid { field, message: message.into() }
}

pub struct Webhooks {
    db: DatabaseConnection,
    outbox: Outbox<webhooks_contracts::Webhooks>,
    queue: Queue,
    sender: Sender,
    policy: Policy,
}

impl Webhooks {
    pub fn new(db: DatabaseConnection, outbox: Outbox, queue: Queue, sender: Sender, policy: Policy) -> Self {
        Self { db, outbox: outbox.bind(), queue, sender, policy }
    }

    pub fn wake(&self) {
        self.queue.wake();
    }

    /// The checked parts of an endpoint. The destination is refused when it is, or resolves only
    /// to, an internal address; a name that does not resolve (yet) is accepted, and every
    /// connection checks again.
    async fn checked(
        &self,
        input: EndpointInput,
    ) -> Result<(EndpointUrl, Vec<EventKind>, Option<String>), WebhookError> {
        let url = EndpointUrl::parse(input.url.trim(), self.policy.allow_http).map_err(|e| invalid("url", e))?;
        if !self.policy.allow_private {
            if let Some(ip) = url.literal_address() {
                if is_internal(ip) {
                    return Err(invalid("url", format!("{ip} is a private, loopback or link-local address")));
                }
            } else {
                let (host, port) = url.host_and_port();
                let lookup = tokio::time::timeout(Duration::from_secs(3), sender::resolve(&host, port, false)).await;
                if let Ok(Err(e @ sender::ResolveError::OnlyInternal(_))) = lookup {
                    return Err(invalid("url", e.to_string()));
                }
            }
        }
        if input.events.is_empty() {
            return Err(invalid("events", "must name at least one event"));
        }
        let mut events = Vec::new();
        for name in &input.events {
            let kind = EventKind::parse(name).ok_or_else(|| {
                let known: Vec<&str> = EventKind::SUBSCRIBABLE.iter().map(|k| k.as_str()).collect();
                invalid("events", format!("'{name}' is not an event; one of {}", known.join(", ")))
            })?;
            if !events.contains(&kind) {
                events.push(kind);
            }
        }
        let description = input.description.map(|d| d.trim().to_owned()).filter(|d| !d.is_empty());
        if description.as_ref().is_some_and(|d| d.chars().count() > 500) {
            return Err(invalid("description", "must be at most 500 characters"));
        }
        Ok((url, events, description))
    }

    pub async fn create(&self, input: EndpointInput) -> Result<Endpoint, WebhookError> {
        let (url, events, description) = self.checked(input).await?;
        let now = kernel::db::now();
        let endpoint = Endpoint {
            id: Uuid::now_v7(),
            url: url.to_string(),
            description,
            events,
            secret: Secret::generate(),
            previous_secret: None,
            enabled: true,
            consecutive_failures: 0,
            disabled_at: None,
            disabled_reason: None,
            created_at: now,
            updated_at: now,
        };
        persistence::insert_endpoint(&self.db, &endpoint).await?;
        tracing::info!(endpoint.id = %endpoint.id, url = %endpoint.url, "webhook endpoint registered");
        Ok(endpoint)
    }

    pub async fn list(&self) -> Result<Vec<Endpoint>, WebhookError> {
        Ok(persistence::endpoints(&self.db, false).await?)
    }

    pub async fn get(&self, id: Uuid) -> Result<Endpoint, WebhookError> {
        persistence::endpoint(&self.db, id).await?.ok_or(WebhookError::NotFound)
    }

    /// Replaces what an admin may change; `enabled: true` re-enables a disabled endpoint (its
    /// failures start over), `false` disables it.
    pub async fn update(
        &self,
        id: Uuid,
        input: EndpointInput,
        enabled: Option<bool>,
    ) -> Result<Endpoint, WebhookError> {
        let (url, events, description) = self.checked(input).await?;
        let mut endpoint = self.get(id).await?;
        let now = kernel::db::now();
        (endpoint.url, endpoint.events, endpoint.description, endpoint.updated_at) =
            (url.to_string(), events, description, now);
        match enabled {
            Some(true) if !endpoint.enabled => {
                (endpoint.enabled, endpoint.consecutive_failures) = (true, 0);
                (endpoint.disabled_at, endpoint.disabled_reason) = (None, None);
            }
            Some(false) if endpoint.enabled => {
                endpoint.enabled = false;
                (endpoint.disabled_at, endpoint.disabled_reason) = (Some(now), Some("disabled by an admin".into()));
            }
            _ => {}
        }
        match persistence::update_endpoint(&self.db, &endpoint).await? {
            true => Ok(endpoint),
            false => Err(WebhookError::NotFound),
        }
    }

    /// Its deliveries go with it; their jobs find nothing to do.
    pub async fn delete(&self, id: Uuid) -> Result<(), WebhookError> {
        let txn = self.db.begin().await?;
        let deleted = persistence::delete_endpoint(&txn, id).await?;
        txn.commit().await?;
        match deleted {
            true => Ok(()),
            false => Err(WebhookError::NotFound),
        }
    }

    /// A new secret; the old one still signs (a second signature) for 24 h, while the receiver
    /// changes over.
    pub async fn rotate_secret(&self, id: Uuid) -> Result<Secret, WebhookError> {
        let endpoint = self.get(id).await?;
        let (secret, now) = (Secret::generate(), kernel::db::now());
        match persistence::rotate_secret(&self.db, id, &secret, &endpoint.secret, now + OLD_SECRET_SIGNS_FOR, now)
            .await?
        {
            true => Ok(secret),
            false => Err(WebhookError::NotFound),
        }
    }

    pub async fn deliveries(
        &self,
        endpoint_id: Uuid,
        status: Option<DeliveryStatus>,
        before: Option<DeliveryId>,
        limit: u64,
    ) -> Result<Vec<Delivery>, WebhookError> {
        self.get(endpoint_id).await?;
        Ok(persistence::deliveries(&self.db, endpoint_id, status, before, limit).await?)
    }

    /// Sends a delivery again, with the same `webhook-id`, retried for a new window.
    pub async fn redeliver(&self, endpoint_id: Uuid, id: DeliveryId) -> Result<(), WebhookError> {
        let delivery = persistence::delivery(&self.db, id).await?.filter(|d| d.endpoint_id == endpoint_id);
        let Some(delivery) = delivery else { return Err(WebhookError::NotFound) };
        // A pending delivery has its job already: a second would send it twice at once.
        if delivery.status == DeliveryStatus::Pending {
            return Err(WebhookError::StillPending);
        }
        if !self.get(endpoint_id).await?.enabled {
            return Err(WebhookError::Disabled);
        }
        let txn = self.db.begin().await?;
        persistence::reopen(&txn, delivery.id, self.retry_until(kernel::db::now())).await?;
        self.queue.enqueue(&txn, &Deliver { delivery: delivery.id.as_uuid(), lane: None }).await?;
        txn.commit().await?;
        self.wake();
        Ok(())
    }

    /// A `webhook.ping` to the endpoint, whatever it subscribes to.
    pub async fn ping(&self, endpoint_id: Uuid) -> Result<DeliveryId, WebhookError> {
        let endpoint = self.get(endpoint_id).await?;
        if !endpoint.enabled {
            return Err(WebhookError::Disabled);
        }
        let now = kernel::db::now();
        let body = body(EventKind::Ping, now, &PingData { endpoint_id })?;
        let txn = self.db.begin().await?;
        let id = self.write_delivery(&txn, &endpoint, EventKind::Ping, body, None, None).await?;
        txn.commit().await?;
        self.wake();
        Ok(id)
    }

    /// In the event's transaction: a delivery for each enabled endpoint subscribed to `kind`.
    pub async fn record<T: Serialize>(
        &self,
        txn: &DatabaseTransaction,
        kind: EventKind,
        order_id: Uuid,
        data: &T,
        event: &kernel::Envelope,
    ) -> anyhow::Result<()> {
        let endpoints = persistence::endpoints(txn, true).await?;
        let subscribed: Vec<&Endpoint> = endpoints.iter().filter(|e| e.subscribes_to(kind)).collect();
        if subscribed.is_empty() {
            return Ok(());
        }
        let body = body(kind, event.occurred_at, data)?;
        for endpoint in subscribed {
            let lane = format!("{}:{order_id}", endpoint.id);
            self.write_delivery(txn, endpoint, kind, body.clone(), Some(event.id), Some(lane)).await?;
        }
        Ok(())
    }

    async fn write_delivery(
        &self,
        txn: &DatabaseTransaction,
        endpoint: &Endpoint,
        kind: EventKind,
        body: String,
        event_id: Option<Uuid>,
        lane: Option<String>,
    ) -> Result<DeliveryId, sea_orm::DbErr> {
        let now = kernel::db::now();
        let delivery = Delivery {
            id: DeliveryId::new(),
            endpoint_id: endpoint.id,
            event_type: kind.as_str().to_owned(),
            body,
            status: DeliveryStatus::Pending,
            attempts: 0,
            response_status: None,
            latency_ms: None,
            last_error: None,
            retry_until: self.retry_until(now),
            created_at: now,
            last_attempt_at: None,
            delivered_at: None,
        };
        persistence::insert_delivery(txn, &delivery, event_id).await?;
        self.queue.enqueue(txn, &Deliver { delivery: delivery.id.as_uuid(), lane }).await?;
        Ok(delivery.id)
    }

    fn retry_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::from_std(self.policy.retry_for).unwrap_or(chrono::Duration::MAX)
    }

    /// One attempt of a delivery (the [`Deliver`] job).
    pub async fn deliver(&self, job: Deliver, attempt: Attempt) -> Result<(), JobError> {
        let id = DeliveryId::from(job.delivery);
        let Some(delivery) = persistence::delivery(&self.db, id).await? else {
            return Ok(()); // its endpoint was deleted
        };
        if delivery.status != DeliveryStatus::Pending {
            return Ok(()); // answered before a crash kept the job from being recorded done
        }
        let Some(endpoint) = persistence::endpoint(&self.db, delivery.endpoint_id).await? else { return Ok(()) };
        if !endpoint.enabled {
            persistence::give_up(&self.db, id, "the endpoint is disabled").await?;
            return Ok(());
        }
        let url = EndpointUrl::parse(&endpoint.url, true).map_err(|e| JobError::Permanent(anyhow::anyhow!(e)))?;
        let now = kernel::db::now();
        let webhook_id = id.to_string();
        let signature = endpoint.signature(&webhook_id, now.timestamp(), &delivery.body, now);
        tracing::debug!(delivery = %webhook_id, attempt = attempt.number, url = %url, "delivering");
        let sent = self.sender.post(&url, &webhook_id, now.timestamp(), &signature, delivery.body).await;
        let at = kernel::db::now();
        let (response_status, latency, error) = match sent {
            Ok(answer) if (200..300).contains(&answer.status) => {
                let record = AttemptRecord {
                    status: DeliveryStatus::Delivered,
                    response_status: Some(answer.status),
                    latency_ms: Some(answer.latency.as_millis() as u64),
                    error: None,
                    at,
                };
                let txn = self.db.begin().await?;
                persistence::record_attempt(&txn, id, record).await?;
                persistence::reset_failures(&txn, endpoint.id).await?;
                txn.commit().await?;
                metrics::counter!(metric::DELIVERIES, "outcome" => "delivered").increment(1);
                return Ok(());
            }
            Ok(answer) => {
                let excerpt = answer.excerpt.trim();
                let error = match excerpt.is_empty() {
                    true => format!("HTTP {}", answer.status),
                    false => format!("HTTP {}: {excerpt}", answer.status),
                };
                (Some(answer.status), answer.latency, error)
            }
            Err(no_answer) => (None, no_answer.latency, no_answer.error),
        };
        metrics::counter!(metric::DELIVERIES, "outcome" => "failed_attempt").increment(1);
        let out_of_time = at >= delivery.retry_until;
        let txn = self.db.begin().await?;
        let failures = persistence::count_failure(&txn, endpoint.id).await?;
        let disabled = failures >= self.policy.disable_after && {
            let reason = format!("{failures} failed delivery attempts in a row; the last: {error}");
            persistence::disable(&txn, endpoint.id, &reason, at).await?
        };
        if disabled {
            let event = WebhookEndpointDisabled {
                endpoint_id: endpoint.id,
                url: endpoint.url.clone(),
                failures,
                last_error: error.clone(),
                disabled_at: at,
            };
            self.outbox.publish(&txn, &event, None).await?;
        }
        let status = match out_of_time || disabled {
            true => DeliveryStatus::Failed,
            false => DeliveryStatus::Pending,
        };
        let latency_ms = Some(latency.as_millis() as u64);
        let record = AttemptRecord { status, response_status, latency_ms, error: Some(&error), at };
        persistence::record_attempt(&txn, id, record).await?;
        self.outbox.commit(txn).await?;
        if disabled {
            metrics::counter!(metric::DISABLED).increment(1);
            tracing::error!(
                endpoint.id = %endpoint.id, url = %endpoint.url, failures,
                "webhook endpoint disabled after failed delivery attempts in a row: fix the receiver, then \
                 re-enable it (PUT /webhooks/{{id}} with enabled: true)"
            );
        }
        if status == DeliveryStatus::Failed {
            metrics::counter!(metric::DELIVERIES, "outcome" => "given_up").increment(1);
            return Ok(());
        }
        Err(JobError::Retry(anyhow::anyhow!(error)))
    }
}

/// A delivery's body: `{"type", "timestamp", "data"}`.
fn body<T: Serialize>(kind: EventKind, timestamp: DateTime<Utc>, data: &T) -> anyhow::Result<String> {
    serde_json::to_string(&Body { kind: kind.as_str(), timestamp, data }).context("a webhook body")
}
