//! The orders module's schema: its Migrator, with its own history table (`orders_seaql_migrations`),
//! starting with the kernel's tables; its jobs table (`orders_jobs`) came with the sales reports.
//! Only the orders module depends on this crate.

use sea_orm_migration::prelude::*;

pub use migrations_kernel::MigratorTrait;
use migrations_kernel::{JobLanes, JobTables, KernelTables};

mod m20261126_000002_create_orders;
mod m20261201_000003_add_cancellation_requested_at;
mod m20261208_000004_add_address_change_request;
mod m20261227_000005_add_product_copy_version;
mod m20261227_000006_case_sensitive_idempotency_key;
mod m20261228_000007_add_payment;
mod m20261229_000008_create_reports;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migration_table_name() -> DynIden {
        "orders_seaql_migrations".into_iden()
    }

    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(KernelTables::new("orders")),
            Box::new(m20261126_000002_create_orders::Migration),
            Box::new(m20261201_000003_add_cancellation_requested_at::Migration),
            Box::new(m20261208_000004_add_address_change_request::Migration),
            Box::new(m20261227_000005_add_product_copy_version::Migration),
            Box::new(m20261227_000006_case_sensitive_idempotency_key::Migration),
            Box::new(m20261228_000007_add_payment::Migration),
            // The module's background jobs: the sales reports' computation.
            Box::new(JobTables::new("orders")),
            Box::new(m20261229_000008_create_reports::Migration),
            Box::new(JobLanes::new("orders")),
        ]
    }
}
