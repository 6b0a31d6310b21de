//! The payments module's schema: its Migrator, with its own history table
//! (`payments_seaql_migrations`), starting with the kernel's tables. Only the payments module
//! depends on this crate.

use sea_orm_migration::prelude::*;

use migrations_kernel::KernelTables;
pub use migrations_kernel::MigratorTrait;

mod m20261127_000002_create_payments;
mod m20261128_000003_index_fake_decide_at;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migration_table_name() -> DynIden {
        "payments_seaql_migrations".into_iden()
    }

    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(KernelTables::new("payments")),
            Box::new(m20261127_000002_create_payments::Migration),
            Box::new(m20261128_000003_index_fake_decide_at::Migration),
        ]
    }
}
