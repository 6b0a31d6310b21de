//! The inventory module's schema: its Migrator, with its own history table (`inventory_seaql_migrations`),
//! starting with the kernel's tables. Only the inventory module depends on this crate.

use sea_orm_migration::prelude::*;

use migrations_kernel::KernelTables;
pub use migrations_kernel::MigratorTrait;

mod m20261126_000002_create_stock;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migration_table_name() -> DynIden {
        "inventory_seaql_migrations".into_iden()
    }

    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(KernelTables::new("inventory")), Box::new(m20261126_000002_create_stock::Migration)]
    }
}
