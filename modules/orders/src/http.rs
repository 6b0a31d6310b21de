//! The orders module's HTTP API.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use chrono::{DateTime, Utc};
use contracts::AddressForm;
use kernel::error::{FieldErrors, Problem};
use kernel::{ApiError, FieldError, Page, Principal, after_cursor, page_limit};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::domain::{Address, Money, Order, OrderId, OrderStatus, PaymentMethod, Quantity};
use crate::service::{
    AddressChanged, Cancelled, ChangeOrderError, Idempotency, Orders, PlaceOrder, PlaceOrderError, Placed,
};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ItemRequest {
    /// A product of the catalog; an unknown one is a 422.
    #[schema(required = true, value_type = Uuid)]
    pub product_id: Option<Uuid>,
    /// Units of the product. The shop's settings cap what one order holds (422 beyond, naming the
    /// line or `items`): `orders.max_quantity_per_line` units of one product, its lines of that
    /// product counted together (100 by default, never above 1000), and
    /// `orders.max_quantity_per_order` units in all (1000 by default).
    #[schema(example = 2, required = true, value_type = i64, minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "kernel::openapi::whole_number")]
    pub quantity: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlaceOrderRequest {
    /// 1 to 100 lines; a product may appear on several.
    #[schema(required = true, value_type = Vec<ItemRequest>, min_items = 1, max_items = 100)]
    pub items: Option<Vec<ItemRequest>>,
    #[schema(required = true, value_type = Address)]
    pub shipping_address: Option<AddressForm>,
    /// The provider's payment method, charged once the stock is reserved (`pm_card_visa` with the
    /// built-in fake provider). Without one, the order awaits a method: `POST /orders/{id}/payment`.
    #[schema(example = "pm_card_visa", pattern = "^[A-Za-z0-9_]{1,255}$")]
    pub payment_method: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PayOrderRequest {
    /// The provider's payment method, as at `POST /orders`.
    #[schema(required = true, example = "pm_card_visa", pattern = "^[A-Za-z0-9_]{1,255}$")]
    pub payment_method: Option<String>,
}

/// The request's payment method, or its problem recorded in `errors`.
fn payment_method(raw: Option<&str>, errors: &mut FieldErrors) -> Option<PaymentMethod> {
    raw.and_then(|raw| errors.check("paymentMethod", PaymentMethod::parse(raw)))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangeAddressRequest {
    #[schema(required = true, value_type = Address)]
    pub shipping_address: Option<AddressForm>,
}

/// The request's `shippingAddress`, or each of its problems recorded in `errors`.
fn address(form: Option<&AddressForm>, errors: &mut FieldErrors) -> Option<Address> {
    let Some(form) = form else {
        errors.check::<()>("shippingAddress", Err("is required".into()));
        return None;
    };
    match Address::parse(form) {
        Ok(address) => Some(address),
        Err(problems) => {
            for problem in problems {
                errors.check::<()>(&format!("shippingAddress.{}", problem.field), Err(problem.message));
            }
            None
        }
    }
}

impl TryFrom<&PlaceOrderRequest> for PlaceOrder {
    type Error = ApiError;

    fn try_from(body: &PlaceOrderRequest) -> Result<Self, ApiError> {
        let mut errors = FieldErrors::default();
        let mut items = Vec::new();
        match body.items.as_deref() {
            None | Some([]) => {
                errors.check::<()>("items", Err("must name at least one product".into()));
            }
            Some(lines) if lines.len() > 100 => {
                errors.check::<()>("items", Err("may have at most 100 lines".into()));
            }
            Some(lines) => {
                for (i, line) in lines.iter().enumerate() {
                    let product =
                        errors.check(&format!("items[{i}].productId"), line.product_id.ok_or("is required".into()));
                    let quantity = errors.check(
                        &format!("items[{i}].quantity"),
                        line.quantity.ok_or_else(|| "is required".to_owned()).and_then(Quantity::parse),
                    );
                    if let (Some(product), Some(quantity)) = (product, quantity) {
                        items.push((product, quantity));
                    }
                }
            }
        }
        let shipping_address = address(body.shipping_address.as_ref(), &mut errors);
        let payment_method = payment_method(body.payment_method.as_deref(), &mut errors);
        match shipping_address {
            Some(shipping_address) if !errors.has_errors() => {
                Ok(PlaceOrder { items, shipping_address, payment_method })
            }
            _ => Err(errors.into_error()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineResponse {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    #[schema(value_type = u32)]
    pub quantity: Quantity,
    pub unit_price: Money,
    pub line_total: Money,
}

/// The order's payment, once its stock is reserved.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderPaymentResponse {
    /// `requires_payment_method` (give one with `POST /orders/{id}/payment`), `processing`,
    /// `requires_action` (complete it with the provider, using `clientSecret`), `succeeded`,
    /// `failed` (declined: the order is rejected) or `refunded`.
    #[schema(example = "succeeded")]
    pub status: &'static str,
    /// The order's total: what is charged.
    #[serde(flatten)]
    pub amount: Money,
    pub payment_method: Option<String>,
    /// What the customer hands the provider to complete a `requires_action` payment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Unpaid by then, the order is cancelled (`payment_timeout`).
    pub due_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub refunded_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderResponse {
    pub id: Uuid,
    pub user_id: Uuid,
    /// `pending`, `awaiting_payment`, `confirmed`, `rejected`, `cancelling`, `cancelled`, `shipped`
    /// or `delivered`.
    pub status: &'static str,
    pub lines: Vec<LineResponse>,
    pub total: Money,
    pub shipping_address: Address,
    /// The address asked for once the order was confirmed, until shipping answers: it becomes
    /// `shippingAddress`, or is refused because the parcel left.
    pub requested_shipping_address: Option<Address>,
    /// When that change was asked for.
    pub address_change_requested_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection_reason: Option<String>,
    /// `customer`, `shipment_cancelled` or `payment_timeout`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancellation_reason: Option<&'static str>,
    /// `null` until the stock is reserved.
    pub payment: Option<OrderPaymentResponse>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub rejected_at: Option<DateTime<Utc>>,
    /// When the customer asked to cancel the order once it was confirmed.
    pub cancellation_requested_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub shipped_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl From<&Order> for OrderResponse {
    fn from(o: &Order) -> Self {
        Self {
            id: o.id.as_uuid(),
            user_id: o.user_id,
            status: o.status.as_str(),
            lines: o
                .lines
                .iter()
                .map(|l| LineResponse {
                    product_id: l.product_id,
                    sku: l.sku.clone(),
                    name: l.name.clone(),
                    quantity: l.quantity,
                    unit_price: l.unit_price,
                    line_total: l.total(),
                })
                .collect(),
            total: o.total,
            shipping_address: o.shipping_address.clone(),
            requested_shipping_address: o.address_change.as_ref().map(|c| c.address.clone()),
            address_change_requested_at: o.address_change.as_ref().map(|c| c.requested_at),
            rejection_reason: o.rejection_reason.clone(),
            cancellation_reason: o.cancellation_reason.map(|r| r.as_str()),
            payment: o.payment.as_ref().map(|p| OrderPaymentResponse {
                status: p.status.as_str(),
                amount: o.total,
                payment_method: o.payment_method.as_ref().map(|m| m.as_str().to_owned()),
                client_secret: p.client_secret.clone(),
                failure_reason: p.failure_reason.clone(),
                due_at: p.due_at,
                paid_at: p.paid_at,
                refunded_at: p.refunded_at,
            }),
            created_at: o.created_at,
            updated_at: o.updated_at,
            confirmed_at: o.timeline.confirmed_at,
            rejected_at: o.timeline.rejected_at,
            cancellation_requested_at: o.timeline.cancellation_requested_at,
            cancelled_at: o.timeline.cancelled_at,
            shipped_at: o.timeline.shipped_at,
            delivered_at: o.timeline.delivered_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListOrdersQuery {
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    /// The `nextCursor` of the previous page.
    #[param(format = Uuid)]
    pub after: Option<String>,
    #[param(pattern = "^(?:pending|awaiting_payment|confirmed|rejected|cancelling|cancelled|shipped|delivered)$")]
    pub status: Option<String>,
}

fn render(order: &Order) -> String {
    serde_json::to_string(&OrderResponse::from(order)).unwrap_or_default()
}

fn created(location: &str, body: String) -> HttpResponse {
    HttpResponse::Created()
        .insert_header((header::LOCATION, location.to_owned()))
        .content_type("application/json")
        .body(body)
}

/// Place an order (customer). It starts `pending`; once inventory reserves its stock it is
/// `awaiting_payment` (charged with `paymentMethod`), and its payment confirms or rejects it;
/// without stock it is rejected.
/// With an `Idempotency-Key`, a repeat of the same request returns the first response.
/// An order holds at most `orders.max_quantity_per_line` units of one product and
/// `orders.max_quantity_per_order` units in all (100 and 1000 by default).
#[utoipa::path(
    tag = "orders",
    request_body = PlaceOrderRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: 1 to 255 visible characters",
        pattern = "^[!-~](?:[ -~]{0,253}[!-~])?$")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Placed", body = OrderResponse),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The e-mail address is not verified yet, and auth.require_verified_email is set", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid order (beyond the quantity caps too), or a key reused with another request", body = Problem,
            content_type = "application/problem+json"),
    )
)]
#[post("/orders")]
#[tracing::instrument(skip_all, fields(user.id = %principal.user_id))]
pub async fn place_order(
    req: HttpRequest,
    principal: kernel::auth::Verified,
    orders: web::Data<Orders>,
    body: web::Json<PlaceOrderRequest>,
) -> Result<HttpResponse, ApiError> {
    let request = PlaceOrder::try_from(&*body)?;
    let idempotency = match req.headers().get("idempotency-key") {
        None => None,
        Some(value) => {
            let key = value.to_str().ok().map(str::trim).filter(|k| !k.is_empty() && k.len() <= 255);
            let key =
                key.ok_or_else(|| ApiError::BadRequest("Idempotency-Key must be 1 to 255 visible characters".into()))?;
            let canonical = serde_json::to_vec(&*body).unwrap_or_default();
            let request_hash = Sha256::digest(&canonical).iter().map(|b| format!("{b:02x}")).collect();
            Some(Idempotency { key: key.to_owned(), request_hash })
        }
    };
    let placed = orders.place(principal.user_id, request, idempotency, render).await.map_err(|e| match e {
        PlaceOrderError::Invalid(errors) => {
            ApiError::Validation(errors.into_iter().map(|(f, m)| FieldError::new(f, m)).collect())
        }
        PlaceOrderError::KeyReused => ApiError::invalid("Idempotency-Key", "was used before with another request body"),
        PlaceOrderError::Unexpected(e) => e.into(),
    })?;
    Ok(match placed {
        Placed::New(order) => created(&format!("/orders/{}", order.id), render(&order)),
        Placed::Replayed(body) => {
            let id =
                serde_json::from_str::<serde_json::Value>(&body).ok().and_then(|v| v["id"].as_str().map(str::to_owned));
            created(&format!("/orders/{}", id.unwrap_or_default()), body)
        }
    })
}

/// One order: its owner's or, for an admin, anyone's. Others are told it does not exist.
#[utoipa::path(
    tag = "orders",
    params(("id" = Uuid, Path, description = "The order's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The order", body = OrderResponse),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order (or not yours)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/orders/{id}")]
#[tracing::instrument(skip_all, fields(order.id = %id, user.id = %principal.user_id))]
pub async fn get_order(
    principal: Principal,
    orders: web::Data<Orders>,
    id: web::Path<Uuid>,
) -> Result<web::Json<OrderResponse>, ApiError> {
    let id = OrderId::from(id.into_inner());
    let order = orders.get(id, &principal).await?.ok_or_else(|| not_found(id))?;
    Ok(web::Json((&order).into()))
}

/// Your orders (all orders for an admin), oldest first.
#[utoipa::path(
    tag = "orders",
    params(ListOrdersQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of orders", body = Page<OrderResponse>),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid query", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/orders")]
#[tracing::instrument(skip_all, fields(user.id = %principal.user_id))]
pub async fn list_orders(
    principal: Principal,
    orders: web::Data<Orders>,
    query: web::Query<ListOrdersQuery>,
) -> Result<web::Json<Page<OrderResponse>>, ApiError> {
    let limit = page_limit(query.limit)?;
    let status =
        query.status.as_deref().map(OrderStatus::parse).transpose().map_err(|m| ApiError::invalid("status", m))?;
    let after: Option<OrderId> = after_cursor(query.after.as_deref())?;
    let rows = orders.list(&principal, status, after, limit + 1).await?;
    Ok(web::Json(Page::from_rows(rows, limit, |o| o.id.to_string(), |o| OrderResponse::from(&o))))
}

/// Change the shipping address while the order is pending or confirmed (not once `cancelling`).
/// A pending order takes it at once (200). A confirmed order shows it as
/// `requestedShippingAddress` (202) until shipping answers: a shipment not yet dispatched takes it
/// and it becomes the order's `shippingAddress`; a dispatched one refuses and the address stays.
/// One change at a time: another while shipping has not answered is 409.
#[utoipa::path(
    tag = "orders",
    params(("id" = Uuid, Path, description = "The order's id")),
    request_body = ChangeAddressRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The order, with its new address", body = OrderResponse),
        (status = 202, description = "The order, its change waiting for shipping", body = OrderResponse),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order (or not yours)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Cancelling, shipped or ended already, or a change waiting for shipping", body = Problem,
            content_type = "application/problem+json"),
        (status = 422, description = "Invalid address", body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/orders/{id}")]
#[tracing::instrument(skip_all, fields(order.id = %id, user.id = %principal.user_id))]
pub async fn change_address(
    principal: Principal,
    orders: web::Data<Orders>,
    id: web::Path<Uuid>,
    body: web::Json<ChangeAddressRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::default();
    let Some(new) = address(body.shipping_address.as_ref(), &mut errors) else {
        return Err(errors.into_error());
    };
    Ok(match orders.change_address(id.into_inner().into(), &principal, new).await.map_err(change_error)? {
        AddressChanged::Now(order) => HttpResponse::Ok().json(OrderResponse::from(&order)),
        AddressChanged::Requested(order) => HttpResponse::Accepted().json(OrderResponse::from(&order)),
    })
}

/// Cancel an order. A pending order, or one awaiting its payment, is cancelled at once (200); it
/// is kept, `cancelled`, its stock released and a payment under way cancelled (or refunded). A
/// confirmed order becomes `cancelling` (202): shipping cancels its shipment unless it was
/// dispatched already, and the order then ends `cancelled` (stock released, payment refunded) or
/// `shipped`. Asking again while it is `cancelling` is another 202 and changes nothing.
#[utoipa::path(
    tag = "orders",
    params(("id" = Uuid, Path, description = "The order's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The cancelled order", body = OrderResponse),
        (status = 202, description = "The order, `cancelling`: shipping decides", body = OrderResponse),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order (or not yours)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Rejected, shipped or ended already", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/orders/{id}")]
#[tracing::instrument(skip_all, fields(order.id = %id, user.id = %principal.user_id))]
pub async fn cancel_order(
    principal: Principal,
    orders: web::Data<Orders>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    Ok(match orders.cancel(id.into_inner().into(), &principal).await.map_err(change_error)? {
        Cancelled::Now(order) => HttpResponse::Ok().json(OrderResponse::from(&order)),
        Cancelled::Requested(order) => HttpResponse::Accepted().json(OrderResponse::from(&order)),
    })
}

/// Give an order awaiting its payment a payment method: it had none, or the last one was unusable
/// (`payment.status` is `requires_payment_method`). The order is charged with it (202: the payment
/// is `processing`). While a payment is under way, done or declined, or once the order is not
/// awaiting payment, 409.
#[utoipa::path(
    tag = "orders",
    params(("id" = Uuid, Path, description = "The order's id")),
    request_body = PayOrderRequest,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "The order, its payment `processing`", body = OrderResponse),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order (or not yours)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not awaiting payment, or a payment under way", body = Problem,
            content_type = "application/problem+json"),
        (status = 422, description = "Invalid payment method", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/orders/{id}/payment")]
#[tracing::instrument(skip_all, fields(order.id = %id, user.id = %principal.user_id))]
pub async fn pay_order(
    principal: Principal,
    orders: web::Data<Orders>,
    id: web::Path<Uuid>,
    body: web::Json<PayOrderRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::default();
    if body.payment_method.is_none() {
        errors.check::<()>("paymentMethod", Err("is required".into()));
    }
    let Some(method) = payment_method(body.payment_method.as_deref(), &mut errors) else {
        return Err(errors.into_error());
    };
    let order = orders.pay(id.into_inner().into(), &principal, method).await.map_err(change_error)?;
    Ok(HttpResponse::Accepted().json(OrderResponse::from(&order)))
}

fn change_error(e: ChangeOrderError) -> ApiError {
    match e {
        ChangeOrderError::NotFound(id) => not_found(id),
        ChangeOrderError::WrongState(status) => ApiError::Conflict(format!("the order is {}", status.as_str())),
        ChangeOrderError::PaymentUnderWay(status) => ApiError::Conflict(format!(
            "the order's payment is {}; it takes a new method only when it requires one",
            status.as_str()
        )),
        ChangeOrderError::AddressChangePending => {
            ApiError::Conflict("an address change of the order is waiting for shipping's answer".into())
        }
        ChangeOrderError::Unexpected(e) => e.into(),
    }
}

fn not_found(id: OrderId) -> ApiError {
    ApiError::NotFound(format!("no order with id {id}"))
}

// Sales reports (admin): asked for here, computed by the `sales_report` job, downloaded as CSV.

use crate::domain::{GroupBy, Report, ReportId, ReportRange, ReportStatus};
use kernel::Admin;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SalesReportRequest {
    /// The first instant covered (included): an RFC 3339 instant, or a date, meaning its
    /// midnight UTC.
    #[schema(required = true, example = "2026-11-01", value_type = String)]
    pub from: Option<String>,
    /// The instant the report ends (excluded), after `from` and at most 366 days after it; a date
    /// means its midnight UTC, so `from: 2026-11-01, to: 2026-12-01` is November.
    #[schema(required = true, example = "2026-12-01", value_type = String)]
    pub to: Option<String>,
    /// `day` (a row per UTC day of confirmation and currency) or `product` (a row per product and
    /// currency).
    #[schema(required = true, example = "day", pattern = "^(?:day|product)$", value_type = String)]
    pub group_by: Option<String>,
}

/// An RFC 3339 instant, or a date (`2026-11-01`) as its midnight UTC.
fn instant(raw: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        return Ok(at.with_timezone(&Utc));
    }
    match chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        Ok(day) => Ok(day.and_time(chrono::NaiveTime::MIN).and_utc()),
        Err(_) => Err(format!("'{raw}' is neither an RFC 3339 instant nor a date (YYYY-MM-DD)")),
    }
}

/// The request's range and grouping, or one 422 naming every field in error.
impl TryFrom<&SalesReportRequest> for (ReportRange, GroupBy) {
    type Error = ApiError;

    fn try_from(body: &SalesReportRequest) -> Result<Self, ApiError> {
        let mut errors = FieldErrors::default();
        let mut required = |field: &str, raw: Option<&str>| {
            errors.check(field, raw.ok_or_else(|| "is required".to_owned()).and_then(instant))
        };
        let (from, to) = (required("from", body.from.as_deref()), required("to", body.to.as_deref()));
        let group_by = errors.check(
            "groupBy",
            body.group_by.as_deref().ok_or_else(|| "is required".to_owned()).and_then(GroupBy::parse),
        );
        let range = match (from, to) {
            (Some(from), Some(to)) => {
                ReportRange::new(from, to).map_err(|(field, message)| errors.check::<()>(field, Err(message))).ok()
            }
            _ => None,
        };
        match (range, group_by) {
            (Some(range), Some(group_by)) if !errors.has_errors() => Ok((range, group_by)),
            _ => Err(errors.into_error()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportResponse {
    pub id: Uuid,
    /// `sales`, the only kind so far.
    #[schema(example = "sales")]
    pub kind: &'static str,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// `day` or `product`.
    #[schema(example = "day")]
    pub group_by: &'static str,
    /// `queued`, `running`, `done` or `failed`: its job's, as the job last wrote it. A report whose
    /// run failed for a passing cause is `queued` again, with `error`, until its job's next run.
    pub status: ReportStatus,
    pub requested_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Rows of its CSV, the header not counted, once done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row_count: Option<u32>,
    /// Why its last run failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<&Report> for ReportResponse {
    fn from(r: &Report) -> Self {
        Self {
            id: r.id.as_uuid(),
            kind: "sales",
            from: r.range.from(),
            to: r.range.to(),
            group_by: r.group_by.as_str(),
            status: r.status,
            requested_at: r.requested_at,
            finished_at: r.finished_at,
            row_count: r.row_count,
            error: r.error.clone(),
        }
    }
}

fn report_location(id: ReportId) -> String {
    format!("/admin/reports/{id}")
}

fn no_report(id: ReportId) -> ApiError {
    ApiError::NotFound(format!("no report with id {id}"))
}

/// Ask for a sales report (admin): the sales — orders paid (`confirmed`) and not since rejected
/// or cancelled, i.e. `confirmed`, `cancelling`, `shipped` or `delivered` — whose `confirmedAt`
/// falls in `[from, to)`, added up by UTC day or by product, each currency apart. The report is
/// computed by a background job: follow `Location` until its status is `done`, then download it.
#[utoipa::path(
    tag = "reports",
    request_body = SalesReportRequest,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Queued: `Location` is the report's status", body = ReportResponse,
            headers(("Location" = String, description = "The report: /admin/reports/{id}"))),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid range or grouping", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/admin/reports/sales")]
#[tracing::instrument(skip_all, fields(user.id = %admin.0.user_id))]
pub async fn request_sales_report(
    admin: Admin,
    orders: web::Data<Orders>,
    body: web::Json<SalesReportRequest>,
) -> Result<HttpResponse, ApiError> {
    let (range, group_by) = <(ReportRange, GroupBy)>::try_from(&*body)?;
    let report = orders.request_sales_report(admin.0.user_id, range, group_by).await?;
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, report_location(report.id)))
        .json(ReportResponse::from(&report)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListReportsQuery {
    /// How many, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
}

/// The newest reports (admin), without their CSV.
#[utoipa::path(
    tag = "reports",
    params(ListReportsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Reports, newest first", body = Vec<ReportResponse>),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The limit is out of range", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/admin/reports")]
pub async fn list_reports(
    _admin: Admin,
    orders: web::Data<Orders>,
    query: web::Query<ListReportsQuery>,
) -> Result<web::Json<Vec<ReportResponse>>, ApiError> {
    let limit = page_limit(query.limit)?;
    let reports = orders.reports(limit).await?;
    Ok(web::Json(reports.iter().map(ReportResponse::from).collect()))
}

/// A report's status (admin).
#[utoipa::path(
    tag = "reports",
    params(("id" = Uuid, Path, description = "The report's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The report", body = ReportResponse),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such report", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/admin/reports/{id}")]
pub async fn get_report(
    _admin: Admin,
    orders: web::Data<Orders>,
    id: web::Path<Uuid>,
) -> Result<web::Json<ReportResponse>, ApiError> {
    let id = ReportId::from(id.into_inner());
    let report = orders.report(id).await?.ok_or_else(|| no_report(id))?;
    Ok(web::Json((&report).into()))
}

/// A done report's CSV (admin), as an attachment named `sales-<from>-<to>-<groupBy>.csv`. By
/// day: `day,currency,orders,units,revenue`; by product:
/// `product_id,sku,name,currency,orders,units,revenue`. `revenue` is in minor units of
/// `currency`, as `Money.amount` (`1299` is 12.99 EUR). Before it is done, 409 (with
/// `Retry-After` while it is queued or running).
#[utoipa::path(
    tag = "reports",
    params(("id" = Uuid, Path, description = "The report's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The report", body = String, content_type = "text/csv; charset=utf-8",
            headers(("Content-Disposition" = String, description = "attachment; filename=\"sales-2026-11-01-2026-12-01-day.csv\""))),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such report", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not done: queued or running (`Retry-After`), or failed", body = Problem,
            content_type = "application/problem+json"),
    )
)]
#[get("/admin/reports/{id}/download")]
pub async fn download_report(
    _admin: Admin,
    orders: web::Data<Orders>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = ReportId::from(id.into_inner());
    let (report, csv) = orders.report_csv(id).await?.ok_or_else(|| no_report(id))?;
    match (report.status, csv) {
        (ReportStatus::Done, Some(csv)) => Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{}\"", report.file_name())))
            .body(csv)),
        (ReportStatus::Failed, _) => Err(ApiError::Conflict(format!(
            "the report failed: {}",
            report.error.as_deref().unwrap_or("no cause recorded")
        ))),
        (status, _) => {
            let conflict = ApiError::Conflict(format!("the report is {}; try again shortly", status.as_str()));
            let mut response = actix_web::ResponseError::error_response(&conflict);
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(1u32));
            Ok(response)
        }
    }
}
