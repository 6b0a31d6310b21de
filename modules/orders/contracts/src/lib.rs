//! Events published by the orders module.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use contracts::{Address, IntegrationEvent, Money, Publisher, Quantity};

/// The orders module, as the publisher of these events.
pub enum Orders {}

impl Publisher for Orders {
    const NAME: &'static str = "orders";
}

/// A product and how many of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderItem {
    pub product_id: Uuid,
    pub quantity: Quantity,
}

/// An order line as the customer saw it, prices frozen at order time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub quantity: Quantity,
    pub unit_price: Money,
    pub line_total: Money,
}

/// A customer placed an order; inventory reserves its items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreated {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub items: Vec<OrderItem>,
}

impl IntegrationEvent for OrderCreated {
    type Publisher = Orders;
    const NAME: &'static str = "OrderCreated";
    const VERSION: u32 = 1;
}

/// Stock is reserved: the order will ship. Carries what shipping needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderConfirmed {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub lines: Vec<OrderLine>,
    pub shipping_address: Address,
    pub total: Money,
}

impl IntegrationEvent for OrderConfirmed {
    type Publisher = Orders;
    const NAME: &'static str = "OrderConfirmed";
    const VERSION: u32 = 1;
}

/// Stock could not be reserved; nothing is reserved for the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderRejected {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub reason: String,
}

impl IntegrationEvent for OrderRejected {
    type Publisher = Orders;
    const NAME: &'static str = "OrderRejected";
    const VERSION: u32 = 1;
}

/// The customer asked to cancel a confirmed order. Shipping decides: it cancels the shipment
/// unless it was dispatched already (`ShipmentCancelled`, or nothing and the order ships).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCancellationRequested {
    pub order_id: Uuid,
    pub user_id: Uuid,
}

impl IntegrationEvent for OrderCancellationRequested {
    type Publisher = Orders;
    const NAME: &'static str = "OrderCancellationRequested";
    const VERSION: u32 = 1;
}

/// The customer asked to change the shipping address of a confirmed order. Shipping decides: a
/// pending shipment takes it (`ShipmentAddressChanged`), a dispatched or cancelled one refuses
/// (`ShipmentAddressChangeRefused`); before the shipment exists, it is kept for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderAddressChangeRequested {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub shipping_address: Address,
}

impl IntegrationEvent for OrderAddressChangeRequested {
    type Publisher = Orders;
    const NAME: &'static str = "OrderAddressChangeRequested";
    const VERSION: u32 = 1;
}

/// The order ended before shipping; whatever was reserved for it is released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCancelled {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub items: Vec<OrderItem>,
}

impl IntegrationEvent for OrderCancelled {
    type Publisher = Orders;
    const NAME: &'static str = "OrderCancelled";
    const VERSION: u32 = 1;
}

/// The order's stock is reserved: charge it. Attempt 1 when the customer gave a payment method with
/// the order; one more for each method given later (`POST /orders/{id}/payment`), after the last
/// one was unusable. Payments answers each attempt once, whatever the repeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPaymentRequested {
    pub order_id: Uuid,
    pub user_id: Uuid,
    /// The order's total.
    pub amount: Money,
    /// The provider's payment method (`pm_card_visa`).
    pub payment_method: Option<String>,
    pub attempt: u32,
}

impl IntegrationEvent for OrderPaymentRequested {
    type Publisher = Orders;
    const NAME: &'static str = "OrderPaymentRequested";
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

    fn address(line2: Option<&str>) -> Address {
        Address::parse(&contracts::AddressForm {
            name: Some("Ada Lovelace".into()),
            line1: Some("12 St James's Square".into()),
            line2: line2.map(str::to_owned),
            city: Some("London".into()),
            postal_code: Some("SW1Y 4JH".into()),
            country: Some("GB".into()),
        })
        .expect("valid")
    }

    fn quantity(units: u32) -> Quantity {
        Quantity::new(units).expect("valid")
    }

    fn items() -> Vec<OrderItem> {
        vec![
            OrderItem { product_id: id(3), quantity: quantity(2) },
            OrderItem { product_id: id(4), quantity: quantity(1000) },
        ]
    }

    /// `event` encodes to exactly `json`, and `json` decodes to `event`.
    fn pinned<E: IntegrationEvent + PartialEq + std::fmt::Debug>(event: E, json: &str) {
        assert_eq!(serde_json::to_string(&event).expect("encodes"), json);
        assert_eq!(serde_json::from_str::<E>(json).expect("decodes"), event);
    }

    #[test]
    fn every_event_keeps_its_wire_format() {
        pinned(
            OrderCreated { order_id: id(1), user_id: id(2), items: items() },
            r#"{"orderId":"00000000-0000-0000-0000-000000000001","userId":"00000000-0000-0000-0000-000000000002","items":[{"productId":"00000000-0000-0000-0000-000000000003","quantity":2},{"productId":"00000000-0000-0000-0000-000000000004","quantity":1000}]}"#,
        );
        pinned(
            OrderConfirmed {
                order_id: id(1),
                user_id: id(2),
                lines: vec![OrderLine {
                    product_id: id(3),
                    sku: "MUG-1".into(),
                    name: "Mug".into(),
                    quantity: quantity(2),
                    unit_price: eur(500),
                    line_total: eur(1000),
                }],
                shipping_address: address(None),
                total: eur(1000),
            },
            r#"{"orderId":"00000000-0000-0000-0000-000000000001","userId":"00000000-0000-0000-0000-000000000002","lines":[{"productId":"00000000-0000-0000-0000-000000000003","sku":"MUG-1","name":"Mug","quantity":2,"unitPrice":{"amount":500,"currency":"EUR"},"lineTotal":{"amount":1000,"currency":"EUR"}}],"shippingAddress":{"name":"Ada Lovelace","line1":"12 St James's Square","line2":null,"city":"London","postalCode":"SW1Y 4JH","country":"GB"},"total":{"amount":1000,"currency":"EUR"}}"#,
        );
        pinned(
            OrderRejected { order_id: id(1), user_id: id(2), reason: "not enough stock".into() },
            r#"{"orderId":"00000000-0000-0000-0000-000000000001","userId":"00000000-0000-0000-0000-000000000002","reason":"not enough stock"}"#,
        );
        pinned(
            OrderCancellationRequested { order_id: id(1), user_id: id(2) },
            r#"{"orderId":"00000000-0000-0000-0000-000000000001","userId":"00000000-0000-0000-0000-000000000002"}"#,
        );
        pinned(
            OrderAddressChangeRequested { order_id: id(1), user_id: id(2), shipping_address: address(Some("Flat 2")) },
            r#"{"orderId":"00000000-0000-0000-0000-000000000001","userId":"00000000-0000-0000-0000-000000000002","shippingAddress":{"name":"Ada Lovelace","line1":"12 St James's Square","line2":"Flat 2","city":"London","postalCode":"SW1Y 4JH","country":"GB"}}"#,
        );
        pinned(
            OrderPaymentRequested {
                order_id: id(1),
                user_id: id(2),
                amount: eur(1000),
                payment_method: Some("pm_card_visa".into()),
                attempt: 1,
            },
            r#"{"orderId":"00000000-0000-0000-0000-000000000001","userId":"00000000-0000-0000-0000-000000000002","amount":{"amount":1000,"currency":"EUR"},"paymentMethod":"pm_card_visa","attempt":1}"#,
        );
        pinned(
            OrderCancelled { order_id: id(1), user_id: id(2), items: items() },
            r#"{"orderId":"00000000-0000-0000-0000-000000000001","userId":"00000000-0000-0000-0000-000000000002","items":[{"productId":"00000000-0000-0000-0000-000000000003","quantity":2},{"productId":"00000000-0000-0000-0000-000000000004","quantity":1000}]}"#,
        );
    }

    #[test]
    fn an_event_with_a_quantity_of_nothing_or_an_invalid_address_does_not_decode() {
        let created = r#"{"orderId":"00000000-0000-0000-0000-000000000001","userId":"00000000-0000-0000-0000-000000000002","items":[{"productId":"00000000-0000-0000-0000-000000000003","quantity":0}]}"#;
        assert!(serde_json::from_str::<OrderCreated>(created).is_err());
        let moved = r#"{"orderId":"00000000-0000-0000-0000-000000000001","userId":"00000000-0000-0000-0000-000000000002","shippingAddress":{"name":"Ada","line1":"1 Main St","line2":null,"city":"","postalCode":"N1","country":"GB"}}"#;
        assert!(serde_json::from_str::<OrderAddressChangeRequested>(moved).is_err());
    }
}
