//! Endpoints, the addresses they may have, their secrets and signatures, and deliveries.

use std::fmt;
use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use url::{Host, Url};
use uuid::Uuid;

use crate::public::EventKind;

/// Where an endpoint receives its deliveries: an `https` URL (or `http` outside production), with
/// a host, no user or password in it, at most 2 048 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl(Url);

impl EndpointUrl {
    pub fn parse(s: &str, allow_http: bool) -> Result<Self, String> {
        if s.len() > 2048 {
            return Err("must be at most 2048 characters".into());
        }
        let url = Url::parse(s).map_err(|e| format!("is not a URL: {e}"))?;
        match url.scheme() {
            "https" => {}
            "http" if allow_http => {}
            "http" => return Err("must be https in production".into()),
            other => return Err(format!("must be an https URL, not {other}:")),
        }
        if url.host().is_none() {
            return Err("must name a host".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry a user name or password".into());
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &Url {
        &self.0
    }

    /// The host when it is an address rather than a name (a name is checked when it is resolved).
    pub fn literal_address(&self) -> Option<IpAddr> {
        match self.0.host()? {
            Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            Host::Domain(_) => None,
        }
    }

    /// The host name and port to resolve.
    pub fn host_and_port(&self) -> (String, u16) {
        let host = self.0.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
        (host, self.0.port_or_known_default().unwrap_or(443))
    }
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a destination is inside a private network, this host or a link (cloud metadata at
/// 169.254.169.254 included): refused unless `webhooks.allow_private_networks`.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                // Carrier-grade NAT (100.64.0.0/10) and the IETF's own (192.0.0.0/24).
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || a >= 240
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_internal(IpAddr::V4(v4)),
            None => {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || v6.is_unique_local()
                    || v6.is_unicast_link_local()
                    // IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::/96) reach IPv4 hosts.
                    || v6.segments()[..6] == [0; 6]
                    || v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
            }
        },
    }
}

/// An endpoint's signing secret, `whsec_<base64 of 32 random bytes>` as the Standard Webhooks
/// specification writes it; the HMAC key is the decoded bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    const PREFIX: &'static str = "whsec_";

    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        Self(format!("{}{}", Self::PREFIX, BASE64.encode(key)))
    }

    /// A stored secret, as written by [`generate`](Self::generate).
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `v1,<base64 of HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        let key = BASE64.decode(self.0.trim_start_matches(Self::PREFIX)).unwrap_or_default();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes a key of any length");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body.as_bytes());
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("whsec_***")
    }
}

/// A receiver the admin registered.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: Uuid,
    pub url: String,
    pub description: Option<String>,
    pub events: Vec<EventKind>,
    pub secret: Secret,
    /// The secret before the last rotation, and until when it still signs.
    pub previous_secret: Option<(Secret, DateTime<Utc>)>,
    pub enabled: bool,
    pub consecutive_failures: u32,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Endpoint {
    pub fn subscribes_to(&self, kind: EventKind) -> bool {
        self.events.contains(&kind)
    }

    /// The `webhook-signature` header: the current secret's signature, and the previous secret's
    /// while it still signs, space-separated as the specification allows.
    pub fn signature(&self, id: &str, timestamp: i64, body: &str, now: DateTime<Utc>) -> String {
        let mut signature = self.secret.sign(id, timestamp, body);
        if let Some((previous, until)) = &self.previous_secret
            && *until > now
        {
            signature.push(' ');
            signature.push_str(&previous.sign(id, timestamp, body));
        }
        signature
    }
}

/// A delivery's id: a UUIDv7 (so newest first is by id), shown and sent as `msg_<32 hex digits>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeliveryId(Uuid);

impl DeliveryId {
    const PREFIX: &'static str = "msg_";

    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn as_uuid(self) -> Uuid {
        self.0
    }

    /// `msg_…` or the bare UUID (a page cursor).
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix(Self::PREFIX).unwrap_or(s);
        Uuid::parse_str(hex).ok().map(Self)
    }
}

impl From<Uuid> for DeliveryId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.0.simple())
    }
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Not yet answered with a 2xx: queued, or retried later.
    Pending,
    Delivered,
    /// Given up on (`webhooks.retry_for_hours` passed, or its endpoint disabled or deleted).
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed].into_iter().find(|status| status.as_str() == s)
    }
}

/// One event (or ping) for one endpoint, and how its attempts went.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: DeliveryId,
    pub endpoint_id: Uuid,
    pub event_type: String,
    pub body: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub response_status: Option<u16>,
    pub latency_ms: Option<u64>,
    pub last_error: Option<String>,
    pub retry_until: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_destinations_are_recognised() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(is_internal(internal.parse().expect("an address")), "{internal}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(!is_internal(public.parse().expect("an address")), "{public}");
        }
    }

    #[test]
    fn urls_are_https_with_a_host_and_no_credentials() {
        assert!(EndpointUrl::parse("https://erp.example.com/hooks", false).is_ok());
        assert!(EndpointUrl::parse("http://erp.example.com/hooks", true).is_ok());
        assert_eq!(
            EndpointUrl::parse("http://erp.example.com/hooks", false).map(|_| ()),
            Err("must be https in production".into())
        );
        assert!(EndpointUrl::parse("ftp://erp.example.com/", true).is_err());
        assert!(EndpointUrl::parse("https://user:pw@erp.example.com/", true).is_err());
        assert!(EndpointUrl::parse("not a url", true).is_err());
        let url = EndpointUrl::parse("https://[::1]:8443/x", true).expect("valid");
        assert_eq!(url.literal_address(), Some("::1".parse().expect("an address")));
        assert_eq!(url.host_and_port(), ("::1".to_owned(), 8443));
    }

    /// The specification's own example (standard-webhooks/spec, "Signature scheme").
    #[test]
    fn signatures_match_the_specifications_example() {
        let secret = Secret::from_stored("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn delivery_ids_read_back() {
        let id = DeliveryId::new();
        assert!(id.to_string().starts_with("msg_") && id.to_string().len() == 36);
        assert_eq!(DeliveryId::parse(&id.to_string()), Some(id));
        assert_eq!(DeliveryId::parse(&id.as_uuid().to_string()), Some(id));
        assert_eq!(DeliveryId::parse("msg_nope"), None);
    }
}
