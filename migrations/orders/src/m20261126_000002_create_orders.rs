use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use migrations_kernel::{instant, instant_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OrdersProducts {
    Table,
    ProductId,
    Sku,
    Name,
    PriceAmount,
    PriceCurrency,
    Status,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OrdersOrders {
    Table,
    Id,
    UserId,
    Status,
    ShipName,
    ShipLine1,
    ShipLine2,
    ShipCity,
    ShipPostalCode,
    ShipCountry,
    TotalAmount,
    Currency,
    RejectionReason,
    CreatedAt,
    UpdatedAt,
    ConfirmedAt,
    RejectedAt,
    CancelledAt,
    ShippedAt,
    DeliveredAt,
}

#[derive(DeriveIden)]
enum OrdersLines {
    Table,
    OrderId,
    LineNo,
    ProductId,
    Sku,
    Name,
    Quantity,
    UnitAmount,
    LineAmount,
}

#[derive(DeriveIden)]
enum OrdersIdempotency {
    Table,
    UserId,
    Key,
    RequestHash,
    OrderId,
    Response,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The orders module's own copy of the catalog: it never asks the catalog.
        manager
            .create_table(
                Table::create()
                    .table(OrdersProducts::Table)
                    .if_not_exists()
                    .col(pk_uuid(OrdersProducts::ProductId))
                    .col(string_len(OrdersProducts::Sku, 64))
                    .col(string_len(OrdersProducts::Name, 200))
                    .col(big_integer(OrdersProducts::PriceAmount))
                    .col(string_len(OrdersProducts::PriceCurrency, 3))
                    .col(string_len(OrdersProducts::Status, 16))
                    .col(instant(manager, OrdersProducts::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OrdersOrders::Table)
                    .if_not_exists()
                    .col(pk_uuid(OrdersOrders::Id))
                    .col(uuid(OrdersOrders::UserId))
                    .col(string_len(OrdersOrders::Status, 16))
                    .col(string_len(OrdersOrders::ShipName, 200))
                    .col(string_len(OrdersOrders::ShipLine1, 200))
                    .col(string_len_null(OrdersOrders::ShipLine2, 200))
                    .col(string_len(OrdersOrders::ShipCity, 100))
                    .col(string_len(OrdersOrders::ShipPostalCode, 20))
                    .col(string_len(OrdersOrders::ShipCountry, 2))
                    .col(big_integer(OrdersOrders::TotalAmount))
                    .col(string_len(OrdersOrders::Currency, 3))
                    .col(text_null(OrdersOrders::RejectionReason))
                    .col(instant(manager, OrdersOrders::CreatedAt))
                    .col(instant(manager, OrdersOrders::UpdatedAt))
                    .col(instant_null(manager, OrdersOrders::ConfirmedAt))
                    .col(instant_null(manager, OrdersOrders::RejectedAt))
                    .col(instant_null(manager, OrdersOrders::CancelledAt))
                    .col(instant_null(manager, OrdersOrders::ShippedAt))
                    .col(instant_null(manager, OrdersOrders::DeliveredAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_orders_orders_user")
                    .table(OrdersOrders::Table)
                    .col(OrdersOrders::UserId)
                    .col(OrdersOrders::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OrdersLines::Table)
                    .if_not_exists()
                    .col(uuid(OrdersLines::OrderId))
                    .col(integer(OrdersLines::LineNo))
                    .col(uuid(OrdersLines::ProductId))
                    .col(string_len(OrdersLines::Sku, 64))
                    .col(string_len(OrdersLines::Name, 200))
                    .col(integer(OrdersLines::Quantity))
                    .col(big_integer(OrdersLines::UnitAmount))
                    .col(big_integer(OrdersLines::LineAmount))
                    .primary_key(Index::create().col(OrdersLines::OrderId).col(OrdersLines::LineNo))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OrdersIdempotency::Table)
                    .if_not_exists()
                    .col(uuid(OrdersIdempotency::UserId))
                    .col(string_len(OrdersIdempotency::Key, 255))
                    .col(string_len(OrdersIdempotency::RequestHash, 64))
                    .col(uuid(OrdersIdempotency::OrderId))
                    // The first response, replayed as it was to a repeat of the request.
                    .col(text(OrdersIdempotency::Response))
                    .col(instant(manager, OrdersIdempotency::CreatedAt))
                    .primary_key(Index::create().col(OrdersIdempotency::UserId).col(OrdersIdempotency::Key))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            OrdersIdempotency::Table.into_iden(),
            OrdersLines::Table.into_iden(),
            OrdersOrders::Table.into_iden(),
            OrdersProducts::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
