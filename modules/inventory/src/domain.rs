//! The inventory's domain: stock levels per product and the fate of each order's reservation.

use std::collections::BTreeMap;

/// Units of one product held for an order are the shared vocabulary's [`Quantity`], as the
/// events that reserve and release them carry it.
pub use contracts::Quantity;

kernel::uuid_id!(ProductId);

kernel::uuid_id!(OrderId);

/// How many units an admin says are in the warehouse: zero or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct OnHand(i64);

impl OnHand {
    pub fn value(&self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for OnHand {
    type Error = String;

    fn try_from(units: i64) -> Result<Self, String> {
        if units < 0 {
            return Err("must not be negative".into());
        }
        Ok(Self(units))
    }
}

/// A product's stock: what is in the warehouse and how much of it orders hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockLevel {
    pub product_id: ProductId,
    pub on_hand: i64,
    pub reserved: i64,
}

impl StockLevel {
    /// What a new order may still reserve.
    pub fn available(&self) -> i64 {
        (self.on_hand - self.reserved).max(0)
    }
}

/// An order's items, one entry per product with the quantities of its lines summed; products in
/// id order, so concurrent reservations lock rows in the same order and cannot deadlock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lines(BTreeMap<ProductId, Quantity>);

impl Lines {
    /// Sums the quantities per product: an order holds at most [`Quantity::MAX`] units of one
    /// product, its lines of it together.
    pub fn sum(items: impl IntoIterator<Item = (ProductId, Quantity)>) -> Result<Self, String> {
        let mut lines: BTreeMap<ProductId, Quantity> = BTreeMap::new();
        for (product, quantity) in items {
            let total = match lines.get(&product) {
                None => quantity,
                Some(before) => before.checked_add(quantity).ok_or_else(|| {
                    format!("the quantities of product {product} add up to more than {}", Quantity::MAX)
                })?,
            };
            lines.insert(product, total);
        }
        Ok(Self(lines))
    }

    pub fn iter(&self) -> impl Iterator<Item = (ProductId, Quantity)> + '_ {
        self.0.iter().map(|(product, quantity)| (*product, *quantity))
    }
}

/// A line that cannot be reserved: fewer units are available than requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortage {
    pub product_id: ProductId,
    pub requested: u32,
    pub available: u32,
}

impl Shortage {
    /// The shortage of a line whose reservation failed, given the stock read afterwards (`None`
    /// for an unknown product). The conditional update decided; a release committed in between
    /// can make the reading larger, so it is capped to stay a shortage.
    pub fn of(product_id: ProductId, requested: Quantity, stock: Option<StockLevel>) -> Self {
        let requested = requested.get();
        let available = stock.map_or(0, |s| s.available());
        let available = u32::try_from(available).unwrap_or(u32::MAX).min(requested.saturating_sub(1));
        Self { product_id, requested, available }
    }
}

/// Where an order stands with the inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationStatus {
    /// Every line is held for the order.
    Reserved,
    /// Some line was short; nothing is held.
    Rejected,
    /// The order was cancelled; what it held is free again.
    Released,
    /// The order shipped; its units left the warehouse.
    Sold,
    /// Cancelled before it was seen: a tombstone, so a late `OrderCreated` reserves nothing.
    Cancelled,
}

/// What happens to an order that is known already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationEvent {
    Cancel,
    Dispatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an order that is {} cannot take {event:?}", from.as_str())]
pub struct InvalidTransition {
    pub from: ReservationStatus,
    pub event: ReservationEvent,
}

impl ReservationStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Rejected => "rejected",
            Self::Released => "released",
            Self::Sold => "sold",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "reserved" => Ok(Self::Reserved),
            "rejected" => Ok(Self::Rejected),
            "released" => Ok(Self::Released),
            "sold" => Ok(Self::Sold),
            "cancelled" => Ok(Self::Cancelled),
            other => Err(format!("'{other}' is not a reservation status")),
        }
    }

    /// Only a held reservation moves: cancelling releases it, dispatching sells it.
    pub fn transition(self, event: ReservationEvent) -> Result<Self, InvalidTransition> {
        match (self, event) {
            (Self::Reserved, ReservationEvent::Cancel) => Ok(Self::Released),
            (Self::Reserved, ReservationEvent::Dispatch) => Ok(Self::Sold),
            (Self::Rejected | Self::Released | Self::Sold | Self::Cancelled, _) => {
                Err(InvalidTransition { from: self, event })
            }
        }
    }
}

/// What the inventory did for one order, and the lines it holds or held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub order_id: OrderId,
    pub status: ReservationStatus,
    pub lines: Lines,
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn product(n: u128) -> ProductId {
        ProductId::from(Uuid::from_u128(n))
    }

    fn q(units: u32) -> Quantity {
        Quantity::new(units).expect("valid")
    }

    #[test]
    fn on_hand_is_never_negative() {
        assert!(OnHand::try_from(-1).is_err());
        assert_eq!(OnHand::try_from(0).map(|o| o.value()), Ok(0));
        assert_eq!(OnHand::try_from(i64::MAX).map(|o| o.value()), Ok(i64::MAX));
    }

    #[test]
    fn lines_of_one_product_are_summed_and_sorted() {
        let lines = Lines::sum([(product(2), q(1)), (product(1), q(3)), (product(2), q(4))]).expect("valid");
        assert_eq!(lines.iter().collect::<Vec<_>>(), [(product(1), q(3)), (product(2), q(5))]);
        assert_eq!(Lines::sum([]).expect("valid"), Lines::default());
    }

    #[test]
    fn lines_of_one_product_beyond_what_an_order_may_hold_are_refused() {
        assert!(Lines::sum([(product(1), q(1000)), (product(1), q(1))]).is_err());
        assert!(Lines::sum([(product(1), q(999)), (product(1), q(1))]).is_ok());
    }

    #[test]
    fn available_is_what_is_not_reserved() {
        let stock = StockLevel { product_id: product(1), on_hand: 5, reserved: 3 };
        assert_eq!(stock.available(), 2);
        assert_eq!(StockLevel { reserved: 7, ..stock }.available(), 0);
    }

    #[test]
    fn a_shortage_reports_what_is_available() {
        let stock = StockLevel { product_id: product(1), on_hand: 5, reserved: 3 };
        assert_eq!(Shortage::of(product(1), q(4), Some(stock)).available, 2);
        assert_eq!(Shortage::of(product(1), q(4), None).available, 0, "an unknown product has nothing");
        // Released in between: still reported short of what was requested.
        assert_eq!(Shortage::of(product(1), q(2), Some(stock)).available, 1);
    }

    #[test]
    fn statuses_round_trip() {
        use ReservationStatus::*;
        for status in [Reserved, Rejected, Released, Sold, Cancelled] {
            assert_eq!(ReservationStatus::parse(status.as_str()), Ok(status));
        }
        assert!(ReservationStatus::parse("pending").is_err());
    }

    #[test]
    fn only_a_held_reservation_moves() {
        use ReservationEvent::*;
        use ReservationStatus::*;
        assert_eq!(Reserved.transition(Cancel), Ok(Released));
        assert_eq!(Reserved.transition(Dispatch), Ok(Sold));
        for from in [Rejected, Released, Sold, Cancelled] {
            for event in [Cancel, Dispatch] {
                assert_eq!(from.transition(event), Err(InvalidTransition { from, event }));
            }
        }
    }
}
