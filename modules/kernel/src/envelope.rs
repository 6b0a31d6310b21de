//! The envelope every integration event travels in, on every bus.

use chrono::{DateTime, Utc};
use contracts::{EventType, IntegrationEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::bus::HandlerError;

/// `{"id", "event", "version", "source", "occurredAt", "correlationId", "causationId", "traceparent", "data"}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// UUID v7: unique, and ordered by creation time.
    pub id: Uuid,
    pub event: String,
    pub version: u32,
    pub source: String,
    pub occurred_at: DateTime<Utc>,
    /// Shared by every event of one business flow (an order's saga, say).
    pub correlation_id: Uuid,
    /// The event that caused this one, if any.
    pub causation_id: Option<Uuid>,
    /// W3C trace context of the span that published the event.
    pub traceparent: Option<String>,
    pub data: serde_json::Value,
}

/// `00-<trace id>-<span id>-01`: a flow's trace id is its correlation id, each event a span.
fn traceparent(trace: Uuid, span: Uuid) -> String {
    format!("00-{}-{}-01", trace.simple(), span_id(span))
}

/// The random low half of a UUID v7, as a 16-hex-digit W3C span id.
fn span_id(id: Uuid) -> String {
    id.simple().to_string()[16..].to_owned()
}

impl Envelope {
    /// Wraps `event` in a new envelope that starts a flow of its own.
    pub fn new<E: IntegrationEvent>(event: &E) -> Result<Self, serde_json::Error> {
        let id = Uuid::now_v7();
        Ok(Self {
            id,
            event: E::NAME.to_owned(),
            version: E::VERSION,
            source: E::SOURCE.to_owned(),
            occurred_at: crate::db::now(),
            correlation_id: id,
            causation_id: None,
            traceparent: Some(traceparent(id, id)),
            data: serde_json::to_value(event)?,
        })
    }

    /// The W3C trace id of the flow this event belongs to, from `traceparent`.
    pub fn trace_id(&self) -> Option<&str> {
        self.traceparent.as_deref().and_then(|t| t.split('-').nth(1))
    }

    /// Wraps `event` as a consequence of `cause`: same correlation, caused by it, same trace.
    pub fn caused_by<E: IntegrationEvent>(event: &E, cause: &Envelope) -> Result<Self, serde_json::Error> {
        let mut envelope = Self::new(event)?;
        envelope.correlation_id = cause.correlation_id;
        envelope.causation_id = Some(cause.id);
        // The cause's trace continues, with this event as its next span.
        if let Some(trace_id) = cause.trace_id() {
            envelope.traceparent = Some(format!("00-{trace_id}-{}-01", span_id(envelope.id)));
        }
        Ok(envelope)
    }

    /// Whether this envelope carries `E` (same source, name and version).
    pub fn is<E: IntegrationEvent>(&self) -> bool {
        self.source == E::SOURCE && self.event == E::NAME && self.version == E::VERSION
    }

    /// Decodes `data` as `E`; a payload that does not fit is a [`HandlerError::Malformed`].
    pub fn decode<E: IntegrationEvent>(&self) -> Result<E, HandlerError> {
        if !self.is::<E>() {
            return Err(HandlerError::Malformed(format!(
                "expected {}, got {}.{}.v{}",
                E::event_type(),
                self.source,
                self.event,
                self.version
            )));
        }
        serde_json::from_value(self.data.clone())
            .map_err(|e| HandlerError::Malformed(format!("{} data does not decode: {e}", E::NAME)))
    }

    /// `<source>.<event-in-kebab-case>.v<version>`
    pub fn routing_key(&self) -> String {
        contracts::routing_key(&self.source, &self.event, self.version)
    }

    /// Whether a consumer of `event_type` wants this envelope.
    pub fn matches(&self, event_type: &EventType) -> bool {
        self.source == event_type.source && self.event == event_type.name && self.version == event_type.version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The kernel knows no module's events: a stand-in with the catalog's wire format.
    enum Catalog {}

    impl contracts::Publisher for Catalog {
        const NAME: &'static str = "catalog";
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ProductDiscontinued {
        product_id: Uuid,
        sku: String,
        version: u64,
    }

    impl IntegrationEvent for ProductDiscontinued {
        type Publisher = Catalog;
        const NAME: &'static str = "ProductDiscontinued";
        const VERSION: u32 = 1;
    }

    #[test]
    fn an_envelope_round_trips_through_json_in_camel_case() {
        let event = ProductDiscontinued { product_id: Uuid::now_v7(), sku: "SKU-1".into(), version: 1 };
        let envelope = Envelope::new(&event).expect("serialises");
        let json = serde_json::to_value(&envelope).expect("serialises");
        assert_eq!(json["event"], "ProductDiscontinued");
        assert_eq!(json["version"], 1);
        assert_eq!(json["source"], "catalog");
        assert!(json["occurredAt"].is_string());
        assert_eq!(json["correlationId"], json["id"]);
        assert!(json["causationId"].is_null());
        assert_eq!(json["data"]["productId"], event.product_id.to_string());
        let back: Envelope = serde_json::from_value(json).expect("deserialises");
        assert_eq!(back.decode::<ProductDiscontinued>().expect("decodes"), event);
        assert_eq!(back.routing_key(), "catalog.product-discontinued.v1");
    }

    #[test]
    fn a_caused_envelope_keeps_the_correlation_and_names_its_cause() {
        let cause = Envelope::new(&ProductDiscontinued { product_id: Uuid::now_v7(), sku: "A".into(), version: 1 })
            .expect("serialises");
        let effect = Envelope::caused_by(
            &ProductDiscontinued { product_id: Uuid::now_v7(), sku: "B".into(), version: 1 },
            &cause,
        )
        .expect("serialises");
        assert_eq!(effect.correlation_id, cause.correlation_id);
        assert_eq!(effect.causation_id, Some(cause.id));
        assert_ne!(effect.id, cause.id);
    }

    /// A stand-in whose fields are the shared vocabulary's, as orders' and catalog's events are.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct ItemPriced {
        quantity: contracts::Quantity,
        price: contracts::Money,
    }

    impl IntegrationEvent for ItemPriced {
        type Publisher = Catalog;
        const NAME: &'static str = "ItemPriced";
        const VERSION: u32 = 1;
    }

    #[test]
    fn an_event_carrying_an_invalid_value_is_malformed_and_so_dead_lettered_at_once() {
        let valid = serde_json::json!({"quantity": 2, "price": {"amount": 1299, "currency": "EUR"}});
        let mut envelope = Envelope::new(&serde_json::from_value::<ItemPriced>(valid).expect("valid")).expect("JSON");
        for invalid in [
            serde_json::json!({"quantity": 0, "price": {"amount": 1299, "currency": "EUR"}}),
            serde_json::json!({"quantity": 2, "price": {"amount": -1, "currency": "EUR"}}),
            serde_json::json!({"quantity": 2, "price": {"amount": 1299, "currency": "XYZ"}}),
        ] {
            envelope.data = invalid.clone();
            let error = envelope.decode::<ItemPriced>().expect_err("does not decode");
            assert!(matches!(error, HandlerError::Malformed(_)), "{invalid}: {error:?}");
            let verdict = crate::bus::RetryPolicy::default().verdict(&error, 1);
            assert_eq!(verdict, crate::bus::Verdict::DeadLetter { attempts: 1 }, "{invalid}");
        }
    }

    #[test]
    fn data_of_the_wrong_shape_is_malformed() {
        let mut envelope =
            Envelope::new(&ProductDiscontinued { product_id: Uuid::now_v7(), sku: "A".into(), version: 1 })
                .expect("serialises");
        envelope.data = serde_json::json!({"productId": 42});
        assert!(matches!(envelope.decode::<ProductDiscontinued>(), Err(HandlerError::Malformed(_))));
    }
}
