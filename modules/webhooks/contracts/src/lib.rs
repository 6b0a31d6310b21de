//! Events published by the webhooks module: what an operator must hear of. A breaking change to
//! one gets a new version.

use chrono::{DateTime, Utc};
use contracts::{IntegrationEvent, Publisher};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The webhooks module, as the publisher of these events.
pub enum Webhooks {}

impl Publisher for Webhooks {
    const NAME: &'static str = "webhooks";
}

/// An endpoint failed too many delivery attempts in a row and was disabled: nothing more is sent to it
/// until an admin re-enables it. The notifications module tells the shop's admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpointDisabled {
    pub endpoint_id: Uuid,
    pub url: String,
    /// Failed attempts in a row.
    pub failures: u32,
    /// The last attempt's error.
    pub last_error: String,
    pub disabled_at: DateTime<Utc>,
}

impl IntegrationEvent for WebhookEndpointDisabled {
    type Publisher = Webhooks;
    const NAME: &'static str = "WebhookEndpointDisabled";
    const VERSION: u32 = 1;
}

/// The JSON of every event, byte for byte: consumers on other versions decode it.
#[cfg(test)]
mod wire {
    use super::*;

    #[test]
    fn every_event_keeps_its_wire_format() {
        let event = WebhookEndpointDisabled {
            endpoint_id: Uuid::from_u128(1),
            url: "https://erp.example.com/hooks".into(),
            failures: 50,
            last_error: "HTTP 500".into(),
            disabled_at: DateTime::from_timestamp(1_700_000_000, 0).expect("valid"),
        };
        let json = r#"{"endpointId":"00000000-0000-0000-0000-000000000001","url":"https://erp.example.com/hooks","failures":50,"lastError":"HTTP 500","disabledAt":"2023-11-14T22:13:20Z"}"#;
        assert_eq!(serde_json::to_string(&event).expect("encodes"), json);
        assert_eq!(serde_json::from_str::<WebhookEndpointDisabled>(json).expect("decodes"), event);
    }
}
