//! The users module: registration, log-in, token rotation, roles, keys and throttling; password
//! resets and e-mail verification, with the mailed tokens read from the users module's outbox.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use users_contracts::{EmailVerificationRequested, PasswordResetRequested};

use crate::engines::{Engine, on_every_engine};
use crate::helpers::{As, TestApp, assert_problem, product_body, spawn_app, spawn_app_on, spawn_app_with};

on_every_engine!(
    a_new_user_registers_logs_in_reads_me_refreshes_and_logs_out,
    a_reused_refresh_token_revokes_its_whole_family,
    registration_rules_are_422_naming_each_field_and_a_taken_email_is_409,
    a_forgotten_password_is_reset_with_the_mailed_token_and_every_session_ends,
    a_new_customer_verifies_the_email_and_the_next_access_token_says_so,
);

const PASSWORD: &str = "correct horse battery staple";

impl TestApp {
    pub async fn register(&self, email: &str, password: &str, name: &str) -> reqwest::Response {
        let body = json!({"email": email, "password": password, "name": name});
        self.request(Method::POST, "/users", As::Anonymous).json(&body).send().await.expect("sent")
    }

    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        let body = json!({"email": email, "password": password});
        self.request(Method::POST, "/auth/token", As::Anonymous).json(&body).send().await.expect("sent")
    }

    /// Registers `email` and logs in: the token response.
    pub async fn signed_in(&self, email: &str) -> Value {
        assert_eq!(self.register(email, PASSWORD, "Test User").await.status(), 201);
        let response = self.login(email, PASSWORD).await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("JSON")
    }

    pub async fn post_refresh(&self, path: &str, refresh_token: &Value) -> reqwest::Response {
        let body = json!({"refreshToken": refresh_token});
        self.request(Method::POST, path, As::Anonymous).json(&body).send().await.expect("sent")
    }

    pub async fn me(&self, access_token: &Value) -> reqwest::Response {
        let token = access_token.as_str().expect("a token");
        self.request(Method::GET, "/users/me", As::Anonymous).bearer_auth(token).send().await.expect("sent")
    }

    /// What notifications would mail: the users module's published `PasswordResetRequested`s (or
    /// `EmailVerificationRequested`s, with `mailed_verifications`) for `email`, oldest first.
    /// Read from the outbox, so no mail server is needed.
    pub async fn mailed_resets(&self, email: &str) -> Vec<PasswordResetRequested> {
        let db = self.db("users").await;
        let events = kernel::testing::published_of::<PasswordResetRequested>(&db, "users").await;
        events.into_iter().filter(|e| e.email == email).collect()
    }

    pub async fn mailed_verifications(&self, email: &str) -> Vec<EmailVerificationRequested> {
        let db = self.db("users").await;
        let events = kernel::testing::published_of::<EmailVerificationRequested>(&db, "users").await;
        events.into_iter().filter(|e| e.email == email).collect()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.request(Method::POST, path, As::Anonymous).json(body).send().await.expect("sent")
    }

    pub async fn reset_password(&self, token: &str, password: &str) -> reqwest::Response {
        self.post_json("/auth/password-reset/confirm", &json!({"token": token, "password": password})).await
    }

    pub async fn verify_email(&self, token: &str) -> reqwest::Response {
        self.post_json("/users/verify", &json!({"token": token})).await
    }

    /// `POST /users/me/verification` as `access_token`.
    pub async fn ask_verification(&self, access_token: &Value) -> reqwest::Response {
        let token = access_token.as_str().expect("a token");
        let request = self.request(Method::POST, "/users/me/verification", As::Anonymous).bearer_auth(token);
        request.send().await.expect("sent")
    }
}

fn claims_of(token: &str) -> (Value, Value) {
    use base64::Engine;
    let decode = |part: &str| -> Value {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).expect("base64url");
        serde_json::from_slice(&bytes).expect("JSON")
    };
    let mut parts = token.split('.');
    let header = decode(parts.next().expect("a header"));
    (header, decode(parts.next().expect("claims")))
}

async fn a_new_user_registers_logs_in_reads_me_refreshes_and_logs_out(engine: Engine) {
    let Some(app) = spawn_app_on(engine).await else { return };
    let registered = app.register("  Ada@Example.COM ", PASSWORD, "Ada Lovelace").await;
    assert_eq!(registered.status(), 201);
    let user: Value = registered.json().await.expect("JSON");
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["role"], "customer");
    assert!(user.get("password").is_none() && user.get("passwordHash").is_none(), "{user}");

    let login = app.login("ADA@example.com", PASSWORD).await;
    assert_eq!(login.status(), 200);
    assert_eq!(login.headers()["cache-control"], "no-store");
    let tokens: Value = login.json().await.expect("JSON");
    assert_eq!(tokens["tokenType"], "Bearer");
    assert_eq!(tokens["expiresIn"], 900);
    let (header, claims) = claims_of(tokens["accessToken"].as_str().expect("a token"));
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], crate::helpers::kid());
    assert_eq!(claims["sub"], user["id"]);
    assert_eq!(claims["role"], "customer");
    assert_eq!((claims["iss"].as_str(), claims["aud"].as_str()), (Some("bazaar"), Some("bazaar")));
    assert_eq!(claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"), 900);
    assert!(claims["jti"].is_string());

    let me: Value = app.me(&tokens["accessToken"]).await.json().await.expect("JSON");
    assert_eq!(me, user);

    let refreshed = app.post_refresh("/auth/refresh", &tokens["refreshToken"]).await;
    assert_eq!(refreshed.status(), 200);
    let rotated: Value = refreshed.json().await.expect("JSON");
    assert_ne!(rotated["refreshToken"], tokens["refreshToken"]);
    assert_eq!(app.me(&rotated["accessToken"]).await.status(), 200);

    assert_eq!(app.post_refresh("/auth/logout", &rotated["refreshToken"]).await.status(), 204);
    assert_problem(app.post_refresh("/auth/refresh", &rotated["refreshToken"]).await, 401).await;
}

async fn registration_rules_are_422_naming_each_field_and_a_taken_email_is_409(engine: Engine) {
    let Some(app) = spawn_app_on(engine).await else { return };
    let problem = assert_problem(app.register("not-an-email", "short", "").await, 422).await;
    let fields: Vec<&str> =
        problem["errors"].as_array().expect("errors").iter().map(|e| e["field"].as_str().expect("a field")).collect();
    assert_eq!(fields, ["email", "name", "password"]);
    for weak in ["password1234", "grace@example.com"] {
        let problem = assert_problem(app.register("grace@example.com", weak, "Grace").await, 422).await;
        assert_eq!(problem["errors"][0]["field"], "password", "{weak}");
    }
    assert_eq!(app.register("grace@example.com", PASSWORD, "Grace").await.status(), 201);
    assert_problem(app.register("GRACE@example.com", PASSWORD, "Grace again").await, 409).await;
}

#[tokio::test]
async fn a_wrong_email_and_a_wrong_password_look_the_same_and_cost_the_same() {
    let app = spawn_app_with(&[
        ("users.failed_logins_per_minute", "100"),
        ("users.failed_logins_per_minute_per_address", "100"),
    ])
    .await;
    app.signed_in("hopper@example.com").await;
    let mut timings = [Vec::new(), Vec::new()];
    let mut bodies = Vec::new();
    for round in 0..7 {
        for (i, email) in
            [format!("nobody{round}@example.com"), "hopper@example.com".to_owned()].into_iter().enumerate()
        {
            let started = Instant::now();
            let response = app.login(&email, "wrong password entirely").await;
            timings[i].push(started.elapsed());
            let body = assert_problem(response, 401).await;
            bodies.push(body);
        }
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (unknown, wrong) = (median(&mut timings[0]), median(&mut timings[1]));
    // Without the dummy hash an unknown e-mail answers ~20 times faster; the margin absorbs the
    // noise of a busy CI machine running tests in parallel.
    assert!(unknown * 4 >= wrong && wrong * 4 >= unknown, "unknown e-mail {unknown:?}, wrong password {wrong:?}");
}

async fn a_reused_refresh_token_revokes_its_whole_family(engine: Engine) {
    let Some(app) = spawn_app_on(engine).await else { return };
    let first = app.signed_in("turing@example.com").await;
    let second: Value = app.post_refresh("/auth/refresh", &first["refreshToken"]).await.json().await.expect("JSON");
    // The first token again: a thief or the owner replays it, so the family is revoked.
    assert_problem(app.post_refresh("/auth/refresh", &first["refreshToken"]).await, 401).await;
    assert_problem(app.post_refresh("/auth/refresh", &second["refreshToken"]).await, 401).await;
    // Another log-in starts a new family, unaffected.
    let other: Value = app.login("turing@example.com", PASSWORD).await.json().await.expect("JSON");
    assert_eq!(app.post_refresh("/auth/refresh", &other["refreshToken"]).await.status(), 200);
    assert_problem(app.post_refresh("/auth/refresh", &json!("made-up")).await, 401).await;
}

#[tokio::test]
async fn admins_list_users_and_change_roles_and_customers_cannot() {
    let app = spawn_app_with(&[
        ("users.bootstrap_admin.email", "root@example.com"),
        ("users.bootstrap_admin.password", "a long admin passphrase"),
    ])
    .await;
    let customer = app.signed_in("knuth@example.com").await;
    let token = customer["accessToken"].as_str().expect("a token");
    let listed = app.request(Method::GET, "/users", As::Anonymous).bearer_auth(token).send().await.expect("sent");
    assert_problem(listed, 403).await;
    let create =
        app.request(Method::POST, "/products", As::Anonymous).bearer_auth(token).json(&product_body("K-1", "K"));
    assert_problem(create.send().await.expect("sent"), 403).await;

    let admin: Value = app.login("root@example.com", "a long admin passphrase").await.json().await.expect("JSON");
    let admin_token = admin["accessToken"].as_str().expect("a token");
    assert_eq!(claims_of(admin_token).1["role"], "admin");
    let page: Value = app
        .request(Method::GET, "/users?limit=1", As::Anonymous)
        .bearer_auth(admin_token)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(page["items"].as_array().expect("items").len(), 1);
    assert!(page["nextCursor"].is_string());

    let knuth: Value = app.me(&customer["accessToken"]).await.json().await.expect("JSON");
    let path = format!("/users/{}/role", knuth["id"].as_str().expect("an id"));
    let promoted =
        app.request(Method::PUT, &path, As::Anonymous).bearer_auth(admin_token).json(&json!({"role": "admin"}));
    let promoted: Value = promoted.send().await.expect("sent").json().await.expect("JSON");
    assert_eq!(promoted["role"], "admin");
    let fresh: Value = app.login("knuth@example.com", PASSWORD).await.json().await.expect("JSON");
    let create = app
        .request(Method::POST, "/products", As::Anonymous)
        .bearer_auth(fresh["accessToken"].as_str().expect("a token"))
        .json(&product_body("K-2", "Knuth's"));
    assert_eq!(create.send().await.expect("sent").status(), 201, "the new role applies to new tokens");

    let missing = format!("/users/{}/role", uuid::Uuid::now_v7());
    let response =
        app.request(Method::PUT, &missing, As::Anonymous).bearer_auth(admin_token).json(&json!({"role": "admin"}));
    assert_problem(response.send().await.expect("sent"), 404).await;
    let bad = app.request(Method::PUT, &path, As::Anonymous).bearer_auth(admin_token).json(&json!({"role": "god"}));
    assert_problem(bad.send().await.expect("sent"), 422).await;
}

#[tokio::test]
async fn failed_logins_are_throttled_per_email_and_a_success_resets_the_count() {
    let app = spawn_app_with(&[
        ("users.failed_logins_per_minute", "3"),
        ("users.failed_logins_per_minute_per_address", "100"),
    ])
    .await;
    app.signed_in("lamport@example.com").await;
    for _ in 0..2 {
        assert_problem(app.login("lamport@example.com", "not the password").await, 401).await;
    }
    assert_eq!(app.login("lamport@example.com", PASSWORD).await.status(), 200, "resets the e-mail's count");
    for _ in 0..3 {
        assert_problem(app.login("lamport@example.com", "not the password").await, 401).await;
    }
    let throttled = app.login("lamport@example.com", PASSWORD).await;
    let retry_after: u64 = throttled.headers()["retry-after"].to_str().expect("ASCII").parse().expect("seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_problem(throttled, 429).await;
    assert_eq!(app.login("LAMPORT@example.com", PASSWORD).await.status(), 429, "whatever the case");
}

#[tokio::test]
async fn failed_logins_are_throttled_per_client_address() {
    let app = spawn_app_with(&[("users.failed_logins_per_minute_per_address", "4")]).await;
    for i in 0..4 {
        assert_problem(app.login(&format!("guess{i}@example.com"), "not the password").await, 401).await;
    }
    assert_problem(app.login("someone-else@example.com", "not the password").await, 429).await;
}

#[tokio::test]
async fn the_jwks_publishes_the_signing_key_and_verifies_tokens_for_other_processes() {
    let app = spawn_app().await;
    let jwks: Value = app.get("/.well-known/jwks.json").await.json().await.expect("JSON");
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kid"], crate::helpers::kid());
    assert_eq!((keys[0]["kty"].as_str(), keys[0]["crv"].as_str()), (Some("OKP"), Some("Ed25519")));
    assert!(keys[0].get("d").is_none(), "no private part");

    // A process that does not host users verifies through the JWKS alone.
    let tokens = app.signed_in("liskov@example.com").await;
    let verifier =
        kernel::JwtVerifier::from_jwks_url(&format!("{}/.well-known/jwks.json", app.address), "bazaar", "bazaar");
    let claims = verifier.verify(tokens["accessToken"].as_str().expect("a token")).await.expect("verified");
    assert_eq!(claims.role, kernel::Role::Customer);
    let forged = crate::helpers::token("admin", 900, crate::helpers::OTHER_PRIVATE_KEY);
    assert!(verifier.verify(&forged).await.is_err(), "same kid, another key");
    let wrong_audience =
        kernel::JwtVerifier::from_jwks_url(&format!("{}/.well-known/jwks.json", app.address), "bazaar", "elsewhere");
    assert!(wrong_audience.verify(tokens["accessToken"].as_str().expect("a token")).await.is_err());
}

#[tokio::test]
async fn during_a_key_rotation_tokens_of_the_previous_key_still_verify() {
    let app = spawn_app_with(&[
        ("auth.signing_key", include_str!("../fixtures/other-ed25519-private.pem")),
        ("auth.previous_public_key", crate::helpers::PUBLIC_KEY),
    ])
    .await;
    let jwks: Value = app.get("/.well-known/jwks.json").await.json().await.expect("JSON");
    assert_eq!(jwks["keys"].as_array().expect("keys").len(), 2);
    // Signed with the previous key (the fixtures' usual one).
    let old = app.request(Method::POST, "/products", As::Admin).json(&product_body("ROT-1", "Rotated")).send().await;
    assert_eq!(old.expect("sent").status(), 201);
    let tokens = app.signed_in("rotation@example.com").await;
    let (header, _) = claims_of(tokens["accessToken"].as_str().expect("a token"));
    assert_ne!(header["kid"], crate::helpers::kid(), "new tokens use the new key");
    assert_eq!(app.me(&tokens["accessToken"]).await.status(), 200);
}

#[tokio::test]
async fn concurrent_wrong_passwords_for_one_account_are_verified_at_most_the_limit_times() {
    let app = spawn_app_with(&[("users.failed_logins_per_minute", "5")]).await;
    app.signed_in("hopper@example.com").await;
    let guesses =
        (0..50).map(|i| app.login("hopper@example.com", if i % 2 == 0 { "guess one two" } else { "guess three four" }));
    let statuses: Vec<u16> = futures::future::join_all(guesses).await.iter().map(|r| r.status().as_u16()).collect();
    let verified = statuses.iter().filter(|s| **s == 401).count();
    assert!(verified <= 5, "{verified} guesses were checked: {statuses:?}");
    assert!(statuses.iter().all(|s| [401, 429, 503].contains(s)), "{statuses:?}");
    assert_eq!(app.login("hopper@example.com", PASSWORD).await.status(), 429, "the account is throttled from here");
}

#[tokio::test]
async fn through_a_trusted_proxy_one_clients_failures_do_not_block_another() {
    let app = spawn_app_with(&[
        ("users.failed_logins_per_minute_per_address", "4"),
        ("server.trusted_proxies", "127.0.0.0/8"),
    ])
    .await;
    let login_from = |client: &'static str, email: String| {
        let body = json!({"email": email, "password": "not the password"});
        app.request(Method::POST, "/auth/token", As::Anonymous).header("x-forwarded-for", client).json(&body).send()
    };
    for i in 0..4 {
        assert_problem(login_from("198.51.100.1", format!("guess{i}@example.com")).await.expect("sent"), 401).await;
    }
    assert_problem(login_from("198.51.100.1", "guess9@example.com".into()).await.expect("sent"), 429).await;
    let other = login_from("198.51.100.2", "someone@example.com".into()).await.expect("sent");
    assert_problem(other, 401).await;
    // A client that forges the header in front of the proxy's own entry is still itself.
    let forged = app
        .request(Method::POST, "/auth/token", As::Anonymous)
        .header("x-forwarded-for", "203.0.113.50, 198.51.100.1")
        .json(&json!({"email": "x@example.com", "password": "not the password"}));
    assert_problem(forged.send().await.expect("sent"), 429).await;
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let app = spawn_app_with(&[("users.failed_logins_per_minute_per_address", "2")]).await;
    for client in ["198.51.100.1", "198.51.100.2"] {
        let body = json!({"email": format!("{client}@example.com"), "password": "not the password"});
        let response = app.request(Method::POST, "/auth/token", As::Anonymous).header("x-forwarded-for", client);
        assert_problem(response.json(&body).send().await.expect("sent"), 401).await;
    }
    let body = json!({"email": "third@example.com", "password": "not the password"});
    let response = app.request(Method::POST, "/auth/token", As::Anonymous).header("x-forwarded-for", "198.51.100.3");
    assert_problem(response.json(&body).send().await.expect("sent"), 429).await;
}

#[tokio::test]
async fn registrations_are_limited_per_client_address() {
    let app = spawn_app_with(&[("users.registrations_per_hour_per_address", "3")]).await;
    for i in 0..3 {
        assert_eq!(app.register(&format!("new{i}@example.com"), PASSWORD, "New").await.status(), 201);
    }
    let refused = app.register("new9@example.com", PASSWORD, "New").await;
    assert!(refused.headers().contains_key("retry-after"));
    assert_problem(refused, 429).await;
}

#[tokio::test]
async fn the_last_admin_cannot_stop_being_one() {
    let app = spawn_app_with(&[
        ("users.bootstrap_admin.email", "root@example.com"),
        ("users.bootstrap_admin.password", "a long admin passphrase"),
    ])
    .await;
    let root: Value = app.login("root@example.com", "a long admin passphrase").await.json().await.expect("JSON");
    let root_me: Value = app.me(&root["accessToken"]).await.json().await.expect("JSON");
    let set_role = |token: &Value, id: &Value, role: &str| {
        let path = format!("/users/{}/role", id.as_str().expect("an id"));
        app.request(Method::PUT, &path, As::Anonymous)
            .bearer_auth(token.as_str().expect("a token"))
            .json(&json!({"role": role}))
            .send()
    };
    let refused = set_role(&root["accessToken"], &root_me["id"], "customer").await.expect("sent");
    assert!(assert_problem(refused, 409).await["detail"].as_str().expect("a detail").contains("last admin"));

    let knuth = app.signed_in("knuth@example.com").await;
    let knuth_me: Value = app.me(&knuth["accessToken"]).await.json().await.expect("JSON");
    assert_eq!(set_role(&root["accessToken"], &knuth_me["id"], "admin").await.expect("sent").status(), 200);
    assert_eq!(set_role(&root["accessToken"], &root_me["id"], "customer").await.expect("sent").status(), 200);
    // Knuth is the last admin now; a role change revokes older tokens, so Knuth logs in again.
    let knuth: Value = app.login("knuth@example.com", PASSWORD).await.json().await.expect("JSON");
    let refused = set_role(&knuth["accessToken"], &knuth_me["id"], "customer").await.expect("sent");
    assert_problem(refused, 409).await;
    let me: Value = app.me(&knuth["accessToken"]).await.json().await.expect("JSON");
    assert_eq!(me["role"], "admin");
}

#[tokio::test]
async fn housekeeping_purges_expired_refresh_tokens_and_keeps_live_ones() {
    use sea_orm::ConnectionTrait;
    let app = spawn_app_with(&[("housekeeping.interval_secs", "1")]).await;
    app.signed_in("expired@example.com").await;
    let live = app.signed_in("live@example.com").await;
    let db = app.db("users").await;
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            let row = db.query_one_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql)).await;
            row.expect("counted").expect("a row").try_get_by_index::<i64>(0).expect("a count")
        }
    };
    let expire = "UPDATE users_refresh_tokens SET expires_at = '2000-01-01 00:00:00' WHERE user_id = \
                  (SELECT id FROM users_accounts WHERE email = 'expired@example.com')";
    db.execute_unprepared(expire).await.expect("expired");
    crate::helpers::settles(1, || count("SELECT COUNT(*) FROM users_refresh_tokens")).await;
    assert_eq!(app.post_refresh("/auth/refresh", &live["refreshToken"]).await.status(), 200, "the live one works");
}

#[tokio::test]
async fn after_a_log_out_the_access_token_is_refused_too() {
    let app = spawn_app().await;
    let tokens = app.signed_in("dijkstra@example.com").await;
    assert_eq!(app.me(&tokens["accessToken"]).await.status(), 200);
    // Tokens carry whole seconds: the revocation refuses those issued before its second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.post_refresh("/auth/logout", &tokens["refreshToken"]).await.status(), 204);
    crate::helpers::eventually(10, || async { (app.me(&tokens["accessToken"]).await.status() == 401).then_some(()) })
        .await;
}

const NEW_PASSWORD: &str = "a brand new passphrase";

async fn a_forgotten_password_is_reset_with_the_mailed_token_and_every_session_ends(engine: Engine) {
    let Some(app) = spawn_app_on(engine).await else { return };
    let before = app.signed_in("noether@example.com").await;
    let me: Value = app.me(&before["accessToken"]).await.json().await.expect("JSON");
    let asked = chrono::Utc::now();
    let requested = app.post_json("/auth/password-reset", &json!({"email": " Noether@Example.com"})).await;
    assert_eq!(requested.status(), 202);
    let mails = app.mailed_resets("noether@example.com").await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(
        (mail.user_id.to_string(), mail.name.as_str()),
        (me["id"].as_str().expect("an id").to_owned(), "Test User")
    );
    let ttl = mail.expires_at - asked;
    assert!(ttl > chrono::Duration::minutes(29) && ttl <= chrono::Duration::minutes(31), "{ttl}");

    // The password follows registration's rules; a refused one does not use the token up.
    let weak = assert_problem(app.reset_password(&mail.token, "password1234").await, 422).await;
    assert_eq!(weak["errors"][0]["field"], "password");
    let same_as_email = assert_problem(app.reset_password(&mail.token, "noether@example.com").await, 422).await;
    assert_eq!(same_as_email["errors"][0]["field"], "password");
    assert_eq!(app.reset_password(&mail.token, NEW_PASSWORD).await.status(), 204);

    assert_problem(app.login("noether@example.com", PASSWORD).await, 401).await;
    assert_eq!(app.login("noether@example.com", NEW_PASSWORD).await.status(), 200);
    assert_problem(app.post_refresh("/auth/refresh", &before["refreshToken"]).await, 401).await;
}

#[tokio::test]
async fn after_a_password_reset_the_old_access_tokens_are_refused_too() {
    let app = spawn_app().await;
    let before = app.signed_in("germain@example.com").await;
    // Tokens carry whole seconds: the revocation refuses those issued before its second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.post_json("/auth/password-reset", &json!({"email": "germain@example.com"})).await;
    let token = app.mailed_resets("germain@example.com").await.pop().expect("a mail").token;
    assert_eq!(app.reset_password(&token, NEW_PASSWORD).await.status(), 204);
    crate::helpers::eventually(10, || async { (app.me(&before["accessToken"]).await.status() == 401).then_some(()) })
        .await;
}

#[tokio::test]
async fn an_unknown_email_gets_the_same_202_and_nothing_is_mailed() {
    let app = spawn_app().await;
    app.signed_in("known@example.com").await;
    let mut answers = Vec::new();
    for email in ["nobody@example.com", "known@example.com"] {
        let response = app.post_json("/auth/password-reset", &json!({"email": email})).await;
        let status = response.status();
        let length = response.headers().get("content-length").cloned();
        answers.push((status, length, response.text().await.expect("a body")));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, 202);
    assert_eq!(app.mailed_resets("known@example.com").await.len(), 1);
    let users = app.db("users").await;
    let resets = kernel::testing::published_of::<PasswordResetRequested>(&users, "users").await;
    assert_eq!(resets.len(), 1, "only the known account's: {resets:?}");

    let malformed = assert_problem(app.post_json("/auth/password-reset", &json!({"email": "nobody"})).await, 422).await;
    assert_eq!(malformed["errors"][0]["field"], "email");
    assert_problem(app.post_json("/auth/password-reset", &json!({})).await, 422).await;
}

#[tokio::test]
async fn a_reset_token_works_once_and_a_newer_one_replaces_the_older() {
    let app = spawn_app().await;
    app.signed_in("hypatia@example.com").await;
    for _ in 0..2 {
        let response = app.post_json("/auth/password-reset", &json!({"email": "hypatia@example.com"})).await;
        assert_eq!(response.status(), 202);
    }
    let mails = app.mailed_resets("hypatia@example.com").await;
    let (older, newer) = (&mails[0].token, &mails[1].token);
    assert_ne!(older, newer);
    let replaced = assert_problem(app.reset_password(older, NEW_PASSWORD).await, 400).await;
    assert_eq!(app.reset_password(newer, NEW_PASSWORD).await.status(), 204);
    let used = assert_problem(app.reset_password(newer, "yet another passphrase").await, 400).await;
    let unknown = assert_problem(app.reset_password("made-up", NEW_PASSWORD).await, 400).await;
    assert_eq!(used, unknown, "used and unknown look the same");
    assert_eq!(replaced, unknown, "replaced and unknown look the same");
    assert!(unknown["detail"].as_str().expect("a detail").contains("unknown, expired or used"), "{unknown}");
    assert_eq!(app.login("hypatia@example.com", NEW_PASSWORD).await.status(), 200, "the used token changed nothing");
    // A verification token is no reset token.
    let verification = app.mailed_verifications("hypatia@example.com").await.pop().expect("a verification mail");
    assert_problem(app.reset_password(&verification.token, NEW_PASSWORD).await, 400).await;
}

#[tokio::test]
async fn an_expired_reset_token_is_refused() {
    use sea_orm::ConnectionTrait;
    let app = spawn_app().await;
    app.signed_in("kovalevskaya@example.com").await;
    app.post_json("/auth/password-reset", &json!({"email": "kovalevskaya@example.com"})).await;
    let token = app.mailed_resets("kovalevskaya@example.com").await.pop().expect("a mail").token;
    let expire = "UPDATE users_one_time_tokens SET expires_at = '2000-01-01 00:00:00' WHERE purpose = 'password-reset'";
    app.db("users").await.execute_unprepared(expire).await.expect("expired");
    let expired = assert_problem(app.reset_password(&token, NEW_PASSWORD).await, 400).await;
    assert_eq!(expired, assert_problem(app.reset_password("made-up", NEW_PASSWORD).await, 400).await);
    assert_eq!(app.login("kovalevskaya@example.com", PASSWORD).await.status(), 200, "the password is unchanged");
}

#[tokio::test]
async fn password_reset_requests_are_limited_per_email_whether_or_not_it_has_an_account() {
    let app = spawn_app_with(&[("users.password_resets_per_hour_per_email", "2")]).await;
    app.signed_in("flood@example.com").await;
    for email in ["flood@example.com", "nobody@example.com"] {
        for _ in 0..2 {
            assert_eq!(app.post_json("/auth/password-reset", &json!({"email": email})).await.status(), 202);
        }
        let refused = app.post_json("/auth/password-reset", &json!({"email": email.to_uppercase()})).await;
        assert!(refused.headers().contains_key("retry-after"), "{email}");
        assert_problem(refused, 429).await;
    }
    assert_eq!(app.mailed_resets("flood@example.com").await.len(), 2, "no more mails than the limit");
    let other = app.post_json("/auth/password-reset", &json!({"email": "other@example.com"})).await;
    assert_eq!(other.status(), 202, "other e-mails are not affected");
}

async fn a_new_customer_verifies_the_email_and_the_next_access_token_says_so(engine: Engine) {
    let Some(app) = spawn_app_on(engine).await else { return };
    let registered: Value = app.register("curie@example.com", PASSWORD, "Marie").await.json().await.expect("JSON");
    assert_eq!(registered["emailVerified"], false);
    let mails = app.mailed_verifications("curie@example.com").await;
    assert_eq!(mails.len(), 1, "one mail, in the registration's transaction");
    assert_eq!(
        (mails[0].user_id.to_string().as_str(), mails[0].name.as_str()),
        (registered["id"].as_str().expect("an id"), "Marie")
    );
    let ttl = mails[0].expires_at - chrono::Utc::now();
    assert!(ttl > chrono::Duration::hours(71) && ttl <= chrono::Duration::hours(72), "{ttl}");
    let tokens: Value = app.login("curie@example.com", PASSWORD).await.json().await.expect("JSON");
    assert_eq!(claims_of(tokens["accessToken"].as_str().expect("a token")).1["email_verified"], false);

    assert_problem(app.verify_email("made-up").await, 400).await;
    assert_problem(app.post_json("/users/verify", &json!({})).await, 422).await;
    assert_eq!(app.verify_email(&mails[0].token).await.status(), 204);
    assert_eq!(app.verify_email(&mails[0].token).await.status(), 204, "a link opened twice");
    let me: Value = app.me(&tokens["accessToken"]).await.json().await.expect("JSON");
    assert_eq!(me["emailVerified"], true);

    let refreshed: Value = app.post_refresh("/auth/refresh", &tokens["refreshToken"]).await.json().await.expect("JSON");
    assert_eq!(claims_of(refreshed["accessToken"].as_str().expect("a token")).1["email_verified"], true);
    let conflict = assert_problem(app.ask_verification(&refreshed["accessToken"]).await, 409).await;
    assert!(conflict["detail"].as_str().expect("a detail").contains("verified already"), "{conflict}");
    assert_eq!(app.mailed_verifications("curie@example.com").await.len(), 1, "nothing more mailed");
}

#[tokio::test]
async fn a_customer_asks_for_a_new_verification_mail_and_only_the_newest_token_works() {
    use sea_orm::ConnectionTrait;
    let app = spawn_app_with(&[("users.verification_mails_per_hour_per_account", "2")]).await;
    let tokens = app.signed_in("franklin@example.com").await;
    for _ in 0..2 {
        assert_eq!(app.ask_verification(&tokens["accessToken"]).await.status(), 202);
    }
    let throttled = app.ask_verification(&tokens["accessToken"]).await;
    assert!(throttled.headers().contains_key("retry-after"));
    assert_problem(throttled, 429).await;
    assert_problem(app.request(Method::POST, "/users/me/verification", As::Anonymous).send().await.expect("sent"), 401)
        .await;

    let mails = app.mailed_verifications("franklin@example.com").await;
    assert_eq!(mails.len(), 3, "the registration's and two more");
    let newest = &mails[2].token;
    for replaced in [&mails[0].token, &mails[1].token] {
        assert_problem(app.verify_email(replaced).await, 400).await;
    }
    let expire =
        "UPDATE users_one_time_tokens SET expires_at = '2000-01-01 00:00:00' WHERE purpose = 'email-verification'";
    let users = app.db("users").await;
    users.execute_unprepared(expire).await.expect("expired");
    let expired = assert_problem(app.verify_email(newest).await, 400).await;
    assert!(expired["detail"].as_str().expect("a detail").contains("unknown or expired"), "{expired}");
    let me: Value = app.me(&tokens["accessToken"]).await.json().await.expect("JSON");
    assert_eq!(me["emailVerified"], false);
}

#[tokio::test]
async fn an_admin_made_by_the_operator_counts_as_verified() {
    let app = spawn_app_with(&[
        ("users.bootstrap_admin.email", "root@example.com"),
        ("users.bootstrap_admin.password", "a long admin passphrase"),
    ])
    .await;
    let admin: Value = app.login("root@example.com", "a long admin passphrase").await.json().await.expect("JSON");
    assert_eq!(claims_of(admin["accessToken"].as_str().expect("a token")).1["email_verified"], true);
    let me: Value = app.me(&admin["accessToken"]).await.json().await.expect("JSON");
    assert_eq!(me["emailVerified"], true);
    assert!(app.mailed_verifications("root@example.com").await.is_empty(), "nothing to verify");
}

#[tokio::test]
async fn with_verified_emails_required_an_unverified_customer_cannot_check_out() {
    use crate::orders::{eur, order_body};
    let app = spawn_app_with(&[("auth.require_verified_email", "true")]).await;
    let product = app.stocked_product("VERIFY-1", 5, eur(500)).await;
    let tokens = app.signed_in("lovelace@example.com").await;
    let bearer = |tokens: &Value| tokens["accessToken"].as_str().expect("a token").to_owned();
    let checkout = |token: String| {
        let body = json!({"shippingAddress": crate::orders::address(), "paymentMethod": "pm_card_visa"});
        app.request(Method::POST, "/basket/checkout", As::Anonymous).bearer_auth(token).json(&body).send()
    };

    let refused = assert_problem(app.place(&bearer(&tokens), &order_body(&[(&product["id"], 1)])).await, 403).await;
    assert_eq!(refused["detail"], "verify your e-mail address first (POST /users/verify)");
    assert_problem(checkout(bearer(&tokens)).await.expect("sent"), 403).await;
    // Other routes do not ask for it.
    assert_eq!(app.get_json_as(&bearer(&tokens), "/orders").await["items"], json!([]));

    let mail = app.mailed_verifications("lovelace@example.com").await.pop().expect("a mail");
    assert_eq!(app.verify_email(&mail.token).await.status(), 204);
    let verified: Value = app.post_refresh("/auth/refresh", &tokens["refreshToken"]).await.json().await.expect("JSON");
    assert_eq!(app.place(&bearer(&verified), &order_body(&[(&product["id"], 1)])).await.status(), 201);
    // Let through to the basket's own rules: an empty basket is not checked out.
    assert_problem(checkout(bearer(&verified)).await.expect("sent"), 422).await;
}
