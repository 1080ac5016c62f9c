//! The load generator: many POS terminals, each with its own result queue and (by default) its
//! own AMQP connection, publishing real `scan.v1` requests (persistent, `mandatory`, confirmed,
//! with the terminal's JWT) to `pay.requests` and reading `result.v1` from `pos.<m>.<t>`.
//!
//! Open loop (`Mode::Open`): a scheduler issues payment *i* at `start + i / rate` whatever
//! happened to earlier ones, and latency is measured from that intended send time to the
//! result at the POS, so a backlog in the load generator itself is not hidden (no coordinated
//! omission). Closed loop (`Mode::Closed`): a fixed number of payments is kept in flight; a
//! new one leaves as soon as a result (or a timeout) frees a slot.
//!
//! Sending and receiving never wait for each other: a terminal's sender pipelines publishes and
//! confirms, its receiver acks results in bulk (`multiple`) whenever the queue momentarily runs
//! dry, the way an efficient POS client would.

use super::scrape::{scrape, Metrics};
use super::seed::MAX_AMOUNT_FEN;
use super::sys::{self, CpuReport, RssReport};
use campuspay::admin::management::Management;
use campuspay::broker::connection::connect;
use campuspay::broker::topology::{provision_result_queue, REQUESTS};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Open { rate: f64 },
    Closed { in_flight: usize },
}

#[derive(Debug, Clone)]
pub struct TerminalSpec {
    pub merchant: String,
    pub terminal: String,
    pub token: String,
}

pub struct LoadOptions {
    pub amqp_url: String,
    pub terminals: Vec<TerminalSpec>,
    pub codes: Vec<String>,
    pub mode: Mode,
    pub warmup: Duration,
    pub duration: Duration,
    /// A payment without a result after this long counts as timed out.
    pub timeout: Duration,
    /// AMQP connections shared by the terminals (round-robin); `terminals.len()` = one each.
    pub connections: usize,
    /// Open loop only: beyond this many in flight, scheduled payments are skipped (counted).
    pub max_in_flight: usize,
    /// Processes whose CPU counts as "worker" and whose memory is sampled.
    pub worker_pids: Vec<u32>,
    /// Queue depths are sampled from the management API when set.
    pub management: Option<(Management, String)>,
    /// Prefix of progress lines.
    pub label: String,
    /// The workers' `/metrics` URLs, scraped when the warm-up ends and when sending ends.
    pub metrics_urls: Vec<String>,
    /// Fired when the warm-up ends.
    pub warmed_up: Option<tokio::sync::oneshot::Sender<()>>,
}

/// One answered payment.
#[derive(Debug, Clone)]
pub struct Sample {
    pub request_id: Uuid,
    /// Intended (open loop) or actual (closed loop) send time, seconds since the start.
    pub sent: f64,
    pub latency_us: u32,
    /// `approved`, `declined:<reason>`, `chain_ok` (baseline echo) or `other:<type>`.
    pub outcome: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct QueueDepth {
    pub max: u64,
    pub mean: f64,
}

#[derive(Debug, Default)]
pub struct LoadResult {
    pub samples: Vec<Sample>,
    /// Payments handed to a terminal (published or being published).
    pub sent: u64,
    pub timeouts: u64,
    /// Send offsets (seconds since the start) of the payments that timed out.
    pub timed_out_sent: Vec<f64>,
    pub publish_errors: u64,
    /// Open loop: scheduled but skipped because too many were in flight.
    pub not_sent: u64,
    pub out_of_codes: bool,
    /// Results for requests no longer pending (after a timeout, or duplicates).
    pub late_or_duplicate: u64,
    pub interrupted: bool,
    /// Open loop: how late the scheduler handed payments out (p99, ms).
    pub scheduler_lag_p99_ms: Option<f64>,
    /// Payments handed out per second since the start.
    pub sent_per_second: Vec<u64>,
    pub in_flight_per_second: Vec<u64>,
    pub cpu: Option<CpuReport>,
    pub rss: Option<RssReport>,
    pub queues: BTreeMap<String, QueueDepth>,
    /// Wall-clock time of the start (offsets in samples are relative to it).
    pub started_wall: Option<SystemTime>,
    /// Worker metrics at the end of the warm-up and at the end of sending (summed over workers).
    pub metrics: Option<(Metrics, Metrics)>,
}

struct Pending {
    t0: Instant,
    /// Closed loop: the slot this payment holds until it is answered.
    _permit: Option<OwnedSemaphorePermit>,
}

struct Term {
    merchant: String,
    terminal: String,
    routing_key: String,
    authorization: String,
    broker_user: String,
    pending: Mutex<HashMap<Uuid, Pending>>,
}

struct Job {
    id: Uuid,
    code: String,
    amount_fen: u32,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    in_flight: AtomicI64,
    publish_errors: AtomicU64,
    timeouts: AtomicU64,
    late: AtomicU64,
    not_sent: AtomicU64,
    out_of_codes: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Term {
    fn take(&self, id: &Uuid) -> Option<Pending> {
        lock(&self.pending).remove(id)
    }
}

fn scan_body(term: &Term, job: &Job) -> String {
    format!(
        r#"{{"type":"scan.v1","request_id":"{}","merchant_id":"{}","terminal_id":"{}","payment_code":"{}","amount":"{}.{:02}","sent_at":"{}"}}"#,
        job.id,
        term.merchant,
        term.terminal,
        job.code,
        job.amount_fen / 100,
        job.amount_fen % 100,
        campuspay::messages::format_time(chrono::Utc::now()),
    )
}

/// Publishes the terminal's jobs as they come, confirms pipelined.
async fn sender(
    term: Arc<Term>,
    channel: Channel,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    counters: Arc<Counters>,
) {
    let mut confirms = FuturesUnordered::new();
    let mut headers = FieldTable::default();
    headers.insert(
        "authorization".into(),
        AMQPValue::LongString(term.authorization.as_str().into()),
    );
    // The bench's tills publish as the pipeline's own broker user (trusted for any till), and
    // say so in `user-id` as every publisher to `pay.requests` must.
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_headers(headers)
        .with_user_id(term.broker_user.as_str().into());
    let fail = |id: &Uuid| {
        if term.take(id).is_some() {
            counters.publish_errors.fetch_add(1, Ordering::Relaxed);
            counters.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    };
    let mut open = true;
    while open || !confirms.is_empty() {
        tokio::select! {
            job = jobs.recv(), if open => {
                let Some(job) = job else {
                    open = false;
                    continue;
                };
                let body = scan_body(&term, &job);
                let published = channel
                    .basic_publish(
                        REQUESTS.into(),
                        term.routing_key.as_str().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        body.as_bytes(),
                        props.clone(),
                    )
                    .await;
                match published {
                    Ok(confirm) => confirms.push(confirm.map(move |c| (job.id, c))),
                    Err(e) => {
                        log::debug!("publish failed: {e}");
                        fail(&job.id);
                    }
                }
            }
            Some((id, confirmation)) = confirms.next(), if !confirms.is_empty() => {
                if !matches!(confirmation, Ok(Confirmation::Ack(None))) {
                    log::debug!("publish of {id} not confirmed: {confirmation:?}");
                    fail(&id);
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "type")]
    kind: String,
    request_id: Uuid,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

fn outcome(head: &Head) -> String {
    match head.kind.as_str() {
        "result.v1" => match (head.status.as_deref(), head.reason.as_deref()) {
            (Some("approved"), _) => "approved".into(),
            (_, Some(reason)) => format!("declined:{reason}"),
            (status, None) => format!("declined:{}", status.unwrap_or("unknown")),
        },
        // The chain baseline echoes the request itself.
        "scan.v1" => "chain_ok".into(),
        other => format!("other:{other}"),
    }
}

/// A result as a receiver sees it; the send time becomes an offset in the main loop.
struct RawSample {
    request_id: Uuid,
    t0: Instant,
    latency_us: u32,
    outcome: String,
}

/// Reads the terminal's result queue until the connection closes.
async fn receiver(
    term: Arc<Term>,
    channel: Channel,
    mut consumer: lapin::Consumer,
    counters: Arc<Counters>,
    samples: mpsc::UnboundedSender<RawSample>,
) {
    const DRAIN: usize = 500;
    loop {
        let first = match consumer.next().await {
            Some(Ok(d)) => d,
            _ => return,
        };
        let mut batch = vec![first];
        while batch.len() < DRAIN {
            match consumer.next().now_or_never() {
                Some(Some(Ok(d))) => batch.push(d),
                _ => break,
            }
        }
        let now = Instant::now();
        let mut last_tag = 0;
        for d in &batch {
            last_tag = d.delivery_tag;
            let Ok(head) = serde_json::from_slice::<Head>(&d.data) else {
                log::warn!("unreadable result on {}", term.routing_key);
                continue;
            };
            match term.take(&head.request_id) {
                Some(p) => {
                    counters.in_flight.fetch_sub(1, Ordering::Relaxed);
                    let latency = now.saturating_duration_since(p.t0);
                    let _ = samples.send(RawSample {
                        request_id: head.request_id,
                        t0: p.t0,
                        latency_us: u32::try_from(latency.as_micros()).unwrap_or(u32::MAX),
                        outcome: outcome(&head),
                    });
                }
                None => {
                    counters.late.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if channel
            .basic_ack(last_tag, BasicAckOptions { multiple: true })
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Hands payments to terminals, on time (open) or as slots free up (closed).
#[allow(clippy::too_many_arguments)]
async fn scheduler(
    mode: Mode,
    terms: Vec<(Arc<Term>, mpsc::UnboundedSender<Job>)>,
    codes: Vec<String>,
    counters: Arc<Counters>,
    start: Instant,
    send_end: Instant,
    max_in_flight: usize,
    slots: Option<Arc<Semaphore>>,
) -> Vec<u32> {
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut codes = codes.into_iter();
    let mut lags_us = Vec::new();
    let mut next_terminal = 0usize;
    let mut dispatch = |t0: Instant, permit: Option<OwnedSemaphorePermit>| -> bool {
        let Some(code) = codes.next() else {
            counters.out_of_codes.store(true, Ordering::Relaxed);
            return false;
        };
        let (term, tx) = &terms[next_terminal % terms.len()];
        next_terminal += 1;
        let id = Uuid::new_v4();
        lock(&term.pending).insert(
            id,
            Pending {
                t0,
                _permit: permit,
            },
        );
        counters.in_flight.fetch_add(1, Ordering::Relaxed);
        counters.sent.fetch_add(1, Ordering::Relaxed);
        let _ = tx.send(Job {
            id,
            code,
            amount_fen: rng.gen_range(100..=MAX_AMOUNT_FEN),
        });
        true
    };
    match mode {
        Mode::Open { rate } => {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut scheduled: u64 = 0;
            'outer: loop {
                tick.tick().await;
                let now = Instant::now();
                if now >= send_end {
                    break;
                }
                // Payment i is due at start + i / rate: all with i <= elapsed * rate.
                let due = (now.duration_since(start).as_secs_f64() * rate) as u64 + 1;
                while scheduled < due {
                    let t0 = start + Duration::from_secs_f64(scheduled as f64 / rate);
                    scheduled += 1;
                    if counters.in_flight.load(Ordering::Relaxed) >= max_in_flight as i64 {
                        counters.not_sent.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    lags_us.push(
                        u32::try_from(now.saturating_duration_since(t0).as_micros())
                            .unwrap_or(u32::MAX),
                    );
                    if !dispatch(t0, None) {
                        break 'outer;
                    }
                }
            }
        }
        Mode::Closed { .. } => {
            let Some(slots) = slots else {
                return lags_us;
            };
            loop {
                let left = send_end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                let permit = match tokio::time::timeout(left, slots.clone().acquire_owned()).await {
                    Ok(Ok(p)) => p,
                    _ => break,
                };
                if !dispatch(Instant::now(), Some(permit)) {
                    break;
                }
            }
        }
    }
    lags_us
}

fn percentile(sorted: &[u32], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Some(f64::from(sorted[idx.min(sorted.len() - 1)]) / 1000.0)
}

struct Session {
    conns: Vec<Connection>,
    channels: Vec<Vec<Channel>>,
    terms: Vec<Arc<Term>>,
    senders: Vec<mpsc::UnboundedSender<Job>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn open_terminals(
    opts: &LoadOptions,
    counters: &Arc<Counters>,
    samples: &mpsc::UnboundedSender<RawSample>,
) -> Result<Session, String> {
    let n_conn = opts.connections.clamp(1, opts.terminals.len().max(1));
    let mut conns = Vec::with_capacity(n_conn);
    for i in 0..n_conn {
        let c = connect(&opts.amqp_url, &format!("campuspay bench pos {i}"))
            .await
            .map_err(|e| format!("POS connection: {e}"))?;
        conns.push(c);
    }
    let mut channels: Vec<Vec<Channel>> = vec![Vec::new(); n_conn];
    let mut terms = Vec::new();
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    for (i, spec) in opts.terminals.iter().enumerate() {
        let conn = &conns[i % n_conn];
        let err = |e: lapin::Error| format!("terminal {}/{}: {e}", spec.merchant, spec.terminal);
        let result_key = format!("pos.{}.{}", spec.merchant, spec.terminal);
        let pub_channel = conn.create_channel().await.map_err(err)?;
        pub_channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(err)?;
        let sub_channel = conn.create_channel().await.map_err(err)?;
        provision_result_queue(conn, &result_key)
            .await
            .map_err(|e| e.to_string())?;
        sub_channel
            .basic_qos(1000, BasicQosOptions::default())
            .await
            .map_err(err)?;
        let consumer = sub_channel
            .basic_consume(
                result_key.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(err)?;
        let term = Arc::new(Term {
            merchant: spec.merchant.clone(),
            terminal: spec.terminal.clone(),
            routing_key: format!("pos.{}.{}.scan", spec.merchant, spec.terminal),
            authorization: format!("Bearer {}", spec.token),
            broker_user: campuspay::broker::amqp_url::user(&opts.amqp_url),
            pending: Mutex::new(HashMap::new()),
        });
        channels[i % n_conn].push(pub_channel.clone());
        channels[i % n_conn].push(sub_channel.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        tasks.push(tokio::spawn(sender(
            term.clone(),
            pub_channel,
            rx,
            counters.clone(),
        )));
        tasks.push(tokio::spawn(receiver(
            term.clone(),
            sub_channel,
            consumer,
            counters.clone(),
            samples.clone(),
        )));
        terms.push(term);
        senders.push(tx);
    }
    Ok(Session {
        conns,
        channels,
        terms,
        senders,
        tasks,
    })
}

/// Runs the load until the sending window ends and every payment is answered (or timed out),
/// or until `stop` resolves (Ctrl-C).
pub async fn run(
    opts: LoadOptions,
    stop: impl std::future::Future<Output = ()>,
) -> Result<LoadResult, String> {
    if opts.terminals.is_empty() {
        return Err("no terminals".into());
    }
    let counters = Arc::new(Counters::default());
    let (samples_tx, mut samples_rx) = mpsc::unbounded_channel::<RawSample>();
    eprintln!(
        "[{}] opening {} terminals on {} connections …",
        opts.label,
        opts.terminals.len(),
        opts.connections.clamp(1, opts.terminals.len())
    );
    let session = open_terminals(&opts, &counters, &samples_tx).await?;
    drop(samples_tx);
    // The clock starts once every terminal is ready.
    let start = Instant::now();
    let started_wall = SystemTime::now();
    let warm_end = start + opts.warmup;
    let send_end = warm_end + opts.duration;
    let slots = match opts.mode {
        Mode::Closed { in_flight } => Some(Arc::new(Semaphore::new(in_flight.max(1)))),
        Mode::Open { .. } => None,
    };
    let sched = tokio::spawn(scheduler(
        opts.mode,
        session
            .terms
            .iter()
            .cloned()
            .zip(session.senders.iter().cloned())
            .collect(),
        opts.codes,
        counters.clone(),
        start,
        send_end,
        opts.max_in_flight,
        slots,
    ));
    let sample = |s: RawSample| Sample {
        request_id: s.request_id,
        sent: s.t0.saturating_duration_since(start).as_secs_f64(),
        latency_us: s.latency_us,
        outcome: s.outcome,
    };

    let mut result = LoadResult {
        started_wall: Some(started_wall),
        ..LoadResult::default()
    };
    let mut samples: Vec<Sample> = Vec::new();
    let mut second = tokio::time::interval_at(
        tokio::time::Instant::from_std(start + Duration::from_secs(1)),
        Duration::from_secs(1),
    );
    second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cpu_start = None;
    let mut cpu_end = None;
    let mut metrics_start = None;
    let mut warmed_up = opts.warmed_up;
    let mut metrics_end = None;
    let mut rss = RssReport::default();
    let mut depth_sum: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    let mut last_sent = 0u64;
    let mut last_done = 0usize;
    let mut depth_task: Option<tokio::task::JoinHandle<Vec<(String, u64)>>> = None;
    let drain_deadline = send_end + opts.timeout;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            s = samples_rx.recv() => match s {
                Some(s) => samples.push(sample(s)),
                None => break,
            },
            _ = &mut stop => {
                result.interrupted = true;
                eprintln!("[{}] interrupted", opts.label);
                break;
            }
            _ = second.tick() => {
                let now = Instant::now();
                let t = now.duration_since(start).as_secs_f64().round() as u64;
                // Time out payments nobody answered.
                let mut expired = 0;
                for term in &session.terms {
                    let mut p = lock(&term.pending);
                    p.retain(|_, v| {
                        let keep = now.duration_since(v.t0) < opts.timeout;
                        if !keep {
                            expired += 1;
                            result
                                .timed_out_sent
                                .push(v.t0.saturating_duration_since(start).as_secs_f64());
                        }
                        keep
                    });
                }
                if expired > 0 {
                    counters.timeouts.fetch_add(expired as u64, Ordering::Relaxed);
                    counters.in_flight.fetch_sub(expired as i64, Ordering::Relaxed);
                }
                let sent = counters.sent.load(Ordering::Relaxed);
                let in_flight = counters.in_flight.load(Ordering::Relaxed).max(0) as u64;
                result.sent_per_second.push(sent - last_sent);
                result.in_flight_per_second.push(in_flight);
                let mut recent: Vec<u32> =
                    samples[last_done..].iter().map(|s| s.latency_us).collect();
                recent.sort_unstable();
                let phase = if now < warm_end {
                    "warm-up"
                } else if now < send_end {
                    "measuring"
                } else {
                    "draining"
                };
                eprintln!(
                    "[{} {:>4}s {phase:>9}] sent {:>8} done {:>8} in flight {:>6} | {:>6}/s sent {:>6}/s done | p50 {:>7.1} ms p99 {:>7.1} ms",
                    opts.label,
                    t,
                    sent,
                    samples.len(),
                    in_flight,
                    sent - last_sent,
                    samples.len() - last_done,
                    percentile(&recent, 0.5).unwrap_or(0.0),
                    percentile(&recent, 0.99).unwrap_or(0.0),
                );
                last_sent = sent;
                last_done = samples.len();
                let worker_rss: f64 = opts.worker_pids.iter().filter_map(|p| sys::rss_mb(*p)).sum();
                rss.max = rss.max.max(worker_rss);
                if t.is_multiple_of(sys::RSS_SAMPLE_SECS) && worker_rss > 0.0 {
                    rss.samples.push(worker_rss);
                }
                if cpu_end.is_none() {
                    // Until the window ends, the latest sample (for interrupted runs).
                    rss.end = worker_rss;
                }
                if now >= warm_end {
                    if let Some(tx) = warmed_up.take() {
                        let _ = tx.send(());
                    }
                }
                if cpu_start.is_none() && now >= warm_end {
                    cpu_start = Some(sys::snapshot(&opts.worker_pids));
                    rss.after_warmup = worker_rss;
                    metrics_start = scrape(&opts.metrics_urls).await;
                }
                if cpu_end.is_none() && now >= send_end {
                    cpu_end = Some(sys::snapshot(&opts.worker_pids));
                    rss.end = worker_rss;
                    metrics_end = scrape(&opts.metrics_urls).await;
                }
                // Queue depths: the management API refreshes every few seconds; ask every 2 s.
                if let Some((mgmt, vhost)) = &opts.management {
                    if let Some(task) = depth_task.take_if(|t| t.is_finished()) {
                        if let Ok(depths) = task.await {
                            for (q, n) in depths {
                                let e = depth_sum.entry(q).or_default();
                                e.0 = e.0.max(n);
                                e.1 += n;
                                e.2 += 1;
                            }
                        }
                    }
                    if depth_task.is_none() && t.is_multiple_of(2) && now < send_end && now >= warm_end {
                        let (m, v) = (mgmt.clone(), vhost.clone());
                        depth_task = Some(tokio::task::spawn_blocking(move || {
                            m.queues(&v)
                                .unwrap_or_default()
                                .iter()
                                .filter_map(|q| {
                                    Some((q["name"].as_str()?.to_owned(), q["messages"].as_u64()?))
                                })
                                .collect()
                        }));
                    }
                }
                if now >= send_end && (in_flight == 0 || now >= drain_deadline) {
                    break;
                }
            }
        }
    }
    sched.abort();
    let lags = match sched.await {
        Ok(mut l) => {
            l.sort_unstable();
            l
        }
        Err(_) => Vec::new(),
    };
    result.scheduler_lag_p99_ms = match opts.mode {
        Mode::Open { .. } => percentile(&lags, 0.99),
        Mode::Closed { .. } => None,
    };
    // Whatever is still pending has no result.
    let mut unanswered = 0;
    for t in &session.terms {
        for v in lock(&t.pending).values() {
            unanswered += 1;
            result
                .timed_out_sent
                .push(v.t0.saturating_duration_since(start).as_secs_f64());
        }
    }
    counters
        .timeouts
        .fetch_add(unanswered as u64, Ordering::Relaxed);
    drop(session.senders);
    for t in session.tasks {
        t.abort();
    }
    futures_util::future::join_all(
        session
            .conns
            .into_iter()
            .zip(session.channels)
            .map(|(c, chs)| async move { super::env::close(c, &chs).await }),
    )
    .await;
    while let Ok(s) = samples_rx.try_recv() {
        samples.push(sample(s));
    }
    if let (Some(a), Some(b)) = (&cpu_start, &cpu_end) {
        let (lo, hi) = (
            opts.warmup.as_secs_f64(),
            (opts.warmup + opts.duration).as_secs_f64(),
        );
        let done = samples
            .iter()
            .filter(|s| {
                let at = s.sent + f64::from(s.latency_us) / 1e6;
                at >= lo && at < hi
            })
            .count() as u64;
        result.cpu = Some(sys::cpu_between(a, b, done));
    }
    if !opts.worker_pids.is_empty() && rss.max > 0.0 {
        result.rss = Some(rss);
    }
    result.queues = depth_sum
        .into_iter()
        .map(|(q, (max, sum, n))| {
            (
                q,
                QueueDepth {
                    max,
                    mean: sum as f64 / n.max(1) as f64,
                },
            )
        })
        .collect();
    result.metrics = metrics_start.zip(metrics_end);
    result.samples = samples;
    result.sent = counters.sent.load(Ordering::Relaxed);
    result.timeouts = counters.timeouts.load(Ordering::Relaxed);
    result.publish_errors = counters.publish_errors.load(Ordering::Relaxed);
    result.not_sent = counters.not_sent.load(Ordering::Relaxed);
    result.late_or_duplicate = counters.late.load(Ordering::Relaxed);
    result.out_of_codes = counters.out_of_codes.load(Ordering::Relaxed);
    Ok(result)
}
