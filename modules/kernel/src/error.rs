//! Every HTTP error leaves Bazaar as RFC 9457 `application/problem+json`, through [`ApiError`].
//!
//! Modules map their use-case errors to `ApiError` in one place; the composition root routes
//! actix's own errors (bad JSON, bad path or query, unknown route) through [`problem_response`].

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, ResponseError};
use problem_details::ProblemDetails;
use serde::Serialize;
use utoipa::ToSchema;

/// The problem document, as the OpenAPI spec shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(title = "Problem")]
pub struct Problem {
    /// A URI naming the problem type; `about:blank` when absent.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub problem_type: Option<String>,
    pub status: u16,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// One entry per invalid field (422 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// What is wrong with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The field's name as the client sent it (`price.currency`).
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Collects what is wrong with each field of a request, to report them all in one 422.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    /// The value if `result` is `Ok`; otherwise records the message under `field`.
    pub fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| self.0.push(FieldError::new(field, message))).ok()
    }

    pub fn has_errors(&self) -> bool {
        !self.0.is_empty()
    }

    /// A 422 naming every recorded field.
    pub fn into_error(self) -> ApiError {
        ApiError::Validation(self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("authentication required: {0}")]
    Unauthorized(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid request")]
    Validation(Vec<FieldError>),
    #[error("too many requests; retry in {retry_after} s")]
    TooManyRequests { retry_after: u64 },
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A 500 whose cause is logged, never shown; a 503 to retry when the cause is a database that
    /// is unreachable for now ([`crate::db::is_transient`]).
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// What a client is asked to wait, in seconds, when a database is unreachable.
pub const OUTAGE_RETRY_AFTER: u64 = 5;

impl ApiError {
    /// Whether this is an unexpected error whose cause is a passing database failure.
    fn is_outage(&self) -> bool {
        matches!(self, Self::Unexpected(e) if crate::db::is_transient_cause(e.as_ref()))
    }

    /// A 422 for a single field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }
}

#[derive(Debug, Serialize)]
struct Extensions {
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<Vec<FieldError>>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unexpected(_) if self.is_outage() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let (detail, errors) = match self {
            Self::BadRequest(d)
            | Self::Unauthorized(d)
            | Self::Forbidden(d)
            | Self::NotFound(d)
            | Self::Conflict(d)
            | Self::Unavailable(d) => (Some(d.clone()), None),
            Self::TooManyRequests { retry_after } => {
                (Some(format!("too many attempts; retry in {retry_after} s")), None)
            }
            Self::Validation(errors) => {
                let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                (Some(format!("invalid fields: {}", fields.join(", "))), Some(errors.clone()))
            }
            Self::Unexpected(e) if self.is_outage() => {
                tracing::warn!(error = ?e, "request failed: a database is unreachable");
                (Some("a database is unreachable for now; retry later".to_owned()), None)
            }
            Self::Unexpected(e) => {
                tracing::error!(error = ?e, "request failed unexpectedly");
                (None, None)
            }
        };
        let mut response = problem_response(status, detail, errors);
        let retry_after = match self {
            Self::TooManyRequests { retry_after } => Some(*retry_after),
            // A busy pool (password hashing) frees up within a second.
            Self::Unavailable(_) => Some(1),
            _ if self.is_outage() => Some(OUTAGE_RETRY_AFTER),
            _ => None,
        };
        if let Some(retry_after) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(retry_after));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A problem+json response with the status's reason as title.
pub fn problem_response(status: StatusCode, detail: Option<String>, errors: Option<Vec<FieldError>>) -> HttpResponse {
    problem_with(status, detail, Extensions { errors })
}

/// A problem+json response whose `extensions` are flattened into the document.
pub fn problem_with<E: Serialize + std::fmt::Debug>(
    status: StatusCode,
    detail: Option<String>,
    extensions: E,
) -> HttpResponse {
    let code = http::StatusCode::from_u16(status.as_u16()).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut problem = ProblemDetails::from_status_code(code).with_extensions(extensions);
    if let Some(detail) = detail {
        problem = problem.with_detail(detail);
    }
    problem.error_response()
}

/// The JSON body extractor's errors: syntax is 400, a body of the wrong shape is 422.
pub fn json_error(err: actix_web::error::JsonPayloadError, _req: &actix_web::HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    let error = match &err {
        E::Deserialize(e) if e.is_data() => {
            ApiError::Validation(vec![FieldError::new(field_of(&e.to_string()).unwrap_or("body"), e.to_string())])
        }
        E::Deserialize(e) => ApiError::BadRequest(format!("malformed JSON body: {e}")),
        E::ContentType => {
            return ProblemError(StatusCode::UNSUPPORTED_MEDIA_TYPE, "expected Content-Type: application/json".into())
                .into();
        }
        E::Overflow { limit } | E::OverflowKnownLength { limit, .. } => {
            return ProblemError(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {limit} bytes"))
                .into();
        }
        other => ApiError::BadRequest(format!("unreadable JSON body: {other}")),
    };
    error.into()
}

/// The field serde names in "missing field `x`" or "unknown field `x`" (other messages quote a
/// value, not a field).
fn field_of(message: &str) -> Option<&str> {
    if !(message.starts_with("missing field") || message.starts_with("unknown field")) {
        return None;
    }
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

/// Bad path parameters (a malformed id, say) are 400.
pub fn path_error(err: actix_web::error::PathError, _req: &actix_web::HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid path parameter: {err}")).into()
}

/// Bad query parameters are 400.
pub fn query_error(err: actix_web::error::QueryPayloadError, _req: &actix_web::HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid query parameter: {err}")).into()
}

/// A problem with any status, for the few that `ApiError` does not name.
#[derive(Debug, thiserror::Error)]
#[error("{1}")]
pub struct ProblemError(pub StatusCode, pub String);

impl ResponseError for ProblemError {
    fn status_code(&self) -> StatusCode {
        self.0
    }

    fn error_response(&self) -> HttpResponse {
        problem_response(self.0, Some(self.1.clone()), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    fn body(response: HttpResponse) -> serde_json::Value {
        let bytes = response.into_body().try_into_bytes().expect("a full body");
        serde_json::from_slice(&bytes).expect("JSON")
    }

    #[test]
    fn a_validation_error_is_a_422_problem_naming_each_field() {
        let error = ApiError::Validation(vec![
            FieldError::new("sku", "is empty"),
            FieldError::new("price.amount", "is negative"),
        ]);
        let response = error.error_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(response.headers().get(header::CONTENT_TYPE).expect("a content type"), "application/problem+json");
        let json = body(response);
        assert_eq!(json["status"], 422);
        assert_eq!(json["title"], "Unprocessable Entity");
        assert_eq!(json["errors"][1]["field"], "price.amount");
    }

    #[test]
    fn an_unexpected_error_hides_its_cause() {
        let response = ApiError::Unexpected(anyhow::anyhow!("password=hunter2 leaked")).error_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let json = body(response);
        assert!(!json.to_string().contains("hunter2"));
        assert!(json.get("detail").is_none());
    }

    #[test]
    fn an_unreachable_database_is_a_503_to_retry_later_that_hides_its_cause() {
        let refused = sea_orm::DbErr::Conn(sea_orm::RuntimeErr::Internal("password=hunter2 refused".into()));
        let error = ApiError::Unexpected(anyhow::Error::new(refused).context("failed to list products"));
        let response = error.error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(header::RETRY_AFTER).expect("a Retry-After"), "5");
        let json = body(response);
        assert!(!json.to_string().contains("hunter2"), "{json}");
        assert_eq!(json["status"], 503);
    }

    #[test]
    fn unauthorized_asks_for_a_bearer_token() {
        let response = ApiError::Unauthorized("no token".into()).error_response();
        assert_eq!(response.headers().get(header::WWW_AUTHENTICATE).expect("a challenge"), "Bearer");
    }

    #[test]
    fn serde_messages_name_their_field() {
        assert_eq!(field_of("missing field `sku` at line 1 column 2"), Some("sku"));
        assert_eq!(field_of("expected a string"), None);
        assert_eq!(field_of("invalid type: floating point `7.5`, expected i64 at line 1 column 9"), None);
    }
}
