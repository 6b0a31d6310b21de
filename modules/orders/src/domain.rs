//! The orders module's domain: the order, its lines, its address, and its status machine.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Quantities, prices and addresses are the shared vocabulary's, as orders' events carry them.
pub use contracts::{Address, Currency, Money, Quantity};

kernel::uuid_id!(OrderId);

/// An order's status. Only [`OrderStatus::transition`] moves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    Pending,
    /// Stock is reserved; the order waits for its payment (or its payment timeout).
    AwaitingPayment,
    Confirmed,
    Rejected,
    /// A confirmed order the customer asked to cancel: shipping decides whether it still can.
    Cancelling,
    Cancelled,
    Shipped,
    Delivered,
}

/// What happens to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEvent {
    StockReserved,
    StockRefused,
    /// The payment succeeded.
    Paid,
    /// The provider declined the payment (or its authentication failed): the order cannot be paid.
    PaymentDeclined,
    /// The order was not paid within `orders.payment_timeout_secs`.
    PaymentTimedOut,
    /// The customer's cancel: at once before confirmation; a request to shipping once confirmed.
    Cancel,
    /// Shipping cancelled the order's shipment: it will never be dispatched.
    ShipmentCancelled,
    Ship,
    Deliver,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an order that is {} cannot take {event:?}", from.as_str())]
pub struct InvalidTransition {
    pub from: OrderStatus,
    pub event: OrderEvent,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 8] = [
        OrderStatus::Pending,
        OrderStatus::AwaitingPayment,
        OrderStatus::Confirmed,
        OrderStatus::Rejected,
        OrderStatus::Cancelling,
        OrderStatus::Cancelled,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
    ];

    /// `pending → awaiting_payment | rejected | cancelled`, `awaiting_payment → confirmed | rejected |
    /// cancelled`, `confirmed → cancelling | cancelled | shipped`, `cancelling → cancelled | shipped`,
    /// `shipped → delivered`; nothing else. Only a payment confirms an order; once confirmed, only
    /// shipping ends it: its shipment is cancelled, or it was dispatched.
    pub fn transition(self, event: OrderEvent) -> Result<OrderStatus, InvalidTransition> {
        use OrderEvent as E;
        use OrderStatus as S;
        match (self, event) {
            (S::Pending, E::StockReserved) => Ok(S::AwaitingPayment),
            (S::Pending, E::StockRefused) => Ok(S::Rejected),
            (S::Pending | S::AwaitingPayment, E::Cancel) => Ok(S::Cancelled),
            (S::AwaitingPayment, E::Paid) => Ok(S::Confirmed),
            (S::AwaitingPayment, E::PaymentDeclined) => Ok(S::Rejected),
            (S::AwaitingPayment, E::PaymentTimedOut) => Ok(S::Cancelled),
            (S::Confirmed, E::Cancel) => Ok(S::Cancelling),
            (S::Confirmed | S::Cancelling, E::ShipmentCancelled) => Ok(S::Cancelled),
            (S::Confirmed | S::Cancelling, E::Ship) => Ok(S::Shipped),
            (S::Shipped, E::Deliver) => Ok(S::Delivered),
            (from, event) => Err(InvalidTransition { from, event }),
        }
    }

    /// Whether the order can still change its shipping address.
    pub fn accepts_address_change(self) -> bool {
        matches!(self, Self::Pending | Self::AwaitingPayment | Self::Confirmed)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::AwaitingPayment => "awaiting_payment",
            Self::Confirmed => "confirmed",
            Self::Rejected => "rejected",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw).ok_or_else(|| {
            let all: Vec<&str> = Self::ALL.iter().map(OrderStatus::as_str).collect();
            format!("'{raw}' is not a status ({})", all.join(", "))
        })
    }
}

/// How many units one order may hold: of one product (its lines of that product together), and in
/// all. An unpaid order holds its stock until `orders.payment_timeout_secs`; the caps keep one such
/// order from holding a whole stock meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderLimits {
    per_product: u32,
    per_order: u32,
}

impl OrderLimits {
    /// `orders.max_quantity_per_line` and `orders.max_quantity_per_order`; an error names the
    /// setting that is wrong.
    pub fn new(per_product: u32, per_order: u32) -> Result<Self, (&'static str, String)> {
        if !(1..=Quantity::MAX).contains(&per_product) {
            return Err(("orders.max_quantity_per_line", format!("must be 1 to {}, not {per_product}", Quantity::MAX)));
        }
        if per_order == 0 {
            return Err(("orders.max_quantity_per_order", "must be at least 1".into()));
        }
        Ok(Self { per_product, per_order })
    }

    /// Every limit `items` exceed, as `(field, message)`: the line that takes its product beyond
    /// the per-product limit (with the earlier lines of that product), and `items` beyond the
    /// per-order limit.
    pub fn check(&self, items: &[(Uuid, Quantity)]) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let mut per_product: std::collections::HashMap<Uuid, u64> = std::collections::HashMap::new();
        let limit = u64::from(self.per_product);
        for (i, (product, quantity)) in items.iter().enumerate() {
            let units = per_product.entry(*product).or_default();
            let before = *units;
            *units += u64::from(quantity.get());
            if *units > limit && before <= limit {
                let message = match before {
                    0 => format!("must be at most {limit}: the most units of one product an order may hold"),
                    _ => format!(
                        "makes {} units of this product with the lines before it; an order may hold at most {limit}",
                        *units
                    ),
                };
                errors.push((format!("items[{i}].quantity"), message));
            }
        }
        let total: u64 = per_product.values().sum();
        if total > u64::from(self.per_order) {
            let message = format!("hold {total} units in all; an order may hold at most {}", self.per_order);
            errors.push(("items".to_owned(), message));
        }
        errors
    }
}

/// An order line, its price frozen at order time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub quantity: Quantity,
    pub unit_price: Money,
}

impl OrderLine {
    pub fn total(&self) -> Money {
        self.unit_price.saturating_times(self.quantity.get())
    }
}

/// The instants at which an order reached each status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    pub confirmed_at: Option<DateTime<Utc>>,
    pub rejected_at: Option<DateTime<Utc>>,
    pub cancellation_requested_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub shipped_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// A payment method as the provider names it (`pm_card_visa`, `pm_1Q…`): 1 to 255 letters, digits
/// and underscores. Whether the provider knows it is the provider's to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentMethod(String);

impl PaymentMethod {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let valid = (1..=255).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match valid {
            true => Ok(Self(raw.to_owned())),
            false => Err("must be a payment method id: 1 to 255 letters, digits and underscores (pm_card_visa)".into()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why an order was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancellationReason {
    /// The customer cancelled it before it was confirmed.
    Customer,
    /// Shipping granted the customer's cancel of a confirmed order.
    ShipmentCancelled,
    /// It was not paid within `orders.payment_timeout_secs`.
    PaymentTimeout,
}

impl CancellationReason {
    pub const ALL: [CancellationReason; 3] = [Self::Customer, Self::ShipmentCancelled, Self::PaymentTimeout];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::ShipmentCancelled => "shipment_cancelled",
            Self::PaymentTimeout => "payment_timeout",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|r| r.as_str() == raw).ok_or_else(|| format!("'{raw}' is not a cancellation reason"))
    }
}

/// How the order's payment stands, as the payments module's events tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    /// No method yet, or the last one was unusable: `POST /orders/{id}/payment` gives one.
    RequiresPaymentMethod,
    /// Asked of payments; no answer yet.
    Processing,
    /// The customer must complete it with the provider (3-D Secure).
    RequiresAction,
    Succeeded,
    /// Declined: the order is rejected.
    Failed,
    Refunded,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 6] = [
        Self::RequiresPaymentMethod,
        Self::Processing,
        Self::RequiresAction,
        Self::Succeeded,
        Self::Failed,
        Self::Refunded,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::RequiresPaymentMethod => "requires_payment_method",
            Self::Processing => "processing",
            Self::RequiresAction => "requires_action",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw).ok_or_else(|| format!("'{raw}' is not a payment status"))
    }
}

/// The order's payment, from the moment its stock is reserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub status: PaymentStatus,
    /// 1 for the request made when the stock was reserved, one more per new payment method; news of
    /// an earlier attempt than this one changes nothing but the money facts (paid, refunded).
    pub attempt: u32,
    /// What the customer hands the provider to complete a `requires_action` payment.
    pub client_secret: Option<String>,
    pub failure_reason: Option<String>,
    /// Unpaid by then, the order is cancelled.
    pub due_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub refunded_at: Option<DateTime<Utc>>,
}

/// A confirmed order's address change, waiting for shipping's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressChange {
    pub address: Address,
    pub requested_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub user_id: Uuid,
    pub status: OrderStatus,
    pub lines: Vec<OrderLine>,
    pub shipping_address: Address,
    /// Asked for once the order was confirmed; shipping has not answered yet.
    pub address_change: Option<AddressChange>,
    pub total: Money,
    pub rejection_reason: Option<String>,
    /// Set once the order is cancelled.
    pub cancellation_reason: Option<CancellationReason>,
    /// The method the next payment request carries.
    pub payment_method: Option<PaymentMethod>,
    /// `None` until the stock is reserved.
    pub payment: Option<Payment>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub timeline: Timeline,
}

impl Order {
    /// Moves the order on `event`, stamping the time it reached its new status.
    pub fn apply(&mut self, event: OrderEvent, now: DateTime<Utc>) -> Result<(), InvalidTransition> {
        self.status = self.status.transition(event)?;
        self.updated_at = now;
        let stamp = match self.status {
            OrderStatus::Confirmed => &mut self.timeline.confirmed_at,
            OrderStatus::Rejected => &mut self.timeline.rejected_at,
            OrderStatus::Cancelling => &mut self.timeline.cancellation_requested_at,
            OrderStatus::Cancelled => &mut self.timeline.cancelled_at,
            OrderStatus::Shipped => &mut self.timeline.shipped_at,
            OrderStatus::Delivered => &mut self.timeline.delivered_at,
            OrderStatus::Pending | OrderStatus::AwaitingPayment => return Ok(()),
        };
        *stamp = Some(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENTS: [OrderEvent; 9] = [
        OrderEvent::StockReserved,
        OrderEvent::StockRefused,
        OrderEvent::Paid,
        OrderEvent::PaymentDeclined,
        OrderEvent::PaymentTimedOut,
        OrderEvent::Cancel,
        OrderEvent::ShipmentCancelled,
        OrderEvent::Ship,
        OrderEvent::Deliver,
    ];

    #[test]
    fn the_transitions_are_exactly_those_of_the_brief() {
        use OrderEvent as E;
        use OrderStatus as S;
        let allowed = [
            (S::Pending, E::StockReserved, S::AwaitingPayment),
            (S::Pending, E::StockRefused, S::Rejected),
            (S::Pending, E::Cancel, S::Cancelled),
            (S::AwaitingPayment, E::Paid, S::Confirmed),
            (S::AwaitingPayment, E::PaymentDeclined, S::Rejected),
            (S::AwaitingPayment, E::PaymentTimedOut, S::Cancelled),
            (S::AwaitingPayment, E::Cancel, S::Cancelled),
            (S::Confirmed, E::Cancel, S::Cancelling),
            (S::Confirmed, E::ShipmentCancelled, S::Cancelled),
            (S::Confirmed, E::Ship, S::Shipped),
            (S::Cancelling, E::ShipmentCancelled, S::Cancelled),
            (S::Cancelling, E::Ship, S::Shipped),
            (S::Shipped, E::Deliver, S::Delivered),
        ];
        for from in OrderStatus::ALL {
            for event in EVENTS {
                let expected = allowed.iter().find(|(f, e, _)| *f == from && *e == event).map(|(_, _, to)| *to);
                assert_eq!(from.transition(event).ok(), expected, "{from:?} on {event:?}");
            }
        }
    }

    /// Every sequence of up to six events from `pending`: terminal states never move again, a
    /// shipped order is never cancelled, `delivered` is only reached through `shipped`, only a
    /// payment confirms, and once confirmed an order is cancelled only because shipping cancelled
    /// its shipment.
    #[test]
    fn every_event_sequence_respects_the_invariants() {
        fn walk(status: OrderStatus, history: &mut Vec<OrderStatus>, depth: usize) {
            if depth == 0 {
                return;
            }
            for event in EVENTS {
                match status.transition(event) {
                    Ok(next) => {
                        let terminal =
                            matches!(status, OrderStatus::Rejected | OrderStatus::Cancelled | OrderStatus::Delivered);
                        assert!(!terminal, "{status:?} moved on {event:?}");
                        assert!(!(status == OrderStatus::Shipped && next == OrderStatus::Cancelled));
                        if next == OrderStatus::Cancelled && history.contains(&OrderStatus::Confirmed) {
                            assert_eq!(event, OrderEvent::ShipmentCancelled, "after {history:?}");
                        }
                        if next == OrderStatus::Confirmed {
                            assert_eq!((status, event), (OrderStatus::AwaitingPayment, OrderEvent::Paid));
                        }
                        if next == OrderStatus::Delivered {
                            assert!(history.contains(&OrderStatus::Confirmed) && status == OrderStatus::Shipped);
                        }
                        history.push(next);
                        walk(next, history, depth - 1);
                        history.pop();
                    }
                    Err(e) => assert_eq!((e.from, e.event), (status, event)),
                }
            }
        }
        walk(OrderStatus::Pending, &mut vec![OrderStatus::Pending], 6);
    }

    #[test]
    fn limits_count_the_lines_of_one_product_together_and_every_unit_of_the_order() {
        let limits = OrderLimits::new(5, 8).expect("valid");
        let (mug, pot) = (Uuid::now_v7(), Uuid::now_v7());
        let q = |n| Quantity::parse(n).expect("valid");
        let fields = |items: &[(Uuid, Quantity)]| -> Vec<String> {
            limits.check(items).into_iter().map(|(field, _)| field).collect()
        };
        assert!(fields(&[(mug, q(5)), (pot, q(3))]).is_empty());
        assert_eq!(fields(&[(mug, q(6))]), ["items[0].quantity"]);
        assert_eq!(fields(&[(mug, q(3)), (pot, q(1)), (mug, q(3)), (mug, q(1))]), ["items[2].quantity"]);
        assert_eq!(fields(&[(mug, q(5)), (pot, q(4))]), ["items"]);
        assert_eq!(fields(&[(mug, q(9))]), ["items[0].quantity", "items"]);
        assert!(OrderLimits::new(0, 8).is_err());
        assert!(OrderLimits::new(1001, 8).is_err());
        assert!(OrderLimits::new(5, 0).is_err());
    }

    #[test]
    fn a_payment_method_is_a_provider_id() {
        assert_eq!(PaymentMethod::parse("pm_card_visa").map(|m| m.as_str().to_owned()), Ok("pm_card_visa".into()));
        for bad in ["", "pm card", "pm_card_visa;drop", &"p".repeat(256)] {
            assert!(PaymentMethod::parse(bad).is_err(), "{bad:?}");
        }
        for status in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(status.as_str()), Ok(status));
        }
        for reason in CancellationReason::ALL {
            assert_eq!(CancellationReason::parse(reason.as_str()), Ok(reason));
        }
        assert!(CancellationReason::parse("bored").is_err());
    }

    #[test]
    fn applying_an_event_stamps_its_time() {
        let now = Utc::now();
        let mut order = Order {
            id: OrderId::generate(),
            user_id: Uuid::now_v7(),
            status: OrderStatus::Pending,
            lines: vec![],
            shipping_address: serde_json::from_value(serde_json::json!(
                {"name": "A", "line1": "B", "city": "C", "postalCode": "D", "country": "DE"}
            ))
            .expect("an address"),
            address_change: None,
            total: Money::new(0, Currency::parse("EUR").expect("valid")).expect("valid"),
            rejection_reason: None,
            cancellation_reason: None,
            payment_method: None,
            payment: None,
            created_at: now,
            updated_at: now,
            timeline: Timeline::default(),
        };
        order.apply(OrderEvent::StockReserved, now).expect("allowed");
        assert_eq!(order.timeline.confirmed_at, None, "awaiting payment");
        order.apply(OrderEvent::Paid, now).expect("allowed");
        assert_eq!(order.timeline.confirmed_at, Some(now));
        assert!(order.apply(OrderEvent::Deliver, now).is_err());
        assert_eq!(order.status, OrderStatus::Confirmed);
    }
}

// Sales reports: what an admin asks for, and the figures a report adds up.

kernel::uuid_id!(ReportId);

/// Where a report is: its job's status, as the job last wrote it.
pub use kernel::jobs::JobStatus as ReportStatus;

/// The statuses of an order that is a sale: paid (`confirmed`) and still meant to be delivered.
/// A `cancelling` order is one until shipping cancels it; `rejected` and `cancelled` orders (a
/// refunded one is `cancelled`) never are, nor are unpaid ones (`pending`, `awaiting_payment`).
pub const SALE_STATUSES: [OrderStatus; 4] =
    [OrderStatus::Confirmed, OrderStatus::Cancelling, OrderStatus::Shipped, OrderStatus::Delivered];

/// What a sales report groups its figures by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// The UTC day of the sale's `confirmedAt`.
    Day,
    Product,
}

impl GroupBy {
    pub const ALL: [GroupBy; 2] = [GroupBy::Day, GroupBy::Product];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Product => "product",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|g| g.as_str() == raw)
            .ok_or_else(|| format!("must be 'day' or 'product', not '{raw}'"))
    }
}

/// The instants a report covers: `from` included, `to` excluded, at most [`Self::MAX_DAYS`] apart.
/// A year and a day: a leap year fits, and the table read stays bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportRange {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

impl ReportRange {
    pub const MAX_DAYS: i64 = 366;

    /// `Err((field, message))` names the end that is wrong.
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Self, (&'static str, String)> {
        if from >= to {
            return Err(("to", "must be after from".into()));
        }
        if to - from > chrono::Duration::days(Self::MAX_DAYS) {
            return Err(("to", format!("must be at most {} days after from", Self::MAX_DAYS)));
        }
        Ok(Self { from, to })
    }

    pub fn from(&self) -> DateTime<Utc> {
        self.from
    }

    pub fn to(&self) -> DateTime<Utc> {
        self.to
    }
}

/// A sales report as the admin sees it; its CSV is read apart, only when downloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub id: ReportId,
    pub range: ReportRange,
    pub group_by: GroupBy,
    pub status: ReportStatus,
    /// The admin who asked for it.
    pub requested_by: Uuid,
    pub requested_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Rows of its CSV (the header not counted), once done.
    pub row_count: Option<u32>,
    /// Why its last run failed.
    pub error: Option<String>,
}

impl Report {
    /// `sales-<from>-<to>-<groupBy>.csv`, each end as a date when it is a UTC midnight
    /// (`2026-11-01`), else to the second (`20261101T093000Z`): no character a file system refuses.
    pub fn file_name(&self) -> String {
        let end = |at: DateTime<Utc>| match at.time() == chrono::NaiveTime::MIN {
            true => at.format("%Y-%m-%d").to_string(),
            false => at.format("%Y%m%dT%H%M%SZ").to_string(),
        };
        format!("sales-{}-{}-{}.csv", end(self.range.from), end(self.range.to), self.group_by.as_str())
    }
}

/// One sale (an order in [`SALE_STATUSES`]) as a report reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sale {
    pub confirmed_at: DateTime<Utc>,
    /// What was charged: the order's total, in its currency.
    pub total: Money,
    pub lines: Vec<SaleLine>,
}

/// A line of a sale: its product as named when ordered, and the line's total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleLine {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub units: u32,
    /// In the order's currency.
    pub amount_minor: i64,
}

/// Orders, units and revenue (minor units, summed in `i128`: no sum of `i64` amounts overflows it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Figures {
    orders: u64,
    units: u64,
    revenue_minor: i128,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ProductFigures {
    sku: String,
    name: String,
    figures: Figures,
}

/// A sales report being added up, one sale at a time: memory grows with its rows (days or
/// products × currencies), never with the orders read. Rows come out sorted, so the same sales
/// give the same CSV, byte for byte.
#[derive(Debug, Clone)]
pub struct SalesTally {
    group_by: GroupBy,
    days: std::collections::BTreeMap<(chrono::NaiveDate, Currency), Figures>,
    products: std::collections::BTreeMap<(Uuid, Currency), ProductFigures>,
}

impl SalesTally {
    pub fn new(group_by: GroupBy) -> Self {
        Self { group_by, days: Default::default(), products: Default::default() }
    }

    /// Adds `sale`. By day: one order, its units, its total. By product: one order for each
    /// product it holds (however many of its lines name it), the units and line totals of that
    /// product; the SKU and name are those of the latest sale added (a product renamed since shows
    /// its newer name).
    pub fn add(&mut self, sale: &Sale) {
        let currency = sale.total.currency();
        match self.group_by {
            GroupBy::Day => {
                let day = self.days.entry((sale.confirmed_at.date_naive(), currency)).or_default();
                day.orders += 1;
                day.units += sale.lines.iter().map(|l| u64::from(l.units)).sum::<u64>();
                day.revenue_minor += i128::from(sale.total.amount_minor());
            }
            GroupBy::Product => {
                let mut counted = std::collections::BTreeSet::new();
                for line in &sale.lines {
                    let product = self.products.entry((line.product_id, currency)).or_insert_with(|| ProductFigures {
                        sku: String::new(),
                        name: String::new(),
                        figures: Figures::default(),
                    });
                    line.sku.clone_into(&mut product.sku);
                    line.name.clone_into(&mut product.name);
                    if counted.insert(line.product_id) {
                        product.figures.orders += 1;
                    }
                    product.figures.units += u64::from(line.units);
                    product.figures.revenue_minor += i128::from(line.amount_minor);
                }
            }
        }
    }

    /// Rows the CSV has, its header not counted.
    pub fn rows(&self) -> usize {
        match self.group_by {
            GroupBy::Day => self.days.len(),
            GroupBy::Product => self.products.len(),
        }
    }

    /// The report as CSV (RFC 4180: comma-separated, `\n`-terminated, fields quoted when they
    /// hold a comma, a quote or a line break, quotes doubled). By day:
    /// `day,currency,orders,units,revenue`, by day then currency; by product:
    /// `product_id,sku,name,currency,orders,units,revenue`, by SKU, then product id and currency.
    /// `revenue` is in the currency's minor units, as the API's `Money.amount` (`1299` is 12.99
    /// EUR): an integer, never a float. Days without sales have no row.
    pub fn to_csv(&self) -> Result<String, csv::Error> {
        let mut out = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
        match self.group_by {
            GroupBy::Day => {
                out.write_record(["day", "currency", "orders", "units", "revenue"])?;
                for ((day, currency), f) in &self.days {
                    let day = day.format("%Y-%m-%d").to_string();
                    let (orders, units, revenue) =
                        (f.orders.to_string(), f.units.to_string(), f.revenue_minor.to_string());
                    out.write_record([day.as_str(), currency.code(), &orders, &units, &revenue])?;
                }
            }
            GroupBy::Product => {
                out.write_record(["product_id", "sku", "name", "currency", "orders", "units", "revenue"])?;
                let mut rows: Vec<_> = self.products.iter().collect();
                rows.sort_by(|((a_id, a_cur), a), ((b_id, b_cur), b)| {
                    (&a.sku, a_id, a_cur).cmp(&(&b.sku, b_id, b_cur))
                });
                for ((product_id, currency), p) in rows {
                    let f = &p.figures;
                    let (id, orders, units, revenue) = (
                        product_id.to_string(),
                        f.orders.to_string(),
                        f.units.to_string(),
                        f.revenue_minor.to_string(),
                    );
                    out.write_record([id.as_str(), &p.sku, &p.name, currency.code(), &orders, &units, &revenue])?;
                }
            }
        }
        let bytes = out.into_inner().map_err(|e| e.into_error())?;
        // Every field written was a `str`: the bytes are UTF-8.
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

#[cfg(test)]
mod sales_report_tests {
    use super::*;

    fn at(raw: &str) -> DateTime<Utc> {
        raw.parse().expect("an RFC 3339 instant")
    }

    fn eur(minor: i64) -> Money {
        Money::new(minor, Currency::parse("EUR").expect("a currency")).expect("an amount")
    }

    fn line(product: u128, sku: &str, name: &str, units: u32, amount_minor: i64) -> SaleLine {
        SaleLine { product_id: Uuid::from_u128(product), sku: sku.into(), name: name.into(), units, amount_minor }
    }

    #[test]
    fn a_range_runs_forwards_for_at_most_366_days() {
        let from = at("2026-01-01T00:00:00Z");
        assert!(ReportRange::new(from, from).is_err(), "empty");
        assert!(ReportRange::new(from, from - chrono::Duration::seconds(1)).is_err(), "backwards");
        assert!(ReportRange::new(from, from + chrono::Duration::days(366)).is_ok());
        let too_long = ReportRange::new(from, from + chrono::Duration::days(366) + chrono::Duration::seconds(1));
        assert_eq!(too_long.map_err(|(field, _)| field), Err("to"));
    }

    #[test]
    fn names_with_commas_and_quotes_are_quoted_and_figures_add_up_per_product() {
        let mut tally = SalesTally::new(GroupBy::Product);
        let quoted = r#"Mug, "large""#;
        let sale = |lines| Sale { confirmed_at: at("2026-01-01T10:00:00Z"), total: eur(0), lines };
        tally.add(&sale(vec![line(1, "MUG-1", quoted, 2, 1000), line(1, "MUG-1", quoted, 1, 500)]));
        tally.add(&sale(vec![line(2, "TEA-1", "Tea", 3, 300), line(1, "MUG-1", quoted, 1, 500)]));
        let csv = tally.to_csv().expect("CSV");
        assert_eq!(
            csv,
            "product_id,sku,name,currency,orders,units,revenue\n\
             00000000-0000-0000-0000-000000000001,MUG-1,\"Mug, \"\"large\"\"\",EUR,2,4,2000\n\
             00000000-0000-0000-0000-000000000002,TEA-1,Tea,EUR,1,3,300\n"
        );
        assert_eq!(tally.rows(), 2);
    }

    #[test]
    fn days_are_utc_days_and_currencies_are_never_added_together() {
        let mut tally = SalesTally::new(GroupBy::Day);
        let usd = Money::new(700, Currency::parse("USD").expect("a currency")).expect("an amount");
        for (confirmed_at, total, units) in [
            ("2026-01-01T23:59:59Z", eur(1000), 2),
            ("2026-01-02T00:30:00+01:00", eur(250), 1),
            ("2026-01-02T00:00:00Z", eur(100), 4),
            ("2026-01-02T12:00:00Z", usd, 1),
        ] {
            tally.add(&Sale { confirmed_at: at(confirmed_at), total, lines: vec![line(1, "A", "A", units, 0)] });
        }
        assert_eq!(
            tally.to_csv().expect("CSV"),
            "day,currency,orders,units,revenue\n2026-01-01,EUR,2,3,1250\n2026-01-02,EUR,1,4,100\n2026-01-02,USD,1,1,700\n"
        );
    }
}
