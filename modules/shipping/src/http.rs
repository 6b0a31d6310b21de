//! The shipping module's HTTP API: handlers, their OpenAPI description and the request/response shapes.

use actix_web::{get, post, web};
use chrono::{DateTime, Utc};
use kernel::error::{FieldErrors, Problem};
use kernel::{Admin, ApiError, Page, Principal, after_cursor, page_limit};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::domain::{Address, Carrier, OrderId, Quantity, Shipment, ShipmentId, ShipmentStatus, TrackingNumber};
use crate::service::{ChangeShipmentError, Dispatch, Shipments};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"carrier": "DHL", "trackingNumber": "JD014600006281230578"}))]
pub struct DispatchRequest {
    #[schema(required = true, schema_with = kernel::openapi::text::<100>)]
    pub carrier: Option<String>,
    #[schema(required = true, schema_with = tracking_number)]
    pub tracking_number: Option<String>,
}

fn tracking_number() -> utoipa::openapi::Object {
    kernel::openapi::trimmed("[A-Za-z0-9-]{1,64}", "1 to 64 letters, digits or hyphens (kept upper case)")
}

impl TryFrom<&DispatchRequest> for Dispatch {
    type Error = ApiError;

    fn try_from(body: &DispatchRequest) -> Result<Self, ApiError> {
        let mut errors = FieldErrors::default();
        let carrier =
            errors.check("carrier", body.carrier.as_deref().ok_or("is required".into()).and_then(Carrier::parse));
        let tracking = errors.check(
            "trackingNumber",
            body.tracking_number.as_deref().ok_or("is required".into()).and_then(TrackingNumber::parse),
        );
        match (carrier, tracking) {
            (Some(carrier), Some(tracking_number)) => Ok(Dispatch { carrier, tracking_number }),
            _ => Err(errors.into_error()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentLineResponse {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    #[schema(value_type = u32)]
    pub quantity: Quantity,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentResponse {
    pub id: Uuid,
    pub order_id: Uuid,
    /// The customer whose order it is.
    pub user_id: Uuid,
    /// `pending`, `dispatched`, `delivered` or `cancelled`.
    pub status: &'static str,
    pub lines: Vec<ShipmentLineResponse>,
    /// Absent only on a shipment cancelled before its order's confirmation reached shipping.
    pub shipping_address: Option<Address>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub cancellation_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

impl From<&Shipment> for ShipmentResponse {
    fn from(s: &Shipment) -> Self {
        Self {
            id: s.id.as_uuid(),
            order_id: s.order_id.as_uuid(),
            user_id: s.user_id,
            status: s.status.as_str(),
            lines: s
                .lines
                .iter()
                .map(|l| ShipmentLineResponse {
                    product_id: l.product_id,
                    sku: l.sku.clone(),
                    name: l.name.clone(),
                    quantity: l.quantity,
                })
                .collect(),
            shipping_address: s.address.clone(),
            carrier: s.carrier.as_ref().map(|c| c.as_str().to_owned()),
            tracking_number: s.tracking_number.as_ref().map(|t| t.as_str().to_owned()),
            cancellation_reason: s.cancellation_reason.clone(),
            created_at: s.created_at,
            updated_at: s.updated_at,
            dispatched_at: s.timeline.dispatched_at,
            delivered_at: s.timeline.delivered_at,
            cancelled_at: s.timeline.cancelled_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListShipmentsQuery {
    /// Only the shipment of this order.
    pub order_id: Option<Uuid>,
    /// `pending`, `dispatched`, `delivered` or `cancelled`.
    #[param(pattern = "^(?:pending|dispatched|delivered|cancelled)$")]
    pub status: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    /// The `nextCursor` of the previous page.
    #[param(format = Uuid)]
    pub after: Option<String>,
}

/// Your shipments (all shipments for an admin), oldest first; `orderId` finds an order's shipment.
#[utoipa::path(
    tag = "shipping",
    params(ListShipmentsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of shipments", body = Page<ShipmentResponse>),
        (status = 400, description = "Malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid query", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/shipments")]
#[tracing::instrument(skip_all, fields(user.id = %principal.user_id))]
pub async fn list_shipments(
    principal: Principal,
    shipments: web::Data<Shipments>,
    query: web::Query<ListShipmentsQuery>,
) -> Result<web::Json<Page<ShipmentResponse>>, ApiError> {
    let limit = page_limit(query.limit)?;
    let status =
        query.status.as_deref().map(ShipmentStatus::parse).transpose().map_err(|m| ApiError::invalid("status", m))?;
    let after: Option<ShipmentId> = after_cursor(query.after.as_deref())?;
    let order_id = query.order_id.map(OrderId::from);
    let rows = shipments.list(&principal, order_id, status, after, limit + 1).await?;
    Ok(web::Json(Page::from_rows(rows, limit, |s| s.id.to_string(), |s| ShipmentResponse::from(&s))))
}

/// One shipment: for its order's owner or an admin. Others are told it does not exist.
#[utoipa::path(
    tag = "shipping",
    params(("id" = Uuid, Path, description = "The shipment's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The shipment", body = ShipmentResponse),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such shipment (or not yours)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/shipments/{id}")]
#[tracing::instrument(skip_all, fields(shipment.id = %id, user.id = %principal.user_id))]
pub async fn get_shipment(
    principal: Principal,
    shipments: web::Data<Shipments>,
    id: web::Path<Uuid>,
) -> Result<web::Json<ShipmentResponse>, ApiError> {
    let id = ShipmentId::from(id.into_inner());
    let shipment = shipments.get(id, &principal).await?.ok_or_else(|| not_found(id))?;
    Ok(web::Json((&shipment).into()))
}

/// Dispatch a pending shipment (admin): the order ships and its reserved units leave stock.
#[utoipa::path(
    tag = "shipping",
    params(("id" = Uuid, Path, description = "The shipment's id")),
    request_body = DispatchRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The dispatched shipment", body = ShipmentResponse),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such shipment", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not pending: dispatched, delivered or cancelled already", body = Problem,
            content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/shipments/{id}/dispatch")]
#[tracing::instrument(skip_all, fields(shipment.id = %id, user.id = %admin.0.user_id))]
pub async fn dispatch_shipment(
    admin: Admin,
    shipments: web::Data<Shipments>,
    id: web::Path<Uuid>,
    body: web::Json<DispatchRequest>,
) -> Result<web::Json<ShipmentResponse>, ApiError> {
    let dispatch = Dispatch::try_from(&*body)?;
    let shipment = shipments.dispatch(id.into_inner().into(), dispatch).await.map_err(change_error)?;
    Ok(web::Json((&shipment).into()))
}

/// Record that a dispatched shipment was delivered (admin): the order is delivered.
#[utoipa::path(
    tag = "shipping",
    params(("id" = Uuid, Path, description = "The shipment's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The delivered shipment", body = ShipmentResponse),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such shipment", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not dispatched: pending, delivered or cancelled", body = Problem,
            content_type = "application/problem+json"),
    )
)]
#[post("/shipments/{id}/deliver")]
#[tracing::instrument(skip_all, fields(shipment.id = %id, user.id = %admin.0.user_id))]
pub async fn deliver_shipment(
    admin: Admin,
    shipments: web::Data<Shipments>,
    id: web::Path<Uuid>,
) -> Result<web::Json<ShipmentResponse>, ApiError> {
    let shipment = shipments.deliver(id.into_inner().into()).await.map_err(change_error)?;
    Ok(web::Json((&shipment).into()))
}

fn change_error(e: ChangeShipmentError) -> ApiError {
    match e {
        ChangeShipmentError::NotFound(id) => not_found(id),
        ChangeShipmentError::WrongState(status) => ApiError::Conflict(format!("the shipment is {}", status.as_str())),
        ChangeShipmentError::Unexpected(e) => e.into(),
    }
}

fn not_found(id: ShipmentId) -> ApiError {
    ApiError::NotFound(format!("no shipment with id {id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(body: &str) -> Vec<String> {
        let body: DispatchRequest = serde_json::from_str(body).expect("parses");
        match Dispatch::try_from(&body) {
            Err(ApiError::Validation(errors)) => errors.into_iter().map(|e| e.field).collect(),
            Err(other) => panic!("expected a 422, got {other:?}"),
            Ok(_) => Vec::new(),
        }
    }

    #[test]
    fn a_dispatch_names_every_bad_field() {
        assert_eq!(fields("{}"), ["carrier", "trackingNumber"]);
        assert_eq!(fields(r#"{"carrier": "DHL", "trackingNumber": "no spaces"}"#), ["trackingNumber"]);
        assert!(fields(r#"{"carrier": "DHL", "trackingNumber": "JD-1"}"#).is_empty());
        assert!(serde_json::from_str::<DispatchRequest>(r#"{"carrier": "DHL", "tracking_number": "1"}"#).is_err());
    }
}
