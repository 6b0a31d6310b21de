//! The users module's schema: its Migrator, with its own history table (`users_seaql_migrations`),
//! starting with the kernel's tables. Only the users module depends on this crate.

use sea_orm_migration::prelude::*;

use migrations_kernel::KernelTables;
pub use migrations_kernel::MigratorTrait;

mod m20261126_000002_create_accounts;
mod m20261128_000003_add_email_verified_at;
mod m20261128_000004_create_one_time_tokens;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migration_table_name() -> DynIden {
        "users_seaql_migrations".into_iden()
    }

    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(KernelTables::new("users")),
            Box::new(m20261126_000002_create_accounts::Migration),
            Box::new(m20261128_000003_add_email_verified_at::Migration),
            Box::new(m20261128_000004_create_one_time_tokens::Migration),
        ]
    }
}
