//! The payments module's HTTP API: the reads, Stripe's webhook and the fake provider's development
//! endpoints. Errors map to problem+json here, once.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use kernel::error::Problem;
use kernel::{ApiError, Page, Principal, after_cursor, page_limit};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::domain::{Money, Payment, PaymentId, PaymentStatus, ProviderAnswer};
use crate::provider::fake::CustomerAction;
use crate::provider::stripe::{self, News};
use crate::service::{ActionError, Payments, ProviderNews};

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentResponse {
    pub id: Uuid,
    pub order_id: Uuid,
    pub user_id: Uuid,
    /// The order's attempt this payment answers (1, then one more per payment method given later).
    pub attempt: u32,
    /// `requires_payment_method`, `creating`, `processing`, `requires_action`, `succeeded`,
    /// `failed`, `canceling`, `canceled`, `refunding` or `refunded`.
    pub status: &'static str,
    /// The amount (in minor units) and its currency.
    #[serde(flatten)]
    pub amount: Money,
    pub payment_method: Option<String>,
    /// `fake` or `stripe`.
    pub provider: String,
    /// The provider's PaymentIntent id.
    pub provider_payment_id: Option<String>,
    /// For the customer's own payment only: completes a `requires_action` payment with the provider.
    pub client_secret: Option<String>,
    /// The provider's code (`card_declined`, `insufficient_funds`, `resource_missing`, …).
    pub failure_code: Option<String>,
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub refunded_at: Option<DateTime<Utc>>,
}

impl PaymentResponse {
    fn of(p: Payment, who: &Principal) -> Self {
        let owner = p.user_id == who.user_id;
        Self {
            id: p.id.as_uuid(),
            order_id: p.order_id,
            user_id: p.user_id,
            attempt: p.attempt,
            status: p.status.as_str(),
            amount: p.amount,
            payment_method: p.payment_method,
            provider: p.provider,
            provider_payment_id: p.provider_payment_id,
            client_secret: p.client_secret.filter(|_| owner),
            failure_code: p.failure_code,
            failure_reason: p.failure_reason,
            created_at: p.created_at,
            updated_at: p.updated_at,
            paid_at: p.paid_at,
            refunded_at: p.refunded_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ListPaymentsQuery {
    /// Only this order's payments.
    pub order_id: Option<Uuid>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    /// The `nextCursor` of the previous page.
    #[param(format = Uuid)]
    pub after: Option<String>,
}

/// Your payments (everyone's for an admin), oldest first; `orderId` keeps one order's attempts.
#[utoipa::path(
    tag = "payments",
    params(ListPaymentsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of payments", body = Page<PaymentResponse>),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid query", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/payments")]
#[tracing::instrument(skip_all, fields(user.id = %principal.user_id))]
pub async fn list_payments(
    principal: Principal,
    payments: web::Data<Payments>,
    query: web::Query<ListPaymentsQuery>,
) -> Result<web::Json<Page<PaymentResponse>>, ApiError> {
    let limit = page_limit(query.limit)?;
    let after: Option<PaymentId> = after_cursor(query.after.as_deref())?;
    let rows = payments.list(&principal, query.order_id, after, limit + 1).await?;
    Ok(web::Json(Page::from_rows(rows, limit, |p| p.id.to_string(), |p| PaymentResponse::of(p, &principal))))
}

/// One payment: its owner's or, for an admin, anyone's. Others are told it does not exist.
#[utoipa::path(
    tag = "payments",
    params(("id" = Uuid, Path, description = "The payment's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The payment", body = PaymentResponse),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such payment (or not yours)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/payments/{id}")]
#[tracing::instrument(skip_all, fields(payment.id = %id, user.id = %principal.user_id))]
pub async fn get_payment(
    principal: Principal,
    payments: web::Data<Payments>,
    id: web::Path<Uuid>,
) -> Result<web::Json<PaymentResponse>, ApiError> {
    let id = PaymentId::from(id.into_inner());
    let payment = payments.get(id, &principal).await?.ok_or_else(|| not_found(id))?;
    Ok(web::Json(PaymentResponse::of(payment, &principal)))
}

/// Development only, with the fake provider: complete the action (3-D Secure) a payment requires,
/// as the customer would with the provider. The payment then succeeds.
#[utoipa::path(
    tag = "payments",
    params(("id" = Uuid, Path, description = "The payment's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The payment, succeeded", body = PaymentResponse),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such payment (or not yours), or not available: another provider or production",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The payment requires no action", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/payments/{id}/confirm")]
#[tracing::instrument(skip_all, fields(payment.id = %id, user.id = %principal.user_id))]
pub async fn confirm_payment(
    principal: Principal,
    payments: web::Data<Payments>,
    id: web::Path<Uuid>,
) -> Result<web::Json<PaymentResponse>, ApiError> {
    complete(principal, payments, id.into_inner(), CustomerAction::Complete).await
}

/// Development only, with the fake provider: fail the action (3-D Secure) a payment requires, as
/// a customer failing it would. The payment then fails (`payment_intent_authentication_failure`).
#[utoipa::path(
    tag = "payments",
    params(("id" = Uuid, Path, description = "The payment's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The payment, failed", body = PaymentResponse),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such payment (or not yours), or not available: another provider or production",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The payment requires no action", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/payments/{id}/fail")]
#[tracing::instrument(skip_all, fields(payment.id = %id, user.id = %principal.user_id))]
pub async fn fail_payment(
    principal: Principal,
    payments: web::Data<Payments>,
    id: web::Path<Uuid>,
) -> Result<web::Json<PaymentResponse>, ApiError> {
    complete(principal, payments, id.into_inner(), CustomerAction::Fail).await
}

async fn complete(
    principal: Principal,
    payments: web::Data<Payments>,
    id: Uuid,
    action: CustomerAction,
) -> Result<web::Json<PaymentResponse>, ApiError> {
    let id = PaymentId::from(id);
    let payment = payments.complete_action(id, &principal, action).await.map_err(|e| match e {
        ActionError::NotFound(id) => not_found(id),
        ActionError::Unavailable => ApiError::NotFound("no such endpoint with this payment provider".into()),
        ActionError::WrongState(status) => requires_no_action(status),
        ActionError::Unexpected(e) => e.into(),
    })?;
    Ok(web::Json(PaymentResponse::of(payment, &principal)))
}

fn requires_no_action(status: PaymentStatus) -> ApiError {
    ApiError::Conflict(format!("the payment is {}, not requires_action", status.as_str()))
}

fn not_found(id: PaymentId) -> ApiError {
    ApiError::NotFound(format!("no payment with id {id}"))
}

/// What the webhook needs: the secret its signatures are made with (set only with Stripe).
pub struct StripeWebhook {
    pub secret: Option<SecretString>,
}

/// Stripe's webhook (no token: the `Stripe-Signature` header is checked before anything else).
/// Handles `payment_intent.succeeded`, `payment_intent.payment_failed` and `charge.refunded`,
/// acknowledges any other event; an event id seen before is acknowledged without a second effect.
#[utoipa::path(
    tag = "payments",
    request_body(content = Object, description = "A Stripe event, signed", content_type = "application/json"),
    params(("Stripe-Signature" = String, Header, description = "`t=<unix time>,v1=<hex HMAC-SHA256 of \"t.body\">`")),
    responses(
        (status = 200, description = "Handled, or acknowledged and ignored"),
        (status = 400, description = "No valid signature (or a body that is no event): nothing happened", body = Problem,
            content_type = "application/problem+json"),
        (status = 404, description = "The provider is not Stripe (a signed request; without the header, 400)", body = Problem,
            content_type = "application/problem+json"),
    )
)]
#[post("/payments/webhooks/stripe")]
#[tracing::instrument(skip_all)]
pub async fn stripe_webhook(
    req: HttpRequest,
    webhook: web::Data<StripeWebhook>,
    payments: web::Data<Payments>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let header = req.headers().get("stripe-signature").and_then(|v| v.to_str().ok());
    // A request without its required header is malformed whatever the provider.
    if header.is_none() {
        return Err(ApiError::BadRequest("the Stripe-Signature header is missing".into()));
    }
    let Some(secret) = &webhook.secret else {
        return Err(ApiError::NotFound("no Stripe webhook with this payment provider".into()));
    };
    let now = Utc::now().timestamp();
    if let Err(e) = stripe::verify_signature(header, &body, secret.expose_secret().as_bytes(), now) {
        tracing::info!(reason = %e, "webhook refused");
        return Err(ApiError::BadRequest(format!("invalid Stripe-Signature: {e}")));
    }
    let event: stripe::Event = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not a Stripe event: {e}")))?;
    let event_id = event.id.clone();
    let (intent_id, answer) = match event.news().map_err(|e| ApiError::BadRequest(format!("unreadable event: {e}")))? {
        News::Intent(intent) => (intent.id.clone(), ProviderAnswer::Intent(intent)),
        News::Refunded { intent_id, refund_id } => (intent_id, ProviderAnswer::Refunded { refund_id }),
        News::Ignored => return Ok(HttpResponse::Ok().finish()),
    };
    payments.apply_news(stripe::NAME, ProviderNews { event_id, intent_id, answer }).await?;
    Ok(HttpResponse::Ok().finish())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use actix_web::{App, test};
    use kernel::Outbox;
    use kernel::testing::{Engine, TestDatabase, published_of};
    use migrations::MigratorTrait;
    use payments_contracts::PaymentSucceeded;

    use super::*;
    use crate::persistence;
    use crate::provider::stripe::StripeProvider;
    use crate::service::{PaymentRequest, Timing};

    const SECRET: &str = "whsec_test";

    /// A payment sent to Stripe as `pi_1`, and the webhook that hears about it.
    async fn stripe_shop() -> (TestDatabase, sea_orm::DatabaseConnection, web::Data<Payments>) {
        let database = TestDatabase::fresh(Engine::Sqlite).await.expect("SQLite is always there");
        let db = database.connect(crate::NAME).await;
        migrations::Migrator::up(&db, None).await.expect("migrated");
        // Never called: the worker does not run here.
        let stripe =
            StripeProvider::new("http://127.0.0.1:9", "sk_test_1".into(), Duration::from_secs(1)).expect("a client");
        let timing = Timing { poll_interval: Duration::from_secs(1), reconcile_after: Duration::from_secs(60) };
        let payments =
            Payments::new(db.clone(), Outbox::new(crate::NAME, db.clone()), Arc::new(stripe), None, false, timing);
        let order_id = Uuid::now_v7();
        let request = PaymentRequest {
            order_id,
            user_id: Uuid::now_v7(),
            amount: Money::new(500, contracts::Currency::parse("EUR").expect("valid")).expect("valid"),
            payment_method: Some("pm_card_visa".into()),
            attempt: 1,
        };
        let txn = kernel::db::begin_write(&db).await.expect("a transaction");
        payments.request_payment(&txn, request).await.expect("requested");
        let mut payment = persistence::of_order(&txn, order_id, false).await.expect("read").remove(0);
        payment.provider_payment_id = Some("pi_1".into());
        payment.status = PaymentStatus::Processing;
        persistence::update(&txn, &payment).await.expect("saved");
        txn.commit().await.expect("committed");
        (database, db, web::Data::new(payments))
    }

    fn succeeded(event_id: &str) -> String {
        format!(
            r#"{{"id":"{event_id}","object":"event","type":"payment_intent.succeeded","data":{{"object":{{"id":"pi_1","object":"payment_intent","status":"succeeded","client_secret":"pi_1_secret_x","amount":500,"currency":"eur","last_payment_error":null}}}}}}"#
        )
    }

    fn signed(body: &str, secret: &str) -> String {
        crate::provider::stripe::tests::sign(body.as_bytes(), secret.as_bytes(), Utc::now().timestamp())
    }

    #[actix_web::test]
    async fn the_webhook_acts_only_on_a_valid_signature_and_once_per_event() {
        let (_database, db, payments) = stripe_shop().await;
        let webhook = web::Data::new(StripeWebhook { secret: Some(SECRET.into()) });
        let app = test::init_service(App::new().app_data(payments).app_data(webhook).service(stripe_webhook)).await;
        let post = |body: String, signature: Option<String>| {
            let mut request = test::TestRequest::post().uri("/payments/webhooks/stripe").set_payload(body);
            if let Some(signature) = signature {
                request = request.insert_header(("Stripe-Signature", signature));
            }
            request.to_request()
        };

        let body = succeeded("evt_1");
        for forged in [None, Some(signed(&body, "whsec_other")), Some(signed(&succeeded("evt_0"), SECRET))] {
            let response = test::call_service(&app, post(body.clone(), forged)).await;
            assert_eq!(response.status(), 400);
            assert_eq!(response.headers().get("content-type").expect("a type"), "application/problem+json");
        }
        assert!(published_of::<PaymentSucceeded>(&db, crate::NAME).await.is_empty(), "no effect");

        for _ in 0..2 {
            let response = test::call_service(&app, post(body.clone(), Some(signed(&body, SECRET)))).await;
            assert_eq!(response.status(), 200);
        }
        assert_eq!(published_of::<PaymentSucceeded>(&db, crate::NAME).await.len(), 1, "one effect");

        let other = r#"{"id":"evt_9","type":"customer.created","data":{"object":{}}}"#.to_owned();
        let response = test::call_service(&app, post(other.clone(), Some(signed(&other, SECRET)))).await;
        assert_eq!(response.status(), 200, "acknowledged, ignored");
    }

    #[actix_web::test]
    async fn the_webhook_is_not_there_without_stripe() {
        let (_database, _db, payments) = stripe_shop().await;
        let webhook = web::Data::new(StripeWebhook { secret: None });
        let app = test::init_service(App::new().app_data(payments).app_data(webhook).service(stripe_webhook)).await;
        let body = succeeded("evt_1");
        let request = test::TestRequest::post()
            .uri("/payments/webhooks/stripe")
            .insert_header(("Stripe-Signature", signed(&body, SECRET)))
            .set_payload(body.clone())
            .to_request();
        assert_eq!(test::call_service(&app, request).await.status(), 404);
        // Without its required header the request is malformed, whatever the provider.
        let unsigned = test::TestRequest::post().uri("/payments/webhooks/stripe").set_payload(body).to_request();
        assert_eq!(test::call_service(&app, unsigned).await.status(), 400);
    }
}
