//! The baseline for the catalog read: the least the same stack (actix-web + sea-orm on SQLite)
//! needs to answer `GET /products/{id}` — the same `find_by_id` on `catalog_products`, the same
//! JSON, the same pool size and worker count as Bazaar, and nothing else: no middleware, no
//! request id, no logs, no metrics, no domain types.
//!
//! It reads the catalog file of a Bazaar data folder and never writes. `GET /health/ready` answers
//! 200 once the pool answers, so start-to-ready is measured the same way on both.
//! `bench/run` starts it; see bench/README.md.

use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, get, web};
use chrono::{DateTime, Utc};
use clap::Parser;
use sea_orm::entity::prelude::*;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use serde::Serialize;

#[derive(Parser)]
struct Args {
    /// The catalog's database, e.g. `sqlite://data/catalog.db?mode=rwc`.
    #[arg(long)]
    database_url: String,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8081)]
    port: u16,
    /// HTTP workers; 0 is actix's default, one per core (as Bazaar's `server.workers = 0`).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Pool size (as Bazaar's `database.max_connections`).
    #[arg(long, default_value_t = 10)]
    max_connections: u32,
}

mod product {
    use super::*;

    /// `catalog_products`, column for column.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "catalog_products")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub sku: String,
        pub name: String,
        pub description: String,
        pub price_amount: i64,
        pub price_currency: String,
        pub status: String,
        pub created_at: DateTime<Utc>,
        pub updated_at: DateTime<Utc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

#[derive(Serialize)]
struct Price {
    amount: i64,
    currency: String,
}

/// Bazaar's `ProductResponse`, field for field.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProductResponse {
    id: Uuid,
    sku: String,
    name: String,
    description: String,
    price: Price,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[get("/products/{id}")]
async fn get_product(db: web::Data<DatabaseConnection>, id: web::Path<Uuid>) -> HttpResponse {
    match product::Entity::find_by_id(id.into_inner()).one(db.get_ref()).await {
        Ok(Some(p)) => HttpResponse::Ok().json(ProductResponse {
            id: p.id,
            sku: p.sku,
            name: p.name,
            description: p.description,
            price: Price { amount: p.price_amount, currency: p.price_currency },
            status: p.status,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }),
        Ok(None) => HttpResponse::NotFound().finish(),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

#[get("/health/ready")]
async fn ready(db: web::Data<DatabaseConnection>) -> HttpResponse {
    match db.ping().await {
        Ok(()) => HttpResponse::Ok().finish(),
        Err(_) => HttpResponse::ServiceUnavailable().finish(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The pool Bazaar's `kernel::db::connect` opens, written out so that the baseline does not move
    // with Bazaar's code.
    let mut options = ConnectOptions::new(args.database_url.clone());
    options
        .max_connections(args.max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    let db = web::Data::new(Database::connect(options).await?);
    let mut server = HttpServer::new(move || App::new().app_data(db.clone()).service(get_product).service(ready))
        .bind((args.host.as_str(), args.port))?;
    if args.workers > 0 {
        server = server.workers(args.workers);
    }
    server.run().await?;
    Ok(())
}
