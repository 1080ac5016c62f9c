//! The baseline: a raw chain of five confirmed hops, one message per payment, with the same
//! client library (lapin) and the same external contract as the pipeline, minus the database
//! and minus batching.
//!
//! ```text
//! POS ─▶ pay.requests ─▶ chain.1 ─▶ hop 1 ─▶ chain.2 ─▶ … ─▶ chain.5 ─▶ hop 5 ─▶ pay.results ─▶ pos.<m>.<t>
//! ```
//! `chain.1`…`chain.5` are durable quorum queues, like the pipeline's stage queues; each hop
//! consumes one with the pipeline's prefetch, publishes every message on (persistent,
//! `mandatory`, confirmed) and acks it once the broker has confirmed the copy. Hops pipeline
//! their messages (many publishes awaiting confirms at once), which is the best a per-message
//! design can do. The last hop echoes the request to the terminal's result queue, so the very
//! same load generator drives the chain and the pipeline.

use super::children::{wait_consumers, Children};
use super::env::{close, fill_broker_counts, postgres_version, rabbit_version, BenchEnv};
use super::load::{self, LoadOptions};
use super::{
    base_report, codes_needed, fail, fill_from_load, finish, interrupted, log_path, mode_of, seed,
    terminal_specs, BenchArgs, BenchError,
};
use campuspay::auth::JwtKeys;
use campuspay::broker::connection::{connect, connect_retrying};
use campuspay::broker::topology::{REQUESTS, RESULTS};
use campuspay::broker::BrokerError;
use campuspay::config::Config;
use campuspay::domain::PaymentCode;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, ExchangeKind};
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::watch;

/// Hops of the standard baseline (the pipeline has five stages).
pub const HOPS: usize = 5;

pub fn queue(hop: usize) -> String {
    format!("chain.{hop}")
}

/// Declares the chain's exchanges, `hops` queues and the binding of `chain.1` to POS scans.
pub async fn declare(channel: &Channel, hops: usize) -> Result<(), BrokerError> {
    for exchange in [REQUESTS, RESULTS] {
        channel
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
    }
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    for hop in 1..=hops {
        channel
            .queue_declare(
                queue(hop).as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                args.clone(),
            )
            .await?;
    }
    channel
        .queue_bind(
            queue(1).as_str().into(),
            REQUESTS.into(),
            "pos.*.*.scan".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// Where hop `hop` sends a message, and with which properties. Hop 1 remembers the terminal's
/// result key (from the POS routing key `pos.<m>.<t>.scan`) in `reply_to`; the others pass the
/// properties on; the last hop publishes to `pay.results` under that key.
fn next(
    hop: usize,
    hops: usize,
    d: &lapin::message::Delivery,
) -> (String, String, BasicProperties) {
    if hop == 1 && hops > 1 {
        let rk = d.routing_key.as_str();
        let result_key = rk.strip_suffix(".scan").unwrap_or(rk);
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_reply_to(result_key.into());
        (String::new(), queue(2), props)
    } else if hop < hops {
        (String::new(), queue(hop + 1), d.properties.clone())
    } else if hops == 1 {
        let rk = d.routing_key.as_str();
        let key = rk.strip_suffix(".scan").unwrap_or(rk).to_owned();
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into());
        (RESULTS.to_owned(), key, props)
    } else {
        let key = d
            .properties
            .reply_to()
            .as_ref()
            .map(|k| k.to_string())
            .unwrap_or_default();
        (RESULTS.to_owned(), key, d.properties.clone())
    }
}

/// One hop until `shutdown` turns true or the connection fails.
async fn hop(
    amqp_url: String,
    hop: usize,
    hops: usize,
    prefetch: u16,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), BrokerError> {
    let conn = connect(&amqp_url, &format!("campuspay bench chain hop {hop}")).await?;
    let consume = conn.create_channel().await?;
    consume
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let publish = conn.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut consumer = consume
        .basic_consume(
            queue(hop).as_str().into(),
            format!("chain-hop-{hop}").as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut in_flight = FuturesUnordered::new();
    loop {
        tokio::select! {
            d = consumer.next() => {
                let d = match d {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err(BrokerError::ConsumerClosed),
                };
                let (exchange, key, props) = next(hop, hops, &d);
                let confirm = publish
                    .basic_publish(
                        exchange.as_str().into(),
                        key.as_str().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        &d.data,
                        props,
                    )
                    .await?;
                in_flight.push(confirm.then(move |c| async move {
                    match c {
                        Ok(Confirmation::Ack(None)) => {
                            d.acker.ack(BasicAckOptions::default()).await
                        }
                        other => {
                            let why = match other {
                                Ok(Confirmation::Ack(Some(r))) => format!("returned: {}", r.reply_text),
                                Ok(Confirmation::Nack(_)) => "nacked".to_owned(),
                                Ok(Confirmation::NotRequested) => "not in confirm mode".to_owned(),
                                Ok(Confirmation::Ack(None)) => "acked".to_owned(),
                                Err(e) => e.to_string(),
                            };
                            log::warn!("chain hop {hop}: publish not confirmed ({why}); requeueing");
                            d.acker
                                .nack(BasicNackOptions {
                                    requeue: true,
                                    ..BasicNackOptions::default()
                                })
                                .await
                        }
                    }
                }));
            }
            Some(acked) = in_flight.next(), if !in_flight.is_empty() => {
                acked?;
            }
            _ = shutdown.changed() => {
                while let Some(acked) = in_flight.next().await {
                    acked?;
                }
                super::env::close(conn, &[consume, publish]).await;
                return Ok(());
            }
        }
    }
}

/// Runs the hops (each with its own connection, like the pipeline's stage consumers) until
/// `shutdown` turns true.
pub async fn run_hops(amqp_url: &str, hops: usize, prefetch: u16, shutdown: watch::Receiver<bool>) {
    let tasks: Vec<_> = (1..=hops)
        .map(|h| {
            let (url, rx) = (amqp_url.to_owned(), shutdown.clone());
            tokio::spawn(async move {
                if let Err(e) = hop(url, h, hops, prefetch, rx).await {
                    log::error!("chain hop {h} stopped: {e}");
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

pub(super) async fn chain_worker(config: &Config, hops: usize) -> Result<ExitCode, BenchError> {
    let (tx, rx) = watch::channel(false);
    let hops = actix_rt::spawn({
        let url = config.amqp_url.clone();
        let prefetch = config.prefetch;
        async move { run_hops(&url, hops, prefetch, rx).await }
    });
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(fail)?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    let _ = tx.send(true);
    let _ = hops.await;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn bench_chain(
    args: &BenchArgs,
    config: &Config,
    stop: watch::Receiver<bool>,
) -> Result<ExitCode, BenchError> {
    let mode = mode_of(args);
    let mut env = BenchEnv::create(config, false, true, args.keep).await?;
    let conn = connect_retrying(&env.amqp_url, "campuspay bench setup", 5).await?;
    let ch = conn.create_channel().await?;
    let hops = args.chain_hops.max(1);
    declare(&ch, hops).await?;
    close(conn, &[ch]).await;
    let terminals: Vec<(String, String)> = (0..args.terminals)
        .map(|i| {
            (
                seed::merchant_id(i % args.merchants.max(1)),
                seed::terminal_id(i),
            )
        })
        .collect();
    let jwt = JwtKeys::new(&config.keys);
    let specs = terminal_specs(&terminals, &jwt)?;
    let n = codes_needed(args);
    let codes: Vec<String> = {
        let mut rng = rand::thread_rng();
        (0..n)
            .map(|_| {
                PaymentCode::generate(&mut rng, config.code_prefix)
                    .expose()
                    .to_owned()
            })
            .collect()
    };
    let mut children = Children { procs: Vec::new() };
    let hops_arg = hops.to_string();
    children.spawn(
        &["bench", "--chain-worker", "--chain-hops", &hops_arg],
        &[("AMQP_URL", env.amqp_url.as_str())],
        &log_path(args, &env.name, "chain-worker"),
    )?;
    let queues: Vec<String> = (1..=hops).map(queue).collect();
    let outcome = async {
        wait_consumers(&env.amqp_url, &queues, &mut children, &stop).await?;
        // Only the standard five-hop chain is the baseline the targets are stated against.
        let kind = if hops == HOPS {
            "chain".to_owned()
        } else {
            format!("chain-{hops}-hops")
        };
        let mut report = base_report(args, &kind, mode);
        report.terminals = Some(args.terminals);
        report.workers = Some(1);
        report.prefetch = Some(config.prefetch);
        report.pos_connections = Some(args.pos_connections.unwrap_or(args.terminals));
        report.machine.rabbitmq = rabbit_version(&env).await;
        report.machine.postgres = postgres_version(env.admin_db_url.clone()).await;
        let res = load::run(
            LoadOptions {
                amqp_url: env.amqp_url.clone(),
                terminals: specs,
                codes,
                mode,
                warmup: Duration::from_secs(args.warmup),
                duration: Duration::from_secs(args.duration),
                timeout: Duration::from_secs(args.timeout),
                connections: args.pos_connections.unwrap_or(args.terminals),
                max_in_flight: 200_000,
                worker_pids: children.pids(),
                management: (!args.no_queue_stats).then(|| (env.mgmt.clone(), env.name.clone())),
                label: "chain".into(),
                metrics_urls: Vec::new(),
                warmed_up: None,
            },
            interrupted(stop.clone()),
        )
        .await
        .map_err(fail)?;
        fill_from_load(&mut report, &res, Duration::from_secs(args.timeout));
        if !res.interrupted {
            fill_broker_counts(&mut report, config, &env.name, res.samples.len()).await;
        }
        if hops != HOPS && args.label.is_none() {
            report.label = format!("chain ({hops} hops) {}", report.label.trim_start_matches("chain "));
        }
        report.notes.push(format!(
            "raw chain: {hops} durable quorum queues, each hop publishes every message on (persistent, mandatory, confirmed) and acks after the confirm; no database, no batching"
        ));
        Ok::<_, BenchError>(report)
    }
    .await;
    children.stop(Duration::from_secs(10));
    env.cleanup();
    finish(&outcome?, args)
}
