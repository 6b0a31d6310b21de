//! What every module's migrations share: the kernel's tables and the column helpers.
//!
//! Each module's schema is a crate of its own (`migrations/<module>`, `bazaar-<module>-migrations`)
//! that only that module depends on, with a sea-orm Migrator and its own history table
//! (`<module>_seaql_migrations`), so modules that share a database never see each other's history
//! and a module moved to a database of its own takes its history with it.
//!
//! Every module's history starts with [`KernelTables`]: its outbox, inbox and dead letters; a module
//! that runs background jobs adds [`JobTables`] and [`JobLanes`].

mod jobs;
mod tables;

pub use jobs::{JobLanes, JobTables};
pub use sea_orm_migration::{MigrationTrait, MigratorTrait, SchemaManager};
pub use tables::KernelTables;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

/// A UTC instant kept to the microsecond on every engine. MySQL/MariaDB get `DATETIME(6)`: their
/// `TIMESTAMP` drops the fraction, converts through the session time zone and ends in 2038.
pub fn instant<T: IntoIden>(manager: &SchemaManager, column: T) -> ColumnDef {
    let mut def = ColumnDef::new(column);
    match manager.get_database_backend() {
        DbBackend::MySql => def.custom("DATETIME(6)"),
        _ => def.timestamp_with_time_zone(),
    };
    def.not_null().take()
}

/// [`instant`], nullable.
pub fn instant_null<T: IntoIden>(manager: &SchemaManager, column: T) -> ColumnDef {
    instant(manager, column).null().take()
}
