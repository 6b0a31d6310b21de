use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use migrations_kernel::instant;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CatalogProducts {
    Table,
    Id,
    Sku,
    Name,
    Description,
    PriceAmount,
    PriceCurrency,
    Status,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CatalogProducts::Table)
                    .if_not_exists()
                    .col(pk_uuid(CatalogProducts::Id))
                    .col(string_len_uniq(CatalogProducts::Sku, 64))
                    .col(string_len(CatalogProducts::Name, 200))
                    .col(text(CatalogProducts::Description))
                    .col(big_integer(CatalogProducts::PriceAmount))
                    .col(string_len(CatalogProducts::PriceCurrency, 3))
                    .col(string_len(CatalogProducts::Status, 16))
                    .col(instant(manager, CatalogProducts::CreatedAt))
                    .col(instant(manager, CatalogProducts::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(CatalogProducts::Table).to_owned()).await
    }
}
