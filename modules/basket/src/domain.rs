//! The basket module's domain: a basket and its lines, the limits it keeps, what a line shows
//! against the module's product copy, and what checks out. No actix, no sea-orm.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Quantities, prices and addresses are the shared vocabulary's, as the events carry them.
pub use contracts::{Address, Currency, Money, Quantity};

kernel::uuid_id!(
    /// A basket's id: the customer's own id for a customer's basket, a new one for a guest's.
    BasketId
);

/// Whose basket a request acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// A signed-in customer: the basket keyed by the customer's id (created on its first write).
    Customer(Uuid),
    /// A guest, by the token `POST /basket` gave it.
    Guest(GuestToken),
}

/// A guest basket's token: 256 random bits, base64url without padding (43 characters). Only its
/// SHA-256 is stored, so a leaked table opens no basket.
#[derive(Clone, PartialEq, Eq)]
pub struct GuestToken(String);

impl GuestToken {
    pub const LENGTH: usize = 43;

    pub fn generate() -> Self {
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        Self(URL_SAFE_NO_PAD.encode(secret))
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        // The alphabet and the length only, as the OpenAPI pattern says: a token that is well
        // formed but was never given is simply not found.
        let valid =
            raw.len() == Self::LENGTH && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        match valid {
            true => Ok(Self(raw.to_owned())),
            false => Err(format!("must be the {} characters POST /basket gave", Self::LENGTH)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What is stored: the SHA-256 of the token, in hex.
    pub fn hash(&self) -> String {
        Sha256::digest(self.0.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Never shown in logs.
impl std::fmt::Debug for GuestToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GuestToken(***)")
    }
}

/// A payment method id as the provider names it (`pm_card_visa`), checked as orders checks it.
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

/// What a basket may hold: `basket.max_lines` products, `basket.max_quantity` units of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BasketLimits {
    max_lines: usize,
    max_quantity: u32,
}

/// A limit a change would break: the request's field it names, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {message}")]
pub struct OverLimit {
    pub field: String,
    pub message: String,
}

impl OverLimit {
    fn new(field: &str, message: String) -> Self {
        Self { field: field.to_owned(), message }
    }
}

/// What setting one line's quantity does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineChange {
    /// The line holds this many units now (a new line, or another quantity).
    Put(Quantity),
    /// The line goes.
    Remove,
    /// Nothing: no such line, and none wanted.
    Nothing,
}

impl BasketLimits {
    /// `basket.max_lines` and `basket.max_quantity`; an error names the setting that is wrong.
    pub fn new(max_lines: u32, max_quantity: u32) -> Result<Self, (&'static str, String)> {
        if !(1..=1000).contains(&max_lines) {
            return Err(("basket.max_lines", format!("must be 1 to 1000, not {max_lines}")));
        }
        if !(1..=Quantity::MAX).contains(&max_quantity) {
            return Err(("basket.max_quantity", format!("must be 1 to {}, not {max_quantity}", Quantity::MAX)));
        }
        Ok(Self { max_lines: max_lines as usize, max_quantity })
    }

    /// Setting `product`'s line of `lines` to `units` (0 removes it), within the limits.
    pub fn set(&self, lines: &[Line], product: Uuid, units: u32) -> Result<LineChange, OverLimit> {
        let existing = lines.iter().any(|l| l.product_id == product);
        if units == 0 {
            return Ok(if existing { LineChange::Remove } else { LineChange::Nothing });
        }
        if units > self.max_quantity {
            let message = format!("must be at most {} (basket.max_quantity), not {units}", self.max_quantity);
            return Err(OverLimit::new("quantity", message));
        }
        if !existing && lines.len() >= self.max_lines {
            let message = format!("the basket holds at most {} products (basket.max_lines)", self.max_lines);
            return Err(OverLimit::new("lines", message));
        }
        let quantity = Quantity::new(units).map_err(|m| OverLimit::new("quantity", m))?;
        Ok(LineChange::Put(quantity))
    }

    /// The lines of `into` that merging `from` changes or adds: the quantities of one product add
    /// up; a product new to `into` keeps the price the guest accepted, one it held keeps its own.
    /// Refused, naming every limit broken, if the merged basket would exceed the limits.
    pub fn merge(&self, into: &[Line], from: &[Line]) -> Result<Vec<Line>, Vec<OverLimit>> {
        let mut errors = Vec::new();
        let mut changed = Vec::new();
        let mut new_lines = 0;
        for guest in from {
            let units = match into.iter().find(|l| l.product_id == guest.product_id) {
                Some(held) => {
                    let units = held.quantity.get() + guest.quantity.get();
                    changed.push(Line { quantity: guest.quantity, ..held.clone() });
                    units
                }
                None => {
                    new_lines += 1;
                    changed.push(guest.clone());
                    guest.quantity.get()
                }
            };
            match Quantity::new(units) {
                Ok(quantity) if units <= self.max_quantity => {
                    if let Some(line) = changed.last_mut() {
                        line.quantity = quantity;
                    }
                }
                _ => errors.push(OverLimit::new(
                    "guestBasket",
                    format!(
                        "would make {units} units of product {}; a basket holds at most {} of one (basket.max_quantity)",
                        guest.product_id, self.max_quantity
                    ),
                )),
            }
        }
        let lines = into.len() + new_lines;
        if lines > self.max_lines {
            let message =
                format!("would make {lines} products; a basket holds at most {} (basket.max_lines)", self.max_lines);
            errors.push(OverLimit::new("guestBasket", message));
        }
        match errors.is_empty() {
            true => Ok(changed),
            false => Err(errors),
        }
    }
}

/// One product in a basket, at the price the customer accepted when adding it (or since).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub product_id: Uuid,
    pub quantity: Quantity,
    /// `None` when the product was unknown to the copy when the line was added.
    pub accepted: Option<Money>,
}

/// A basket: its lines, and the version every change raises by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Basket {
    pub id: BasketId,
    /// 0 for a customer's basket not written yet.
    pub version: i64,
    pub lines: Vec<Line>,
}

/// The module's copy of a catalog product, at the product's `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductCopy {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    /// `None` only on the discontinued placeholder of a product whose `ProductCreated` is late.
    pub price: Option<Money>,
    pub active: bool,
    /// 0 for a copy made from events published before products had versions.
    pub version: i64,
}

/// A line's price now differs from the one the customer accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriceChange {
    /// `None`: the product was unknown when the line was added, so no price was accepted.
    pub from: Option<Money>,
    pub to: Money,
}

/// Whether a line can be checked out, by what the copy says of its product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Available,
    Discontinued,
    /// Unknown to the copy (which may lag behind the catalog).
    Unknown,
}

/// A line as the customer sees it: priced from the copy now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineView {
    pub product_id: Uuid,
    pub sku: Option<String>,
    pub name: Option<String>,
    pub quantity: Quantity,
    /// The copy's price now.
    pub unit_price: Option<Money>,
    pub line_total: Option<Money>,
    pub price_changed: Option<PriceChange>,
    pub availability: Availability,
}

/// A basket as the customer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasketView {
    pub id: BasketId,
    pub version: i64,
    pub lines: Vec<LineView>,
    /// The sum of the lines that can be checked out, in minor units of `currency`.
    pub total: i64,
    /// The currency of the first line that can be checked out; `None` without one.
    pub currency: Option<Currency>,
}

impl Basket {
    /// The basket priced from `copies`, the module's copy of its products.
    pub fn view(&self, copies: &[ProductCopy]) -> BasketView {
        let lines: Vec<LineView> = self
            .lines
            .iter()
            .map(|line| {
                let copy = copies.iter().find(|c| c.product_id == line.product_id);
                let availability = match copy {
                    None => Availability::Unknown,
                    Some(ProductCopy { active: true, price: Some(_), .. }) => Availability::Available,
                    Some(_) => Availability::Discontinued,
                };
                let unit_price = copy.and_then(|c| c.price);
                let price_changed = unit_price
                    .filter(|now| line.accepted != Some(*now))
                    .map(|now| PriceChange { from: line.accepted, to: now });
                LineView {
                    product_id: line.product_id,
                    sku: copy.map(|c| c.sku.clone()),
                    name: copy.map(|c| c.name.clone()),
                    quantity: line.quantity,
                    unit_price,
                    line_total: unit_price.map(|p| p.saturating_times(line.quantity.get())),
                    price_changed,
                    availability,
                }
            })
            .collect();
        let orderable = || lines.iter().filter(|l| l.availability == Availability::Available);
        let currency = orderable().find_map(|l| l.unit_price).map(|p| p.currency());
        let total = orderable()
            .filter_map(|l| l.line_total)
            .filter(|t| Some(t.currency()) == currency)
            .fold(0i64, |sum, t| sum.saturating_add(t.amount_minor()));
        BasketView { id: self.id, version: self.version, lines, total, currency }
    }
}

/// At which prices a checkout takes the lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prices {
    /// The prices the customer accepted: a line whose price changed since is refused.
    Accepted,
    /// The copy's prices now (`acceptPrices: true`).
    Current,
}

/// A line as it is checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub quantity: Quantity,
    pub unit_price: Money,
}

impl BasketView {
    /// The lines an order is made of, or what stops the checkout, line by line (`lines[i]`, with
    /// the product's id): an empty basket, a product discontinued or unknown, a price changed
    /// since the customer accepted it (unless `prices` is [`Prices::Current`]), another currency.
    pub fn checkout(&self, prices: Prices) -> Result<Vec<OrderLine>, Vec<(String, String)>> {
        if self.lines.is_empty() {
            return Err(vec![("lines".to_owned(), "the basket is empty".to_owned())]);
        }
        let mut errors = Vec::new();
        let mut lines = Vec::with_capacity(self.lines.len());
        for (i, line) in self.lines.iter().enumerate() {
            let field = format!("lines[{i}]");
            let id = line.product_id;
            let problem = match (line.availability, line.unit_price, line.price_changed) {
                (Availability::Unknown, _, _) => Some(format!("product {id} is not available")),
                (Availability::Discontinued, _, _) | (_, None, _) => Some(format!("product {id} is discontinued")),
                (Availability::Available, Some(price), _) if Some(price.currency()) != self.currency => Some(format!(
                    "product {id} is priced in {}, the basket in {}; check it out on its own",
                    price.currency(),
                    self.currency.map_or("another currency", |c| c.code())
                )),
                (Availability::Available, Some(_), Some(change)) if prices == Prices::Accepted => {
                    Some(match change.from {
                        Some(from) => format!(
                            "the price of product {id} changed from {} to {} {}; accept it with acceptPrices",
                            from.amount_minor(),
                            change.to.amount_minor(),
                            change.to.currency()
                        ),
                        None => format!(
                            "product {id} is priced {} {} now, a price not yet accepted; accept it with acceptPrices",
                            change.to.amount_minor(),
                            change.to.currency()
                        ),
                    })
                }
                (Availability::Available, Some(price), _) => {
                    lines.push(OrderLine {
                        product_id: id,
                        sku: line.sku.clone().unwrap_or_default(),
                        name: line.name.clone().unwrap_or_default(),
                        quantity: line.quantity,
                        unit_price: price,
                    });
                    None
                }
            };
            if let Some(problem) = problem {
                errors.push((field, problem));
            }
        }
        match errors.is_empty() {
            true => Ok(lines),
            false => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur(amount: i64) -> Money {
        Money::new(amount, Currency::parse("EUR").expect("valid")).expect("valid")
    }

    fn q(units: u32) -> Quantity {
        Quantity::new(units).expect("valid")
    }

    fn line(product_id: Uuid, units: u32, accepted: Option<i64>) -> Line {
        Line { product_id, quantity: q(units), accepted: accepted.map(eur) }
    }

    fn copy(product_id: Uuid, price: i64, active: bool) -> ProductCopy {
        ProductCopy {
            product_id,
            sku: format!("SKU-{}", &product_id.simple().to_string()[24..]),
            name: "Mug".into(),
            price: Some(eur(price)),
            active,
            version: 1,
        }
    }

    #[test]
    fn a_line_is_set_within_the_limits_and_zero_removes_it() {
        let limits = BasketLimits::new(2, 5).expect("valid");
        let (mug, pot, cup) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let lines = [line(mug, 1, Some(100)), line(pot, 1, Some(100))];
        assert_eq!(limits.set(&lines, mug, 5), Ok(LineChange::Put(q(5))));
        assert_eq!(limits.set(&lines, mug, 0), Ok(LineChange::Remove));
        assert_eq!(limits.set(&lines, cup, 0), Ok(LineChange::Nothing));
        assert_eq!(limits.set(&lines, mug, 6).map_err(|e| e.field), Err("quantity".to_owned()));
        assert_eq!(limits.set(&lines, cup, 1).map_err(|e| e.field), Err("lines".to_owned()));
        assert_eq!(limits.set(&lines[..1], cup, 1), Ok(LineChange::Put(q(1))));
        assert!(BasketLimits::new(0, 5).is_err());
        assert!(BasketLimits::new(5, 1001).is_err());
    }

    #[test]
    fn merging_adds_quantities_keeps_the_customers_prices_and_refuses_beyond_the_limits() {
        let limits = BasketLimits::new(3, 10).expect("valid");
        let (mug, pot, cup, jar) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let customer = [line(mug, 4, Some(100)), line(pot, 1, Some(200))];
        let guest = [line(mug, 6, Some(90)), line(cup, 2, None)];
        let merged = limits.merge(&customer, &guest).expect("within the limits");
        assert_eq!(merged, [line(mug, 10, Some(100)), line(cup, 2, None)]);

        let too_many_units = limits.merge(&customer, &[line(mug, 7, Some(100))]).expect_err("11 mugs");
        assert_eq!(too_many_units.len(), 1);
        assert!(too_many_units[0].message.contains("11 units"), "{}", too_many_units[0].message);
        let too_many_lines = limits.merge(&customer, &[line(cup, 1, None), line(jar, 1, None)]).expect_err("4 lines");
        assert_eq!(too_many_lines.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["guestBasket"]);
        assert!(limits.merge(&[], &[]).expect("nothing to merge").is_empty());
    }

    #[test]
    fn a_price_change_is_flagged_against_the_accepted_price_and_blocks_checkout_until_accepted() {
        let (mug, pot) = (Uuid::now_v7(), Uuid::now_v7());
        let basket = Basket {
            id: BasketId::generate(),
            version: 3,
            lines: vec![line(mug, 2, Some(100)), line(pot, 1, Some(50))],
        };
        let view = basket.view(&[copy(mug, 120, true), copy(pot, 50, true)]);
        assert_eq!(view.lines[0].price_changed, Some(PriceChange { from: Some(eur(100)), to: eur(120) }));
        assert_eq!(view.lines[0].line_total, Some(eur(240)));
        assert_eq!(view.lines[1].price_changed, None);
        assert_eq!((view.total, view.currency.map(|c| c.code())), (290, Some("EUR")));

        let refused = view.checkout(Prices::Accepted).expect_err("a price changed");
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, "lines[0]");
        assert!(refused[0].1.contains(&mug.to_string()), "{}", refused[0].1);
        let lines = view.checkout(Prices::Current).expect("accepted");
        assert_eq!(lines.iter().map(|l| l.unit_price).collect::<Vec<_>>(), [eur(120), eur(50)]);
    }

    #[test]
    fn a_discontinued_or_unknown_product_shows_and_is_refused_at_checkout() {
        let (gone, unknown, fine) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let basket = Basket {
            id: BasketId::generate(),
            version: 1,
            lines: vec![line(gone, 1, Some(100)), line(unknown, 1, None), line(fine, 1, Some(10))],
        };
        let view = basket.view(&[copy(gone, 100, false), copy(fine, 10, true)]);
        let availability: Vec<Availability> = view.lines.iter().map(|l| l.availability).collect();
        assert_eq!(availability, [Availability::Discontinued, Availability::Unknown, Availability::Available]);
        assert_eq!((view.lines[1].sku.as_deref(), view.lines[1].unit_price), (None, None));
        assert_eq!(view.total, 10, "only what can be checked out");
        let refused = view.checkout(Prices::Current).expect_err("two lines cannot be checked out");
        let fields: Vec<&str> = refused.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["lines[0]", "lines[1]"]);
    }

    #[test]
    fn a_line_added_before_its_product_was_known_takes_no_price_until_accepted() {
        let mug = Uuid::now_v7();
        let basket = Basket { id: BasketId::generate(), version: 1, lines: vec![line(mug, 1, None)] };
        let view = basket.view(&[copy(mug, 700, true)]);
        assert_eq!(view.lines[0].price_changed, Some(PriceChange { from: None, to: eur(700) }));
        assert!(view.checkout(Prices::Accepted).is_err());
        assert_eq!(view.checkout(Prices::Current).expect("accepted")[0].unit_price, eur(700));
    }

    #[test]
    fn an_empty_basket_does_not_check_out() {
        let view = Basket { id: BasketId::generate(), version: 0, lines: vec![] }.view(&[]);
        assert_eq!((view.total, view.currency), (0, None));
        assert_eq!(view.checkout(Prices::Current), Err(vec![("lines".to_owned(), "the basket is empty".to_owned())]));
    }

    #[test]
    fn a_guest_token_is_256_random_bits_and_only_its_hash_is_kept() {
        let token = GuestToken::generate();
        assert_eq!(token.as_str().len(), GuestToken::LENGTH);
        assert_ne!(token, GuestToken::generate());
        assert_eq!(GuestToken::parse(token.as_str()), Ok(token.clone()));
        assert_eq!(token.hash().len(), 64);
        assert_ne!(token.hash(), token.as_str());
        assert_eq!(format!("{token:?}"), "GuestToken(***)");
        let (long, padded, plus) = ("a".repeat(44), format!("{}=", &token.as_str()[..42]), "+".repeat(43));
        for bad in ["", "short", long.as_str(), padded.as_str(), plus.as_str()] {
            assert!(GuestToken::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_payment_method_is_an_id_of_letters_digits_and_underscores() {
        assert!(PaymentMethod::parse("pm_card_visa").is_ok());
        let long = "a".repeat(256);
        for bad in ["", "pm card", "pm-card", long.as_str()] {
            assert!(PaymentMethod::parse(bad).is_err(), "{bad}");
        }
    }
}
