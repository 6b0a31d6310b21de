use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use migrations_kernel::{instant, instant_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UsersAccounts {
    Table,
    Id,
    Email,
    Name,
    PasswordHash,
    Role,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum UsersRefreshTokens {
    Table,
    Id,
    UserId,
    FamilyId,
    TokenHash,
    IssuedAt,
    ExpiresAt,
    UsedAt,
    RevokedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UsersAccounts::Table)
                    .if_not_exists()
                    .col(pk_uuid(UsersAccounts::Id))
                    .col(string_len_uniq(UsersAccounts::Email, 254))
                    .col(string_len(UsersAccounts::Name, 100))
                    .col(string_len(UsersAccounts::PasswordHash, 255))
                    .col(string_len(UsersAccounts::Role, 16))
                    .col(instant(manager, UsersAccounts::CreatedAt))
                    .col(instant(manager, UsersAccounts::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UsersRefreshTokens::Table)
                    .if_not_exists()
                    .col(pk_uuid(UsersRefreshTokens::Id))
                    .col(uuid(UsersRefreshTokens::UserId))
                    .col(uuid(UsersRefreshTokens::FamilyId))
                    // SHA-256 of the token, hex: the token itself is never stored.
                    .col(string_len_uniq(UsersRefreshTokens::TokenHash, 64))
                    .col(instant(manager, UsersRefreshTokens::IssuedAt))
                    .col(instant(manager, UsersRefreshTokens::ExpiresAt))
                    .col(instant_null(manager, UsersRefreshTokens::UsedAt))
                    .col(instant_null(manager, UsersRefreshTokens::RevokedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_users_refresh_tokens_family")
                    .table(UsersRefreshTokens::Table)
                    .col(UsersRefreshTokens::FamilyId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(UsersRefreshTokens::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(UsersAccounts::Table).to_owned()).await
    }
}
