use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use migrations_kernel::instant;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PaymentsNotes {
    Table,
    Id,
    Text,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PaymentsNotes::Table)
                    .if_not_exists()
                    .col(pk_uuid(PaymentsNotes::Id))
                    .col(text(PaymentsNotes::Text))
                    .col(instant(manager, PaymentsNotes::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(PaymentsNotes::Table).to_owned()).await
    }
}
