//! Orders are paid for: the method the customer gave, the payment's state as the payments module's
//! events tell it, when it is due, and why an order was cancelled (`payment_timeout` among others).
//! The index serves the payment timeout's scan of the orders still awaiting payment.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use migrations_kernel::instant_null;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum OrdersOrders {
    Table,
    Status,
    CancellationReason,
    PaymentMethod,
    PaymentStatus,
    PaymentAttempt,
    PaymentClientSecret,
    PaymentFailureReason,
    PaymentDueAt,
    PaidAt,
    RefundedAt,
}

const INDEX: &str = "orders_orders_payment_due";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters a table one column at a time.
        for column in [
            string_len_null(OrdersOrders::CancellationReason, 40),
            string_len_null(OrdersOrders::PaymentMethod, 255),
            string_len_null(OrdersOrders::PaymentStatus, 40),
            integer_null(OrdersOrders::PaymentAttempt),
            string_len_null(OrdersOrders::PaymentClientSecret, 255),
            string_len_null(OrdersOrders::PaymentFailureReason, 500),
            instant_null(manager, OrdersOrders::PaymentDueAt),
            instant_null(manager, OrdersOrders::PaidAt),
            instant_null(manager, OrdersOrders::RefundedAt),
        ] {
            manager.alter_table(Table::alter().table(OrdersOrders::Table).add_column(column).to_owned()).await?;
        }
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(OrdersOrders::Table)
                    .col(OrdersOrders::Status)
                    .col(OrdersOrders::PaymentDueAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name(INDEX).table(OrdersOrders::Table).to_owned()).await?;
        for column in [
            OrdersOrders::CancellationReason,
            OrdersOrders::PaymentMethod,
            OrdersOrders::PaymentStatus,
            OrdersOrders::PaymentAttempt,
            OrdersOrders::PaymentClientSecret,
            OrdersOrders::PaymentFailureReason,
            OrdersOrders::PaymentDueAt,
            OrdersOrders::PaidAt,
            OrdersOrders::RefundedAt,
        ] {
            manager.alter_table(Table::alter().table(OrdersOrders::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
