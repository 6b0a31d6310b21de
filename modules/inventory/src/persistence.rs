//! The inventory's tables and queries. Entities never leave this file.
//!
//! Stock moves only through conditional updates (`... WHERE on_hand - reserved >= q`): the
//! database decides, row by row, so concurrent orders can never hold more than there is.

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveValue::Set, ConnectionTrait};
use serde::{Deserialize, Serialize};

use crate::domain::{Lines, OnHand, OrderId, ProductId, Quantity, Reservation, ReservationStatus, StockLevel};

pub mod stock {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "inventory_stock")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub product_id: Uuid,
        pub on_hand: i64,
        pub reserved: i64,
        pub updated_at: DateTime<Utc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod order {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "inventory_orders")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: Uuid,
        pub status: String,
        /// The summed lines as JSON: `[{"productId", "quantity"}]`.
        #[sea_orm(column_type = "Text")]
        pub items: String,
        pub created_at: DateTime<Utc>,
        pub updated_at: DateTime<Utc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

fn stock_level(model: stock::Model) -> StockLevel {
    StockLevel { product_id: model.product_id.into(), on_hand: model.on_hand, reserved: model.reserved }
}

/// A product's stock row with nothing in it, unless it has one already; `true` if it was added.
pub async fn insert_stock_if_absent<C: ConnectionTrait>(
    db: &C,
    product: ProductId,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let row = stock::ActiveModel {
        product_id: Set(product.as_uuid()),
        on_hand: Set(0),
        reserved: Set(0),
        updated_at: Set(now),
    };
    let result = stock::Entity::insert(row).on_conflict_do_nothing().exec_without_returning(db).await?;
    Ok(matches!(result, sea_orm::TryInsertResult::Inserted(n) if n > 0))
}

pub async fn find_stock<C: ConnectionTrait>(db: &C, product: ProductId) -> Result<Option<StockLevel>, DbErr> {
    Ok(stock::Entity::find_by_id(product.as_uuid()).one(db).await?.map(stock_level))
}

/// Sets `on_hand` unless that would put it below what is reserved; `true` if a row changed.
pub async fn set_on_hand<C: ConnectionTrait>(
    db: &C,
    product: ProductId,
    on_hand: OnHand,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    use stock::Column;
    let result = stock::Entity::update_many()
        .col_expr(Column::OnHand, Expr::value(on_hand.value()))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::ProductId.eq(product.as_uuid()))
        .filter(Column::Reserved.lte(on_hand.value()))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Holds `quantity` more units if that many are available; `false` if not (or no such product).
pub async fn reserve<C: ConnectionTrait>(
    db: &C,
    product: ProductId,
    quantity: Quantity,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    use stock::Column;
    let quantity = i64::from(quantity.get());
    let result = stock::Entity::update_many()
        .col_expr(Column::Reserved, Expr::col(Column::Reserved).add(quantity))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::ProductId.eq(product.as_uuid()))
        .filter(Expr::col(Column::OnHand).sub(Expr::col(Column::Reserved)).gte(quantity))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Lets go of `quantity` held units; `false` if fewer are held (the books disagree).
pub async fn release<C: ConnectionTrait>(
    db: &C,
    product: ProductId,
    quantity: Quantity,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    use stock::Column;
    let quantity = i64::from(quantity.get());
    let result = stock::Entity::update_many()
        .col_expr(Column::Reserved, Expr::col(Column::Reserved).sub(quantity))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::ProductId.eq(product.as_uuid()))
        .filter(Column::Reserved.gte(quantity))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Takes `quantity` held units out of the warehouse; `false` if fewer are held.
pub async fn remove_sold<C: ConnectionTrait>(
    db: &C,
    product: ProductId,
    quantity: Quantity,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    use stock::Column;
    let quantity = i64::from(quantity.get());
    let result = stock::Entity::update_many()
        .col_expr(Column::OnHand, Expr::col(Column::OnHand).sub(quantity))
        .col_expr(Column::Reserved, Expr::col(Column::Reserved).sub(quantity))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::ProductId.eq(product.as_uuid()))
        .filter(Column::Reserved.gte(quantity))
        .filter(Column::OnHand.gte(quantity))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// One line of `inventory_orders.items`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredItem {
    product_id: Uuid,
    quantity: Quantity,
}

fn items_json(lines: &Lines) -> Result<String, DbErr> {
    let items: Vec<StoredItem> =
        lines.iter().map(|(product, quantity)| StoredItem { product_id: product.as_uuid(), quantity }).collect();
    serde_json::to_string(&items).map_err(|e| DbErr::Json(e.to_string()))
}

fn to_reservation(model: order::Model) -> Result<Reservation, DbErr> {
    let corrupt =
        |field: &str, e: String| DbErr::Custom(format!("inventory_orders.{field} of {}: {e}", model.order_id));
    let items: Vec<StoredItem> = serde_json::from_str(&model.items).map_err(|e| corrupt("items", e.to_string()))?;
    Ok(Reservation {
        order_id: model.order_id.into(),
        status: ReservationStatus::parse(&model.status).map_err(|e| corrupt("status", e))?,
        lines: Lines::sum(items.into_iter().map(|i| (ProductId::from(i.product_id), i.quantity)))
            .map_err(|e| corrupt("items", e))?,
    })
}

pub async fn find_reservation<C: ConnectionTrait>(db: &C, id: OrderId) -> Result<Option<Reservation>, DbErr> {
    order::Entity::find_by_id(id.as_uuid()).one(db).await?.map(to_reservation).transpose()
}

/// Records what became of an order the inventory had not seen; a unique violation if it had.
pub async fn insert_reservation<C: ConnectionTrait>(
    db: &C,
    reservation: &Reservation,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let row = order::ActiveModel {
        order_id: Set(reservation.order_id.as_uuid()),
        status: Set(reservation.status.as_str().to_owned()),
        items: Set(items_json(&reservation.lines)?),
        created_at: Set(now),
        updated_at: Set(now),
    };
    order::Entity::insert(row).exec_without_returning(db).await?;
    Ok(())
}

/// Moves an order from `from` to `to`; `false` if it was no longer `from` (someone was first).
pub async fn change_status<C: ConnectionTrait>(
    db: &C,
    id: OrderId,
    from: ReservationStatus,
    to: ReservationStatus,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    use order::Column;
    let result = order::Entity::update_many()
        .col_expr(Column::Status, Expr::value(to.as_str()))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::OrderId.eq(id.as_uuid()))
        .filter(Column::Status.eq(from.as_str()))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}
