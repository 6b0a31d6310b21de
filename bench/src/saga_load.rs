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
    create_admin
        .args(["users", "create-admin", "--email", "bench@example.com"])
        .env("BAZAAR_ADMIN_PASSWORD", PASSWORD)
        .stdout(Stdio::null());
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
        place(&client, &base, &customer, &order).await?;
    }

    // Closed loop: each client places an order, waits until it is confirmed (polling gently, so
    // that the polls do not become the load), then places the next. The saga's latency is the
    // server's own `confirmedAt - createdAt`, read back after the run.
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.clients)
        .map(|_| {
            let (client, base, customer, order) = (client.clone(), base.clone(), customer.clone(), order.clone());
            tokio::spawn(async move {
                let mut placed = 0usize;
                while Instant::now() < deadline {
                    let id = place(&client, &base, &customer, &order).await?;
                    wait_confirmed(&client, &base, &customer, &id).await?;
                    placed += 1;
                }
                anyhow::Ok(placed)
            })
        })
        .collect();
    let mut placed = 0;
    for task in tasks {
        placed += task.await??;
    }
    let placing = started.elapsed();
    let latencies = settled(&client, &base, &admin, args.warmup + 1 + placed).await?;
    let confirmed_by = latencies.iter().map(|(_, confirmed)| *confirmed).max().context("no orders")?;
    let first_created = latencies.iter().map(|(created, _)| *created).min().context("no orders")?;
    let mut durations: Vec<f64> = latencies
        .iter()
        .skip(args.warmup + 1)
        .map(|(created, confirmed)| (*confirmed - *created).num_microseconds().unwrap_or_default() as f64 / 1000.0)
        .collect();
    server.kill().await.ok();
    durations.sort_by(f64::total_cmp);
    let pct = |p: f64| durations[((durations.len() as f64 - 1.0) * p).round() as usize];
    let saga_seconds = (confirmed_by - first_created).num_milliseconds() as f64 / 1000.0;
    let report = json!({
        "clients": args.clients,
        "ordersPlaced": placed,
        "placingSeconds": placing.as_secs_f64(),
        "ordersPlacedPerSecond": placed as f64 / placing.as_secs_f64(),
        "ordersConfirmedPerSecond": latencies.len() as f64 / saga_seconds.max(0.001),
        "confirmLatencyMs": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
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

/// Places an order; its id.
async fn place(client: &reqwest::Client, base: &str, token: &str, order: &Value) -> anyhow::Result<String> {
    let placed: Value = client
        .post(format!("{base}/orders"))
        .bearer_auth(token)
        .json(order)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(placed["id"].as_str().context("an id")?.to_owned())
}

/// Polls the order until it is confirmed: after 2 ms, then backing off to every 20 ms.
async fn wait_confirmed(client: &reqwest::Client, base: &str, token: &str, id: &str) -> anyhow::Result<()> {
    let mut pause = Duration::from_millis(2);
    loop {
        tokio::time::sleep(pause).await;
        let order: Value = client
            .get(format!("{base}/orders/{id}"))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        match order["status"].as_str() {
            Some("confirmed") => return Ok(()),
            Some("pending") => pause = (pause * 2).min(Duration::from_millis(20)),
            other => bail!("order {id} ended {other:?}"),
        }
    }
}

type Instants = (chrono::DateTime<chrono::FixedOffset>, chrono::DateTime<chrono::FixedOffset>);

/// Waits until `expected` orders are confirmed; their `(createdAt, confirmedAt)`, oldest first.
async fn settled(client: &reqwest::Client, base: &str, admin: &str, expected: usize) -> anyhow::Result<Vec<Instants>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut all = Vec::with_capacity(expected);
        let mut after: Option<String> = None;
        loop {
            let mut url = format!("{base}/orders?status=confirmed&limit=100");
            if let Some(cursor) = &after {
                url += &format!("&after={cursor}");
            }
            let page: Value = client.get(url).bearer_auth(admin).send().await?.error_for_status()?.json().await?;
            for order in page["items"].as_array().context("items")? {
                let at = |field: &str| chrono::DateTime::parse_from_rfc3339(order[field].as_str().unwrap_or_default());
                all.push((at("createdAt")?, at("confirmedAt")?));
            }
            match page["nextCursor"].as_str() {
                Some(cursor) => after = Some(cursor.to_owned()),
                None => break,
            }
        }
        if all.len() >= expected {
            return Ok(all);
        }
        if Instant::now() > deadline {
            bail!("only {} of {expected} orders confirmed within 120 s", all.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
