use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use migrations_kernel::instant;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum InventoryStock {
    Table,
    ProductId,
    OnHand,
    Reserved,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum InventoryOrders {
    Table,
    OrderId,
    Status,
    Items,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(InventoryStock::Table)
                    .if_not_exists()
                    .col(pk_uuid(InventoryStock::ProductId))
                    .col(big_integer(InventoryStock::OnHand))
                    .col(big_integer(InventoryStock::Reserved))
                    .col(instant(manager, InventoryStock::UpdatedAt))
                    // A last line of defence: the conditional updates already keep to it.
                    .check((
                        Alias::new("ck_inventory_stock_levels"),
                        Expr::col(InventoryStock::Reserved)
                            .gte(0)
                            .and(Expr::col(InventoryStock::OnHand).gte(Expr::col(InventoryStock::Reserved))),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(InventoryOrders::Table)
                    .if_not_exists()
                    .col(pk_uuid(InventoryOrders::OrderId))
                    // reserved, rejected, released, sold or cancelled
                    .col(string_len(InventoryOrders::Status, 16))
                    // The summed lines, as JSON `[{"productId", "quantity"}]`: only ever read whole.
                    .col(text(InventoryOrders::Items))
                    .col(instant(manager, InventoryOrders::CreatedAt))
                    .col(instant(manager, InventoryOrders::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(InventoryOrders::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(InventoryStock::Table).to_owned()).await
    }
}
