//! Every benchmark in one run, each figure against its baseline measured in the same run, repeated
//! and reported as medians: one table on stdout, the same as JSON in `--out`.
//!
//! - catalog read: `wrk` on `GET /products/{id}` against Bazaar, then against `bare-catalog` on the
//!   same `catalog.db` with the same parameters (alternating which goes first);
//! - order saga: `saga-load` in topology a (SQLite, in-process bus) and b (PostgreSQL, RabbitMQ);
//! - relay: `relay-throughput` (the outbox relay against raw lapin, both with confirms);
//! - footprint: start-to-ready on a migrated data folder and idle memory (against `bare-catalog`),
//!   peak memory under the saga load, stripped binary size;
//! - report: a sales report over `--report-orders` orders seeded into `orders.db`, its wall time,
//!   and `wrk` on `GET /orders/{id}` while reports run against the same read when none does.
//!
//! `bench/run` builds the release binaries and runs this; see bench/README.md.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

#[derive(Parser)]
struct Args {
    /// Where the release binaries are.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Measurements of each figure; the table shows their median.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Only these parts (comma-separated): catalog, saga, relay, footprint, report.
    #[arg(long, value_delimiter = ',', default_value = "catalog,saga,relay,footprint,report")]
    only: Vec<String>,
    /// Products created through the API for the catalog read.
    #[arg(long, default_value_t = 1000)]
    products: usize,
    #[arg(long, default_value_t = 1)]
    wrk_threads: usize,
    #[arg(long, default_value_t = 32)]
    wrk_connections: usize,
    #[arg(long, default_value_t = 10)]
    wrk_seconds: u64,
    /// Bazaar's `telemetry.filter` in every measurement; unset, Bazaar's default (`info`: a line per
    /// refused or failed request, none per successful one; to a file in the data folder).
    /// `info,bazaar::http=debug` measures with an access log.
    #[arg(long)]
    log_filter: Option<String>,
    #[arg(long, default_value_t = 64)]
    saga_clients: usize,
    #[arg(long, default_value_t = 15)]
    saga_seconds: u64,
    #[arg(long, default_value_t = 20_000)]
    relay_events: usize,
    /// Confirmed orders seeded (SQL inserts) into the shop the report part reads.
    #[arg(long, default_value_t = 100_000)]
    report_orders: usize,
    /// wrk's connections on `GET /orders/{id}` in the report part (closed loop: fewer than the
    /// catalog read's 32, so that the idle figure is not already the machine's saturation).
    #[arg(long, default_value_t = 8)]
    report_connections: usize,
    /// Start-to-ready samples of each server.
    #[arg(long, default_value_t = 7)]
    ready_samples: usize,
    #[arg(long, env = "BENCH_POSTGRES", default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres: String,
    #[arg(long, env = "BENCH_AMQP", default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp: String,
    #[arg(long, default_value = "bench/results/latest.json")]
    out: PathBuf,
    /// Keep the shop's data folder here (a new folder) instead of a temporary one: for profiling.
    #[arg(long)]
    keep_data: Option<PathBuf>,
}

impl Args {
    fn runs(&self, part: &str) -> bool {
        self.only.iter().any(|p| p == part)
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
}

/// What a figure must reach.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "camelCase")]
enum Target {
    /// Bazaar ÷ baseline at least this (throughput).
    RatioAtLeast(f64),
    /// Bazaar ÷ baseline at most this (latency: the inverse of a throughput ratio).
    RatioAtMost(f64),
    /// Bazaar's own value at most this, in the figure's unit.
    AtMost(f64),
    /// Reported, no target.
    None,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Figure {
    name: String,
    unit: &'static str,
    /// The median of `bazaar_samples`.
    bazaar: f64,
    baseline_name: Option<&'static str>,
    baseline: Option<f64>,
    ratio: Option<f64>,
    target: Target,
    met: Option<bool>,
    bazaar_samples: Vec<f64>,
    baseline_samples: Vec<f64>,
    /// `/proc/loadavg` (1, 5, 15 min) when the figure's measurement began.
    load_average: [f64; 3],
}

impl Figure {
    fn new(
        name: impl Into<String>,
        unit: &'static str,
        bazaar: Vec<f64>,
        baseline: Option<(&'static str, Vec<f64>)>,
        target: Target,
        load_average: [f64; 3],
    ) -> Self {
        let value = median(&bazaar);
        let (baseline_name, baseline_samples) = baseline.map_or((None, Vec::new()), |(n, s)| (Some(n), s));
        let base = (!baseline_samples.is_empty()).then(|| median(&baseline_samples));
        let ratio = base.filter(|b| *b > 0.0).map(|b| value / b);
        let met = match target {
            Target::RatioAtLeast(t) => ratio.map(|r| r >= t),
            Target::RatioAtMost(t) => ratio.map(|r| r <= t),
            Target::AtMost(t) => Some(value <= t),
            Target::None => None,
        };
        Self {
            name: name.into(),
            unit,
            bazaar: value,
            baseline_name,
            baseline: base,
            ratio,
            target,
            met,
            bazaar_samples: bazaar,
            baseline_samples,
            load_average,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.repeats > 0 && args.ready_samples > 0, "--repeats and --ready-samples must be at least 1");
    for bin in ["bazaar", "bare-catalog", "saga-load", "relay-throughput"] {
        ensure!(args.bin(bin).is_file(), "{} is missing: build first (bench/run does)", args.bin(bin).display());
    }
    let started_at = chrono::Utc::now();
    let uptime_before = uptime();
    eprintln!("bench: {uptime_before}");
    let mut figures = Vec::new();

    if args.runs("footprint") {
        figures.push(binary_size(&args)?);
    }
    let needs_data = args.runs("catalog") || args.runs("footprint");
    let temporary = tempfile::tempdir()?;
    let data = match &args.keep_data {
        Some(dir) => {
            std::fs::create_dir(dir).with_context(|| format!("--keep-data {} must be a new folder", dir.display()))?;
            std::path::absolute(dir)?
        }
        None => temporary.path().to_owned(),
    };
    let ids = if needs_data { prepare_shop(&args, &data).await? } else { Vec::new() };
    if let Some(dir) = &args.keep_data {
        std::fs::write(dir.join("product-ids.txt"), ids.join("\n") + "\n")?;
    }
    if args.runs("footprint") {
        figures.extend(ready_and_idle(&args, &data, &ids).await?);
    }
    if args.runs("catalog") {
        figures.extend(catalog_read(&args, &data, &ids).await?);
    }
    if args.runs("saga") {
        figures.extend(saga(&args, args.runs("footprint")).await?);
    }
    if args.runs("relay") {
        figures.push(relay(&args).await?);
    }
    if args.runs("report") {
        figures.extend(report(&args).await?);
    }

    let uptime_after = uptime();
    println!("{}", table(&figures));
    println!("before: {uptime_before}\nafter:  {uptime_after}");
    let report = json!({
        "startedAt": started_at,
        "finishedAt": chrono::Utc::now(),
        "machine": machine(),
        "uptimeBefore": uptime_before,
        "uptimeAfter": uptime_after,
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "repeats": args.repeats,
        "figures": figures,
    });
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)? + "\n")?;
    eprintln!("bench: written to {}", args.out.display());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A server started for a measurement.
struct Server {
    child: Child,
    pid: u32,
    port: u16,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits until `GET /health/ready` answers 200.
    async fn wait_ready(&mut self, client: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(self.url("/health/ready")).send().await
                && r.status() == reqwest::StatusCode::OK
            {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("the server exited ({status}) before it was ready");
            }
            ensure!(Instant::now() < deadline, "the server was not ready within 60 s");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// An access token of the admin the bench created (`ADMIN`, `PASSWORD`).
    async fn admin_token(&self, client: &reqwest::Client) -> anyhow::Result<String> {
        let tokens: Value = client
            .post(self.url("/auth/token"))
            .json(&json!({"email": ADMIN, "password": PASSWORD}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(tokens["accessToken"].as_str().context("an access token")?.to_owned())
    }

    fn status_kb(&self, field: &str) -> anyhow::Result<f64> {
        proc_status_kb(self.pid, field).with_context(|| format!("no {field} for pid {}", self.pid))
    }

    /// SIGTERM, then SIGKILL if it has not stopped within 15 s.
    async fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status().await;
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await.is_err() {
            self.child.kill().await?;
        }
        Ok(())
    }
}

/// A port nobody listens on now.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Bazaar's environment in the default topology, its data in `dir`.
fn bazaar_command(args: &Args, dir: &Path, port: u16) -> Command {
    let mut cmd = Command::new(args.bin("bazaar"));
    cmd.env("BAZAAR_ENV", "development")
        .env("BAZAAR__DATABASE__URL", format!("sqlite://{}/{{module}}.db?mode=rwc", dir.display()))
        .env("BAZAAR__AUTH__SIGNING_KEY_FILE", dir.join("key.pem"))
        .env("BAZAAR__SERVER__PORT", port.to_string())
        .env("BAZAAR__TELEMETRY__FORMAT", "json")
        .env("BAZAAR__USERS__FAILED_LOGINS_PER_MINUTE_PER_ADDRESS", "100000")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(filter) = &args.log_filter {
        cmd.env("BAZAAR__TELEMETRY__FILTER", filter);
    }
    cmd
}

/// Bazaar's effective pool size and HTTP workers (`bazaar config`): what `bare-catalog` gets too.
async fn bazaar_pool_and_workers(args: &Args, dir: &Path) -> anyhow::Result<(u64, u64)> {
    let output = bazaar_command(args, dir, 0).arg("config").output().await.context("cannot run bazaar config")?;
    ensure!(output.status.success(), "bazaar config failed");
    let config: Value = serde_json::from_slice(&output.stdout).context("bazaar config's JSON")?;
    let pool = config.pointer("/database/max_connections").and_then(Value::as_u64).context("max_connections")?;
    let workers = config.pointer("/server/workers").and_then(Value::as_u64).context("server.workers")?;
    Ok((pool, workers))
}

/// Starts `bazaar serve` on `dir`; its log lines are appended to `dir/bazaar.log`.
fn start_bazaar(args: &Args, dir: &Path, configure: impl FnOnce(&mut Command)) -> anyhow::Result<Server> {
    let port = free_port()?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("bazaar.log"))?;
    let mut cmd = bazaar_command(args, dir, port);
    cmd.arg("serve").stdout(log.try_clone()?).stderr(log);
    configure(&mut cmd);
    let child = cmd.spawn().context("cannot start bazaar")?;
    let pid = child.id().context("bazaar exited at once")?;
    Ok(Server { child, pid, port })
}

/// Starts `bare-catalog` on the catalog file in `dir`, with Bazaar's pool size and workers.
fn start_bare(args: &Args, dir: &Path, (pool, workers): (u64, u64)) -> anyhow::Result<Server> {
    let port = free_port()?;
    let child = Command::new(args.bin("bare-catalog"))
        .arg("--database-url")
        .arg(format!("sqlite://{}/catalog.db?mode=rwc", dir.display()))
        .args(["--port", &port.to_string()])
        .args(["--max-connections", &pool.to_string(), "--workers", &workers.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start bare-catalog")?;
    let pid = child.id().context("bare-catalog exited at once")?;
    Ok(Server { child, pid, port })
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?)
}

// ---------------------------------------------------------------------------------------------
// The shop's data

const ADMIN: &str = "bench@example.com";
const PASSWORD: &str = "a long benchmark passphrase";

/// Creates an admin and `--products` products through the API in a fresh data folder; their ids.
async fn prepare_shop(args: &Args, dir: &Path) -> anyhow::Result<Vec<String>> {
    eprintln!("bench: creating {} products through the API", args.products);
    let created = bazaar_command(args, dir, 0)
        .args(["users", "create-admin", "--email", ADMIN])
        .env("BAZAAR_ADMIN_PASSWORD", PASSWORD)
        .stdout(Stdio::null())
        .status()
        .await
        .context("cannot run bazaar")?;
    ensure!(created.success(), "bazaar users create-admin failed");
    let mut server = start_bazaar(args, dir, |_| {})?;
    let client = client()?;
    server.wait_ready(&client).await?;
    let token = server.admin_token(&client).await?;
    let mut ids = Vec::with_capacity(args.products);
    for i in 0..args.products {
        let product: Value = client
            .post(server.url("/products"))
            .bearer_auth(&token)
            .json(&json!({
                "sku": format!("BENCH-{i:05}"),
                "name": format!("Benchmark product {i}"),
                "description": "A product the catalog benchmark reads.",
                "price": {"amount": 1000 + i, "currency": "EUR"},
            }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        ids.push(product["id"].as_str().context("a product id")?.to_owned());
    }
    // Let the ProductCreated events reach inventory and orders, so that no background work is left.
    let last = ids.last().context("--products must be at least 1")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !client.get(server.url(&format!("/inventory/{last}"))).send().await?.status().is_success() {
        ensure!(Instant::now() < deadline, "inventory did not learn of the products within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await?;
    Ok(ids)
}

// ---------------------------------------------------------------------------------------------
// Catalog read

struct WrkResult {
    requests: f64,
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn catalog_read(args: &Args, dir: &Path, ids: &[String]) -> anyhow::Result<Vec<Figure>> {
    let script = dir.join("products.lua");
    std::fs::write(&script, wrk_script(ids))?;
    let load = load_average();
    let bare_config = bazaar_pool_and_workers(args, dir).await?;
    let (mut bazaar, mut bare) = (Vec::new(), Vec::new());
    for repeat in 0..args.repeats {
        // Alternate which goes first, so that a drift in the machine's load favours neither.
        let order: [bool; 2] = if repeat % 2 == 0 { [true, false] } else { [false, true] };
        for is_bazaar in order {
            let client = client()?;
            let mut server =
                if is_bazaar { start_bazaar(args, dir, |_| {})? } else { start_bare(args, dir, bare_config)? };
            server.wait_ready(&client).await?;
            let warm = wrk(args, &server, &script, 2).await?; // pools, caches, allocator
            ensure!(warm.requests_per_second > 0.0, "no requests served during the warm-up");
            let cpu_before = cpu_seconds(server.pid)?;
            let result = wrk(args, &server, &script, args.wrk_seconds).await?;
            let cpu_us = (cpu_seconds(server.pid)? - cpu_before) * 1e6 / result.requests.max(1.0);
            server.stop().await?;
            let who = if is_bazaar { "bazaar" } else { "bare-catalog" };
            eprintln!(
                "bench: catalog read, repeat {}: {who} {:.0} req/s, p99 {:.2} ms, {cpu_us:.0} µs CPU/request ({})",
                repeat + 1,
                result.requests_per_second,
                result.p99_ms,
                uptime()
            );
            if is_bazaar { &mut bazaar } else { &mut bare }.push((result, cpu_us));
        }
    }
    let rps = |v: &[(WrkResult, f64)]| v.iter().map(|(r, _)| r.requests_per_second).collect::<Vec<_>>();
    let p99 = |v: &[(WrkResult, f64)]| v.iter().map(|(r, _)| r.p99_ms).collect::<Vec<_>>();
    let cpu = |v: &[(WrkResult, f64)]| v.iter().map(|(_, c)| *c).collect::<Vec<_>>();
    Ok(vec![
        Figure::new(
            "catalog read GET /products/{id}: throughput",
            "req/s",
            rps(&bazaar),
            Some(("bare actix-web + sea-orm", rps(&bare))),
            Target::RatioAtLeast(0.8),
            load,
        ),
        Figure::new(
            "catalog read GET /products/{id}: p99",
            "ms",
            p99(&bazaar),
            Some(("bare actix-web + sea-orm", p99(&bare))),
            Target::RatioAtMost(1.25),
            load,
        ),
        // What the server spent per answer: the figure other processes on the machine disturb least.
        Figure::new(
            "catalog read GET /products/{id}: server CPU per request",
            "µs",
            cpu(&bazaar),
            Some(("bare actix-web + sea-orm", cpu(&bare))),
            Target::None,
            load,
        ),
    ])
}

/// User + system CPU time of a process so far (`/proc/<pid>/stat`, in USER_HZ = 100 ticks a second).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').context("a /proc stat line")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> { Ok(fields.get(i).context("utime/stime")?.parse::<f64>()?) };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// A wrk script that cycles through `ids`, its requests formatted once.
fn wrk_script(ids: &[String]) -> String {
    let list = ids.iter().map(|id| format!("\"{id}\"")).collect::<Vec<_>>().join(",\n");
    format!(
        "local ids = {{\n{list}\n}}\n\
         local requests = {{}}\n\
         local i = 0\n\
         init = function(args)\n\
         \x20 for n, id in ipairs(ids) do requests[n] = wrk.format(\"GET\", \"/products/\" .. id) end\n\
         end\n\
         request = function()\n\
         \x20 i = i % #requests + 1\n\
         \x20 return requests[i]\n\
         end\n"
    )
}

async fn wrk(args: &Args, server: &Server, script: &Path, seconds: u64) -> anyhow::Result<WrkResult> {
    wrk_with(args, args.wrk_connections, server, script, seconds).await
}

async fn wrk_with(
    args: &Args,
    connections: usize,
    server: &Server,
    script: &Path,
    seconds: u64,
) -> anyhow::Result<WrkResult> {
    let output = Command::new("wrk")
        .args(["--latency", "-t", &args.wrk_threads.to_string(), "-c", &connections.to_string()])
        .args(["-d", &format!("{seconds}s"), "-s"])
        .arg(script)
        .arg(server.url("/"))
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run wrk (bench/run installs it)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(output.status.success(), "wrk failed: {text}{}", String::from_utf8_lossy(&output.stderr));
    parse_wrk(&text).with_context(|| format!("cannot read wrk's report:\n{text}"))
}

fn parse_wrk(text: &str) -> anyhow::Result<WrkResult> {
    ensure!(!text.contains("Non-2xx or 3xx responses"), "some answers were not 200");
    ensure!(!text.contains("Socket errors"), "socket errors");
    let requests =
        text.lines().find_map(|l| l.trim().split_once(" requests in ")).context("no request count")?.0.parse()?;
    let requests_per_second =
        text.lines().find_map(|l| l.trim().strip_prefix("Requests/sec:")).context("no Requests/sec")?.trim().parse()?;
    let percentile = |p: &str| -> anyhow::Result<f64> {
        let value = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(p))
            .with_context(|| format!("no {p} latency (--latency)"))?
            .trim();
        let (number, unit) = value.split_at(value.find(|c: char| c.is_ascii_alphabetic()).context("a unit")?);
        let scale = match unit {
            "us" => 0.001,
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            other => bail!("unknown unit {other}"),
        };
        Ok(number.parse::<f64>()? * scale)
    };
    Ok(WrkResult { requests, requests_per_second, p50_ms: percentile("50%")?, p99_ms: percentile("99%")? })
}

// ---------------------------------------------------------------------------------------------
// Order saga

async fn saga(args: &Args, footprint: bool) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    // The targets are for 64 clients; one client (a) shows the saga's latency without queueing.
    let runs = [
        ("a", args.saga_clients, Target::AtMost(5.0), Target::AtMost(25.0)),
        ("a", 1, Target::None, Target::None),
        ("b", args.saga_clients, Target::None, Target::AtMost(60.0)),
    ];
    for (topology, clients, p50_target, p99_target) in runs {
        let load = load_average();
        let mut reports = Vec::new();
        for repeat in 0..args.repeats {
            let output = Command::new(args.bin("saga-load"))
                .arg("--bazaar")
                .arg(args.bin("bazaar"))
                .args(["--topology", topology, "--clients", &clients.to_string()])
                .args(["--seconds", &args.saga_seconds.to_string(), "--postgres", &args.postgres, "--amqp", &args.amqp])
                .args(args.log_filter.iter().flat_map(|filter| ["--log-filter", filter.as_str()]))
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()
                .await
                .context("cannot run saga-load")?;
            ensure!(output.status.success(), "saga-load --topology {topology} --clients {clients} failed");
            let report: Value = serde_json::from_slice(&output.stdout).context("saga-load's report")?;
            eprintln!(
                "bench: saga ({topology}) {clients} clients, repeat {}: p50 {:.1} ms, p99 {:.1} ms, {:.0} orders/s ({})",
                repeat + 1,
                report["confirmLatencyMs"]["p50"].as_f64().unwrap_or_default(),
                report["confirmLatencyMs"]["p99"].as_f64().unwrap_or_default(),
                report["ordersConfirmedPerSecond"].as_f64().unwrap_or_default(),
                uptime()
            );
            reports.push(report);
        }
        let field = |pointer: &str| -> anyhow::Result<Vec<f64>> {
            reports.iter().map(|r| r.pointer(pointer).and_then(Value::as_f64).context(pointer.to_owned())).collect()
        };
        let label = if topology == "a" { "(a) SQLite + in-process" } else { "(b) PostgreSQL + RabbitMQ" };
        let name =
            |what: &str| format!("order saga {label}, {clients} client{}: {what}", if clients == 1 { "" } else { "s" });
        figures.push(Figure::new(name("p50"), "ms", field("/confirmLatencyMs/p50")?, None, p50_target, load));
        figures.push(Figure::new(name("p99"), "ms", field("/confirmLatencyMs/p99")?, None, p99_target, load));
        figures.push(Figure::new(
            name("throughput"),
            "orders/s",
            field("/ordersConfirmedPerSecond")?,
            None,
            Target::None,
            load,
        ));
        // The server's CPU time per order: what bounds the throughput on a machine of two cores.
        let cpu = field("/serverCpuMsPerOrder")?;
        figures.push(Figure::new(name("server CPU per order"), "ms", cpu, None, Target::None, load));
        if footprint && clients > 1 {
            let peaks = field("/peakRssKb")?.into_iter().map(|kb| kb / 1024.0).collect();
            figures.push(Figure::new(
                format!("memory, peak under the saga {label}, {clients} clients (VmHWM)"),
                "MB",
                peaks,
                None,
                Target::None,
                load,
            ));
        }
    }
    Ok(figures)
}

// ---------------------------------------------------------------------------------------------
// Relay

async fn relay(args: &Args) -> anyhow::Result<Figure> {
    let load = load_average();
    let output = Command::new(args.bin("relay-throughput"))
        .args(["--amqp", &args.amqp, "--events", &args.relay_events.to_string()])
        .args(["--rounds", &args.repeats.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await
        .context("cannot run relay-throughput")?;
    ensure!(output.status.success(), "relay-throughput failed");
    let report: Value = serde_json::from_slice(&output.stdout).context("relay-throughput's report")?;
    let samples = |key: &str| -> anyhow::Result<Vec<f64>> {
        report[key].as_array().context(key.to_owned())?.iter().map(|v| v.as_f64().context("a rate")).collect()
    };
    Ok(Figure::new(
        "outbox relay → RabbitMQ, publisher confirms",
        "msg/s",
        samples("relayRounds")?,
        Some(("raw lapin with confirms", samples("rawLapinRounds")?)),
        Target::RatioAtLeast(0.7),
        load,
    ))
}

// ---------------------------------------------------------------------------------------------
// Footprint

/// The stripped size of a copy of each binary (the release profile strips already; this makes sure).
fn binary_size(args: &Args) -> anyhow::Result<Figure> {
    let load = load_average();
    let stripped = |name: &str| -> anyhow::Result<f64> {
        let copy = tempfile::NamedTempFile::new()?;
        let status = std::process::Command::new("strip")
            .arg("-o")
            .arg(copy.path())
            .arg(args.bin(name))
            .status()
            .context("cannot run strip (binutils)")?;
        ensure!(status.success(), "strip {name} failed");
        Ok(std::fs::metadata(copy.path())?.len() as f64 / 1_048_576.0)
    };
    Ok(Figure::new(
        "binary size, stripped",
        "MB",
        vec![stripped("bazaar")?],
        Some(("bare-catalog", vec![stripped("bare-catalog")?])),
        Target::AtMost(40.0),
        load,
    ))
}

/// Start-to-ready on the migrated data folder, and resident memory once idle after a few
/// requests, alternating Bazaar and `bare-catalog`.
async fn ready_and_idle(args: &Args, dir: &Path, ids: &[String]) -> anyhow::Result<Vec<Figure>> {
    let load = load_average();
    let (mut ready, mut bare_ready, mut idle, mut bare_idle) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut anon, mut bare_anon) = (Vec::new(), Vec::new());
    let bare_config = bazaar_pool_and_workers(args, dir).await?;
    let product = format!("/products/{}", ids.first().context("no products")?);
    for sample in 0..args.ready_samples {
        for is_bazaar in if sample % 2 == 0 { [true, false] } else { [false, true] } {
            // A fresh client: no connection is reused across servers.
            let client = client()?;
            let spawned = Instant::now();
            let mut server = if is_bazaar {
                // Migrations are behind us, as in production (`bazaar migrate` or a Job first).
                start_bazaar(args, dir, |cmd| {
                    cmd.env("BAZAAR__DATABASE__AUTO_MIGRATE", "false");
                })?
            } else {
                start_bare(args, dir, bare_config)?
            };
            server.wait_ready(&client).await?;
            let ms = spawned.elapsed().as_secs_f64() * 1000.0;
            for _ in 0..10 {
                client.get(server.url(&product)).send().await?.error_for_status()?;
            }
            if is_bazaar {
                client.get(server.url("/products?limit=20")).send().await?.error_for_status()?;
                client.get(server.url("/metrics")).send().await?.error_for_status()?;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            let rss = server.status_kb("VmRSS")? / 1024.0;
            let rss_anon = server.status_kb("RssAnon")? / 1024.0;
            server.stop().await?;
            if is_bazaar {
                ready.push(ms);
                idle.push(rss);
                anon.push(rss_anon);
            } else {
                bare_ready.push(ms);
                bare_idle.push(rss);
                bare_anon.push(rss_anon);
            }
        }
    }
    eprintln!("bench: start-to-ready bazaar {ready:.0?} ms, bare {bare_ready:.0?} ms ({})", uptime());
    Ok(vec![
        Figure::new(
            "start-to-ready, migrated data (first 200 of /health/ready)",
            "ms",
            ready,
            Some(("bare-catalog", bare_ready)),
            Target::AtMost(300.0),
            load,
        ),
        Figure::new(
            "memory, idle after start and a few requests (VmRSS)",
            "MB",
            idle,
            Some(("bare-catalog", bare_idle)),
            Target::AtMost(30.0),
            load,
        ),
        // VmRSS also counts the pages of the binary's file that are mapped: the rest is this.
        Figure::new(
            "memory, idle: anonymous part (RssAnon)",
            "MB",
            anon,
            Some(("bare-catalog", bare_anon)),
            Target::None,
            load,
        ),
    ])
}

// ---------------------------------------------------------------------------------------------
// Sales report

/// Orders seeded per INSERT: 500 orders (13 values each) and their lines (8 each, up to 3 a
/// order) stay under SQLite's 32 766 bound parameters.
const SEED_BATCH: usize = 500;

/// The report part: `--report-orders` sales seeded straight into `orders.db`, a sales report's wall
/// time by day and by product with nothing else running, then `wrk` on `GET /orders/{id}` (the
/// report's own database) with no report running, and again while reports by product run back to
/// back. Target: the read's p99 during the reports at most twice the idle one, every answer a 200.
async fn report(args: &Args) -> anyhow::Result<Vec<Figure>> {
    let dir = tempfile::tempdir()?;
    let created = bazaar_command(args, dir.path(), 0)
        .args(["users", "create-admin", "--email", ADMIN])
        .env("BAZAAR_ADMIN_PASSWORD", PASSWORD)
        .stdout(Stdio::null())
        .status()
        .await
        .context("cannot run bazaar")?;
    ensure!(created.success(), "bazaar users create-admin failed");
    let mut server = start_bazaar(args, dir.path(), |_| {})?;
    let client = client()?;
    server.wait_ready(&client).await?;
    let started = Instant::now();
    let ids = seed_orders(dir.path(), args.report_orders).await?;
    eprintln!("bench: {} orders seeded in {:.1} s ({})", ids.len(), started.elapsed().as_secs_f64(), uptime());
    let token = server.admin_token(&client).await?;
    let script = dir.path().join("orders.lua");
    std::fs::write(&script, orders_script(&ids[..ids.len().min(1000)], &token))?;
    let reports = Reports { client: client.clone(), base: server.url(""), token };

    let load = load_average();
    let (mut by_day, mut by_product, mut loaded_walls) = (Vec::new(), Vec::new(), Vec::new());
    let (mut idle, mut during) = (Vec::new(), Vec::new());
    for repeat in 0..args.repeats {
        by_day.push(reports.run("day").await?);
        by_product.push(reports.run("product").await?);
        let warm = wrk_with(args, args.report_connections, &server, &script, 2).await?;
        ensure!(warm.requests_per_second > 0.0, "no requests served during the warm-up");
        let alone = wrk_with(args, args.report_connections, &server, &script, args.wrk_seconds).await?;
        // Reports back to back for as long as wrk runs, and the one under way when it ends.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let running = tokio::spawn({
            let (reports, stop) = (reports.clone(), stop.clone());
            async move {
                let mut walls = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    walls.push(reports.run("product").await?);
                }
                anyhow::Ok(walls)
            }
        });
        // Let the first report start before the measurement does.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let loaded = wrk_with(args, args.report_connections, &server, &script, args.wrk_seconds).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let walls = running.await??;
        let loaded = loaded?;
        eprintln!(
            "bench: report, repeat {}: by day {:.2} s, by product {:.2} s alone; GET /orders/{{id}} p50/p99 {:.2}/{:.2} ms \
             {:.0} req/s idle, {:.2}/{:.2} ms {:.0} req/s during {} reports of {:.2?} s ({})",
            repeat + 1,
            by_day[repeat],
            by_product[repeat],
            alone.p50_ms,
            alone.p99_ms,
            alone.requests_per_second,
            loaded.p50_ms,
            loaded.p99_ms,
            loaded.requests_per_second,
            walls.len(),
            walls,
            uptime()
        );
        loaded_walls.extend(walls);
        idle.push(alone);
        during.push(loaded);
    }
    server.stop().await?;
    let n = args.report_orders;
    let read = format!("GET /orders/{{id}}, {} connections, during reports", args.report_connections);
    let of = |v: &[WrkResult], f: fn(&WrkResult) -> f64| v.iter().map(f).collect::<Vec<_>>();
    Ok(vec![
        Figure::new(format!("sales report, {n} orders, by day: wall time"), "s", by_day, None, Target::None, load),
        Figure::new(
            format!("sales report, {n} orders, by product: wall time"),
            "s",
            by_product,
            None,
            Target::None,
            load,
        ),
        Figure::new(
            format!("sales report, {n} orders, by product: wall time under the read load"),
            "s",
            loaded_walls,
            None,
            Target::None,
            load,
        ),
        Figure::new(
            format!("{read}: p50"),
            "ms",
            of(&during, |r| r.p50_ms),
            Some(("no report running", of(&idle, |r| r.p50_ms))),
            Target::None,
            load,
        ),
        Figure::new(
            format!("{read}: p99"),
            "ms",
            of(&during, |r| r.p99_ms),
            Some(("no report running", of(&idle, |r| r.p99_ms))),
            Target::RatioAtMost(2.0),
            load,
        ),
        Figure::new(
            format!("{read}: throughput"),
            "req/s",
            of(&during, |r| r.requests_per_second),
            Some(("no report running", of(&idle, |r| r.requests_per_second))),
            Target::None,
            load,
        ),
    ])
}

/// Asks a running Bazaar for sales reports as its admin.
#[derive(Clone)]
struct Reports {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Reports {
    /// Asks for a report over the last 366 days and waits until it is done; its wall time, in
    /// seconds, from the request to the first status read that shows it done (polled every 10 ms).
    async fn run(&self, group_by: &str) -> anyhow::Result<f64> {
        let today = chrono::Utc::now().date_naive();
        let from = today - chrono::Duration::days(365);
        let to = today + chrono::Duration::days(1);
        let started = Instant::now();
        let response = self
            .client
            .post(format!("{}/admin/reports/sales", self.base))
            .bearer_auth(&self.token)
            .json(&json!({"from": from.to_string(), "to": to.to_string(), "groupBy": group_by}))
            .send()
            .await?
            .error_for_status()?;
        let location = response.headers()["location"].to_str()?.to_owned();
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let report: Value = self
                .client
                .get(format!("{}{location}", self.base))
                .bearer_auth(&self.token)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            match report["status"].as_str() {
                Some("done") => {
                    ensure!(report["rowCount"].as_u64().is_some_and(|n| n > 0), "an empty report: {report}");
                    return Ok(started.elapsed().as_secs_f64());
                }
                Some("failed") => bail!("the report failed: {report}"),
                _ => {}
            }
            ensure!(Instant::now() < deadline, "the report was not done within 300 s: {report}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Writes `count` sales into the migrated `orders.db` in `dir`, in one transaction of multi-row
/// INSERTs: confirmed over the last 365 days, one to three lines of 50 products, one in twenty in
/// USD, one in ten cancelled (read and left out); their ids.
async fn seed_orders(dir: &Path, count: usize) -> anyhow::Result<Vec<uuid::Uuid>> {
    use sea_orm::sea_query::{Alias, Query};
    use sea_orm::{ConnectionTrait, TransactionTrait};

    let db = sea_orm::Database::connect(format!("sqlite://{}/orders.db?mode=rw", dir.display())).await?;
    let products: Vec<uuid::Uuid> = (0..50).map(|_| uuid::Uuid::new_v4()).collect();
    let now = chrono::Utc::now();
    let year = 365 * 86_400;
    let mut ids = Vec::with_capacity(count);
    let txn = db.begin().await?;
    for start in (0..count).step_by(SEED_BATCH) {
        let mut orders = Query::insert()
            .into_table(Alias::new("orders_orders"))
            .columns([
                "id",
                "user_id",
                "status",
                "ship_name",
                "ship_line1",
                "ship_city",
                "ship_postal_code",
                "ship_country",
                "total_amount",
                "currency",
                "created_at",
                "updated_at",
                "confirmed_at",
            ])
            .to_owned();
        let mut lines = Query::insert()
            .into_table(Alias::new("orders_lines"))
            .columns(["order_id", "line_no", "product_id", "sku", "name", "quantity", "unit_amount", "line_amount"])
            .to_owned();
        for i in start..(start + SEED_BATCH).min(count) {
            let id = uuid::Uuid::now_v7();
            let confirmed_at = now - chrono::Duration::seconds((i as i64 * 7919) % year);
            let created_at = confirmed_at - chrono::Duration::seconds(2);
            let status = match i % 10 {
                0 => "cancelled",
                1 | 2 => "shipped",
                3 | 4 => "delivered",
                _ => "confirmed",
            };
            let mut total = 0i64;
            for line in 0..1 + i % 3 {
                let p = (i * 7 + line * 13) % products.len();
                let (quantity, unit) = (1 + ((i + line) % 4) as i64, 500 + p as i64 * 25);
                total += quantity * unit;
                lines.values_panic([
                    id.into(),
                    (line as i32).into(),
                    products[p].into(),
                    format!("BENCH-{p:02}").into(),
                    format!("Benchmark product {p}, size M").into(),
                    (quantity as i32).into(),
                    unit.into(),
                    (quantity * unit).into(),
                ]);
            }
            orders.values_panic([
                id.into(),
                uuid::Uuid::new_v4().into(),
                status.into(),
                "Ada Lovelace".into(),
                "12 St James's Square".into(),
                "London".into(),
                "SW1Y 4JH".into(),
                "GB".into(),
                total.into(),
                if i % 20 == 0 { "USD" } else { "EUR" }.into(),
                created_at.into(),
                confirmed_at.into(),
                confirmed_at.into(),
            ]);
            ids.push(id);
        }
        txn.execute(&orders).await?;
        txn.execute(&lines).await?;
    }
    txn.commit().await?;
    db.close().await?;
    Ok(ids)
}

/// A wrk script that cycles through the orders `ids` with an admin's bearer `token`.
fn orders_script(ids: &[uuid::Uuid], token: &str) -> String {
    let list = ids.iter().map(|id| format!("\"{id}\"")).collect::<Vec<_>>().join(",\n");
    format!(
        "local ids = {{\n{list}\n}}\n\
         local requests = {{}}\n\
         local i = 0\n\
         init = function(args)\n\
         \x20 local headers = {{[\"Authorization\"] = \"Bearer {token}\"}}\n\
         \x20 for n, id in ipairs(ids) do requests[n] = wrk.format(\"GET\", \"/orders/\" .. id, headers) end\n\
         end\n\
         request = function()\n\
         \x20 i = i % #requests + 1\n\
         \x20 return requests[i]\n\
         end\n"
    )
}

// ---------------------------------------------------------------------------------------------
// Reporting

fn table(figures: &[Figure]) -> String {
    let rows: Vec<[String; 7]> = figures
        .iter()
        .map(|f| {
            let value = |v: f64| format!("{} {}", number(v), f.unit);
            [
                f.name.clone(),
                value(f.bazaar),
                f.baseline.map(value).unwrap_or_else(|| "—".into()),
                f.ratio.map(|r| format!("{r:.2}×")).unwrap_or_else(|| "—".into()),
                match f.target {
                    Target::RatioAtLeast(t) => format!("≥ {t}×"),
                    Target::RatioAtMost(t) => format!("≤ {t}×"),
                    Target::AtMost(t) => format!("≤ {} {}", number(t), f.unit),
                    Target::None => "—".into(),
                },
                match f.met {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => "—".into(),
                },
                format!("{:.2}", f.load_average[0]),
            ]
        })
        .collect();
    let header = ["figure", "Bazaar", "baseline", "ratio", "target", "met?", "load"];
    let mut out = format!("| {} |\n|{}\n", header.join(" | "), "---|".repeat(header.len()));
    for row in rows {
        out += &format!("| {} |\n", row.join(" | "));
    }
    out
}

/// Three significant digits, at least none after the point.
fn number(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn proc_status_kb(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line[field.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()
}

fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut fields = text.split_whitespace().map(|f| f.parse().unwrap_or(f64::NAN));
    [(); 3].map(|_| fields.next().unwrap_or(f64::NAN))
}

/// What `uptime` prints.
fn uptime() -> String {
    std::process::Command::new("uptime")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| format!("load average {:?}", load_average()))
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model =
        cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).map(|m| m.trim_start_matches([' ', '\t', ':']));
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("MemTotal:")).map(|v| v.trim().to_owned()));
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpuModel": model,
        "memory": memory,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    })
}
