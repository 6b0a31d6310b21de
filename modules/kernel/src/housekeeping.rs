//! Keeps a module's outbox and inbox from growing without end.
//!
//! Published outbox rows are only history; handled inbox rows are the memory that makes a
//! redelivery harmless, so they are kept for `retention` — far longer than any broker keeps a
//! message for redelivery. Queued, failing and dead-lettered events are never purged.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{Inbox, Outbox};

/// Purges rows older than `retention` every `interval` until `shutdown`.
#[tracing::instrument(name = "housekeeping", skip_all, fields(module = outbox.module()))]
pub async fn run(outbox: Outbox, retention: Duration, interval: Duration, shutdown: CancellationToken) {
    let inbox = Inbox::new(outbox.clone());
    loop {
        let cutoff = crate::db::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
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
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
