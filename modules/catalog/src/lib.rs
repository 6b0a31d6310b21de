//! The catalog module: products with their sku, name, description, price and status.
//!
//! Admins create, revise and discontinue products; anyone reads them. Every change publishes
//! `ProductCreated`, `ProductUpdated` or `ProductDiscontinued` (see `catalog_contracts`) through
//! the module's outbox. It consumes nothing. This crate is the template the other modules follow.

mod domain;
mod http;
mod persistence;
mod service;

use std::sync::Arc;

use actix_web::web;
use async_trait::async_trait;
use catalog_contracts::{ProductCreated, ProductDiscontinued, ProductUpdated};
use contracts::{EventType, IntegrationEvent};
use kernel::{Hosted, Module, ModuleContext, Routes};
use migrations::MigratorTrait;
use sea_orm::{DatabaseConnection, DbErr};
use utoipa::OpenApi;

pub use service::Catalog;

#[derive(OpenApi)]
#[openapi(
    paths(http::list_products, http::get_product, http::create_product, http::update_product, http::discontinue_product),
    tags((name = "catalog", description = "Products and their prices"))
)]
struct CatalogApi;

/// The module's name: its settings section, its tables' prefix, its queue.
pub const NAME: &str = "catalog";

pub struct CatalogModule;

#[async_trait]
impl Module for CatalogModule {
    fn name(&self) -> &'static str {
        NAME
    }

    fn path_prefixes(&self) -> &'static [&'static str] {
        &["/products"]
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        CatalogApi::openapi()
    }

    fn publishes(&self) -> Vec<EventType> {
        vec![ProductCreated::event_type(), ProductUpdated::event_type(), ProductDiscontinued::event_type()]
    }

    async fn migrate(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        migrations::Migrator::up(db, None).await
    }

    async fn start(&self, ctx: ModuleContext) -> anyhow::Result<Box<dyn Hosted>> {
        Ok(Box::new(HostedCatalog { catalog: web::Data::new(Catalog::new(ctx.db, ctx.outbox)) }))
    }
}

struct HostedCatalog {
    catalog: web::Data<Catalog>,
}

impl Hosted for HostedCatalog {
    fn routes(&self) -> Routes {
        let catalog = self.catalog.clone();
        Arc::new(move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(catalog.clone())
                .service(http::list_products)
                .service(http::get_product)
                .service(http::create_product)
                .service(http::update_product)
                .service(http::discontinue_product);
        })
    }
}
