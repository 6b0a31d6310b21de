//! The payments module's HTTP API: handlers, their OpenAPI description and the request/response
//! shapes. Errors map to problem+json here, once.

use actix_web::{HttpResponse, http::header, post, web};
use chrono::{DateTime, Utc};
use kernel::error::Problem;
use kernel::{ApiError, FieldError, Principal};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::Note;
use crate::service::{AddNoteError, Payments};

#[derive(Debug, Deserialize, ToSchema)]
pub struct NoteRequest {
    /// 1 to `payments.max_note_length` characters.
    #[schema(min_length = 1)]
    pub text: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NoteResponse {
    pub id: Uuid,
    pub text: String,
    pub created_at: DateTime<Utc>,
}

impl From<Note> for NoteResponse {
    fn from(note: Note) -> Self {
        Self { id: note.id.as_uuid(), text: note.text.as_str().to_owned(), created_at: note.created_at }
    }
}

/// Add a note (any signed-in user). Publishes `NoteAdded`.
#[utoipa::path(
    tag = "payments",
    request_body = NoteRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Added", body = NoteResponse),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/payments/notes")]
#[tracing::instrument(skip_all, fields(user.id = %principal.user_id))]
pub async fn add_note(
    principal: Principal,
    service: web::Data<Payments>,
    body: web::Json<NoteRequest>,
) -> Result<HttpResponse, ApiError> {
    let note = service.add_note(&body.text).await.map_err(|e| match e {
        AddNoteError::Invalid(message) => ApiError::Validation(vec![FieldError::new("text", message)]),
        AddNoteError::Unexpected(e) => e.into(),
    })?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/payments/notes/{}", note.id)))
        .json(NoteResponse::from(note)))
}
