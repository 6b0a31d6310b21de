//! The notifications module's schema: its Migrator, with its own history table
//! (`notifications_seaql_migrations`), starting with the kernel's tables and its jobs table. Only the notifications module
//! depends on this crate.

use sea_orm_migration::prelude::*;

pub use migrations_kernel::MigratorTrait;
use migrations_kernel::{JobLanes, JobTables, KernelTables};

mod m20261128_000002_create_messages;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migration_table_name() -> DynIden {
        "notifications_seaql_migrations".into_iden()
    }

    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(KernelTables::new("notifications")),
            Box::new(JobTables::new("notifications")),
            Box::new(m20261128_000002_create_messages::Migration),
            Box::new(JobLanes::new("notifications")),
        ]
    }
}
