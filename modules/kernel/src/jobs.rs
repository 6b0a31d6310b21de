//! Durable background jobs: work a module does off the request path, that survives restarts.
//!
//! A module declares a job as a payload type ([`Job`]: a name, a uniqueness key, a retry policy),
//! writes it with [`Queue::enqueue`] **in the transaction of the state change it follows** (from a
//! request handler or an event handler), so a job exists exactly when the change does, and runs it
//! with a [`Worker`] beside its HTTP server. The rows live in the module's own database
//! (`<module>_jobs`, from the `JobTables` migration), like its outbox.
//!
//! - **Claiming**: a worker takes due rows in one transaction — `FOR UPDATE SKIP LOCKED` on
//!   PostgreSQL and MariaDB, so replicas never take the same row; SQLite's single writer (`BEGIN
//!   IMMEDIATE`) serialises the claims of processes sharing the file.
//! - **At most once at a time**: a claimed row is `running` with a lease (`run_at` = the lease's
//!   end, `jobs.timeout_secs` and a quarter more); the run is cut at the timeout, before the lease ends.
//!   A worker killed mid-run (kill -9) leaves its rows `running`: they are due again once their
//!   lease is over and another worker (or the restarted one) takes them. So a job may run again
//!   after a crash: **every job's effect must be idempotent**, and each job says how it is.
//! - **Retries**: a failed run is retried with exponential backoff and jitter from
//!   `jobs.retry_first_delay_secs` up to `jobs.retry_max_delay_secs`, for
//!   `jobs.give_up_after_hours` since it was queued (a mail server down for an hour loses nothing);
//!   then, or at once for a [`JobError::Permanent`] failure, the row is `failed` and stays visible
//!   (`GET /admin/jobs?status=failed`) until an admin retries it (`POST
//!   /admin/jobs/{module}/{id}/retry`). Finished rows are purged by housekeeping; failed ones never.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::BoxFuture;
use sea_orm::sea_query::{Alias, Asterisk, Expr, ExprTrait, Func, LockBehavior, LockType, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db::locks_rows;
use crate::settings::{Checks, Section, SettingsError};

/// A kind of background work: its payload, serialised as the row's JSON.
pub trait Job: Serialize + DeserializeOwned + Send + 'static {
    /// Its name in the table, the admin API and the metrics; unique within its module, and never
    /// renamed while rows of it may exist.
    const NAME: &'static str;

    /// Two jobs of this type with the same key are one: enqueueing the second changes nothing,
    /// whatever the first's status. What makes a redelivered event's job harmless.
    fn unique_key(&self) -> Option<String> {
        None
    }

    /// Jobs with the same lane run one at a time, in the order they were queued: one is not
    /// claimed while an earlier one of its lane is queued (retries included) or running. Done and
    /// failed ones no longer hold their lane back. What keeps one order's webhooks in order.
    fn lane(&self) -> Option<String> {
        None
    }

    /// How its failed runs are retried: the `[jobs]` settings unless the type says otherwise.
    fn retry(defaults: Retry) -> Retry {
        defaults
    }
}

/// How long failed runs of a job are retried, and how far apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// The delay after the first failure; each further failure doubles it (with jitter: between
    /// half of it and all of it)…
    pub first_delay: Duration,
    /// … up to this.
    pub max_delay: Duration,
    /// Retried until this long after it was queued; then it is `failed`.
    pub give_up_after: Duration,
}

impl Retry {
    /// The wait before the next run after `failures` failed ones.
    pub fn delay(&self, failures: u32) -> Duration {
        crate::bus::backoff(failures, self.first_delay, self.max_delay)
    }
}

/// Why a run did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// It may succeed later (a server down, a database busy): retried per the job's [`Retry`].
    #[error("{0:#}")]
    Retry(anyhow::Error),
    /// It never will (a payload that does not decode, an address refused for good): `failed` at
    /// once, for an admin to look at.
    #[error("{0:#}")]
    Permanent(anyhow::Error),
}

impl From<anyhow::Error> for JobError {
    fn from(e: anyhow::Error) -> Self {
        Self::Retry(e)
    }
}

impl From<DbErr> for JobError {
    fn from(e: DbErr) -> Self {
        Self::Retry(e.into())
    }
}

/// Where a row is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting for its time (`runAt`): new, or retried after a failure.
    Queued,
    /// A worker holds it until `runAt`.
    Running,
    Done,
    /// Given up on: retried by an admin only.
    Failed,
}

impl JobStatus {
    pub const ALL: [Self; 4] = [Self::Queued, Self::Running, Self::Done, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

/// The module's `[jobs]` section: how its workers run. Shared by every module that runs jobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct JobsSection {
    /// Jobs one worker (one module in one process) runs at once.
    pub concurrency: usize,
    /// How often a worker looks for due jobs when nothing woke it (jobs enqueued by another
    /// process, retries coming due).
    pub poll_interval_ms: u64,
    /// A run taking longer is cut and retried; a claim's lease is this plus a quarter: how long
    /// the jobs of a worker that died wait before another takes them.
    pub timeout_secs: u64,
    pub retry_first_delay_secs: u64,
    pub retry_max_delay_secs: u64,
    pub give_up_after_hours: u64,
}

impl Default for JobsSection {
    fn default() -> Self {
        Self {
            concurrency: 4,
            poll_interval_ms: 1000,
            timeout_secs: 120,
            retry_first_delay_secs: 30,
            retry_max_delay_secs: 3600,
            give_up_after_hours: 72,
        }
    }
}

impl Section for JobsSection {
    const KEY: &'static str = "jobs";

    fn check(&self, _checks: Checks) -> Result<(), SettingsError> {
        let at_least_one = [
            ("jobs.concurrency", self.concurrency as u64),
            ("jobs.poll_interval_ms", self.poll_interval_ms),
            ("jobs.timeout_secs", self.timeout_secs),
            ("jobs.retry_first_delay_secs", self.retry_first_delay_secs),
            ("jobs.give_up_after_hours", self.give_up_after_hours),
        ];
        if let Some((key, _)) = at_least_one.iter().find(|(_, value)| *value == 0) {
            return Err(SettingsError::new(*key, "must be at least 1"));
        }
        if self.retry_max_delay_secs < self.retry_first_delay_secs {
            return Err(SettingsError::new(
                "jobs.retry_max_delay_secs",
                "must be at least jobs.retry_first_delay_secs",
            ));
        }
        Ok(())
    }
}

impl JobsSection {
    pub fn retry(&self) -> Retry {
        Retry {
            first_delay: Duration::from_secs(self.retry_first_delay_secs),
            max_delay: Duration::from_secs(self.retry_max_delay_secs),
            give_up_after: Duration::from_secs(self.give_up_after_hours * 3600),
        }
    }
}

/// Metric names of the jobs, labelled `module` and `type`.
pub mod metric {
    /// Rows by status (`queued`, `running`, `failed`, `done`), counted at each scrape.
    pub const JOBS: &str = "bazaar_jobs";
    /// The age of the oldest queued job (since it was queued), at each scrape.
    pub const OLDEST_QUEUED: &str = "bazaar_jobs_oldest_queued_seconds";
    pub const SUCCEEDED: &str = "bazaar_jobs_succeeded_total";
    /// Failed runs that will be retried.
    pub const RETRIED: &str = "bazaar_jobs_retried_total";
    /// Jobs given up on.
    pub const FAILED: &str = "bazaar_jobs_failed_total";
}

/// One module's job table: where its jobs are written, listed and retried.
#[derive(Clone)]
pub struct Queue {
    module: &'static str,
    table: Arc<str>,
    db: DatabaseConnection,
    wake: Arc<Notify>,
    /// The job types its worker runs: the metrics report them even when they have no rows.
    types: Arc<RwLock<BTreeSet<&'static str>>>,
}

/// A job as the admin API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub job_type: String,
    pub status: JobStatus,
    pub attempts: u32,
    pub unique_key: Option<String>,
    /// Its lane: it runs after the earlier jobs of the same lane ([`Job::lane`]).
    pub lane: Option<String>,
    /// The job's payload as it was enqueued.
    pub payload: serde_json::Value,
    /// When it is due (queued), or when its worker's lease ends (running).
    pub run_at: DateTime<Utc>,
    /// When its retry clock started.
    pub queued_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// How many jobs of a type are in a status, and since when the oldest queued one waits.
#[derive(Debug, Clone, PartialEq)]
pub struct JobCount {
    pub job_type: String,
    pub status: JobStatus,
    pub count: u64,
    pub oldest_queued_at: Option<DateTime<Utc>>,
}

/// A row's columns, in the order [`record`] reads them and [`Queue::enqueue`] writes the first ten.
const COLUMNS: [&str; 12] = [
    "id",
    "job_type",
    "unique_key",
    "payload",
    "status",
    "attempts",
    "run_at",
    "queued_at",
    "created_at",
    "lane",
    "finished_at",
    "last_error",
];

impl Queue {
    pub fn new(module: &'static str, db: DatabaseConnection) -> Self {
        Self {
            module,
            table: format!("{module}_jobs").into(),
            db,
            wake: Arc::new(Notify::new()),
            types: Arc::default(),
        }
    }

    pub fn module(&self) -> &'static str {
        self.module
    }

    fn table(&self) -> Alias {
        Alias::new(&*self.table)
    }

    /// Writes `job` in the caller's transaction, due at once; returns its id, or `None` when a job
    /// of its type with its [`unique_key`](Job::unique_key) exists already. Call
    /// [`wake`](Self::wake) once the transaction is committed, so a worker starts it at once.
    ///
    /// Looks before inserting (an insert-or-ignore is not portable: a failed INSERT aborts a
    /// PostgreSQL transaction), so only a concurrent twin meets the unique key and fails its
    /// transaction, which its caller retries and then finds the job.
    pub async fn enqueue<J: Job, C: ConnectionTrait>(&self, txn: &C, job: &J) -> Result<Option<Uuid>, DbErr> {
        let key = job.unique_key();
        if let Some(key) = &key {
            let exists = Query::select()
                .column("id")
                .from(self.table())
                .and_where(Expr::col("job_type").eq(J::NAME))
                .and_where(Expr::col("unique_key").eq(key.as_str()))
                .to_owned();
            if txn.query_one(&exists).await?.is_some() {
                return Ok(None);
            }
        }
        let payload = serde_json::to_string(job).map_err(|e| DbErr::Json(e.to_string()))?;
        let (id, now) = (Uuid::now_v7(), crate::db::now());
        let insert = Query::insert()
            .into_table(self.table())
            // The columns a new row sets: all but `finished_at` and `last_error`.
            .columns(COLUMNS[..10].iter().copied())
            .values_panic([
                id.to_string().into(),
                J::NAME.into(),
                key.into(),
                payload.into(),
                JobStatus::Queued.as_str().into(),
                0i32.into(),
                now.into(),
                now.into(),
                now.into(),
                job.lane().into(),
            ])
            .to_owned();
        txn.execute(&insert).await?;
        Ok(Some(id))
    }

    /// Tells this process's worker that jobs were committed.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Jobs newest first, of one status and type when given.
    pub async fn list(
        &self,
        status: Option<JobStatus>,
        job_type: Option<&str>,
        limit: u64,
    ) -> Result<Vec<JobRecord>, DbErr> {
        let mut select = Query::select();
        select.columns(COLUMNS).from(self.table()).order_by("created_at", Order::Desc).limit(limit);
        if let Some(status) = status {
            select.and_where(Expr::col("status").eq(status.as_str()));
        }
        if let Some(job_type) = job_type {
            select.and_where(Expr::col("job_type").eq(job_type));
        }
        self.db.query_all(&select).await?.iter().map(record).collect()
    }

    /// One job, by id.
    pub async fn get(&self, id: Uuid) -> Result<Option<JobRecord>, DbErr> {
        let select = Query::select()
            .columns(COLUMNS)
            .from(self.table())
            .and_where(Expr::col("id").eq(id.to_string()))
            .to_owned();
        self.db.query_one(&select).await?.as_ref().map(record).transpose()
    }

    /// The id and status of each job of type `J` whose unique key is among `keys` (a module shows
    /// its own rows' progress with them).
    pub async fn statuses<J: Job>(&self, keys: &[String]) -> Result<HashMap<String, (Uuid, JobStatus)>, DbErr> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let select = Query::select()
            .columns(["id", "unique_key", "status"])
            .from(self.table())
            .and_where(Expr::col("job_type").eq(J::NAME))
            .and_where(Expr::col("unique_key").is_in(keys.iter().map(String::as_str)))
            .to_owned();
        let mut statuses = HashMap::new();
        for row in self.db.query_all(&select).await? {
            let (id, key, status): (String, String, String) =
                (row.try_get("", "id")?, row.try_get("", "unique_key")?, row.try_get("", "status")?);
            let id = job_id(&id)?;
            let status = JobStatus::parse(&status).ok_or_else(|| DbErr::Type(format!("job status {status}")))?;
            statuses.insert(key, (id, status));
        }
        Ok(statuses)
    }

    /// Queues a `failed` job again, due now, its retry clock restarted; `false` if there is no
    /// failed job `id`.
    pub async fn retry(&self, id: Uuid) -> Result<bool, DbErr> {
        let now = crate::db::now();
        let update = Query::update()
            .table(self.table())
            .value("status", JobStatus::Queued.as_str())
            .value("run_at", now)
            .value("queued_at", now)
            .value("finished_at", Option::<DateTime<Utc>>::None)
            .and_where(Expr::col("id").eq(id.to_string()))
            .and_where(Expr::col("status").eq(JobStatus::Failed.as_str()))
            .to_owned();
        let retried = self.db.execute(&update).await?.rows_affected() == 1;
        if retried {
            self.wake();
        }
        Ok(retried)
    }

    /// Rows per type and status, with the oldest queued job's time, for the metrics. Every type
    /// the worker runs appears in every status, with 0 where there are none.
    pub async fn counts(&self) -> Result<Vec<JobCount>, DbErr> {
        let select = Query::select()
            .columns(["job_type", "status"])
            .expr_as(Func::count(Expr::col(Asterisk)), "n")
            .expr_as(Func::min(Expr::col("queued_at")), "oldest")
            .from(self.table())
            .group_by_columns(["job_type", "status"])
            .to_owned();
        let mut counts: HashMap<(String, JobStatus), JobCount> = HashMap::new();
        let known = self.types.read().unwrap_or_else(|e| e.into_inner()).clone();
        for job_type in known {
            for status in JobStatus::ALL {
                let zero = JobCount { job_type: job_type.to_owned(), status, count: 0, oldest_queued_at: None };
                counts.insert((job_type.to_owned(), status), zero);
            }
        }
        for row in self.db.query_all(&select).await? {
            let job_type: String = row.try_get("", "job_type")?;
            let status: String = row.try_get("", "status")?;
            let Some(status) = JobStatus::parse(&status) else { continue };
            let count: i64 = row.try_get("", "n")?;
            let oldest: Option<DateTime<Utc>> =
                if status == JobStatus::Queued { row.try_get("", "oldest").ok() } else { None };
            let entry = JobCount {
                job_type: job_type.clone(),
                status,
                count: u64::try_from(count).unwrap_or(0),
                oldest_queued_at: oldest,
            };
            counts.insert((job_type, status), entry);
        }
        let mut counts: Vec<JobCount> = counts.into_values().collect();
        counts.sort_by(|a, b| (&a.job_type, a.status.as_str()).cmp(&(&b.job_type, b.status.as_str())));
        Ok(counts)
    }

    /// Sets the [`metric::JOBS`] and [`metric::OLDEST_QUEUED`] gauges from [`counts`](Self::counts).
    pub async fn record_metrics(&self) -> Result<(), DbErr> {
        let now = crate::db::now();
        let mut oldest: HashMap<String, f64> = HashMap::new();
        for count in self.counts().await? {
            let labels = [("module", self.module.to_owned()), ("type", count.job_type.clone())];
            let mut with_status = labels.to_vec();
            with_status.push(("status", count.status.as_str().to_owned()));
            metrics::gauge!(metric::JOBS, &with_status).set(count.count as f64);
            if count.status == JobStatus::Queued {
                let age =
                    count.oldest_queued_at.map_or(0.0, |at| Ord::max((now - at).num_milliseconds(), 0) as f64 / 1000.0);
                oldest.insert(count.job_type, age);
            }
        }
        for (job_type, age) in oldest {
            metrics::gauge!(metric::OLDEST_QUEUED, "module" => self.module, "type" => job_type).set(age);
        }
        Ok(())
    }
}

/// Finished jobs are history: housekeeping deletes the `done` ones older than its retention.
/// Failed ones stay until an admin retries them.
#[async_trait::async_trait]
impl crate::housekeeping::Purge for Queue {
    fn what(&self) -> &'static str {
        "finished jobs"
    }

    async fn purge(&self, _now: DateTime<Utc>, cutoff: DateTime<Utc>) -> anyhow::Result<u64> {
        let delete = Query::delete()
            .from_table(self.table())
            .and_where(Expr::col("status").eq(JobStatus::Done.as_str()))
            .and_where(Expr::col("finished_at").lt(cutoff))
            .to_owned();
        Ok(self.db.execute(&delete).await?.rows_affected())
    }
}

fn job_id(id: &str) -> Result<Uuid, DbErr> {
    id.parse().map_err(|e| DbErr::Type(format!("job id {id}: {e}")))
}

fn record(row: &sea_orm::QueryResult) -> Result<JobRecord, DbErr> {
    let id: String = row.try_get("", "id")?;
    let status: String = row.try_get("", "status")?;
    let payload: String = row.try_get("", "payload")?;
    let attempts: i32 = row.try_get("", "attempts")?;
    Ok(JobRecord {
        id: job_id(&id)?,
        job_type: row.try_get("", "job_type")?,
        status: JobStatus::parse(&status).ok_or_else(|| DbErr::Type(format!("job status {status}")))?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        unique_key: row.try_get("", "unique_key")?,
        lane: row.try_get("", "lane")?,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload)),
        run_at: row.try_get("", "run_at")?,
        queued_at: row.try_get("", "queued_at")?,
        created_at: row.try_get("", "created_at")?,
        finished_at: row.try_get("", "finished_at")?,
        last_error: row.try_get("", "last_error")?,
    })
}

/// Which run of which job a handler is doing.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    pub id: Uuid,
    /// 1 for the first run.
    pub number: u32,
}

type Run = Arc<dyn Fn(&str, Attempt) -> BoxFuture<'static, Result<(), JobError>> + Send + Sync>;

struct Handler {
    run: Run,
    retry: Retry,
}

/// A claimed row, as its run needs it.
struct Claimed {
    id: Uuid,
    job_type: String,
    payload: String,
    attempt: u32,
    queued_at: DateTime<Utc>,
}

/// Runs one module's jobs: claims due rows, runs them with their type's handler, records the
/// outcome. One per module per process; replicas share the table.
pub struct Worker {
    queue: Queue,
    handlers: HashMap<&'static str, Handler>,
    settings: JobsSection,
}

impl Worker {
    pub fn new(queue: Queue, settings: &JobsSection) -> Self {
        Self { queue, handlers: HashMap::new(), settings: settings.clone() }
    }

    /// Runs jobs of type `J` with `run`.
    ///
    /// # Panics
    /// If `J`'s name is taken by another handler of this worker: a bug, found at start-up.
    pub fn handle<J, F, Fut>(mut self, run: F) -> Self
    where
        J: Job,
        F: Fn(J, Attempt) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        let run = Arc::new(run);
        let decode_and_run: Run =
            Arc::new(move |payload: &str, attempt: Attempt| match serde_json::from_str::<J>(payload) {
                Ok(job) => run(job, attempt).boxed(),
                Err(e) => {
                    let error = anyhow::anyhow!("the payload does not decode as {}: {e}", J::NAME);
                    futures::future::ready(Err(JobError::Permanent(error))).boxed()
                }
            });
        let handler = Handler { run: decode_and_run, retry: J::retry(self.settings.retry()) };
        assert!(self.handlers.insert(J::NAME, handler).is_none(), "two handlers of the job {}", J::NAME);
        self.queue.types.write().unwrap_or_else(|e| e.into_inner()).insert(J::NAME);
        self
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.settings.timeout_secs)
    }

    /// How long a claim holds a row: the timeout and a quarter more (at least a second), the time
    /// to record the outcome before another worker may take it.
    fn lease(&self) -> Duration {
        self.timeout() + (self.timeout() / 4).max(Duration::from_secs(1))
    }

    /// Runs jobs until `shutdown`; then waits up to 10 s for the runs under way, and leaves the
    /// rest to their leases.
    #[tracing::instrument(name = "jobs.worker", skip_all, fields(module = self.queue.module))]
    pub async fn run(self, shutdown: CancellationToken) {
        let worker = Arc::new(self);
        let poll = Duration::from_millis(worker.settings.poll_interval_ms);
        let mut running = JoinSet::new();
        let mut failures = 0u32;
        loop {
            let free = worker.settings.concurrency.saturating_sub(running.len());
            if free > 0 {
                match worker.claim(free).await {
                    Ok(claimed) => {
                        failures = 0;
                        for job in claimed {
                            running.spawn(worker.clone().execute(job));
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        let delay = crate::bus::backoff(failures, Duration::from_millis(100), Duration::from_secs(30));
                        tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot claim jobs");
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => continue,
                            _ = shutdown.cancelled() => break,
                        }
                    }
                }
            }
            tokio::select! {
                _ = worker.queue.wake.notified() => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        let drained =
            tokio::time::timeout(Duration::from_secs(10), async { while running.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                left = running.len(),
                "jobs still running at shutdown: they run again when their lease ends"
            );
            running.abort_all();
        }
        tracing::debug!("jobs worker stopped");
    }

    /// Claims and runs every job due now, one batch, and waits for them: what a test drives
    /// instead of [`run`](Self::run). Returns how many ran.
    pub async fn run_due(self: &Arc<Self>) -> Result<usize, DbErr> {
        let claimed = self.claim(self.settings.concurrency).await?;
        let n = claimed.len();
        futures::future::join_all(claimed.into_iter().map(|job| self.clone().execute(job))).await;
        Ok(n)
    }

    /// Takes up to `limit` due jobs of the types this worker runs: queued ones whose time has
    /// come, and running ones whose lease is over (their worker died).
    async fn claim(&self, limit: usize) -> Result<Vec<Claimed>, DbErr> {
        if self.handlers.is_empty() {
            return Ok(Vec::new());
        }
        let now = crate::db::now();
        let types: Vec<&str> = self.handlers.keys().copied().collect();
        let unfinished = [JobStatus::Queued.as_str(), JobStatus::Running.as_str()];
        let (table, earlier) = (self.queue.table(), Alias::new("earlier"));
        // An earlier job of the candidate's lane that has not finished holds it back.
        let held_back = Query::select()
            .expr(Expr::val(1))
            .from_as(table.clone(), earlier.clone())
            .and_where(Expr::col((earlier.clone(), Alias::new("lane"))).equals((table.clone(), Alias::new("lane"))))
            .and_where(Expr::col((earlier.clone(), Alias::new("status"))).is_in(unfinished))
            .and_where(Expr::col((earlier, Alias::new("id"))).lt(Expr::col((table.clone(), Alias::new("id")))))
            .to_owned();
        let due = || {
            Query::select()
                .from(table.clone())
                .and_where(Expr::col("status").is_in(unfinished))
                .and_where(Expr::col("run_at").lte(now))
                .and_where(Expr::col("job_type").is_in(types.clone()))
                .and_where(
                    Expr::col((table.clone(), Alias::new("lane"))).is_null().or(Expr::exists(held_back.clone()).not()),
                )
                .to_owned()
        };
        // A look without a transaction first: idle polls must not take SQLite's write lock.
        let probe = due().column("id").limit(1).to_owned();
        if self.queue.db.query_one(&probe).await?.is_none() {
            return Ok(Vec::new());
        }
        let backend = self.queue.db.get_database_backend();
        let txn = crate::db::begin_write(&self.queue.db).await?;
        let mut select = due();
        select
            .columns(["id", "job_type", "payload", "attempts", "queued_at"])
            .order_by("run_at", Order::Asc)
            .limit(limit as u64);
        if locks_rows(backend) {
            select.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let mut claimed = Vec::new();
        for row in txn.query_all(&select).await? {
            let id: String = row.try_get("", "id")?;
            let attempts: i32 = row.try_get("", "attempts")?;
            claimed.push(Claimed {
                id: job_id(&id)?,
                job_type: row.try_get("", "job_type")?,
                payload: row.try_get("", "payload")?,
                attempt: u32::try_from(attempts).unwrap_or(0) + 1,
                queued_at: row.try_get("", "queued_at")?,
            });
        }
        if claimed.is_empty() {
            txn.rollback().await?;
            return Ok(claimed);
        }
        let lease_until = now + chrono::Duration::from_std(self.lease()).unwrap_or_default();
        let update = Query::update()
            .table(self.queue.table())
            .value("status", JobStatus::Running.as_str())
            .value("run_at", lease_until)
            .value("attempts", Expr::col("attempts").add(1))
            .and_where(Expr::col("id").is_in(claimed.iter().map(|job| job.id.to_string())))
            .to_owned();
        txn.execute(&update).await?;
        txn.commit().await?;
        Ok(claimed)
    }

    /// Runs one claimed job and records what came of it.
    async fn execute(self: Arc<Self>, job: Claimed) {
        let Some(handler) = self.handlers.get(job.job_type.as_str()) else { return };
        let span = tracing::info_span!("job", module = self.queue.module, job.r#type = %job.job_type, job.id = %job.id, attempt = job.attempt);
        let attempt = Attempt { id: job.id, number: job.attempt };
        let run = (handler.run)(&job.payload, attempt);
        let outcome =
            match tokio::time::timeout(self.timeout(), tracing::Instrument::instrument(run, span.clone())).await {
                Ok(outcome) => outcome,
                Err(_) => Err(JobError::Retry(anyhow::anyhow!("timed out after {} s", self.settings.timeout_secs))),
            };
        let _entered = span.enter();
        if let Err(e) = self.record(&job, handler.retry, outcome).await {
            tracing::warn!(error = %e, "cannot record a job's outcome: it runs again when its lease ends");
        }
    }

    async fn record(&self, job: &Claimed, retry: Retry, outcome: Result<(), JobError>) -> Result<(), DbErr> {
        let now = crate::db::now();
        let labels = [("module", self.queue.module.to_owned()), ("type", job.job_type.clone())];
        let mut update = Query::update();
        update
            .table(self.queue.table())
            .and_where(Expr::col("id").eq(job.id.to_string()))
            // Still ours: not taken by another worker after our lease ended.
            .and_where(Expr::col("status").eq(JobStatus::Running.as_str()))
            .and_where(Expr::col("attempts").eq(job.attempt as i32));
        match outcome {
            Ok(()) => {
                update
                    .value("status", JobStatus::Done.as_str())
                    .value("finished_at", now)
                    .value("last_error", Option::<String>::None);
                metrics::counter!(metric::SUCCEEDED, &labels).increment(1);
                tracing::debug!("job done");
            }
            Err(JobError::Retry(e)) if retry_until(job.queued_at, retry) > now => {
                let delay = retry.delay(job.attempt);
                let at = now + chrono::Duration::from_std(delay).unwrap_or_default();
                update
                    .value("status", JobStatus::Queued.as_str())
                    .value("run_at", at)
                    .value("last_error", format!("{e:#}"));
                metrics::counter!(metric::RETRIED, &labels).increment(1);
                tracing::warn!(error = format!("{e:#}"), retry_in_s = delay.as_secs(), "job failed; retried later");
            }
            Err(e) => {
                update
                    .value("status", JobStatus::Failed.as_str())
                    .value("finished_at", now)
                    .value("last_error", e.to_string());
                metrics::counter!(metric::FAILED, &labels).increment(1);
                tracing::error!(error = %e, "job failed for good; an admin may retry it");
            }
        }
        if self.queue.db.execute(&update).await?.rows_affected() == 0 {
            tracing::warn!("the job's lease ended before its outcome was recorded");
        }
        Ok(())
    }
}

fn retry_until(queued_at: DateTime<Utc>, retry: Retry) -> DateTime<Utc> {
    queued_at + chrono::Duration::from_std(retry.give_up_after).unwrap_or(chrono::Duration::MAX)
}
