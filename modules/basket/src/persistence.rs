//! The basket module's tables and queries. Entities never leave this file.

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ConnectionTrait, QueryOrder};

use contracts::ProductStatus;

use crate::domain::{BasketId, Currency, Line, Money, ProductCopy, Quantity};

pub mod product {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "basket_products")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub product_id: Uuid,
        pub sku: String,
        pub name: String,
        pub price_amount: i64,
        pub price_currency: String,
        pub status: String,
        pub version: i64,
        pub updated_at: DateTime<Utc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod basket {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "basket_baskets")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: Option<Uuid>,
        pub token_hash: Option<String>,
        pub version: i64,
        pub created_at: DateTime<Utc>,
        pub updated_at: DateTime<Utc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod line {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "basket_lines")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub basket_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub product_id: Uuid,
        pub quantity: i32,
        pub price_amount: Option<i64>,
        pub price_currency: Option<String>,
        pub added_at: DateTime<Utc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod idempotency {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "basket_idempotency")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub request_hash: String,
        pub order_id: Uuid,
        pub created_at: DateTime<Utc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A basket's row: who holds it is the caller's to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BasketRow {
    pub id: BasketId,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

impl From<basket::Model> for BasketRow {
    fn from(m: basket::Model) -> Self {
        Self { id: m.id.into(), version: m.version, updated_at: m.updated_at }
    }
}

/// The customer's basket, if written yet.
pub async fn find_by_user<C: ConnectionTrait>(db: &C, user_id: Uuid) -> Result<Option<BasketRow>, DbErr> {
    Ok(basket::Entity::find().filter(basket::Column::UserId.eq(user_id)).one(db).await?.map(BasketRow::from))
}

/// The guest basket whose token has this hash.
pub async fn find_by_token<C: ConnectionTrait>(db: &C, token_hash: &str) -> Result<Option<BasketRow>, DbErr> {
    let found = basket::Entity::find().filter(basket::Column::TokenHash.eq(token_hash)).one(db).await?;
    Ok(found.map(BasketRow::from))
}

/// A new basket at version 0: a customer's (`user_id`) or a guest's (`token_hash`).
pub async fn insert_basket<C: ConnectionTrait>(
    db: &C,
    id: BasketId,
    user_id: Option<Uuid>,
    token_hash: Option<&str>,
    now: DateTime<Utc>,
) -> Result<BasketRow, DbErr> {
    let row = basket::ActiveModel {
        id: Set(id.as_uuid()),
        user_id: Set(user_id),
        token_hash: Set(token_hash.map(str::to_owned)),
        version: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
    };
    basket::Entity::insert(row).exec_without_returning(db).await?;
    Ok(BasketRow { id, version: 0, updated_at: now })
}

/// Raises the basket's version from `version` by one, only if it is still `version`: whether it
/// was (no other change came between the read and this write).
pub async fn bump<C: ConnectionTrait>(db: &C, id: BasketId, version: i64, now: DateTime<Utc>) -> Result<bool, DbErr> {
    use basket::Column as C;
    let result = basket::Entity::update_many()
        .col_expr(C::Version, Expr::value(version + 1))
        .col_expr(C::UpdatedAt, Expr::value(now))
        .filter(C::Id.eq(id.as_uuid()))
        .filter(C::Version.eq(version))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// The basket's lines, in the order they were added.
pub async fn lines<C: ConnectionTrait>(db: &C, id: BasketId) -> Result<Vec<Line>, DbErr> {
    let rows = line::Entity::find()
        .filter(line::Column::BasketId.eq(id.as_uuid()))
        .order_by_asc(line::Column::AddedAt)
        .order_by_asc(line::Column::ProductId)
        .all(db)
        .await?;
    rows.into_iter()
        .map(|m| {
            let corrupt = |e: String| DbErr::Custom(format!("basket_lines {} {}: {e}", m.basket_id, m.product_id));
            let accepted = match (m.price_amount, m.price_currency.as_deref()) {
                (Some(amount), Some(code)) => {
                    Some(Currency::parse(code).and_then(|c| Money::new(amount, c)).map_err(corrupt)?)
                }
                _ => None,
            };
            Ok(Line {
                product_id: m.product_id,
                quantity: Quantity::parse(i64::from(m.quantity)).map_err(corrupt)?,
                accepted,
            })
        })
        .collect()
}

/// Writes `line` into the basket: a new line, or the quantity and accepted price of the one held.
pub async fn put_line<C: ConnectionTrait>(db: &C, id: BasketId, l: &Line, now: DateTime<Utc>) -> Result<(), DbErr> {
    use line::Column as C;
    let row = line::ActiveModel {
        basket_id: Set(id.as_uuid()),
        product_id: Set(l.product_id),
        quantity: Set(i32::try_from(l.quantity.get()).unwrap_or(i32::MAX)),
        price_amount: Set(l.accepted.map(|m| m.amount_minor())),
        price_currency: Set(l.accepted.map(|m| m.currency().code().to_owned())),
        added_at: Set(now),
    };
    let on_conflict = OnConflict::columns([C::BasketId, C::ProductId])
        .update_columns([C::Quantity, C::PriceAmount, C::PriceCurrency])
        .to_owned();
    line::Entity::insert(row).on_conflict(on_conflict).exec_without_returning(db).await?;
    Ok(())
}

pub async fn delete_line<C: ConnectionTrait>(db: &C, id: BasketId, product_id: Uuid) -> Result<(), DbErr> {
    line::Entity::delete_many()
        .filter(line::Column::BasketId.eq(id.as_uuid()))
        .filter(line::Column::ProductId.eq(product_id))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn delete_lines<C: ConnectionTrait>(db: &C, id: BasketId) -> Result<(), DbErr> {
    line::Entity::delete_many().filter(line::Column::BasketId.eq(id.as_uuid())).exec(db).await?;
    Ok(())
}

/// Deletes the basket and its lines.
pub async fn delete_basket<C: ConnectionTrait>(db: &C, id: BasketId) -> Result<(), DbErr> {
    delete_lines(db, id).await?;
    basket::Entity::delete_by_id(id.as_uuid()).exec(db).await?;
    Ok(())
}

/// Deletes the baskets unchanged since `before`, their lines with them (the foreign key cascades,
/// in the one statement: a change that comes meanwhile keeps its basket whole); returns how many.
pub async fn purge_abandoned<C: ConnectionTrait>(db: &C, before: DateTime<Utc>) -> Result<u64, DbErr> {
    let result = basket::Entity::delete_many().filter(basket::Column::UpdatedAt.lt(before)).exec(db).await?;
    Ok(result.rows_affected)
}

const ACTIVE: &str = ProductStatus::Active.as_str();
const DISCONTINUED: &str = ProductStatus::Discontinued.as_str();

/// Writes the copy, unless the one kept is newer (see [`upsert_if_newer`]).
pub async fn copy_product<C: ConnectionTrait>(db: &C, p: &ProductCopy) -> Result<(), DbErr> {
    use product::Column as C;
    let model = product::ActiveModel {
        product_id: Set(p.product_id),
        sku: Set(p.sku.clone()),
        name: Set(p.name.clone()),
        price_amount: Set(p.price.map_or(0, |m| m.amount_minor())),
        price_currency: Set(p.price.map_or("", |m| m.currency().code()).to_owned()),
        status: Set(if p.active { ACTIVE } else { DISCONTINUED }.to_owned()),
        version: Set(p.version),
        updated_at: Set(kernel::db::now()),
    };
    upsert_if_newer(db, model, &[C::Sku, C::Name, C::PriceAmount, C::PriceCurrency, C::Status]).await
}

/// Marks the copy discontinued at `version`, unless the one kept is newer. With no copy yet (its
/// `ProductCreated` is late), a discontinued placeholder takes its place, so the late creation,
/// older, is not applied.
pub async fn discontinue_product<C: ConnectionTrait>(
    db: &C,
    product_id: Uuid,
    sku: &str,
    version: i64,
) -> Result<(), DbErr> {
    let placeholder = product::ActiveModel {
        product_id: Set(product_id),
        sku: Set(sku.to_owned()),
        name: Set(sku.to_owned()),
        price_amount: Set(0),
        price_currency: Set(String::new()),
        status: Set(DISCONTINUED.to_owned()),
        version: Set(version),
        updated_at: Set(kernel::db::now()),
    };
    upsert_if_newer(db, placeholder, &[product::Column::Status]).await
}

/// The copy is written only where it is newer ([`kernel::db::upsert_if_newer`]); an unversioned
/// event never reactivates a discontinued copy.
const KEEP: kernel::db::Versioned<product::Column> = kernel::db::Versioned {
    key: product::Column::ProductId,
    version: product::Column::Version,
    updated_at: product::Column::UpdatedAt,
    sticky: Some((product::Column::Status, DISCONTINUED)),
};

async fn upsert_if_newer<C: ConnectionTrait>(
    db: &C,
    row: product::ActiveModel,
    columns: &[product::Column],
) -> Result<(), DbErr> {
    kernel::db::upsert_if_newer::<product::Entity, _>(db, row, &KEEP, columns).await
}

/// The copies of `ids` the module has.
pub async fn products<C: ConnectionTrait>(db: &C, ids: &[Uuid]) -> Result<Vec<ProductCopy>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = product::Entity::find().filter(product::Column::ProductId.is_in(ids.iter().copied())).all(db).await?;
    rows.into_iter()
        .map(|m| {
            let corrupt = |e: String| DbErr::Custom(format!("basket_products {} price: {e}", m.product_id));
            let price = match m.price_currency.as_str() {
                "" => None,
                code => Some(Currency::parse(code).and_then(|c| Money::new(m.price_amount, c)).map_err(corrupt)?),
            };
            Ok(ProductCopy {
                product_id: m.product_id,
                sku: m.sku,
                name: m.name,
                price,
                active: m.status == ACTIVE,
                version: m.version,
            })
        })
        .collect()
}

/// A remembered checkout `Idempotency-Key`.
pub struct Remembered {
    pub request_hash: String,
    pub order_id: Uuid,
}

pub async fn remembered<C: ConnectionTrait>(db: &C, user_id: Uuid, key: &str) -> Result<Option<Remembered>, DbErr> {
    Ok(idempotency::Entity::find_by_id((user_id, key.to_owned()))
        .one(db)
        .await?
        .map(|m| Remembered { request_hash: m.request_hash, order_id: m.order_id }))
}

pub async fn remember<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    key: &str,
    request_hash: &str,
    order_id: Uuid,
) -> Result<(), DbErr> {
    let model = idempotency::ActiveModel {
        user_id: Set(user_id),
        key: Set(key.to_owned()),
        request_hash: Set(request_hash.to_owned()),
        order_id: Set(order_id),
        created_at: Set(kernel::db::now()),
    };
    idempotency::Entity::insert(model).exec_without_returning(db).await?;
    Ok(())
}

/// Forgets the `Idempotency-Key`s remembered before `cutoff`; returns how many.
pub async fn forget_idempotency_keys_before<C: ConnectionTrait>(db: &C, cutoff: DateTime<Utc>) -> Result<u64, DbErr> {
    let result = idempotency::Entity::delete_many().filter(idempotency::Column::CreatedAt.lt(cutoff)).exec(db).await?;
    Ok(result.rows_affected)
}
