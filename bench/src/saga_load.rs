//! Order saga load: places orders from N concurrent clients against a release build of Bazaar and
//! reports the order → confirmed latency (p50, p99), the confirmed orders per second, the server's
//! peak resident memory under the load and the CPU time an order cost the server and this client.
//!
//! Topologies: `a` (the default: SQLite files, in-process bus) and `b` (PostgreSQL and RabbitMQ,
//! every module in one process): a fresh database and a prefix of the run's own
//! (`bazaar-bench-<id>`), dropped and deleted afterwards, so runs never see each other's data.
//!
//! `bench/run` (and `bench/run-saga`) build and run it; see bench/README.md.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// The bazaar binary (a release build).
    #[arg(long, default_value = "target/release/bazaar")]
    bazaar: String,
    /// `a`: SQLite files and the in-process bus; `b`: PostgreSQL and RabbitMQ.
    #[arg(long, value_enum, default_value_t = Topology::A)]
    topology: Topology,
    /// PostgreSQL server for topology b (no database: one is created for the run, then dropped).
    #[arg(long, env = "BENCH_POSTGRES", default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres: String,
    /// RabbitMQ for topology b.
    #[arg(long, env = "BENCH_AMQP", default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// How long to place orders.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Orders placed before measuring (warms caches and pools).
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Bazaar's `telemetry.filter`; unset, Bazaar's default (`info`: no line per successful
    /// request). The logs go to a file in the run's temporary folder.
    #[arg(long)]
    log_filter: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Topology {
    A,
    B,
}

const PASSWORD: &str = "a long benchmark passphrase";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut env: Vec<(&str, String)> = vec![
        ("BAZAAR_ENV", "development".into()),
        ("BAZAAR__AUTH__SIGNING_KEY_FILE", dir.path().join("key.pem").display().to_string()),
        ("BAZAAR__SERVER__PORT", port.to_string()),
        ("BAZAAR__TELEMETRY__FORMAT", "json".into()),
        ("BAZAAR__USERS__FAILED_LOGINS_PER_MINUTE_PER_ADDRESS", "100000".into()),
    ];
    if let Some(filter) = &args.log_filter {
        env.push(("BAZAAR__TELEMETRY__FILTER", filter.clone()));
    }
    let resources = match args.topology {
        Topology::A => {
            env.push(("BAZAAR__DATABASE__URL", format!("sqlite://{}/{{module}}.db?mode=rwc", dir.path().display())));
            None
        }
        Topology::B => {
            let database = format!("bazaar_bench_{run_id}");
            let prefix = format!("bazaar-bench-{run_id}");
            let admin = sea_orm::Database::connect(format!("{}/postgres", args.postgres))
                .await
                .with_context(|| format!("PostgreSQL at {} is unreachable", args.postgres))?;
            sea_orm::ConnectionTrait::execute_unprepared(&admin, &format!("CREATE DATABASE {database}")).await?;
            env.push(("BAZAAR__DATABASE__URL", format!("{}/{database}", args.postgres)));
            env.push(("BAZAAR__BUS__KIND", "rabbitmq".into()));
            env.push(("BAZAAR__BUS__RABBITMQ__URL", args.amqp.clone()));
            env.push(("BAZAAR__BUS__RABBITMQ__PREFIX", prefix.clone()));
            Some((admin, database, prefix))
        }
    };
    let outcome = run(&args, &env, port, &dir.path().join("bazaar.log")).await;
    if let Some((admin, database, prefix)) = resources {
        // Whatever happened: the run's database and broker topology go.
        let drop = format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)");
        if let Err(e) = sea_orm::ConnectionTrait::execute_unprepared(&admin, &drop).await {
            eprintln!("warning: cannot drop the database {database}: {e}");
        }
        if let Err(e) = delete_topology(&args.amqp, &prefix).await {
            eprintln!("warning: cannot delete the RabbitMQ topology {prefix}.*: {e:#}");
        }
    }
    let mut report = outcome?;
    report["topology"] = json!(match args.topology {
        Topology::A => "a: SQLite + in-process bus",
        Topology::B => "b: PostgreSQL + RabbitMQ",
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Starts Bazaar with `env` on `port`, its logs in `log`, sets up a product and a customer,
/// places the orders; the report.
async fn run(args: &Args, env: &[(&str, String)], port: u16, log: &std::path::Path) -> anyhow::Result<Value> {
    let mut create_admin = tokio::process::Command::new(&args.bazaar);
    create_admin
        .args(["users", "create-admin", "--email", "bench@example.com"])
        .env("BAZAAR_ADMIN_PASSWORD", PASSWORD)
        .env_remove("RUST_LOG")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null());
    if !create_admin.status().await.context("cannot run bazaar")?.success() {
        bail!("create-admin failed");
    }
    let log = std::fs::File::create(log)?;
    let mut serve = tokio::process::Command::new(&args.bazaar);
    serve
        .arg("serve")
        .env_remove("RUST_LOG")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    let mut server = serve.spawn()?;
    let pid = server.id().context("bazaar exited at once")?;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.clients).build()?;
    wait_until(|| async {
        let ready = client.get(format!("{base}/health/ready")).send().await;
        ready.is_ok_and(|r| r.status().is_success())
    })
    .await
    .context("bazaar did not become ready")?;
    if let Some(status) = server.try_wait()? {
        bail!("bazaar exited: {status}");
    }

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
        "paymentMethod": "pm_card_visa",
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
    // From here on the peak is the load's, not the set-up's (argon2 hashes 19 MiB per log-in).
    let peak_reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
    let cpu_before = (cpu_seconds("self"), cpu_seconds(&pid.to_string()));

    // Closed loop: each client places an order, waits until it is confirmed (polling gently, so
    // that the polls do not become the load), then places the next. The saga's latency is the
    // server's own `confirmedAt - createdAt`, read back after the run.
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.clients)
        .map(|_| {
            let (client, base, customer, order) = (client.clone(), base.clone(), customer.clone(), order.clone());
            tokio::spawn(async move {
                let (mut placed, mut polls) = (0usize, 0usize);
                while Instant::now() < deadline {
                    let id = place(&client, &base, &customer, &order).await?;
                    polls += wait_confirmed(&client, &base, &customer, &id).await?;
                    placed += 1;
                }
                anyhow::Ok((placed, polls))
            })
        })
        .collect();
    let (mut placed, mut polls) = (0, 0);
    for task in tasks {
        let (p, q) = task.await??;
        placed += p;
        polls += q;
    }
    let placing = started.elapsed();
    // What each order cost the server and this load generator, whatever else runs on the machine.
    let cpu_ms_per_order = |before: Option<f64>, after: Option<f64>| {
        Some(((after? - before?) * 1000.0 / placed.max(1) as f64 * 100.0).round() / 100.0)
    };
    let server_cpu = cpu_ms_per_order(cpu_before.1, cpu_seconds(&pid.to_string()));
    let client_cpu = cpu_ms_per_order(cpu_before.0, cpu_seconds("self"));
    let latencies = settled(&client, &base, &admin, args.warmup + 1 + placed).await?;
    let confirmed_by = latencies.iter().map(|(_, confirmed)| *confirmed).max().context("no orders")?;
    let first_created = latencies.iter().map(|(created, _)| *created).min().context("no orders")?;
    let mut durations: Vec<f64> = latencies
        .iter()
        .skip(args.warmup + 1)
        .map(|(created, confirmed)| (*confirmed - *created).num_microseconds().unwrap_or_default() as f64 / 1000.0)
        .collect();
    let peak_rss_kb = proc_status_kb(pid, "VmHWM");
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
        "pollsPerOrder": polls as f64 / placed.max(1) as f64,
        "serverCpuMsPerOrder": server_cpu,
        "loadGeneratorCpuMsPerOrder": client_cpu,
        "peakRssKb": peak_rss_kb,
        "peakRssSince": if peak_reset { "warm-up done" } else { "start (clear_refs refused)" },
    });
    Ok(report)
}

/// User + system CPU time of `/proc/<pid>` so far, in seconds (USER_HZ = 100 ticks a second).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`).
fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line[field.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// Deletes the queues and the exchange Bazaar declared under `prefix`.
async fn delete_topology(amqp: &str, prefix: &str) -> anyhow::Result<()> {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let settings = bazaar::Settings::load_with_overrides(
        std::path::Path::new("config"),
        bazaar::settings::Environment::Development,
        std::iter::empty(),
    )?;
    let consumers = bazaar::modules::all().iter().map(|m| (m.name().to_owned(), m.consumes())).collect::<Vec<_>>();
    let topology = bazaar::bus::Topology::new(prefix, consumers, &settings.bus.retry_policy());
    let connection = lapin::Connection::connect(amqp, lapin::ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    for queue in topology.queues() {
        channel.queue_delete(queue.into(), QueueDeleteOptions::default()).await?;
    }
    channel.exchange_delete(topology.exchange().into(), ExchangeDeleteOptions::default()).await?;
    connection.close(200, "done".into()).await?;
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

/// Polls the order until it is confirmed: after 2 ms, then backing off to every 20 ms. Returns
/// how many polls it took.
async fn wait_confirmed(client: &reqwest::Client, base: &str, token: &str, id: &str) -> anyhow::Result<usize> {
    let (mut pause, mut polls) = (Duration::from_millis(2), 0);
    loop {
        polls += 1;
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
            Some("confirmed") => return Ok(polls),
            Some("pending" | "awaiting_payment") => pause = (pause * 2).min(Duration::from_millis(20)),
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
