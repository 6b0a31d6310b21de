use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use migrations_kernel::{instant, instant_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ShippingShipments {
    Table,
    Id,
    OrderId,
    UserId,
    Status,
    Lines,
    ShipName,
    ShipLine1,
    ShipLine2,
    ShipCity,
    ShipPostalCode,
    ShipCountry,
    Carrier,
    TrackingNumber,
    CancellationReason,
    CreatedAt,
    UpdatedAt,
    DispatchedAt,
    DeliveredAt,
    CancelledAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ShippingShipments::Table)
                    .if_not_exists()
                    .col(pk_uuid(ShippingShipments::Id))
                    // One shipment per order: a second OrderConfirmed, or one after a cancellation
                    // tombstone, finds it and creates nothing.
                    .col(uuid_uniq(ShippingShipments::OrderId))
                    .col(uuid(ShippingShipments::UserId))
                    // pending, dispatched, delivered or cancelled
                    .col(string_len(ShippingShipments::Status, 16))
                    // The order's lines, as JSON `[{"productId", "sku", "name", "quantity"}]`: only ever read whole.
                    .col(text(ShippingShipments::Lines))
                    // The address is absent only on a tombstone: cancelled before its order's confirmation arrived.
                    .col(string_len_null(ShippingShipments::ShipName, 200))
                    .col(string_len_null(ShippingShipments::ShipLine1, 200))
                    .col(string_len_null(ShippingShipments::ShipLine2, 200))
                    .col(string_len_null(ShippingShipments::ShipCity, 100))
                    .col(string_len_null(ShippingShipments::ShipPostalCode, 20))
                    .col(string_len_null(ShippingShipments::ShipCountry, 2))
                    .col(string_len_null(ShippingShipments::Carrier, 100))
                    .col(string_len_null(ShippingShipments::TrackingNumber, 100))
                    .col(text_null(ShippingShipments::CancellationReason))
                    .col(instant(manager, ShippingShipments::CreatedAt))
                    .col(instant(manager, ShippingShipments::UpdatedAt))
                    .col(instant_null(manager, ShippingShipments::DispatchedAt))
                    .col(instant_null(manager, ShippingShipments::DeliveredAt))
                    .col(instant_null(manager, ShippingShipments::CancelledAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_shipping_shipments_user")
                    .table(ShippingShipments::Table)
                    .col(ShippingShipments::UserId)
                    .col(ShippingShipments::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ShippingShipments::Table).to_owned()).await
    }
}
