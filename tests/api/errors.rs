//! Every error a client can provoke comes back as problem+json, and tokens are checked strictly.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{As, OTHER_PRIVATE_KEY, PRIVATE_KEY, assert_problem, product_body, spawn_app, token, token_with};

async fn create_with_token(app: &crate::helpers::TestApp, token: &str) -> reqwest::Response {
    app.request(Method::POST, "/products", As::Anonymous)
        .bearer_auth(token)
        .json(&product_body("AUTH-1", "Guarded"))
        .send()
        .await
        .expect("sent")
}

#[tokio::test]
async fn writes_need_an_admin_token() {
    let app = spawn_app().await;
    let anonymous = app.request(Method::POST, "/products", As::Anonymous).json(&product_body("A-1", "A")).send().await;
    let anonymous = anonymous.expect("sent");
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    assert_problem(anonymous, 401).await;
    let customer = app.request(Method::POST, "/products", As::Customer).json(&product_body("A-1", "A")).send().await;
    assert_problem(customer.expect("sent"), 403).await;
    let id = uuid::Uuid::now_v7();
    let put =
        app.request(Method::PUT, &format!("/products/{id}"), As::Customer).json(&product_body("A-1", "A")).send().await;
    assert_problem(put.expect("sent"), 403).await;
    let delete = app.request(Method::DELETE, &format!("/products/{id}"), As::Anonymous).send().await;
    assert_problem(delete.expect("sent"), 401).await;
}

#[tokio::test]
async fn forged_expired_or_foreign_tokens_are_401() {
    let app = spawn_app().await;
    let valid = token("admin", 900, PRIVATE_KEY);
    let (header, rest) = valid.split_once('.').expect("a JWT");
    let (_, signature) = rest.split_once('.').expect("a JWT");
    let cases = [
        ("expired", token("admin", -120, PRIVATE_KEY)),
        ("signed with another key", token("admin", 900, OTHER_PRIVATE_KEY)),
        ("wrong audience", token_with(json!({"role": "admin", "aud": "elsewhere"}), 900, PRIVATE_KEY)),
        ("wrong issuer", token_with(json!({"role": "admin", "iss": "mallory"}), 900, PRIVATE_KEY)),
        ("unknown role", token_with(json!({"role": "root"}), 900, PRIVATE_KEY)),
        ("not a JWT", "garbage".to_owned()),
        ("alg none", format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), rest.split_once('.').expect("payload").0)),
        ("tampered payload", format!("{header}.{}.{signature}", b64(&tampered_claims()))),
    ];
    for (case, token) in cases {
        let response = create_with_token(&app, &token).await;
        assert_eq!(response.status(), 401, "{case}");
        assert_problem(response, 401).await;
    }
    assert_eq!(create_with_token(&app, &valid).await.status(), 201, "the valid token works");
}

fn tampered_claims() -> String {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": uuid::Uuid::now_v7(), "role": "admin", "iss": "bazaar", "aud": "bazaar", "iat": now, "exp": now + 900, "jti": "x"})
        .to_string()
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test]
async fn malformed_bodies_are_problems() {
    let app = spawn_app().await;
    let send = |body: &'static str, content_type: &'static str| {
        app.request(Method::POST, "/products", As::Admin).header("content-type", content_type).body(body).send()
    };
    let problem = assert_problem(send("{not json", "application/json").await.expect("sent"), 400).await;
    assert!(problem["detail"].as_str().expect("a detail").contains("malformed JSON"));
    assert_problem(send("{}", "text/plain").await.expect("sent"), 415).await;
    let huge = Box::leak(format!("{{\"sku\": \"{}\"}}", "x".repeat(300 * 1024)).into_boxed_str());
    assert_problem(send(huge, "application/json").await.expect("sent"), 413).await;
}

#[tokio::test]
async fn unknown_routes_methods_and_bad_parameters_are_problems() {
    let app = spawn_app().await;
    let problem = assert_problem(app.get("/nowhere").await, 404).await;
    assert_eq!(problem["detail"], "no route for GET /nowhere");
    let problem = assert_problem(app.get("/products/not-a-uuid").await, 400).await;
    assert!(problem["detail"].as_str().expect("a detail").contains("path"));
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = spawn_app().await;
    let echoed = app.client.get(format!("{}/health/live", app.address)).header("x-request-id", "abc-123").send().await;
    assert_eq!(echoed.expect("sent").headers()["x-request-id"], "abc-123");
    let generated = app.get("/nowhere").await;
    let id = generated.headers()["x-request-id"].to_str().expect("ASCII").to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let unsafe_id = app.client.get(format!("{}/health/live", app.address)).header("x-request-id", "a b").send().await;
    assert_ne!(unsafe_id.expect("sent").headers()["x-request-id"], "a b");
}

#[tokio::test]
async fn a_method_a_known_path_does_not_serve_is_405_naming_the_ones_it_does() {
    let app = spawn_app().await;
    let cases = [
        (Method::PUT, "/health/live".to_owned(), "GET"),
        (Method::PATCH, "/products".to_owned(), "GET, POST"),
        (Method::POST, format!("/products/{}", uuid::Uuid::now_v7()), "GET, PUT, DELETE"),
        (Method::POST, "/products/not-a-uuid".to_owned(), "GET, PUT, DELETE"),
        // A fixed segment beside a parameter: not taken for a report's id.
        (Method::GET, "/admin/reports/sales".to_owned(), "POST"),
        (Method::DELETE, "/admin/reports/sales".to_owned(), "POST"),
    ];
    for (method, path, allowed) in cases {
        let response = app.request(method.clone(), &path, As::Admin).send().await.expect("sent");
        assert_eq!(
            response.headers().get("allow").map(|v| v.to_str().expect("ASCII")),
            Some(allowed),
            "{method} {path}"
        );
        let problem = assert_problem(response, 405).await;
        assert_eq!(problem["detail"], format!("{method} is not allowed on {path}"));
    }
    assert_problem(app.request(Method::PATCH, "/nowhere", As::Admin).send().await.expect("sent"), 404).await;
    assert_problem(app.request(Method::GET, "/products/a/b", As::Admin).send().await.expect("sent"), 404).await;
}
