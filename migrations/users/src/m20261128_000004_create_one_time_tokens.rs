//! The single-use tokens that are mailed: password resets and e-mail verifications, told apart by
//! `purpose`. Like refresh tokens, only their SHA-256 is stored.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use migrations_kernel::{instant, instant_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UsersOneTimeTokens {
    Table,
    Id,
    UserId,
    Purpose,
    TokenHash,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UsersOneTimeTokens::Table)
                    .if_not_exists()
                    .col(pk_uuid(UsersOneTimeTokens::Id))
                    .col(uuid(UsersOneTimeTokens::UserId))
                    // `password-reset` or `email-verification`.
                    .col(string_len(UsersOneTimeTokens::Purpose, 32))
                    // SHA-256 of the token, hex: the token itself is never stored.
                    .col(string_len_uniq(UsersOneTimeTokens::TokenHash, 64))
                    .col(instant(manager, UsersOneTimeTokens::CreatedAt))
                    .col(instant(manager, UsersOneTimeTokens::ExpiresAt))
                    // Set when the token is used; a newer token of its purpose deletes the unused ones.
                    .col(instant_null(manager, UsersOneTimeTokens::UsedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_users_one_time_tokens_user_purpose")
                    .table(UsersOneTimeTokens::Table)
                    .col(UsersOneTimeTokens::UserId)
                    .col(UsersOneTimeTokens::Purpose)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(UsersOneTimeTokens::Table).to_owned()).await
    }
}
