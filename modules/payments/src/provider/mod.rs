//! The payment providers, behind one trait: [`fake`] (embedded, the default) and [`stripe`].
//!
//! Every call that moves money carries an idempotency key derived from the order, the attempt and
//! the step (`{order}:{attempt}:create`, `…:confirm`, `…:cancel`, `…:refund`): a repeat after a
//! crash or a timeout replays the first answer instead of charging again.

pub mod fake;
pub mod stripe;

use async_trait::async_trait;

use crate::domain::{Failure, Intent, Money};

/// What is asked of the provider for one attempt of an order.
#[derive(Debug, Clone)]
pub struct NewIntent {
    pub amount: Money,
    pub payment_method: String,
    pub order_id: uuid::Uuid,
    pub attempt: u32,
}

/// A refund the provider made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    /// `None` when the provider only said the charge was refunded already.
    pub id: Option<String>,
    /// `succeeded`, `pending`, `failed`, `canceled` or `requires_action`.
    pub status: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider refused the request (a decline, an unknown payment method): asking again
    /// gives the same answer. The intent, when the provider named it.
    #[error("refused by the provider: {} ({})", .failure.code, .failure.message)]
    Refused { failure: Failure, intent: Option<Box<Intent>> },
    /// The intent is not in a state that allows the call (canceling a succeeded one, say): read it.
    #[error("the intent is in another state: {0}")]
    WrongState(String),
    /// The provider could not be reached or failed (a timeout, 5xx, 429): try again later.
    #[error(transparent)]
    Unavailable(#[from] anyhow::Error),
}

/// A payment provider: Stripe's PaymentIntents and Refunds, as far as Bazaar uses them.
#[async_trait]
pub trait PaymentProvider: Send + Sync {
    /// `fake` or `stripe`: what payments record as their provider.
    fn name(&self) -> &'static str;

    /// Creates an intent for `new`, not confirmed.
    async fn create(&self, new: &NewIntent, idempotency_key: &str) -> Result<Intent, ProviderError>;

    /// Confirms the intent with the payment method it was created with.
    async fn confirm(&self, intent_id: &str, idempotency_key: &str) -> Result<Intent, ProviderError>;

    async fn cancel(&self, intent_id: &str, idempotency_key: &str) -> Result<Intent, ProviderError>;

    /// Refunds the whole amount of a succeeded intent.
    async fn refund(&self, intent_id: &str, idempotency_key: &str) -> Result<Refund, ProviderError>;

    async fn retrieve(&self, intent_id: &str) -> Result<Intent, ProviderError>;
}

/// The idempotency key of one step of one attempt of an order.
pub fn idempotency_key(order_id: uuid::Uuid, attempt: u32, step: &str) -> String {
    format!("{order_id}:{attempt}:{step}")
}
