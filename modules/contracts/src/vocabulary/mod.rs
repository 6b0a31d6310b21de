//! The shared vocabulary: the words every module, every event and every HTTP body use for the same
//! things — [`Money`] in a [`Currency`], a [`Quantity`] of one product, an [`Address`], a user's
//! [`Role`], a product's [`ProductStatus`]. Each exists once, as a type that is valid by
//! construction: its fields are private, `parse`/`new` is the only way in, and its `Deserialize`
//! goes through the same check, so no module, event or response holds an unchecked one.
//!
//! Each type serializes to the JSON events have always carried (the contracts crates pin it byte
//! for byte), and its `utoipa::ToSchema` is the schema of what its parser accepts (patterns,
//! bounds, enums): the OpenAPI document has one `Money`, one `Address`, one `Role`.
//!
//! # Two ways in: a decoded value, or a parsed request
//!
//! - **Events, responses, the domain and rows read back** use the validated type directly. An
//!   event that carries an invalid value (a negative amount, an unknown currency, a quantity of 0,
//!   an address without a city) does not decode: it is malformed, and the kernel's delivery
//!   dead-letters it at once instead of letting a handler act on it.
//! - **HTTP requests** keep the unchecked form ([`AddressForm`], or an optional integer for an
//!   amount or a quantity) and parse it in the handler's `TryFrom<&Request>`: [`Address::parse`]
//!   returns every problem ([`Invalid`]), so one 422 names each invalid field
//!   (`shippingAddress.postalCode`, `shippingAddress.country`, `price.amount`). A failing
//!   `Deserialize` could not: it stops at the first problem and names no field. The request's
//!   field still shows the validated type's schema (`#[schema(value_type = Address)]`), so the
//!   document states exactly what the server takes.

mod address;
mod money;
mod product_status;
mod quantity;
mod role;

pub use address::{Address, AddressForm};
pub use money::{Currency, Money};
pub use product_status::ProductStatus;
pub use quantity::Quantity;
pub use role::Role;

/// What is wrong with one field of a value: [`Address::parse`] returns one per problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The field's name as JSON spells it (`postalCode`).
    pub field: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self { field, message: message.into() }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.field, self.message)
    }
}
