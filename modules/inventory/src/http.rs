//! The inventory's HTTP API: handlers, their OpenAPI description and the request/response shapes.

use actix_web::{get, put, web};
use kernel::error::Problem;
use kernel::{Admin, ApiError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{OnHand, ProductId, StockLevel};
use crate::service::{Inventory, SetOnHandError};

/// The units of a product in the warehouse.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetStockRequest {
    /// Zero or more; not below what orders hold.
    #[schema(example = 25, required = true, value_type = i64, minimum = 0)]
    #[serde(default, deserialize_with = "kernel::openapi::whole_number")]
    pub on_hand: Option<i64>,
}

impl TryFrom<&SetStockRequest> for OnHand {
    type Error = ApiError;

    fn try_from(body: &SetStockRequest) -> Result<Self, ApiError> {
        let units = body.on_hand.ok_or_else(|| ApiError::invalid("onHand", "is required"))?;
        OnHand::try_from(units).map_err(|message| ApiError::invalid("onHand", message))
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockResponse {
    pub product_id: Uuid,
    /// Units in the warehouse.
    #[schema(example = 25)]
    pub on_hand: i64,
    /// Units held for orders that have not shipped.
    #[schema(example = 3)]
    pub reserved: i64,
    /// What new orders may still reserve: `onHand - reserved`.
    #[schema(example = 22)]
    pub available: i64,
}

impl From<StockLevel> for StockResponse {
    fn from(s: StockLevel) -> Self {
        Self { product_id: s.product_id.as_uuid(), on_hand: s.on_hand, reserved: s.reserved, available: s.available() }
    }
}

/// Get a product's stock.
#[utoipa::path(
    tag = "inventory",
    params(("productId" = Uuid, Path, description = "The product's id")),
    responses(
        (status = 200, description = "The product's stock", body = StockResponse),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/inventory/{productId}")]
#[tracing::instrument(skip_all, fields(product.id = %product_id))]
pub async fn get_stock(
    inventory: web::Data<Inventory>,
    product_id: web::Path<Uuid>,
) -> Result<web::Json<StockResponse>, ApiError> {
    let product = ProductId::from(product_id.into_inner());
    let stock = inventory.get(product).await?.ok_or_else(|| not_found(product))?;
    Ok(web::Json(stock.into()))
}

/// Set the units of a product in the warehouse (admin).
#[utoipa::path(
    tag = "inventory",
    params(("productId" = Uuid, Path, description = "The product's id")),
    request_body = SetStockRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The product's stock", body = StockResponse),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Fewer than the units reserved", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/inventory/{productId}")]
#[tracing::instrument(skip_all, fields(product.id = %product_id, user.id = %admin.0.user_id))]
pub async fn set_stock(
    admin: Admin,
    inventory: web::Data<Inventory>,
    product_id: web::Path<Uuid>,
    body: web::Json<SetStockRequest>,
) -> Result<web::Json<StockResponse>, ApiError> {
    let product = ProductId::from(product_id.into_inner());
    let on_hand = OnHand::try_from(&*body)?;
    let stock = inventory.set_on_hand(product, on_hand).await.map_err(|e| match e {
        SetOnHandError::NotFound(id) => not_found(id),
        SetOnHandError::BelowReserved { reserved } => {
            ApiError::Conflict(format!("onHand cannot be {} while {reserved} units are reserved", on_hand.value()))
        }
        SetOnHandError::Unexpected(e) => e.into(),
    })?;
    Ok(web::Json(stock.into()))
}

fn not_found(id: ProductId) -> ApiError {
    ApiError::NotFound(format!("no stock for product {id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(error: ApiError) -> String {
        match error {
            ApiError::Validation(errors) => errors[0].field.clone(),
            other => panic!("expected a 422, got {other:?}"),
        }
    }

    #[test]
    fn a_negative_or_missing_on_hand_is_invalid_and_named() {
        let negative = OnHand::try_from(&SetStockRequest { on_hand: Some(-1) }).expect_err("invalid");
        assert_eq!(field_of(negative), "onHand");
        let missing = OnHand::try_from(&SetStockRequest { on_hand: None }).expect_err("invalid");
        assert_eq!(field_of(missing), "onHand");
        assert_eq!(OnHand::try_from(&SetStockRequest { on_hand: Some(0) }).map(|o| o.value()).ok(), Some(0));
    }

    #[test]
    fn the_body_is_camel_case_and_strict() {
        let body: SetStockRequest = serde_json::from_str(r#"{"onHand": 7}"#).expect("parses");
        assert_eq!(body.on_hand, Some(7));
        assert!(serde_json::from_str::<SetStockRequest>(r#"{"on_hand": 7}"#).is_err());
    }
}
