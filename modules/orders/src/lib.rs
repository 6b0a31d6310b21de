//! The orders module: orders, their lines and status, and its side of the order saga.
//!
//! A placed order is `pending` and publishes `OrderCreated`; inventory's `StockReserved` makes it
//! `awaiting_payment` (`OrderPaymentRequested`), `StockReservationFailed` rejects it
//! (`OrderRejected`). The payments module's `PaymentSucceeded` confirms it (`OrderConfirmed`, with
//! what shipping needs), a declining `PaymentFailed` rejects it and releases its stock; unpaid
//! within `orders.payment_timeout_secs`, it is cancelled. Shipping's events move a confirmed order on: `ShipmentDispatched` ships it,
//! `ShipmentDelivered` delivers it. A pending order is cancelled at once (`OrderCancelled`); a
//! confirmed one is only `cancelling` (`OrderCancellationRequested`) until shipping cancels its
//! shipment (`ShipmentCancelled`, then `OrderCancelled`) or dispatches it first. Likewise a confirmed
//! order's address change is only requested (`OrderAddressChangeRequested`) until shipping changes
//! the shipment's address (`ShipmentAddressChanged`) or refuses (`ShipmentAddressChangeRefused`).
//! Prices come from the module's own copy of the catalog, kept from `Product*` events: orders
//! never asks the catalog. `[orders]` caps the units an order may hold (see `domain::OrderLimits`).
//!
//! Admins ask it for sales reports (`/admin/reports`): a background job (`[jobs]`, the kernel's
//! durable jobs in `orders_jobs`) adds up the module's own orders into a CSV, off the request path.

mod domain;
mod events;
mod http;
mod persistence;
mod service;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contracts::{EventType, IntegrationEvent};
use futures::future::BoxFuture;
use kernel::housekeeping::Purge;
use kernel::jobs::{JobsSection, Queue, Worker};
use kernel::settings::{Checks, Section, SectionSpec, SettingsError};
use kernel::{EventHandler, Hosted, Module, ModuleContext, Routes};
use migrations::MigratorTrait;
use orders_contracts::{
    OrderAddressChangeRequested, OrderCancellationRequested, OrderCancelled, OrderConfirmed, OrderCreated,
    OrderPaymentRequested, OrderRejected,
};
use sea_orm::{DatabaseConnection, DbErr};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::domain::OrderLimits;
use crate::service::{Orders, SalesReportJob};

/// The module's `[orders]` section: what one order may hold, and how long it may await its payment.
/// An order beyond either limit is a 422; the limits keep one unpaid order from holding a whole
/// stock until it times out. A wholesale shop raises them.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default)]
struct OrdersSection {
    /// Units of one product in one order, its lines of that product together (at most 1000).
    max_quantity_per_line: u32,
    /// Units in one order, all lines together.
    max_quantity_per_order: u32,
    /// Seconds an order may await its payment once its stock is reserved; then it is cancelled
    /// (`payment_timeout`) and its stock released.
    payment_timeout_secs: u64,
}

impl Default for OrdersSection {
    fn default() -> Self {
        Self { max_quantity_per_line: 100, max_quantity_per_order: 1000, payment_timeout_secs: 900 }
    }
}

impl OrdersSection {
    fn payment_timeout(&self) -> Result<Duration, SettingsError> {
        match self.payment_timeout_secs {
            1..=604_800 => Ok(Duration::from_secs(self.payment_timeout_secs)),
            n => {
                Err(SettingsError::new("orders.payment_timeout_secs", format!("must be 1 to 604800 (a week), not {n}")))
            }
        }
    }

    fn limits(&self) -> Result<OrderLimits, SettingsError> {
        OrderLimits::new(self.max_quantity_per_line, self.max_quantity_per_order)
            .map_err(|(key, message)| SettingsError::new(key, message))
    }
}

impl Section for OrdersSection {
    const KEY: &'static str = NAME;

    fn check(&self, _checks: Checks) -> Result<(), SettingsError> {
        self.limits()?;
        self.payment_timeout().map(drop)
    }
}

#[derive(OpenApi)]
#[openapi(
    paths(
        http::place_order,
        http::get_order,
        http::list_orders,
        http::change_address,
        http::cancel_order,
        http::pay_order,
        http::request_sales_report,
        http::list_reports,
        http::get_report,
        http::download_report
    ),
    tags(
        (name = "orders", description = "Orders and their status"),
        (name = "reports", description = "Sales reports (admin), computed off the request path")
    )
)]
struct OrdersApi;

/// The module's name: its settings section, its tables' prefix, its queue.
pub const NAME: &str = "orders";

pub struct OrdersModule;

#[async_trait]
impl Module for OrdersModule {
    fn name(&self) -> &'static str {
        NAME
    }

    fn path_prefixes(&self) -> &'static [&'static str] {
        &["/orders", "/admin/reports"]
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        OrdersApi::openapi()
    }

    fn publishes(&self) -> Vec<EventType> {
        vec![
            OrderCreated::event_type(),
            OrderConfirmed::event_type(),
            OrderRejected::event_type(),
            OrderCancellationRequested::event_type(),
            OrderCancelled::event_type(),
            OrderAddressChangeRequested::event_type(),
            OrderPaymentRequested::event_type(),
        ]
    }

    fn settings(&self) -> Vec<SectionSpec> {
        // `[jobs]` is the kernel's, shared by every module that runs jobs: the report worker's.
        vec![SectionSpec::of::<OrdersSection>(), SectionSpec::of::<JobsSection>()]
    }

    fn consumes(&self) -> Vec<EventType> {
        events::routes().events()
    }

    async fn migrate(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        migrations::Migrator::up(db, None).await
    }

    async fn start(&self, ctx: ModuleContext) -> anyhow::Result<Box<dyn Hosted>> {
        let section = ctx.section::<OrdersSection>();
        let (limits, timeout) = (section.limits()?, section.payment_timeout()?);
        let jobs = ctx.section::<JobsSection>();
        let orders = web::Data::new(Orders::new(ctx.db, ctx.outbox, limits, timeout));
        Ok(Box::new(HostedOrders { orders, timeout, jobs }))
    }
}

struct HostedOrders {
    orders: web::Data<Orders>,
    timeout: Duration,
    jobs: Arc<JobsSection>,
}

impl Hosted for HostedOrders {
    fn routes(&self) -> Routes {
        let orders = self.orders.clone();
        Arc::new(move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(orders.clone())
                .service(http::place_order)
                .service(http::list_orders)
                .service(http::get_order)
                .service(http::change_address)
                .service(http::cancel_order)
                .service(http::pay_order)
                .service(http::request_sales_report)
                .service(http::list_reports)
                .service(http::get_report)
                .service(http::download_report);
        })
    }

    /// The payment timeout: overdue orders are cancelled within a quarter of the timeout (1 to 30 s).
    /// And the jobs' worker: the sales reports.
    fn background_tasks(&self, shutdown: CancellationToken) -> Vec<BoxFuture<'static, ()>> {
        let reports = self.orders.clone();
        let worker = Worker::new(self.orders.jobs().clone(), &self.jobs).handle::<SalesReportJob, _, _>(
            move |job: SalesReportJob, _| {
                let orders = reports.clone();
                async move { orders.run_sales_report(job.report_id.into()).await }
            },
        );
        let jobs = Box::pin(worker.run(shutdown.clone()));
        let orders = self.orders.clone();
        let every = (self.timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
        let overdue = Box::pin(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Err(e) = orders.cancel_overdue().await {
                    tracing::warn!(error = %format!("{e:#}"), "failed to cancel overdue orders; trying again");
                }
            }
        });
        vec![overdue, jobs]
    }

    fn jobs(&self) -> Option<Queue> {
        Some(self.orders.jobs().clone())
    }

    fn handler(&self) -> Option<Arc<dyn EventHandler>> {
        Some(events::routes().bind(events::OrdersEvents::new(self.orders.get_ref().clone())))
    }

    fn purges(&self) -> Vec<Arc<dyn Purge>> {
        vec![Arc::new(OldIdempotencyKeys(self.orders.clone()))]
    }
}

/// An `Idempotency-Key` is remembered for `housekeeping.retention_hours`: a client retries within
/// minutes; after that long the same key is a new order.
struct OldIdempotencyKeys(web::Data<Orders>);

#[async_trait]
impl Purge for OldIdempotencyKeys {
    fn what(&self) -> &'static str {
        "idempotency keys past the retention"
    }

    async fn purge(&self, _now: DateTime<Utc>, cutoff: DateTime<Utc>) -> anyhow::Result<u64> {
        self.0.forget_idempotency_keys_before(cutoff).await
    }
}
