//! The webhooks module's HTTP API, for admins: endpoints, their secrets and their deliveries.
//! Errors map to problem+json here, once.

use actix_web::{HttpResponse, delete, get, http::header, post, put, web};
use chrono::{DateTime, Utc};
use kernel::error::Problem;
use kernel::{Admin, ApiError, Page, after_cursor, page_limit};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::ArrayBuilder;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::domain::{Delivery, DeliveryId, DeliveryStatus, Endpoint};
use crate::public::EventKind;
use crate::service::{EndpointInput, WebhookError, Webhooks};

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Invalid { field, message } => ApiError::invalid(field, message),
            WebhookError::NotFound => ApiError::NotFound("no such webhook endpoint or delivery".into()),
            WebhookError::Disabled => {
                ApiError::Conflict("the endpoint is disabled: re-enable it with PUT and enabled: true".into())
            }
            WebhookError::StillPending => {
                ApiError::Conflict("the delivery is still being attempted; redeliver it once it ends".into())
            }
            WebhookError::Unexpected(e) => e.into(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointRequest {
    /// Where deliveries are POSTed: `https` (`http` outside production); not a private,
    /// loopback or link-local address unless `webhooks.allow_private_networks`.
    #[schema(example = "https://erp.example.com/bazaar-events", max_length = 2048, pattern = "^https?://")]
    pub url: String,
    /// The public events it receives (see the document's `webhooks`).
    #[schema(schema_with = event_names)]
    pub events: Vec<String>,
    /// Up to 500 characters.
    #[schema(max_length = 500)]
    pub description: Option<String>,
}

/// At least one of the public events' names.
fn event_names() -> utoipa::openapi::schema::Array {
    let names: Vec<&str> = EventKind::SUBSCRIBABLE.iter().map(|kind| kind.as_str()).collect();
    ArrayBuilder::new()
        .items(kernel::openapi::one_of(&names))
        .min_items(Some(1))
        .description(Some("The public events it receives: see the document's `webhooks`."))
        .examples([serde_json::json!(["order.confirmed", "shipment.dispatched"])])
        .build()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointUpdate {
    #[serde(flatten)]
    pub endpoint: EndpointRequest,
    /// `true` re-enables a disabled endpoint (its failure count starts over); `false` disables it.
    pub enabled: Option<bool>,
}

impl From<EndpointRequest> for EndpointInput {
    fn from(r: EndpointRequest) -> Self {
        Self { url: r.url, events: r.events, description: r.description }
    }
}

/// An endpoint, enabled or not.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointResponse {
    pub id: Uuid,
    pub url: String,
    pub description: Option<String>,
    pub events: Vec<&'static str>,
    /// `enabled` or `disabled`.
    pub status: &'static str,
    /// Failed attempts since the last success; at `webhooks.disable_after_failures` the endpoint
    /// is disabled.
    pub consecutive_failures: u32,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Endpoint> for EndpointResponse {
    fn from(e: &Endpoint) -> Self {
        Self {
            id: e.id,
            url: e.url.clone(),
            description: e.description.clone(),
            events: e.events.iter().map(|kind| kind.as_str()).collect(),
            status: if e.enabled { "enabled" } else { "disabled" },
            consecutive_failures: e.consecutive_failures,
            disabled_at: e.disabled_at,
            disabled_reason: e.disabled_reason.clone(),
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// A new endpoint, with its signing secret: shown this once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedEndpoint {
    #[serde(flatten)]
    pub endpoint: EndpointResponse,
    /// `whsec_<base64>`: verify each delivery's `webhook-signature` with it (any Standard Webhooks
    /// library does).
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SecretResponse {
    /// The new `whsec_…`; the old one signs too for 24 h.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    pub items: Vec<EndpointResponse>,
}

/// One event for one endpoint, and how its attempts went.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryResponse {
    /// `msg_…`: the `webhook-id` header of every attempt.
    pub id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// The last attempt's HTTP status; none when no answer came.
    pub response_status: Option<u16>,
    /// The last attempt's time to the answer (or the failure).
    pub latency_ms: Option<u64>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl From<Delivery> for DeliveryResponse {
    fn from(d: Delivery) -> Self {
        Self {
            id: d.id.to_string(),
            event_type: d.event_type,
            status: d.status,
            attempts: d.attempts,
            response_status: d.response_status,
            latency_ms: d.latency_ms,
            last_error: d.last_error,
            created_at: d.created_at,
            last_attempt_at: d.last_attempt_at,
            delivered_at: d.delivered_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PingResponse {
    /// The ping's delivery: `GET /webhooks/{id}/deliveries` shows how it went.
    pub delivery_id: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    status: Option<DeliveryStatus>,
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u64>,
    /// The `nextCursor` of the previous page.
    #[param(format = Uuid)]
    after: Option<String>,
}

/// Register an endpoint (admin): it receives the events it names from now on.
#[utoipa::path(
    tag = "webhooks",
    request_body = EndpointRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Registered; the secret is shown this once", body = CreatedEndpoint),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad URL, a refused destination or an unknown event", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/webhooks")]
pub async fn create_endpoint(
    _admin: Admin,
    service: web::Data<Webhooks>,
    body: web::Json<EndpointRequest>,
) -> Result<HttpResponse, ApiError> {
    let endpoint = service.create(body.into_inner().into()).await?;
    let created = CreatedEndpoint { endpoint: (&endpoint).into(), secret: endpoint.secret.expose().to_owned() };
    Ok(HttpResponse::Created().insert_header((header::LOCATION, format!("/webhooks/{}", endpoint.id))).json(created))
}

/// Every endpoint (admin), oldest first.
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The endpoints", body = EndpointList),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/webhooks")]
pub async fn list_endpoints(_admin: Admin, service: web::Data<Webhooks>) -> Result<web::Json<EndpointList>, ApiError> {
    let endpoints = service.list().await?;
    Ok(web::Json(EndpointList { items: endpoints.iter().map(EndpointResponse::from).collect() }))
}

/// One endpoint (admin), without its secret.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The endpoint", body = EndpointResponse),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/webhooks/{id}")]
pub async fn get_endpoint(
    _admin: Admin,
    service: web::Data<Webhooks>,
    id: web::Path<Uuid>,
) -> Result<web::Json<EndpointResponse>, ApiError> {
    Ok(web::Json((&service.get(*id).await?).into()))
}

/// Change an endpoint (admin): its URL, events and description; `enabled` re-enables or disables it.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint")),
    request_body = EndpointUpdate,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Changed", body = EndpointResponse),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad URL, a refused destination or an unknown event", body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/webhooks/{id}")]
pub async fn update_endpoint(
    _admin: Admin,
    service: web::Data<Webhooks>,
    id: web::Path<Uuid>,
    body: web::Json<EndpointUpdate>,
) -> Result<web::Json<EndpointResponse>, ApiError> {
    let EndpointUpdate { endpoint, enabled } = body.into_inner();
    Ok(web::Json((&service.update(*id, endpoint.into(), enabled).await?).into()))
}

/// Delete an endpoint (admin) and its deliveries; nothing more is sent to it.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/webhooks/{id}")]
pub async fn delete_endpoint(
    _admin: Admin,
    service: web::Data<Webhooks>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    service.delete(*id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A new signing secret (admin); for 24 h deliveries carry the old secret's signature too.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The new secret, shown this once", body = SecretResponse),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/webhooks/{id}/rotate-secret")]
pub async fn rotate_secret(
    _admin: Admin,
    service: web::Data<Webhooks>,
    id: web::Path<Uuid>,
) -> Result<web::Json<SecretResponse>, ApiError> {
    let secret = service.rotate_secret(*id).await?;
    Ok(web::Json(SecretResponse { secret: secret.expose().to_owned() }))
}

/// An endpoint's deliveries (admin), newest first.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint"), DeliveriesQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of deliveries", body = Page<DeliveryResponse>),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad limit or cursor", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/webhooks/{id}/deliveries")]
pub async fn list_deliveries(
    _admin: Admin,
    service: web::Data<Webhooks>,
    id: web::Path<Uuid>,
    query: web::Query<DeliveriesQuery>,
) -> Result<web::Json<Page<DeliveryResponse>>, ApiError> {
    let limit = page_limit(query.limit)?;
    let before: Option<DeliveryId> = after_cursor(query.after.as_deref())?;
    let rows = service.deliveries(*id, query.status, before, limit + 1).await?;
    Ok(web::Json(Page::from_rows(rows, limit, |d| d.id.as_uuid().to_string(), DeliveryResponse::from)))
}

/// Send a delivery again (admin), with the same `webhook-id`: one that was delivered or given up.
#[utoipa::path(
    tag = "webhooks",
    params(
        ("id" = Uuid, Path, description = "The endpoint"),
        ("delivery_id" = String, Path, description = "The delivery, `msg_…`"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Queued"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint or delivery", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The endpoint is disabled, or the delivery still pending", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/webhooks/{id}/deliveries/{delivery_id}/redeliver")]
pub async fn redeliver(
    _admin: Admin,
    service: web::Data<Webhooks>,
    path: web::Path<(Uuid, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, delivery) = path.into_inner();
    let delivery = DeliveryId::parse(&delivery).ok_or(WebhookError::NotFound)?;
    service.redeliver(id, delivery).await?;
    Ok(HttpResponse::Accepted().finish())
}

/// Send a `webhook.ping` to the endpoint (admin), whatever it subscribes to.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "The endpoint")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Queued", body = PingResponse),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The endpoint is disabled", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/webhooks/{id}/test")]
pub async fn ping(_admin: Admin, service: web::Data<Webhooks>, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let delivery = service.ping(*id).await?;
    Ok(HttpResponse::Accepted().json(PingResponse { delivery_id: delivery.to_string() }))
}
