//! The composition root: builds the hosted modules, their databases, the bus, the relays and the
//! HTTP server from [`Settings`].

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::{ErrorHandlers, from_fn};
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use kernel::auth::VerificationKey;
use kernel::outbox::Relay;
use kernel::{Consumer, EventBus, Hosted, Inbox, JwtVerifier, Module, ModuleContext};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::bus::{InProcessBus, RabbitMqBus, RabbitMqConfig, Topology};
use crate::http::{self, Ops};
use crate::modules;
use crate::settings::{BusKind, Settings};
use crate::telemetry;

/// A running Bazaar process: bound, with its background work started.
pub struct Application {
    port: u16,
    modules: String,
    server: Server,
    /// Cancelled at SIGTERM: `/health/ready` then fails while requests are still served.
    stopping: CancellationToken,
    shutdown_delay: Duration,
    shutdown: CancellationToken,
    background: Vec<JoinHandle<()>>,
}

/// Connects every module in `modules` to its own database, migrating it when `migrate` is set.
pub async fn connect_modules(
    settings: &Settings,
    modules: Vec<Arc<dyn Module>>,
    migrate: bool,
) -> anyhow::Result<Vec<(Arc<dyn Module>, ModuleContext)>> {
    let mut hosted = Vec::with_capacity(modules.len());
    for module in modules {
        let name = module.name();
        let url = settings.database_url(name);
        let db = kernel::db::connect(&url, settings.database.max_connections)
            .await
            .with_context(|| format!("failed to connect the {name} module to {}", crate::settings::redact_url(&url)))?;
        if migrate {
            module.migrate(&db).await.with_context(|| format!("failed to migrate the {name} module"))?;
            tracing::info!(module = name, "migrations applied");
        }
        let sections = settings.sections_of(module.as_ref())?;
        hosted.push((module, ModuleContext::new(name, db, sections)));
    }
    Ok(hosted)
}

/// A module started in this process, with its context.
type Running = (Arc<dyn Module>, ModuleContext, Box<dyn Hosted>);

impl Application {
    /// The start-up sequence, one step a line.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        crate::telemetry::metrics();
        let modules = modules::select(&settings.modules.enabled);
        let hosted = connect_modules(&settings, modules, settings.database.auto_migrate).await?;
        let running = start_modules(&hosted).await?;
        let bus = choose_bus(&settings)?;
        subscribe_consumers(bus.as_ref(), &running).await?;
        let verifier =
            verifier(&settings, running.iter().flat_map(|(_, _, s)| s.verification_keys()).collect()).await?;
        bus.listen(Arc::new(SessionRevocations(verifier.clone()))).await.context("failed to listen for revocations")?;
        let shutdown = CancellationToken::new();
        let background = spawn_background_work(&settings, &bus, &running, &shutdown);
        let stopping = CancellationToken::new();
        let checks = running.iter().flat_map(|(m, _, s)| s.checks().into_iter().map(|c| (m.name(), c))).collect();
        let jobs = running.iter().filter_map(|(_, _, s)| s.jobs()).collect();
        let ops = Ops { modules: hosted, bus, checks, jobs, stopping: stopping.clone() };
        let (port, server) = bind_http(&settings, ops, &running, verifier)?;
        Ok(Self {
            port,
            modules: settings.modules.enabled.join(","),
            server,
            stopping,
            shutdown_delay: Duration::from_secs(settings.server.shutdown_delay_secs),
            shutdown,
            background,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the HTTP server (as SIGTERM would): in-flight requests finish first.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM, Ctrl-C or [`ServerHandle::stop`]; on a signal, first reports not ready
    /// for `server.shutdown_delay_secs` while still serving (load balancers take a moment to stop
    /// routing here); then drains HTTP, lets the relays finish their batch and the consumers their
    /// event, and returns.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        // Listen before announcing: a SIGTERM right after "listening" must stop us gracefully.
        let signal = shutdown_signal()?;
        let server = tokio::spawn(self.server);
        tracing::info!(
            port = self.port,
            swagger_ui = %format!("http://localhost:{}/swagger-ui/", self.port),
            modules = %self.modules,
            "Bazaar is listening"
        );
        let (stopping, delay) = (self.stopping.clone(), self.shutdown_delay);
        let signals = tokio::spawn(async move {
            let signal = signal.await;
            stopping.cancel();
            if !delay.is_zero() {
                tracing::info!(signal, delay_secs = delay.as_secs(), "stopping: not ready, still serving");
                tokio::time::sleep(delay).await;
            }
            tracing::info!(signal, "stopping: draining HTTP requests");
            handle.stop(true).await;
        });
        let served = server.await.context("the HTTP server panicked")?;
        signals.abort();
        tracing::info!("HTTP drained; stopping background work");
        self.shutdown.cancel();
        for task in self.background {
            if tokio::time::timeout(Duration::from_secs(10), task).await.is_err() {
                tracing::warn!("a background task did not stop within 10 s");
            }
        }
        served.context("the HTTP server failed")
    }
}

/// Builds each hosted module once: its state is made here.
async fn start_modules(hosted: &[(Arc<dyn Module>, ModuleContext)]) -> anyhow::Result<Vec<Running>> {
    let mut running = Vec::with_capacity(hosted.len());
    for (module, ctx) in hosted {
        let started = module.start(ctx.clone()).await.with_context(|| format!("failed to start {}", module.name()))?;
        running.push((module.clone(), ctx.clone(), started));
    }
    Ok(running)
}

/// The bus the settings name.
fn choose_bus(settings: &Settings) -> anyhow::Result<Arc<dyn EventBus>> {
    Ok(match settings.bus.kind {
        BusKind::InProcess => Arc::new(InProcessBus::new(settings.bus.retry_policy())),
        BusKind::Rabbitmq => {
            let config = RabbitMqConfig::from_settings(&settings.bus).context("bus.rabbitmq.url is not set")?;
            // Every consumer of the registry, hosted here or not: their queues must exist for
            // this process's events to be routable.
            let topology = Topology::new(&settings.bus.rabbitmq.prefix, modules::subscriptions(), &config.policy);
            Arc::new(RabbitMqBus::new(config, topology))
        }
    })
}

/// Each hosted module that consumes events gets them through its inbox.
async fn subscribe_consumers(bus: &dyn EventBus, running: &[Running]) -> anyhow::Result<()> {
    for (module, ctx, started) in running {
        if let Some(handler) = started.handler() {
            let consumer = Consumer {
                name: module.name(),
                events: module.consumes(),
                handler,
                inbox: Inbox::new(ctx.outbox.clone()),
            };
            bus.subscribe(consumer).await.with_context(|| format!("failed to subscribe {}", module.name()))?;
        }
    }
    Ok(())
}

/// The bus, metrics upkeep, and per module its relay, its housekeeping and its own tasks, until
/// `shutdown`.
fn spawn_background_work(
    settings: &Settings,
    bus: &Arc<dyn EventBus>,
    running: &[Running],
    shutdown: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut background = Vec::new();
    let (bus_task, token) = (bus.clone(), shutdown.clone());
    background.push(tokio::spawn(async move {
        if let Err(e) = bus_task.run(token).await {
            tracing::error!(error = %e, "the bus stopped");
        }
    }));
    background.push(tokio::spawn(telemetry::upkeep(shutdown.clone())));
    for (_, ctx, started) in running {
        let relay = Relay::new(
            ctx.outbox.clone(),
            bus.clone(),
            settings.outbox.batch_size,
            Duration::from_millis(settings.outbox.poll_interval_ms),
        );
        background.push(tokio::spawn(relay.run(shutdown.clone())));
        let mut purges = started.purges();
        purges.extend(started.jobs().map(|queue| Arc::new(queue) as Arc<dyn kernel::housekeeping::Purge>));
        background.push(tokio::spawn(kernel::housekeeping::run(
            ctx.outbox.clone(),
            purges,
            Duration::from_secs(settings.housekeeping.retention_hours * 3600),
            Duration::from_secs(settings.housekeeping.interval_secs),
            shutdown.clone(),
        )));
        background.extend(started.background_tasks(shutdown.clone()).into_iter().map(tokio::spawn));
    }
    background
}

/// Binds the listener and builds the HTTP server: the modules' routes, the operational ones, the
/// OpenAPI document and Swagger UI, and problem+json for whatever matches nothing.
fn bind_http(
    settings: &Settings,
    ops: Ops,
    running: &[Running],
    verifier: JwtVerifier,
) -> anyhow::Result<(u16, Server)> {
    let doc = http::openapi(&ops.modules.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>());
    let openapi = http::OpenApiJson::render(&doc)?;
    let route_table = web::Data::new(http::RouteTable::new(&doc));
    let shadowed = route_table.shadowed();
    let routes: Vec<kernel::Routes> = running.iter().map(|(_, _, started)| started.routes()).collect();
    let ops = web::Data::new(ops);
    let verifier = web::Data::new(verifier);
    let trusted_proxies = web::Data::new(kernel::client::TrustedProxies::new(settings.server.trusted_proxies.clone()));

    let listener = TcpListener::bind(settings.address())
        .with_context(|| format!("failed to bind {}:{}", settings.server.host, settings.server.port))?;
    let port = listener.local_addr()?.port();
    let mut server = HttpServer::new(move || {
        let routes = routes.clone();
        // A fixed path's missing methods, answered before a parameter's route could take it.
        let shadowed = shadowed.iter().map(|(path, served)| {
            let served = served.clone();
            web::resource(path.as_str())
                .guard(actix_web::guard::fn_guard(move |ctx| !served.contains(&ctx.head().method)))
                .to(http::no_route)
        });
        let shadowed: Vec<_> = shadowed.collect();
        App::new()
            .app_data(web::JsonConfig::default().limit(256 * 1024).error_handler(kernel::error::json_error))
            .app_data(web::PathConfig::default().error_handler(kernel::error::path_error))
            .app_data(web::QueryConfig::default().error_handler(kernel::error::query_error))
            .app_data(verifier.clone())
            .app_data(trusted_proxies.clone())
            .app_data(ops.clone())
            .wrap(ErrorHandlers::new().default_handler(http::problem_for_actix_errors))
            .wrap(from_fn(http::observe))
            .configure(move |cfg| {
                for resource in shadowed {
                    cfg.service(resource);
                }
            })
            .configure(move |cfg| routes.iter().for_each(|r| r(cfg)))
            .service(http::health_live)
            .service(http::health_ready)
            .service(http::prometheus_metrics)
            .service(http::dead_letters)
            .service(http::replay_dead_letter)
            .service(http::list_jobs)
            .service(http::retry_job)
            .app_data(openapi.clone())
            .route(http::OPENAPI_PATH, web::get().to(http::openapi_json))
            .service(SwaggerUi::new("/swagger-ui/{_:.*}").config(Config::from(http::OPENAPI_PATH)))
            .route("/swagger-ui", web::get().to(http::swagger_redirect))
            .app_data(route_table.clone())
            .default_service(web::to(http::no_route))
    })
    .listen(listener)?
    // Signals are ours (see `run_until_stopped`): actix only handles them under its own runtime.
    .disable_signals()
    .shutdown_timeout(settings.server.shutdown_timeout_secs);
    if settings.server.workers > 0 {
        server = server.workers(settings.server.workers);
    }
    Ok((port, server.run()))
}

/// Every process refuses the tokens the users module revokes (a role change, a log-out).
struct SessionRevocations(JwtVerifier);

#[async_trait::async_trait]
impl kernel::Listener for SessionRevocations {
    fn events(&self) -> Vec<contracts::EventType> {
        use contracts::IntegrationEvent;
        vec![users_contracts::UserSessionsRevoked::event_type()]
    }

    async fn hear(&self, envelope: &kernel::Envelope) {
        match envelope.decode::<users_contracts::UserSessionsRevoked>() {
            Ok(revoked) => {
                tracing::info!(user.id = %revoked.user_id, reason = revoked.reason, "sessions revoked");
                self.0.revoke(revoked.user_id, revoked.not_before);
            }
            Err(e) => tracing::warn!(error = %e, "a UserSessionsRevoked that does not decode; ignored"),
        }
    }
}

/// How this process verifies access tokens, in order of preference: the keys of a hosted module
/// that issues them (users), a configured public key, the users module's JWKS; and whether its
/// checkouts require a verified e-mail address (`auth.require_verified_email`).
async fn verifier(settings: &Settings, local_keys: Vec<VerificationKey>) -> anyhow::Result<JwtVerifier> {
    let auth = &settings.auth;
    let verifier = if !local_keys.is_empty() {
        JwtVerifier::with_keys(local_keys, &auth.issuer, &auth.audience)
    } else if let Some(pem) = &auth.public_key {
        JwtVerifier::from_public_key_pem(pem, &auth.issuer, &auth.audience)?
    } else if let Some(url) = &auth.jwks_url {
        let verifier = JwtVerifier::from_jwks_url(url, &auth.issuer, &auth.audience);
        verifier.prefetch().await;
        verifier
    } else {
        tracing::warn!(
            "no way to verify access tokens (auth.public_key or auth.jwks_url): routes that need one answer 401"
        );
        JwtVerifier::disabled()
    };
    Ok(match auth.require_verified_email {
        true => verifier.requiring_verified_email(),
        false => verifier,
    })
}

/// Resolves on Ctrl-C or SIGTERM, naming the one that came. The handlers are installed now.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = &'static str>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    })
}
