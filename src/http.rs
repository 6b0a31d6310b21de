//! The HTTP surface the composition root owns: health, metrics, the merged OpenAPI document and
//! Swagger UI, and the middleware every request passes (request id, tracing span, metrics, one log
//! line, and problem+json for every error actix produces itself).

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ResourceDef, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::{ErrorHandlerResponse, Next};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError, get, post, web};
use kernel::error::{Problem, problem_response, problem_with};
use kernel::{EventBus, HealthCheck, Module, ModuleContext};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::security::{
    Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password, Scopes, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{Content, ObjectBuilder, Ref, RefOr, Response, ResponseBuilder, Type};
use utoipa::{OpenApi, PartialSchema, ToSchema};

use crate::telemetry;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the operational endpoints look at.
#[derive(Clone)]
pub struct Ops {
    pub modules: Vec<(Arc<dyn Module>, ModuleContext)>,
    pub bus: Arc<dyn EventBus>,
    /// The hosted modules' own checks ([`kernel::Hosted::checks`]), each with its module's name.
    pub checks: Vec<(&'static str, Arc<dyn HealthCheck>)>,
    /// The job tables of the hosted modules that run jobs ([`kernel::Hosted::jobs`]).
    pub jobs: Vec<kernel::jobs::Queue>,
    /// Cancelled when the process starts to stop: from then on it is not ready.
    pub stopping: tokio_util::sync::CancellationToken,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Bazaar", description = "An e-commerce backend: a modular monolith that splits into services."),
    paths(health_live, health_ready, prometheus_metrics, dead_letters, replay_dead_letter, list_jobs, retry_job),
    tags((name = "operations", description = "Health and metrics"))
)]
struct OperationsApi;

/// The OpenAPI document of `modules` with the operational endpoints, the security schemes and the
/// answers any operation can give (see `declare_common_answers`).
pub fn openapi(modules: &[Arc<dyn Module>]) -> utoipa::openapi::OpenApi {
    let mut doc = OperationsApi::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    for module in modules {
        let mut api = module.openapi();
        // `merge` leaves a part's OpenAPI 3.1 `webhooks` (the requests it sends) behind.
        if let Some(webhooks) = api.webhooks.take() {
            doc.webhooks.get_or_insert_with(Default::default).merge(webhooks);
        }
        doc.merge(api);
    }
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
    );
    // Swagger UI's "Authorize" logs in with an e-mail and password through this flow (RFC 6749 §4.3).
    components.add_security_scheme(
        OAUTH2,
        SecurityScheme::OAuth2(OAuth2::with_description(
            [Flow::Password(Password::new(TOKEN_URL, Scopes::new()))],
            "Log in with your e-mail as username; the access token is then sent as a Bearer token.",
        )),
    );
    components.schemas.insert("Problem".to_owned(), <Problem as utoipa::PartialSchema>::schema());
    for (name, response) in common_responses() {
        components.responses.insert(name.to_owned(), response.into());
    }
    declare_common_answers(&mut doc);
    doc
}

const OAUTH2: &str = "OAuth2";
const TOKEN_URL: &str = "/auth/token";

/// The answers that come from the framework or the kernel rather than from a handler, by name in
/// `components.responses`.
fn common_responses() -> Vec<(&'static str, Response)> {
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content("application/problem+json", Content::new(Some(Ref::from_schema_name("Problem"))))
    };
    let retry_after = |description: &str| {
        HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0))))
            .description(Some(description))
            .build()
    };
    vec![
        ("BadRequest", problem("Unreadable request: a malformed path parameter, query, header or JSON body").build()),
        (
            "Unauthorized",
            problem("No valid token")
                .header("WWW-Authenticate", HeaderBuilder::new().schema(Some(String::schema())).build())
                .build(),
        ),
        ("PayloadTooLarge", problem("The body is larger than 256 KiB").build()),
        ("UnsupportedMediaType", problem("The body's Content-Type is missing or not one this operation reads").build()),
        ("UnprocessableEntity", problem("Invalid fields: `errors` names each").build()),
        (
            "Unavailable",
            problem("A dependency (a database, the bus) is unavailable; try again later")
                .header("Retry-After", retry_after("Seconds to wait, when known"))
                .build(),
        ),
    ]
}

/// Declares on every operation the answers it can get before or around its handler: 400 (a
/// malformed parameter or body), 413 and 415 (the body), 422 (its fields), 401 (a token), 503 (a
/// dependency), unless it declares its own; and offers the OAuth2 scheme wherever a bearer token
/// is asked for. 404 and 405 for unknown paths and methods are not an operation's.
fn declare_common_answers(doc: &mut utoipa::openapi::OpenApi) {
    for item in doc.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for operation in operations.into_iter().flatten() {
            let parameters = operation.parameters.as_deref().unwrap_or_default();
            let has_parameters = !parameters.is_empty();
            let has_query = parameters.iter().any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Query));
            let has_body = operation.request_body.is_some();
            let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
            let mut declare = |status: &str, name: &str| {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/responses/{name}"))));
            };
            if has_parameters || has_body {
                declare("400", "BadRequest");
            }
            if secured {
                declare("401", "Unauthorized");
            }
            if has_body {
                declare("413", "PayloadTooLarge");
                declare("415", "UnsupportedMediaType");
            }
            if has_body || has_query {
                declare("422", "UnprocessableEntity");
            }
            declare("503", "Unavailable");
            if let Some(security) = operation.security.as_mut().filter(|s| !s.is_empty()) {
                let oauth2 = SecurityRequirement::new(OAUTH2, Vec::<String>::new());
                if !security.contains(&oauth2) {
                    security.push(oauth2);
                }
            }
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`; `degraded` while the bus or a check that is not required fails (still ready: the
    /// outbox keeps the events, and a module's optional dependency may come back).
    status: &'static str,
    /// Each dependency's state: `ok`, or what is wrong.
    checks: std::collections::BTreeMap<String, String>,
}

/// Liveness: the process serves HTTP.
#[utoipa::path(tag = "operations", responses((status = 200, description = "Alive", body = Health)))]
#[get("/health/live")]
pub async fn health_live() -> web::Json<Health> {
    web::Json(Health { status: "ok", checks: Default::default() })
}

/// Readiness: every hosted module's database answers, and each check a module requires passes.
///
/// The bus is reported, not required: while a broker is unreachable the outbox keeps what is
/// written, so the process stays ready, `degraded`; so are a module's checks that are not required
/// (a payment provider's reachability).
#[utoipa::path(tag = "operations", responses(
    (status = 200, description = "Ready (perhaps with the bus degraded)", body = Health),
    (status = 503, description = "Not ready: a problem whose `checks` say why", body = Problem,
        content_type = "application/problem+json"),
))]
#[get("/health/ready")]
pub async fn health_ready(ops: web::Data<Ops>) -> HttpResponse {
    if ops.stopping.is_cancelled() {
        return problem_response(StatusCode::SERVICE_UNAVAILABLE, Some("not ready: shutting down".into()), None);
    }
    let mut checks = std::collections::BTreeMap::new();
    let mut failing = Vec::new();
    for (module, ctx) in &ops.modules {
        // The driver's error stays in the log: it may name hosts, users and databases.
        let state = match tokio::time::timeout(std::time::Duration::from_secs(2), ctx.db.ping()).await {
            Ok(Ok(())) => "ok",
            Ok(Err(e)) => {
                tracing::warn!(module = module.name(), error = %e, "not ready: the database is unreachable");
                "database unreachable"
            }
            Err(_) => "database did not answer within 2 s",
        };
        let name = format!("{}.database", module.name());
        if state != "ok" {
            failing.push(name.clone());
        }
        checks.insert(name, state.to_owned());
    }
    let mut degraded = false;
    for (module, check) in &ops.checks {
        let name = format!("{module}.{}", check.name());
        let state = match tokio::time::timeout(std::time::Duration::from_secs(2), check.check()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("did not answer within 2 s".to_owned()),
        };
        let state = match state {
            Ok(()) => "ok".to_owned(),
            Err(e) if check.required() => {
                tracing::warn!(check = name, error = e, "not ready: a required check fails");
                failing.push(name.clone());
                e
            }
            Err(e) => {
                degraded = true;
                format!("degraded: {e}")
            }
        };
        checks.insert(name, state);
    }
    let failing = failing.join(", ");
    let bus = ops.bus.check().await;
    checks.insert(
        format!("bus.{}", ops.bus.kind()),
        bus.as_ref().map_or_else(|e| format!("degraded: {e}"), |()| "ok".to_owned()),
    );
    if failing.is_empty() {
        let status = if bus.is_ok() && !degraded { "ok" } else { "degraded" };
        return HttpResponse::Ok().json(Health { status, checks });
    }
    let detail = format!("not ready: {failing}");
    #[derive(Debug, Serialize)]
    struct Checks {
        checks: std::collections::BTreeMap<String, String>,
    }
    problem_with(StatusCode::SERVICE_UNAVAILABLE, Some(detail), Checks { checks })
}

/// Prometheus metrics: HTTP requests by route and status with latencies, outbox backlog and bus
/// counters per module, and background jobs by module, type and status.
#[utoipa::path(tag = "operations", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
#[get("/metrics")]
pub async fn prometheus_metrics(ops: web::Data<Ops>) -> HttpResponse {
    use kernel::bus::metric;
    for (module, ctx) in &ops.modules {
        let name = module.name();
        match ctx.outbox.pending().await {
            Ok(n) => metrics::gauge!(metric::OUTBOX_PENDING, "module" => name).set(n as f64),
            Err(e) => tracing::warn!(module = name, error = %e, "cannot count the outbox backlog"),
        }
        // The dead-letter table (in-process bus) and the broker's dead-letter queue (RabbitMQ).
        let queued = ops.bus.dead_letter_depth(name).await.unwrap_or(0);
        match kernel::Inbox::new(ctx.outbox.clone()).dead_letter_count().await {
            Ok(n) => metrics::gauge!(metric::DEAD_LETTERS, "module" => name).set((n + queued) as f64),
            Err(e) => tracing::warn!(module = name, error = %e, "cannot count dead letters"),
        }
    }
    for queue in &ops.jobs {
        if let Err(e) = queue.record_metrics().await {
            tracing::warn!(module = queue.module(), error = %e, "cannot count the jobs");
        }
    }
    let handle = telemetry::metrics();
    handle.run_upkeep();
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(handle.render())
}

/// An event a module gave up on.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterResponse {
    /// The consuming module; with `id`, what `replay` takes.
    module: &'static str,
    id: i64,
    event_id: String,
    event: String,
    error: String,
    attempts: u32,
    failed_at: chrono::DateTime<chrono::Utc>,
    /// The envelope as it was delivered.
    envelope: serde_json::Value,
}

/// Dead letters of the hosted modules, newest first (admin; up to 100 per module).
#[utoipa::path(
    tag = "operations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Dead letters", body = Vec<DeadLetterResponse>),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/admin/dead-letters")]
pub async fn dead_letters(_admin: kernel::Admin, ops: web::Data<Ops>) -> Result<HttpResponse, kernel::ApiError> {
    let mut all = Vec::new();
    for (module, ctx) in &ops.modules {
        let letters =
            kernel::Inbox::new(ctx.outbox.clone()).dead_letter_list(100).await.map_err(anyhow::Error::from)?;
        all.extend(letters.into_iter().map(|d| DeadLetterResponse {
            module: module.name(),
            id: d.id,
            event_id: d.event_id,
            event: d.event,
            error: d.error,
            attempts: d.attempts,
            failed_at: d.failed_at,
            envelope: serde_json::from_str(&d.payload).unwrap_or(serde_json::Value::String(d.payload)),
        }));
    }
    all.sort_by_key(|d| std::cmp::Reverse(d.failed_at));
    Ok(HttpResponse::Ok().json(all))
}

/// Queue a dead letter again, its attempts reset (admin; once its cause is fixed).
#[utoipa::path(
    tag = "operations",
    params(("module" = String, Path, description = "The consuming module"), ("id" = i64, Path, description = "The dead letter's id")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Queued again; the consumer takes it within a second"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such dead letter here", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/admin/dead-letters/{module}/{id}/replay")]
pub async fn replay_dead_letter(
    _admin: kernel::Admin,
    ops: web::Data<Ops>,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, kernel::ApiError> {
    let (module, id) = path.into_inner();
    let not_found = || kernel::ApiError::NotFound(format!("no dead letter {id} in module {module}"));
    let (_, ctx) = ops.modules.iter().find(|(m, _)| m.name() == module).ok_or_else(not_found)?;
    let replayed = kernel::Inbox::new(ctx.outbox.clone()).replay(id).await.map_err(anyhow::Error::from)?;
    if !replayed {
        return Err(not_found());
    }
    Ok(HttpResponse::Accepted().finish())
}

/// Which jobs `GET /admin/jobs` lists.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// Only jobs in this status (`failed`: what needs an admin).
    status: Option<kernel::jobs::JobStatus>,
    /// Only this module's jobs.
    module: Option<String>,
    /// Only jobs of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    job_type: Option<String>,
    /// At most this many per module, newest first (1–100, default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u64>,
}

/// A background job of a hosted module.
#[derive(Serialize, ToSchema)]
pub struct JobResponse {
    /// The module that runs it; with `id`, what `retry` takes.
    module: &'static str,
    #[serde(flatten)]
    job: kernel::jobs::JobRecord,
}

/// Background jobs of the hosted modules, newest first (admin).
#[utoipa::path(
    tag = "operations",
    params(JobsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Jobs", body = Vec<JobResponse>),
        (status = 400, description = "A parameter is not valid", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The limit is out of range", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/admin/jobs")]
pub async fn list_jobs(
    _admin: kernel::Admin,
    ops: web::Data<Ops>,
    query: web::Query<JobsQuery>,
) -> Result<HttpResponse, kernel::ApiError> {
    let query = query.into_inner();
    let limit = kernel::page_limit(query.limit)?;
    let mut all = Vec::new();
    for queue in ops.jobs.iter().filter(|q| query.module.as_deref().is_none_or(|m| m == q.module())) {
        let jobs = queue.list(query.status, query.job_type.as_deref(), limit).await.map_err(anyhow::Error::from)?;
        all.extend(jobs.into_iter().map(|job| JobResponse { module: queue.module(), job }));
    }
    all.sort_by_key(|j| std::cmp::Reverse(j.job.created_at));
    Ok(HttpResponse::Ok().json(all))
}

/// Queue a failed job again, due at once, with a new retry window (admin; once its cause is fixed).
#[utoipa::path(
    tag = "operations",
    params(("module" = String, Path, description = "The module that runs it"), ("id" = uuid::Uuid, Path, description = "The job's id")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Queued again; a worker takes it at once"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No failed job with this id here", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/admin/jobs/{module}/{id}/retry")]
pub async fn retry_job(
    _admin: kernel::Admin,
    ops: web::Data<Ops>,
    path: web::Path<(String, uuid::Uuid)>,
) -> Result<HttpResponse, kernel::ApiError> {
    let (module, id) = path.into_inner();
    let not_found = || kernel::ApiError::NotFound(format!("no failed job {id} in module {module}"));
    let queue = ops.jobs.iter().find(|q| q.module() == module).ok_or_else(not_found)?;
    if !queue.retry(id).await.map_err(anyhow::Error::from)? {
        return Err(not_found());
    }
    Ok(HttpResponse::Accepted().finish())
}

/// Where the OpenAPI document is served (and where Swagger UI reads it).
pub const OPENAPI_PATH: &str = "/api-docs/openapi.json";

/// The OpenAPI document, rendered once and shared by every worker.
#[derive(Clone)]
pub struct OpenApiJson(web::Bytes);

impl OpenApiJson {
    pub fn render(doc: &utoipa::openapi::OpenApi) -> anyhow::Result<web::Data<Self>> {
        let json =
            serde_json::to_vec(doc).map_err(|e| anyhow::anyhow!("failed to render the OpenAPI document: {e}"))?;
        Ok(web::Data::new(Self(json.into())))
    }
}

/// The OpenAPI document of the modules this process hosts, served at [`OPENAPI_PATH`].
pub async fn openapi_json(doc: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok().content_type(header::ContentType::json()).body(doc.0.clone())
}

/// `/swagger-ui` → `/swagger-ui/`.
pub async fn swagger_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header((header::LOCATION, "/swagger-ui/")).finish()
}

/// The methods each path of the OpenAPI document serves: actix makes each handler a resource
/// guarded by its method, so a known path asked with another method falls through to
/// [`no_route`] like an unknown one — or to a route with a parameter where the path has a fixed
/// segment (`GET /admin/reports/sales` to `GET /admin/reports/{id}`): [`shadowed`](Self::shadowed)
/// names those paths, and the server answers their missing methods first.
pub struct RouteTable(Vec<Route>);

/// A path of the document: its pattern, the methods it serves, and those as an `Allow` header.
struct Route {
    pattern: ResourceDef,
    methods: Vec<Method>,
    allow: HeaderValue,
}

impl RouteTable {
    pub fn new(doc: &utoipa::openapi::OpenApi) -> Self {
        let routes = doc.paths.paths.iter().map(|(path, item)| {
            let served = [
                (Method::GET, &item.get),
                (Method::PUT, &item.put),
                (Method::POST, &item.post),
                (Method::DELETE, &item.delete),
                (Method::PATCH, &item.patch),
            ];
            let methods: Vec<Method> =
                served.into_iter().filter(|(_, operation)| operation.is_some()).map(|(method, _)| method).collect();
            let names: Vec<&str> = methods.iter().map(Method::as_str).collect();
            let allow = HeaderValue::from_str(&names.join(", ")).expect("method names");
            Route { pattern: ResourceDef::new(path.as_str()), methods, allow }
        });
        Self(routes.collect())
    }

    /// The `Allow` header of `path`, when the document has it: its own path's, before a
    /// parameter's that matches it too.
    fn allowed(&self, path: &str) -> Option<&HeaderValue> {
        let exact = self.0.iter().find(|route| route.pattern.pattern() == Some(path));
        exact.or_else(|| self.0.iter().find(|route| route.pattern.is_match(path))).map(|route| &route.allow)
    }

    /// Fixed paths that a path with a parameter matches too, with the methods they serve: a
    /// method they lack must be answered 405 before the parameter's route takes the request.
    pub fn shadowed(&self) -> Vec<(String, Vec<Method>)> {
        let fixed = self.0.iter().filter_map(|route| Some((route.pattern.pattern()?, route)));
        fixed
            .filter(|(path, _)| !path.contains('{'))
            .filter(|(path, _)| {
                self.0.iter().any(|other| other.pattern.pattern() != Some(path) && other.pattern.is_match(path))
            })
            .map(|(path, route)| (path.to_owned(), route.methods.clone()))
            .collect()
    }
}

/// Anything no route matches: 405 naming the methods served when the path is known, 404 otherwise.
pub async fn no_route(req: HttpRequest, routes: web::Data<RouteTable>) -> HttpResponse {
    let (method, path) = (req.method(), req.path());
    let Some(allowed) = routes.allowed(path) else {
        return kernel::ApiError::NotFound(format!("no route for {method} {path}")).error_response();
    };
    let detail = format!("{method} is not allowed on {path}");
    let mut response = problem_response(StatusCode::METHOD_NOT_ALLOWED, Some(detail), None);
    response.headers_mut().insert(header::ALLOW, allowed.clone());
    response
}

/// The request's id: the caller's `x-request-id` when it is sane, a new UUID v7 otherwise.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// Request id, span, metrics and a log line per request (see below for its level).
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = request_id(&req);
    req.extensions_mut().insert(RequestId(id.clone()));
    // What a line logged while serving needs to be found again; route and status go on the
    // request's own line, formatted only when it is written.
    let span =
        tracing::info_span!("http.request", http.method = %req.method(), http.target = %req.path(), request.id = %id);
    let method = req.method().to_string();
    let started = Instant::now();
    let mut response = next.call(req).instrument(span.clone()).await?;
    let elapsed = started.elapsed();
    let status = response.status();
    let route = response.request().match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    let labels = [("method", method), ("route", route), ("status", status.as_u16().to_string())];
    metrics::counter!(telemetry::HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(telemetry::HTTP_DURATION, &labels[..2]).record(elapsed.as_secs_f64());
    // A line per request costs more than a catalog read itself (formatting the span's fields as
    // JSON, writing): answers the client got wrong are logged at info, the rest at debug
    // (`telemetry.filter = "info,bazaar::http=debug"` for an access log); the metrics count all.
    span.in_scope(|| {
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        let (route, status) = (labels[1].1.as_str(), status.as_u16());
        if status >= 500 {
            tracing::error!(http.route = route, http.status = status, latency_ms, "request failed");
        } else if status >= 400 {
            tracing::info!(http.route = route, http.status = status, latency_ms, "request refused");
        } else {
            tracing::debug!(http.route = route, http.status = status, latency_ms, "request served");
        }
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(response)
}

/// Turns any error response that is not problem+json yet (actix's own 404, 405, 413…) into one.
pub fn problem_for_actix_errors<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"));
    if is_problem {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let detail = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            Some(format!("{} is not allowed on {}", res.request().method(), res.request().path()))
        }
        StatusCode::NOT_FOUND => Some(format!("no route for {} {}", res.request().method(), res.request().path())),
        _ => None,
    };
    let (req, original) = res.into_parts();
    let mut problem: HttpResponse<BoxBody> = problem_response(status, detail, None);
    for (name, value) in original.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    Ok(ErrorHandlerResponse::Response(ServiceResponse::new(req, problem).map_into_right_body()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{App, test};

    struct Check {
        required: bool,
        state: Result<(), &'static str>,
    }

    #[async_trait::async_trait]
    impl HealthCheck for Check {
        fn name(&self) -> &'static str {
            if self.required { "required" } else { "optional" }
        }

        fn required(&self) -> bool {
            self.required
        }

        async fn check(&self) -> Result<(), String> {
            self.state.map_err(str::to_owned)
        }
    }

    async fn ready(checks: Vec<Check>) -> (StatusCode, serde_json::Value) {
        let policy = kernel::bus::RetryPolicy {
            max_attempts: 1,
            base_delay: std::time::Duration::from_millis(1),
            max_delay: std::time::Duration::from_millis(1),
        };
        let ops = Ops {
            modules: Vec::new(),
            bus: Arc::new(crate::bus::InProcessBus::new(policy)),
            checks: checks.into_iter().map(|c| ("payments", Arc::new(c) as Arc<dyn HealthCheck>)).collect(),
            jobs: Vec::new(),
            stopping: Default::default(),
        };
        let app = test::init_service(App::new().app_data(web::Data::new(ops)).service(health_ready)).await;
        let response = test::call_service(&app, test::TestRequest::get().uri("/health/ready").to_request()).await;
        let status = response.status();
        (status, test::read_body_json(response).await)
    }

    #[actix_web::test]
    async fn a_modules_checks_are_reported_and_only_a_required_one_makes_the_process_not_ready() {
        let passing =
            ready(vec![Check { required: true, state: Ok(()) }, Check { required: false, state: Ok(()) }]).await;
        assert_eq!(passing.0, StatusCode::OK);
        assert_eq!(passing.1["status"], "ok");
        assert_eq!(passing.1["checks"]["payments.required"], "ok");

        let degraded = ready(vec![Check { required: false, state: Err("unreachable") }]).await;
        assert_eq!(degraded.0, StatusCode::OK);
        assert_eq!(degraded.1["status"], "degraded");
        assert_eq!(degraded.1["checks"]["payments.optional"], "degraded: unreachable");

        let failing = ready(vec![Check { required: true, state: Err("unreachable") }]).await;
        assert_eq!(failing.0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(failing.1["checks"]["payments.required"], "unreachable");
        assert!(failing.1["detail"].as_str().is_some_and(|d| d.contains("payments.required")), "{}", failing.1);
    }
}
