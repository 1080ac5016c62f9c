//! A load generator of POS terminals that behave like real ones under faults: each terminal
//! has its own connection and result queue, works through its customers one at a time, and when
//! it hears nothing (or loses its connection) it reconnects and sends the same request again —
//! same `request_id`, so a retry never moves money twice. Every result received is kept, so a
//! test can check that each request got exactly one final answer (possibly delivered more than
//! once, always identical).

use super::pos::Pos;
use super::SimError;
use crate::broker::connection::{connect, Backoff};
use crate::domain::{MerchantId, RequestId, TerminalId};
use crate::messages::external::ResultV1;
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Payment {
    pub request_id: RequestId,
    pub code: String,
    pub amount: String,
}

#[derive(Debug, Clone)]
pub struct Till {
    pub merchant: MerchantId,
    pub terminal: TerminalId,
    pub token: String,
    pub payments: Vec<Payment>,
}

#[derive(Debug, Clone)]
pub struct DriveOptions {
    /// How long a terminal waits for a result before it re-sends the request.
    pub result_timeout: Duration,
    /// The whole run gives up after this long (a bound on every loop).
    pub deadline: Duration,
    /// A pause between one customer's result and the next customer at the same till (a steady
    /// stream rather than a burst).
    pub pace: Duration,
}

#[derive(Debug, Default)]
pub struct DriveReport {
    /// Every result received for each request, raw, in arrival order.
    pub results: HashMap<RequestId, Vec<Vec<u8>>>,
    /// POS publish (first attempt) → first result, per request.
    pub latencies: Vec<Duration>,
    /// Requests that never got a result before the deadline.
    pub unanswered: Vec<RequestId>,
    /// Re-sends after a timeout or a lost connection.
    pub resends: usize,
    /// Results received, progress hook for callers.
    pub answered: usize,
}

impl DriveReport {
    /// The decided result of each request (the first received).
    pub fn finals(&self) -> HashMap<RequestId, ResultV1> {
        self.results
            .iter()
            .filter_map(|(id, raws)| {
                raws.first()
                    .and_then(|r| serde_json::from_slice(r).ok())
                    .map(|r| (*id, r))
            })
            .collect()
    }

    /// Requests whose results were not all identical (must be none).
    pub fn conflicting(&self) -> Vec<RequestId> {
        self.results
            .iter()
            .filter(|(_, raws)| raws.windows(2).any(|w| w[0] != w[1]))
            .map(|(id, _)| *id)
            .collect()
    }
}

struct TillRun {
    results: HashMap<RequestId, Vec<Vec<u8>>>,
    latencies: Vec<Duration>,
    unanswered: Vec<RequestId>,
    resends: usize,
}

async fn open(url: &str, till: &Till) -> Result<(lapin::Connection, Pos), SimError> {
    let conn = connect(
        url,
        &format!("campuspay load {}/{}", till.merchant, till.terminal),
    )
    .await?;
    let pos = Pos::open(
        &conn,
        &crate::broker::amqp_url::user(url),
        till.merchant.clone(),
        till.terminal.clone(),
        till.token.clone(),
    )
    .await?;
    Ok((conn, pos))
}

async fn run_till(url: String, till: Till, opts: DriveOptions, started: Instant) -> TillRun {
    let mut run = TillRun {
        results: HashMap::new(),
        latencies: Vec::new(),
        unanswered: Vec::new(),
        resends: 0,
    };
    let mut backoff = Backoff::new();
    let mut session: Option<(lapin::Connection, Pos)> = None;
    for (i, p) in till.payments.iter().enumerate() {
        if i > 0 && !opts.pace.is_zero() {
            tokio::time::sleep(opts.pace).await;
        }
        let first_sent = Instant::now();
        let mut attempt = 0usize;
        loop {
            if started.elapsed() > opts.deadline {
                run.unanswered.push(p.request_id);
                break;
            }
            if session.is_none() {
                match open(&url, &till).await {
                    Ok(s) => {
                        session = Some(s);
                        backoff.reset();
                    }
                    Err(e) => {
                        log::debug!(
                            "till {}/{} cannot connect: {e}",
                            till.merchant,
                            till.terminal
                        );
                        tokio::time::sleep(backoff.next_delay()).await;
                        continue;
                    }
                }
            }
            let Some((_, pos)) = session.as_mut() else {
                continue;
            };
            if attempt > 0 {
                run.resends += 1;
            }
            attempt += 1;
            if let Err(e) = pos.send_scan(p.request_id, &p.code, &p.amount).await {
                log::debug!(
                    "till {}/{}: send failed ({e}); reconnecting",
                    till.merchant,
                    till.terminal
                );
                session = None;
                continue;
            }
            match pos
                .results()
                .wait_raw(
                    crate::messages::external::RESULT_V1,
                    p.request_id,
                    opts.result_timeout,
                )
                .await
            {
                Ok(raw) => {
                    run.latencies.push(first_sent.elapsed());
                    run.results.entry(p.request_id).or_default().push(raw);
                    break;
                }
                Err(SimError::Timeout { .. }) => continue,
                Err(e) => {
                    log::debug!(
                        "till {}/{}: {e}; reconnecting",
                        till.merchant,
                        till.terminal
                    );
                    session = None;
                }
            }
        }
    }
    // Collect late duplicates (redeliveries after a fault) for the identity check.
    if let Some((conn, mut pos)) = session.take() {
        while let Ok(Some(raw)) = pos.results().next_message(Duration::from_millis(300)).await {
            if let Ok(r) = serde_json::from_slice::<ResultV1>(&raw) {
                run.results.entry(r.request_id).or_default().push(raw);
            }
        }
        let _ = conn.close(200, "done".into()).await;
    }
    run
}

/// Runs all tills concurrently until each has an answer for every payment (or the deadline).
pub async fn drive(amqp_url: &str, tills: Vec<Till>, opts: DriveOptions) -> DriveReport {
    let started = Instant::now();
    let runs = futures_util::future::join_all(
        tills
            .into_iter()
            .map(|t| run_till(amqp_url.to_owned(), t, opts.clone(), started)),
    )
    .await;
    let mut report = DriveReport::default();
    for r in runs {
        report.answered += r.results.len();
        for (id, mut raws) in r.results {
            report.results.entry(id).or_default().append(&mut raws);
        }
        report.latencies.extend(r.latencies);
        report.unanswered.extend(r.unanswered);
        report.resends += r.resends;
    }
    report
}
