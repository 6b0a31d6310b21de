//! The webhooks module's schema: its Migrator, with its own history table
//! (`webhooks_seaql_migrations`), starting with the kernel's tables and its jobs table (with lanes).
//! Only the webhooks module depends on this crate.

use sea_orm_migration::prelude::*;

pub use migrations_kernel::MigratorTrait;
use migrations_kernel::{JobLanes, JobTables, KernelTables};

mod m20261128_000002_create_endpoints_and_deliveries;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migration_table_name() -> DynIden {
        "webhooks_seaql_migrations".into_iden()
    }

    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(KernelTables::new("webhooks")),
            Box::new(JobTables::new("webhooks")),
            Box::new(JobLanes::new("webhooks")),
            Box::new(m20261128_000002_create_endpoints_and_deliveries::Migration),
        ]
    }
}
