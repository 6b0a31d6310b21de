//! How a message leaves: an SMTP server (lettre: STARTTLS, TLS or plain for a local catcher), or
//! `.eml` files in a folder (the embedded default: the single container needs no mail server, and
//! a developer opens what would have been sent).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use lettre::message::{Mailbox, MultiPart, header};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::ExposeSecret;

use crate::domain::Message;
use crate::{Encryption, SmtpSection};

/// Why a message was not handed over.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The server is unreachable or said "later" (4xx): retried.
    #[error("{0:#}")]
    Transient(anyhow::Error),
    /// The server refused it for good (5xx: no such mailbox, rejected) or the message cannot be
    /// made (an address that does not parse): never retried by itself.
    #[error("{0:#}")]
    Permanent(anyhow::Error),
}

pub enum Transport {
    Files { dir: PathBuf },
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

impl Transport {
    pub fn files(dir: PathBuf) -> Self {
        Self::Files { dir }
    }

    pub fn smtp(settings: &SmtpSection) -> anyhow::Result<Self> {
        let host = settings.host.as_str();
        let builder = match settings.tls {
            Encryption::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .with_context(|| format!("notifications.smtp.host {host}"))?,
            Encryption::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .with_context(|| format!("notifications.smtp.host {host}"))?,
            Encryption::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        };
        let mut builder = builder.port(settings.port).timeout(Some(Duration::from_secs(settings.timeout_secs)));
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.expose_secret().to_owned()));
        }
        Ok(Self::Smtp(builder.build()))
    }

    /// Hands `message` over, from `from`. The same message sent twice has the same Message-ID; as
    /// a file it is the same file, written again.
    pub async fn send(&self, from: &Mailbox, message: &Message) -> Result<(), SendError> {
        let email = build(from, message).map_err(SendError::Permanent)?;
        match self {
            Self::Files { dir } => {
                let write = async {
                    tokio::fs::create_dir_all(dir).await?;
                    // Written whole, then renamed: a reader never sees half a message.
                    let partial = dir.join(format!(".{}.eml.partial", message.id));
                    tokio::fs::write(&partial, email.formatted()).await?;
                    tokio::fs::rename(&partial, dir.join(format!("{}.eml", message.id))).await
                };
                write.await.with_context(|| format!("cannot write to {}", dir.display())).map_err(SendError::Transient)
            }
            Self::Smtp(smtp) => smtp.send(email).await.map(drop).map_err(|e| {
                let permanent = e.is_permanent();
                let e = anyhow::Error::new(e).context("the SMTP server did not take the message");
                if permanent { SendError::Permanent(e) } else { SendError::Transient(e) }
            }),
        }
    }
}

fn build(from: &Mailbox, message: &Message) -> anyhow::Result<lettre::Message> {
    let to: Mailbox = message.to.parse().with_context(|| format!("the address {:?} does not parse", message.to))?;
    let email = lettre::Message::builder()
        .from(from.clone())
        .to(to)
        .subject(message.content.subject.clone())
        .message_id(Some(message.message_id.clone()))
        .header(header::Date::now())
        .multipart(MultiPart::alternative_plain_html(message.content.text.clone(), message.content.html.clone()))?;
    Ok(email)
}
