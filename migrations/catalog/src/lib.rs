//! The catalog module's schema: its Migrator, with its own history table (`catalog_seaql_migrations`),
//! starting with the kernel's tables. Only the catalog module depends on this crate.

use sea_orm_migration::prelude::*;

use migrations_kernel::KernelTables;
pub use migrations_kernel::MigratorTrait;

mod m20261126_000002_create_products;
mod m20261227_000003_add_product_version;
mod m20261227_000004_case_sensitive_sku;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migration_table_name() -> DynIden {
        "catalog_seaql_migrations".into_iden()
    }

    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(KernelTables::new("catalog")),
            Box::new(m20261126_000002_create_products::Migration),
            Box::new(m20261227_000003_add_product_version::Migration),
            Box::new(m20261227_000004_case_sensitive_sku::Migration),
        ]
    }
}
