//! Address changes that reached shipping before the order's shipment did: the shipment takes the
//! address when it opens. The row of an order is also the slot its opening claims, so a request and
//! an opening of one order never miss each other.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use migrations_kernel::instant_null;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ShippingAddressRequests {
    Table,
    OrderId,
    ShipName,
    ShipLine1,
    ShipLine2,
    ShipCity,
    ShipPostalCode,
    ShipCountry,
    RequestedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ShippingAddressRequests::Table)
                    .if_not_exists()
                    .col(pk_uuid(ShippingAddressRequests::OrderId))
                    .col(string_len(ShippingAddressRequests::ShipName, 200))
                    .col(string_len(ShippingAddressRequests::ShipLine1, 200))
                    .col(string_len_null(ShippingAddressRequests::ShipLine2, 200))
                    .col(string_len(ShippingAddressRequests::ShipCity, 100))
                    .col(string_len(ShippingAddressRequests::ShipPostalCode, 20))
                    .col(string_len(ShippingAddressRequests::ShipCountry, 2))
                    // Null while an opening holds the slot (within its transaction only).
                    .col(instant_null(manager, ShippingAddressRequests::RequestedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ShippingAddressRequests::Table).to_owned()).await
    }
}
