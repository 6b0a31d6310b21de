//! Order saga load: places orders from N concurrent clients against a release build of Bazaar in
//! the default topology (SQLite files, in-process bus) and reports the order → confirmed latency
//! (p50, p99) and the confirmed orders per second.
//!
//! `bench/run-saga` builds and runs it; see bench/README.md.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

#[derive(Parser)]
struct Args {
    /// The bazaar binary (a release build).
    #[arg(long, default_value = "target/release/bazaar")]
    bazaar: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// How long to place orders.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Orders placed before measuring (warms caches and pools).
    #[arg(long, default_value_t = 200)]
    warmup: usize,
}

const PASSWORD: &str = "a long benchmark passphrase";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let env = |cmd: &mut tokio::process::Command| {
        cmd.env("BAZAAR_ENV", "development")
            .env("BAZAAR__DATABASE__URL", format!("sqlite://{}/{{module}}.db?mode=rwc", dir.path().display()))
            .env("BAZAAR__AUTH__SIGNING_KEY_FILE", dir.path().join("key.pem"))
            .env("BAZAAR__SERVER__PORT", "0")
            .env("BAZAAR__TELEMETRY__FORMAT", "json")
            .env("BAZAAR__TELEMETRY__FILTER", "warn,bazaar::startup=info")
            .env("BAZAAR__USERS__FAILED_LOGINS_PER_MINUTE_PER_ADDRESS", "100000")
            .env_remove("RUST_LOG");
    };
    let mut create_admin = tokio::process::Command::new(&args.bazaar);
    create_admin.args(["users", "create-admin", "--email", "bench@example.com"]).env("BAZAAR_ADMIN_PASSWORD", PASSWORD);
    env(&mut create_admin);
    if !create_admin.status().await.context("cannot run bazaar")?.success() {
        bail!("create-admin failed");
    }
    let mut serve = tokio::process::Command::new(&args.bazaar);
    serve.arg("serve").stdout(Stdio::piped()).kill_on_drop(true);
    env(&mut serve);
    let mut server = serve.spawn()?;
    let mut lines = tokio::io::BufReader::new(server.stdout.take().context("stdout")?).lines();
    let port = loop {
        let line = lines.next_line().await?.context("bazaar exited before listening")?;
        let log: Value = serde_json::from_str(&line).unwrap_or_default();
        if log["message"] == "Bazaar is listening" {
            break log["port"].as_u64().context("a port")?;
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.clients).build()?;

    let admin = login(&client, &base, "bench@example.com").await?;
    let product: Value = client
        .post(format!("{base}/products"))
        .bearer_auth(&admin)
        .json(&json!({"sku": "BENCH-1", "name": "Benchmark", "price": {"amount": 100, "currency": "EUR"}}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let product_id = product["id"].as_str().context("an id")?.to_owned();
    wait_until(|| async {
        let put = client
            .put(format!("{base}/inventory/{product_id}"))
            .bearer_auth(&admin)
            .json(&json!({"onHand": 100_000_000}))
            .send()
            .await;
        put.is_ok_and(|r| r.status().is_success())
    })
    .await?;
    client
        .post(format!("{base}/users"))
        .json(&json!({"email": "shopper@example.com", "password": PASSWORD, "name": "Shopper"}))
        .send()
        .await?
        .error_for_status()?;
    let customer = login(&client, &base, "shopper@example.com").await?;
    let order = json!({
        "items": [{"productId": product_id, "quantity": 1}],
        "shippingAddress": {"name": "B", "line1": "1 Bench St", "city": "Berlin", "postalCode": "10115", "country": "DE"}
    });
    wait_until(|| async {
        let placed = client.post(format!("{base}/orders")).bearer_auth(&customer).json(&order).send().await;
        placed.is_ok_and(|r| r.status().as_u16() == 201)
    })
    .await?;
    for _ in 0..args.warmup {
        place_and_confirm(&client, &base, &customer, &order).await?;
    }

    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.clients)
        .map(|_| {
            let (client, base, customer, order) = (client.clone(), base.clone(), customer.clone(), order.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                while Instant::now() < deadline {
                    samples.push(place_and_confirm(&client, &base, &customer, &order).await?);
                }
                anyhow::Ok(samples)
            })
        })
        .collect();
    let mut server_side = Vec::new();
    let mut client_side = Vec::new();
    for task in tasks {
        for (server, client) in task.await?? {
            server_side.push(server);
            client_side.push(client);
        }
    }
    let elapsed = started.elapsed();
    server.kill().await.ok();
    server_side.sort();
    client_side.sort();
    let pct = |v: &[Duration], p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0;
    let report = json!({
        "clients": args.clients,
        "orders": server_side.len(),
        "seconds": elapsed.as_secs_f64(),
        "ordersPerSecond": server_side.len() as f64 / elapsed.as_secs_f64(),
        "confirmLatencyMs": {"p50": pct(&server_side, 0.5), "p99": pct(&server_side, 0.99)},
        "clientObservedMs": {"p50": pct(&client_side, 0.5), "p99": pct(&client_side, 0.99)},
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn login(client: &reqwest::Client, base: &str, email: &str) -> anyhow::Result<String> {
    let tokens: Value = client
        .post(format!("{base}/auth/token"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(tokens["accessToken"].as_str().context("a token")?.to_owned())
}

async fn wait_until<F, Fut>(mut ready: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready().await {
        if Instant::now() > deadline {
            bail!("not ready within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Places one order and polls it until confirmed: `(confirmedAt - createdAt, client-observed)`.
async fn place_and_confirm(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    order: &Value,
) -> anyhow::Result<(Duration, Duration)> {
    let started = Instant::now();
    let placed: Value = client
        .post(format!("{base}/orders"))
        .bearer_auth(token)
        .json(order)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let url = format!("{base}/orders/{}", placed["id"].as_str().context("an id")?);
    loop {
        let current: Value = client.get(&url).bearer_auth(token).send().await?.error_for_status()?.json().await?;
        match current["status"].as_str() {
            Some("confirmed") => {
                let at =
                    |field: &str| chrono::DateTime::parse_from_rfc3339(current[field].as_str().unwrap_or_default());
                let server = (at("confirmedAt")? - at("createdAt")?).to_std().unwrap_or_default();
                return Ok((server, started.elapsed()));
            }
            Some("pending") => tokio::time::sleep(Duration::from_millis(2)).await,
            other => bail!("order ended {other:?}"),
        }
    }
}
