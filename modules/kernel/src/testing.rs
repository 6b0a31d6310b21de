//! The test kit every module shares (feature `testing`, for dev-dependencies only): a fresh
//! database on each engine, and the events a test published.
//!
//! SQLite always; PostgreSQL and MariaDB/MySQL when the machine has them (their admin URLs from
//! `BAZAAR_TEST_POSTGRES` and `BAZAAR_TEST_MYSQL`; with `BAZAAR_REQUIRE_SERVICES=1`, as in CI, a
//! missing one fails the test instead of skipping it). Each test gets a database of its own,
//! dropped when the test ends.

use std::path::Path;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

use crate::Envelope;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
    Mysql,
}

/// A fresh database (SQLite: a folder of files) for one test.
pub struct TestDatabase {
    /// The URL template: `{module}` names the module's file on SQLite; the server engines share one
    /// database per test, as modules may in production (their tables are prefixed).
    pub url: String,
    server: std::sync::Mutex<Option<(Engine, String, String)>>,
    /// The folder of a [`fresh`](Self::fresh) SQLite database, removed with it.
    dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// `None` (the test skips) when the engine's server is not reachable and services are optional.
    pub async fn create(engine: Engine, dir: &Path) -> Option<Self> {
        let admin_url = match engine {
            Engine::Sqlite => {
                return Some(Self {
                    url: format!("sqlite://{}/{{module}}.db?mode=rwc", dir.display()),
                    server: Default::default(),
                    dir: None,
                });
            }
            Engine::Postgres => std::env::var("BAZAAR_TEST_POSTGRES")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
            Engine::Mysql => {
                std::env::var("BAZAAR_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
            }
        };
        let admin = match Database::connect(&admin_url).await {
            Ok(admin) => admin,
            Err(e) if std::env::var("BAZAAR_REQUIRE_SERVICES").is_ok_and(|v| v == "1") => {
                panic!("{engine:?} at {admin_url} is required (BAZAAR_REQUIRE_SERVICES=1) but unreachable: {e}")
            }
            Err(e) => {
                eprintln!("skipped: {engine:?} at {admin_url} is unreachable: {e}");
                return None;
            }
        };
        let name = format!("bazaar_test_{}", uuid::Uuid::new_v4().simple());
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("a test database");
        admin.close().await.ok();
        let base = admin_url.rsplit_once('/').map(|(base, _)| base).expect("a URL with a database");
        Some(Self {
            url: format!("{base}/{name}"),
            server: std::sync::Mutex::new(Some((engine, admin_url, name))),
            dir: None,
        })
    }

    /// [`create`](Self::create) with a folder of its own for SQLite: what a module's unit test needs.
    pub async fn fresh(engine: Engine) -> Option<Self> {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let mut database = Self::create(engine, dir.path()).await?;
        database.dir = Some(dir);
        Some(database)
    }

    pub fn url_for(&self, module: &str) -> String {
        self.url.replace("{module}", module)
    }

    /// A pool on `module`'s database (migrate it with the module's own Migrator).
    pub async fn connect(&self, module: &str) -> DatabaseConnection {
        crate::db::connect(&self.url_for(module), 5).await.expect("the test database")
    }
}

/// Every event `module` published through its outbox on `db`, oldest first.
pub async fn published(db: &DatabaseConnection, module: &str) -> Vec<Envelope> {
    let select = format!("SELECT payload FROM {module}_outbox ORDER BY seq");
    db.query_all_raw(Statement::from_string(db.get_database_backend(), select))
        .await
        .expect("the outbox")
        .into_iter()
        .map(|row| serde_json::from_str(&row.try_get::<String>("", "payload").expect("a payload")).expect("JSON"))
        .collect()
}

/// The events of type `E` among [`published`], decoded.
pub async fn published_of<E: contracts::IntegrationEvent>(db: &DatabaseConnection, module: &str) -> Vec<E> {
    published(db, module).await.iter().filter(|e| e.is::<E>()).map(|e| e.decode::<E>().expect("decodes")).collect()
}

impl TestDatabase {
    /// PostgreSQL only: ends every session on this database and refuses new ones, as a restart or
    /// a failover does, until [`accept_connections`](Self::accept_connections). Nothing else on
    /// the server is touched.
    pub async fn refuse_connections(&self) {
        let name = self.server_name();
        self.as_admin(&[
            format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false"),
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            ),
        ])
        .await;
    }

    pub async fn accept_connections(&self) {
        let name = self.server_name();
        self.as_admin(&[format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true")]).await;
    }

    fn server_name(&self) -> String {
        let server = self.server.lock().unwrap_or_else(|e| e.into_inner());
        match server.as_ref() {
            Some((Engine::Postgres, _, name)) => name.clone(),
            other => panic!("only a PostgreSQL test database can refuse connections: {other:?}"),
        }
    }

    async fn as_admin(&self, statements: &[String]) {
        let admin_url = self.server.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|(_, url, _)| url.clone());
        let admin = Database::connect(admin_url.expect("a server database")).await.expect("the admin database");
        for statement in statements {
            admin.execute_unprepared(statement).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
        admin.close().await.ok();
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        self.destroy();
    }
}

impl TestDatabase {
    /// Drops the database now, even while an app uses it (its sessions are ended).
    pub fn destroy(&self) {
        let server = self.server.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some((engine, admin_url, name)) = server else { return };
        let statement = match engine {
            Engine::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            _ => format!("DROP DATABASE IF EXISTS {name}"),
        };
        // Drop cannot await, and the test's runtime may be going away: use a runtime of its own.
        let database = name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(async {
                let admin = Database::connect(&admin_url).await?;
                if engine == Engine::Mysql {
                    // The app's pool may outlive the test (actix workers hold it) with a transaction
                    // the test's runtime never rolled back: end those sessions, or DROP waits on them.
                    let sessions = admin
                        .query_all_raw(sea_orm::Statement::from_string(
                            sea_orm::DbBackend::MySql,
                            format!("SELECT id FROM information_schema.processlist WHERE db = '{database}'"),
                        ))
                        .await?;
                    for session in sessions {
                        let id: i64 = session.try_get_by_index(0)?;
                        admin.execute_unprepared(&format!("KILL {id}")).await.ok();
                    }
                    admin.execute_unprepared("SET SESSION lock_wait_timeout = 10").await?;
                }
                admin.execute_unprepared(&statement).await?;
                admin.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database {name}: {dropped:?}");
        }
    }
}
