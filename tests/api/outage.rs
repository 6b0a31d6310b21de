//! A module's database going away for a while, as in a PostgreSQL restart or failover: events wait
//! instead of being dead-lettered, requests get a 503 to retry, and readiness names the database
//! without echoing its error.

use std::time::Duration;

use serde_json::Value;

use crate::engines::{Engine, TestDatabase};
use crate::helpers::{Stack, assert_problem, eventually};
use crate::orders::{customer, eur, order_body};

mod in_process {
    #[tokio::test]
    async fn a_ten_second_outage_of_inventorys_database_dead_letters_nothing_and_every_order_settles() {
        super::a_ten_second_outage_of_inventorys_database_dead_letters_nothing(false).await
    }
}

mod rabbitmq {
    #[tokio::test]
    async fn a_ten_second_outage_of_inventorys_database_dead_letters_nothing_and_every_order_settles() {
        super::a_ten_second_outage_of_inventorys_database_dead_letters_nothing(true).await
    }
}

/// Inventory on a PostgreSQL database of its own, which refuses every connection for 10 s while
/// 20 orders are placed: once it is back, every order settles and nothing was dead-lettered.
async fn a_ten_second_outage_of_inventorys_database_dead_letters_nothing(rabbitmq: bool) {
    let Some(stack) = Stack::new(Engine::Postgres, rabbitmq).await else { return };
    let dir = tempfile::tempdir().expect("a folder");
    let Some(inventory) = TestDatabase::create(Engine::Postgres, dir.path()).await else { return };
    let url = inventory.url_for("inventory");
    let mut app = stack.spawn(&[("modules.inventory.database_url", url.as_str())]).await;
    app.module_urls.insert("inventory".to_owned(), url);
    let product = app.stocked_product("OUTAGE-1", 100, eur(500)).await;
    let token = customer(&uuid::Uuid::now_v7());

    inventory.refuse_connections().await;
    let back = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut orders = Vec::new();
    for _ in 0..20 {
        let placed = app.place(&token, &order_body(&[(&product["id"], 1)])).await;
        assert_eq!(placed.status(), 201);
        orders.push(placed.json::<Value>().await.expect("JSON"));
    }
    tokio::time::sleep_until(back).await;
    inventory.accept_connections().await;

    eventually(60, || async {
        for order in &orders {
            if ["pending", "awaiting_payment"]
                .contains(&app.order(&token, order).await["status"].as_str().unwrap_or(""))
            {
                return None;
            }
        }
        Some(())
    })
    .await;
    for order in &orders {
        assert_eq!(app.order(&token, order).await["status"], "confirmed", "stock was plenty");
    }
    let metrics = app.metrics().await;
    let dead: Vec<&str> = metrics.lines().filter(|l| l.starts_with("bazaar_dead_letters{")).collect();
    assert!(dead.iter().any(|l| l.contains(r#"module="inventory""#)), "{metrics}");
    for line in dead {
        assert!(line.ends_with(" 0"), "{line}");
    }
}

#[tokio::test]
async fn a_request_whose_database_refuses_connections_is_a_503_with_retry_after() {
    let Some(stack) = Stack::new(Engine::Postgres, false).await else { return };
    let app = stack.spawn(&[]).await;
    assert_eq!(app.get("/products").await.status(), 200);

    stack.database.refuse_connections().await;
    let response = app.get("/products").await;
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let problem = assert_problem(response, 503).await;
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s > 0)), "{problem}");
    assert!(!problem.to_string().contains("accepting connections"), "the cause is not shown: {problem}");

    stack.database.accept_connections().await;
    eventually(20, || async { (app.get("/products").await.status() == 200).then_some(()) }).await;
}

#[tokio::test]
async fn readiness_names_an_unreachable_database_without_echoing_its_error() {
    let Some(stack) = Stack::new(Engine::Postgres, false).await else { return };
    let app = stack.spawn(&[]).await;
    stack.database.refuse_connections().await;
    let problem = assert_problem(app.get("/health/ready").await, 503).await;
    for module in ["catalog", "inventory", "orders", "shipping", "users"] {
        assert_eq!(problem["checks"][format!("{module}.database")], "database unreachable", "{problem}");
    }
    assert!(!problem.to_string().contains("accepting connections"), "{problem}");
    stack.database.accept_connections().await;
}
