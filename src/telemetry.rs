//! Logs and metrics.
//!
//! Logs go to stdout, human-readable in development and one JSON object per line in production
//! (`telemetry.format`). Metrics go to a process-wide Prometheus recorder served at `/metrics`.

use std::io::{BufWriter, Write};
use std::os::fd::AsFd;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, TelemetrySettings};

/// Installs the global subscriber; `RUST_LOG` overrides `telemetry.filter`. A second call (tests)
/// keeps the first subscriber.
///
/// Lines are formatted on the thread that logs and written by a thread of their own, in batches:
/// a request never waits for stdout (a slow pipe or log collector), and a burst of lines costs one
/// write instead of one each. Nothing is dropped: when `QUEUED_LINES` wait, loggers wait. Keep the
/// returned guard until the process ends; dropping it writes what is queued.
#[must_use = "dropping the guard stops the log writer"]
pub fn init(settings: &TelemetrySettings) -> Option<WorkerGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.filter));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("bazaar-log")
        .finish(stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    let installed = match settings.format {
        LogFormat::Pretty => builder.compact().try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
    };
    installed.is_ok().then_some(guard)
}

/// Standard output without its line buffering (one write per line), buffered instead: the log
/// thread flushes whenever its queue runs empty. Falls back to `Stdout` if fd 1 cannot be shared.
fn stdout() -> Box<dyn Write + Send> {
    match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(BufWriter::with_capacity(64 * 1024, std::fs::File::from(fd))),
        Err(_) => Box::new(std::io::stdout()),
    }
}

/// Log lines waiting for the writer at most (the queue is allocated up front: 32 bytes a line).
const QUEUED_LINES: usize = 8192;

pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const HTTP_DURATION: &str = "http_request_duration_seconds";

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
        // An event waits out its retries too: minutes, not milliseconds, at the far end.
        const DELAY_BUCKETS: &[f64] =
            &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0];
        PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), BUCKETS)
            .and_then(|builder| {
                builder.set_buckets_for_metric(Matcher::Full(kernel::bus::metric::DELAY.to_owned()), DELAY_BUCKETS)
            })
            .and_then(|builder| builder.install_recorder())
            .unwrap_or_else(|e| {
                // Another recorder is installed (an embedding program's): render an empty one.
                tracing::warn!(error = %e, "metrics recorder not installed; /metrics will be empty");
                PrometheusBuilder::new().build_recorder().handle()
            })
    })
}

/// Folds the recorded samples into the histograms every few seconds. `install_recorder` leaves this
/// to the caller: without it every request's duration stays queued until the next scrape, so a
/// process nobody scrapes grows by each request it serves.
pub async fn upkeep(shutdown: CancellationToken) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = every.tick() => metrics().run_upkeep(),
            _ = shutdown.cancelled() => return,
        }
    }
}
