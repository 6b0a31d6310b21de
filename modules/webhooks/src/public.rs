//! The public events: what other systems may subscribe to, a contract of its own (version 1).
//!
//! Not the internal envelope: each public event is a name (`order.confirmed`) and a payload written
//! here, from the internal event it follows. A body is `{"type", "timestamp", "data"}`; `timestamp`
//! is when the fact happened (the internal event's `occurredAt`). Fields may be added to a payload;
//! a change that removes or changes one comes as a new name (`order.confirmed.v2`) beside the old.
//! They are listed in the README and in the OpenAPI document's `webhooks` section.

use chrono::{DateTime, Utc};
use contracts::{Address, Money, Quantity};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Ref, SchemaFormat, SchemaType, Type};
use utoipa::openapi::{ContentBuilder, KnownFormat, Paths, PathsBuilder, Required, ResponseBuilder};
use uuid::Uuid;

/// A public event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    OrderCreated,
    OrderConfirmed,
    OrderRejected,
    OrderCancelled,
    PaymentSucceeded,
    PaymentFailed,
    PaymentRefunded,
    ShipmentDispatched,
    ShipmentDelivered,
    ShipmentCancelled,
    /// `POST /webhooks/{id}/test`: sent whatever the endpoint subscribes to.
    Ping,
}

impl EventKind {
    /// What an endpoint may subscribe to.
    pub const SUBSCRIBABLE: [Self; 10] = [
        Self::OrderCreated,
        Self::OrderConfirmed,
        Self::OrderRejected,
        Self::OrderCancelled,
        Self::PaymentSucceeded,
        Self::PaymentFailed,
        Self::PaymentRefunded,
        Self::ShipmentDispatched,
        Self::ShipmentDelivered,
        Self::ShipmentCancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrderCreated => "order.created",
            Self::OrderConfirmed => "order.confirmed",
            Self::OrderRejected => "order.rejected",
            Self::OrderCancelled => "order.cancelled",
            Self::PaymentSucceeded => "payment.succeeded",
            Self::PaymentFailed => "payment.failed",
            Self::PaymentRefunded => "payment.refunded",
            Self::ShipmentDispatched => "shipment.dispatched",
            Self::ShipmentDelivered => "shipment.delivered",
            Self::ShipmentCancelled => "shipment.cancelled",
            Self::Ping => "webhook.ping",
        }
    }

    /// A name an endpoint may subscribe to.
    pub fn parse(s: &str) -> Option<Self> {
        Self::SUBSCRIBABLE.into_iter().find(|kind| kind.as_str() == s)
    }

    /// Its payload's schema name and what it means.
    fn described(self) -> (&'static str, &'static str) {
        match self {
            Self::OrderCreated => ("OrderCreatedData", "A customer placed an order; its stock is being reserved."),
            Self::OrderConfirmed => ("OrderConfirmedData", "The order is reserved and paid: it will ship."),
            Self::OrderRejected => ("OrderRejectedData", "The order could not be reserved or paid; it ended."),
            Self::OrderCancelled => ("OrderCancelledData", "The order ended before it shipped."),
            Self::PaymentSucceeded => ("PaymentSucceededData", "The order's payment was taken."),
            Self::PaymentFailed => ("PaymentFailedData", "A payment attempt for the order took no money."),
            Self::PaymentRefunded => ("PaymentRefundedData", "The money taken for the order was given back."),
            Self::ShipmentDispatched => ("ShipmentDispatchedData", "The order's parcel left the warehouse."),
            Self::ShipmentDelivered => ("ShipmentDeliveredData", "The parcel reached the customer."),
            Self::ShipmentCancelled => ("ShipmentCancelledData", "The shipment will never be dispatched."),
            Self::Ping => ("PingData", "A test sent by `POST /webhooks/{id}/test`."),
        }
    }
}

/// What every delivery's body is: `{"type", "timestamp", "data"}`.
#[derive(Debug, Serialize)]
pub struct Body<'a, T: Serialize> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub timestamp: DateTime<Utc>,
    pub data: &'a T,
}

/// A product and how many of it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemData {
    pub product_id: Uuid,
    pub quantity: Quantity,
}

/// An order line, its prices as the customer saw them.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineData {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub quantity: Quantity,
    pub unit_price: Money,
    pub line_total: Money,
}

/// `order.created`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreatedData {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub items: Vec<ItemData>,
}

/// `order.confirmed`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderConfirmedData {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub lines: Vec<LineData>,
    pub shipping_address: Address,
    pub total: Money,
}

/// `order.rejected`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderRejectedData {
    pub order_id: Uuid,
    pub user_id: Uuid,
    pub reason: String,
}

/// `order.cancelled`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderCancelledData {
    pub order_id: Uuid,
    pub user_id: Uuid,
}

/// `payment.succeeded`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentSucceededData {
    pub order_id: Uuid,
    pub payment_id: Uuid,
    pub amount: Money,
    pub paid_at: DateTime<Utc>,
}

/// `payment.failed`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentFailedData {
    pub order_id: Uuid,
    pub payment_id: Uuid,
    /// The provider's code: `card_declined`, `insufficient_funds`, …
    pub code: String,
    pub reason: String,
    /// Whether another payment method may still be given for the order.
    pub retryable: bool,
}

/// `payment.refunded`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRefundedData {
    pub order_id: Uuid,
    pub payment_id: Uuid,
    pub amount: Money,
    pub refunded_at: DateTime<Utc>,
}

/// `shipment.dispatched`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentDispatchedData {
    pub order_id: Uuid,
    pub shipment_id: Uuid,
    pub carrier: String,
    pub tracking_number: String,
}

/// `shipment.delivered`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentDeliveredData {
    pub order_id: Uuid,
    pub shipment_id: Uuid,
}

/// `shipment.cancelled`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentCancelledData {
    pub order_id: Uuid,
    pub shipment_id: Uuid,
    pub reason: String,
}

/// `webhook.ping`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PingData {
    pub endpoint_id: Uuid,
}

/// The OpenAPI 3.1 `webhooks` section: one entry per public event, its body and its headers.
pub fn openapi_webhooks() -> Paths {
    let mut paths = PathsBuilder::new();
    for kind in EventKind::SUBSCRIBABLE.into_iter().chain([EventKind::Ping]) {
        let (schema, description) = kind.described();
        let body = ObjectBuilder::new()
            .property("type", ObjectBuilder::new().schema_type(Type::String).enum_values(Some([kind.as_str()])))
            .required("type")
            .property(
                "timestamp",
                ObjectBuilder::new()
                    .schema_type(SchemaType::new(Type::String))
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                    .description(Some("When it happened")),
            )
            .required("timestamp")
            .property("data", Ref::from_schema_name(schema))
            .required("data");
        let operation = OperationBuilder::new()
            .tag("webhooks")
            .operation_id(Some(kind.as_str()))
            .summary(Some(description))
            .description(Some(format!(
                "POSTed to every enabled endpoint subscribed to `{}`, with the Standard Webhooks headers \
                 `webhook-id` (`msg_…`, the same on every attempt), `webhook-timestamp` (Unix seconds) \
                 and `webhook-signature` (`v1,<base64 HMAC-SHA256 of id.timestamp.body>`, one per \
                 signing secret, space-separated). Any 2xx within `webhooks.timeout_secs` is success.",
                kind.as_str()
            )))
            .request_body(Some(
                RequestBodyBuilder::new()
                    .content("application/json", ContentBuilder::new().schema(Some(body)).build())
                    .required(Some(Required::True))
                    .build(),
            ))
            .response("200", ResponseBuilder::new().description("Received (any 2xx)"));
        paths = paths.path(kind.as_str(), PathItem::new(HttpMethod::Post, operation));
    }
    paths.build()
}
