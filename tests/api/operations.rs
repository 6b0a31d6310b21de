//! Health, metrics, Swagger UI, the OpenAPI document and graceful shutdown.

use serde_json::Value;

use crate::engines::Engine;
use crate::helpers::{assert_problem, eventually, spawn_app, spawn_app_on, test_settings};

#[tokio::test]
async fn liveness_and_readiness_report_ok_with_each_module_database() {
    let app = spawn_app().await;
    let live = app.get("/health/live").await;
    assert_eq!(live.status(), 200);
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.expect("JSON");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["checks"]["catalog.database"], "ok");
    assert_eq!(body["checks"]["bus.in_process"], "ok");
}

#[tokio::test]
async fn readiness_is_a_503_problem_naming_the_database_that_went_away() {
    let Some(app) = spawn_app_on(Engine::Postgres).await else { return };
    assert_eq!(app.get("/health/ready").await.status(), 200);
    app.database.destroy();
    let problem = assert_problem(app.get("/health/ready").await, 503).await;
    assert_eq!(problem["status"], 503);
    let detail = problem["detail"].as_str().expect("a detail");
    for module in ["catalog", "inventory", "orders", "shipping", "users"] {
        assert!(detail.contains(&format!("{module}.database")), "{detail}");
    }
    assert!(problem["checks"]["catalog.database"].as_str().expect("a reason").contains("database"), "{problem}");
    assert_eq!(problem["checks"]["bus.in_process"], "ok");
    assert_eq!(app.get("/health/live").await.status(), 200, "alive all the same");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status_with_latencies() {
    let app = spawn_app().await;
    app.get("/products").await;
    app.get(&format!("/products/{}", uuid::Uuid::now_v7())).await;
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().expect("ASCII").starts_with("text/plain"));
    let text = response.text().await.expect("text");
    assert!(text.contains(r#"http_requests_total{method="GET",route="/products",status="200"}"#), "{text}");
    assert!(text.contains(r#"http_requests_total{method="GET",route="/products/{id}",status="404"}"#), "{text}");
    assert!(
        text.contains(r#"http_request_duration_seconds_bucket{method="GET",route="/products",le="0.005"}"#),
        "{text}"
    );
    assert!(text.contains(r#"bazaar_outbox_pending{module="catalog"}"#), "{text}");
    assert!(text.contains(r#"bazaar_dead_letters{module="catalog"}"#), "{text}");
}

/// Each consumer's end-to-end delay of the events it handled: a histogram per module and event.
#[tokio::test]
async fn metrics_time_each_event_from_its_occurrence_to_its_handling() {
    let app = spawn_app().await;
    app.a_product("DELAY-1", "Mug").await;
    let line = eventually(20, || async {
        let text = app.metrics().await;
        text.lines()
            .find(|l| {
                l.starts_with("bazaar_bus_event_delay_seconds_count{")
                    && l.contains(r#"module="inventory""#)
                    && l.contains(r#"event="ProductCreated""#)
            })
            .map(str::to_owned)
    })
    .await;
    let count: f64 = line.rsplit(' ').next().expect("a value").parse().expect("a number");
    assert!(count >= 1.0, "{line}");
    let text = app.metrics().await;
    assert!(text.contains("bazaar_bus_event_delay_seconds_bucket{") && text.contains(r#"le="1800""#), "{text}");
}

#[tokio::test]
async fn swagger_ui_is_served_and_its_bare_path_redirects() {
    let app = spawn_app().await;
    let redirect = app.get("/swagger-ui").await;
    assert_eq!(redirect.status(), 308);
    assert_eq!(redirect.headers()["location"], "/swagger-ui/");
    let page = app.get("/swagger-ui/").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("HTML").to_lowercase().contains("swagger"));
    let config = app.get("/swagger-ui/swagger-initializer.js").await.text().await.expect("JS");
    assert!(config.contains("/api-docs/openapi.json"), "{config}");
}

#[tokio::test]
async fn the_served_spec_is_openapi_3_1_with_bearer_security() {
    let app = spawn_app().await;
    let spec: Value = app.get("/api-docs/openapi.json").await.json().await.expect("JSON");
    assert!(spec["openapi"].as_str().expect("a version").starts_with("3.1"));
    assert_eq!(spec["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert!(spec["paths"]["/products/{id}"]["put"]["security"].is_array());
    assert!(spec["paths"]["/health/ready"]["get"].is_object());
    assert_eq!(spec, served_spec_of_the_binary());
}

fn served_spec_of_the_binary() -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bazaar"))
        .arg("openapi")
        .env("BAZAAR_ENV", "test")
        .output()
        .expect("bazaar openapi runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// Modules document their schemas by name in one merged document: two modules must not use one
/// name for two different shapes, or one of them silently describes the other's.
#[test]
fn no_two_modules_name_different_schemas_alike() {
    let mut seen: std::collections::BTreeMap<String, (&str, Value)> = Default::default();
    for module in bazaar::modules::all() {
        let Some(components) = module.openapi().components else { continue };
        for (name, schema) in components.schemas {
            let schema = serde_json::to_value(schema).expect("JSON");
            if let Some((other, earlier)) = seen.get(&name) {
                assert_eq!(earlier, &schema, "{} and {other} both define the schema {name}", module.name());
            } else {
                seen.insert(name, (module.name(), schema));
            }
        }
    }
}

/// Fails on any change of the spec: review the diff, then `cargo insta accept`
/// (or `INSTA_UPDATE=always cargo test --test api openapi`).
#[test]
fn the_openapi_document_matches_its_reviewed_snapshot() {
    insta::assert_json_snapshot!("openapi", served_spec_of_the_binary());
}

#[tokio::test]
async fn stopping_drains_http_and_the_relay() {
    let dir = tempfile::tempdir().expect("a folder");
    let app = bazaar::Application::build(test_settings(dir.path(), &[])).await.expect("builds");
    let handle = app.handle();
    let running = tokio::spawn(app.run_until_stopped());
    handle.stop(true).await;
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(15), running).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
}

#[tokio::test]
async fn admins_see_dead_letters_and_queue_them_again() {
    use crate::helpers::{As, assert_problem};
    use reqwest::Method;
    let app = spawn_app().await;
    let mut broken = kernel::Envelope::new(&orders_contracts::OrderCreated {
        order_id: uuid::Uuid::now_v7(),
        user_id: uuid::Uuid::now_v7(),
        items: vec![],
    })
    .expect("an envelope");
    broken.data = serde_json::json!({"orderId": 5});
    let inbox = kernel::Inbox::new(kernel::Outbox::new("inventory", app.db("inventory").await));
    inbox.enqueue("inventory", &broken).await.expect("queued");

    let list = || async { app.request(Method::GET, "/admin/dead-letters", As::Admin).send().await.expect("sent") };
    let first = crate::helpers::eventually(10, || async {
        let letters: Value = list().await.json().await.expect("JSON");
        letters.as_array().expect("a list").first().cloned()
    })
    .await;
    assert_eq!((first["module"].as_str(), first["event"].as_str()), (Some("inventory"), Some("OrderCreated")));
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["envelope"]["id"], broken.id.to_string());
    assert!(first["error"].as_str().expect("an error").contains("malformed"));
    assert_problem(app.request(Method::GET, "/admin/dead-letters", As::Customer).send().await.expect("sent"), 403)
        .await;

    let replay = format!("/admin/dead-letters/inventory/{}/replay", first["id"]);
    assert_eq!(app.request(Method::POST, &replay, As::Admin).send().await.expect("sent").status(), 202);
    // Still malformed: handled again, dead-lettered again as a new letter.
    let again = crate::helpers::eventually(10, || async {
        let letters: Value = list().await.json().await.expect("JSON");
        let letters = letters.as_array().expect("a list").clone();
        (letters.len() == 1 && letters[0]["id"] != first["id"]).then(|| letters[0].clone())
    })
    .await;
    assert_eq!(again["attempts"], 1, "the attempts started over");
    assert_problem(app.request(Method::POST, &replay, As::Admin).send().await.expect("sent"), 404).await;
    let elsewhere = format!("/admin/dead-letters/nowhere/{}/replay", again["id"]);
    assert_problem(app.request(Method::POST, &elsewhere, As::Admin).send().await.expect("sent"), 404).await;
}

// The document describes every answer the server gives (checked by schemathesis in CI, see
// .ci/schemathesis); these pin the rules it follows.

fn operations(spec: &Value) -> Vec<(String, String, Value)> {
    let mut all = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                all.push((method.to_uppercase(), path.clone(), operation.clone()));
            }
        }
    }
    all
}

#[test]
fn every_operation_declares_the_errors_any_request_can_meet() {
    let spec = served_spec_of_the_binary();
    for name in ["BadRequest", "Unauthorized", "UnsupportedMediaType", "Unavailable"] {
        assert!(spec["components"]["responses"][name].is_object(), "components.responses.{name}");
    }
    for (method, path, operation) in operations(&spec) {
        let responses = &operation["responses"];
        let has = |status: &str| responses.get(status).is_some();
        let params = operation["parameters"].as_array().is_some_and(|p| !p.is_empty());
        let body = operation.get("requestBody").is_some();
        if params || body {
            assert!(has("400"), "{method} {path} reads parameters or a body: 400 is not declared");
        }
        if body {
            assert!(has("415"), "{method} {path} reads a body: 415 is not declared");
        }
        if operation["security"].is_array() {
            assert!(has("401"), "{method} {path} needs a token: 401 is not declared");
        }
        assert!(has("503"), "{method} {path}: 503 is not declared");
    }
}

#[test]
fn page_limits_are_one_to_a_hundred_in_the_document() {
    let spec = served_spec_of_the_binary();
    let mut seen = 0;
    for (method, path, operation) in operations(&spec) {
        for param in operation["parameters"].as_array().into_iter().flatten() {
            if param["name"] == "limit" {
                seen += 1;
                assert_eq!(param["schema"]["minimum"], 1, "{method} {path}");
                assert_eq!(param["schema"]["maximum"], 100, "{method} {path}");
            }
        }
    }
    assert!(seen >= 4, "every list takes a limit");
}

#[test]
fn a_product_request_requires_in_the_document_what_the_server_requires() {
    let spec = served_spec_of_the_binary();
    let schemas = &spec["components"]["schemas"];
    let required = |name: &str| -> Vec<String> {
        serde_json::from_value(schemas[name]["required"].clone()).unwrap_or_else(|_| panic!("{name}.required"))
    };
    let product = required("ProductRequest");
    for field in ["sku", "name", "price"] {
        assert!(product.contains(&field.to_owned()), "ProductRequest.{field} is not required: {product:?}");
    }
    assert_eq!(required("Money"), ["amount", "currency"]);
    let sku = schemas["ProductRequest"]["properties"]["sku"]["pattern"].as_str().expect("a pattern for sku");
    assert!(sku.contains("{1,64}"), "{sku}");
    assert_eq!(schemas["Money"]["properties"]["amount"]["minimum"], 0, "{}", schemas["Money"]);
}

#[test]
fn swagger_ui_can_log_in_with_the_oauth2_password_flow_on_auth_token() {
    let spec = served_spec_of_the_binary();
    let scheme = &spec["components"]["securitySchemes"]["OAuth2"];
    assert_eq!(scheme["type"], "oauth2", "{scheme}");
    assert_eq!(scheme["flows"]["password"]["tokenUrl"], "/auth/token", "{scheme}");
    let login = &spec["paths"]["/auth/token"]["post"]["requestBody"]["content"];
    assert!(login["application/x-www-form-urlencoded"].is_object(), "{login}");
    for (method, path, operation) in operations(&spec) {
        if let Some(security) = operation["security"].as_array() {
            let names: Vec<&str> = security
                .iter()
                .flat_map(|r| r.as_object().expect("a requirement").keys())
                .map(String::as_str)
                .collect();
            assert!(names.contains(&"OAuth2") && names.contains(&"bearer"), "{method} {path}: {names:?}");
        }
    }
}

#[tokio::test]
async fn a_form_encoded_password_grant_returns_tokens_as_rfc_6749_has_them() {
    let app = spawn_app().await;
    let password = "correct horse battery staple";
    assert_eq!(app.register("form@example.com", password, "Form User").await.status(), 201);
    let form = |grant_type: &'static str| {
        app.request(reqwest::Method::POST, "/auth/token", crate::helpers::As::Anonymous)
            // As Swagger UI sends it: with an empty scope and the client id it was given.
            .form(&[
                ("grant_type", grant_type),
                ("username", "form@example.com"),
                ("password", password),
                ("scope", ""),
                ("client_id", "swagger-ui"),
            ])
            .send()
    };
    let response = form("password").await.expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let tokens: Value = response.json().await.expect("JSON");
    assert_eq!(tokens["token_type"], "Bearer", "{tokens}");
    assert!(tokens["expires_in"].is_i64(), "{tokens}");
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
    let access = tokens["access_token"].as_str().expect("an access token");
    let me = app.request(reqwest::Method::GET, "/users/me", crate::helpers::As::Anonymous).bearer_auth(access);
    assert_eq!(me.send().await.expect("sent").status(), 200);

    let problem = assert_problem(form("client_credentials").await.expect("sent"), 400).await;
    assert_eq!(problem["error"], "unsupported_grant_type", "{problem}");
}
