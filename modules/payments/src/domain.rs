//! The payments module's domain: a payment of one attempt of an order, its status, and how a
//! provider's answer moves it. No actix, no sea-orm.
//!
//! Money never moves twice: the payment row alone decides whether the provider is asked to cancel
//! or refund, and every answer (synchronous, webhook, reconciliation) goes through
//! [`Payment::apply`], where a repeat changes nothing.

use chrono::{DateTime, Utc};
pub use contracts::Money;

kernel::uuid_id!(
    /// A payment's id.
    PaymentId
);

/// Where a payment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentStatus {
    /// The order gave no payment method: nothing was sent to the provider.
    RequiresPaymentMethod,
    /// Written by the event handler: the worker creates and confirms it with the provider.
    Creating,
    /// The provider has not decided yet.
    Processing,
    /// The customer must complete it with the provider (3-D Secure).
    RequiresAction,
    Succeeded,
    Failed,
    /// The order ended before the payment did: the worker cancels it with the provider.
    Canceling,
    Canceled,
    /// The order ended after it was paid: the worker refunds it.
    Refunding,
    Refunded,
}

impl PaymentStatus {
    pub const ALL: [Self; 10] = [
        Self::RequiresPaymentMethod,
        Self::Creating,
        Self::Processing,
        Self::RequiresAction,
        Self::Succeeded,
        Self::Failed,
        Self::Canceling,
        Self::Canceled,
        Self::Refunding,
        Self::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequiresPaymentMethod => "requires_payment_method",
            Self::Creating => "creating",
            Self::Processing => "processing",
            Self::RequiresAction => "requires_action",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Canceling => "canceling",
            Self::Canceled => "canceled",
            Self::Refunding => "refunding",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("'{s}' is not a payment status"))
    }

    /// Sent to the provider and not decided yet: money may still move.
    pub fn is_in_flight(self) -> bool {
        matches!(self, Self::Creating | Self::Processing | Self::RequiresAction)
    }

    /// What the worker still has to do with it, and when: `None` when nothing.
    pub fn next_action(self, now: DateTime<Utc>, reconcile_after: chrono::Duration) -> Option<DateTime<Utc>> {
        match self {
            Self::Creating | Self::Canceling | Self::Refunding => Some(now),
            // Asked again only if neither the webhook nor the customer settled it meanwhile.
            Self::Processing | Self::RequiresAction => Some(now + reconcile_after),
            Self::RequiresPaymentMethod | Self::Succeeded | Self::Failed | Self::Canceled | Self::Refunded => None,
        }
    }
}

/// Why the provider took no money.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The provider's code: `card_declined`, `insufficient_funds`, `resource_missing`, …
    pub code: String,
    pub message: String,
    /// The payment method was unusable (unknown, invalid) rather than declined: another may work.
    pub retryable: bool,
}

impl Failure {
    /// A decline: the order cannot be paid this way.
    pub fn declined(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into(), retryable: false }
    }

    /// The method itself was unusable: another may be given.
    pub fn unusable(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into(), retryable: true }
    }
}

/// A provider's payment intent, as far as Bazaar reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub id: String,
    pub status: IntentStatus,
    pub client_secret: Option<String>,
    /// The last attempt's failure, when it failed.
    pub failure: Option<Failure>,
}

/// The statuses of a Stripe PaymentIntent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentStatus {
    RequiresPaymentMethod,
    RequiresConfirmation,
    RequiresAction,
    Processing,
    RequiresCapture,
    Canceled,
    Succeeded,
}

impl IntentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequiresPaymentMethod => "requires_payment_method",
            Self::RequiresConfirmation => "requires_confirmation",
            Self::RequiresAction => "requires_action",
            Self::Processing => "processing",
            Self::RequiresCapture => "requires_capture",
            Self::Canceled => "canceled",
            Self::Succeeded => "succeeded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::RequiresPaymentMethod,
            Self::RequiresConfirmation,
            Self::RequiresAction,
            Self::Processing,
            Self::RequiresCapture,
            Self::Canceled,
            Self::Succeeded,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }
}

/// What a provider said about a payment, whichever way it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderAnswer {
    /// The intent as it is now.
    Intent(Intent),
    /// Creating or confirming was refused outright (a decline, an unknown method).
    Refused(Failure),
    /// The payment was refunded (`refund_id` when known).
    Refunded { refund_id: Option<String> },
}

/// A payment of one attempt of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub id: PaymentId,
    pub order_id: uuid::Uuid,
    pub user_id: uuid::Uuid,
    pub attempt: u32,
    pub amount: Money,
    pub payment_method: Option<String>,
    pub status: PaymentStatus,
    /// `fake` or `stripe`: the provider it was sent to.
    pub provider: String,
    pub provider_payment_id: Option<String>,
    pub client_secret: Option<String>,
    pub failure_code: Option<String>,
    pub failure_reason: Option<String>,
    /// The order was cancelled or rejected: any success is refunded.
    pub order_ended: bool,
    pub refund_id: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
    pub refunded_at: Option<DateTime<Utc>>,
    pub next_action_at: Option<DateTime<Utc>>,
    pub provider_calls: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a change of a payment tells the other modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    ActionRequired { client_secret: String },
    Succeeded,
    Failed(Failure),
    Refunded,
}

impl Payment {
    /// A payment asked for by the order's `attempt`: `creating` with a method, otherwise waiting
    /// for one; `canceled` at once when the order already ended.
    #[allow(clippy::too_many_arguments, reason = "the fields of the request, each once")]
    pub fn requested(
        order_id: uuid::Uuid,
        user_id: uuid::Uuid,
        attempt: u32,
        amount: Money,
        payment_method: Option<String>,
        provider: &str,
        order_ended: bool,
        now: DateTime<Utc>,
    ) -> Self {
        let status = match (&payment_method, order_ended) {
            (_, true) => PaymentStatus::Canceled,
            (None, false) => PaymentStatus::RequiresPaymentMethod,
            (Some(_), false) => PaymentStatus::Creating,
        };
        Self {
            id: PaymentId::generate(),
            order_id,
            user_id,
            attempt,
            amount,
            payment_method,
            status,
            provider: provider.to_owned(),
            provider_payment_id: None,
            client_secret: None,
            failure_code: None,
            failure_reason: None,
            order_ended,
            refund_id: None,
            paid_at: None,
            refunded_at: None,
            next_action_at: status.next_action(now, chrono::Duration::zero()),
            provider_calls: 0,
            created_at: now,
            updated_at: now,
        }
    }

    /// The order ended (cancelled, rejected): an open payment is canceled with the provider (at
    /// once if nothing was sent), a paid one refunded. Returns whether anything changed.
    pub fn end_order(&mut self, now: DateTime<Utc>) -> bool {
        let was = (self.status, self.order_ended);
        self.order_ended = true;
        match self.status {
            PaymentStatus::RequiresPaymentMethod => self.status = PaymentStatus::Canceled,
            PaymentStatus::Creating | PaymentStatus::Processing | PaymentStatus::RequiresAction => {
                self.status = PaymentStatus::Canceling
            }
            PaymentStatus::Succeeded => self.status = PaymentStatus::Refunding,
            _ => {}
        }
        let changed = was != (self.status, self.order_ended);
        if changed {
            self.next_action_at = self.status.next_action(now, chrono::Duration::zero());
            self.updated_at = now;
        }
        changed
    }

    /// Applies a provider's answer. A repeat, or an answer the payment has moved past, changes
    /// nothing and tells nothing. Returns what the change tells the other modules, in order.
    pub fn apply(
        &mut self,
        answer: &ProviderAnswer,
        now: DateTime<Utc>,
        reconcile_after: chrono::Duration,
    ) -> Vec<Outcome> {
        use PaymentStatus as S;
        let before = self.status;
        let mut outcomes = Vec::new();
        match answer {
            ProviderAnswer::Intent(intent) => {
                if self.provider_payment_id.is_none() {
                    self.provider_payment_id = Some(intent.id.clone());
                }
                match intent.status {
                    IntentStatus::Succeeded => {
                        // Money moved: whatever the payment thought, it is paid now (and refunded
                        // if the order ended).
                        if matches!(
                            self.status,
                            S::Creating | S::Processing | S::RequiresAction | S::Canceling | S::Failed | S::Canceled
                        ) {
                            self.status = S::Succeeded;
                            self.paid_at = Some(now);
                            self.failure_code = None;
                            self.failure_reason = None;
                            outcomes.push(Outcome::Succeeded);
                            if self.order_ended {
                                self.status = S::Refunding;
                            }
                        }
                    }
                    IntentStatus::RequiresAction => {
                        if matches!(self.status, S::Creating | S::Processing) {
                            self.status = S::RequiresAction;
                            let secret = intent.client_secret.clone().unwrap_or_default();
                            self.client_secret = Some(secret.clone());
                            outcomes.push(Outcome::ActionRequired { client_secret: secret });
                        }
                    }
                    IntentStatus::Processing => {
                        if self.status == S::Creating {
                            self.status = S::Processing;
                        }
                    }
                    IntentStatus::RequiresPaymentMethod | IntentStatus::Canceled => {
                        let failure = intent.failure.clone().unwrap_or_else(|| match intent.status {
                            IntentStatus::Canceled => {
                                Failure::unusable("payment_intent_canceled", "The payment was canceled.")
                            }
                            _ => Failure::declined("payment_failed", "The payment failed."),
                        });
                        self.fail_or_cancel(failure, &mut outcomes);
                    }
                    // Created, not confirmed yet; or authorized only (Bazaar never asks for that).
                    IntentStatus::RequiresConfirmation | IntentStatus::RequiresCapture => {}
                }
            }
            ProviderAnswer::Refused(failure) => self.fail_or_cancel(failure.clone(), &mut outcomes),
            ProviderAnswer::Refunded { refund_id } => {
                if matches!(self.status, S::Succeeded | S::Refunding) {
                    self.status = S::Refunded;
                    self.refunded_at = Some(now);
                    self.refund_id = refund_id.clone().or(self.refund_id.take());
                    outcomes.push(Outcome::Refunded);
                }
            }
        }
        if self.status != before {
            self.next_action_at = self.status.next_action(now, reconcile_after);
            self.updated_at = now;
        }
        outcomes
    }

    /// No money was taken: an open payment fails (and says so), one being canceled is canceled.
    fn fail_or_cancel(&mut self, failure: Failure, outcomes: &mut Vec<Outcome>) {
        use PaymentStatus as S;
        match self.status {
            S::Creating | S::Processing | S::RequiresAction if self.order_ended => self.status = S::Canceled,
            S::Creating | S::Processing | S::RequiresAction => {
                self.status = S::Failed;
                self.failure_code = Some(failure.code.clone());
                self.failure_reason = Some(failure.message.clone());
                outcomes.push(Outcome::Failed(failure));
            }
            S::Canceling => self.status = S::Canceled,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur(amount: i64) -> Money {
        Money::new(amount, contracts::Currency::parse("EUR").expect("valid")).expect("valid")
    }

    fn payment(method: Option<&str>) -> Payment {
        let now = kernel::db::now();
        Payment::requested(
            uuid::Uuid::now_v7(),
            uuid::Uuid::now_v7(),
            1,
            eur(1000),
            method.map(Into::into),
            "fake",
            false,
            now,
        )
    }

    fn intent(status: IntentStatus) -> ProviderAnswer {
        ProviderAnswer::Intent(Intent {
            id: "pi_1".into(),
            status,
            client_secret: Some("pi_1_secret".into()),
            failure: None,
        })
    }

    fn apply(p: &mut Payment, answer: ProviderAnswer) -> Vec<Outcome> {
        p.apply(&answer, kernel::db::now(), chrono::Duration::seconds(60))
    }

    #[test]
    fn every_status_reads_back() {
        for status in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(status.as_str()), Ok(status));
        }
        assert!(PaymentStatus::parse("paid").is_err());
    }

    #[test]
    fn a_success_is_told_once() {
        let mut p = payment(Some("pm_card_visa"));
        assert_eq!(p.status, PaymentStatus::Creating);
        assert_eq!(apply(&mut p, intent(IntentStatus::Processing)), []);
        assert_eq!(apply(&mut p, intent(IntentStatus::Succeeded)), [Outcome::Succeeded]);
        assert_eq!(apply(&mut p, intent(IntentStatus::Succeeded)), []);
        assert_eq!(apply(&mut p, intent(IntentStatus::Processing)), [], "a late answer changes nothing");
        assert_eq!((p.status, p.next_action_at), (PaymentStatus::Succeeded, None));
        assert!(p.paid_at.is_some());
    }

    #[test]
    fn a_success_after_the_order_ended_is_told_then_refunded() {
        let mut p = payment(Some("pm_card_visa"));
        assert!(p.end_order(kernel::db::now()));
        assert_eq!(p.status, PaymentStatus::Canceling);
        assert_eq!(apply(&mut p, intent(IntentStatus::Succeeded)), [Outcome::Succeeded]);
        assert_eq!(p.status, PaymentStatus::Refunding);
        assert_eq!(apply(&mut p, ProviderAnswer::Refunded { refund_id: Some("re_1".into()) }), [Outcome::Refunded]);
        assert_eq!(apply(&mut p, ProviderAnswer::Refunded { refund_id: None }), []);
        assert_eq!((p.status, p.refund_id.as_deref()), (PaymentStatus::Refunded, Some("re_1")));
    }

    #[test]
    fn ending_the_order_cancels_what_is_open_and_refunds_what_is_paid() {
        let now = kernel::db::now();
        let mut unpaid = payment(None);
        assert!(unpaid.end_order(now));
        assert_eq!((unpaid.status, unpaid.next_action_at), (PaymentStatus::Canceled, None));
        let mut paid = payment(Some("pm_card_visa"));
        apply(&mut paid, intent(IntentStatus::Succeeded));
        assert!(paid.end_order(now));
        assert_eq!(paid.status, PaymentStatus::Refunding);
        assert!(!paid.end_order(now), "twice is once");
        let mut failed = payment(Some("pm_card_chargeDeclined"));
        apply(&mut failed, ProviderAnswer::Refused(Failure::declined("card_declined", "declined")));
        assert!(failed.end_order(now));
        assert_eq!(failed.status, PaymentStatus::Failed, "nothing to give back");
    }

    #[test]
    fn a_decline_fails_an_open_payment_and_cancels_one_being_canceled() {
        let mut p = payment(Some("pm_card_threeDSecure2Required"));
        let outcomes = apply(&mut p, intent(IntentStatus::RequiresAction));
        assert_eq!(outcomes, [Outcome::ActionRequired { client_secret: "pi_1_secret".into() }]);
        let failure = Failure::declined("payment_intent_authentication_failure", "failed");
        assert_eq!(apply(&mut p, ProviderAnswer::Refused(failure.clone())), [Outcome::Failed(failure.clone())]);
        assert_eq!(p.failure_code.as_deref(), Some("payment_intent_authentication_failure"));

        let mut canceling = payment(Some("pm_card_visa"));
        canceling.end_order(kernel::db::now());
        assert_eq!(apply(&mut canceling, ProviderAnswer::Refused(failure)), []);
        assert_eq!(canceling.status, PaymentStatus::Canceled);
    }
}
