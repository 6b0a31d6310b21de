//! Baskets (a customer's, or a guest's behind a token), their lines, the module's copy of the
//! catalog's products, and the `Idempotency-Key`s of checkouts.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use migrations_kernel::instant;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum BasketProducts {
    Table,
    ProductId,
    Sku,
    Name,
    PriceAmount,
    PriceCurrency,
    Status,
    Version,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum BasketBaskets {
    Table,
    Id,
    UserId,
    TokenHash,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum BasketLines {
    Table,
    BasketId,
    ProductId,
    Quantity,
    PriceAmount,
    PriceCurrency,
    AddedAt,
}

#[derive(DeriveIden)]
enum BasketIdempotency {
    Table,
    UserId,
    Key,
    RequestHash,
    OrderId,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The basket module's own copy of the catalog, at each product's version: it never asks the catalog.
        use BasketProducts as P;
        manager
            .create_table(
                Table::create()
                    .table(P::Table)
                    .if_not_exists()
                    .col(pk_uuid(P::ProductId))
                    .col(string_len(P::Sku, 64))
                    .col(string_len(P::Name, 200))
                    // In minor units of `price_currency`; 0 in no currency for a discontinued
                    // placeholder whose `ProductCreated` is late.
                    .col(big_integer(P::PriceAmount))
                    .col(string_len(P::PriceCurrency, 3))
                    .col(string_len(P::Status, 16))
                    .col(big_integer(P::Version).default(0))
                    .col(instant(manager, P::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        use BasketBaskets as B;
        manager
            .create_table(
                Table::create()
                    .table(B::Table)
                    .if_not_exists()
                    // A customer's basket has the customer's id; a guest's a new one.
                    .col(pk_uuid(B::Id))
                    .col(uuid_null(B::UserId))
                    // The SHA-256 (hex) of a guest's token; the token itself is never stored.
                    .col(string_len_null(B::TokenHash, 64))
                    // One more on every change: `ETag`, and the condition of every write.
                    .col(big_integer(B::Version))
                    .col(instant(manager, B::CreatedAt))
                    // Unchanged for `basket.ttl_days`, a basket is abandoned and purged.
                    .col(instant(manager, B::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        for (name, column) in [("idx_basket_baskets_user", B::UserId), ("idx_basket_baskets_token", B::TokenHash)] {
            manager.create_index(Index::create().name(name).table(B::Table).col(column).unique().to_owned()).await?;
        }
        manager
            .create_index(
                Index::create().name("idx_basket_baskets_updated").table(B::Table).col(B::UpdatedAt).to_owned(),
            )
            .await?;
        use BasketLines as L;
        manager
            .create_table(
                Table::create()
                    .table(L::Table)
                    .if_not_exists()
                    .col(uuid(L::BasketId))
                    .col(uuid(L::ProductId))
                    .col(integer(L::Quantity))
                    // The price the customer accepted (when added, or since); NULL when the
                    // product was unknown to the copy then.
                    .col(big_integer_null(L::PriceAmount))
                    .col(string_len_null(L::PriceCurrency, 3))
                    .col(instant(manager, L::AddedAt))
                    .primary_key(Index::create().col(L::BasketId).col(L::ProductId))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_basket_lines_basket")
                            .from(L::Table, L::BasketId)
                            .to(B::Table, B::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        use BasketIdempotency as I;
        manager
            .create_table(
                Table::create()
                    .table(I::Table)
                    .if_not_exists()
                    .col(uuid(I::UserId))
                    .col(string_len(I::Key, 255))
                    .col(string_len(I::RequestHash, 64))
                    // The order the first checkout with the key created: a repeat answers it again.
                    .col(uuid(I::OrderId))
                    .col(instant(manager, I::CreatedAt))
                    .primary_key(Index::create().col(I::UserId).col(I::Key))
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == DbBackend::MySql {
            // A key compares exactly, as on the other engines: MariaDB/MySQL's default collations ignore case.
            let sql = "ALTER TABLE basket_idempotency MODIFY `key` VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL";
            manager.get_connection().execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            BasketIdempotency::Table.into_iden(),
            BasketLines::Table.into_iden(),
            BasketBaskets::Table.into_iden(),
            BasketProducts::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
