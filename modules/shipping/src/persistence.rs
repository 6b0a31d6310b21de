//! The shipping module's tables and queries. Entities never leave this file.
//!
//! A shipment's status moves only through conditional updates (`... WHERE status = <from>`): if a
//! dispatch and a cancellation race, the database lets exactly one of them through.

use chrono::{DateTime, Utc};
use contracts::AddressForm;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ConnectionTrait, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};

use crate::domain::{
    Address, Carrier, Line, OrderId, Quantity, Shipment, ShipmentId, ShipmentStatus, Timeline, TrackingNumber,
};

pub mod shipment {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "shipping_shipments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        #[sea_orm(unique)]
        pub order_id: Uuid,
        pub user_id: Uuid,
        pub status: String,
        /// The lines as JSON: `[{"productId", "sku", "name", "quantity"}]`.
        #[sea_orm(column_type = "Text")]
        pub lines: String,
        pub ship_name: Option<String>,
        pub ship_line1: Option<String>,
        pub ship_line2: Option<String>,
        pub ship_city: Option<String>,
        pub ship_postal_code: Option<String>,
        pub ship_country: Option<String>,
        pub carrier: Option<String>,
        pub tracking_number: Option<String>,
        #[sea_orm(column_type = "Text", nullable)]
        pub cancellation_reason: Option<String>,
        pub created_at: DateTime<Utc>,
        pub updated_at: DateTime<Utc>,
        pub dispatched_at: Option<DateTime<Utc>>,
        pub delivered_at: Option<DateTime<Utc>>,
        pub cancelled_at: Option<DateTime<Utc>>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod address_request {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "shipping_address_requests")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: Uuid,
        pub ship_name: String,
        pub ship_line1: String,
        pub ship_line2: Option<String>,
        pub ship_city: String,
        pub ship_postal_code: String,
        pub ship_country: String,
        pub requested_at: Option<DateTime<Utc>>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LineJson {
    product_id: Uuid,
    sku: String,
    name: String,
    quantity: Quantity,
}

fn model(s: &Shipment) -> Result<shipment::ActiveModel, DbErr> {
    let lines: Vec<LineJson> = s
        .lines
        .iter()
        .map(|l| LineJson { product_id: l.product_id, sku: l.sku.clone(), name: l.name.clone(), quantity: l.quantity })
        .collect();
    let lines = serde_json::to_string(&lines).map_err(|e| DbErr::Json(e.to_string()))?;
    let a = s.address.as_ref();
    Ok(shipment::ActiveModel {
        id: Set(s.id.as_uuid()),
        order_id: Set(s.order_id.as_uuid()),
        user_id: Set(s.user_id),
        status: Set(s.status.as_str().to_owned()),
        lines: Set(lines),
        ship_name: Set(a.map(|a| a.name().to_owned())),
        ship_line1: Set(a.map(|a| a.line1().to_owned())),
        ship_line2: Set(a.and_then(|a| a.line2().map(str::to_owned))),
        ship_city: Set(a.map(|a| a.city().to_owned())),
        ship_postal_code: Set(a.map(|a| a.postal_code().to_owned())),
        ship_country: Set(a.map(|a| a.country().to_owned())),
        carrier: Set(s.carrier.as_ref().map(|c| c.as_str().to_owned())),
        tracking_number: Set(s.tracking_number.as_ref().map(|t| t.as_str().to_owned())),
        cancellation_reason: Set(s.cancellation_reason.clone()),
        created_at: Set(s.created_at),
        updated_at: Set(s.updated_at),
        dispatched_at: Set(s.timeline.dispatched_at),
        delivered_at: Set(s.timeline.delivered_at),
        cancelled_at: Set(s.timeline.cancelled_at),
    })
}

fn to_domain(m: shipment::Model) -> Result<Shipment, DbErr> {
    let corrupt = |field: &str, e: String| DbErr::Custom(format!("shipping_shipments {} {field}: {e}", m.id));
    let lines: Vec<LineJson> = serde_json::from_str(&m.lines).map_err(|e| corrupt("lines", e.to_string()))?;
    let address = match (m.ship_name, m.ship_line1, m.ship_city, m.ship_postal_code, m.ship_country) {
        (Some(name), Some(line1), Some(city), Some(postal_code), Some(country)) => {
            let form = AddressForm {
                name: Some(name),
                line1: Some(line1),
                line2: m.ship_line2,
                city: Some(city),
                postal_code: Some(postal_code),
                country: Some(country),
            };
            Some(parse_address(&form).map_err(|e| corrupt("address", e))?)
        }
        _ => None,
    };
    Ok(Shipment {
        id: m.id.into(),
        order_id: m.order_id.into(),
        user_id: m.user_id,
        status: ShipmentStatus::parse(&m.status).map_err(|e| corrupt("status", e))?,
        lines: lines
            .into_iter()
            .map(|l| Line { product_id: l.product_id, sku: l.sku, name: l.name, quantity: l.quantity })
            .collect(),
        address,
        carrier: m.carrier.as_deref().map(Carrier::parse).transpose().map_err(|e| corrupt("carrier", e))?,
        tracking_number: m
            .tracking_number
            .as_deref()
            .map(TrackingNumber::parse)
            .transpose()
            .map_err(|e| corrupt("tracking_number", e))?,
        cancellation_reason: m.cancellation_reason,
        created_at: m.created_at,
        updated_at: m.updated_at,
        timeline: Timeline {
            dispatched_at: m.dispatched_at,
            delivered_at: m.delivered_at,
            cancelled_at: m.cancelled_at,
        },
    })
}

/// Records a new shipment; a unique violation if its order has one already.
pub async fn insert<C: ConnectionTrait>(db: &C, s: &Shipment) -> Result<(), DbErr> {
    shipment::Entity::insert(model(s)?).exec_without_returning(db).await?;
    Ok(())
}

/// Saves the shipment if it still has the status `from`; `false` if someone changed it first.
pub async fn update_from<C: ConnectionTrait>(db: &C, s: &Shipment, from: ShipmentStatus) -> Result<bool, DbErr> {
    use shipment::Column;
    let result = shipment::Entity::update_many()
        .set(model(s)?)
        .filter(Column::Id.eq(s.id.as_uuid()))
        .filter(Column::Status.eq(from.as_str()))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

fn locked(
    db: &impl ConnectionTrait,
    query: sea_orm::Select<shipment::Entity>,
    lock: bool,
) -> sea_orm::Select<shipment::Entity> {
    if lock && db.get_database_backend() != sea_orm::DbBackend::Sqlite { query.lock_exclusive() } else { query }
}

/// The shipment, locked for the rest of the transaction where the engine can.
pub async fn find<C: ConnectionTrait>(db: &C, id: ShipmentId, lock: bool) -> Result<Option<Shipment>, DbErr> {
    locked(db, shipment::Entity::find_by_id(id.as_uuid()), lock).one(db).await?.map(to_domain).transpose()
}

/// The order's shipment, locked for the rest of the transaction where the engine can.
pub async fn find_by_order<C: ConnectionTrait>(db: &C, order: OrderId, lock: bool) -> Result<Option<Shipment>, DbErr> {
    let query = shipment::Entity::find().filter(shipment::Column::OrderId.eq(order.as_uuid()));
    locked(db, query, lock).one(db).await?.map(to_domain).transpose()
}

/// What a list of shipments is narrowed to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter {
    /// Only this customer's shipments.
    pub user_id: Option<Uuid>,
    pub order_id: Option<OrderId>,
    pub status: Option<ShipmentStatus>,
}

/// Shipments in id (creation) order after `after`.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    filter: Filter,
    after: Option<ShipmentId>,
    limit: u64,
) -> Result<Vec<Shipment>, DbErr> {
    use shipment::Column as C;
    let mut query = shipment::Entity::find().order_by_asc(C::Id).limit(limit);
    if let Some(user_id) = filter.user_id {
        query = query.filter(C::UserId.eq(user_id));
    }
    if let Some(order_id) = filter.order_id {
        query = query.filter(C::OrderId.eq(order_id.as_uuid()));
    }
    if let Some(status) = filter.status {
        query = query.filter(C::Status.eq(status.as_str()));
    }
    if let Some(after) = after {
        query = query.filter(C::Id.gt(after.as_uuid()));
    }
    query.all(db).await?.into_iter().map(to_domain).collect()
}

/// An address read back: what was valid when it was stored must still parse.
fn parse_address(form: &AddressForm) -> Result<Address, String> {
    Address::parse(form).map_err(|problems| {
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        format!("an invalid address: {}", problems.join("; "))
    })
}

fn slot(order: OrderId, a: &Address, requested_at: Option<DateTime<Utc>>) -> address_request::ActiveModel {
    address_request::ActiveModel {
        order_id: Set(order.as_uuid()),
        ship_name: Set(a.name().to_owned()),
        ship_line1: Set(a.line1().to_owned()),
        ship_line2: Set(a.line2().map(str::to_owned)),
        ship_city: Set(a.city().to_owned()),
        ship_postal_code: Set(a.postal_code().to_owned()),
        ship_country: Set(a.country().to_owned()),
        requested_at: Set(requested_at),
    }
}

/// Records an address change for the order's shipment to come; a later one replaces it. Writing
/// the order's slot waits for an opening of its shipment that holds it (see [`claim_slot`]).
pub async fn record_request<C: ConnectionTrait>(
    db: &C,
    order: OrderId,
    address: &Address,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    use address_request::Column as C;
    let on_conflict = OnConflict::column(C::OrderId)
        .update_columns([
            C::ShipName,
            C::ShipLine1,
            C::ShipLine2,
            C::ShipCity,
            C::ShipPostalCode,
            C::ShipCountry,
            C::RequestedAt,
        ])
        .to_owned();
    address_request::Entity::insert(slot(order, address, Some(now)))
        .on_conflict(on_conflict)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Claims the order's slot for the opening of its shipment and empties it: the address change
/// recorded there, if any. Writing the slot, not just reading it, makes a request being recorded
/// at the same moment either commit first (and be returned) or wait and find the shipment.
pub async fn claim_slot<C: ConnectionTrait>(
    db: &C,
    order: OrderId,
    confirmed: &Address,
) -> Result<Option<Address>, DbErr> {
    use address_request::Column as C;
    // A no-op update on conflict keeps a recorded request as it is.
    let keep = OnConflict::column(C::OrderId).update_column(C::OrderId).to_owned();
    address_request::Entity::insert(slot(order, confirmed, None)).on_conflict(keep).exec_without_returning(db).await?;
    let query = address_request::Entity::find_by_id(order.as_uuid());
    let query = if db.get_database_backend() != sea_orm::DbBackend::Sqlite { query.lock_exclusive() } else { query };
    let row = query.one(db).await?;
    drop_request(db, order).await?;
    let Some(r) = row.filter(|r| r.requested_at.is_some()) else { return Ok(None) };
    let form = AddressForm {
        name: Some(r.ship_name),
        line1: Some(r.ship_line1),
        line2: r.ship_line2,
        city: Some(r.ship_city),
        postal_code: Some(r.ship_postal_code),
        country: Some(r.ship_country),
    };
    let address = parse_address(&form)
        .map_err(|e| DbErr::Custom(format!("shipping_address_requests {} address: {e}", r.order_id)))?;
    Ok(Some(address))
}

/// Forgets the order's recorded address change, if any.
pub async fn drop_request<C: ConnectionTrait>(db: &C, order: OrderId) -> Result<(), DbErr> {
    address_request::Entity::delete_by_id(order.as_uuid()).exec(db).await?;
    Ok(())
}
