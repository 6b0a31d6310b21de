//! The shipping module's schema: its Migrator, with its own history table (`shipping_seaql_migrations`),
//! starting with the kernel's tables. Only the shipping module depends on this crate.

use sea_orm_migration::prelude::*;

use migrations_kernel::KernelTables;
pub use migrations_kernel::MigratorTrait;

mod m20261201_000002_create_shipments;
mod m20261208_000003_create_address_requests;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migration_table_name() -> DynIden {
        "shipping_seaql_migrations".into_iden()
    }

    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(KernelTables::new("shipping")),
            Box::new(m20261201_000002_create_shipments::Migration),
            Box::new(m20261208_000003_create_address_requests::Migration),
        ]
    }
}
