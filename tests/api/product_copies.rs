//! Orders' copy of the catalog follows the product's newest version, whatever order the catalog's
//! events arrive in: an older `ProductUpdated` delivered late (a retry, a copy under a new id)
//! never undoes a newer change or a discontinuation.

use contracts::IntegrationEvent;
use kernel::Envelope;
use kernel::inbox::Processed;
use reqwest::Method;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::Value;
use uuid::Uuid;

use crate::engines::{Engine, on_every_engine};
use crate::helpers::{As, TestApp, assert_problem, product_body, settles, spawn_app_on};
use crate::orders::{customer, eur, order_body};

on_every_engine!(
    an_older_product_update_delivered_late_does_not_undo_a_newer_one,
    a_discontinuation_is_not_undone_by_an_older_update_delivered_late,
);

/// `(name, price amount, status)` of orders' copy of the product with `sku`, if it has one.
async fn copy_of(app: &TestApp, sku: &str) -> Option<(String, i64, String)> {
    let db = app.db("orders").await;
    let select = Statement::from_sql_and_values(
        db.get_database_backend(),
        match db.get_database_backend() {
            sea_orm::DbBackend::Postgres => "SELECT name, price_amount, status FROM orders_products WHERE sku = $1",
            _ => "SELECT name, price_amount, status FROM orders_products WHERE sku = ?",
        },
        [sku.into()],
    );
    let row = db.query_one_raw(select).await.expect("a query")?;
    let column = |name: &str| row.try_get::<String>("", name).expect(name);
    Some((column("name"), row.try_get("", "price_amount").expect("price_amount"), column("status")))
}

impl TestApp {
    /// `PUT /products/{id}` with a new name and price (in EUR cents).
    async fn revise(&self, product: &Value, name: &str, amount: i64) {
        let sku = product["sku"].as_str().expect("a sku");
        let mut body = product_body(sku, name);
        body["price"] = eur(amount);
        let path = format!("/products/{}", product["id"].as_str().expect("an id"));
        let response = self.request(Method::PUT, &path, As::Admin).json(&body).send().await.expect("sent");
        assert_eq!(response.status(), 200);
    }

    /// The catalog's published events of type `E`, oldest first.
    async fn catalog_events<E: IntegrationEvent>(&self) -> Vec<Envelope> {
        self.published("catalog").await.into_iter().filter(|e| e.is::<E>()).collect()
    }

    /// Hands each of `envelopes` to orders' real handler under a new event id, as a bus that
    /// redelivers a retried event late would: the inbox cannot tell them from new events.
    async fn deliver_late_to_orders(&self, envelopes: &[Envelope]) {
        let (inbox, handler, _) = self.consumer("orders").await;
        for envelope in envelopes {
            let mut copy = envelope.clone();
            copy.id = Uuid::now_v7();
            let outcome = inbox.process("orders", &copy, handler.as_ref()).await.expect("handled");
            assert_eq!(outcome, Processed::Handled, "{}", copy.event);
        }
    }
}

async fn an_older_product_update_delivered_late_does_not_undo_a_newer_one(engine: Engine) {
    let Some(app) = spawn_app_on(engine).await else { return };
    let product = app.stocked_product("COPY-1", 100, eur(100)).await;
    app.revise(&product, "Second", 200).await;
    app.revise(&product, "Third", 300).await;
    let newest = Some(("Third".to_owned(), 300, "active".to_owned()));
    settles(newest.clone(), || copy_of(&app, "COPY-1")).await;
    app.quiet().await;

    // ProductCreated and the first ProductUpdated arrive again, after the newest one.
    let updates = app.catalog_events::<catalog_contracts::ProductUpdated>().await;
    assert_eq!(updates.len(), 2);
    let created = app.catalog_events::<catalog_contracts::ProductCreated>().await;
    app.deliver_late_to_orders(&[updates[0].clone(), created[0].clone()]).await;

    assert_eq!(copy_of(&app, "COPY-1").await, newest, "the copy keeps the newest version");
    let token = customer(&Uuid::now_v7());
    let placed = app.place(&token, &order_body(&[(&product["id"], 1)])).await;
    assert_eq!(placed.status(), 201);
    let order: Value = placed.json().await.expect("JSON");
    assert_eq!((order["lines"][0]["name"].as_str(), &order["lines"][0]["unitPrice"]), (Some("Third"), &eur(300)));
}

async fn a_discontinuation_is_not_undone_by_an_older_update_delivered_late(engine: Engine) {
    let Some(app) = spawn_app_on(engine).await else { return };
    let product = app.stocked_product("COPY-2", 100, eur(100)).await;
    app.revise(&product, "Second", 200).await;
    let path = format!("/products/{}", product["id"].as_str().expect("an id"));
    assert_eq!(app.request(Method::DELETE, &path, As::Admin).send().await.expect("sent").status(), 204);
    let discontinued = Some(("Second".to_owned(), 200, "discontinued".to_owned()));
    settles(discontinued.clone(), || copy_of(&app, "COPY-2")).await;
    app.quiet().await;

    let updates = app.catalog_events::<catalog_contracts::ProductUpdated>().await;
    let created = app.catalog_events::<catalog_contracts::ProductCreated>().await;
    app.deliver_late_to_orders(&[updates[0].clone(), created[0].clone()]).await;

    assert_eq!(copy_of(&app, "COPY-2").await, discontinued, "still discontinued");
    let token = customer(&Uuid::now_v7());
    let problem = assert_problem(app.place(&token, &order_body(&[(&product["id"], 1)])).await, 422).await;
    assert_eq!(problem["errors"][0]["field"], "items[0].productId", "{problem}");
    assert_eq!(problem["errors"][0]["message"], "is discontinued", "{problem}");
}
