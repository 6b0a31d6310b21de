//! The notifications module's HTTP API: what was sent to whom, for admins.

use actix_web::{get, web};
use chrono::{DateTime, Utc};
use kernel::error::Problem;
use kernel::{Admin, ApiError, Page, after_cursor, page_limit};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::domain::{Delivery, MessageId};
use crate::service::{Listed, Notifications};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only the messages to this account.
    user_id: Option<Uuid>,
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u64>,
    /// The `nextCursor` of the previous page.
    #[param(format = Uuid)]
    after: Option<String>,
}

/// A message to a customer and how far it got.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationResponse {
    pub id: Uuid,
    pub user_id: Uuid,
    /// `welcome`, `verify_email`, `password_reset`, `order_confirmed`, `payment_failed`,
    /// `order_cancelled`, `payment_refunded`, `shipment_dispatched`, `shipment_delivered`, or
    /// `webhook_disabled` (to `notifications.admin_email`; its `userId` is the nil UUID).
    pub kind: &'static str,
    pub to: String,
    pub subject: String,
    pub status: Delivery,
    /// Tries so far (one is under way when it is more than a failure count explains).
    pub attempts: u32,
    pub last_error: Option<String>,
    /// The RFC 5322 Message-ID every attempt carried.
    pub message_id: String,
    /// Its sending job: `POST /admin/jobs/notifications/{jobId}/retry` once a failed one's cause is
    /// fixed.
    pub job_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

impl From<Listed> for NotificationResponse {
    fn from(listed: Listed) -> Self {
        let message = listed.message;
        Self {
            id: message.id.as_uuid(),
            user_id: message.user_id,
            kind: message.kind.as_str(),
            to: message.to,
            subject: message.content.subject,
            status: listed.delivery,
            attempts: message.attempts,
            last_error: message.last_error,
            message_id: message.message_id,
            job_id: listed.job_id,
            created_at: message.created_at,
            sent_at: message.sent_at,
        }
    }
}

/// Messages to customers, newest first (admin): one account's with `userId`.
#[utoipa::path(
    tag = "notifications",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of messages", body = Page<NotificationResponse>),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad limit or cursor", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/admin/notifications")]
pub async fn list_notifications(
    _admin: Admin,
    service: web::Data<Notifications>,
    query: web::Query<ListQuery>,
) -> Result<web::Json<Page<NotificationResponse>>, ApiError> {
    let limit = page_limit(query.limit)?;
    let before: Option<MessageId> = after_cursor(query.after.as_deref())?;
    let rows = service.list(query.user_id, before, limit + 1).await?;
    Ok(web::Json(Page::from_rows(rows, limit, |l| l.message.id.to_string(), NotificationResponse::from)))
}
