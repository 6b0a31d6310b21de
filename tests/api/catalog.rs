use reqwest::Method;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::engines::{Engine, on_every_engine};
use crate::helpers::{As, assert_problem, eventually, product_body, spawn_app_on};

on_every_engine!(
    an_admin_creates_a_product_that_anyone_can_read,
    each_change_publishes_its_event_through_the_outbox,
    an_update_replaces_the_fields_and_keeps_the_status_and_creation_time,
    a_discontinued_product_stays_readable,
    a_duplicate_sku_is_a_conflict,
    invalid_fields_are_a_422_naming_each_field,
    unknown_products_are_404,
    lists_are_paged_with_a_cursor_in_creation_order,
    a_search_matches_name_or_sku_in_any_case_and_the_status_filters,
    bad_list_parameters_are_problems,
    skus_that_differ_only_in_case_are_two_products,
);

/// The catalog's outbox rows as `(event, published)`, oldest first.
async fn outbox(app: &crate::helpers::TestApp) -> Vec<(String, bool)> {
    let db = app.db("catalog").await;
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT event, published_at FROM catalog_outbox ORDER BY seq",
        ))
        .await
        .expect("the outbox");
    rows.iter()
        .map(|r| {
            let published: Option<chrono::DateTime<chrono::Utc>> = r.try_get("", "published_at").expect("published_at");
            (r.try_get("", "event").expect("event"), published.is_some())
        })
        .collect()
}

async fn an_admin_creates_a_product_that_anyone_can_read(engine: Engine) {
    let Some(app) = spawn_app_on(engine).await else { return };
    let response = app.create_product(&product_body("MUG-001", "Enamel mug")).await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().expect("ASCII").to_owned();
    let created: Value = response.json().await.expect("JSON");
    assert_eq!(location, format!("/products/{}", created["id"].as_str().expect("an id")));
    assert_eq!(created["sku"], "MUG-001");
    assert_eq!(created["price"], json!({"amount": 1299, "currency": "EUR"}));
    assert_eq!(created["status"], "active");
    assert_eq!(created["createdAt"], created["updatedAt"]);

    let fetched: Value = app.get(&location).await.json().await.expect("JSON");
    assert_eq!(fetched, created);
}

async fn each_change_publishes_its_event_through_the_outbox(engine: Engine) {
    let Some(app) = spawn_app_on(engine).await else { return };
    let product = app.a_product("MUG-002", "Mug").await;
    let path = format!("/products/{}", product["id"].as_str().expect("an id"));
    let response = app.request(Method::PUT, &path, As::Admin).json(&product_body("MUG-002", "Big mug")).send().await;
    assert_eq!(response.expect("sent").status(), 200);
    assert_eq!(app.request(Method::DELETE, &path, As::Admin).send().await.expect("sent").status(), 204);
    // Discontinuing again changes nothing and publishes nothing.
    assert_eq!(app.request(Method::DELETE, &path, As::Admin).send().await.expect("sent").status(), 204);

    let rows = eventually(10, || async {
        let rows = outbox(&app).await;
        rows.iter().all(|(_, published)| *published).then_some(rows)
    })
    .await;
    let events: Vec<&str> = rows.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(events, ["ProductCreated", "ProductUpdated", "ProductDiscontinued"]);
    let metrics = app.metrics().await;
    assert!(metrics.contains("bazaar_bus_published_total{module=\"catalog\"}"), "{metrics}");
    assert!(metrics.contains("bazaar_outbox_pending{module=\"catalog\"} 0"), "{metrics}");
}

async fn an_update_replaces_the_fields_and_keeps_the_status_and_creation_time(engine: Engine) {
    let Some(app) = spawn_app_on(engine).await else { return };
    let product = app.a_product("LAMP-1", "Lamp").await;
    let path = format!("/products/{}", product["id"].as_str().expect("an id"));
    let body = json!({"sku": "LAMP-1b", "name": "Desk lamp", "price": {"amount": 4500, "currency": "USD"}});
    let updated: Value =
        app.request(Method::PUT, &path, As::Admin).json(&body).send().await.expect("sent").json().await.expect("JSON");
    assert_eq!(updated["sku"], "LAMP-1b");
    assert_eq!(updated["name"], "Desk lamp");
    assert_eq!(updated["description"], "");
    assert_eq!(updated["price"], json!({"amount": 4500, "currency": "USD"}));
    assert_eq!(updated["createdAt"], product["createdAt"]);
    assert_ne!(updated["updatedAt"], product["updatedAt"]);
    assert_eq!(app.get(&path).await.json::<Value>().await.expect("JSON"), updated);
}

async fn a_discontinued_product_stays_readable(engine: Engine) {
    let Some(app) = spawn_app_on(engine).await else { return };
    let product = app.a_product("OLD-1", "Old thing").await;
    let path = format!("/products/{}", product["id"].as_str().expect("an id"));
    assert_eq!(app.request(Method::DELETE, &path, As::Admin).send().await.expect("sent").status(), 204);
    let fetched: Value = app.get(&path).await.json().await.expect("JSON");
    assert_eq!(fetched["status"], "discontinued");
}

async fn a_duplicate_sku_is_a_conflict(engine: Engine) {
    let Some(app) = spawn_app_on(engine).await else { return };
    app.a_product("DUP-1", "First").await;
    let body = assert_problem(app.create_product(&product_body("DUP-1", "Second")).await, 409).await;
    assert!(body["detail"].as_str().expect("a detail").contains("DUP-1"));

    let other = app.a_product("DUP-2", "Other").await;
    let path = format!("/products/{}", other["id"].as_str().expect("an id"));
    let response = app.request(Method::PUT, &path, As::Admin).json(&product_body("DUP-1", "Clash")).send().await;
    assert_problem(response.expect("sent"), 409).await;
}

async fn invalid_fields_are_a_422_naming_each_field(engine: Engine) {
    let Some(app) = spawn_app_on(engine).await else { return };
    let body = json!({"sku": "bad sku!", "name": "", "price": {"amount": -5, "currency": "euro"}});
    let problem = assert_problem(app.create_product(&body).await, 422).await;
    let fields: Vec<&str> =
        problem["errors"].as_array().expect("errors").iter().map(|e| e["field"].as_str().expect("a field")).collect();
    assert_eq!(fields, ["sku", "name", "price.currency"]);

    let problem = assert_problem(app.create_product(&json!({})).await, 422).await;
    let fields: Vec<&str> =
        problem["errors"].as_array().expect("errors").iter().map(|e| e["field"].as_str().expect("a field")).collect();
    assert_eq!(fields, ["sku", "name", "price.currency", "price.amount"]);

    let problem = assert_problem(
        app.create_product(&json!({"sku": "A", "name": "B", "price": {"amount": "ten", "currency": "EUR"}})).await,
        422,
    )
    .await;
    assert!(problem["detail"].is_string(), "{problem}");
    let problem =
        assert_problem(app.create_product(&json!({"sku": "A", "name": "B", "colour": "red"})).await, 422).await;
    assert_eq!(problem["errors"][0]["field"], "colour");
}

async fn unknown_products_are_404(engine: Engine) {
    let Some(app) = spawn_app_on(engine).await else { return };
    let missing = format!("/products/{}", uuid::Uuid::now_v7());
    assert_problem(app.get(&missing).await, 404).await;
    let response = app.request(Method::PUT, &missing, As::Admin).json(&product_body("X-1", "X")).send().await;
    assert_problem(response.expect("sent"), 404).await;
    assert_problem(app.request(Method::DELETE, &missing, As::Admin).send().await.expect("sent"), 404).await;
}

async fn lists_are_paged_with_a_cursor_in_creation_order(engine: Engine) {
    let Some(app) = spawn_app_on(engine).await else { return };
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(app.a_product(&format!("PAGE-{i}"), &format!("Item {i}")).await["id"].clone());
    }
    let first: Value = app.get("/products?limit=2").await.json().await.expect("JSON");
    assert_eq!(first["items"].as_array().expect("items").len(), 2);
    let cursor = first["nextCursor"].as_str().expect("a cursor");
    let second: Value = app.get(&format!("/products?limit=2&after={cursor}")).await.json().await.expect("JSON");
    let cursor = second["nextCursor"].as_str().expect("a cursor");
    let third: Value = app.get(&format!("/products?limit=2&after={cursor}")).await.json().await.expect("JSON");
    assert!(third["nextCursor"].is_null());
    let seen: Vec<Value> = [&first, &second, &third]
        .iter()
        .flat_map(|page| page["items"].as_array().expect("items").iter().map(|p| p["id"].clone()))
        .collect();
    assert_eq!(seen, created);
}

async fn a_search_matches_name_or_sku_in_any_case_and_the_status_filters(engine: Engine) {
    let Some(app) = spawn_app_on(engine).await else { return };
    app.a_product("TEA-1", "Green Tea").await;
    let coffee = app.a_product("COF-1", "Coffee").await;
    app.a_product("TEAPOT-9", "Pot").await;
    let names = |page: Value| -> Vec<String> {
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|p| p["name"].as_str().expect("a name").to_owned())
            .collect()
    };
    assert_eq!(names(app.get("/products?q=tea").await.json().await.expect("JSON")), ["Green Tea", "Pot"]);
    assert_eq!(names(app.get("/products?q=100%25").await.json().await.expect("JSON")), Vec::<String>::new());
    let path = format!("/products/{}", coffee["id"].as_str().expect("an id"));
    app.request(Method::DELETE, &path, As::Admin).send().await.expect("sent");
    assert_eq!(names(app.get("/products?status=discontinued").await.json().await.expect("JSON")), ["Coffee"]);
}

async fn bad_list_parameters_are_problems(engine: Engine) {
    let Some(app) = spawn_app_on(engine).await else { return };
    assert_eq!(assert_problem(app.get("/products?limit=101").await, 422).await["errors"][0]["field"], "limit");
    assert_eq!(assert_problem(app.get("/products?limit=0").await, 422).await["errors"][0]["field"], "limit");
    assert_eq!(assert_problem(app.get("/products?after=nope").await, 422).await["errors"][0]["field"], "after");
    assert_eq!(assert_problem(app.get("/products?status=gone").await, 422).await["errors"][0]["field"], "status");
    assert_problem(app.get("/products?limit=many").await, 400).await;
}

/// A sku is kept as written and compared exactly, on every engine (MariaDB's default collation
/// would make these one).
async fn skus_that_differ_only_in_case_are_two_products(engine: Engine) {
    let Some(app) = spawn_app_on(engine).await else { return };
    let upper = app.a_product("ABC-1", "Upper").await;
    let lower = app.a_product("abc-1", "Lower").await;
    assert_ne!(upper["id"], lower["id"]);
    assert_eq!(lower["sku"], "abc-1");
    // Renaming one to the other's exact sku is still a conflict.
    let path = format!("/products/{}", lower["id"].as_str().expect("an id"));
    let clash = app.request(Method::PUT, &path, As::Admin).json(&product_body("ABC-1", "Clash")).send().await;
    assert_problem(clash.expect("sent"), 409).await;
}

/// Public reads carry an `ETag` and a `Cache-Control`: a client holding the current ETag gets a
/// bodiless 304; once the product changes, its old ETag gets the new product (and the list page a
/// new weak ETag).
#[tokio::test]
async fn public_reads_answer_304_to_a_client_holding_the_current_etag() {
    let app = crate::helpers::spawn_app().await;
    let product = app.a_product("ETAG-1", "Mug").await;
    let path = format!("/products/{}", product["id"].as_str().expect("an id"));
    let holding = |path: String, tag: String| {
        let request = app.request(Method::GET, &path, As::Anonymous).header("if-none-match", tag);
        async move { request.send().await.expect("sent") }
    };
    let header = |response: &reqwest::Response, name: &str| {
        response.headers().get(name).map(|v| v.to_str().expect("ASCII").to_owned()).unwrap_or_default()
    };

    let read = app.get(&path).await;
    assert_eq!((header(&read, "etag"), header(&read, "cache-control")), ("\"1\"".into(), "public, no-cache".into()));
    let unchanged = holding(path.clone(), "\"1\"".into()).await;
    assert_eq!((unchanged.status().as_u16(), header(&unchanged, "etag")), (304, "\"1\"".into()));
    assert!(unchanged.bytes().await.expect("a body").is_empty(), "a 304 has no body");

    let list = app.get("/products").await;
    let page_tag = header(&list, "etag");
    assert!(page_tag.starts_with("W/\""), "{page_tag}");
    assert_eq!(holding("/products".into(), page_tag.clone()).await.status(), 304);

    let body = product_body("ETAG-1", "Big mug");
    let changed = app.request(Method::PUT, &path, As::Admin).json(&body).send().await.expect("sent");
    assert_eq!(changed.status(), 200);
    let fresh = holding(path.clone(), "\"1\"".into()).await;
    assert_eq!((fresh.status().as_u16(), header(&fresh, "etag")), (200, "\"2\"".into()));
    assert_eq!(fresh.json::<Value>().await.expect("JSON")["name"], "Big mug");
    let new_page = holding("/products".into(), page_tag.clone()).await;
    assert_eq!(new_page.status(), 200, "the page changed with its product");
    assert_ne!(header(&new_page, "etag"), page_tag);

    let kept = crate::helpers::spawn_app_with(&[("catalog.http_max_age_secs", "30")]).await;
    let listed = kept.get("/products").await;
    assert_eq!(header(&listed, "cache-control"), "public, max-age=30");
}
