//! The orders module's tables and queries. Entities never leave this file.

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, ConnectionTrait, QueryOrder, QuerySelect};

use contracts::{AddressForm, ProductStatus};

use crate::domain::{
    Address, AddressChange, CancellationReason, Currency, GroupBy, Money, Order, OrderId, OrderLine, OrderStatus,
    Payment, PaymentMethod, PaymentStatus, Quantity, Report, ReportId, ReportRange, ReportStatus, SALE_STATUSES, Sale,
    SaleLine, Timeline,
};

pub mod product {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "orders_products")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub product_id: Uuid,
        pub sku: String,
        pub name: String,
        pub price_amount: i64,
        pub price_currency: String,
        pub status: String,
        pub updated_at: DateTime<Utc>,
        pub version: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod order {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "orders_orders")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: Uuid,
        pub status: String,
        pub ship_name: String,
        pub ship_line1: String,
        pub ship_line2: Option<String>,
        pub ship_city: String,
        pub ship_postal_code: String,
        pub ship_country: String,
        pub total_amount: i64,
        pub currency: String,
        pub rejection_reason: Option<String>,
        pub created_at: DateTime<Utc>,
        pub updated_at: DateTime<Utc>,
        pub confirmed_at: Option<DateTime<Utc>>,
        pub rejected_at: Option<DateTime<Utc>>,
        pub cancelled_at: Option<DateTime<Utc>>,
        pub shipped_at: Option<DateTime<Utc>>,
        pub delivered_at: Option<DateTime<Utc>>,
        pub cancellation_requested_at: Option<DateTime<Utc>>,
        pub requested_ship_name: Option<String>,
        pub requested_ship_line1: Option<String>,
        pub requested_ship_line2: Option<String>,
        pub requested_ship_city: Option<String>,
        pub requested_ship_postal_code: Option<String>,
        pub requested_ship_country: Option<String>,
        pub address_change_requested_at: Option<DateTime<Utc>>,
        pub cancellation_reason: Option<String>,
        pub payment_method: Option<String>,
        pub payment_status: Option<String>,
        pub payment_attempt: Option<i32>,
        pub payment_client_secret: Option<String>,
        pub payment_failure_reason: Option<String>,
        pub payment_due_at: Option<DateTime<Utc>>,
        pub paid_at: Option<DateTime<Utc>>,
        pub refunded_at: Option<DateTime<Utc>>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod line {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "orders_lines")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub line_no: i32,
        pub product_id: Uuid,
        pub sku: String,
        pub name: String,
        pub quantity: i32,
        pub unit_amount: i64,
        pub line_amount: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod idempotency {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "orders_idempotency")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub request_hash: String,
        pub order_id: Uuid,
        pub response: String,
        pub created_at: DateTime<Utc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The local copy of a catalog product, at the product's `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductCopy {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    /// `None` only on the discontinued placeholder of a product whose `ProductCreated` is late
    /// (stored as 0 in no currency).
    pub price: Option<Money>,
    pub active: bool,
    /// 0 for a copy made from events published before products had versions.
    pub version: i64,
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
/// older, is not applied: a product never comes back from a discontinuation it has not seen undone.
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

pub async fn products<C: ConnectionTrait>(db: &C, ids: &[Uuid]) -> Result<Vec<ProductCopy>, DbErr> {
    let rows = product::Entity::find().filter(product::Column::ProductId.is_in(ids.iter().copied())).all(db).await?;
    rows.into_iter()
        .map(|m| {
            let corrupt = |e: String| DbErr::Custom(format!("orders_products {} price: {e}", m.product_id));
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

fn order_model(o: &Order) -> order::ActiveModel {
    let a = &o.shipping_address;
    let requested = o.address_change.as_ref();
    order::ActiveModel {
        id: Set(o.id.as_uuid()),
        user_id: Set(o.user_id),
        status: Set(o.status.as_str().to_owned()),
        ship_name: Set(a.name().to_owned()),
        ship_line1: Set(a.line1().to_owned()),
        ship_line2: Set(a.line2().map(str::to_owned)),
        ship_city: Set(a.city().to_owned()),
        ship_postal_code: Set(a.postal_code().to_owned()),
        ship_country: Set(a.country().to_owned()),
        total_amount: Set(o.total.amount_minor()),
        currency: Set(o.total.currency().code().to_owned()),
        rejection_reason: Set(o.rejection_reason.clone()),
        created_at: Set(o.created_at),
        updated_at: Set(o.updated_at),
        confirmed_at: Set(o.timeline.confirmed_at),
        rejected_at: Set(o.timeline.rejected_at),
        cancelled_at: Set(o.timeline.cancelled_at),
        shipped_at: Set(o.timeline.shipped_at),
        delivered_at: Set(o.timeline.delivered_at),
        cancellation_requested_at: Set(o.timeline.cancellation_requested_at),
        requested_ship_name: Set(requested.map(|r| r.address.name().to_owned())),
        requested_ship_line1: Set(requested.map(|r| r.address.line1().to_owned())),
        requested_ship_line2: Set(requested.and_then(|r| r.address.line2().map(str::to_owned))),
        requested_ship_city: Set(requested.map(|r| r.address.city().to_owned())),
        requested_ship_postal_code: Set(requested.map(|r| r.address.postal_code().to_owned())),
        requested_ship_country: Set(requested.map(|r| r.address.country().to_owned())),
        address_change_requested_at: Set(requested.map(|r| r.requested_at)),
        cancellation_reason: Set(o.cancellation_reason.map(|r| r.as_str().to_owned())),
        payment_method: Set(o.payment_method.as_ref().map(|m| m.as_str().to_owned())),
        payment_status: Set(o.payment.as_ref().map(|p| p.status.as_str().to_owned())),
        payment_attempt: Set(o.payment.as_ref().map(|p| i32::try_from(p.attempt).unwrap_or(i32::MAX))),
        payment_client_secret: Set(o.payment.as_ref().and_then(|p| p.client_secret.clone())),
        payment_failure_reason: Set(o.payment.as_ref().and_then(|p| p.failure_reason.clone())),
        payment_due_at: Set(o.payment.as_ref().map(|p| p.due_at)),
        paid_at: Set(o.payment.as_ref().and_then(|p| p.paid_at)),
        refunded_at: Set(o.payment.as_ref().and_then(|p| p.refunded_at)),
    }
}

pub async fn insert_order<C: ConnectionTrait>(db: &C, o: &Order) -> Result<(), DbErr> {
    order::Entity::insert(order_model(o)).exec_without_returning(db).await?;
    let lines = o.lines.iter().enumerate().map(|(i, l)| line::ActiveModel {
        order_id: Set(o.id.as_uuid()),
        line_no: Set(i32::try_from(i).unwrap_or(i32::MAX)),
        product_id: Set(l.product_id),
        sku: Set(l.sku.clone()),
        name: Set(l.name.clone()),
        quantity: Set(i32::try_from(l.quantity.get()).unwrap_or(i32::MAX)),
        unit_amount: Set(l.unit_price.amount_minor()),
        line_amount: Set(l.total().amount_minor()),
    });
    line::Entity::insert_many(lines).exec_without_returning(db).await?;
    Ok(())
}

/// Saves the order's status, address, reason and timeline.
pub async fn update_order<C: ConnectionTrait>(db: &C, o: &Order) -> Result<(), DbErr> {
    order::Entity::update(order_model(o)).exec(db).await?;
    Ok(())
}

fn to_domain(m: order::Model, lines: Vec<line::Model>) -> Result<Order, DbErr> {
    let corrupt = |e: String| DbErr::Custom(format!("orders_orders {}: {e}", m.id));
    let currency = Currency::parse(&m.currency).map_err(corrupt)?;
    let address = |form: &AddressForm| {
        Address::parse(form).map_err(|problems| {
            let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
            corrupt(format!("an invalid address: {}", problems.join("; ")))
        })
    };
    let lines = lines
        .into_iter()
        .map(|l| {
            Ok(OrderLine {
                product_id: l.product_id,
                sku: l.sku,
                name: l.name,
                quantity: Quantity::parse(i64::from(l.quantity)).map_err(corrupt)?,
                unit_price: Money::new(l.unit_amount, currency).map_err(corrupt)?,
            })
        })
        .collect::<Result<Vec<_>, DbErr>>()?;
    let address_change = match (
        m.requested_ship_name,
        m.requested_ship_line1,
        m.requested_ship_city,
        m.requested_ship_postal_code,
        m.requested_ship_country,
        m.address_change_requested_at,
    ) {
        (Some(name), Some(line1), Some(city), Some(postal_code), Some(country), Some(requested_at)) => {
            let form = AddressForm {
                name: Some(name),
                line1: Some(line1),
                line2: m.requested_ship_line2,
                city: Some(city),
                postal_code: Some(postal_code),
                country: Some(country),
            };
            Some(AddressChange { address: address(&form)?, requested_at })
        }
        _ => None,
    };
    let payment = match (m.payment_status.as_deref(), m.payment_attempt, m.payment_due_at) {
        (Some(status), Some(attempt), Some(due_at)) => Some(Payment {
            status: PaymentStatus::parse(status).map_err(corrupt)?,
            attempt: u32::try_from(attempt).map_err(|e| corrupt(e.to_string()))?,
            client_secret: m.payment_client_secret,
            failure_reason: m.payment_failure_reason,
            due_at,
            paid_at: m.paid_at,
            refunded_at: m.refunded_at,
        }),
        _ => None,
    };
    Ok(Order {
        id: m.id.into(),
        user_id: m.user_id,
        status: OrderStatus::parse(&m.status).map_err(corrupt)?,
        lines,
        shipping_address: address(&AddressForm {
            name: Some(m.ship_name),
            line1: Some(m.ship_line1),
            line2: m.ship_line2,
            city: Some(m.ship_city),
            postal_code: Some(m.ship_postal_code),
            country: Some(m.ship_country),
        })?,
        address_change,
        total: Money::new(m.total_amount, currency).map_err(corrupt)?,
        rejection_reason: m.rejection_reason,
        cancellation_reason: m
            .cancellation_reason
            .as_deref()
            .map(CancellationReason::parse)
            .transpose()
            .map_err(corrupt)?,
        payment_method: m.payment_method.as_deref().map(PaymentMethod::parse).transpose().map_err(corrupt)?,
        payment,
        created_at: m.created_at,
        updated_at: m.updated_at,
        timeline: Timeline {
            confirmed_at: m.confirmed_at,
            rejected_at: m.rejected_at,
            cancellation_requested_at: m.cancellation_requested_at,
            cancelled_at: m.cancelled_at,
            shipped_at: m.shipped_at,
            delivered_at: m.delivered_at,
        },
    })
}

async fn with_lines<C: ConnectionTrait>(db: &C, orders: Vec<order::Model>) -> Result<Vec<Order>, DbErr> {
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = orders.iter().map(|o| o.id).collect();
    let lines = line::Entity::find()
        .filter(line::Column::OrderId.is_in(ids))
        .order_by_asc(line::Column::OrderId)
        .order_by_asc(line::Column::LineNo)
        .all(db)
        .await?;
    let mut by_order: std::collections::HashMap<Uuid, Vec<line::Model>> = std::collections::HashMap::new();
    for line in lines {
        by_order.entry(line.order_id).or_default().push(line);
    }
    orders
        .into_iter()
        .map(|o| {
            let lines = by_order.remove(&o.id).unwrap_or_default();
            to_domain(o, lines)
        })
        .collect()
}

/// The order, locked for the rest of the transaction where the engine can.
pub async fn find<C: ConnectionTrait>(db: &C, id: OrderId, lock: bool) -> Result<Option<Order>, DbErr> {
    let mut query = order::Entity::find_by_id(id.as_uuid());
    if lock && db.get_database_backend() != sea_orm::DbBackend::Sqlite {
        query = query.lock_exclusive();
    }
    let Some(model) = query.one(db).await? else { return Ok(None) };
    Ok(with_lines(db, vec![model]).await?.pop())
}

/// Orders in id (creation) order; only `user_id`'s unless `None`.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    user_id: Option<Uuid>,
    status: Option<OrderStatus>,
    after: Option<OrderId>,
    limit: u64,
) -> Result<Vec<Order>, DbErr> {
    use order::Column as C;
    let mut query = order::Entity::find().order_by_asc(C::Id).limit(limit);
    if let Some(user_id) = user_id {
        query = query.filter(C::UserId.eq(user_id));
    }
    if let Some(status) = status {
        query = query.filter(C::Status.eq(status.as_str()));
    }
    if let Some(after) = after {
        query = query.filter(C::Id.gt(after.as_uuid()));
    }
    with_lines(db, query.all(db).await?).await
}

/// Orders still awaiting payment whose payment was due before `now`, oldest first.
pub async fn overdue<C: ConnectionTrait>(db: &C, now: DateTime<Utc>, limit: u64) -> Result<Vec<OrderId>, DbErr> {
    use order::Column as C;
    let ids: Vec<Uuid> = order::Entity::find()
        .select_only()
        .column(C::Id)
        .filter(C::Status.eq(OrderStatus::AwaitingPayment.as_str()))
        .filter(C::PaymentDueAt.lt(now))
        .order_by_asc(C::PaymentDueAt)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    Ok(ids.into_iter().map(OrderId::from).collect())
}

/// Forgets the `Idempotency-Key`s remembered before `cutoff`; returns how many.
pub async fn forget_idempotency_keys_before<C: ConnectionTrait>(db: &C, cutoff: DateTime<Utc>) -> Result<u64, DbErr> {
    let result = idempotency::Entity::delete_many().filter(idempotency::Column::CreatedAt.lt(cutoff)).exec(db).await?;
    Ok(result.rows_affected)
}

/// A remembered `Idempotency-Key`.
pub struct Remembered {
    pub request_hash: String,
    pub response: String,
}

pub async fn remembered<C: ConnectionTrait>(db: &C, user_id: Uuid, key: &str) -> Result<Option<Remembered>, DbErr> {
    Ok(idempotency::Entity::find_by_id((user_id, key.to_owned()))
        .one(db)
        .await?
        .map(|m| Remembered { request_hash: m.request_hash, response: m.response }))
}

pub async fn remember<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    key: &str,
    request_hash: &str,
    order_id: OrderId,
    response: &str,
) -> Result<(), DbErr> {
    let model = idempotency::ActiveModel {
        user_id: Set(user_id),
        key: Set(key.to_owned()),
        request_hash: Set(request_hash.to_owned()),
        order_id: Set(order_id.as_uuid()),
        response: Set(response.to_owned()),
        created_at: Set(kernel::db::now()),
    };
    idempotency::Entity::insert(model).exec_without_returning(db).await?;
    Ok(())
}

pub mod report {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "orders_reports")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub kind: String,
        pub range_from: DateTime<Utc>,
        pub range_to: DateTime<Utc>,
        pub group_by: String,
        pub status: String,
        pub requested_by: Uuid,
        pub requested_at: DateTime<Utc>,
        pub finished_at: Option<DateTime<Utc>>,
        pub row_count: Option<i32>,
        pub csv: Option<String>,
        pub error: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    /// A row without its CSV, which may be megabytes: what the status and the list read.
    #[derive(Debug, sea_orm::FromQueryResult)]
    pub struct Head {
        pub id: Uuid,
        pub range_from: DateTime<Utc>,
        pub range_to: DateTime<Utc>,
        pub group_by: String,
        pub status: String,
        pub requested_by: Uuid,
        pub requested_at: DateTime<Utc>,
        pub finished_at: Option<DateTime<Utc>>,
        pub row_count: Option<i32>,
        pub error: Option<String>,
    }
}

/// The only kind of report so far.
const SALES: &str = "sales";

pub async fn insert_report<C: ConnectionTrait>(db: &C, r: &Report) -> Result<(), DbErr> {
    let model = report::ActiveModel {
        id: Set(r.id.as_uuid()),
        kind: Set(SALES.to_owned()),
        range_from: Set(r.range.from()),
        range_to: Set(r.range.to()),
        group_by: Set(r.group_by.as_str().to_owned()),
        status: Set(r.status.as_str().to_owned()),
        requested_by: Set(r.requested_by),
        requested_at: Set(r.requested_at),
        finished_at: Set(r.finished_at),
        row_count: Set(r.row_count.map(|n| i32::try_from(n).unwrap_or(i32::MAX))),
        csv: Set(None),
        error: Set(r.error.clone()),
    };
    report::Entity::insert(model).exec_without_returning(db).await?;
    Ok(())
}

fn report_query() -> sea_orm::Select<report::Entity> {
    use report::Column as C;
    report::Entity::find().select_only().columns([
        C::Id,
        C::RangeFrom,
        C::RangeTo,
        C::GroupBy,
        C::Status,
        C::RequestedBy,
        C::RequestedAt,
        C::FinishedAt,
        C::RowCount,
        C::Error,
    ])
}

fn report_to_domain(h: report::Head) -> Result<Report, DbErr> {
    let corrupt = |e: String| DbErr::Custom(format!("orders_reports {}: {e}", h.id));
    let range = ReportRange::new(h.range_from, h.range_to).map_err(|(_, e)| corrupt(e))?;
    let status = ReportStatus::ALL
        .into_iter()
        .find(|s| s.as_str() == h.status)
        .ok_or_else(|| corrupt(format!("an unknown status '{}'", h.status)))?;
    Ok(Report {
        id: h.id.into(),
        range,
        group_by: GroupBy::parse(&h.group_by).map_err(corrupt)?,
        status,
        requested_by: h.requested_by,
        requested_at: h.requested_at,
        finished_at: h.finished_at,
        row_count: h.row_count.map(|n| u32::try_from(n).unwrap_or(0)),
        error: h.error,
    })
}

pub async fn find_report<C: ConnectionTrait>(db: &C, id: ReportId) -> Result<Option<Report>, DbErr> {
    let head = report_query().filter(report::Column::Id.eq(id.as_uuid())).into_model::<report::Head>().one(db).await?;
    head.map(report_to_domain).transpose()
}

/// The newest reports first.
pub async fn recent_reports<C: ConnectionTrait>(db: &C, limit: u64) -> Result<Vec<Report>, DbErr> {
    let heads = report_query()
        .order_by_desc(report::Column::RequestedAt)
        .order_by_desc(report::Column::Id)
        .limit(limit)
        .into_model::<report::Head>()
        .all(db)
        .await?;
    heads.into_iter().map(report_to_domain).collect()
}

/// The report's CSV: `None` until it is done.
pub async fn report_csv<C: ConnectionTrait>(db: &C, id: ReportId) -> Result<Option<String>, DbErr> {
    let csv: Option<Option<String>> =
        report::Entity::find_by_id(id.as_uuid()).select_only().column(report::Column::Csv).into_tuple().one(db).await?;
    Ok(csv.flatten())
}

/// Records the report's status, and its error (`None` clears it). A done report is never changed
/// again: its CSV stays the one downloaded.
pub async fn set_report_status<C: ConnectionTrait>(
    db: &C,
    id: ReportId,
    status: ReportStatus,
    error: Option<String>,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    use report::Column as C;
    let finished = (status == ReportStatus::Failed).then_some(at);
    report::Entity::update_many()
        .col_expr(C::Status, Expr::value(status.as_str()))
        .col_expr(C::Error, Expr::value(error))
        .col_expr(C::FinishedAt, Expr::value(finished))
        .filter(C::Id.eq(id.as_uuid()))
        .filter(C::Status.ne(ReportStatus::Done.as_str()))
        .exec(db)
        .await?;
    Ok(())
}

/// Stores the finished report: `done`, with its CSV, in one statement.
pub async fn finish_report<C: ConnectionTrait>(
    db: &C,
    id: ReportId,
    csv: String,
    rows: usize,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    use report::Column as C;
    report::Entity::update_many()
        .col_expr(C::Status, Expr::value(ReportStatus::Done.as_str()))
        .col_expr(C::Csv, Expr::value(csv))
        .col_expr(C::RowCount, Expr::value(i32::try_from(rows).unwrap_or(i32::MAX)))
        .col_expr(C::FinishedAt, Expr::value(at))
        .col_expr(C::Error, Expr::value(Option::<String>::None))
        .filter(C::Id.eq(id.as_uuid()))
        .exec(db)
        .await?;
    Ok(())
}

/// Where a report's reading of the orders is: the last order read, by `(confirmed_at, id)`.
pub type SalesCursor = (DateTime<Utc>, Uuid);

/// An order as a report reads it: id, status, currency, total, confirmed_at.
type SaleRow = (Uuid, String, String, i64, Option<DateTime<Utc>>);

/// A page of the orders confirmed within `range`, after `after`, in `(confirmed_at, id)` order:
/// the sales among them (with their lines), how many orders were read, and where to go on.
///
/// Keyset on `(confirmed_at, id)`, which `orders_orders_confirmed_at` indexes, so each page reads
/// only its rows of the range, in index order, with no sort. The statuses are filtered here, not in
/// SQL: with `status IN (…)` in the query, SQLite chose the status index, read every sale of the
/// table and sorted them, for each page (5.2 s for 100 000 orders; bench/README.md). Two short
/// reads (the orders, then their lines) outside any transaction: no lock is held between pages and
/// no writer waits on the report.
pub async fn sales_page<C: ConnectionTrait>(
    db: &C,
    range: &ReportRange,
    after: Option<SalesCursor>,
    limit: u64,
) -> Result<(Vec<Sale>, usize, Option<SalesCursor>), DbErr> {
    use order::Column as C;
    use sea_orm::Condition;
    let mut query = order::Entity::find()
        .select_only()
        .columns([C::Id, C::Status, C::Currency, C::TotalAmount, C::ConfirmedAt])
        .filter(C::ConfirmedAt.gte(range.from()))
        .filter(C::ConfirmedAt.lt(range.to()))
        .order_by_asc(C::ConfirmedAt)
        .order_by_asc(C::Id)
        .limit(limit);
    if let Some((at, id)) = after {
        let later = Condition::any()
            .add(C::ConfirmedAt.gt(at))
            .add(Condition::all().add(C::ConfirmedAt.eq(at)).add(C::Id.gt(id)));
        query = query.filter(later);
    }
    let rows: Vec<SaleRow> = query.into_tuple().all(db).await?;
    let read = rows.len();
    let last = rows.last().and_then(|(id, _, _, _, at)| at.map(|at| (at, *id)));
    let sales_statuses: Vec<&str> = SALE_STATUSES.iter().map(OrderStatus::as_str).collect();
    let orders: Vec<_> = rows.into_iter().filter(|(_, status, ..)| sales_statuses.contains(&status.as_str())).collect();
    if orders.is_empty() {
        return Ok((Vec::new(), read, last));
    }
    let lines = line::Entity::find()
        .filter(line::Column::OrderId.is_in(orders.iter().map(|(id, ..)| *id)))
        .order_by_asc(line::Column::OrderId)
        .order_by_asc(line::Column::LineNo)
        .all(db)
        .await?;
    let mut by_order: std::collections::HashMap<Uuid, Vec<SaleLine>> = std::collections::HashMap::new();
    for l in lines {
        let corrupt = |e: String| DbErr::Custom(format!("orders_lines {} {}: {e}", l.order_id, l.line_no));
        let units = u32::try_from(l.quantity).map_err(|e| corrupt(e.to_string()))?;
        by_order.entry(l.order_id).or_default().push(SaleLine {
            product_id: l.product_id,
            sku: l.sku,
            name: l.name,
            units,
            amount_minor: l.line_amount,
        });
    }
    let sales = orders
        .into_iter()
        .map(|(id, _, currency, total, confirmed_at)| {
            let corrupt = |e: String| DbErr::Custom(format!("orders_orders {id}: {e}"));
            let currency = Currency::parse(&currency).map_err(corrupt)?;
            Ok(Sale {
                confirmed_at: confirmed_at.ok_or_else(|| corrupt("a sale without confirmed_at".into()))?,
                total: Money::new(total, currency).map_err(corrupt)?,
                lines: by_order.remove(&id).unwrap_or_default(),
            })
        })
        .collect::<Result<_, DbErr>>()?;
    Ok((sales, read, last))
}
