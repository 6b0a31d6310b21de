//! Orders that shipping must agree to cancel: when the customer asked.

use sea_orm_migration::prelude::*;

use migrations_kernel::instant_null;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OrdersOrders {
    Table,
    CancellationRequestedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(OrdersOrders::Table)
                    .add_column(instant_null(manager, OrdersOrders::CancellationRequestedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(OrdersOrders::Table).drop_column(OrdersOrders::CancellationRequestedAt).to_owned(),
            )
            .await
    }
}
