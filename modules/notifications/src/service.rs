//! The notifications module's use cases. An event becomes a message in the event's transaction:
//! the message's row (rendered, with its Message-ID) and the job that sends it
//! ([`SendMessage`]), so a message exists exactly when the event was handled, and is sent even if
//! the process dies right after. The job hands the message to the transport, then records it sent.
//!
//! Each fact becomes one message at most: its key (`order_confirmed:<order id>`) is unique, so a
//! redelivered event writes nothing. A message is sent at least once and, but for one window,
//! once: a crash after the SMTP server accepted it and before the row says so sends it again,
//! with the same Message-ID (a file is written again under the same name).

use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use kernel::jobs::{Attempt, Job, JobError, JobStatus, Queue};
use lettre::message::Mailbox;
use sea_orm::{DatabaseConnection, DatabaseTransaction};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::domain::{Delivery, Kind, Message, MessageId, Recipient};
use crate::persistence;
use crate::templates::Templates;
use crate::transport::{SendError, Transport};

/// Sends one message. Idempotent: a message already recorded as sent is not sent again, and the
/// job's key is the message's id, so a message has one job.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessage {
    pub message_id: Uuid,
}

impl Job for SendMessage {
    const NAME: &'static str = "send_message";

    fn unique_key(&self) -> Option<String> {
        Some(self.message_id.to_string())
    }
}

/// What the module needs to write messages and send them.
pub struct Notifications {
    db: DatabaseConnection,
    queue: Queue,
    templates: Templates,
    transport: Transport,
    from: Mailbox,
    /// The Message-IDs' right-hand side: the sender's domain.
    domain: String,
    links: Links,
    /// Who hears of operational trouble (`notifications.admin_email`); not an account.
    admin: Option<Recipient>,
}

/// Where the storefront takes a customer for what a message asks.
pub struct Links {
    pub verify_email: String,
    pub reset_password: String,
}

/// A message as the admin API lists it.
pub struct Listed {
    pub message: Message,
    pub delivery: Delivery,
    /// Its sending job, for `POST /admin/jobs/notifications/{id}/retry`.
    pub job_id: Option<Uuid>,
}

/// An order as its confirmation shows it.
pub struct OrderSummary {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub lines: Vec<serde_json::Value>,
    pub total: String,
    pub address: Vec<String>,
}

impl Notifications {
    pub fn new(
        db: DatabaseConnection,
        queue: Queue,
        templates: Templates,
        transport: Transport,
        from: Mailbox,
        links: Links,
        admin: Option<Mailbox>,
    ) -> Self {
        let domain = from.email.domain().to_owned();
        let admin = admin.map(|mailbox| Recipient {
            user_id: Uuid::nil(),
            email: mailbox.email.to_string(),
            name: mailbox.name.unwrap_or_else(|| "admin".into()),
        });
        Self { db, queue, templates, transport, from, domain, links, admin }
    }

    /// Wakes the worker: messages were committed.
    pub fn wake(&self) {
        self.queue.wake();
    }

    /// An account was registered: keep its address, and welcome it.
    pub async fn registered(&self, txn: &DatabaseTransaction, recipient: Recipient) -> anyhow::Result<()> {
        persistence::upsert_recipient(txn, &recipient, kernel::db::now())
            .await
            .context("failed to keep a recipient")?;
        let key = format!("welcome:{}", recipient.user_id);
        self.write(txn, Kind::Welcome, &recipient, key, &json!({})).await
    }

    /// The users module asked for a mail with a single-use link (`kind`: e-mail verification or
    /// password reset) to the address the account has now.
    pub async fn link_requested(
        &self,
        txn: &DatabaseTransaction,
        kind: Kind,
        recipient: Recipient,
        token: &str,
        expires_at: DateTime<Utc>,
        event_id: Uuid,
    ) -> anyhow::Result<()> {
        let base = match kind {
            Kind::VerifyEmail => &self.links.verify_email,
            _ => &self.links.reset_password,
        };
        let values = json!({ "link": format!("{base}?token={token}"), "expires_at": when(expires_at) });
        let key = format!("{}:{event_id}", kind.as_str());
        self.write(txn, kind, &recipient, key, &values).await
    }

    /// Whose an order is: payment and shipment events name only the order.
    pub async fn order_placed(&self, txn: &DatabaseTransaction, order_id: Uuid, user_id: Uuid) -> anyhow::Result<()> {
        persistence::remember_order(txn, order_id, user_id, kernel::db::now()).await.context("failed to keep an order")
    }

    /// A rejected order is cancelled too (its stock released): that cancellation is not told.
    pub async fn order_rejected(&self, txn: &DatabaseTransaction, order_id: Uuid, user_id: Uuid) -> anyhow::Result<()> {
        self.order_placed(txn, order_id, user_id).await?;
        persistence::mark_rejected(txn, order_id).await.context("failed to mark an order rejected")
    }

    pub async fn order_cancelled(
        &self,
        txn: &DatabaseTransaction,
        order_id: Uuid,
        user_id: Uuid,
    ) -> anyhow::Result<()> {
        self.order_placed(txn, order_id, user_id).await?;
        if persistence::owner_of(txn, order_id).await?.is_some_and(|(_, rejected)| rejected) {
            return Ok(());
        }
        self.about_order(txn, Kind::OrderCancelled, order_id, order_id, json!({})).await
    }

    pub async fn order_confirmed(&self, txn: &DatabaseTransaction, order: OrderSummary) -> anyhow::Result<()> {
        self.order_placed(txn, order.order_id, order.user_id).await?;
        let values = json!({ "order": {
            "id": order.order_id, "lines": order.lines, "total": order.total, "address": order.address,
        }});
        let key = format!("order_confirmed:{}", order.order_id);
        self.to_owner(txn, Kind::OrderConfirmed, order.order_id, key, values).await
    }

    /// A webhook endpoint was disabled: the shop's admin is told, at `notifications.admin_email`
    /// (unset: counted and logged, not told).
    pub async fn webhook_disabled(
        &self,
        txn: &DatabaseTransaction,
        event: &webhooks_contracts::WebhookEndpointDisabled,
        event_id: Uuid,
    ) -> anyhow::Result<()> {
        let Some(admin) = &self.admin else {
            metrics::counter!("bazaar_notifications_skipped_total", "kind" => Kind::WebhookDisabled.as_str(), "reason" => "no_admin_email")
                .increment(1);
            tracing::warn!(endpoint.id = %event.endpoint_id, "a webhook endpoint was disabled; notifications.admin_email is unset, so no admin is told");
            return Ok(());
        };
        let values = json!({
            "endpoint": { "id": event.endpoint_id, "url": event.url },
            "failures": event.failures,
            "last_error": event.last_error,
            "disabled_at": when(event.disabled_at),
        });
        let key = format!("{}:{event_id}", Kind::WebhookDisabled.as_str());
        self.write(txn, Kind::WebhookDisabled, admin, key, &values).await
    }

    /// A message about an order to its owner; `key` says which fact it is.
    pub async fn about_order(
        &self,
        txn: &DatabaseTransaction,
        kind: Kind,
        order_id: Uuid,
        fact: Uuid,
        mut values: serde_json::Value,
    ) -> anyhow::Result<()> {
        values["order"] = json!({ "id": order_id });
        let key = format!("{}:{fact}", kind.as_str());
        self.to_owner(txn, kind, order_id, key, values).await
    }

    async fn to_owner(
        &self,
        txn: &DatabaseTransaction,
        kind: Kind,
        order_id: Uuid,
        key: String,
        values: serde_json::Value,
    ) -> anyhow::Result<()> {
        // Unknown yet: its `OrderCreated` is still on its way (another queue). Failing retries the
        // event later; an order from before this module was deployed ends as a dead letter.
        let (user_id, _) = persistence::owner_of(txn, order_id)
            .await?
            .with_context(|| format!("order {order_id} is not known here yet"))?;
        // An account registers long before its first order is confirmed, so an owner unknown here
        // registered before this module was deployed (or came with a token from elsewhere): no
        // address to write to. Counted and logged, not retried.
        let Some(recipient) = persistence::recipient(txn, user_id).await? else {
            metrics::counter!("bazaar_notifications_skipped_total", "kind" => kind.as_str(), "reason" => "unknown_recipient")
                .increment(1);
            tracing::warn!(order.id = %order_id, user.id = %user_id, kind = kind.as_str(), "no address known for the order's owner; not told");
            return Ok(());
        };
        self.write(txn, kind, &recipient, key, &values).await
    }

    /// Renders the message and writes it with its sending job, unless the fact `key` has one.
    async fn write(
        &self,
        txn: &DatabaseTransaction,
        kind: Kind,
        recipient: &Recipient,
        key: String,
        values: &serde_json::Value,
    ) -> anyhow::Result<()> {
        if persistence::exists(txn, &key).await? {
            return Ok(());
        }
        let content =
            self.templates.render(kind, recipient, values).with_context(|| format!("cannot render {kind:?}"))?;
        let id = MessageId::generate();
        let message = Message {
            id,
            user_id: recipient.user_id,
            kind,
            to: recipient.email.clone(),
            content,
            message_id: format!("<{id}@{}>", self.domain),
            attempts: 0,
            last_error: None,
            created_at: kernel::db::now(),
            sent_at: None,
        };
        persistence::insert(txn, &message, &key).await.context("failed to write a message")?;
        self.queue
            .enqueue(txn, &SendMessage { message_id: id.as_uuid() })
            .await
            .context("failed to queue a message")?;
        tracing::info!(message.id = %id, kind = kind.as_str(), user.id = %recipient.user_id, "message queued");
        Ok(())
    }

    /// The [`SendMessage`] job.
    pub async fn send(&self, job: SendMessage, attempt: Attempt) -> Result<(), JobError> {
        let id = MessageId::from(job.message_id);
        let message = persistence::get(&self.db, id)
            .await?
            .ok_or_else(|| JobError::Permanent(anyhow::anyhow!("message {id} does not exist")))?;
        if message.sent_at.is_some() {
            return Ok(());
        }
        persistence::count_attempt(&self.db, id).await?;
        match self.transport.send(&self.from, &message).await {
            Ok(()) => {
                persistence::record_sent(&self.db, &message, kernel::db::now()).await?;
                metrics::counter!("bazaar_notifications_sent_total", "kind" => message.kind.as_str()).increment(1);
                tracing::info!(message.id = %id, attempt = attempt.number, "message sent");
                Ok(())
            }
            Err(e) => {
                persistence::record_failure(&self.db, id, &e.to_string()).await?;
                Err(match e {
                    SendError::Transient(e) => JobError::Retry(e),
                    SendError::Permanent(e) => JobError::Permanent(e),
                })
            }
        }
    }

    /// Messages newest first, one user's when given, with how far each got.
    pub async fn list(
        &self,
        user_id: Option<Uuid>,
        before: Option<MessageId>,
        limit: u64,
    ) -> anyhow::Result<Vec<Listed>> {
        let messages = persistence::list(&self.db, user_id, before, limit).await.context("failed to list messages")?;
        let keys: Vec<String> = messages.iter().map(|m| m.id.to_string()).collect();
        let jobs: HashMap<String, (Uuid, JobStatus)> =
            self.queue.statuses::<SendMessage>(&keys).await.context("failed to read the messages' jobs")?;
        Ok(messages
            .into_iter()
            .map(|message| {
                let job = jobs.get(&message.id.to_string()).copied();
                let delivery = match (message.sent_at, job) {
                    (Some(_), _) => Delivery::Sent,
                    (None, Some((_, JobStatus::Failed))) => Delivery::Failed,
                    (None, _) => Delivery::Queued,
                };
                Listed { message, delivery, job_id: job.map(|(id, _)| id) }
            })
            .collect())
    }
}

/// An instant as a message says it.
fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}
