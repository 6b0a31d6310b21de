//! The webhooks module's tables and queries. Entities never leave this file.

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::ExprTrait;
use sea_orm::{ActiveValue::Set, ConnectionTrait, QueryOrder, QuerySelect};

use crate::domain::{Delivery, DeliveryId, DeliveryStatus, Endpoint, Secret};
use crate::public::EventKind;

pub mod endpoint {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhooks_endpoints")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub url: String,
        pub description: Option<String>,
        pub events: String,
        pub secret: String,
        pub previous_secret: Option<String>,
        pub previous_secret_until: Option<chrono::DateTime<chrono::Utc>>,
        pub enabled: bool,
        pub consecutive_failures: i32,
        pub disabled_at: Option<chrono::DateTime<chrono::Utc>>,
        pub disabled_reason: Option<String>,
        pub created_at: chrono::DateTime<chrono::Utc>,
        pub updated_at: chrono::DateTime<chrono::Utc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod delivery {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhooks_deliveries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub endpoint_id: Uuid,
        pub event_type: String,
        pub event_id: Option<Uuid>,
        pub body: String,
        pub status: String,
        pub attempts: i32,
        pub response_status: Option<i32>,
        pub latency_ms: Option<i32>,
        pub last_error: Option<String>,
        pub retry_until: chrono::DateTime<chrono::Utc>,
        pub created_at: chrono::DateTime<chrono::Utc>,
        pub last_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
        pub delivered_at: Option<chrono::DateTime<chrono::Utc>>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

fn events_json(events: &[EventKind]) -> String {
    serde_json::to_string(&events.iter().map(|kind| kind.as_str()).collect::<Vec<_>>()).unwrap_or_default()
}

pub async fn insert_endpoint(db: &impl ConnectionTrait, endpoint: &Endpoint) -> Result<(), DbErr> {
    let row = endpoint::ActiveModel {
        id: Set(endpoint.id),
        url: Set(endpoint.url.clone()),
        description: Set(endpoint.description.clone()),
        events: Set(events_json(&endpoint.events)),
        secret: Set(endpoint.secret.expose().to_owned()),
        previous_secret: Set(None),
        previous_secret_until: Set(None),
        enabled: Set(endpoint.enabled),
        consecutive_failures: Set(0),
        disabled_at: Set(None),
        disabled_reason: Set(None),
        created_at: Set(endpoint.created_at),
        updated_at: Set(endpoint.updated_at),
    };
    endpoint::Entity::insert(row).exec_without_returning(db).await.map(drop)
}

/// Writes what an admin may change, and what follows from it (a re-enabled endpoint starts over).
pub async fn update_endpoint(db: &impl ConnectionTrait, endpoint: &Endpoint) -> Result<bool, DbErr> {
    use endpoint::Column as C;
    let result = endpoint::Entity::update_many()
        .col_expr(C::Url, Expr::value(endpoint.url.clone()))
        .col_expr(C::Description, Expr::value(endpoint.description.clone()))
        .col_expr(C::Events, Expr::value(events_json(&endpoint.events)))
        .col_expr(C::Enabled, Expr::value(endpoint.enabled))
        .col_expr(C::ConsecutiveFailures, Expr::value(endpoint.consecutive_failures as i32))
        .col_expr(C::DisabledAt, Expr::value(endpoint.disabled_at))
        .col_expr(C::DisabledReason, Expr::value(endpoint.disabled_reason.clone()))
        .col_expr(C::UpdatedAt, Expr::value(endpoint.updated_at))
        .filter(C::Id.eq(endpoint.id))
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

pub async fn rotate_secret(
    db: &impl ConnectionTrait,
    id: Uuid,
    new: &Secret,
    old: &Secret,
    old_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    use endpoint::Column as C;
    let result = endpoint::Entity::update_many()
        .col_expr(C::Secret, Expr::value(new.expose()))
        .col_expr(C::PreviousSecret, Expr::value(old.expose()))
        .col_expr(C::PreviousSecretUntil, Expr::value(old_until))
        .col_expr(C::UpdatedAt, Expr::value(now))
        .filter(C::Id.eq(id))
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

pub async fn delete_endpoint(db: &impl ConnectionTrait, id: Uuid) -> Result<bool, DbErr> {
    use delivery::Column as D;
    delivery::Entity::delete_many().filter(D::EndpointId.eq(id)).exec(db).await?;
    Ok(endpoint::Entity::delete_by_id(id).exec(db).await?.rows_affected > 0)
}

pub async fn endpoint(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Endpoint>, DbErr> {
    endpoint::Entity::find_by_id(id).one(db).await?.map(to_endpoint).transpose()
}

/// Every endpoint, oldest first; only the enabled ones when asked.
pub async fn endpoints(db: &impl ConnectionTrait, enabled_only: bool) -> Result<Vec<Endpoint>, DbErr> {
    use endpoint::Column as C;
    let mut query = endpoint::Entity::find().order_by_asc(C::CreatedAt).order_by_asc(C::Id);
    if enabled_only {
        query = query.filter(C::Enabled.eq(true));
    }
    query.all(db).await?.into_iter().map(to_endpoint).collect()
}

/// A failed attempt's count; returns the endpoint's consecutive failures now.
pub async fn count_failure(db: &impl ConnectionTrait, id: Uuid) -> Result<u32, DbErr> {
    use endpoint::Column as C;
    endpoint::Entity::update_many()
        .col_expr(C::ConsecutiveFailures, Expr::col(C::ConsecutiveFailures).add(1))
        .filter(C::Id.eq(id))
        .exec(db)
        .await?;
    let failures = endpoint::Entity::find_by_id(id).one(db).await?.map_or(0, |e| e.consecutive_failures);
    Ok(u32::try_from(failures).unwrap_or(0))
}

pub async fn reset_failures(db: &impl ConnectionTrait, id: Uuid) -> Result<(), DbErr> {
    use endpoint::Column as C;
    endpoint::Entity::update_many()
        .col_expr(C::ConsecutiveFailures, Expr::value(0))
        .filter(C::Id.eq(id))
        .filter(C::ConsecutiveFailures.ne(0))
        .exec(db)
        .await
        .map(drop)
}

/// Disables an enabled endpoint; false when it was not (any more).
pub async fn disable(db: &impl ConnectionTrait, id: Uuid, reason: &str, now: DateTime<Utc>) -> Result<bool, DbErr> {
    use endpoint::Column as C;
    let result = endpoint::Entity::update_many()
        .col_expr(C::Enabled, Expr::value(false))
        .col_expr(C::DisabledAt, Expr::value(now))
        .col_expr(C::DisabledReason, Expr::value(reason))
        .col_expr(C::UpdatedAt, Expr::value(now))
        .filter(C::Id.eq(id))
        .filter(C::Enabled.eq(true))
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

pub async fn insert_delivery(
    db: &impl ConnectionTrait,
    delivery: &Delivery,
    event_id: Option<Uuid>,
) -> Result<(), DbErr> {
    let row = delivery::ActiveModel {
        id: Set(delivery.id.as_uuid()),
        endpoint_id: Set(delivery.endpoint_id),
        event_type: Set(delivery.event_type.clone()),
        event_id: Set(event_id),
        body: Set(delivery.body.clone()),
        status: Set(delivery.status.as_str().to_owned()),
        attempts: Set(0),
        response_status: Set(None),
        latency_ms: Set(None),
        last_error: Set(None),
        retry_until: Set(delivery.retry_until),
        created_at: Set(delivery.created_at),
        last_attempt_at: Set(None),
        delivered_at: Set(None),
    };
    delivery::Entity::insert(row).exec_without_returning(db).await.map(drop)
}

pub async fn delivery(db: &impl ConnectionTrait, id: DeliveryId) -> Result<Option<Delivery>, DbErr> {
    delivery::Entity::find_by_id(id.as_uuid()).one(db).await?.map(to_delivery).transpose()
}

/// An endpoint's deliveries, newest first, of one status when given.
pub async fn deliveries(
    db: &impl ConnectionTrait,
    endpoint_id: Uuid,
    status: Option<DeliveryStatus>,
    before: Option<DeliveryId>,
    limit: u64,
) -> Result<Vec<Delivery>, DbErr> {
    use delivery::Column as C;
    let mut query = delivery::Entity::find().filter(C::EndpointId.eq(endpoint_id)).order_by_desc(C::Id).limit(limit);
    if let Some(status) = status {
        query = query.filter(C::Status.eq(status.as_str()));
    }
    if let Some(before) = before {
        query = query.filter(C::Id.lt(before.as_uuid()));
    }
    query.all(db).await?.into_iter().map(to_delivery).collect()
}

/// What an attempt came to.
pub struct AttemptRecord<'a> {
    pub status: DeliveryStatus,
    pub response_status: Option<u16>,
    pub latency_ms: Option<u64>,
    pub error: Option<&'a str>,
    pub at: DateTime<Utc>,
}

pub async fn record_attempt(
    db: &impl ConnectionTrait,
    id: DeliveryId,
    attempt: AttemptRecord<'_>,
) -> Result<(), DbErr> {
    use delivery::Column as C;
    let mut update = delivery::Entity::update_many()
        .col_expr(C::Status, Expr::value(attempt.status.as_str()))
        .col_expr(C::Attempts, Expr::col(C::Attempts).add(1))
        .col_expr(C::ResponseStatus, Expr::value(attempt.response_status.map(i32::from)))
        .col_expr(C::LatencyMs, Expr::value(attempt.latency_ms.map(|ms| i32::try_from(ms).unwrap_or(i32::MAX))))
        .col_expr(C::LastError, Expr::value(attempt.error.map(str::to_owned)))
        .col_expr(C::LastAttemptAt, Expr::value(attempt.at))
        .filter(C::Id.eq(id.as_uuid()));
    if attempt.status == DeliveryStatus::Delivered {
        update = update.col_expr(C::DeliveredAt, Expr::value(attempt.at));
    }
    update.exec(db).await.map(drop)
}

/// Ends a delivery that will not be attempted (again): its endpoint is disabled or it ran out of time.
pub async fn give_up(db: &impl ConnectionTrait, id: DeliveryId, why: &str) -> Result<(), DbErr> {
    use delivery::Column as C;
    delivery::Entity::update_many()
        .col_expr(C::Status, Expr::value(DeliveryStatus::Failed.as_str()))
        .col_expr(C::LastError, Expr::value(why))
        .filter(C::Id.eq(id.as_uuid()))
        .exec(db)
        .await
        .map(drop)
}

/// Puts a delivery back to `pending`, retried until `retry_until`.
pub async fn reopen(db: &impl ConnectionTrait, id: DeliveryId, retry_until: DateTime<Utc>) -> Result<(), DbErr> {
    use delivery::Column as C;
    delivery::Entity::update_many()
        .col_expr(C::Status, Expr::value(DeliveryStatus::Pending.as_str()))
        .col_expr(C::RetryUntil, Expr::value(retry_until))
        .filter(C::Id.eq(id.as_uuid()))
        .exec(db)
        .await
        .map(drop)
}

fn to_endpoint(row: endpoint::Model) -> Result<Endpoint, DbErr> {
    let names: Vec<String> =
        serde_json::from_str(&row.events).map_err(|e| DbErr::Type(format!("endpoint events {}: {e}", row.events)))?;
    // A name this version does not know (written by a newer one) is left out, not an error.
    let events = names.iter().filter_map(|name| EventKind::parse(name)).collect();
    Ok(Endpoint {
        id: row.id,
        url: row.url,
        description: row.description,
        events,
        secret: Secret::from_stored(row.secret),
        previous_secret: row.previous_secret.map(Secret::from_stored).zip(row.previous_secret_until),
        enabled: row.enabled,
        consecutive_failures: u32::try_from(row.consecutive_failures).unwrap_or(0),
        disabled_at: row.disabled_at,
        disabled_reason: row.disabled_reason,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

fn to_delivery(row: delivery::Model) -> Result<Delivery, DbErr> {
    Ok(Delivery {
        id: DeliveryId::from(row.id),
        endpoint_id: row.endpoint_id,
        event_type: row.event_type,
        body: row.body,
        status: DeliveryStatus::parse(&row.status)
            .ok_or_else(|| DbErr::Type(format!("delivery status {}", row.status)))?,
        attempts: u32::try_from(row.attempts).unwrap_or(0),
        response_status: row.response_status.and_then(|s| u16::try_from(s).ok()),
        latency_ms: row.latency_ms.and_then(|ms| u64::try_from(ms).ok()),
        last_error: row.last_error,
        retry_until: row.retry_until,
        created_at: row.created_at,
        last_attempt_at: row.last_attempt_at,
        delivered_at: row.delivered_at,
    })
}
