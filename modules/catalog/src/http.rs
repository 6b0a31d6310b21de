//! The catalog's HTTP API: handlers, their OpenAPI description and the request/response shapes.

use actix_web::{HttpRequest, HttpResponse, delete, get, http::header, post, put, web};
use chrono::{DateTime, Utc};
use kernel::caching;
use kernel::error::Problem;
use kernel::{Admin, ApiError, FieldError, Page, after_cursor, page_limit};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::domain::{Invalid, Money, Product, ProductDetails, ProductId, ProductStatus, RawProductDetails};
use crate::persistence::ProductFilter;
use crate::service::{Catalog, CreateProductError, DiscontinueProductError, UpdateProductError};

/// A price as a request carries it, unchecked, so that each of its fields is reported
/// (`price.amount`, `price.currency`); its schema is [`Money`]'s.
#[derive(Debug, Deserialize)]
pub struct PriceBody {
    #[serde(default, deserialize_with = "kernel::openapi::whole_number")]
    pub amount: Option<i64>,
    pub currency: Option<String>,
}

/// The fields an admin sets on a product.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"sku": "MUG-001", "name": "Enamel mug", "description": "350 ml, dishwasher safe",
    "price": {"amount": 1299, "currency": "EUR"}}))]
pub struct ProductRequest {
    #[schema(required = true, schema_with = sku)]
    pub sku: Option<String>,
    #[schema(required = true, schema_with = kernel::openapi::text::<200>)]
    pub name: Option<String>,
    /// At most 5000 characters; may be empty.
    #[schema(example = "350 ml, dishwasher safe", max_length = 5000)]
    pub description: Option<String>,
    #[schema(required = true, value_type = Money)]
    pub price: Option<PriceBody>,
}

/// What `Sku::parse` takes.
fn sku() -> utoipa::openapi::Object {
    kernel::openapi::trimmed("[A-Za-z0-9._-]{1,64}", "1 to 64 letters, digits, '-', '_' or '.'")
}

impl TryFrom<&ProductRequest> for ProductDetails {
    type Error = ApiError;

    fn try_from(body: &ProductRequest) -> Result<Self, ApiError> {
        ProductDetails::parse(RawProductDetails {
            sku: body.sku.as_deref(),
            name: body.name.as_deref(),
            description: body.description.as_deref(),
            price_amount: body.price.as_ref().and_then(|p| p.amount),
            price_currency: body.price.as_ref().and_then(|p| p.currency.as_deref()),
        })
        .map_err(invalid)
    }
}

fn invalid(errors: Vec<Invalid>) -> ApiError {
    ApiError::Validation(errors.into_iter().map(|e| FieldError::new(e.field, e.message)).collect())
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductResponse {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price: Money,
    /// `active` or `discontinued`.
    #[schema(example = "active", value_type = String)]
    pub status: ProductStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Product> for ProductResponse {
    fn from(p: Product) -> Self {
        Self {
            id: p.id.as_uuid(),
            sku: p.details.sku.as_str().to_owned(),
            name: p.details.name.as_str().to_owned(),
            description: p.details.description.as_str().to_owned(),
            price: p.details.price,
            status: p.status,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListProductsQuery {
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    /// The `nextCursor` of the previous page.
    #[param(format = Uuid)]
    pub after: Option<String>,
    /// Case-insensitive search in name and sku, at most 100 characters once trimmed.
    #[param(schema_with = kernel::openapi::search::<100>)]
    pub q: Option<String>,
    /// `active` or `discontinued`.
    #[param(pattern = "^(?:active|discontinued)$")]
    pub status: Option<String>,
}

impl ListProductsQuery {
    fn filter(&self) -> Result<ProductFilter, ApiError> {
        let after: Option<ProductId> = after_cursor(self.after.as_deref())?;
        let status =
            self.status.as_deref().map(ProductStatus::parse).transpose().map_err(|m| ApiError::invalid("status", m))?;
        let search = self.q.as_deref().map(str::trim).filter(|q| !q.is_empty()).map(str::to_owned);
        if search.as_ref().is_some_and(|q| q.chars().count() > 100) {
            return Err(ApiError::invalid("q", "must be at most 100 characters"));
        }
        Ok(ProductFilter { after, search, status })
    }
}

/// How long public reads may be kept without asking again (`catalog.http_max_age_secs`): the
/// catalog's own type in the app's data, so no other module's can stand in for it.
pub struct HttpCaching(pub caching::Freshness);

/// List products, in creation order.
///
/// With the page's weak `ETag` in `If-None-Match`, a 304 while the page has not changed.
#[utoipa::path(
    tag = "catalog",
    params(ListProductsQuery, ("If-None-Match" = Option<String>, Header, nullable = false, description = "An ETag this API gave for this URL (several comma-separated, or `*`): 304 while it is current")),
    responses(
        (status = 200, description = "A page of products", body = Page<ProductResponse>,
            headers(("ETag" = String, description = "The page's weak ETag"), ("Cache-Control" = String))),
        (status = 304, description = "The page is as the `If-None-Match` ETag says",
            headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 400, description = "Unreadable query", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid query", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/products")]
pub async fn list_products(
    req: HttpRequest,
    catalog: web::Data<Catalog>,
    caching: web::Data<HttpCaching>,
    query: web::Query<ListProductsQuery>, // qualified: utoipa reads it
) -> Result<HttpResponse, ApiError> {
    let limit = page_limit(query.limit)?;
    let filter = query.filter()?;
    let rows = catalog.list(&filter, limit + 1).await?;
    let page = Page::from_rows(rows, limit, |p| p.id.to_string(), ProductResponse::from);
    Ok(caching::json(&req, caching::body_tag(&page), caching.0, &page))
}

/// Get one product.
///
/// Its `ETag` is its version in quotes; with it in `If-None-Match`, a 304 while the product has
/// not changed.
#[utoipa::path(
    tag = "catalog",
    params(("id" = Uuid, Path, description = "The product's id"), ("If-None-Match" = Option<String>, Header, nullable = false, description = "An ETag this API gave for this URL (several comma-separated, or `*`): 304 while it is current")),
    responses(
        (status = 200, description = "The product", body = ProductResponse,
            headers(("ETag" = String, description = "The product's version, in quotes"), ("Cache-Control" = String))),
        (status = 304, description = "The product is at the `If-None-Match` version",
            headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/products/{id}")]
pub async fn get_product(
    req: HttpRequest,
    catalog: web::Data<Catalog>,
    caching: web::Data<HttpCaching>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = ProductId::from(id.into_inner());
    let product = catalog.get(id).await?.ok_or_else(|| not_found(id))?;
    let tag = caching::version_tag(product.version.get());
    Ok(caching::json(&req, tag, caching.0, &ProductResponse::from(product)))
}

/// Create a product (admin). Publishes `ProductCreated`.
#[utoipa::path(
    tag = "catalog",
    request_body = ProductRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = ProductResponse,
            headers(("Location" = String, description = "The new product's URL"))),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The sku exists already", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/products")]
#[tracing::instrument(skip_all, fields(user.id = %admin.0.user_id))]
pub async fn create_product(
    admin: Admin,
    catalog: web::Data<Catalog>,
    body: web::Json<ProductRequest>,
) -> Result<HttpResponse, ApiError> {
    let details = ProductDetails::try_from(&*body)?;
    let product = catalog.create(details).await.map_err(|e| match e {
        CreateProductError::DuplicateSku(sku) => duplicate_sku(&sku),
        CreateProductError::Unexpected(e) => e.into(),
    })?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/products/{}", product.id)))
        .json(ProductResponse::from(product)))
}

/// Replace a product's sku, name, description and price (admin). Publishes `ProductUpdated`.
#[utoipa::path(
    tag = "catalog",
    params(("id" = Uuid, Path, description = "The product's id")),
    request_body = ProductRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated", body = ProductResponse),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another product has this sku", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/products/{id}")]
#[tracing::instrument(skip_all, fields(product.id = %id, user.id = %admin.0.user_id))]
pub async fn update_product(
    admin: Admin,
    catalog: web::Data<Catalog>,
    id: web::Path<Uuid>,
    body: web::Json<ProductRequest>,
) -> Result<web::Json<ProductResponse>, ApiError> {
    let id = ProductId::from(id.into_inner());
    let details = ProductDetails::try_from(&*body)?;
    let product = catalog.update(id, details).await.map_err(|e| match e {
        UpdateProductError::NotFound(id) => not_found(id),
        UpdateProductError::DuplicateSku(sku) => duplicate_sku(&sku),
        UpdateProductError::Unexpected(e) => e.into(),
    })?;
    Ok(web::Json(product.into()))
}

/// Discontinue a product (admin): it stays readable with status `discontinued`.
/// Publishes `ProductDiscontinued` the first time.
#[utoipa::path(
    tag = "catalog",
    params(("id" = Uuid, Path, description = "The product's id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Discontinued"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/products/{id}")]
#[tracing::instrument(skip_all, fields(product.id = %id, user.id = %admin.0.user_id))]
pub async fn discontinue_product(
    admin: Admin,
    catalog: web::Data<Catalog>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = ProductId::from(id.into_inner());
    catalog.discontinue(id).await.map_err(|e| match e {
        DiscontinueProductError::NotFound(id) => not_found(id),
        DiscontinueProductError::Unexpected(e) => ApiError::from(e),
    })?;
    Ok(HttpResponse::NoContent().finish())
}

fn not_found(id: ProductId) -> ApiError {
    ApiError::NotFound(format!("no product with id {id}"))
}

fn duplicate_sku(sku: &str) -> ApiError {
    ApiError::Conflict(format!("a product with sku {sku} exists already"))
}
