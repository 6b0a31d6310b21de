//! What the module keeps: the customers it writes to, which order is whose, and every message.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use migrations_kernel::{instant, instant_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Its copy of each account's address and name, from the users module's events.
#[derive(DeriveIden)]
enum NotificationsRecipients {
    Table,
    UserId,
    Email,
    Name,
    UpdatedAt,
}

/// Whose each order is: payment and shipment events name only the order.
#[derive(DeriveIden)]
enum NotificationsOrders {
    Table,
    OrderId,
    UserId,
    /// Rejected orders are cancelled too (their stock released): that cancellation is no news to
    /// the customer.
    Rejected,
    CreatedAt,
}

#[derive(DeriveIden)]
enum NotificationsMessages {
    Table,
    Id,
    UserId,
    Kind,
    /// One message per fact (`order_confirmed:<order id>`): a repeated event writes none.
    DedupeKey,
    ToAddress,
    Subject,
    TextBody,
    HtmlBody,
    /// The RFC 5322 Message-ID every attempt sends, so a receiver can tell a repeat.
    MessageId,
    Attempts,
    LastError,
    CreatedAt,
    SentAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use NotificationsMessages as M;
        manager
            .create_table(
                Table::create()
                    .table(NotificationsRecipients::Table)
                    .if_not_exists()
                    .col(uuid(NotificationsRecipients::UserId).primary_key())
                    .col(string_len(NotificationsRecipients::Email, 320))
                    .col(string_len(NotificationsRecipients::Name, 200))
                    .col(instant(manager, NotificationsRecipients::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(NotificationsOrders::Table)
                    .if_not_exists()
                    .col(uuid(NotificationsOrders::OrderId).primary_key())
                    .col(uuid(NotificationsOrders::UserId))
                    .col(boolean(NotificationsOrders::Rejected).default(false))
                    .col(instant(manager, NotificationsOrders::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(M::Table)
                    .if_not_exists()
                    .col(uuid(M::Id).primary_key())
                    .col(uuid(M::UserId))
                    .col(string_len(M::Kind, 40))
                    .col(string_len_uniq(M::DedupeKey, 120))
                    .col(string_len(M::ToAddress, 320))
                    .col(string_len(M::Subject, 300))
                    .col(text(M::TextBody))
                    .col(text(M::HtmlBody))
                    .col(string_len(M::MessageId, 200))
                    .col(integer(M::Attempts).default(0))
                    .col(text_null(M::LastError))
                    .col(instant(manager, M::CreatedAt))
                    .col(instant_null(manager, M::SentAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_notifications_messages_user")
                    .table(M::Table)
                    .col(M::UserId)
                    .col(M::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            NotificationsMessages::Table.into_iden(),
            NotificationsOrders::Table.into_iden(),
            NotificationsRecipients::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
