//! The catalog's tables and queries. Entities never leave this file.

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{ActiveValue::Set, Condition, ConnectionTrait, QueryOrder, QuerySelect};

use crate::domain::{
    Currency, Description, Money, Product, ProductDetails, ProductId, ProductName, ProductStatus, Sku, Version,
};

pub mod product {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "catalog_products")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        #[sea_orm(unique)]
        pub sku: String,
        pub name: String,
        pub description: String,
        pub price_amount: i64,
        pub price_currency: String,
        pub status: String,
        pub version: i64,
        pub created_at: DateTime<Utc>,
        pub updated_at: DateTime<Utc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

fn to_domain(model: product::Model) -> Result<Product, DbErr> {
    let corrupt = |field: &str, e: String| DbErr::Custom(format!("catalog_products.{field} of {}: {e}", model.id));
    let currency = Currency::parse(&model.price_currency).map_err(|e| corrupt("price_currency", e))?;
    Ok(Product {
        id: model.id.into(),
        details: ProductDetails {
            sku: Sku::parse(&model.sku).map_err(|e| corrupt("sku", e))?,
            name: ProductName::parse(&model.name).map_err(|e| corrupt("name", e))?,
            description: Description::parse(&model.description).map_err(|e| corrupt("description", e))?,
            price: Money::new(model.price_amount, currency).map_err(|e| corrupt("price_amount", e))?,
        },
        status: ProductStatus::parse(&model.status).map_err(|e| corrupt("status", e))?,
        version: Version::new(u64::try_from(model.version).map_err(|e| corrupt("version", e.to_string()))?),
        created_at: model.created_at,
        updated_at: model.updated_at,
    })
}

fn to_active_model(product: &Product) -> Result<product::ActiveModel, DbErr> {
    let d = &product.details;
    let version = i64::try_from(product.version.get())
        .map_err(|_| DbErr::Custom(format!("catalog_products.version of {} overflows", product.id)))?;
    Ok(product::ActiveModel {
        id: Set(product.id.as_uuid()),
        sku: Set(d.sku.as_str().to_owned()),
        name: Set(d.name.as_str().to_owned()),
        description: Set(d.description.as_str().to_owned()),
        price_amount: Set(d.price.amount_minor()),
        price_currency: Set(d.price.currency().code().to_owned()),
        status: Set(product.status.as_str().to_owned()),
        version: Set(version),
        created_at: Set(product.created_at),
        updated_at: Set(product.updated_at),
    })
}

pub async fn insert<C: ConnectionTrait>(db: &C, product: &Product) -> Result<(), DbErr> {
    product::Entity::insert(to_active_model(product)?).exec_without_returning(db).await?;
    Ok(())
}

pub async fn update<C: ConnectionTrait>(db: &C, product: &Product) -> Result<(), DbErr> {
    product::Entity::update(to_active_model(product)?).exec(db).await?;
    Ok(())
}

pub async fn find<C: ConnectionTrait>(db: &C, id: ProductId) -> Result<Option<Product>, DbErr> {
    product::Entity::find_by_id(id.as_uuid()).one(db).await?.map(to_domain).transpose()
}

/// Locks the row for the rest of the transaction where the database can.
pub async fn find_for_update<C: ConnectionTrait>(db: &C, id: ProductId) -> Result<Option<Product>, DbErr> {
    let mut query = product::Entity::find_by_id(id.as_uuid());
    if db.get_database_backend() != sea_orm::DbBackend::Sqlite {
        query = query.lock_exclusive();
    }
    query.one(db).await?.map(to_domain).transpose()
}

/// A filter for [`list`].
#[derive(Debug, Default)]
pub struct ProductFilter {
    pub after: Option<ProductId>,
    /// Matches name or sku, case-insensitively.
    pub search: Option<String>,
    pub status: Option<ProductStatus>,
}

/// Products in id (creation) order.
pub async fn list<C: ConnectionTrait>(db: &C, filter: &ProductFilter, limit: u64) -> Result<Vec<Product>, DbErr> {
    use product::Column;
    let mut query = product::Entity::find().order_by_asc(Column::Id).limit(limit);
    if let Some(after) = filter.after {
        query = query.filter(Column::Id.gt(after.as_uuid()));
    }
    if let Some(status) = filter.status {
        query = query.filter(Column::Status.eq(status.as_str()));
    }
    if let Some(search) = filter.search.as_deref().filter(|s| !s.is_empty()) {
        let pattern = format!("%{}%", escape_like(&search.to_lowercase()));
        let like = |column: Column| {
            Expr::expr(Func::lower(Expr::col((product::Entity, column))))
                .like(sea_orm::sea_query::LikeExpr::new(pattern.clone()).escape('\\'))
        };
        query = query.filter(Condition::any().add(like(Column::Name)).add(like(Column::Sku)));
    }
    query.all(db).await?.into_iter().map(to_domain).collect()
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}
