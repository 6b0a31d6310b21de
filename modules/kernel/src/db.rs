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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(sqlite_file("sqlite://data/catalog.db?mode=rwc"), Some("data/catalog.db"));
        assert_eq!(sqlite_file("sqlite:/tmp/x.db"), Some("/tmp/x.db"));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://localhost/x"), None);
    }
}
