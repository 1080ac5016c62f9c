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

use crate::broker::connection::connect;
use crate::broker::topology::{REQUESTS, RESULTS};
use crate::broker::BrokerError;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, ExchangeKind};
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
                super::close(conn, &[consume, publish]).await;
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
