//! The inventory module's schema.

use sea_orm_migration::prelude::*;

use crate::kernel::KernelTables;

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
