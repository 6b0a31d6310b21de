//! The notifications module's tables and queries. Entities never leave this file.

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{ExprTrait, OnConflict};
use sea_orm::{ActiveValue::Set, ConnectionTrait, QueryOrder, QuerySelect};

use crate::domain::{Composed, Kind, Message, MessageId, REDACTED, Recipient};

pub mod recipient {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notifications_recipients")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        pub email: String,
        pub name: String,
        pub updated_at: chrono::DateTime<chrono::Utc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod order {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notifications_orders")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: Uuid,
        pub user_id: Uuid,
        pub rejected: bool,
        pub created_at: chrono::DateTime<chrono::Utc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod message {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notifications_messages")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: Uuid,
        pub kind: String,
        #[sea_orm(unique)]
        pub dedupe_key: String,
        pub to_address: String,
        pub subject: String,
        pub text_body: String,
        pub html_body: String,
        pub message_id: String,
        pub attempts: i32,
        pub last_error: Option<String>,
        pub created_at: chrono::DateTime<chrono::Utc>,
        pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Keeps `recipient` (a registration, or a later change of address).
pub async fn upsert_recipient(
    db: &impl ConnectionTrait,
    recipient: &Recipient,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    use recipient::Column as C;
    let row = recipient::ActiveModel {
        user_id: Set(recipient.user_id),
        email: Set(recipient.email.clone()),
        name: Set(recipient.name.clone()),
        updated_at: Set(now),
    };
    recipient::Entity::insert(row)
        .on_conflict(OnConflict::column(C::UserId).update_columns([C::Email, C::Name, C::UpdatedAt]).to_owned())
        .exec_without_returning(db)
        .await
        .map(drop)
}

pub async fn recipient(db: &impl ConnectionTrait, user_id: Uuid) -> Result<Option<Recipient>, DbErr> {
    Ok(recipient::Entity::find_by_id(user_id).one(db).await?.map(|r| Recipient {
        user_id: r.user_id,
        email: r.email,
        name: r.name,
    }))
}

/// Remembers whose `order_id` is; a repeat changes nothing.
pub async fn remember_order(
    db: &impl ConnectionTrait,
    order_id: Uuid,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    use order::Column as C;
    let row = order::ActiveModel {
        order_id: Set(order_id),
        user_id: Set(user_id),
        rejected: Set(false),
        created_at: Set(now),
    };
    order::Entity::insert(row)
        .on_conflict(OnConflict::column(C::OrderId).do_nothing_on([C::OrderId]).to_owned())
        .exec_without_returning(db)
        .await
        .map(drop)
}

/// Whose `order_id` is, and whether it was rejected.
pub async fn owner_of(db: &impl ConnectionTrait, order_id: Uuid) -> Result<Option<(Uuid, bool)>, DbErr> {
    Ok(order::Entity::find_by_id(order_id).one(db).await?.map(|o| (o.user_id, o.rejected)))
}

pub async fn mark_rejected(db: &impl ConnectionTrait, order_id: Uuid) -> Result<(), DbErr> {
    use order::Column as C;
    order::Entity::update_many()
        .col_expr(C::Rejected, Expr::value(true))
        .filter(C::OrderId.eq(order_id))
        .exec(db)
        .await
        .map(drop)
}

pub async fn exists(db: &impl ConnectionTrait, dedupe_key: &str) -> Result<bool, DbErr> {
    use message::Column as C;
    Ok(message::Entity::find().filter(C::DedupeKey.eq(dedupe_key)).count(db).await? > 0)
}

pub async fn insert(db: &impl ConnectionTrait, message: &Message, dedupe_key: &str) -> Result<(), DbErr> {
    let row = message::ActiveModel {
        id: Set(message.id.as_uuid()),
        user_id: Set(message.user_id),
        kind: Set(message.kind.as_str().to_owned()),
        dedupe_key: Set(dedupe_key.to_owned()),
        to_address: Set(message.to.clone()),
        subject: Set(message.content.subject.clone()),
        text_body: Set(message.content.text.clone()),
        html_body: Set(message.content.html.clone()),
        message_id: Set(message.message_id.clone()),
        attempts: Set(0),
        last_error: Set(None),
        created_at: Set(message.created_at),
        sent_at: Set(None),
    };
    message::Entity::insert(row).exec_without_returning(db).await.map(drop)
}

pub async fn get(db: &impl ConnectionTrait, id: MessageId) -> Result<Option<Message>, DbErr> {
    message::Entity::find_by_id(id.as_uuid()).one(db).await?.map(to_message).transpose()
}

/// Messages newest first, one user's when given.
pub async fn list(
    db: &impl ConnectionTrait,
    user_id: Option<Uuid>,
    before: Option<MessageId>,
    limit: u64,
) -> Result<Vec<Message>, DbErr> {
    use message::Column as C;
    let mut query = message::Entity::find().order_by_desc(C::Id).limit(limit);
    if let Some(user_id) = user_id {
        query = query.filter(C::UserId.eq(user_id));
    }
    if let Some(before) = before {
        query = query.filter(C::Id.lt(before.as_uuid()));
    }
    query.all(db).await?.into_iter().map(to_message).collect()
}

/// Counts an attempt before it is made: a crash during it still shows.
pub async fn count_attempt(db: &impl ConnectionTrait, id: MessageId) -> Result<(), DbErr> {
    use message::Column as C;
    message::Entity::update_many()
        .col_expr(C::Attempts, Expr::col(C::Attempts).add(1))
        .filter(C::Id.eq(id.as_uuid()))
        .exec(db)
        .await
        .map(drop)
}

pub async fn record_failure(db: &impl ConnectionTrait, id: MessageId, error: &str) -> Result<(), DbErr> {
    use message::Column as C;
    message::Entity::update_many()
        .col_expr(C::LastError, Expr::value(error))
        .filter(C::Id.eq(id.as_uuid()))
        .exec(db)
        .await
        .map(drop)
}

/// Records that the message was handed over; a secret-bearing one loses its bodies.
pub async fn record_sent(db: &impl ConnectionTrait, message: &Message, now: DateTime<Utc>) -> Result<(), DbErr> {
    use message::Column as C;
    let mut update = message::Entity::update_many()
        .col_expr(C::SentAt, Expr::value(now))
        .col_expr(C::LastError, Expr::value(Option::<String>::None))
        .filter(C::Id.eq(message.id.as_uuid()));
    if message.kind.carries_a_secret() {
        update = update.col_expr(C::TextBody, Expr::value(REDACTED)).col_expr(C::HtmlBody, Expr::value(REDACTED));
    }
    update.exec(db).await.map(drop)
}

fn to_message(row: message::Model) -> Result<Message, DbErr> {
    Ok(Message {
        id: MessageId::from(row.id),
        user_id: row.user_id,
        kind: Kind::parse(&row.kind).ok_or_else(|| DbErr::Type(format!("message kind {}", row.kind)))?,
        to: row.to_address,
        content: Composed { subject: row.subject, text: row.text_body, html: row.html_body },
        message_id: row.message_id,
        attempts: u32::try_from(row.attempts).unwrap_or(0),
        last_error: row.last_error,
        created_at: row.created_at,
        sent_at: row.sent_at,
    })
}
