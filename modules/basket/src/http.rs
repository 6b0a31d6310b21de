//! The basket module's HTTP API: the basket of the caller — a customer by Bearer token, or a guest
//! by `Basket-Token` — its lines, the merge of a guest basket into a customer's, and the checkout.
//! Errors map to problem+json here, once.

use actix_web::dev::Payload;
use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpRequest, HttpResponse, HttpResponseBuilder, delete, get, post, put, web};
use contracts::AddressForm;
use kernel::error::{FieldErrors, Problem, problem_with};
use kernel::{ApiError, FieldError, Principal};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{
    Address, Availability, BasketView, Currency, GuestToken, Holder, LineView, Money, PaymentMethod, Prices, Quantity,
};
use crate::service::{Baskets, Checkout, CheckoutError, Edit, EditError, Idempotency, MergeError};

/// The header a guest's basket token travels in, both ways.
pub const BASKET_TOKEN: &str = "Basket-Token";

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasketPriceChange {
    /// The price accepted when the line was added or last set; `null` if the product was unknown
    /// to the basket then.
    pub from: Option<Money>,
    /// The price now: what a checkout with `acceptPrices: true` charges.
    pub to: Money,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasketLineResponse {
    pub product_id: Uuid,
    /// `null` while the product is unknown to the basket (`unavailable`).
    pub sku: Option<String>,
    pub name: Option<String>,
    pub quantity: Quantity,
    /// The product's price now; `null` while it is unknown.
    pub unit_price: Option<Money>,
    pub line_total: Option<Money>,
    /// Present when the price now differs from the one accepted: a checkout refuses the line
    /// unless `acceptPrices` is true (or the line is set again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_changed: Option<BasketPriceChange>,
    /// Present (`true`) when the catalog discontinued the product: a checkout refuses the line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discontinued: Option<bool>,
    /// Present (`true`) when the product is unknown to the basket (not in the catalog, or not yet
    /// heard of): a checkout refuses the line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<bool>,
}

impl From<&LineView> for BasketLineResponse {
    fn from(l: &LineView) -> Self {
        Self {
            product_id: l.product_id,
            sku: l.sku.clone(),
            name: l.name.clone(),
            quantity: l.quantity,
            unit_price: l.unit_price,
            line_total: l.line_total,
            price_changed: l.price_changed.map(|c| BasketPriceChange { from: c.from, to: c.to }),
            discontinued: (l.availability == Availability::Discontinued).then_some(true),
            unavailable: (l.availability == Availability::Unknown).then_some(true),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasketResponse {
    pub id: Uuid,
    /// One more on every change; the `ETag` is this number in quotes.
    #[schema(minimum = 0)]
    pub version: i64,
    /// In the order they were added.
    pub lines: Vec<BasketLineResponse>,
    /// The lines that can be checked out, at the prices now, in minor units of `currency`.
    #[schema(minimum = 0)]
    pub total: i64,
    /// Absent while no line can be checked out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
}

impl From<&BasketView> for BasketResponse {
    fn from(b: &BasketView) -> Self {
        Self {
            id: b.id.as_uuid(),
            version: b.version,
            lines: b.lines.iter().map(BasketLineResponse::from).collect(),
            total: b.total,
            currency: b.currency,
        }
    }
}

/// A 409's problem document: the basket as it is now rides along.
#[derive(Debug, Serialize, ToSchema)]
#[schema(title = "BasketConflict")]
pub struct BasketConflict {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub problem_type: Option<String>,
    pub status: u16,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The basket now, at the version its `ETag` names.
    pub basket: BasketResponse,
}

#[derive(Debug, Serialize)]
struct ConflictMembers {
    basket: BasketResponse,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasketItemRequest {
    /// The units the line holds from now on; 0 removes it. At most `basket.max_quantity` (99
    /// by default; 422 beyond). Setting a line accepts the product's price now.
    #[schema(required = true, example = 2, value_type = i64, minimum = 0, maximum = 1000)]
    #[serde(default, deserialize_with = "kernel::openapi::whole_number")]
    pub quantity: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasketMergeRequest {
    /// The guest basket's token, as `POST /basket` gave it in `Basket-Token`.
    #[schema(required = true, value_type = String, pattern = "^[A-Za-z0-9_-]{43}$")]
    pub guest_basket: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasketCheckoutRequest {
    #[schema(required = true, value_type = Address)]
    pub shipping_address: Option<AddressForm>,
    /// The provider's payment method, charged once the stock is reserved (`pm_card_visa` with the
    /// built-in fake provider). Without one, the order awaits a method.
    #[schema(example = "pm_card_visa", pattern = "^[A-Za-z0-9_]{1,255}$")]
    pub payment_method: Option<String>,
    /// `true` checks out at the prices now, accepting every `priceChanged`; otherwise a changed
    /// price refuses the checkout (422).
    pub accept_prices: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasketCheckoutResponse {
    /// The order being made of the basket: `GET /orders/{orderId}` once orders has it.
    pub order_id: Uuid,
}

impl TryFrom<&BasketCheckoutRequest> for Checkout {
    type Error = ApiError;

    fn try_from(body: &BasketCheckoutRequest) -> Result<Self, ApiError> {
        let mut errors = FieldErrors::default();
        let shipping_address = match body.shipping_address.as_ref() {
            None => errors.check::<Address>("shippingAddress", Err("is required".into())),
            Some(form) => match Address::parse(form) {
                Ok(address) => Some(address),
                Err(problems) => {
                    for problem in problems {
                        errors.check::<()>(&format!("shippingAddress.{}", problem.field), Err(problem.message));
                    }
                    None
                }
            },
        };
        let payment_method =
            body.payment_method.as_deref().and_then(|raw| errors.check("paymentMethod", PaymentMethod::parse(raw)));
        let prices = match body.accept_prices {
            Some(true) => Prices::Current,
            _ => Prices::Accepted,
        };
        match shipping_address {
            Some(shipping_address) if !errors.has_errors() => Ok(Checkout { shipping_address, payment_method, prices }),
            _ => Err(errors.into_error()),
        }
    }
}

/// Whose basket the request is about: a customer's when it carries a Bearer token (which must be
/// valid), a guest's when it carries a `Basket-Token` alone, or nobody's. A malformed
/// `Basket-Token` is refused even beside a Bearer token.
async fn holder(req: &HttpRequest) -> Result<Option<Holder>, ApiError> {
    let token = match req.headers().get(BASKET_TOKEN) {
        None => None,
        Some(value) => {
            let raw = value.to_str().unwrap_or_default();
            Some(GuestToken::parse(raw).map_err(|m| ApiError::BadRequest(format!("{BASKET_TOKEN} {m}")))?)
        }
    };
    if req.headers().contains_key(header::AUTHORIZATION) {
        let principal = Principal::from_request(req, &mut Payload::None).await?;
        return Ok(Some(Holder::Customer(principal.user_id)));
    }
    Ok(token.map(Holder::Guest))
}

/// [`holder`], required.
async fn required_holder(req: &HttpRequest) -> Result<Holder, ApiError> {
    holder(req).await?.ok_or_else(|| {
        ApiError::Unauthorized(format!("an Authorization: Bearer token or a {BASKET_TOKEN} (POST /basket) is required"))
    })
}

/// `If-Match: "<version>"`, if sent.
fn if_match(req: &HttpRequest) -> Result<Option<i64>, ApiError> {
    let Some(value) = req.headers().get(header::IF_MATCH) else { return Ok(None) };
    let version = value
        .to_str()
        .ok()
        // The ETag as given, in quotes; a bare version is taken too.
        .map(|v| v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v))
        .filter(|digits| (1..=18).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse::<i64>().ok());
    version.map(Some).ok_or_else(|| {
        ApiError::BadRequest("If-Match must be an ETag this API gave: a version in quotes, like \"3\" (or bare)".into())
    })
}

fn etag(view: &BasketView) -> (header::HeaderName, String) {
    (header::ETAG, format!("\"{}\"", view.version))
}

fn basket(status: StatusCode, view: &BasketView) -> HttpResponse {
    HttpResponseBuilder::new(status).insert_header(etag(view)).json(BasketResponse::from(view))
}

/// 409: `If-Match` named another version, or changes kept coming first; the basket now rides along.
fn conflict(view: &BasketView) -> HttpResponse {
    let detail = format!("the basket is at version {} now; review it and try again", view.version);
    let mut response =
        problem_with(StatusCode::CONFLICT, Some(detail), ConflictMembers { basket: BasketResponse::from(view) });
    let (name, value) = etag(view);
    if let Ok(value) = header::HeaderValue::from_str(&value) {
        response.headers_mut().insert(name, value);
    }
    response
}

fn guest_not_found() -> ApiError {
    ApiError::NotFound(format!("no basket has this {BASKET_TOKEN}: it expired, was merged, or never existed"))
}

fn answer(edited: Result<BasketView, EditError>) -> Result<HttpResponse, ApiError> {
    match edited {
        Ok(view) => Ok(basket(StatusCode::OK, &view)),
        Err(EditError::Mismatch(view)) => Ok(conflict(&view)),
        Err(EditError::NotFound) => Err(guest_not_found()),
        Err(EditError::OverLimit(e)) => Err(ApiError::invalid(e.field, e.message)),
        Err(EditError::Unexpected(e)) => Err(e.into()),
    }
}

/// Open a basket. Without a Bearer token: a new guest basket (201), whose token comes in the
/// `Basket-Token` response header — send it with every request about the basket, and merge the
/// basket into yours once signed in (`POST /basket/merge`). Only the token's hash is kept: a lost
/// token is a lost basket. With a Bearer token: your basket (200), created if it was not yet.
#[utoipa::path(
    tag = "basket",
    params(("Basket-Token" = Option<String>, Header, nullable = false, description = "Ignored here (checked for its form)",
        pattern = "^[A-Za-z0-9_-]{43}$")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Your basket", body = BasketResponse,
            headers(("ETag" = String, description = "The basket's version, in quotes"))),
        (status = 201, description = "A new guest basket", body = BasketResponse,
            headers(
                ("ETag" = String, description = "The basket's version, in quotes"),
                ("Basket-Token" = String, description = "The guest basket's token: 43 characters"),
            )),
        (status = 400, description = "A malformed Basket-Token", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "An invalid Bearer token", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/basket")]
#[tracing::instrument(skip_all)]
pub async fn open_basket(req: HttpRequest, baskets: web::Data<Baskets>) -> Result<HttpResponse, ApiError> {
    match holder(&req).await? {
        Some(Holder::Customer(user_id)) => Ok(basket(StatusCode::OK, &baskets.open(user_id).await?)),
        Some(Holder::Guest(_)) | None => {
            let (token, view) = baskets.create_guest().await?;
            Ok(HttpResponse::Created()
                .insert_header(etag(&view))
                .insert_header((BASKET_TOKEN, token.as_str().to_owned()))
                .json(BasketResponse::from(&view)))
        }
    }
}

/// Your basket (Bearer token), or the guest basket of the `Basket-Token`, priced from the
/// basket's copy of the catalog: each line flags a price that changed since it was accepted
/// (`priceChanged`), a discontinued product, or one unknown to the copy (`unavailable`).
#[utoipa::path(
    tag = "basket",
    params(("Basket-Token" = Option<String>, Header, nullable = false, description = "A guest basket's token, without a Bearer token",
        pattern = "^[A-Za-z0-9_-]{43}$")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The basket", body = BasketResponse,
            headers(("ETag" = String, description = "The basket's version, in quotes"))),
        (status = 400, description = "A malformed Basket-Token", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Neither a valid Bearer token nor a Basket-Token", body = Problem,
            content_type = "application/problem+json"),
        (status = 404, description = "No guest basket has this token (expired, merged)", body = Problem,
            content_type = "application/problem+json"),
    )
)]
#[get("/basket")]
#[tracing::instrument(skip_all)]
pub async fn get_basket(req: HttpRequest, baskets: web::Data<Baskets>) -> Result<HttpResponse, ApiError> {
    let holder = required_holder(&req).await?;
    answer(baskets.view(&holder).await)
}

/// Set how many units of a product the basket holds (0 removes the line), at the product's price
/// now, which the line then accepts. A product unknown to the basket's copy of the catalog may be
/// added (the copy may lag behind the catalog): its line shows `unavailable` until the copy knows
/// it, and a checkout refuses it meanwhile. At most `basket.max_lines` products (50 by default) of
/// `basket.max_quantity` units each (99): 422 beyond. With `If-Match`, only if the basket is still
/// at that version (409 otherwise, with the basket as it is).
#[utoipa::path(
    tag = "basket",
    params(
        ("productId" = Uuid, Path, description = "The product"),
        ("Basket-Token" = Option<String>, Header, nullable = false, description = "A guest basket's token, without a Bearer token",
            pattern = "^[A-Za-z0-9_-]{43}$"),
        ("If-Match" = Option<String>, Header, nullable = false, description = "The basket's ETag, as last seen", pattern = "^(?:\"[0-9]{1,18}\"|[0-9]{1,18})$"),
    ),
    request_body = BasketItemRequest,
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The basket, changed", body = BasketResponse,
            headers(("ETag" = String, description = "The basket's version, in quotes"))),
        (status = 401, description = "Neither a valid Bearer token nor a Basket-Token", body = Problem,
            content_type = "application/problem+json"),
        (status = 404, description = "No guest basket has this token (expired, merged)", body = Problem,
            content_type = "application/problem+json"),
        (status = 409, description = "The basket is not at the If-Match version", body = BasketConflict,
            content_type = "application/problem+json",
            headers(("ETag" = String, description = "The basket's version now, in quotes"))),
        (status = 422, description = "An invalid quantity, or beyond the basket's limits", body = Problem,
            content_type = "application/problem+json"),
    )
)]
#[put("/basket/items/{productId}")]
#[tracing::instrument(skip_all, fields(product.id = %product_id))]
pub async fn set_quantity(
    req: HttpRequest,
    baskets: web::Data<Baskets>,
    product_id: web::Path<Uuid>,
    body: web::Json<BasketItemRequest>,
) -> Result<HttpResponse, ApiError> {
    let units = body
        .quantity
        .ok_or_else(|| "is required".to_owned())
        .and_then(|n| {
            u32::try_from(n)
                .ok()
                .filter(|n| *n <= Quantity::MAX)
                .ok_or_else(|| format!("must be 0 (to remove the line) to {}, not {n}", Quantity::MAX))
        })
        .map_err(|m| ApiError::Validation(vec![FieldError::new("quantity", m)]))?;
    let (holder, if_match) = (required_holder(&req).await?, if_match(&req)?);
    answer(baskets.edit(&holder, if_match, Edit::Set { product_id: product_id.into_inner(), units }).await)
}

/// Remove a product's line (nothing happens if the basket has none). With `If-Match`, only if the
/// basket is still at that version.
#[utoipa::path(
    tag = "basket",
    params(
        ("productId" = Uuid, Path, description = "The product"),
        ("Basket-Token" = Option<String>, Header, nullable = false, description = "A guest basket's token, without a Bearer token",
            pattern = "^[A-Za-z0-9_-]{43}$"),
        ("If-Match" = Option<String>, Header, nullable = false, description = "The basket's ETag, as last seen", pattern = "^(?:\"[0-9]{1,18}\"|[0-9]{1,18})$"),
    ),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The basket, without the line", body = BasketResponse,
            headers(("ETag" = String, description = "The basket's version, in quotes"))),
        (status = 401, description = "Neither a valid Bearer token nor a Basket-Token", body = Problem,
            content_type = "application/problem+json"),
        (status = 404, description = "No guest basket has this token (expired, merged)", body = Problem,
            content_type = "application/problem+json"),
        (status = 409, description = "The basket is not at the If-Match version", body = BasketConflict,
            content_type = "application/problem+json",
            headers(("ETag" = String, description = "The basket's version now, in quotes"))),
    )
)]
#[delete("/basket/items/{productId}")]
#[tracing::instrument(skip_all, fields(product.id = %product_id))]
pub async fn remove_item(
    req: HttpRequest,
    baskets: web::Data<Baskets>,
    product_id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let (holder, if_match) = (required_holder(&req).await?, if_match(&req)?);
    answer(baskets.edit(&holder, if_match, Edit::Set { product_id: product_id.into_inner(), units: 0 }).await)
}

/// Empty the basket (a guest's keeps its token). With `If-Match`, only if the basket is still at
/// that version.
#[utoipa::path(
    tag = "basket",
    params(
        ("Basket-Token" = Option<String>, Header, nullable = false, description = "A guest basket's token, without a Bearer token",
            pattern = "^[A-Za-z0-9_-]{43}$"),
        ("If-Match" = Option<String>, Header, nullable = false, description = "The basket's ETag, as last seen", pattern = "^(?:\"[0-9]{1,18}\"|[0-9]{1,18})$"),
    ),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The basket, empty", body = BasketResponse,
            headers(("ETag" = String, description = "The basket's version, in quotes"))),
        (status = 401, description = "Neither a valid Bearer token nor a Basket-Token", body = Problem,
            content_type = "application/problem+json"),
        (status = 404, description = "No guest basket has this token (expired, merged)", body = Problem,
            content_type = "application/problem+json"),
        (status = 409, description = "The basket is not at the If-Match version", body = BasketConflict,
            content_type = "application/problem+json",
            headers(("ETag" = String, description = "The basket's version now, in quotes"))),
    )
)]
#[delete("/basket")]
#[tracing::instrument(skip_all)]
pub async fn clear_basket(req: HttpRequest, baskets: web::Data<Baskets>) -> Result<HttpResponse, ApiError> {
    let (holder, if_match) = (required_holder(&req).await?, if_match(&req)?);
    answer(baskets.edit(&holder, if_match, Edit::Clear).await)
}

/// Merge a guest basket into yours (customer), once signed in: the guest's quantities add to
/// yours, product by product, and the guest basket is deleted (its token opens nothing after).
/// If the result would exceed the basket's limits, nothing changes (422).
#[utoipa::path(
    tag = "basket",
    request_body = BasketMergeRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Your basket, merged", body = BasketResponse,
            headers(("ETag" = String, description = "The basket's version, in quotes"))),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No guest basket has this token (expired, merged)", body = Problem,
            content_type = "application/problem+json"),
        (status = 422, description = "An invalid token, or a merge beyond the basket's limits", body = Problem,
            content_type = "application/problem+json"),
    )
)]
#[post("/basket/merge")]
#[tracing::instrument(skip_all, fields(user.id = %principal.user_id))]
pub async fn merge_basket(
    principal: Principal,
    baskets: web::Data<Baskets>,
    body: web::Json<BasketMergeRequest>,
) -> Result<HttpResponse, ApiError> {
    let token = body
        .guest_basket
        .as_deref()
        .ok_or_else(|| "is required".to_owned())
        .and_then(GuestToken::parse)
        .map_err(|m| ApiError::invalid("guestBasket", m))?;
    match baskets.merge(principal.user_id, &token).await {
        Ok(view) => Ok(basket(StatusCode::OK, &view)),
        Err(MergeError::NotFound) => Err(guest_not_found()),
        Err(MergeError::OverLimit(errors)) => {
            Err(ApiError::Validation(errors.into_iter().map(|e| FieldError::new(e.field, e.message)).collect()))
        }
        Err(MergeError::Unexpected(e)) => Err(e.into()),
    }
}

/// Check your basket out (customer): the order `orderId` is made of it (202: orders creates it
/// from the basket's `BasketCheckedOut`, then the saga goes on as for `POST /orders`), and the
/// basket is emptied. Refused (422, naming `lines` or each `lines[i]` with its product) when the
/// basket is empty, holds a discontinued or unavailable product, or a price that changed since it
/// was accepted — unless `acceptPrices` is true, which checks out at the prices now.
/// With an `Idempotency-Key`, a repeat of the same request answers the first `orderId` again; the
/// key with another request is a 422.
#[utoipa::path(
    tag = "basket",
    request_body = BasketCheckoutRequest,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, description = "Makes retries safe: 1 to 255 visible characters",
        pattern = "^[!-~](?:[ -~]{0,253}[!-~])?$")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Checked out: the order is being made", body = BasketCheckoutResponse,
            headers(("Location" = String, description = "The order's URL: /orders/{orderId}"),
                ("Retry-After" = u32, description = "Seconds after which the order is likely to be there: until orders has handled the checkout, GET on Location answers 404"))),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The e-mail address is not verified yet, and auth.require_verified_email is set", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, a basket that cannot be checked out, or a key reused with another request",
            body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/basket/checkout")]
#[tracing::instrument(skip_all, fields(user.id = %principal.user_id))]
pub async fn checkout(
    req: HttpRequest,
    principal: kernel::auth::Verified,
    baskets: web::Data<Baskets>,
    body: web::Json<BasketCheckoutRequest>,
) -> Result<HttpResponse, ApiError> {
    let request = Checkout::try_from(&*body)?;
    let idempotency = match req.headers().get("idempotency-key") {
        None => None,
        Some(value) => {
            let key = value.to_str().ok().filter(|k| {
                (1..=255).contains(&k.len())
                    && k.bytes().all(|b| (b' '..=b'~').contains(&b))
                    && !k.starts_with(' ')
                    && !k.ends_with(' ')
            });
            let key =
                key.ok_or_else(|| ApiError::BadRequest("Idempotency-Key must be 1 to 255 visible characters".into()))?;
            let canonical = serde_json::to_vec(&*body).unwrap_or_default();
            let request_hash = Sha256::digest(&canonical).iter().map(|b| format!("{b:02x}")).collect();
            Some(Idempotency { key: key.to_owned(), request_hash })
        }
    };
    let order_id = baskets.checkout(principal.user_id, &request, idempotency.as_ref()).await.map_err(|e| match e {
        CheckoutError::Invalid(errors) => {
            ApiError::Validation(errors.into_iter().map(|(f, m)| FieldError::new(f, m)).collect())
        }
        CheckoutError::KeyReused => ApiError::invalid("Idempotency-Key", "was used before with another request body"),
        CheckoutError::Unexpected(e) => e.into(),
    })?;
    // Orders makes the order from the checkout's event, a hop away: `pending` from then on.
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/orders/{order_id}")))
        .insert_header((header::RETRY_AFTER, "1"))
        .json(BasketCheckoutResponse { order_id }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn if_match_is_a_version_in_quotes() {
        let with = |value: &str| if_match(&TestRequest::default().insert_header(("If-Match", value)).to_http_request());
        assert_eq!(if_match(&TestRequest::default().to_http_request()).ok(), Some(None));
        assert_eq!(with("\"7\"").ok(), Some(Some(7)));
        assert_eq!(with("7").ok(), Some(Some(7)), "a bare version is taken too");
        for bad in ["\"7", "\"\"", "W/\"7\"", "*", "\"-1\"", "\"1234567890123456789\""] {
            assert!(with(bad).is_err(), "{bad}");
        }
    }

    #[actix_web::test]
    async fn a_malformed_basket_token_is_refused_and_none_is_nobody() {
        let request = TestRequest::default().insert_header((BASKET_TOKEN, "short")).to_http_request();
        assert!(matches!(holder(&request).await, Err(ApiError::BadRequest(_))));
        assert!(matches!(holder(&TestRequest::default().to_http_request()).await, Ok(None)));
        let token = GuestToken::generate();
        let request = TestRequest::default().insert_header((BASKET_TOKEN, token.as_str())).to_http_request();
        assert_eq!(holder(&request).await.ok(), Some(Some(Holder::Guest(token))));
    }
}
