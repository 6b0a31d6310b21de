//! The kernel's durable jobs on every engine: enqueued with the state change or not at all, run
//! once, retried with backoff, given up on visibly, retried by an admin, taken up again after a
//! worker's death, never run by two workers at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kernel::housekeeping::Purge;
use kernel::jobs::{Attempt, Job, JobError, JobStatus, JobsSection, Queue, Retry, Worker};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::engines::{Engine, TestDatabase, on_every_engine};
use crate::helpers::eventually;

on_every_engine!(
    a_job_exists_only_if_its_transaction_commits_and_runs_once,
    a_job_with_a_known_unique_key_is_not_enqueued_twice,
    a_failing_job_is_retried_with_backoff_until_it_succeeds,
    a_permanent_failure_is_kept_failed_until_an_admin_retries_it,
    a_job_failing_past_its_retry_window_is_given_up_on,
    a_job_whose_worker_died_is_taken_up_again_when_its_lease_ends,
    a_run_longer_than_the_timeout_is_cut_and_retried,
    two_workers_run_each_job_exactly_once,
    jobs_of_one_lane_run_one_at_a_time_in_order,
    counts_and_purge_see_every_status,
);

const MODULE: &str = "jobber";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Greet {
    to: String,
}

impl Job for Greet {
    const NAME: &'static str = "greet";

    fn unique_key(&self) -> Option<String> {
        Some(self.to.clone())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Count {
    n: u32,
}

impl Job for Count {
    const NAME: &'static str = "count";

    fn retry(defaults: Retry) -> Retry {
        Retry { first_delay: Duration::from_millis(50), max_delay: Duration::from_millis(200), ..defaults }
    }
}

/// A step of a lane: steps of one lane run in order, one at a time.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Step {
    lane: String,
    n: u32,
}

impl Job for Step {
    const NAME: &'static str = "step";

    fn lane(&self) -> Option<String> {
        Some(self.lane.clone())
    }

    fn retry(defaults: Retry) -> Retry {
        Retry { first_delay: Duration::from_millis(50), max_delay: Duration::from_millis(100), ..defaults }
    }
}

struct Setup {
    db: DatabaseConnection,
    queue: Queue,
    _dir: tempfile::TempDir,
    database: TestDatabase,
}

async fn setup(engine: Engine) -> Option<Setup> {
    crate::helpers::init_logs();
    let dir = tempfile::tempdir().expect("a folder");
    let database = TestDatabase::create(engine, dir.path()).await?;
    let db = kernel::db::connect(&database.url_for(MODULE), 5).await.expect("a database");
    let manager = migrations_kernel::SchemaManager::new(&db);
    migrations_kernel::MigrationTrait::up(&migrations_kernel::JobTables::new(MODULE), &manager)
        .await
        .expect("jobs table");
    migrations_kernel::MigrationTrait::up(&migrations_kernel::JobLanes::new(MODULE), &manager)
        .await
        .expect("jobs' lanes");
    let queue = Queue::new(MODULE, db.clone());
    Some(Setup { db, queue, _dir: dir, database })
}

fn settings() -> JobsSection {
    JobsSection { poll_interval_ms: 50, ..JobsSection::default() }
}

async fn enqueue<J: Job>(setup: &Setup, job: &J) -> Option<kernel::uuid::Uuid> {
    let txn = setup.db.begin().await.expect("a transaction");
    let id = setup.queue.enqueue(&txn, job).await.expect("enqueued");
    txn.commit().await.expect("committed");
    id
}

/// Runs of each job id, as the handlers saw them.
type Runs = Arc<Mutex<HashMap<kernel::uuid::Uuid, Vec<u32>>>>;

fn record(runs: &Runs, attempt: Attempt) {
    runs.lock().expect("not poisoned").entry(attempt.id).or_default().push(attempt.number);
}

async fn status_of(queue: &Queue, id: kernel::uuid::Uuid) -> JobStatus {
    queue.get(id).await.expect("a read").expect("the job").status
}

async fn a_job_exists_only_if_its_transaction_commits_and_runs_once(engine: Engine) {
    let Some(setup) = setup(engine).await else { return };
    let txn = setup.db.begin().await.expect("the database");
    setup.queue.enqueue(&txn, &Greet { to: "rolled back".into() }).await.expect("the database");
    txn.rollback().await.expect("the database");
    assert!(setup.queue.list(None, None, 10).await.expect("the database").is_empty(), "a rolled-back job is not there");

    let id = enqueue(&setup, &Greet { to: "ada".into() }).await.expect("a new job");
    let runs = Runs::default();
    let seen = runs.clone();
    let greeted = Arc::new(Mutex::new(Vec::new()));
    let names = greeted.clone();
    let worker = Arc::new(Worker::new(setup.queue.clone(), &settings()).handle(move |job: Greet, attempt| {
        record(&seen, attempt);
        names.lock().expect("not poisoned").push(job.to);
        async { Ok(()) }
    }));
    assert_eq!(worker.run_due().await.expect("a batch"), 1);
    assert_eq!(worker.run_due().await.expect("a batch"), 0, "a done job is not run again");
    assert_eq!(*greeted.lock().expect("not poisoned"), ["ada"]);
    assert_eq!(runs.lock().expect("not poisoned")[&id], [1]);
    let job = setup.queue.get(id).await.expect("a read").expect("the job");
    assert_eq!((job.status, job.attempts), (JobStatus::Done, 1));
    assert!(job.finished_at.is_some());
    assert_eq!(job.payload["to"], "ada");
}

async fn a_job_with_a_known_unique_key_is_not_enqueued_twice(engine: Engine) {
    let Some(setup) = setup(engine).await else { return };
    let first = enqueue(&setup, &Greet { to: "ada".into() }).await;
    assert!(first.is_some());
    assert_eq!(enqueue(&setup, &Greet { to: "ada".into() }).await, None, "same key: the same job");
    assert!(enqueue(&setup, &Greet { to: "grace".into() }).await.is_some(), "another key: another job");
    // Jobs without a key are never merged.
    assert!(enqueue(&setup, &Count { n: 1 }).await.is_some());
    assert!(enqueue(&setup, &Count { n: 1 }).await.is_some());
    assert_eq!(setup.queue.list(None, None, 10).await.expect("the database").len(), 4);
}

async fn a_failing_job_is_retried_with_backoff_until_it_succeeds(engine: Engine) {
    let Some(setup) = setup(engine).await else { return };
    let id = enqueue(&setup, &Count { n: 3 }).await.expect("the database");
    let runs = Runs::default();
    let seen = runs.clone();
    let worker = Worker::new(setup.queue.clone(), &settings()).handle(move |job: Count, attempt: Attempt| {
        record(&seen, attempt);
        async move {
            match attempt.number < job.n {
                true => Err(JobError::Retry(anyhow::anyhow!("mail server down (attempt {})", attempt.number))),
                false => Ok(()),
            }
        }
    });
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(worker.run(shutdown.clone()));
    let queue = setup.queue.clone();
    eventually(10, || async { (status_of(&queue, id).await == JobStatus::Done).then_some(()) }).await;
    shutdown.cancel();
    running.await.expect("the worker stops");
    assert_eq!(runs.lock().expect("not poisoned")[&id], [1, 2, 3], "three runs, numbered");
    let job = setup.queue.get(id).await.expect("a read").expect("the job");
    assert_eq!(job.attempts, 3);
    assert_eq!(job.last_error, None, "success clears the last error");
}

async fn a_permanent_failure_is_kept_failed_until_an_admin_retries_it(engine: Engine) {
    let Some(setup) = setup(engine).await else { return };
    let id = enqueue(&setup, &Greet { to: "nobody@invalid".into() }).await.expect("the database");
    let refuse = Arc::new(Mutex::new(true));
    let refusing = refuse.clone();
    let worker = Arc::new(Worker::new(setup.queue.clone(), &settings()).handle(move |job: Greet, _| {
        let refused = *refusing.lock().expect("not poisoned");
        async move {
            match refused {
                true => Err(JobError::Permanent(anyhow::anyhow!("550 no such mailbox: {}", job.to))),
                false => Ok(()),
            }
        }
    }));
    worker.run_due().await.expect("a batch");
    let failed = setup.queue.list(Some(JobStatus::Failed), None, 10).await.expect("the database");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].id, id);
    assert_eq!(failed[0].last_error.as_deref(), Some("550 no such mailbox: nobody@invalid"));
    assert_eq!(worker.run_due().await.expect("a batch"), 0, "a failed job is not retried by itself");

    *refuse.lock().expect("not poisoned") = false;
    assert!(setup.queue.retry(id).await.expect("the database"));
    assert!(!setup.queue.retry(id).await.expect("the database"), "only a failed job is retried");
    assert!(!setup.queue.retry(kernel::uuid::Uuid::now_v7()).await.expect("the database"));
    assert_eq!(worker.run_due().await.expect("a batch"), 1);
    let job = setup.queue.get(id).await.expect("a read").expect("the job");
    assert_eq!((job.status, job.attempts), (JobStatus::Done, 2));
}

async fn a_job_failing_past_its_retry_window_is_given_up_on(engine: Engine) {
    let Some(setup) = setup(engine).await else { return };
    let id = enqueue(&setup, &Count { n: 1 }).await.expect("the database");
    // Queued long ago: its window (give_up_after_hours = 1) is over at its first failure.
    let past = kernel::db::now() - chrono::Duration::hours(2);
    let backdate = sea_orm::sea_query::Query::update()
        .table(sea_orm::sea_query::Alias::new(format!("{MODULE}_jobs")))
        .value("queued_at", past)
        .to_owned();
    setup.db.execute(&backdate).await.expect("the database");
    let section = JobsSection { give_up_after_hours: 1, ..settings() };
    let worker = Arc::new(
        Worker::new(setup.queue.clone(), &section)
            .handle(|_: Count, _| async { Err(JobError::Retry(anyhow::anyhow!("still down"))) }),
    );
    worker.run_due().await.expect("a batch");
    let job = setup.queue.get(id).await.expect("a read").expect("the job");
    assert_eq!((job.status, job.last_error.as_deref()), (JobStatus::Failed, Some("still down")));
}

async fn a_job_whose_worker_died_is_taken_up_again_when_its_lease_ends(engine: Engine) {
    let Some(setup) = setup(engine).await else { return };
    let id = enqueue(&setup, &Greet { to: "ada".into() }).await.expect("the database");
    // A worker claims it and never finishes: the process died mid-run.
    let hang = Arc::new(
        Worker::new(setup.queue.clone(), &settings())
            .handle(|_: Greet, _| futures::future::pending::<Result<(), JobError>>()),
    );
    let claimed = tokio::spawn({
        let hang = hang.clone();
        async move { hang.run_due().await }
    });
    let queue = setup.queue.clone();
    eventually(10, || async { (status_of(&queue, id).await == JobStatus::Running).then_some(()) }).await;
    claimed.abort();

    let runs = Runs::default();
    let seen = runs.clone();
    let other = Arc::new(Worker::new(setup.queue.clone(), &settings()).handle(move |_: Greet, attempt| {
        record(&seen, attempt);
        async { Ok(()) }
    }));
    assert_eq!(other.run_due().await.expect("a batch"), 0, "held while its lease lasts");
    // The lease ends (timeout + margin later): made so here by moving its end into the past.
    let expire = sea_orm::sea_query::Query::update()
        .table(sea_orm::sea_query::Alias::new(format!("{MODULE}_jobs")))
        .value("run_at", kernel::db::now() - chrono::Duration::seconds(1))
        .to_owned();
    setup.db.execute(&expire).await.expect("the database");
    assert_eq!(other.run_due().await.expect("a batch"), 1);
    assert_eq!(runs.lock().expect("not poisoned")[&id], [2], "the second run of it");
    assert_eq!(status_of(&setup.queue, id).await, JobStatus::Done);
}

async fn a_run_longer_than_the_timeout_is_cut_and_retried(engine: Engine) {
    let Some(setup) = setup(engine).await else { return };
    let id = enqueue(&setup, &Count { n: 2 }).await.expect("the database");
    let section = JobsSection { timeout_secs: 1, ..settings() };
    let worker = Worker::new(setup.queue.clone(), &section).handle(|_: Count, attempt: Attempt| async move {
        if attempt.number == 1 {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        Ok(())
    });
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(worker.run(shutdown.clone()));
    let queue = setup.queue.clone();
    eventually(15, || async { (status_of(&queue, id).await == JobStatus::Done).then_some(()) }).await;
    shutdown.cancel();
    running.await.expect("the worker stops");
    let job = setup.queue.get(id).await.expect("a read").expect("the job");
    assert_eq!(job.attempts, 2);
}

async fn two_workers_run_each_job_exactly_once(engine: Engine) {
    let Some(setup) = setup(engine).await else { return };
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(enqueue(&setup, &Count { n }).await.expect("the database"));
    }
    let runs = Runs::default();
    let shutdown = CancellationToken::new();
    let mut workers = Vec::new();
    for _ in 0..2 {
        // A pool of its own: another process, as far as the database can tell.
        let db = kernel::db::connect(&setup.database.url_for(MODULE), 5).await.expect("the database");
        let seen = runs.clone();
        let worker = Worker::new(Queue::new(MODULE, db), &settings()).handle(move |_: Count, attempt| {
            record(&seen, attempt);
            async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok(())
            }
        });
        workers.push(tokio::spawn(worker.run(shutdown.clone())));
    }
    let queue = setup.queue.clone();
    eventually(20, || async {
        let done = queue.list(Some(JobStatus::Done), None, 100).await.expect("the database");
        (done.len() == 40).then_some(())
    })
    .await;
    shutdown.cancel();
    for worker in workers {
        worker.await.expect("the worker stops");
    }
    let runs = runs.lock().expect("not poisoned");
    for id in ids {
        assert_eq!(runs.get(&id).map(Vec::as_slice), Some(&[1][..]), "job {id} ran once");
    }
}

/// Two workers (two pools) on two lanes whose steps are queued interleaved: a lane's steps succeed
/// in their order, never two at once, a failing step holds the later ones back until it succeeds,
/// and one failed for good lets them go.
async fn jobs_of_one_lane_run_one_at_a_time_in_order(engine: Engine) {
    let Some(setup) = setup(engine).await else { return };
    for n in 0..6 {
        for lane in ["a", "b"] {
            enqueue(&setup, &Step { lane: lane.into(), n }).await.expect("a new job");
        }
    }
    #[derive(Default)]
    struct Seen {
        running: HashMap<String, bool>,
        overlaps: u32,
        succeeded: HashMap<String, Vec<u32>>,
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shutdown = CancellationToken::new();
    let mut workers = Vec::new();
    for _ in 0..2 {
        let db = kernel::db::connect(&setup.database.url_for(MODULE), 5).await.expect("the database");
        let seen = seen.clone();
        let worker = Worker::new(Queue::new(MODULE, db), &settings()).handle(move |step: Step, attempt| {
            let seen = seen.clone();
            async move {
                {
                    let mut seen = seen.lock().expect("not poisoned");
                    if std::mem::replace(seen.running.entry(step.lane.clone()).or_default(), true) {
                        seen.overlaps += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                let outcome = match (step.lane.as_str(), step.n) {
                    ("a", 1) if attempt.number < 3 => Err(JobError::Retry(anyhow::anyhow!("not yet"))),
                    ("a", 3) => Err(JobError::Permanent(anyhow::anyhow!("never"))),
                    _ => Ok(()),
                };
                let mut seen = seen.lock().expect("not poisoned");
                seen.running.insert(step.lane.clone(), false);
                if outcome.is_ok() {
                    seen.succeeded.entry(step.lane).or_default().push(step.n);
                }
                outcome
            }
        });
        workers.push(tokio::spawn(worker.run(shutdown.clone())));
    }
    let queue = setup.queue.clone();
    eventually(30, || async {
        let done = queue.list(Some(JobStatus::Done), None, 100).await.expect("the database");
        let failed = queue.list(Some(JobStatus::Failed), None, 100).await.expect("the database");
        (done.len() == 11 && failed.len() == 1).then_some(())
    })
    .await;
    shutdown.cancel();
    for worker in workers {
        worker.await.expect("the worker stops");
    }
    let failed = queue.list(Some(JobStatus::Failed), None, 1).await.expect("the database");
    assert_eq!(failed[0].lane.as_deref(), Some("a"));
    let seen = seen.lock().expect("not poisoned");
    assert_eq!(seen.overlaps, 0, "two steps of one lane never ran at once");
    assert_eq!(seen.succeeded["a"], [0, 1, 2, 4, 5], "in order; step 1 retried first, step 3 failed for good");
    assert_eq!(seen.succeeded["b"], [0, 1, 2, 3, 4, 5]);
}

async fn counts_and_purge_see_every_status(engine: Engine) {
    let Some(setup) = setup(engine).await else { return };
    let done = enqueue(&setup, &Greet { to: "done".into() }).await.expect("the database");
    let failed = enqueue(&setup, &Greet { to: "fail".into() }).await.expect("the database");
    let worker = Arc::new(Worker::new(setup.queue.clone(), &settings()).handle(|job: Greet, _| async move {
        match job.to.as_str() {
            "fail" => Err(JobError::Permanent(anyhow::anyhow!("refused"))),
            _ => Ok(()),
        }
    }));
    worker.run_due().await.expect("a batch");
    enqueue(&setup, &Greet { to: "waiting".into() }).await.expect("the database");
    let counts = setup.queue.counts().await.expect("the database");
    let of = |status| counts.iter().find(|c| c.job_type == "greet" && c.status == status).map(|c| c.count);
    assert_eq!(of(JobStatus::Done), Some(1));
    assert_eq!(of(JobStatus::Failed), Some(1));
    assert_eq!(of(JobStatus::Queued), Some(1));
    assert_eq!(of(JobStatus::Running), Some(0), "a known type is counted in every status");
    let queued = counts.iter().find(|c| c.status == JobStatus::Queued).expect("present");
    assert!(queued.oldest_queued_at.is_some());

    let later = kernel::db::now() + chrono::Duration::seconds(1);
    assert_eq!(setup.queue.purge(later, later).await.expect("the database"), 1, "only the done job goes");
    assert!(setup.queue.get(done).await.expect("the database").is_none());
    assert_eq!(status_of(&setup.queue, failed).await, JobStatus::Failed);
}
