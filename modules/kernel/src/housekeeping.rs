//! Keeps a module's tables from growing without end.
//!
//! Published outbox rows are only history; handled inbox rows are the memory that makes a
//! redelivery harmless, so they are kept for `retention` — far longer than any broker keeps a
//! message for redelivery. Queued, failing and dead-lettered events are never purged. A module
//! adds what only it knows is spent ([`Purge`]: expired refresh tokens, old idempotency keys).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::{Inbox, Outbox};

/// Rows of a module's own that are no longer needed after some point.
#[async_trait]
pub trait Purge: Send + Sync {
    /// What it purges, for the log line.
    fn what(&self) -> &'static str;

    /// Deletes what is spent by `now`, given the housekeeping `cutoff` (now − retention) for rows
    /// whose only use is to be remembered; returns how many rows went.
    async fn purge(&self, now: DateTime<Utc>, cutoff: DateTime<Utc>) -> anyhow::Result<u64>;
}

/// Purges rows older than `retention`, and what `purges` say is spent, every `interval` until
/// `shutdown`.
#[tracing::instrument(name = "housekeeping", skip_all, fields(module = outbox.module()))]
pub async fn run(
    outbox: Outbox,
    purges: Vec<Arc<dyn Purge>>,
    retention: Duration,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let inbox = Inbox::new(outbox.clone());
    loop {
        let now = crate::db::now();
        let cutoff = now - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        match outbox.purge_published(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "purged published outbox rows"),
            Err(e) => tracing::warn!(error = %e, "cannot purge the outbox"),
        }
        match inbox.purge_processed(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "purged handled inbox rows"),
            Err(e) => tracing::warn!(error = %e, "cannot purge the inbox"),
        }
        for purge in &purges {
            match purge.purge(now, cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, what = purge.what(), "purged"),
                Err(e) => tracing::warn!(error = format!("{e:#}"), what = purge.what(), "cannot purge"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
