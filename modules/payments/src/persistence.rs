//! The payments module's tables and queries. Entities never leave this file.

use chrono::{DateTime, Utc};
use sea_orm::ExprTrait;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ConnectionTrait, QueryOrder, QuerySelect};

use crate::domain::{Money, Payment, PaymentId, PaymentStatus};

pub mod payment {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payments_payments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub order_id: Uuid,
        pub user_id: Uuid,
        pub attempt: i32,
        pub amount: i64,
        pub currency: String,
        pub payment_method: Option<String>,
        pub status: String,
        pub provider: String,
        pub provider_payment_id: Option<String>,
        pub client_secret: Option<String>,
        pub failure_code: Option<String>,
        pub failure_reason: Option<String>,
        pub order_ended: bool,
        pub refund_id: Option<String>,
        pub paid_at: Option<DateTime<Utc>>,
        pub refunded_at: Option<DateTime<Utc>>,
        pub next_action_at: Option<DateTime<Utc>>,
        pub lease_until: Option<DateTime<Utc>>,
        pub provider_calls: i32,
        pub created_at: DateTime<Utc>,
        pub updated_at: DateTime<Utc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod ended_order {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payments_ended_orders")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: Uuid,
        pub ended_at: DateTime<Utc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod provider_event {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payments_provider_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub provider: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub received_at: DateTime<Utc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod fake_intent {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payments_fake_intents")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub amount: i64,
        pub currency: String,
        pub payment_method: String,
        pub status: String,
        pub client_secret: String,
        pub failure_code: Option<String>,
        pub failure_message: Option<String>,
        pub refund_id: Option<String>,
        pub decide_at: Option<DateTime<Utc>>,
        pub created_at: DateTime<Utc>,
        pub updated_at: DateTime<Utc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod fake_request {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payments_fake_requests")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub idempotency_key: String,
        pub response: String,
        pub created_at: DateTime<Utc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

fn to_model(p: &Payment) -> payment::ActiveModel {
    payment::ActiveModel {
        id: Set(p.id.as_uuid()),
        order_id: Set(p.order_id),
        user_id: Set(p.user_id),
        attempt: Set(i32::try_from(p.attempt).unwrap_or(i32::MAX)),
        amount: Set(p.amount.amount_minor()),
        currency: Set(p.amount.currency().code().to_owned()),
        payment_method: Set(p.payment_method.clone()),
        status: Set(p.status.as_str().to_owned()),
        provider: Set(p.provider.clone()),
        provider_payment_id: Set(p.provider_payment_id.clone()),
        client_secret: Set(p.client_secret.clone()),
        failure_code: Set(p.failure_code.clone()),
        failure_reason: Set(p.failure_reason.clone()),
        order_ended: Set(p.order_ended),
        refund_id: Set(p.refund_id.clone()),
        paid_at: Set(p.paid_at),
        refunded_at: Set(p.refunded_at),
        next_action_at: Set(p.next_action_at),
        lease_until: sea_orm::ActiveValue::NotSet,
        provider_calls: Set(i32::try_from(p.provider_calls).unwrap_or(i32::MAX)),
        created_at: Set(p.created_at),
        updated_at: Set(p.updated_at),
    }
}

fn from_model(m: payment::Model) -> Result<Payment, DbErr> {
    let corrupt = |e: String| DbErr::Custom(format!("payments_payments {}: {e}", m.id));
    let currency = contracts::Currency::parse(&m.currency).map_err(corrupt)?;
    Ok(Payment {
        id: PaymentId::from(m.id),
        order_id: m.order_id,
        user_id: m.user_id,
        attempt: u32::try_from(m.attempt).map_err(|e| corrupt(e.to_string()))?,
        amount: Money::new(m.amount, currency).map_err(corrupt)?,
        payment_method: m.payment_method,
        status: PaymentStatus::parse(&m.status).map_err(corrupt)?,
        provider: m.provider,
        provider_payment_id: m.provider_payment_id,
        client_secret: m.client_secret,
        failure_code: m.failure_code,
        failure_reason: m.failure_reason,
        order_ended: m.order_ended,
        refund_id: m.refund_id,
        paid_at: m.paid_at,
        refunded_at: m.refunded_at,
        next_action_at: m.next_action_at,
        provider_calls: u32::try_from(m.provider_calls).unwrap_or_default(),
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn all(models: Vec<payment::Model>) -> Result<Vec<Payment>, DbErr> {
    models.into_iter().map(from_model).collect()
}

/// Inserts a new payment. A second of the same order's attempt is a unique violation: the caller
/// looks first (under the lock), so that one only meets a concurrent insert, and retries.
pub async fn insert<C: ConnectionTrait>(db: &C, p: &Payment) -> Result<(), DbErr> {
    let mut row = to_model(p);
    row.lease_until = Set(None);
    payment::Entity::insert(row).exec_without_returning(db).await.map(drop)
}

/// Saves the payment's state; the lease is left as it is.
pub async fn update<C: ConnectionTrait>(db: &C, p: &Payment) -> Result<(), DbErr> {
    payment::Entity::update(to_model(p)).exec(db).await.map(drop)
}

/// Saves the payment's state and gives its lease back.
pub async fn update_and_release<C: ConnectionTrait>(db: &C, p: &Payment) -> Result<(), DbErr> {
    let mut row = to_model(p);
    row.lease_until = Set(None);
    payment::Entity::update(row).exec(db).await.map(drop)
}

/// The payment, locked for the change where the engine locks rows (SQLite has one writer anyway).
pub async fn find<C: ConnectionTrait>(db: &C, id: PaymentId, lock: bool) -> Result<Option<Payment>, DbErr> {
    let mut query = payment::Entity::find_by_id(id.as_uuid());
    if lock && db.get_database_backend() != sea_orm::DbBackend::Sqlite {
        query = query.lock_exclusive();
    }
    query.one(db).await?.map(from_model).transpose()
}

/// The payment the provider knows as `provider_payment_id`, locked like [`find`].
pub async fn find_by_provider_id<C: ConnectionTrait>(
    db: &C,
    provider: &str,
    provider_payment_id: &str,
    lock: bool,
) -> Result<Option<Payment>, DbErr> {
    use payment::Column as C;
    let mut query =
        payment::Entity::find().filter(C::Provider.eq(provider)).filter(C::ProviderPaymentId.eq(provider_payment_id));
    if lock && db.get_database_backend() != sea_orm::DbBackend::Sqlite {
        query = query.lock_exclusive();
    }
    query.one(db).await?.map(from_model).transpose()
}

/// Every payment of the order, attempts in order, locked like [`find`].
pub async fn of_order<C: ConnectionTrait>(db: &C, order_id: Uuid, lock: bool) -> Result<Vec<Payment>, DbErr> {
    use payment::Column as C;
    let mut query = payment::Entity::find().filter(C::OrderId.eq(order_id)).order_by_asc(C::Attempt);
    if lock && db.get_database_backend() != sea_orm::DbBackend::Sqlite {
        query = query.lock_exclusive();
    }
    all(query.all(db).await?)
}

/// Payments in id (creation) order; only `user_id`'s unless `None`, only `order_id`'s if given.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    user_id: Option<Uuid>,
    order_id: Option<Uuid>,
    after: Option<PaymentId>,
    limit: u64,
) -> Result<Vec<Payment>, DbErr> {
    use payment::Column as C;
    let mut query = payment::Entity::find().order_by_asc(C::Id).limit(limit);
    if let Some(user_id) = user_id {
        query = query.filter(C::UserId.eq(user_id));
    }
    if let Some(order_id) = order_id {
        query = query.filter(C::OrderId.eq(order_id));
    }
    if let Some(after) = after {
        query = query.filter(C::Id.gt(after.as_uuid()));
    }
    all(query.all(db).await?)
}

/// Ids of payments the worker should act on by `now` and no worker holds.
pub async fn due<C: ConnectionTrait>(db: &C, now: DateTime<Utc>, limit: u64) -> Result<Vec<PaymentId>, DbErr> {
    use payment::Column as C;
    let ids: Vec<Uuid> = payment::Entity::find()
        .select_only()
        .column(C::Id)
        .filter(C::NextActionAt.lte(now))
        .filter(C::LeaseUntil.is_null().or(C::LeaseUntil.lt(now)))
        .order_by_asc(C::NextActionAt)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    Ok(ids.into_iter().map(PaymentId::from).collect())
}

/// Claims the payment for a worker until `until` if it is due and nobody holds it: one
/// conditional UPDATE, so two workers (two processes) never both claim it, on every engine.
/// Counts the claim as a provider call.
pub async fn claim<C: ConnectionTrait>(
    db: &C,
    id: PaymentId,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<bool, DbErr> {
    use payment::Column as C;
    let claimed = payment::Entity::update_many()
        .col_expr(C::LeaseUntil, Expr::value(until))
        .col_expr(C::ProviderCalls, Expr::col(C::ProviderCalls).add(1))
        .filter(C::Id.eq(id.as_uuid()))
        .filter(C::NextActionAt.lte(now))
        .filter(C::LeaseUntil.is_null().or(C::LeaseUntil.lt(now)))
        .exec(db)
        .await?;
    Ok(claimed.rows_affected == 1)
}

// Insert-or-ignore is not portable here: MySQL counts a duplicate that `ON DUPLICATE KEY UPDATE`
// leaves alone as a row found, and a failed INSERT aborts a PostgreSQL transaction. So these look
// first and insert plainly: only a concurrent twin meets the unique key, fails, and is retried.

/// Records that the order ended; returns whether it was news.
pub async fn end_order<C: ConnectionTrait>(db: &C, order_id: Uuid, now: DateTime<Utc>) -> Result<bool, DbErr> {
    if order_ended(db, order_id).await? {
        return Ok(false);
    }
    let row = ended_order::ActiveModel { order_id: Set(order_id), ended_at: Set(now) };
    ended_order::Entity::insert(row).exec_without_returning(db).await?;
    Ok(true)
}

pub async fn order_ended<C: ConnectionTrait>(db: &C, order_id: Uuid) -> Result<bool, DbErr> {
    Ok(ended_order::Entity::find_by_id(order_id).one(db).await?.is_some())
}

/// Remembers a provider's event; `false` if it was handled already. A concurrent twin fails on
/// the primary key (and its transaction with it): the provider sends it again, and it is a repeat.
pub async fn remember_provider_event<C: ConnectionTrait>(
    db: &C,
    provider: &str,
    event_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    if provider_event::Entity::find_by_id((provider.to_owned(), event_id.to_owned())).one(db).await?.is_some() {
        return Ok(false);
    }
    let row = provider_event::ActiveModel {
        provider: Set(provider.to_owned()),
        event_id: Set(event_id.to_owned()),
        received_at: Set(now),
    };
    provider_event::Entity::insert(row).exec_without_returning(db).await?;
    Ok(true)
}

/// Forgets the provider events received before `cutoff`; returns how many.
pub async fn forget_provider_events_before<C: ConnectionTrait>(db: &C, cutoff: DateTime<Utc>) -> Result<u64, DbErr> {
    let deleted =
        provider_event::Entity::delete_many().filter(provider_event::Column::ReceivedAt.lt(cutoff)).exec(db).await?;
    Ok(deleted.rows_affected)
}

/// The fake provider's intent, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeIntentRow {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    pub payment_method: String,
    pub status: String,
    pub client_secret: String,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub refund_id: Option<String>,
    pub decide_at: Option<DateTime<Utc>>,
}

impl From<fake_intent::Model> for FakeIntentRow {
    fn from(m: fake_intent::Model) -> Self {
        Self {
            id: m.id,
            amount: m.amount,
            currency: m.currency,
            payment_method: m.payment_method,
            status: m.status,
            client_secret: m.client_secret,
            failure_code: m.failure_code,
            failure_message: m.failure_message,
            refund_id: m.refund_id,
            decide_at: m.decide_at,
        }
    }
}

pub mod fake {
    use super::*;

    pub async fn insert<C: ConnectionTrait>(db: &C, row: &FakeIntentRow, now: DateTime<Utc>) -> Result<(), DbErr> {
        let model = fake_intent::ActiveModel {
            id: Set(row.id.clone()),
            amount: Set(row.amount),
            currency: Set(row.currency.clone()),
            payment_method: Set(row.payment_method.clone()),
            status: Set(row.status.clone()),
            client_secret: Set(row.client_secret.clone()),
            failure_code: Set(row.failure_code.clone()),
            failure_message: Set(row.failure_message.clone()),
            refund_id: Set(row.refund_id.clone()),
            decide_at: Set(row.decide_at),
            created_at: Set(now),
            updated_at: Set(now),
        };
        fake_intent::Entity::insert(model).exec_without_returning(db).await.map(drop)
    }

    pub async fn find<C: ConnectionTrait>(db: &C, id: &str, lock: bool) -> Result<Option<FakeIntentRow>, DbErr> {
        let mut query = fake_intent::Entity::find_by_id(id.to_owned());
        if lock && db.get_database_backend() != sea_orm::DbBackend::Sqlite {
            query = query.lock_exclusive();
        }
        Ok(query.one(db).await?.map(FakeIntentRow::from))
    }

    pub async fn update<C: ConnectionTrait>(db: &C, row: &FakeIntentRow, now: DateTime<Utc>) -> Result<(), DbErr> {
        let model = fake_intent::ActiveModel {
            id: Set(row.id.clone()),
            status: Set(row.status.clone()),
            failure_code: Set(row.failure_code.clone()),
            failure_message: Set(row.failure_message.clone()),
            refund_id: Set(row.refund_id.clone()),
            decide_at: Set(row.decide_at),
            updated_at: Set(now),
            ..Default::default()
        };
        fake_intent::Entity::update(model).exec(db).await.map(drop)
    }

    /// Ids of intents whose delayed answer is due.
    pub async fn due<C: ConnectionTrait>(db: &C, now: DateTime<Utc>) -> Result<Vec<String>, DbErr> {
        use fake_intent::Column as C;
        fake_intent::Entity::find()
            .select_only()
            .column(C::Id)
            .filter(C::DecideAt.lte(now))
            .limit(100)
            .into_tuple()
            .all(db)
            .await
    }

    /// The first answer to `key`, if it was used.
    pub async fn remembered<C: ConnectionTrait>(db: &C, key: &str) -> Result<Option<String>, DbErr> {
        Ok(fake_request::Entity::find_by_id(key.to_owned()).one(db).await?.map(|m| m.response))
    }

    pub async fn remember<C: ConnectionTrait>(
        db: &C,
        key: &str,
        response: &str,
        now: DateTime<Utc>,
    ) -> Result<(), DbErr> {
        let row = fake_request::ActiveModel {
            idempotency_key: Set(key.to_owned()),
            response: Set(response.to_owned()),
            created_at: Set(now),
        };
        fake_request::Entity::insert(row).exec_without_returning(db).await.map(drop)
    }
}
