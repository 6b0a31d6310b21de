//! The basket module's schema: its Migrator, with its own history table
//! (`basket_seaql_migrations`), starting with the kernel's tables. Only the basket module depends
//! on this crate.

use sea_orm_migration::prelude::*;

use migrations_kernel::KernelTables;
pub use migrations_kernel::MigratorTrait;

mod m20261128_000002_create_baskets;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migration_table_name() -> DynIden {
        "basket_seaql_migrations".into_iden()
    }

    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(KernelTables::new("basket")), Box::new(m20261128_000002_create_baskets::Migration)]
    }
}
