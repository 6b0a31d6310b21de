//! Whole processes on the RabbitMQ bus (topology b, and processes hosting some modules): what
//! only a broker-backed deployment has.

use reqwest::Method;
use serde_json::{Value, json};

use crate::broker::Proxy;
use crate::engines::Engine;
use crate::helpers::{As, Stack, TestApp, eventually, product_body};
use crate::orders::{customer, eur, order_body};

/// While the broker is unreachable the process stays ready (its databases answer, and the outbox
/// keeps what is written) and reports the bus degraded; once the broker is back, what was written
/// meanwhile has travelled.
#[tokio::test]
async fn a_broker_outage_leaves_the_process_ready_with_the_bus_degraded_and_the_outbox_drains_after() {
    let Some(stack) = Stack::new(Engine::Sqlite, true).await else { return };
    let broker = stack.broker.clone().expect("a broker");
    let proxy = Proxy::to("127.0.0.1:5672").await;
    let url = proxy.url(&broker.url);
    let app = stack.spawn(&[("bus.rabbitmq.url", url.as_str())]).await;
    let connected = format!("bazaar_bus_connected{{bus=\"rabbitmq\",prefix=\"{}\"}}", broker.prefix);

    proxy.cut();
    let health: Value = eventually(10, || async {
        let response = app.get("/health/ready").await;
        assert_eq!(response.status(), 200, "still ready");
        let health: Value = response.json().await.expect("JSON");
        health["checks"]["bus.rabbitmq"].as_str().is_some_and(|s| s.starts_with("degraded")).then_some(health)
    })
    .await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["checks"]["catalog.database"], "ok", "{health}");
    let metrics = app.metrics().await;
    assert!(metrics.contains(&format!("{connected} 0")), "{metrics}");

    // The catalog still takes writes: their events wait in its outbox.
    let created = app.create_product(&product_body("OUTAGE-1", "Written while the broker was away")).await;
    assert_eq!(created.status(), 201);
    let product: Value = created.json().await.expect("JSON");
    let metrics = app.metrics().await;
    assert!(metrics.contains("bazaar_outbox_pending{module=\"catalog\"} 1"), "{metrics}");

    proxy.restore();
    eventually(20, || async {
        let health: Value = app.get("/health/ready").await.json().await.ok()?;
        (health["checks"]["bus.rabbitmq"] == "ok" && health["status"] == "ok").then_some(())
    })
    .await;
    assert!(app.metrics().await.contains(&format!("{connected} 1")));
    // ProductCreated reached inventory through the broker: the product has a stock record.
    let path = format!("/inventory/{}", product["id"].as_str().expect("an id"));
    eventually(20, || async { (app.get(&path).await.status() == 200).then_some(()) }).await;
    eventually(10, || async {
        app.metrics().await.contains("bazaar_outbox_pending{module=\"catalog\"} 0").then_some(())
    })
    .await;
}

/// Prometheus scrapes every 15 s a process that hosts users, which consumes nothing and so has no
/// dead-letter queue: a scrape must never cost the bus its connection.
#[tokio::test]
async fn scraping_metrics_during_a_stream_of_orders_never_reconnects_the_bus() {
    let Some(stack) = Stack::new(Engine::Sqlite, true).await else { return };
    let broker = stack.broker.clone().expect("a broker");
    let app = stack.spawn(&[]).await;
    let product = app.stocked_product("SCRAPED-1", 100, eur(100)).await;
    let Some(before) = broker.connections() else { return };
    assert_eq!(before.len(), 1, "one connection per process");

    let token = customer(&uuid::Uuid::now_v7());
    let mut orders = Vec::new();
    for _ in 0..20 {
        let placed = app.place(&token, &order_body(&[(&product["id"], 1)])).await;
        assert_eq!(placed.status(), 201);
        orders.push(placed.json::<Value>().await.expect("JSON"));
        let metrics = app.metrics().await;
        assert!(metrics.contains("bazaar_dead_letters{module=\"users\"} 0"), "{metrics}");
    }
    for order in &orders {
        assert_eq!(app.settled(&token, order).await["status"], "confirmed");
    }
    assert_eq!(broker.connections(), Some(before), "the same connection throughout");
    let reconnections = format!("bazaar_bus_reconnections_total{{bus=\"rabbitmq\",prefix=\"{}\"}} 0", broker.prefix);
    let metrics = app.metrics().await;
    assert!(metrics.contains(&reconnections), "{metrics}");
}

/// What an outage dead-lettered on the broker is what the gauge an alert watches reads.
#[tokio::test]
async fn the_dead_letter_gauge_reads_the_depth_of_the_dead_letter_queue() {
    let Some(stack) = Stack::new(Engine::Sqlite, true).await else { return };
    let broker = stack.broker.clone().expect("a broker");
    let app = stack.spawn(&[]).await;
    broker.fill(&format!("{}.inventory.dead", broker.prefix), 3).await;
    // The recorder is one per test process: another test's app may set the same gauge between
    // this scrape's reading and its rendering, so a scrape that shows the depth is what counts.
    for expected in ["bazaar_dead_letters{module=\"inventory\"} 3", "bazaar_dead_letters{module=\"orders\"} 0"] {
        eventually(10, || async { app.metrics().await.contains(expected).then_some(()) }).await;
    }
}

/// Issue 3's last check: a process hosting only `catalog` accepts the token of an admin of the
/// process hosting `users`, verified through that process's JWKS.
#[tokio::test]
async fn a_catalog_only_process_accepts_an_admin_token_through_the_users_process_jwks() {
    let Some((users, catalog)) = users_and_catalog_processes().await else { return };

    let tokens: Value = users
        .request(Method::POST, "/auth/token", As::Anonymous)
        .json(&json!({"email": "boss@example.com", "password": "a long admin passphrase"}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    let token = tokens["accessToken"].as_str().expect("a token");
    let created = catalog
        .request(Method::POST, "/products", As::Anonymous)
        .bearer_auth(token)
        .json(&product_body("SPLIT-1", "Made through the catalog process"))
        .send()
        .await
        .expect("sent");
    assert_eq!(created.status(), 201, "{:?}", created.text().await);

    // The catalog process serves only the catalog; a forged token is refused there too.
    assert_eq!(catalog.get("/users/me").await.status(), 404);
    let forged = crate::helpers::token("admin", 900, crate::helpers::OTHER_PRIVATE_KEY);
    let refused = catalog
        .request(Method::POST, "/products", As::Anonymous)
        .bearer_auth(forged)
        .json(&product_body("SPLIT-2", "Forged"))
        .send()
        .await
        .expect("sent");
    assert_eq!(refused.status(), 401);
}

/// Issue 14 item 6 (keys): a process that verifies through a JWKS honours its `Cache-Control`; a
/// key removed from it stops verifying once the cached copy expires, tokens already verified with
/// it included.
#[tokio::test]
async fn a_key_removed_from_the_jwks_stops_verifying_once_its_max_age_passes() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    let Some(stack) = Stack::new(Engine::Sqlite, true).await else { return };
    let jwk = kernel::auth::VerificationKey::from_public_pem(crate::helpers::PUBLIC_KEY).expect("a key");
    let published = Arc::new(Mutex::new(json!({"keys": [jwk.jwk().expect("a JWK")]})));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (serving, counting) = (published.clone(), fetches.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let jwks_url = format!("http://{}/jwks.json", listener.local_addr().expect("an address"));
    let server = actix_web::HttpServer::new(move || {
        let (serving, counting) = (serving.clone(), counting.clone());
        actix_web::App::new().route(
                "/jwks.json",
                actix_web::web::get().to(move || {
                    counting.fetch_add(1, Ordering::SeqCst);
                    let body = serving.lock().expect("the set").clone();
                    async move {
                        actix_web::HttpResponse::Ok().insert_header(("cache-control", "public, max-age=1")).json(body)
                    }
                }),
            )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("listens")
    .run();
    let jwks_server = server.handle();
    tokio::spawn(server);

    let catalog = stack.spawn(&[("modules.enabled", "catalog"), ("auth.jwks_url", jwks_url.as_str())]).await;
    let admin = crate::helpers::token("admin", 900, crate::helpers::PRIVATE_KEY);
    let create = |sku: &'static str| {
        catalog
            .request(Method::POST, "/products", As::Anonymous)
            .bearer_auth(&admin)
            .json(&product_body(sku, "A key test"))
            .send()
    };
    assert_eq!(create("JWKS-1").await.expect("sent").status(), 201);
    let before = fetches.load(Ordering::SeqCst);
    for i in 0..20 {
        let response = catalog.request(Method::GET, &format!("/products?limit={}", i % 5 + 1), As::Admin).send().await;
        assert_eq!(response.expect("sent").status(), 200);
    }
    assert!(fetches.load(Ordering::SeqCst) - before <= 2, "the JWKS is cached, not fetched per request");

    // The key is removed (rotated out, or compromised).
    *published.lock().expect("the set") = json!({"keys": []});
    eventually(5, || async { (create("JWKS-2").await.expect("sent").status() == 401).then_some(()) }).await;
    jwks_server.stop(false).await;
}

/// Issue 14 item 6 (roles and log-outs): a demoted admin's token stops working in a process that
/// does not host `users`, and a logged-out user's token stops working at once, without waiting
/// for them to expire: `UserSessionsRevoked` reaches every process.
#[tokio::test]
async fn a_demoted_admins_and_a_logged_out_users_tokens_are_refused_in_every_process() {
    let Some((users, catalog)) = users_and_catalog_processes().await else { return };
    let log_in = |email: &'static str, password: &'static str| {
        users
            .request(Method::POST, "/auth/token", As::Anonymous)
            .json(&json!({"email": email, "password": password}))
            .send()
    };
    let boss: Value =
        log_in("boss@example.com", "a long admin passphrase").await.expect("sent").json().await.expect("JSON");
    let boss = boss["accessToken"].as_str().expect("a token").to_owned();
    let registered = users
        .request(Method::POST, "/users", As::Anonymous)
        .json(&json!({"email": "knuth@example.com", "password": "correct horse battery staple", "name": "Knuth"}))
        .send()
        .await
        .expect("sent");
    let knuth_id = registered.json::<Value>().await.expect("JSON")["id"].as_str().expect("an id").to_owned();
    let set_role = |role: &'static str| {
        users
            .request(Method::PUT, &format!("/users/{knuth_id}/role"), As::Anonymous)
            .bearer_auth(&boss)
            .json(&json!({"role": role}))
            .send()
    };
    assert_eq!(set_role("admin").await.expect("sent").status(), 200);
    let knuth: Value =
        log_in("knuth@example.com", "correct horse battery staple").await.expect("sent").json().await.expect("JSON");
    let knuth_token = knuth["accessToken"].as_str().expect("a token").to_owned();
    let create = |sku: &'static str| {
        catalog
            .request(Method::POST, "/products", As::Anonymous)
            .bearer_auth(&knuth_token)
            .json(&product_body(sku, "Made by Knuth"))
            .send()
    };
    assert_eq!(create("KNUTH-1").await.expect("sent").status(), 201, "an admin's token works in the catalog process");
    // Tokens carry whole seconds: the revocation refuses those issued before its second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    assert_eq!(set_role("customer").await.expect("sent").status(), 200);
    eventually(10, || async { (create("KNUTH-2").await.expect("sent").status() == 401).then_some(()) }).await;

    // A log-out revokes the access tokens too, in the users process itself.
    let again: Value =
        log_in("knuth@example.com", "correct horse battery staple").await.expect("sent").json().await.expect("JSON");
    let me = || {
        users
            .request(Method::GET, "/users/me", As::Anonymous)
            .bearer_auth(again["accessToken"].as_str().expect("a token"))
            .send()
    };
    assert_eq!(me().await.expect("sent").status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let logged_out = users
        .request(Method::POST, "/auth/logout", As::Anonymous)
        .json(&json!({"refreshToken": again["refreshToken"]}))
        .send()
        .await
        .expect("sent");
    assert_eq!(logged_out.status(), 204);
    eventually(10, || async { (me().await.expect("sent").status() == 401).then_some(()) }).await;
    let fresh: Value =
        log_in("knuth@example.com", "correct horse battery staple").await.expect("sent").json().await.expect("JSON");
    let fresh_me = users
        .request(Method::GET, "/users/me", As::Anonymous)
        .bearer_auth(fresh["accessToken"].as_str().expect("a token"));
    assert_eq!(fresh_me.send().await.expect("sent").status(), 200, "a new log-in works");
}

/// A process hosting `users` (with the admin boss@example.com) and one hosting `catalog` that
/// verifies tokens with the first one's JWKS only, on one broker; `None` when RabbitMQ is away.
async fn users_and_catalog_processes() -> Option<(TestApp, TestApp)> {
    let stack = Stack::new(Engine::Sqlite, true).await?;
    let users = stack
        .spawn(&[
            ("modules.enabled", "users"),
            ("users.bootstrap_admin.email", "boss@example.com"),
            ("users.bootstrap_admin.password", "a long admin passphrase"),
        ])
        .await;
    let jwks = format!("{}/.well-known/jwks.json", users.address);
    // Without users, the signing key is nobody's here: this process only verifies, with the users
    // process's published keys.
    let catalog = stack.spawn(&[("modules.enabled", "catalog"), ("auth.jwks_url", jwks.as_str())]).await;
    Some((users, catalog))
}
