//! What the module keeps: the endpoints admins registered, and every delivery to them.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use migrations_kernel::{instant, instant_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WebhooksEndpoints {
    Table,
    Id,
    Url,
    Description,
    /// The public event types it subscribes to, a JSON array.
    Events,
    /// `whsec_…`: signs every delivery.
    Secret,
    /// The secret before the last rotation, still signing until `previous_secret_until`.
    PreviousSecret,
    PreviousSecretUntil,
    Enabled,
    /// Failed attempts since its last success; at `webhooks.disable_after_failures` it is disabled.
    ConsecutiveFailures,
    DisabledAt,
    DisabledReason,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhooksDeliveries {
    Table,
    /// Shown as `msg_<32 hex digits>`: the `webhook-id` header of every attempt.
    Id,
    EndpointId,
    EventType,
    /// The bus event it was made from (none for a ping): one delivery per event and endpoint.
    EventId,
    /// The request body, exactly as every attempt sends it.
    Body,
    /// pending, delivered, failed.
    Status,
    Attempts,
    ResponseStatus,
    LatencyMs,
    LastError,
    /// Retried until then; a redelivery starts a new window.
    RetryUntil,
    CreatedAt,
    LastAttemptAt,
    DeliveredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use WebhooksDeliveries as D;
        use WebhooksEndpoints as E;
        manager
            .create_table(
                Table::create()
                    .table(E::Table)
                    .if_not_exists()
                    .col(uuid(E::Id).primary_key())
                    .col(string_len(E::Url, 2048))
                    .col(string_len_null(E::Description, 500))
                    .col(text(E::Events))
                    .col(string_len(E::Secret, 100))
                    .col(string_len_null(E::PreviousSecret, 100))
                    .col(instant_null(manager, E::PreviousSecretUntil))
                    .col(boolean(E::Enabled))
                    .col(integer(E::ConsecutiveFailures).default(0))
                    .col(instant_null(manager, E::DisabledAt))
                    .col(text_null(E::DisabledReason))
                    .col(instant(manager, E::CreatedAt))
                    .col(instant(manager, E::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(D::Table)
                    .if_not_exists()
                    .col(uuid(D::Id).primary_key())
                    .col(uuid(D::EndpointId))
                    .col(string_len(D::EventType, 64))
                    .col(uuid_null(D::EventId))
                    .col(text(D::Body))
                    .col(string_len(D::Status, 16))
                    .col(integer(D::Attempts).default(0))
                    .col(integer_null(D::ResponseStatus))
                    .col(integer_null(D::LatencyMs))
                    .col(text_null(D::LastError))
                    .col(instant(manager, D::RetryUntil))
                    .col(instant(manager, D::CreatedAt))
                    .col(instant_null(manager, D::LastAttemptAt))
                    .col(instant_null(manager, D::DeliveredAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_webhooks_deliveries_endpoint")
                            .from(D::Table, D::EndpointId)
                            .to(E::Table, E::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // An endpoint's deliveries, newest first; and one delivery per event and endpoint.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_webhooks_deliveries_endpoint")
                    .table(D::Table)
                    .col(D::EndpointId)
                    .col(D::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("uq_webhooks_deliveries_event")
                    .table(D::Table)
                    .col(D::EventId)
                    .col(D::EndpointId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(WebhooksDeliveries::Table).if_exists().to_owned()).await?;
        manager.drop_table(Table::drop().table(WebhooksEndpoints::Table).if_exists().to_owned()).await
    }
}
