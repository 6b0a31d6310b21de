//! The HTTP client that delivers: one POST per attempt, safe against the receiver.
//!
//! - Every name is resolved by [`GuardedResolver`], which drops internal addresses (unless
//!   `webhooks.allow_private_networks`) at the moment of connecting: a name that resolved to a
//!   public address at registration and to 10.0.0.5 now (DNS rebinding) connects nowhere.
//! - Redirects are not followed (a 3xx is a failed attempt), no proxy from the environment is used
//!   (it would connect in our place), the whole attempt is cut at `webhooks.timeout_secs`, and at
//!   most `webhooks.max_response_bytes` of the answer are read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};

use crate::domain::{EndpointUrl, is_internal};

/// Resolves with the system's resolver, keeping only the addresses a delivery may go to.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addresses = resolve(&host, 0, allow_private).await?;
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// Why a name gives no address to deliver to.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("cannot resolve {0}: {1}")]
    Lookup(String, std::io::Error),
    #[error("{0} resolves only to private, loopback or link-local addresses")]
    OnlyInternal(String),
}

/// The addresses `host` resolves to that a delivery may go to.
pub async fn resolve(host: &str, port: u16, allow_private: bool) -> Result<Vec<SocketAddr>, ResolveError> {
    let all: Vec<SocketAddr> =
        tokio::net::lookup_host((host, port)).await.map_err(|e| ResolveError::Lookup(host.to_owned(), e))?.collect();
    let allowed: Vec<SocketAddr> = all.iter().copied().filter(|a| allow_private || !is_internal(a.ip())).collect();
    if allowed.is_empty() && !all.is_empty() {
        return Err(ResolveError::OnlyInternal(host.to_owned()));
    }
    Ok(allowed)
}

/// What the receiver answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub latency: Duration,
    /// The start of its body, for the delivery's `lastError` when it is not a 2xx.
    pub excerpt: String,
}

/// Why no answer came.
#[derive(Debug)]
pub struct NoAnswer {
    pub error: String,
    pub latency: Duration,
}

pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
    max_response_bytes: usize,
}

impl Sender {
    pub fn new(timeout: Duration, allow_private: bool, max_response_bytes: usize) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("Bazaar-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client, allow_private, max_response_bytes })
    }

    pub fn allow_private(&self) -> bool {
        self.allow_private
    }

    /// POSTs `body` with the Standard Webhooks headers.
    pub async fn post(
        &self,
        url: &EndpointUrl,
        id: &str,
        timestamp: i64,
        signature: &str,
        body: String,
    ) -> Result<Answer, NoAnswer> {
        let started = Instant::now();
        let no_answer = |error: String| NoAnswer { error, latency: started.elapsed() };
        // An address in the URL is never resolved: check it here.
        if let Some(ip) = url.literal_address()
            && !self.allow_private
            && is_internal(ip)
        {
            return Err(no_answer(format!("{ip} is a private, loopback or link-local address")));
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let timestamp = timestamp.to_string();
        for (name, value) in [("webhook-id", id), ("webhook-timestamp", &timestamp), ("webhook-signature", signature)] {
            headers.insert(name, HeaderValue::from_str(value).map_err(|e| no_answer(e.to_string()))?);
        }
        let sent = self.client.post(url.url().clone()).headers(headers).body(body).send().await;
        let mut response = sent.map_err(|e| no_answer(describe(&e)))?;
        let status = response.status().as_u16();
        let mut read = Vec::new();
        while read.len() < self.max_response_bytes {
            match response.chunk().await {
                Ok(Some(chunk)) => read.extend_from_slice(&chunk),
                Ok(None) => break,
                // A body cut short does not change the status the receiver gave.
                Err(_) => break,
            }
        }
        read.truncate(self.max_response_bytes.min(500));
        Ok(Answer { status, latency: started.elapsed(), excerpt: String::from_utf8_lossy(&read).into_owned() })
    }
}

/// reqwest's error with its causes: "error sending request" alone says nothing.
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() { "timed out".to_owned() } else { e.to_string() };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A server on 127.0.0.1 that answers every connection with `answer`; returns its port.
    async fn answering(answer: &'static [u8]) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let port = listener.local_addr().expect("bound").port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket.write_all(answer).await;
            }
        });
        port
    }

    fn sender(allow_private: bool) -> Sender {
        Sender::new(Duration::from_secs(5), allow_private, 16).expect("a client")
    }

    async fn post(sender: &Sender, url: &str) -> Result<Answer, NoAnswer> {
        let url = EndpointUrl::parse(url, true).expect("a URL");
        sender.post(&url, "msg_1", 1, "v1,x", "{}".into()).await
    }

    /// The connection-time check: a name resolving to this host is refused by the client's own
    /// resolver (what DNS rebinding would exploit), an address in the URL before any connection.
    #[tokio::test]
    async fn internal_destinations_are_refused_when_connecting_unless_allowed() {
        let port = answering(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n").await;
        for url in [format!("http://localhost:{port}/hook"), format!("http://127.0.0.1:{port}/hook")] {
            let refused = post(&sender(false), &url).await.expect_err("refused");
            assert!(refused.error.contains("private, loopback or link-local"), "{url}: {}", refused.error);
            let answer = post(&sender(true), &url).await.expect("allowed");
            assert_eq!(answer.status, 204, "{url}");
        }
    }

    #[tokio::test]
    async fn redirects_are_not_followed_and_answers_are_read_only_so_far() {
        let port =
            answering(b"HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/\r\nconnection: close\r\n\r\n").await;
        let answer = post(&sender(true), &format!("http://127.0.0.1:{port}/")).await.expect("an answer");
        assert_eq!(answer.status, 302, "the 302 itself is the answer");

        let port = answering(b"HTTP/1.1 500 Oops\r\ncontent-length: 64\r\nconnection: close\r\n\r\n0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef").await;
        let answer = post(&sender(true), &format!("http://127.0.0.1:{port}/")).await.expect("an answer");
        assert_eq!((answer.status, answer.excerpt.as_str()), (500, "0123456789abcdef"), "16 bytes read at most");
    }
}
