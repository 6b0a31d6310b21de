//! One sea-orm Migrator per Bazaar module, each with its own history table
//! (`<module>_seaql_migrations`), so modules that share a database never see each other's history
//! and a module moved to a database of its own takes its history with it.
//!
//! Every module's history starts with [`kernel::KernelTables`]: its outbox, inbox and dead letters.

pub mod catalog;
pub mod kernel;

pub use sea_orm_migration::{MigrationTrait, MigratorTrait, SchemaManager};
