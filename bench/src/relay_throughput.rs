//! Outbox relay throughput to RabbitMQ with publisher confirms, against raw lapin publishing the
//! same messages with confirms, in the same run, on the same broker.
//!
//! - `raw`: one channel in confirm mode publishes the envelopes in batches of `--batch` (pipelined,
//!   then waits for the batch's confirms), as a hand-written publisher would.
//! - `relay`: the envelopes sit committed in a module's outbox (SQLite file); Bazaar's relay reads
//!   them in batches of `--batch`, publishes them through `RabbitMqBus` and marks them sent.
//!
//! Rounds alternate raw/relay; medians are reported as JSON. The messages go to a queue of a
//! prefix of the run's own that nothing consumes; the topology is deleted at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bazaar::bus::{RabbitMqBus, RabbitMqConfig, Topology};
use catalog_contracts::ProductDiscontinued;
use clap::Parser;
use contracts::IntegrationEvent;
use kernel::bus::RetryPolicy;
use kernel::outbox::Relay;
use kernel::{Envelope, EventBus, Outbox};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp: String,
    /// Events per round.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Rounds of each kind.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Relay batch size (`outbox.batch_size`) and raw publisher batch.
    #[arg(long, default_value_t = 100)]
    batch: usize,
}

const MODULE: &str = "catalog";
const SINK: &str = "sink";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let prefix = format!("bazaar-bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let policy = RetryPolicy::default();
    let topology = Topology::new(&prefix, [(SINK.to_owned(), vec![ProductDiscontinued::event_type()])], &policy);
    let config = RabbitMqConfig {
        url: args.amqp.clone().into(),
        prefetch: 64,
        confirm_timeout: Duration::from_secs(30),
        reconnect_max_delay: Duration::from_secs(1),
        policy,
    };
    let bus = Arc::new(RabbitMqBus::new(config, topology.clone()));
    let shutdown = CancellationToken::new();
    let running = bus.clone();
    let token = shutdown.clone();
    tokio::spawn(async move { running.run(token).await });
    let deadline = Instant::now() + Duration::from_secs(10);
    while bus.check().await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "RabbitMQ at {} is unreachable", args.amqp);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let connection = Connection::connect(&args.amqp, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    let dir = tempfile::tempdir()?;
    let (mut raw, mut relay) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let envelopes: Vec<Envelope> = (0..args.events).map(|i| event(round, i)).collect();
        raw.push(raw_rate(&connection, &topology, &envelopes, args.batch).await?);
        purge(&channel, &topology).await?;
        let envelopes: Vec<Envelope> = (0..args.events).map(|i| event(round, i)).collect();
        relay.push(relay_rate(dir.path(), round, bus.clone(), &envelopes, args.batch as u64).await?);
        purge(&channel, &topology).await?;
        eprintln!("round {round}: raw {:.0}/s, relay {:.0}/s", raw[round], relay[round]);
    }
    for queue in topology.queues() {
        channel.queue_delete(queue.into(), QueueDeleteOptions::default()).await?;
    }
    channel.exchange_delete(topology.exchange().into(), ExchangeDeleteOptions::default()).await?;
    shutdown.cancel();

    let (raw_rounds, relay_rounds) = (raw.clone(), relay.clone());
    let (raw, relay) = (median(raw), median(relay));
    let report = serde_json::json!({
        "figure": "outbox relay → RabbitMQ with publisher confirms",
        "events": args.events,
        "rounds": args.rounds,
        "batch": args.batch,
        "rawLapinPerSecond": raw.round(),
        "relayPerSecond": relay.round(),
        "ratio": (relay / raw * 100.0).round() / 100.0,
        "target": 0.7,
        "met": relay / raw >= 0.7,
        "rawLapinRounds": raw_rounds,
        "relayRounds": relay_rounds,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn event(round: usize, i: usize) -> Envelope {
    let event = ProductDiscontinued { product_id: uuid::Uuid::now_v7(), sku: format!("BENCH-{round}-{i}"), version: 1 };
    Envelope::new(&event).expect("an envelope")
}

/// Publishes `envelopes` with confirms, `batch` at a time; returns messages per second.
async fn raw_rate(
    connection: &Connection,
    topology: &Topology,
    envelopes: &[Envelope],
    batch: usize,
) -> anyhow::Result<f64> {
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let exchange = topology.exchange();
    let start = Instant::now();
    for chunk in envelopes.chunks(batch) {
        let mut confirms = Vec::with_capacity(chunk.len());
        for envelope in chunk {
            let payload = serde_json::to_vec(envelope)?;
            let mut headers = FieldTable::default();
            headers.insert("event".into(), AMQPValue::LongString(envelope.event.as_str().into()));
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_message_id(envelope.id.to_string().into())
                .with_headers(headers);
            let options = BasicPublishOptions { mandatory: true, ..Default::default() };
            confirms.push(
                channel
                    .basic_publish(
                        exchange.as_str().into(),
                        envelope.routing_key().into(),
                        options,
                        &payload,
                        properties,
                    )
                    .await?,
            );
        }
        for confirm in confirms {
            anyhow::ensure!(matches!(confirm.await?, lapin::Confirmation::Ack(None)), "a publish was refused");
        }
    }
    let rate = envelopes.len() as f64 / start.elapsed().as_secs_f64();
    channel.close(200, "done".into()).await?;
    Ok(rate)
}

/// Commits `envelopes` to an outbox, then times the relay draining it; returns messages per second.
async fn relay_rate(
    dir: &std::path::Path,
    round: usize,
    bus: Arc<RabbitMqBus>,
    envelopes: &[Envelope],
    batch: u64,
) -> anyhow::Result<f64> {
    let url = format!("sqlite://{}/relay-{round}.db?mode=rwc", dir.display());
    let db = kernel::db::connect(&url, 5).await?;
    let manager = migrations_kernel::SchemaManager::new(&db);
    migrations_kernel::MigrationTrait::up(&migrations_kernel::KernelTables::new(MODULE), &manager)
        .await
        .context("kernel tables")?;
    let outbox = Outbox::new(MODULE, db.clone());
    for chunk in envelopes.chunks(1000) {
        let txn = kernel::db::begin_write(&db).await?;
        for envelope in chunk {
            outbox.enqueue(&txn, envelope).await?;
        }
        txn.commit().await?;
    }
    let shutdown = CancellationToken::new();
    let start = Instant::now();
    tokio::spawn(
        Relay::new(outbox.clone(), bus as Arc<dyn EventBus>, batch, Duration::from_millis(50)).run(shutdown.clone()),
    );
    while outbox.pending().await? > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = envelopes.len() as f64 / start.elapsed().as_secs_f64();
    shutdown.cancel();
    Ok(rate)
}

async fn purge(channel: &lapin::Channel, topology: &Topology) -> anyhow::Result<()> {
    channel.queue_purge(topology.queue(SINK).into(), QueuePurgeOptions::default()).await?;
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
