//! When the account proved it receives mail at its address (`POST /users/verify`); null until then.
//! Accounts that exist already start unverified, and verify with `POST /users/me/verification`.

use sea_orm_migration::prelude::*;

use migrations_kernel::instant_null;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UsersAccounts {
    Table,
    EmailVerifiedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(UsersAccounts::Table)
                    .add_column(instant_null(manager, UsersAccounts::EmailVerifiedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(UsersAccounts::Table).drop_column(UsersAccounts::EmailVerifiedAt).to_owned(),
            )
            .await
    }
}
