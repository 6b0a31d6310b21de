//! Database connections and the kernel's per-module tables.

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, SqliteTransactionMode,
    TransactionOptions, TransactionTrait,
};

/// Opens a module's own pool. SQLite files get WAL (readers never wait for the writer) and a busy
/// timeout, and their folder is created if missing. (A single-connection SQLite pool, tried to
/// avoid the busy handler's sleeps, halved the saga's throughput: reads queue behind writes.)
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    if let Some(dir) =
        sqlite_file(url).and_then(|path| std::path::Path::new(path).parent()).filter(|dir| !dir.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| DbErr::Custom(format!("cannot create the folder {}: {e}", dir.display())))?;
    }
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    Database::connect(options).await
}

/// The current instant to the microsecond: what every engine stores, so a value written and read
/// back is the value that was returned.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

/// Whether `e` is a unique-key violation, on any engine.
pub fn is_unique_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
}

/// Whether `e` is the infrastructure's passing failure rather than a fault of the statement or the
/// data: the database unreachable or restarting, the connection dropped, the pool exhausted, a
/// lock wait, a deadlock or a serialization failure, SQLite busy. The same work succeeds once it
/// is over, so it is retried for as long as it lasts and never counted against the work itself
/// (an event's attempts) — and an HTTP caller is told to retry (503). A unique violation, a
/// decoding error or a missing table are not transient.
pub fn is_transient(e: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    match e {
        // Acquiring or opening a connection: whatever the reason, the database is not there.
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => is_transient_sqlx(e),
        _ => false,
    }
}

/// Whether `error` or any of its causes is a [transient](is_transient) database failure.
pub fn is_transient_cause(error: &(dyn std::error::Error + 'static)) -> bool {
    use sea_orm::{ConnAcquireErr, RuntimeErr};
    std::iter::successors(Some(error), |e| e.source()).any(|cause| {
        if let Some(e) = cause.downcast_ref::<DbErr>() {
            is_transient(e)
        } else if let Some(RuntimeErr::SqlxError(e)) = cause.downcast_ref::<RuntimeErr>() {
            // A `DbErr` that a transparent error hid: only its cause is in the chain.
            is_transient_sqlx(e)
        } else if let Some(e) = cause.downcast_ref::<sea_orm::sqlx::Error>() {
            is_transient_sqlx(e)
        } else {
            cause.is::<ConnAcquireErr>()
        }
    })
}

fn is_transient_sqlx(e: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error;
    match e {
        Error::Io(_)
        | Error::Tls(_)
        | Error::Protocol(_)
        | Error::PoolTimedOut
        | Error::PoolClosed
        | Error::WorkerCrashed => true,
        Error::Database(e) => is_transient_code(e.as_ref()),
        _ => false,
    }
}

fn is_transient_code(e: &dyn sea_orm::sqlx::error::DatabaseError) -> bool {
    use sea_orm::sqlx::error::DatabaseError;
    if let Some(e) = e.try_downcast_ref::<sea_orm::SqlxSqliteError>() {
        // SQLITE_BUSY and SQLITE_LOCKED, with their extended codes (the primary code is the low byte).
        let code = e.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or_default();
        return matches!(code & 0xff, 5 | 6);
    }
    if let Some(e) = e.try_downcast_ref::<sea_orm::SqlxMySqlError>() {
        // Lock wait timeout, deadlock, too many connections, shutdown in progress, server gone
        // away, connection lost.
        return matches!(e.number(), 1205 | 1213 | 1040 | 1053 | 2006 | 2013);
    }
    // PostgreSQL's SQLSTATE: connection exceptions (08), serialization failure, deadlock, too many
    // connections, lock not available, a database not accepting connections, shutting down or
    // starting up.
    let Some(code) = e.code() else { return false };
    code.starts_with("08")
        || matches!(&*code, "40001" | "40P01" | "53300" | "55P03" | "55000" | "57P01" | "57P02" | "57P03")
}

/// Begins a transaction that will write. On SQLite it takes the write lock up front (`BEGIN
/// IMMEDIATE`): a deferred transaction that reads first cannot upgrade once another writer has
/// committed, and fails at once instead of waiting (`SQLITE_BUSY_SNAPSHOT`).
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    if db.get_database_backend() != DbBackend::Sqlite {
        return db.begin().await;
    }
    let options = TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    };
    db.begin_with_options(options).await
}

/// The file behind a `sqlite:` URL, unless it is in memory.
pub fn sqlite_file(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// The kernel's tables of one module. Every table a module owns starts with its name, so modules
/// that share one database (a single PostgreSQL, say) never collide.
#[derive(Debug, Clone)]
pub struct KernelTables {
    pub outbox: String,
    pub outbox_lock: String,
    pub inbox: String,
    pub dead_letters: String,
}

impl KernelTables {
    pub fn of(module: &str) -> Self {
        Self {
            outbox: format!("{module}_outbox"),
            outbox_lock: format!("{module}_outbox_lock"),
            inbox: format!("{module}_inbox"),
            dead_letters: format!("{module}_dead_letters"),
        }
    }
}

/// Counts the rows of `table` that match `filter`.
pub(crate) async fn count(
    db: &DatabaseConnection,
    table: &str,
    filter: sea_orm::sea_query::SimpleExpr,
) -> Result<u64, DbErr> {
    use sea_orm::ConnectionTrait;
    use sea_orm::sea_query::{Alias, Asterisk, Expr, Func, Query};
    let query =
        Query::select().expr(Func::count(Expr::col(Asterisk))).from(Alias::new(table)).and_where(filter).to_owned();
    let row = db.query_one(&query).await?;
    let count = row.map(|r| r.try_get_by_index::<i64>(0)).transpose()?.unwrap_or(0);
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Deletes the rows of `table` whose `column` is set and earlier than `cutoff`; returns how many.
pub(crate) async fn purge_before(
    db: &DatabaseConnection,
    table: &str,
    column: &'static str,
    cutoff: chrono::DateTime<chrono::Utc>,
) -> Result<u64, DbErr> {
    use sea_orm::ConnectionTrait;
    use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
    let delete = Query::delete()
        .from_table(Alias::new(table))
        .and_where(Expr::col(column).is_not_null())
        .and_where(Expr::col(column).lt(cutoff))
        .to_owned();
    Ok(db.execute(&delete).await?.rows_affected())
}

/// Whether the backend can lock rows with `FOR UPDATE SKIP LOCKED` (SQLite has one writer anyway).
pub(crate) fn locks_rows(backend: DbBackend) -> bool {
    !matches!(backend, DbBackend::Sqlite)
}

/// The columns of a row a module keeps from another module's events with [`upsert_if_newer`]
/// (orders' and the basket's copies of the catalog's products).
pub struct Versioned<C> {
    /// What identifies the row (the conflict target).
    pub key: C,
    /// The publisher's version of what the row copies: 0 for events from before versions.
    pub version: C,
    pub updated_at: C,
    /// A column and a value of it that an event from before versions (version 0) never overwrites
    /// (a discontinued product is not reactivated by a late, unversioned event).
    pub sticky: Option<(C, &'static str)>,
}

/// Inserts `row`, or, if a row with its key is kept, sets `columns` (and the version and
/// `updated_at`) from `row` only where `row` is newer: a higher version, or both 0 (events from
/// before versions: the last one wins, as it did then, except over the `sticky` value). One
/// statement, so concurrent deliveries of one aggregate's events cannot interleave, on any engine.
pub async fn upsert_if_newer<E, Db>(
    db: &Db,
    row: E::ActiveModel,
    keep: &Versioned<E::Column>,
    columns: &[E::Column],
) -> Result<(), DbErr>
where
    E: sea_orm::EntityTrait,
    Db: sea_orm::ConnectionTrait,
{
    use sea_orm::IdenStatic;
    use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, OnConflict};
    let mysql = db.get_database_backend() == DbBackend::MySql;
    let kept = |c: E::Column| Expr::col((E::default(), c));
    // The row proposed for insertion: `excluded` on PostgreSQL and SQLite, `VALUES()` on MySQL.
    let proposed = |c: E::Column| match mysql {
        true => Expr::cust(format!("VALUES(`{}`)", c.as_str())),
        false => Expr::col((Alias::new("excluded"), c)),
    };
    let newer = Condition::any()
        .add(proposed(keep.version).gt(kept(keep.version)))
        .add(Condition::all().add(proposed(keep.version).eq(0)).add(kept(keep.version).eq(0)));
    let mut on_conflict = OnConflict::column(keep.key);
    // MySQL assigns left to right, each assignment seeing the ones before: the version, which
    // every condition reads, goes last.
    for &column in columns.iter().chain(&[keep.updated_at, keep.version]) {
        let apply = match keep.sticky {
            Some((sticky, value)) if sticky.as_str() == column.as_str() => {
                let legacy_over_sticky = Condition::all().add(proposed(keep.version).eq(0)).add(kept(sticky).eq(value));
                Condition::all().add(newer.clone()).add(legacy_over_sticky.not())
            }
            _ => newer.clone(),
        };
        on_conflict.value(column, Expr::case(apply, proposed(column)).finally(kept(column)));
    }
    E::insert(row).on_conflict(on_conflict.to_owned()).exec_without_returning(db).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_is_transient_and_a_unique_violation_is_not() {
        use sea_orm::{ConnAcquireErr, RuntimeErr};
        let refused = DbErr::Conn(RuntimeErr::SqlxError(std::sync::Arc::new(sea_orm::sqlx::Error::Io(
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        ))));
        assert!(is_transient(&refused));
        assert!(is_transient(&DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)));
        let dropped = DbErr::Query(RuntimeErr::SqlxError(std::sync::Arc::new(sea_orm::sqlx::Error::PoolClosed)));
        assert!(is_transient(&dropped));
        assert!(!is_transient(&DbErr::RecordNotFound("x".into())));
        let unique = DbErr::Exec(RuntimeErr::Internal("UNIQUE constraint failed".into()));
        assert!(!is_transient(&unique));

        // Through `anyhow` and its context, as handlers and use cases wrap it.
        let wrapped = anyhow::Error::new(refused).context("failed to load stock");
        assert!(is_transient_cause(wrapped.as_ref()));
        assert!(!is_transient_cause(anyhow::anyhow!("the order is delivered before it shipped").as_ref()));
    }

    #[tokio::test]
    async fn sqlite_busy_is_transient() {
        let dir = std::env::temp_dir().join(format!("bazaar-busy-{}", uuid::Uuid::new_v4().simple()));
        let url = format!("sqlite://{}/busy.db?mode=rwc", dir.display());
        let db = connect(&url, 2).await.expect("a database");
        use sea_orm::ConnectionTrait;
        db.execute_unprepared("CREATE TABLE t (x INTEGER)").await.expect("a table");
        let holder = begin_write(&db).await.expect("the write lock");
        // A second pool that does not wait for the lock.
        let mut options = ConnectOptions::new(url.clone());
        options.max_connections(1).map_sqlx_sqlite_opts(|o| o.busy_timeout(Duration::ZERO));
        let other = Database::connect(options).await.expect("another pool");
        let busy = other.execute_unprepared("INSERT INTO t VALUES (1)").await.expect_err("locked");
        assert!(is_transient(&busy), "{busy:?}");
        holder.rollback().await.expect("released");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(sqlite_file("sqlite://data/catalog.db?mode=rwc"), Some("data/catalog.db"));
        assert_eq!(sqlite_file("sqlite:/tmp/x.db"), Some("/tmp/x.db"));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://localhost/x"), None);
    }
}
