//! A product's version: raised by every change and carried by its events, so that consumers can
//! tell a late event from a newer one. Products from before have 0; their next change makes 1.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CatalogProducts {
    Table,
    Version,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(CatalogProducts::Table)
                    .add_column(big_integer(CatalogProducts::Version).default(0))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(CatalogProducts::Table).drop_column(CatalogProducts::Version).to_owned())
            .await
    }
}
