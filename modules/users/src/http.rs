//! The users module's HTTP API.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, get, post, put, web};
use chrono::{DateTime, Utc};
use kernel::error::{FieldErrors, Problem, problem_with};
use kernel::{Admin, ApiError, ClientAddr, Page, Principal, after_cursor, page_limit};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::domain::{COMMON_PASSWORDS, Email, Password, Role, User, UserId, UserName};
use crate::service::{
    LoginError, RefreshError, RegisterError, RequestVerificationError, ResetPasswordError, SetRoleError, TokenPair,
    Users, VerifyEmailError,
};
use crate::throttle::{self, Throttles};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(required = true, schema_with = email)]
    pub email: Option<String>,
    #[schema(required = true, schema_with = password)]
    pub password: Option<String>,
    #[schema(required = true, schema_with = kernel::openapi::text::<100>)]
    pub name: Option<String>,
}

/// What `Password::parse` takes, but for the e-mail: 12 to 128 characters, none of the common ones.
fn password() -> utoipa::openapi::Object {
    let common: Vec<&str> = COMMON_PASSWORDS.lines().map(str::trim).filter(|p| p.chars().count() >= 12).collect();
    let mut schema = utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .min_length(Some(Password::MIN_CHARS))
        .max_length(Some(Password::MAX_CHARS))
        .description(Some("12 to 128 characters; not the e-mail, not a common password (in any case)"))
        .examples(["correct horse battery staple"])
        .build();
    // utoipa has no `not`; the extensions are written into the schema object as they are.
    let not = serde_json::json!({"enum": common});
    schema.extensions = Some([("not", not)].into_iter().collect());
    schema
}

/// What `Email::parse` takes, in ASCII: a local part of 1 to 64 characters, `@`, a domain with a
/// dot inside.
fn email() -> utoipa::openapi::Object {
    let mut schema = kernel::openapi::trimmed(
        r"[!-?A-~]{1,64}@[!--/-?A-~][!-?A-~]*\.[!-?A-~]*[!--/-?A-~]",
        "An e-mail address (at most 254 characters), like ada@example.com",
    );
    schema.max_length = Some(254);
    schema
}

impl std::fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterRequest").field("email", &self.email).field("name", &self.name).finish_non_exhaustive()
    }
}

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

/// A log-in as OAuth2 clients (Swagger UI's "Authorize") send it: RFC 6749 §4.3, form-encoded.
#[derive(Deserialize, ToSchema)]
pub struct PasswordGrantRequest {
    #[schema(schema_with = password_grant)]
    pub grant_type: String,
    /// The e-mail address.
    pub username: String,
    pub password: String,
}

fn password_grant() -> utoipa::openapi::Object {
    kernel::openapi::one_of(&["password"])
}

/// The tokens of a form-encoded log-in, spelled as RFC 6749 §5.1 has them.
#[derive(Serialize, ToSchema)]
pub struct OAuth2TokenResponse {
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    pub expires_in: i64,
    pub refresh_token: String,
}

/// A log-in's tokens: [`TokenResponse`] for JSON, [`OAuth2TokenResponse`] for a form.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum LoginResponse {
    Json(TokenResponse),
    Form(OAuth2TokenResponse),
}

/// The RFC 6749 §5.2 error code, as a member of the problem document.
#[derive(Debug, Serialize)]
struct OAuth2Error {
    error: &'static str,
}

impl LoginResponse {
    fn json(pair: TokenPair) -> Self {
        let TokenPair { access_token, expires_in, refresh_token, .. } = pair;
        Self::Json(TokenResponse { access_token, token_type: "Bearer", expires_in, refresh_token })
    }

    fn form(pair: TokenPair) -> Self {
        let TokenPair { access_token, expires_in, refresh_token, .. } = pair;
        Self::Form(OAuth2TokenResponse { access_token, token_type: "Bearer", expires_in, refresh_token })
    }
}

/// A log-in request in either of the media types `POST /auth/token` reads.
pub enum Login {
    Json(LoginRequest),
    Form(PasswordGrantRequest),
}

impl FromRequest for Login {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if req.content_type() == "application/x-www-form-urlencoded" {
            let form = web::Form::<PasswordGrantRequest>::from_request(req, payload);
            Box::pin(async move { Ok(Self::Form(form.await?.into_inner())) })
        } else {
            let json = web::Json::<LoginRequest>::from_request(req, payload);
            Box::pin(async move { Ok(Self::Json(json.await?.into_inner())) })
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    /// An EdDSA-signed JWT; send it as `Authorization: Bearer <token>`.
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Single use: `POST /auth/refresh` returns a new one with a new access token.
    pub refresh_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserResponse {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    /// Whether the account proved it receives mail at `email` (`POST /users/verify`).
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<User> for UserResponse {
    fn from(u: User) -> Self {
        Self {
            id: u.id.as_uuid(),
            email_verified: u.email_verified(),
            email: u.email.as_str().to_owned(),
            name: u.name.as_str().to_owned(),
            role: u.role,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetRequest {
    #[schema(required = true, schema_with = email)]
    pub email: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetConfirmRequest {
    /// The token of the mail (`PasswordResetRequested.token`).
    #[schema(required = true, value_type = String)]
    pub token: Option<String>,
    #[schema(required = true, schema_with = password)]
    pub password: Option<String>,
}

impl std::fmt::Debug for PasswordResetConfirmRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordResetConfirmRequest").finish_non_exhaustive()
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyEmailRequest {
    /// The token of the mail (`EmailVerificationRequested.token`).
    #[schema(required = true, value_type = String)]
    pub token: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RoleRequest {
    pub role: Role,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListUsersQuery {
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    /// The `nextCursor` of the previous page.
    #[param(format = Uuid)]
    pub after: Option<String>,
}

fn tokens(pair: TokenPair) -> HttpResponse {
    // RFC 6749 §5.1: token responses are never cached.
    HttpResponse::Ok().insert_header(CacheControl(vec![CacheDirective::NoStore])).json(LoginResponse::json(pair))
}

/// Register a customer account. Publishes `UserRegistered`. Registrations are limited per client
/// address.
#[utoipa::path(
    tag = "users",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered", body = UserResponse),
        (status = 409, description = "The e-mail is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many registrations from this address; see Retry-After", body = Problem,
            content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Too many password checks at once; see Retry-After", body = Problem,
            content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
#[post("/users")]
#[tracing::instrument(skip_all)]
pub async fn register(
    client: ClientAddr,
    users: web::Data<Users>,
    throttle: web::Data<Throttles>,
    body: web::Json<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::default();
    let email = errors.check("email", required(&body.email).and_then(|e| Email::parse(&e)));
    let name = errors.check("name", required(&body.name).and_then(|n| UserName::parse(&n)));
    let password = errors.check("password", required(&body.password).and_then(|p| Password::parse(&p, email.as_ref())));
    let (Some(email), Some(name), Some(password)) = (email, name, password) else {
        return Err(errors.into_error());
    };
    let attempt = throttle::attempt([(&throttle.registrations_per_address, client.to_string())])
        .map_err(|wait| ApiError::TooManyRequests { retry_after: wait.as_secs() })?;
    let user = users.register(email, password, name, Role::Customer).await.map_err(|e| match e {
        RegisterError::EmailTaken => ApiError::Conflict("an account with this e-mail exists already".into()),
        // Nothing was registered: the attempt does not count.
        RegisterError::Busy => {
            attempt.give_back();
            busy()
        }
        RegisterError::Unexpected(e) => {
            attempt.give_back();
            e.into()
        }
    })?;
    Ok(HttpResponse::Created().insert_header((header::LOCATION, "/users/me")).json(UserResponse::from(user)))
}

/// Log in: trade an e-mail and password for an access token and a refresh token.
/// Attempts are limited per account and client address, per client address, and per account.
///
/// OAuth2 clients (Swagger UI's "Authorize") send a form instead (RFC 6749 §4.3, `grant_type=password`,
/// the e-mail as `username`) and get the tokens as RFC 6749 §5.1 spells them. Errors are problem+json
/// either way; for a form, its `error` member carries the RFC 6749 §5.2 code where one applies.
#[utoipa::path(
    tag = "users",
    request_body(content(
        (LoginRequest = "application/json"),
        (PasswordGrantRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Tokens, camelCase for JSON, snake_case for a form", body = LoginResponse),
        (status = 401, description = "Wrong e-mail or password", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed attempts; see Retry-After", body = Problem,
            content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Too many password checks at once; see Retry-After", body = Problem,
            content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
#[post("/auth/token")]
#[tracing::instrument(skip_all)]
pub async fn token(
    client: ClientAddr,
    users: web::Data<Users>,
    throttle: web::Data<Throttles>,
    body: Login,
) -> Result<HttpResponse, ApiError> {
    let (body, spelled): (LoginRequest, fn(TokenPair) -> LoginResponse) = match body {
        Login::Json(body) => (body, LoginResponse::json),
        Login::Form(form) if form.grant_type == "password" => {
            (LoginRequest { email: form.username, password: form.password }, LoginResponse::form)
        }
        Login::Form(form) => {
            let detail = format!("grant_type {:?} is not supported: only password", form.grant_type);
            let error = OAuth2Error { error: "unsupported_grant_type" };
            return Ok(problem_with(StatusCode::BAD_REQUEST, Some(detail), error));
        }
    };
    let account =
        Email::parse(&body.email).map_or_else(|_| body.email.trim().to_lowercase(), |e| e.as_str().to_owned());
    // Counted before the password is checked: concurrent guesses cannot outrun the limit.
    let pair_key = format!("{account} {client}");
    let attempt = throttle::attempt([
        (&throttle.login_per_account_and_address, pair_key.clone()),
        (&throttle.login_per_address, client.to_string()),
        (&throttle.login_per_account, account),
    ])
    .map_err(|wait| ApiError::TooManyRequests { retry_after: wait.as_secs() })?;
    match users.login(&body.email, body.password).await {
        Ok((_, pair)) => {
            attempt.give_back();
            // The owner is at this address: the earlier failures from here were theirs.
            throttle.login_per_account_and_address.reset(&pair_key);
            Ok(HttpResponse::Ok().insert_header(CacheControl(vec![CacheDirective::NoStore])).json(spelled(pair)))
        }
        Err(LoginError::InvalidCredentials) => Err(ApiError::Unauthorized("wrong e-mail or password".into())),
        // The client learns nothing of the password either way: the attempt does not count.
        Err(LoginError::Busy) => {
            attempt.give_back();
            Err(busy())
        }
        Err(LoginError::Unexpected(e)) => {
            attempt.give_back();
            Err(e.into())
        }
    }
}

/// Every password-hashing slot is taken: a second is about what a queue of them takes to clear.
fn busy() -> ApiError {
    ApiError::Unavailable("too many password checks at once; retry shortly".into())
}

/// Rotate a refresh token: the old one stops working. Presenting a rotated one again revokes
/// every token of its family.
#[utoipa::path(
    tag = "users",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = TokenResponse),
        (status = 401, description = "Invalid, expired, rotated or revoked", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/auth/refresh")]
#[tracing::instrument(skip_all)]
pub async fn refresh(users: web::Data<Users>, body: web::Json<RefreshRequest>) -> Result<HttpResponse, ApiError> {
    match users.refresh(&body.refresh_token).await {
        Ok(pair) => Ok(tokens(pair)),
        Err(RefreshError::Invalid) => {
            Err(ApiError::Unauthorized("the refresh token is invalid, expired or revoked".into()))
        }
        Err(RefreshError::Unexpected(e)) => Err(e.into()),
    }
}

/// Log out: revoke the refresh token's whole family.
#[utoipa::path(tag = "users", request_body = RefreshRequest, responses((status = 204, description = "Logged out")))]
#[post("/auth/logout")]
#[tracing::instrument(skip_all)]
pub async fn logout(users: web::Data<Users>, body: web::Json<RefreshRequest>) -> Result<HttpResponse, ApiError> {
    users.logout(&body.refresh_token).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `field` of a request, or what the 422 says of it.
fn required(field: &Option<String>) -> Result<String, String> {
    field.clone().ok_or_else(|| "is required".to_owned())
}

/// Ask for a password reset: if an account has this e-mail, a single-use token is mailed to it
/// (`PasswordResetRequested`; valid `users.password_reset_ttl_mins`, 30 by default; a newer
/// request replaces it). The answer is 202 whether or not there is an account, in about the same
/// time. Limited per e-mail address and per client address like log-ins: past the limit, 429
/// with `Retry-After`, whether or not there is an account.
#[utoipa::path(
    tag = "users",
    request_body = PasswordResetRequest,
    responses(
        (status = 202, description = "Accepted: mailed if an account has this e-mail"),
        (status = 422, description = "No e-mail address, or not one", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests for this e-mail or from this address; see Retry-After", body = Problem,
            content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
#[post("/auth/password-reset")]
#[tracing::instrument(skip_all)]
pub async fn request_password_reset(
    client: ClientAddr,
    users: web::Data<Users>,
    throttle: web::Data<Throttles>,
    body: web::Json<PasswordResetRequest>,
) -> Result<HttpResponse, ApiError> {
    let email = required(&body.email).and_then(|e| Email::parse(&e)).map_err(|m| ApiError::invalid("email", m))?;
    let attempt = throttle::attempt([
        (&throttle.password_resets_per_email, email.as_str().to_owned()),
        (&throttle.password_resets_per_address, client.to_string()),
    ])
    .map_err(|wait| ApiError::TooManyRequests { retry_after: wait.as_secs() })?;
    if let Err(e) = users.request_password_reset(&email).await {
        // Nothing was mailed: the request does not count.
        attempt.give_back();
        return Err(e.into());
    }
    Ok(HttpResponse::Accepted().finish())
}

/// Set a new password with the mailed token. The password follows registration's rules. The
/// token is used up, and every session of the account ends: its refresh tokens are revoked and
/// its access tokens refused (`UserSessionsRevoked`, reason `password-reset`).
#[utoipa::path(
    tag = "users",
    request_body = PasswordResetConfirmRequest,
    responses(
        (status = 204, description = "The password is changed; log in with it"),
        (status = 400, description = "The token is unknown, expired or used", body = Problem,
            content_type = "application/problem+json"),
        (status = 422, description = "Missing fields, or a password registration would refuse", body = Problem,
            content_type = "application/problem+json"),
        (status = 503, description = "Too many password checks at once; see Retry-After", body = Problem,
            content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
#[post("/auth/password-reset/confirm")]
#[tracing::instrument(skip_all)]
pub async fn reset_password(
    users: web::Data<Users>,
    body: web::Json<PasswordResetConfirmRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::default();
    // Not `token`: that name is the log-in handler's.
    let secret = errors.check("token", required(&body.token));
    let password = errors.check("password", required(&body.password));
    let (Some(secret), Some(password)) = (secret, password) else {
        return Err(errors.into_error());
    };
    match users.reset_password(&secret, &password).await {
        Ok(()) => Ok(HttpResponse::NoContent().finish()),
        Err(ResetPasswordError::InvalidToken) => Err(ApiError::BadRequest(
            "the password reset token is unknown, expired or used: ask for a new one (POST /auth/password-reset)"
                .into(),
        )),
        Err(ResetPasswordError::Password(message)) => Err(ApiError::invalid("password", message)),
        Err(ResetPasswordError::Busy) => Err(busy()),
        Err(ResetPasswordError::Unexpected(e)) => Err(e.into()),
    }
}

/// Verify your e-mail address with the mailed token (no sign-in needed: the token is the proof).
/// Access tokens issued from then on carry `email_verified: true`: refresh to get one. A token
/// used already answers 204 again.
#[utoipa::path(
    tag = "users",
    request_body = VerifyEmailRequest,
    responses(
        (status = 204, description = "Verified"),
        (status = 400, description = "The token is unknown or expired", body = Problem,
            content_type = "application/problem+json"),
        (status = 422, description = "No token", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/users/verify")]
#[tracing::instrument(skip_all)]
pub async fn verify_email(
    users: web::Data<Users>,
    body: web::Json<VerifyEmailRequest>,
) -> Result<HttpResponse, ApiError> {
    let secret = required(&body.token).map_err(|m| ApiError::invalid("token", m))?;
    match users.verify_email(&secret).await {
        Ok(()) => Ok(HttpResponse::NoContent().finish()),
        Err(VerifyEmailError::InvalidToken) => Err(ApiError::BadRequest(
            "the verification token is unknown or expired: ask for a new one (POST /users/me/verification)".into(),
        )),
        Err(VerifyEmailError::Unexpected(e)) => Err(e.into()),
    }
}

/// Mail me a new verification token (`EmailVerificationRequested`; the earlier ones stop working).
/// Limited per account (`users.verification_mails_per_hour_per_account`): past it, 429.
#[utoipa::path(
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "A new token is mailed"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The e-mail address is verified already", body = Problem,
            content_type = "application/problem+json"),
        (status = 429, description = "Too many mails asked for; see Retry-After", body = Problem,
            content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
#[post("/users/me/verification")]
#[tracing::instrument(skip_all, fields(user.id = %principal.user_id))]
pub async fn request_verification(
    principal: Principal,
    users: web::Data<Users>,
    throttle: web::Data<Throttles>,
) -> Result<HttpResponse, ApiError> {
    let attempt = throttle::attempt([(&throttle.verification_mails_per_account, principal.user_id.to_string())])
        .map_err(|wait| ApiError::TooManyRequests { retry_after: wait.as_secs() })?;
    match users.request_verification(principal.user_id.into()).await {
        Ok(()) => Ok(HttpResponse::Accepted().finish()),
        Err(e) => {
            // Nothing was mailed: the request does not count.
            attempt.give_back();
            Err(match e {
                RequestVerificationError::AlreadyVerified => {
                    ApiError::Conflict("the e-mail address is verified already".into())
                }
                RequestVerificationError::NotFound(_) => ApiError::Unauthorized("the account no longer exists".into()),
                RequestVerificationError::Unexpected(e) => e.into(),
            })
        }
    }
}

/// The public keys that verify access tokens, by `kid` (RFC 7517).
#[utoipa::path(tag = "users", responses((status = 200, description = "A JSON Web Key Set", body = Object)))]
#[get("/.well-known/jwks.json")]
pub async fn jwks(users: web::Data<Users>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(CacheControl(vec![CacheDirective::Public, CacheDirective::MaxAge(300)]))
        .json(users.keys().jwks())
}

/// The signed-in user.
#[utoipa::path(
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account", body = UserResponse),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/users/me")]
#[tracing::instrument(skip_all, fields(user.id = %principal.user_id))]
pub async fn me(principal: Principal, users: web::Data<Users>) -> Result<web::Json<UserResponse>, ApiError> {
    let user = users.get(principal.user_id.into()).await?;
    // A valid token for an account that is gone.
    let user = user.ok_or_else(|| ApiError::Unauthorized("the account no longer exists".into()))?;
    Ok(web::Json(user.into()))
}

/// List accounts (admin).
#[utoipa::path(
    tag = "users",
    params(ListUsersQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of accounts", body = Page<UserResponse>),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/users")]
#[tracing::instrument(skip_all, fields(user.id = %admin.0.user_id))]
pub async fn list_users(
    admin: Admin,
    users: web::Data<Users>,
    query: web::Query<ListUsersQuery>,
) -> Result<web::Json<Page<UserResponse>>, ApiError> {
    let limit = page_limit(query.limit)?;
    let after: Option<UserId> = after_cursor(query.after.as_deref())?;
    let rows = users.list(after, limit + 1).await?;
    Ok(web::Json(Page::from_rows(rows, limit, |u| u.id.to_string(), UserResponse::from)))
}

/// Change a user's role (admin). It applies to access tokens issued from now on.
#[utoipa::path(
    tag = "users",
    params(("id" = Uuid, Path, description = "The user's id")),
    request_body = RoleRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account", body = UserResponse),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The last admin cannot stop being one", body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/users/{id}/role")]
#[tracing::instrument(skip_all, fields(user.id = %admin.0.user_id))]
pub async fn set_role(
    admin: Admin,
    users: web::Data<Users>,
    id: web::Path<Uuid>,
    body: web::Json<RoleRequest>,
) -> Result<web::Json<UserResponse>, ApiError> {
    let user = users.set_role(id.into_inner().into(), body.role).await.map_err(|e| match e {
        SetRoleError::NotFound(id) => ApiError::NotFound(format!("no user with id {id}")),
        last @ SetRoleError::LastAdmin(_) => ApiError::Conflict(last.to_string()),
        SetRoleError::Unexpected(e) => e.into(),
    })?;
    Ok(web::Json(user.into()))
}
