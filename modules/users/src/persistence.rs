//! The users module's tables and queries. Entities never leave this file.

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveValue::Set, ConnectionTrait, QueryOrder, QuerySelect};

use crate::domain::{Email, OneTimeToken, Role, TokenPurpose, User, UserId, UserName};

pub mod account {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users_accounts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        #[sea_orm(unique)]
        pub email: String,
        pub name: String,
        pub password_hash: String,
        pub role: String,
        pub created_at: DateTime<Utc>,
        pub updated_at: DateTime<Utc>,
        pub email_verified_at: Option<DateTime<Utc>>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod one_time_token {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users_one_time_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: Uuid,
        pub purpose: String,
        #[sea_orm(unique)]
        pub token_hash: String,
        pub created_at: DateTime<Utc>,
        pub expires_at: DateTime<Utc>,
        pub used_at: Option<DateTime<Utc>>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod refresh_token {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users_refresh_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: Uuid,
        pub family_id: Uuid,
        #[sea_orm(unique)]
        pub token_hash: String,
        pub issued_at: DateTime<Utc>,
        pub expires_at: DateTime<Utc>,
        pub used_at: Option<DateTime<Utc>>,
        pub revoked_at: Option<DateTime<Utc>>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

fn to_domain(model: account::Model) -> Result<(User, String), DbErr> {
    let corrupt = |field: &str, e: String| DbErr::Custom(format!("users_accounts.{field} of {}: {e}", model.id));
    let user = User {
        id: model.id.into(),
        email: Email::parse(&model.email).map_err(|e| corrupt("email", e))?,
        name: UserName::parse(&model.name).map_err(|e| corrupt("name", e))?,
        role: Role::parse(&model.role).map_err(|e| corrupt("role", e))?,
        email_verified_at: model.email_verified_at,
        created_at: model.created_at,
        updated_at: model.updated_at,
    };
    Ok((user, model.password_hash))
}

pub async fn insert<C: ConnectionTrait>(db: &C, user: &User, password_hash: &str) -> Result<(), DbErr> {
    let model = account::ActiveModel {
        id: Set(user.id.as_uuid()),
        email: Set(user.email.as_str().to_owned()),
        name: Set(user.name.as_str().to_owned()),
        password_hash: Set(password_hash.to_owned()),
        role: Set(user.role.as_str().to_owned()),
        created_at: Set(user.created_at),
        updated_at: Set(user.updated_at),
        email_verified_at: Set(user.email_verified_at),
    };
    account::Entity::insert(model).exec_without_returning(db).await?;
    Ok(())
}

pub async fn find<C: ConnectionTrait>(db: &C, id: UserId) -> Result<Option<User>, DbErr> {
    Ok(account::Entity::find_by_id(id.as_uuid()).one(db).await?.map(to_domain).transpose()?.map(|(u, _)| u))
}

/// The account and its password hash.
pub async fn find_by_email<C: ConnectionTrait>(db: &C, email: &Email) -> Result<Option<(User, String)>, DbErr> {
    account::Entity::find().filter(account::Column::Email.eq(email.as_str())).one(db).await?.map(to_domain).transpose()
}

pub async fn set_role<C: ConnectionTrait>(db: &C, id: UserId, role: Role, now: DateTime<Utc>) -> Result<bool, DbErr> {
    let result = account::Entity::update_many()
        .col_expr(account::Column::Role, Expr::value(role.as_str()))
        .col_expr(account::Column::UpdatedAt, Expr::value(now))
        .filter(account::Column::Id.eq(id.as_uuid()))
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

/// The ids of every admin, their rows locked for the rest of `txn` (SQLite has one writer anyway).
pub async fn lock_admins<C: ConnectionTrait>(txn: &C) -> Result<Vec<UserId>, DbErr> {
    let mut query = account::Entity::find()
        .select_only()
        .column(account::Column::Id)
        .filter(account::Column::Role.eq(Role::Admin.as_str()));
    if txn.get_database_backend() != sea_orm::DbBackend::Sqlite {
        query = query.lock_exclusive();
    }
    Ok(query.into_tuple::<Uuid>().all(txn).await?.into_iter().map(UserId::from).collect())
}

/// Accounts in id (creation) order after `after`.
pub async fn list<C: ConnectionTrait>(db: &C, after: Option<UserId>, limit: u64) -> Result<Vec<User>, DbErr> {
    let mut query = account::Entity::find().order_by_asc(account::Column::Id).limit(limit);
    if let Some(after) = after {
        query = query.filter(account::Column::Id.gt(after.as_uuid()));
    }
    query.all(db).await?.into_iter().map(|m| to_domain(m).map(|(u, _)| u)).collect()
}

pub struct NewRefreshToken<'a> {
    pub user_id: UserId,
    pub family_id: Uuid,
    pub token_hash: &'a str,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_refresh_token<C: ConnectionTrait>(db: &C, token: NewRefreshToken<'_>) -> Result<(), DbErr> {
    let model = refresh_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(token.user_id.as_uuid()),
        family_id: Set(token.family_id),
        token_hash: Set(token.token_hash.to_owned()),
        issued_at: Set(token.issued_at),
        expires_at: Set(token.expires_at),
        used_at: Set(None),
        revoked_at: Set(None),
    };
    refresh_token::Entity::insert(model).exec_without_returning(db).await?;
    Ok(())
}

pub async fn find_refresh_token<C: ConnectionTrait>(
    db: &C,
    token_hash: &str,
) -> Result<Option<refresh_token::Model>, DbErr> {
    let mut query = refresh_token::Entity::find().filter(refresh_token::Column::TokenHash.eq(token_hash));
    if db.get_database_backend() != sea_orm::DbBackend::Sqlite {
        query = query.lock_exclusive();
    }
    query.one(db).await
}

/// Deletes refresh tokens that expired before `now`: they are refused anyway, and a reuse of one
/// (which would revoke its family) is refused as expired too.
pub async fn purge_expired_refresh_tokens<C: ConnectionTrait>(db: &C, now: DateTime<Utc>) -> Result<u64, DbErr> {
    let result = refresh_token::Entity::delete_many().filter(refresh_token::Column::ExpiresAt.lt(now)).exec(db).await?;
    Ok(result.rows_affected)
}

/// Marks the token used; `false` if someone used it first.
pub async fn use_refresh_token<C: ConnectionTrait>(db: &C, id: Uuid, now: DateTime<Utc>) -> Result<bool, DbErr> {
    let result = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::UsedAt, Expr::value(now))
        .filter(refresh_token::Column::Id.eq(id))
        .filter(refresh_token::Column::UsedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Revokes every live token of the family.
pub async fn revoke_family<C: ConnectionTrait>(db: &C, family_id: Uuid, now: DateTime<Utc>) -> Result<u64, DbErr> {
    let result = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(now))
        .filter(refresh_token::Column::FamilyId.eq(family_id))
        .filter(Expr::col(refresh_token::Column::RevokedAt).is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Every live refresh token of the user, whatever its family: after a password reset, no session
/// opened with the old password goes on.
pub async fn revoke_user_refresh_tokens<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let result = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(now))
        .filter(refresh_token::Column::UserId.eq(user.as_uuid()))
        .filter(Expr::col(refresh_token::Column::RevokedAt).is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

pub async fn set_password<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    password_hash: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let result = account::Entity::update_many()
        .col_expr(account::Column::PasswordHash, Expr::value(password_hash))
        .col_expr(account::Column::UpdatedAt, Expr::value(now))
        .filter(account::Column::Id.eq(user.as_uuid()))
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

/// Sets `email_verified_at`, unless it is set already (the first verification is the one kept).
pub async fn mark_email_verified<C: ConnectionTrait>(db: &C, user: UserId, now: DateTime<Utc>) -> Result<(), DbErr> {
    account::Entity::update_many()
        .col_expr(account::Column::EmailVerifiedAt, Expr::value(now))
        .col_expr(account::Column::UpdatedAt, Expr::value(now))
        .filter(account::Column::Id.eq(user.as_uuid()))
        .filter(Expr::col(account::Column::EmailVerifiedAt).is_null())
        .exec(db)
        .await?;
    Ok(())
}

pub struct NewOneTimeToken<'a> {
    pub user_id: UserId,
    pub purpose: TokenPurpose,
    pub token_hash: &'a str,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_one_time_token<C: ConnectionTrait>(db: &C, token: NewOneTimeToken<'_>) -> Result<(), DbErr> {
    let model = one_time_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(token.user_id.as_uuid()),
        purpose: Set(token.purpose.as_str().to_owned()),
        token_hash: Set(token.token_hash.to_owned()),
        created_at: Set(token.created_at),
        expires_at: Set(token.expires_at),
        used_at: Set(None),
    };
    one_time_token::Entity::insert(model).exec_without_returning(db).await?;
    Ok(())
}

/// The token of `purpose` whose SHA-256 is `token_hash`, its row locked for the rest of the
/// transaction (SQLite has one writer anyway).
pub async fn find_one_time_token<C: ConnectionTrait>(
    db: &C,
    purpose: TokenPurpose,
    token_hash: &str,
) -> Result<Option<OneTimeToken>, DbErr> {
    let mut query = one_time_token::Entity::find()
        .filter(one_time_token::Column::TokenHash.eq(token_hash))
        .filter(one_time_token::Column::Purpose.eq(purpose.as_str()));
    if db.get_database_backend() != sea_orm::DbBackend::Sqlite {
        query = query.lock_exclusive();
    }
    let Some(model) = query.one(db).await? else { return Ok(None) };
    let purpose = TokenPurpose::parse(&model.purpose)
        .map_err(|e| DbErr::Custom(format!("users_one_time_tokens.purpose of {}: {e}", model.id)))?;
    Ok(Some(OneTimeToken {
        id: model.id,
        user_id: model.user_id.into(),
        purpose,
        expires_at: model.expires_at,
        used_at: model.used_at,
    }))
}

/// Marks the token used; `false` if it was used first, or expired, meanwhile.
pub async fn use_one_time_token<C: ConnectionTrait>(db: &C, id: Uuid, now: DateTime<Utc>) -> Result<bool, DbErr> {
    let result = one_time_token::Entity::update_many()
        .col_expr(one_time_token::Column::UsedAt, Expr::value(now))
        .filter(one_time_token::Column::Id.eq(id))
        .filter(one_time_token::Column::UsedAt.is_null())
        .filter(one_time_token::Column::ExpiresAt.gt(now))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Deletes the user's unused tokens of `purpose`: a newer one replaces them, or a reset made them
/// pointless. Used ones stay until they expire (a verification link opened twice still answers).
pub async fn retire_one_time_tokens<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    purpose: TokenPurpose,
) -> Result<u64, DbErr> {
    let result = one_time_token::Entity::delete_many()
        .filter(one_time_token::Column::UserId.eq(user.as_uuid()))
        .filter(one_time_token::Column::Purpose.eq(purpose.as_str()))
        .filter(one_time_token::Column::UsedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Deletes the tokens that expired before `now`, used or not: they are refused anyway.
pub async fn purge_expired_one_time_tokens<C: ConnectionTrait>(db: &C, now: DateTime<Utc>) -> Result<u64, DbErr> {
    let result =
        one_time_token::Entity::delete_many().filter(one_time_token::Column::ExpiresAt.lt(now)).exec(db).await?;
    Ok(result.rows_affected)
}
