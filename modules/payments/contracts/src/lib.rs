//! Events published by the payments module: what became of an order's payment. Each names the
//! order and the attempt (`OrderPaymentRequested.attempt`) it answers. A breaking change to one gets
//! a new version.

use chrono::{DateTime, Utc};
use contracts::{IntegrationEvent, Money, Publisher};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The payments module, as the publisher of these events.
pub enum Payments {}

impl Publisher for Payments {
    const NAME: &'static str = "payments";
}

/// The customer must complete the payment with the provider (3-D Secure, say), using the client
/// secret; the provider's answer then comes as `PaymentSucceeded` or `PaymentFailed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentActionRequired {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub attempt: u32,
    pub client_secret: String,
}

impl IntegrationEvent for PaymentActionRequired {
    type Publisher = Payments;
    const NAME: &'static str = "PaymentActionRequired";
    const VERSION: u32 = 1;
}

/// The money was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentSucceeded {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub attempt: u32,
    pub amount: Money,
    pub paid_at: DateTime<Utc>,
}

impl IntegrationEvent for PaymentSucceeded {
    type Publisher = Payments;
    const NAME: &'static str = "PaymentSucceeded";
    const VERSION: u32 = 1;
}

/// No money was taken. `retryable == false`: the provider declined (a declined card, insufficient
/// funds, a failed authentication) and the order cannot be paid. `retryable == true`: the payment
/// method itself was unusable (unknown to the provider, say); another may be given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentFailed {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub attempt: u32,
    /// The provider's code: `card_declined`, `insufficient_funds`, `resource_missing`, …
    pub code: String,
    /// The provider's words, for the customer.
    pub reason: String,
    pub retryable: bool,
}

impl IntegrationEvent for PaymentFailed {
    type Publisher = Payments;
    const NAME: &'static str = "PaymentFailed";
    const VERSION: u32 = 1;
}

/// The money taken was given back: the order ended without shipping after it was paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRefunded {
    pub payment_id: Uuid,
    pub order_id: Uuid,
    pub attempt: u32,
    pub amount: Money,
    pub refunded_at: DateTime<Utc>,
}

impl IntegrationEvent for PaymentRefunded {
    type Publisher = Payments;
    const NAME: &'static str = "PaymentRefunded";
    const VERSION: u32 = 1;
}

/// The JSON of every event, byte for byte: consumers on other versions decode it.
#[cfg(test)]
mod wire {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn eur(amount: i64) -> Money {
        Money::new(amount, contracts::Currency::parse("EUR").expect("valid")).expect("valid")
    }

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-27T12:00:00Z").expect("valid").to_utc()
    }

    /// `event` encodes to exactly `json`, and `json` decodes to `event`.
    fn pinned<E: IntegrationEvent + PartialEq + std::fmt::Debug>(event: E, json: &str) {
        assert_eq!(serde_json::to_string(&event).expect("encodes"), json);
        assert_eq!(serde_json::from_str::<E>(json).expect("decodes"), event);
    }

    #[test]
    fn every_event_keeps_its_wire_format() {
        pinned(
            PaymentActionRequired {
                payment_id: id(1),
                order_id: id(2),
                attempt: 1,
                client_secret: "pi_1_secret_2".into(),
            },
            r#"{"paymentId":"00000000-0000-0000-0000-000000000001","orderId":"00000000-0000-0000-0000-000000000002","attempt":1,"clientSecret":"pi_1_secret_2"}"#,
        );
        pinned(
            PaymentSucceeded { payment_id: id(1), order_id: id(2), attempt: 2, amount: eur(1299), paid_at: at() },
            r#"{"paymentId":"00000000-0000-0000-0000-000000000001","orderId":"00000000-0000-0000-0000-000000000002","attempt":2,"amount":{"amount":1299,"currency":"EUR"},"paidAt":"2026-11-27T12:00:00Z"}"#,
        );
        pinned(
            PaymentFailed {
                payment_id: id(1),
                order_id: id(2),
                attempt: 1,
                code: "card_declined".into(),
                reason: "Your card was declined.".into(),
                retryable: false,
            },
            r#"{"paymentId":"00000000-0000-0000-0000-000000000001","orderId":"00000000-0000-0000-0000-000000000002","attempt":1,"code":"card_declined","reason":"Your card was declined.","retryable":false}"#,
        );
        pinned(
            PaymentRefunded { payment_id: id(1), order_id: id(2), attempt: 1, amount: eur(1299), refunded_at: at() },
            r#"{"paymentId":"00000000-0000-0000-0000-000000000001","orderId":"00000000-0000-0000-0000-000000000002","attempt":1,"amount":{"amount":1299,"currency":"EUR"},"refundedAt":"2026-11-27T12:00:00Z"}"#,
        );
    }

    #[test]
    fn a_negative_amount_does_not_decode() {
        let refunded = r#"{"paymentId":"00000000-0000-0000-0000-000000000001","orderId":"00000000-0000-0000-0000-000000000002","attempt":1,"amount":{"amount":-1,"currency":"EUR"},"refundedAt":"2026-11-27T12:00:00Z"}"#;
        assert!(serde_json::from_str::<PaymentRefunded>(refunded).is_err());
    }
}
