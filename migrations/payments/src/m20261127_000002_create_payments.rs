//! The payments, the provider events already handled, and the embedded fake provider's state.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use migrations_kernel::{instant, instant_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PaymentsPayments {
    Table,
    Id,
    OrderId,
    UserId,
    Attempt,
    Amount,
    Currency,
    PaymentMethod,
    Status,
    Provider,
    ProviderPaymentId,
    ClientSecret,
    FailureCode,
    FailureReason,
    OrderEnded,
    RefundId,
    PaidAt,
    RefundedAt,
    NextActionAt,
    LeaseUntil,
    ProviderCalls,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum PaymentsEndedOrders {
    Table,
    OrderId,
    EndedAt,
}

#[derive(DeriveIden)]
enum PaymentsProviderEvents {
    Table,
    Provider,
    EventId,
    ReceivedAt,
}

#[derive(DeriveIden)]
enum PaymentsFakeIntents {
    Table,
    Id,
    Amount,
    Currency,
    PaymentMethod,
    Status,
    ClientSecret,
    FailureCode,
    FailureMessage,
    RefundId,
    DecideAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum PaymentsFakeRequests {
    Table,
    IdempotencyKey,
    Response,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use PaymentsPayments as P;
        manager
            .create_table(
                Table::create()
                    .table(P::Table)
                    .if_not_exists()
                    .col(pk_uuid(P::Id))
                    .col(uuid(P::OrderId))
                    .col(uuid(P::UserId))
                    .col(integer(P::Attempt))
                    // In minor units, in `currency` (ISO 4217).
                    .col(big_integer(P::Amount))
                    .col(string_len(P::Currency, 3))
                    .col(string_len_null(P::PaymentMethod, 255))
                    // requires_payment_method, creating, processing, requires_action, succeeded, failed,
                    // canceling, canceled, refunding, refunded
                    .col(string_len(P::Status, 32))
                    .col(string_len(P::Provider, 16))
                    .col(string_len_null(P::ProviderPaymentId, 255))
                    .col(text_null(P::ClientSecret))
                    .col(string_len_null(P::FailureCode, 100))
                    .col(text_null(P::FailureReason))
                    // The order was cancelled or rejected: any success is refunded.
                    .col(boolean(P::OrderEnded))
                    .col(string_len_null(P::RefundId, 255))
                    .col(instant_null(manager, P::PaidAt))
                    .col(instant_null(manager, P::RefundedAt))
                    // When the worker should act on it next; NULL once nothing is left to do.
                    .col(instant_null(manager, P::NextActionAt))
                    // A worker holds the row until then.
                    .col(instant_null(manager, P::LeaseUntil))
                    .col(integer(P::ProviderCalls))
                    .col(instant(manager, P::CreatedAt))
                    .col(instant(manager, P::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // One payment per attempt of an order: a repeated request finds it and starts nothing.
        manager
            .create_index(
                Index::create()
                    .name("idx_payments_payments_order_attempt")
                    .table(P::Table)
                    .col(P::OrderId)
                    .col(P::Attempt)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("idx_payments_payments_user").table(P::Table).col(P::UserId).col(P::Id).to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("idx_payments_payments_due").table(P::Table).col(P::NextActionAt).to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_payments_payments_provider_id")
                    .table(P::Table)
                    .col(P::ProviderPaymentId)
                    .to_owned(),
            )
            .await?;
        // Orders that ended (cancelled, rejected): a payment asked for later is never charged.
        manager
            .create_table(
                Table::create()
                    .table(PaymentsEndedOrders::Table)
                    .if_not_exists()
                    .col(pk_uuid(PaymentsEndedOrders::OrderId))
                    .col(instant(manager, PaymentsEndedOrders::EndedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PaymentsProviderEvents::Table)
                    .if_not_exists()
                    .col(string_len(PaymentsProviderEvents::Provider, 16))
                    .col(string_len(PaymentsProviderEvents::EventId, 255))
                    .col(instant(manager, PaymentsProviderEvents::ReceivedAt))
                    .primary_key(
                        Index::create().col(PaymentsProviderEvents::Provider).col(PaymentsProviderEvents::EventId),
                    )
                    .to_owned(),
            )
            .await?;
        use PaymentsFakeIntents as F;
        manager
            .create_table(
                Table::create()
                    .table(F::Table)
                    .if_not_exists()
                    .col(string_len(F::Id, 64).primary_key())
                    .col(big_integer(F::Amount))
                    .col(string_len(F::Currency, 3))
                    .col(string_len(F::PaymentMethod, 255))
                    .col(string_len(F::Status, 32))
                    .col(string_len(F::ClientSecret, 128))
                    .col(string_len_null(F::FailureCode, 100))
                    .col(text_null(F::FailureMessage))
                    .col(string_len_null(F::RefundId, 64))
                    // A confirmed intent answered `processing` decides then (`payments.fake.answer_delay_ms`).
                    .col(instant_null(manager, F::DecideAt))
                    .col(instant(manager, F::CreatedAt))
                    .col(instant(manager, F::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PaymentsFakeRequests::Table)
                    .if_not_exists()
                    .col(string_len(PaymentsFakeRequests::IdempotencyKey, 255).primary_key())
                    // The first answer, as JSON: a repeat of the key gets it again.
                    .col(text(PaymentsFakeRequests::Response))
                    .col(instant(manager, PaymentsFakeRequests::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            PaymentsFakeRequests::Table.into_iden(),
            PaymentsFakeIntents::Table.into_iden(),
            PaymentsProviderEvents::Table.into_iden(),
            PaymentsEndedOrders::Table.into_iden(),
            PaymentsPayments::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
