//! The version of the catalog product each copy holds: an event older than it is not applied.
//! Copies from before have 0, as have the events published before versions existed.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OrdersProducts {
    Table,
    Version,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(OrdersProducts::Table)
                    .add_column(big_integer(OrdersProducts::Version).default(0))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(OrdersProducts::Table).drop_column(OrdersProducts::Version).to_owned())
            .await
    }
}
