//! What the notifications module knows: whom it writes to, what it writes and how far each message
//! got. No actix, no sea-orm.

use chrono::{DateTime, Utc};
use uuid::Uuid;

kernel::uuid_id!(
    /// A message's id: its row, its job's key and its `.eml` file's name.
    MessageId
);

/// What a message is about; each has its templates (`templates/<kind>.txt` and `.html`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Welcome,
    VerifyEmail,
    PasswordReset,
    OrderConfirmed,
    PaymentFailed,
    OrderCancelled,
    PaymentRefunded,
    ShipmentDispatched,
    ShipmentDelivered,
    /// To the shop's admin (`notifications.admin_email`): a webhook endpoint was disabled.
    WebhookDisabled,
}

impl Kind {
    pub const ALL: [Self; 10] = [
        Self::Welcome,
        Self::VerifyEmail,
        Self::PasswordReset,
        Self::OrderConfirmed,
        Self::PaymentFailed,
        Self::OrderCancelled,
        Self::PaymentRefunded,
        Self::ShipmentDispatched,
        Self::ShipmentDelivered,
        Self::WebhookDisabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Welcome => "welcome",
            Self::VerifyEmail => "verify_email",
            Self::PasswordReset => "password_reset",
            Self::OrderConfirmed => "order_confirmed",
            Self::PaymentFailed => "payment_failed",
            Self::OrderCancelled => "order_cancelled",
            Self::PaymentRefunded => "payment_refunded",
            Self::ShipmentDispatched => "shipment_dispatched",
            Self::ShipmentDelivered => "shipment_delivered",
            Self::WebhookDisabled => "webhook_disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == s)
    }

    /// Whether its body carries a secret (a single-use token): kept only until it is sent.
    pub fn carries_a_secret(self) -> bool {
        matches!(self, Self::VerifyEmail | Self::PasswordReset)
    }
}

/// Someone the shop writes to: the module's copy of an account's address and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
}

/// A message as the templates made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// What a sensitive message's bodies become once sent.
pub const REDACTED: &str = "(removed once sent: it held a single-use link)";

/// A message and how far it got.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: MessageId,
    pub user_id: Uuid,
    pub kind: Kind,
    pub to: String,
    pub content: Composed,
    /// The RFC 5322 Message-ID every attempt carries: a receiver that sees it twice (after a
    /// crash between the server's acceptance and our record of it) can tell.
    pub message_id: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// Where a message is, as the admin API says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// Not tried yet, or tried and to be tried again (`attempts`, `lastError`).
    Queued,
    Sent,
    /// Given up on (refused for good, or failing past the retry window): an admin may retry its
    /// job (`POST /admin/jobs/notifications/{jobId}/retry`).
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_from_its_name() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(Kind::parse("newsletter"), None);
        assert!(Kind::PasswordReset.carries_a_secret() && !Kind::OrderConfirmed.carries_a_secret());
    }
}
