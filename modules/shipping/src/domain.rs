//! The shipping module's domain: one shipment per confirmed order, and its status machine.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Where the parcel goes, and how many of each product, are the shared vocabulary's: the order's
/// address when it was confirmed, or the one its customer asked for since, while the shipment
/// was pending.
pub use contracts::{Address, Quantity};

kernel::uuid_id!(ShipmentId);

kernel::uuid_id!(OrderId);

/// A shipment's status. Only [`ShipmentStatus::transition`] moves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShipmentStatus {
    Pending,
    Dispatched,
    Delivered,
    Cancelled,
}

/// What happens to a shipment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShipmentEvent {
    Dispatch,
    Deliver,
    Cancel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a shipment that is {} cannot take {event:?}", from.as_str())]
pub struct InvalidTransition {
    pub from: ShipmentStatus,
    pub event: ShipmentEvent,
}

impl ShipmentStatus {
    pub const ALL: [ShipmentStatus; 4] = [Self::Pending, Self::Dispatched, Self::Delivered, Self::Cancelled];

    /// `pending → dispatched | cancelled`, `dispatched → delivered`; nothing else. A dispatched
    /// parcel is on its way: nothing cancels it.
    pub fn transition(self, event: ShipmentEvent) -> Result<ShipmentStatus, InvalidTransition> {
        use ShipmentEvent as E;
        use ShipmentStatus as S;
        match (self, event) {
            (S::Pending, E::Dispatch) => Ok(S::Dispatched),
            (S::Pending, E::Cancel) => Ok(S::Cancelled),
            (S::Dispatched, E::Deliver) => Ok(S::Delivered),
            (from, event) => Err(InvalidTransition { from, event }),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Dispatched => "dispatched",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw).ok_or_else(|| {
            let all: Vec<&str> = Self::ALL.iter().map(ShipmentStatus::as_str).collect();
            format!("'{raw}' is not a status ({})", all.join(", "))
        })
    }
}

/// Who carries the parcel: 1 to 100 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carrier(String);

impl Carrier {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() || raw.chars().count() > 100 || raw.chars().any(char::is_control) {
            return Err("must be 1 to 100 characters".into());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The carrier's reference for the parcel: 1 to 64 letters, digits or hyphens, kept upper case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingNumber(String);

impl TrackingNumber {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() || raw.len() > 64 || !raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err("must be 1 to 64 letters, digits or hyphens".into());
        }
        Ok(Self(raw.to_ascii_uppercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A line of the order, as the packer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub quantity: Quantity,
}

/// The instants at which a shipment reached each status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    pub dispatched_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipment {
    pub id: ShipmentId,
    pub order_id: OrderId,
    pub user_id: Uuid,
    pub status: ShipmentStatus,
    pub lines: Vec<Line>,
    /// `None` only on a tombstone.
    pub address: Option<Address>,
    pub carrier: Option<Carrier>,
    pub tracking_number: Option<TrackingNumber>,
    pub cancellation_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub timeline: Timeline,
}

impl Shipment {
    /// The `pending` shipment of a confirmed order.
    pub fn open(order_id: OrderId, user_id: Uuid, lines: Vec<Line>, address: Address, now: DateTime<Utc>) -> Self {
        Self {
            id: ShipmentId::generate(),
            order_id,
            user_id,
            status: ShipmentStatus::Pending,
            lines,
            address: Some(address),
            carrier: None,
            tracking_number: None,
            cancellation_reason: None,
            created_at: now,
            updated_at: now,
            timeline: Timeline::default(),
        }
    }

    /// A shipment cancelled before its order's confirmation arrived: it keeps that order from
    /// ever getting one.
    pub fn tombstone(order_id: OrderId, user_id: Uuid, reason: &str, now: DateTime<Utc>) -> Self {
        Self {
            id: ShipmentId::generate(),
            order_id,
            user_id,
            status: ShipmentStatus::Cancelled,
            lines: Vec::new(),
            address: None,
            carrier: None,
            tracking_number: None,
            cancellation_reason: Some(reason.to_owned()),
            created_at: now,
            updated_at: now,
            timeline: Timeline { cancelled_at: Some(now), ..Timeline::default() },
        }
    }

    /// Moves the shipment on `event`, stamping the time it reached its new status.
    pub fn apply(&mut self, event: ShipmentEvent, now: DateTime<Utc>) -> Result<(), InvalidTransition> {
        self.status = self.status.transition(event)?;
        self.updated_at = now;
        let stamp = match self.status {
            ShipmentStatus::Dispatched => &mut self.timeline.dispatched_at,
            ShipmentStatus::Delivered => &mut self.timeline.delivered_at,
            ShipmentStatus::Cancelled => &mut self.timeline.cancelled_at,
            ShipmentStatus::Pending => return Ok(()),
        };
        *stamp = Some(now);
        Ok(())
    }

    pub fn dispatch(
        &mut self,
        carrier: Carrier,
        tracking_number: TrackingNumber,
        now: DateTime<Utc>,
    ) -> Result<(), InvalidTransition> {
        self.apply(ShipmentEvent::Dispatch, now)?;
        self.carrier = Some(carrier);
        self.tracking_number = Some(tracking_number);
        Ok(())
    }

    /// Sends the parcel elsewhere: only while it is `pending`, the status it is refused from otherwise.
    pub fn change_address(&mut self, address: Address, now: DateTime<Utc>) -> Result<(), ShipmentStatus> {
        if self.status != ShipmentStatus::Pending {
            return Err(self.status);
        }
        self.address = Some(address);
        self.updated_at = now;
        Ok(())
    }

    pub fn cancel(&mut self, reason: &str, now: DateTime<Utc>) -> Result<(), InvalidTransition> {
        self.apply(ShipmentEvent::Cancel, now)?;
        self.cancellation_reason = Some(reason.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENTS: [ShipmentEvent; 3] = [ShipmentEvent::Dispatch, ShipmentEvent::Deliver, ShipmentEvent::Cancel];

    #[test]
    fn the_transitions_are_exactly_these() {
        use ShipmentEvent as E;
        use ShipmentStatus as S;
        let allowed = [
            (S::Pending, E::Dispatch, S::Dispatched),
            (S::Pending, E::Cancel, S::Cancelled),
            (S::Dispatched, E::Deliver, S::Delivered),
        ];
        for from in ShipmentStatus::ALL {
            for event in EVENTS {
                let expected = allowed.iter().find(|(f, e, _)| *f == from && *e == event).map(|(_, _, to)| *to);
                assert_eq!(from.transition(event).ok(), expected, "{from:?} on {event:?}");
            }
        }
    }

    /// Every sequence of up to five events from `pending`: a dispatched shipment is never
    /// cancelled, a cancelled one never dispatched, and nothing moves after the end.
    #[test]
    fn every_event_sequence_respects_the_invariants() {
        fn walk(status: ShipmentStatus, history: &mut Vec<ShipmentStatus>, depth: usize) {
            if depth == 0 {
                return;
            }
            for event in EVENTS {
                match status.transition(event) {
                    Ok(next) => {
                        assert!(!matches!(status, ShipmentStatus::Delivered | ShipmentStatus::Cancelled));
                        if next == ShipmentStatus::Cancelled {
                            assert!(!history.contains(&ShipmentStatus::Dispatched), "{history:?}");
                        }
                        if next == ShipmentStatus::Dispatched {
                            assert!(!history.contains(&ShipmentStatus::Cancelled), "{history:?}");
                        }
                        history.push(next);
                        walk(next, history, depth - 1);
                        history.pop();
                    }
                    Err(e) => assert_eq!((e.from, e.event), (status, event)),
                }
            }
        }
        walk(ShipmentStatus::Pending, &mut vec![ShipmentStatus::Pending], 5);
    }

    #[test]
    fn statuses_round_trip() {
        for status in ShipmentStatus::ALL {
            assert_eq!(ShipmentStatus::parse(status.as_str()), Ok(status));
        }
        assert!(ShipmentStatus::parse("shipped").is_err());
    }

    #[test]
    fn carriers_and_tracking_numbers_are_checked() {
        assert_eq!(Carrier::parse("  DHL Express ").map(|c| c.as_str().to_owned()), Ok("DHL Express".into()));
        assert!(Carrier::parse(" ").is_err());
        assert!(Carrier::parse(&"x".repeat(101)).is_err());
        assert!(Carrier::parse("a\nb").is_err());
        assert_eq!(TrackingNumber::parse("jd0146-0001").map(|t| t.as_str().to_owned()), Ok("JD0146-0001".into()));
        assert!(TrackingNumber::parse("").is_err());
        assert!(TrackingNumber::parse("AB 12").is_err());
        assert!(TrackingNumber::parse(&"1".repeat(65)).is_err());
    }

    fn address(city: &str) -> Address {
        let form = contracts::AddressForm {
            name: Some("Ada".into()),
            line1: Some("1 Main St".into()),
            city: Some(city.into()),
            postal_code: Some("N1".into()),
            country: Some("GB".into()),
            ..Default::default()
        };
        Address::parse(&form).expect("valid")
    }

    fn shipment() -> Shipment {
        Shipment::open(OrderId::generate(), Uuid::now_v7(), Vec::new(), address("London"), Utc::now())
    }

    #[test]
    fn each_change_stamps_its_time_and_a_refused_one_changes_nothing() {
        let now = Utc::now();
        let mut s = shipment();
        let carrier = Carrier::parse("DHL").expect("valid");
        let tracking = TrackingNumber::parse("T1").expect("valid");
        s.dispatch(carrier.clone(), tracking.clone(), now).expect("pending ships");
        assert_eq!(
            (s.status, s.timeline.dispatched_at, s.carrier.as_ref()),
            (ShipmentStatus::Dispatched, Some(now), Some(&carrier))
        );
        let before = s.clone();
        assert!(s.cancel("too late", now).is_err());
        assert_eq!(s, before);
        s.apply(ShipmentEvent::Deliver, now).expect("dispatched arrives");
        assert_eq!(s.timeline.delivered_at, Some(now));

        assert_eq!(s.clone().change_address(address("Bath"), now), Err(ShipmentStatus::Delivered));

        let mut pending = shipment();
        pending.change_address(address("Bath"), now).expect("a pending shipment goes elsewhere");
        assert_eq!(pending.address.as_ref().map(Address::city), Some("Bath"));

        let tombstone = Shipment::tombstone(OrderId::generate(), Uuid::now_v7(), "asked", now);
        assert_eq!((tombstone.status, tombstone.timeline.cancelled_at), (ShipmentStatus::Cancelled, Some(now)));
    }
}
