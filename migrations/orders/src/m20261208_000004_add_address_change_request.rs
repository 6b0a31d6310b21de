//! A confirmed order's address change waits for shipping's answer: the address asked for, and when.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use migrations_kernel::instant_null;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum OrdersOrders {
    Table,
    RequestedShipName,
    RequestedShipLine1,
    RequestedShipLine2,
    RequestedShipCity,
    RequestedShipPostalCode,
    RequestedShipCountry,
    AddressChangeRequestedAt,
}

impl OrdersOrders {
    const COLUMNS: [OrdersOrders; 7] = [
        Self::RequestedShipName,
        Self::RequestedShipLine1,
        Self::RequestedShipLine2,
        Self::RequestedShipCity,
        Self::RequestedShipPostalCode,
        Self::RequestedShipCountry,
        Self::AddressChangeRequestedAt,
    ];
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters a table one column at a time.
        for column in [
            string_len_null(OrdersOrders::RequestedShipName, 200),
            string_len_null(OrdersOrders::RequestedShipLine1, 200),
            string_len_null(OrdersOrders::RequestedShipLine2, 200),
            string_len_null(OrdersOrders::RequestedShipCity, 100),
            string_len_null(OrdersOrders::RequestedShipPostalCode, 20),
            string_len_null(OrdersOrders::RequestedShipCountry, 2),
            instant_null(manager, OrdersOrders::AddressChangeRequestedAt),
        ] {
            manager.alter_table(Table::alter().table(OrdersOrders::Table).add_column(column).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in OrdersOrders::COLUMNS {
            manager.alter_table(Table::alter().table(OrdersOrders::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
