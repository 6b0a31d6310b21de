//! Events published by the basket module: a customer's basket checked out, for orders to turn
//! into an order. A breaking change to one gets a new version.

use contracts::{Address, IntegrationEvent, Money, Publisher, Quantity};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The basket module, as the publisher of these events.
pub enum Basket {}

impl Publisher for Basket {
    const NAME: &'static str = "basket";
}

/// A basket line as checked out, at the price the customer accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckedOutLine {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub quantity: Quantity,
    pub unit_price: Money,
}

/// The customer checked out a basket: orders creates the order `order_id` from it (idempotent on the id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BasketCheckedOut {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub basket_id: Uuid,
    pub lines: Vec<CheckedOutLine>,
    pub shipping_address: Address,
    pub payment_method: Option<String>,
}

impl IntegrationEvent for BasketCheckedOut {
    type Publisher = Basket;
    const NAME: &'static str = "BasketCheckedOut";
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

    fn address() -> Address {
        Address::parse(&contracts::AddressForm {
            name: Some("Ada Lovelace".into()),
            line1: Some("12 St James's Square".into()),
            line2: None,
            city: Some("London".into()),
            postal_code: Some("SW1Y 4JH".into()),
            country: Some("GB".into()),
        })
        .expect("valid")
    }

    /// `event` encodes to exactly `json`, and `json` decodes to `event`.
    fn pinned<E: IntegrationEvent + PartialEq + std::fmt::Debug>(event: E, json: &str) {
        assert_eq!(serde_json::to_string(&event).expect("encodes"), json);
        assert_eq!(serde_json::from_str::<E>(json).expect("decodes"), event);
    }

    fn checked_out(payment_method: Option<&str>) -> BasketCheckedOut {
        BasketCheckedOut {
            order_id: id(1),
            user_id: id(2),
            basket_id: id(3),
            lines: vec![CheckedOutLine {
                product_id: id(4),
                sku: "MUG-1".into(),
                name: "Mug".into(),
                quantity: Quantity::new(2).expect("valid"),
                unit_price: eur(500),
            }],
            shipping_address: address(),
            payment_method: payment_method.map(str::to_owned),
        }
    }

    #[test]
    fn every_event_keeps_its_wire_format() {
        pinned(
            checked_out(Some("pm_card_visa")),
            r#"{"orderId":"00000000-0000-0000-0000-000000000001","userId":"00000000-0000-0000-0000-000000000002","basketId":"00000000-0000-0000-0000-000000000003","lines":[{"productId":"00000000-0000-0000-0000-000000000004","sku":"MUG-1","name":"Mug","quantity":2,"unitPrice":{"amount":500,"currency":"EUR"}}],"shippingAddress":{"name":"Ada Lovelace","line1":"12 St James's Square","line2":null,"city":"London","postalCode":"SW1Y 4JH","country":"GB"},"paymentMethod":"pm_card_visa"}"#,
        );
        pinned(
            checked_out(None),
            r#"{"orderId":"00000000-0000-0000-0000-000000000001","userId":"00000000-0000-0000-0000-000000000002","basketId":"00000000-0000-0000-0000-000000000003","lines":[{"productId":"00000000-0000-0000-0000-000000000004","sku":"MUG-1","name":"Mug","quantity":2,"unitPrice":{"amount":500,"currency":"EUR"}}],"shippingAddress":{"name":"Ada Lovelace","line1":"12 St James's Square","line2":null,"city":"London","postalCode":"SW1Y 4JH","country":"GB"},"paymentMethod":null}"#,
        );
    }

    #[test]
    fn a_line_of_nothing_or_a_negative_price_does_not_decode() {
        let event = serde_json::to_value(checked_out(None)).expect("encodes");
        for (field, invalid) in
            [("quantity", serde_json::json!(0)), ("unitPrice", serde_json::json!({"amount": -1, "currency": "EUR"}))]
        {
            let mut broken = event.clone();
            broken["lines"][0][field] = invalid;
            assert!(serde_json::from_value::<BasketCheckedOut>(broken).is_err(), "{field}");
        }
    }
}
