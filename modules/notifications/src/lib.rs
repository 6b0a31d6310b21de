//! The notifications module: what the shop tells its customers, by e-mail.
//!
//! It keeps its own copy of whom it writes to (`UserRegistered`: address and name) and whose each
//! order is (`OrderCreated`), and turns the facts a customer should hear of into messages: welcome,
//! e-mail verification and password reset (the users module's requests, with their single-use
//! links), order confirmed (lines, total, address), payment failed, order cancelled, refund,
//! shipment dispatched (carrier, tracking number) and delivered. A message is rendered from the
//! templates in `templates/` and written with its sending job in the event's transaction; the
//! kernel's job worker sends it, retrying for hours while the mail server is down. `service.rs`
//! says how each message is sent once. Every message is listed at `GET /admin/notifications`.
//!
//! The transport is `file` (the default: `.eml` files under `data/mail/`, no mail server) or
//! `smtp` (`notifications.smtp.*`, the password a secret: `BAZAAR__NOTIFICATIONS__SMTP__PASSWORD`).

mod domain;
mod events;
mod http;
mod persistence;
mod service;
mod templates;
mod transport;

use std::path::PathBuf;
use std::sync::Arc;

use actix_web::web;
use async_trait::async_trait;
use contracts::EventType;
use futures::FutureExt;
use futures::future::BoxFuture;
use kernel::jobs::{JobsSection, Queue, Worker};
use kernel::settings::{Checks, Section, SectionSpec, SettingsError};
use kernel::{EventHandler, Hosted, Module, ModuleContext, Routes};
use lettre::message::Mailbox;
use migrations::MigratorTrait;
use sea_orm::{DatabaseConnection, DbErr};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::service::{Links, Notifications, SendMessage};
use crate::templates::{Shop, Templates};
use crate::transport::Transport;

/// The module's name: its settings section, its tables' prefix, its queue.
pub const NAME: &str = "notifications";

/// How messages leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TransportKind {
    /// `.eml` files in `file.dir`: no mail server needed.
    #[default]
    File,
    Smtp,
}

/// The module's `[notifications]` section.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
struct NotificationsSection {
    transport: TransportKind,
    /// The sender, `Name <address>`; its domain ends every Message-ID.
    from: String,
    /// The shop as messages name it.
    shop_name: String,
    /// Who hears of operational trouble (a webhook endpoint disabled): `ops@example.com` or
    /// `Name <ops@example.com>`. Unset: nobody is told (a warning, and a counter).
    admin_email: Option<String>,
    /// The storefront's address: messages link to it (`/orders/<id>`, and the two paths below).
    shop_url: String,
    /// The storefront's page that confirms an address with `?token=` (it calls `POST /users/verify`).
    verify_email_path: String,
    /// The storefront's page that sets a new password with `?token=` (it calls
    /// `POST /auth/password-reset/confirm`).
    reset_password_path: String,
    file: FileSection,
    smtp: SmtpSection,
}

impl Default for NotificationsSection {
    fn default() -> Self {
        Self {
            transport: TransportKind::File,
            from: "Bazaar <shop@bazaar.localhost>".into(),
            shop_name: "Bazaar".into(),
            admin_email: None,
            shop_url: "http://localhost:8080".into(),
            verify_email_path: "/verify-email".into(),
            reset_password_path: "/reset-password".into(),
            file: FileSection::default(),
            smtp: SmtpSection::default(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
struct FileSection {
    /// Where `transport = "file"` writes `<message id>.eml`.
    dir: PathBuf,
}

impl Default for FileSection {
    fn default() -> Self {
        Self { dir: "data/mail".into() }
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Encryption {
    /// Plain, upgraded with STARTTLS (required): port 587.
    Starttls,
    /// TLS from the first byte: port 465.
    Tls,
    /// Plain text: only for a relay on the same host or a development mail catcher.
    None,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
struct SmtpSection {
    host: String,
    port: u16,
    tls: Encryption,
    username: Option<String>,
    #[serde(serialize_with = "kernel::settings::redacted_optional")]
    password: Option<SecretString>,
    /// For connecting and for each command.
    timeout_secs: u64,
}

impl Default for SmtpSection {
    fn default() -> Self {
        Self {
            host: "localhost".into(),
            port: 587,
            tls: Encryption::Starttls,
            username: None,
            password: None,
            timeout_secs: 10,
        }
    }
}

impl Section for NotificationsSection {
    const KEY: &'static str = NAME;

    fn check(&self, _checks: Checks) -> Result<(), SettingsError> {
        self.from.parse::<Mailbox>().map_err(|e| {
            SettingsError::new("notifications.from", format!("must be an address like 'Shop <shop@example.com>': {e}"))
        })?;
        if let Some(admin) = &self.admin_email {
            admin.parse::<Mailbox>().map_err(|e| {
                SettingsError::new(
                    "notifications.admin_email",
                    format!("must be an address like 'ops@example.com': {e}"),
                )
            })?;
        }
        if !(self.shop_url.starts_with("https://") || self.shop_url.starts_with("http://")) {
            return Err(SettingsError::new("notifications.shop_url", "must be an http(s) URL"));
        }
        for (key, path) in
            [("verify_email_path", &self.verify_email_path), ("reset_password_path", &self.reset_password_path)]
        {
            if !path.starts_with('/') {
                return Err(SettingsError::new(format!("notifications.{key}"), "must start with /"));
            }
        }
        if self.transport == TransportKind::Smtp {
            if self.smtp.host.trim().is_empty() {
                return Err(SettingsError::new("notifications.smtp.host", "is required with transport = \"smtp\""));
            }
            if self.smtp.timeout_secs == 0 {
                return Err(SettingsError::new("notifications.smtp.timeout_secs", "must be at least 1"));
            }
            if self.smtp.username.is_some() != self.smtp.password.is_some() {
                return Err(SettingsError::new(
                    "notifications.smtp.password",
                    "username and password go together (BAZAAR__NOTIFICATIONS__SMTP__PASSWORD)",
                ));
            }
        }
        Ok(())
    }
}

#[derive(OpenApi)]
#[openapi(
    paths(http::list_notifications),
    tags((name = "notifications", description = "What the shop told its customers"))
)]
struct NotificationsApi;

pub struct NotificationsModule;

#[async_trait]
impl Module for NotificationsModule {
    fn name(&self) -> &'static str {
        NAME
    }

    fn path_prefixes(&self) -> &'static [&'static str] {
        &["/admin/notifications"]
    }

    fn settings(&self) -> Vec<SectionSpec> {
        vec![SectionSpec::of::<NotificationsSection>(), SectionSpec::of::<JobsSection>()]
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        NotificationsApi::openapi()
    }

    fn publishes(&self) -> Vec<EventType> {
        Vec::new()
    }

    fn consumes(&self) -> Vec<EventType> {
        events::routes().events()
    }

    async fn migrate(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        migrations::Migrator::up(db, None).await
    }

    async fn start(&self, ctx: ModuleContext) -> anyhow::Result<Box<dyn Hosted>> {
        let section = ctx.section::<NotificationsSection>();
        let shop_url = section.shop_url.trim_end_matches('/').to_owned();
        let templates = Templates::new(Shop { name: section.shop_name.clone(), url: shop_url.clone() })?;
        let transport = match section.transport {
            TransportKind::File => Transport::files(section.file.dir.clone()),
            TransportKind::Smtp => Transport::smtp(&section.smtp)?,
        };
        let links = Links {
            verify_email: format!("{shop_url}{}", section.verify_email_path),
            reset_password: format!("{shop_url}{}", section.reset_password_path),
        };
        let from = section.from.parse()?;
        let admin = section.admin_email.as_deref().map(str::parse).transpose()?;
        let (queue, jobs) = (Queue::new(NAME, ctx.db.clone()), ctx.section::<JobsSection>());
        let service =
            web::Data::new(Notifications::new(ctx.db, queue.clone(), templates, transport, from, links, admin));
        Ok(Box::new(HostedNotifications { service, queue, jobs }))
    }
}

struct HostedNotifications {
    service: web::Data<Notifications>,
    queue: Queue,
    jobs: Arc<JobsSection>,
}

impl Hosted for HostedNotifications {
    fn routes(&self) -> Routes {
        let service = self.service.clone();
        Arc::new(move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(service.clone()).service(http::list_notifications);
        })
    }

    fn handler(&self) -> Option<Arc<dyn EventHandler>> {
        Some(events::routes().bind(events::NotificationsEvents(self.service.clone())))
    }

    fn background_tasks(&self, shutdown: CancellationToken) -> Vec<BoxFuture<'static, ()>> {
        let service = self.service.clone();
        let worker = Worker::new(self.queue.clone(), &self.jobs).handle(move |job: SendMessage, attempt| {
            let service = service.clone();
            async move { service.send(job, attempt).await }
        });
        vec![worker.run(shutdown).boxed()]
    }

    fn jobs(&self) -> Option<Queue> {
        Some(self.queue.clone())
    }
}
