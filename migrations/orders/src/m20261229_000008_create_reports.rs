//! `orders_reports`: the sales reports an admin asks for, computed by a background job (the
//! `orders_jobs` table, added just before this migration) from the orders themselves. A row is
//! written with its job, in one transaction, and holds the CSV once the job is done. The orders are
//! read by `(confirmed_at, id)`, which a new index serves.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use migrations_kernel::{instant, instant_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OrdersReports {
    Table,
    Id,
    Kind,
    // `from` and `to` are SQL keywords: the range's ends get names of their own.
    RangeFrom,
    RangeTo,
    GroupBy,
    Status,
    RequestedBy,
    RequestedAt,
    FinishedAt,
    RowCount,
    Csv,
    Error,
}

const INDEX: &str = "orders_reports_requested_at";
/// The report's reading order: a range of `confirmed_at`, paged by `(confirmed_at, id)`.
const CONFIRMED_INDEX: &str = "orders_orders_confirmed_at";

#[derive(DeriveIden)]
enum OrdersOrders {
    Table,
    Id,
    ConfirmedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OrdersReports::Table)
                    .if_not_exists()
                    .col(pk_uuid(OrdersReports::Id))
                    // `sales`, the only kind so far.
                    .col(string_len(OrdersReports::Kind, 16))
                    .col(instant(manager, OrdersReports::RangeFrom))
                    .col(instant(manager, OrdersReports::RangeTo))
                    // `day` or `product`.
                    .col(string_len(OrdersReports::GroupBy, 16))
                    // queued, running, done, failed: its job's, as the job last wrote it.
                    .col(string_len(OrdersReports::Status, 16))
                    .col(uuid(OrdersReports::RequestedBy))
                    .col(instant(manager, OrdersReports::RequestedAt))
                    .col(instant_null(manager, OrdersReports::FinishedAt))
                    .col(integer_null(OrdersReports::RowCount))
                    // Null until done; a report is kilobytes to a few megabytes (a row per day or product).
                    .col(text_null(OrdersReports::Csv))
                    .col(text_null(OrdersReports::Error))
                    .to_owned(),
            )
            .await?;
        // The newest reports first, for the admin's list.
        manager
            .create_index(
                Index::create().name(INDEX).table(OrdersReports::Table).col(OrdersReports::RequestedAt).to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(CONFIRMED_INDEX)
                    .table(OrdersOrders::Table)
                    .col(OrdersOrders::ConfirmedAt)
                    .col(OrdersOrders::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name(CONFIRMED_INDEX).table(OrdersOrders::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(OrdersReports::Table).if_exists().to_owned()).await
    }
}
