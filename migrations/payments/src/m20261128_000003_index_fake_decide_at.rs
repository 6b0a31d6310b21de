//! The fake provider's worker asks, every round, which intents are due to decide: without an index
//! on `decide_at` that read scanned every intent ever made, so the cost per order grew with the
//! shop's history (the saga benchmark's CPU per order, issue 16).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PaymentsFakeIntents {
    Table,
    DecideAt,
}

const INDEX: &str = "idx_payments_fake_intents_decide_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(PaymentsFakeIntents::Table)
                    .col(PaymentsFakeIntents::DecideAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name(INDEX).table(PaymentsFakeIntents::Table).to_owned()).await
    }
}
