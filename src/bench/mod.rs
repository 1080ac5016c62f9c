//! `campuspay bench`: measures the pipeline end to end on its own fresh database and vhost, and
//! the two baselines the targets are stated against (issue #6, `docs/PERFORMANCE.md`):
//!
//! - the pipeline: a campus is seeded in bulk (`seed`), a worker process (`campuspay run
//!   --no-http`, so the load generator's CPU is not the worker's) runs every stage, and the load
//!   generator (`load`) plays POS terminals, open loop at a fixed rate or closed loop with a
//!   fixed number of payments in flight;
//! - `--baseline chain`: five confirmed quorum-queue hops, one message per payment, same
//!   library, same load generator (`chain`);
//! - `--baseline pgbench`: `pgbench -b tpcb-like` against the same PostgreSQL (`pgbench`);
//! - `--summarize DIR`: the ratios and targets over a directory of reports (`report`).
//!
//! Every run writes the same report (JSON, and an SVG plot). Databases and vhosts are named
//! `cp_bench_<random>` and dropped at the end, on error, and on Ctrl-C (`--keep` keeps them).

pub mod chain;
pub mod load;
pub mod pgbench;
pub mod report;
pub mod seed;
pub mod sys;

use crate::admin::management::Management;
use crate::auth::JwtKeys;
use crate::broker::connection::connect_retrying;
use crate::broker::topology::{topology, StageName};
use crate::cli::CliError;
use crate::config::Config;
use crate::db;
use crate::domain::{MerchantId, PaymentCode, TerminalId};
use clap::{Args, ValueEnum};
use diesel::{Connection, PgConnection, RunQueryDsl};
use load::{LoadOptions, LoadResult, Mode, TerminalSpec};
use report::{Latency, Report, Segment};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Baseline {
    /// Five confirmed quorum-queue hops, one message per payment.
    Chain,
    /// `pgbench -b tpcb-like` against the same PostgreSQL server.
    Pgbench,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Measure a baseline instead of the pipeline.
    #[arg(long, value_enum)]
    pub baseline: Option<Baseline>,
    /// Open loop: offer this many payments per second, whatever the results.
    #[arg(long, conflicts_with = "closed")]
    pub rate: Option<f64>,
    /// Closed loop (the default): keep `--in-flight` payments outstanding, as fast as answered.
    #[arg(long)]
    pub closed: bool,
    /// Closed loop: payments in flight at once (200 terminals with 5 customers queueing each).
    #[arg(long, default_value_t = 1000)]
    pub in_flight: usize,
    /// Measured seconds, after the warm-up (pgbench: its whole run).
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 10)]
    pub warmup: u64,
    #[arg(long, default_value_t = 10_000)]
    pub cards: usize,
    #[arg(long, default_value_t = 200)]
    pub terminals: usize,
    #[arg(long, default_value_t = 20)]
    pub merchants: usize,
    /// AMQP connections the simulated terminals share (default: one per terminal).
    #[arg(long)]
    pub pos_connections: Option<usize>,
    /// Worker processes running every stage (`campuspay run --no-http`); 0 runs the stages
    /// inside the bench process instead.
    #[arg(long, default_value_t = 1)]
    pub workers: u32,
    /// Closed loop: payment codes are issued for at most this rate over the whole run.
    #[arg(long, default_value_t = 8_000.0)]
    pub max_rate: f64,
    /// Share of cards (percent) that start nearly empty, so declines are exercised.
    #[arg(long, default_value_t = 1.0)]
    pub broke_percent: f64,
    /// Seconds a payment may wait for its result before it counts as timed out.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Name of the run in the report (default: derived from the mode).
    #[arg(long)]
    pub label: Option<String>,
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Keep the bench database and vhost (to inspect them).
    #[arg(long)]
    pub keep: bool,
    /// Skip `admin verify` on the bench database after the run.
    #[arg(long)]
    pub no_verify: bool,
    /// Do not sample queue depths from the management API during the run (it costs the
    /// broker a little CPU).
    #[arg(long)]
    pub no_queue_stats: bool,
    /// Run the workers as `campuspay run` with the HTTP platform on a free local port instead of
    /// `run --no-http`, and scrape their `/metrics` for per-stage batch statistics (batches,
    /// batch time, how busy each stage is). The platform also starts its result hub, which
    /// consumes the cardholders' copies of the results (without it they go to `pay.unrouted`).
    #[arg(long)]
    pub worker_metrics: bool,
    /// Do not `ANALYZE` the database when the warm-up ends. The bench starts from empty
    /// transaction and ledger tables; without fresh statistics the planner keeps planning for
    /// empty tables (sequential scans of a table that grows by thousands of rows a second),
    /// which a system that has been running never sees (autovacuum analyzes it).
    #[arg(long)]
    pub no_analyze: bool,
    /// pgbench baseline: client connections (`-c`).
    #[arg(long, default_value_t = 8)]
    pub pgbench_clients: u32,
    /// pgbench baseline: worker threads (`-j`).
    #[arg(long, default_value_t = 2)]
    pub pgbench_jobs: u32,
    /// pgbench baseline: scale factor of `pgbench -i` (branches; at least the clients' count
    /// spreads the tpcb-like updates over several rows).
    #[arg(long, default_value_t = 10)]
    pub pgbench_scale: u32,
    /// Print the summary (ratios, targets) of the reports in DIR, write DIR/summary.json and
    /// DIR/summary.md, and exit.
    #[arg(long, value_name = "DIR")]
    pub summarize: Option<PathBuf>,
    /// Chain baseline: number of hops (1 measures what the POS contract alone costs the
    /// broker: request in, result out).
    #[arg(long, default_value_t = chain::HOPS)]
    pub chain_hops: usize,
    /// Internal: run the chain baseline's hops (started by `--baseline chain`).
    #[arg(long, hide = true)]
    pub chain_worker: bool,
}

fn fail(e: impl std::fmt::Display) -> CliError {
    CliError::Failed(e.to_string())
}

/// `url` with its last path segment (database or vhost) replaced by `name`, query kept.
fn with_last_segment(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let prefix = base.rsplit_once('/').map(|(p, _)| p).unwrap_or(base);
    match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    }
}

/// The bench's own database and vhost; dropped by `cleanup` (idempotent) or on drop.
struct BenchEnv {
    name: String,
    admin_db_url: String,
    db_url: Option<String>,
    amqp_url: String,
    mgmt: Management,
    has_vhost: bool,
    keep: bool,
    /// Dropped (or kept) already.
    done: bool,
}

impl BenchEnv {
    async fn create(
        config: &Config,
        with_db: bool,
        with_vhost: bool,
        keep: bool,
    ) -> Result<BenchEnv, CliError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("cp_bench_{}", &id[..12]);
        let mgmt = Management::new(&config.management_url).map_err(fail)?;
        let mut env = BenchEnv {
            admin_db_url: with_last_segment(&config.database_url, "postgres"),
            db_url: None,
            amqp_url: with_last_segment(&config.amqp_url, &name),
            name,
            mgmt,
            has_vhost: false,
            keep,
            done: false,
        };
        if with_db {
            let (admin, name) = (env.admin_db_url.clone(), env.name.clone());
            blocking(move || {
                let mut c = PgConnection::establish(&admin)
                    .map_err(|e| fail(format!("cannot connect to {admin}: {e}")))?;
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut c)
                    .map_err(fail)?;
                Ok(())
            })
            .await?;
            env.db_url = Some(with_last_segment(&config.database_url, &env.name));
        }
        if with_vhost {
            let (m, name) = (env.mgmt.clone(), env.name.clone());
            // The AMQP user needs the vhost; so does the management user (queue depths).
            let mut users = vec![url_user(&config.amqp_url), url_user(&config.management_url)];
            users.dedup();
            env.has_vhost = true;
            blocking(move || {
                m.create_vhost(&name).map_err(fail)?;
                for u in &users {
                    m.grant_all(&name, u).map_err(fail)?;
                }
                Ok(())
            })
            .await?;
        }
        eprintln!("[bench] environment {} created", env.name);
        Ok(env)
    }

    fn cleanup(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        if self.keep {
            eprintln!("[bench] keeping database and vhost {} (--keep)", self.name);
            return;
        }
        let mut left = Vec::new();
        if self.has_vhost {
            if let Err(e) = self.mgmt.delete_vhost(&self.name) {
                left.push(format!("vhost ({e})"));
            }
        }
        if self.db_url.is_some() {
            let dropped = PgConnection::establish(&self.admin_db_url)
                .map_err(|e| e.to_string())
                .and_then(|mut c| {
                    diesel::sql_query(format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        self.name
                    ))
                    .execute(&mut c)
                    .map_err(|e| e.to_string())
                });
            if let Err(e) = dropped {
                left.push(format!("database ({e})"));
            }
        }
        if left.is_empty() {
            eprintln!("[bench] environment {} dropped", self.name);
        } else {
            eprintln!(
                "[bench] WARNING: could not drop {} of {}: drop them by hand",
                left.join(" and "),
                self.name
            );
        }
    }
}

impl Drop for BenchEnv {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// The user named in `scheme://user:pass@host/...` (RabbitMQ's default: guest).
fn url_user(url: &str) -> String {
    url.split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(creds, _)| creds.split(':').next())
        .filter(|u| !u.is_empty())
        .unwrap_or("guest")
        .to_owned()
}

/// Message counts of the bench vhost from the management API, totals since it was created:
/// per queue (messages routed into it) and for the vhost (publishes, deliveries, acks,
/// confirms). Statistics are collected every few seconds, so call this a while after the run.
fn broker_counts(management_url: &str, vhost: &str) -> Option<BTreeMap<String, u64>> {
    let rest = management_url.strip_prefix("http://")?;
    let (creds, host) = rest.split_once('@')?;
    let auth = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, creds)
    );
    let get = |path: &str| -> Option<serde_json::Value> {
        ureq::get(&format!("http://{}{path}", host.trim_end_matches('/')))
            .set("authorization", &auth)
            .timeout(Duration::from_secs(15))
            .call()
            .ok()?
            .into_json()
            .ok()
    };
    let mut out = BTreeMap::new();
    let v = get(&format!("/api/vhosts/{vhost}"))?;
    for k in [
        "publish",
        "deliver_get",
        "ack",
        "confirm",
        "redeliver",
        "return_unroutable",
    ] {
        if let Some(n) = v["message_stats"][k].as_u64() {
            out.insert(format!("vhost.{k}"), n);
        }
    }
    if let Some(Some(queues)) = get(&format!("/api/queues/{vhost}")).map(|q| q.as_array().cloned())
    {
        let mut pos = 0;
        for q in queues {
            let (Some(name), n) = (q["name"].as_str(), q["message_stats"]["publish"].as_u64())
            else {
                continue;
            };
            if name.starts_with("pos.") {
                pos += n.unwrap_or(0);
            } else {
                out.insert(format!("queue.{name}"), n.unwrap_or(0));
            }
        }
        out.insert("queue.pos.*".into(), pos);
    }
    Some(out)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CliError> + Send + 'static,
) -> Result<T, CliError> {
    tokio::task::spawn_blocking(f).await.map_err(fail)?
}

/// Child processes that are asked to stop (SIGTERM) and killed if they do not.
struct Children {
    procs: Vec<Child>,
}

impl Children {
    /// Starts one more child: this executable with `args` and `envs`, stderr to `log`.
    fn spawn(&mut self, args: &[&str], envs: &[(&str, &str)], log: &Path) -> Result<(), CliError> {
        let exe = std::env::current_exe().map_err(fail)?;
        let file =
            std::fs::File::create(log).map_err(|e| fail(format!("{}: {e}", log.display())))?;
        let mut cmd = Command::new(&exe);
        cmd.args(args).stdout(Stdio::null()).stderr(file);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        self.procs.push(cmd.spawn().map_err(fail)?);
        eprintln!(
            "[bench] started {} {} (log {})",
            exe.display(),
            args.join(" "),
            log.display()
        );
        Ok(())
    }

    fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(|c| c.id()).collect()
    }

    fn any_exited(&mut self) -> Option<String> {
        self.procs.iter_mut().find_map(|c| match c.try_wait() {
            Ok(Some(status)) => Some(format!("process {} exited: {status}", c.id())),
            _ => None,
        })
    }

    /// SIGTERM, then up to `grace` for a graceful exit, then SIGKILL.
    fn stop(&mut self, grace: Duration) {
        for c in &self.procs {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + grace;
        for c in &mut self.procs {
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                }
            }
        }
        self.procs.clear();
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Closes the channels, then the connection (lapin logs an error for a connection closed with
/// channels still open).
pub async fn close(conn: lapin::Connection, channels: &[lapin::Channel]) {
    for ch in channels {
        let _ = ch.close(200, "done".into()).await;
    }
    let _ = conn.close(200, "done".into()).await;
}

/// A free local TCP address for a worker's HTTP server (bound and released at once).
fn free_local_addr() -> Result<String, CliError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(fail)?;
    Ok(l.local_addr().map_err(fail)?.to_string())
}

/// Waits until every queue has a consumer (the workers are up).
async fn wait_consumers(
    amqp_url: &str,
    queues: &[String],
    children: &mut Children,
    interrupted: &watch::Receiver<bool>,
) -> Result<(), CliError> {
    let conn = connect_retrying(amqp_url, "campuspay bench probe", 5).await?;
    let ch = conn.create_channel().await?;
    let started = Instant::now();
    loop {
        let mut missing = Vec::new();
        for q in queues {
            let declared = ch
                .queue_declare(
                    q.as_str().into(),
                    lapin::options::QueueDeclareOptions {
                        passive: true,
                        durable: true,
                        ..Default::default()
                    },
                    lapin::types::FieldTable::default(),
                )
                .await?;
            if declared.consumer_count() == 0 {
                missing.push(q.clone());
            }
        }
        if missing.is_empty() {
            close(conn, &[ch]).await;
            return Ok(());
        }
        if let Some(why) = children.any_exited() {
            return Err(fail(format!("worker died before it was ready: {why}")));
        }
        if *interrupted.borrow() {
            return Err(fail("interrupted"));
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(fail(format!("no consumer on {missing:?} after 60 s")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn log_path(args: &BenchArgs, name: &str, what: &str) -> PathBuf {
    match &args.json {
        Some(j) => {
            let stem = j
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "bench".into());
            j.with_file_name(format!("{stem}-{what}.log"))
        }
        None => std::env::temp_dir().join(format!("{name}-{what}.log")),
    }
}

fn mode_of(args: &BenchArgs) -> Mode {
    match args.rate {
        Some(rate) => Mode::Open {
            rate: rate.max(0.001),
        },
        None => Mode::Closed {
            in_flight: args.in_flight.max(1),
        },
    }
}

fn codes_needed(args: &BenchArgs) -> usize {
    let secs = (args.warmup + args.duration) as f64;
    let rate = args.rate.unwrap_or(args.max_rate);
    (rate * secs * 1.02) as usize + 1000
}

fn base_report(args: &BenchArgs, kind: &str, mode: Mode) -> Report {
    let (mode_s, offered, limit) = match mode {
        Mode::Open { rate } => ("open", Some(rate), None),
        Mode::Closed { in_flight } => ("closed", None, Some(in_flight)),
    };
    let label = args.label.clone().unwrap_or_else(|| match mode {
        Mode::Open { rate } => format!("{kind} open {rate:.0}/s"),
        Mode::Closed { in_flight } => format!("{kind} closed {in_flight} in flight"),
    });
    Report {
        kind: kind.into(),
        label,
        mode: mode_s.into(),
        offered_rate: offered,
        in_flight_limit: limit,
        warmup_secs: args.warmup as f64,
        duration_secs: args.duration as f64,
        started_at: crate::messages::format_time(chrono::Utc::now()),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: sys::machine(),
        ..Report::default()
    }
}

/// Fills throughput, latency, outcomes and the series from a load run.
fn fill_from_load(r: &mut Report, res: &LoadResult, timeout: Duration) {
    let (lo, hi) = (r.warmup_secs, r.warmup_secs + r.duration_secs);
    let mut lat = Vec::new();
    let mut completed = 0u64;
    for s in &res.samples {
        let done_at = s.sent + f64::from(s.latency_us) / 1e6;
        if done_at >= lo && done_at < hi {
            completed += 1;
            *r.outcomes.entry(s.outcome.clone()).or_default() += 1;
        }
        if s.sent >= lo && s.sent < hi {
            lat.push(s.latency_us);
        }
    }
    // A payment that never got its result counts at the timeout (a lower bound): leaving it out
    // would make an overloaded run look fast.
    let timeout_us = u32::try_from(timeout.as_micros()).unwrap_or(u32::MAX);
    let lost = res
        .timed_out_sent
        .iter()
        .filter(|&&s| s >= lo && s < hi)
        .count();
    lat.extend(std::iter::repeat_n(timeout_us, lost));
    if lost > 0 {
        r.notes.push(format!(
            "{lost} payments sent in the window got no result within {:.0} s: they count in the latency percentiles at the timeout",
            timeout.as_secs_f64()
        ));
    }
    r.completed = completed;
    r.throughput_per_sec = completed as f64 / r.duration_secs.max(1e-9);
    r.latency = Latency::of(lat);
    r.sent = res.sent;
    r.timeouts = res.timeouts;
    r.publish_errors = res.publish_errors;
    r.not_sent = res.not_sent;
    r.late_or_duplicate = res.late_or_duplicate;
    r.out_of_codes = res.out_of_codes;
    r.interrupted = res.interrupted;
    r.scheduler_lag_p99_ms = res.scheduler_lag_p99_ms;
    r.cpu = res.cpu.clone();
    r.worker_rss_mb = res.rss.clone();
    r.queues = res.queues.clone();
    if let Some((a, b)) = &res.metrics {
        let get = |m: &load::Metrics, name: &str, stage: &str| {
            m.get(&(name.to_owned(), stage.to_owned()))
                .copied()
                .unwrap_or(0.0)
        };
        for (name, stage) in b.keys() {
            if name != "campuspay_stage_batches_total" {
                continue;
            }
            let d = |n: &str| get(b, n, stage) - get(a, n, stage);
            let batches = d("campuspay_stage_batches_total");
            let secs = d("campuspay_stage_batch_seconds_sum");
            r.stage_stats.push(report::StageStat {
                stage: stage.clone(),
                batches,
                messages: d("campuspay_stage_messages_total"),
                mean_batch_ms: secs * 1000.0 / batches.max(1.0),
                busy: secs / r.duration_secs.max(1e-9),
            });
        }
        // Pipeline order.
        r.stage_stats.sort_by_key(|s| {
            StageName::parse(&s.stage)
                .and_then(|n| StageName::ALL.iter().position(|x| *x == n))
                .unwrap_or(usize::MAX)
        });
    }
    let pairs: Vec<(f64, u32)> = res.samples.iter().map(|s| (s.sent, s.latency_us)).collect();
    // Unanswered payments are plotted at the timeout.
    let lost_pairs: Vec<(f64, u32)> = res
        .timed_out_sent
        .iter()
        .map(|&s| (s, timeout_us))
        .collect();
    let (per_second, cdf) = report::series(
        &pairs,
        &lost_pairs,
        r.warmup_secs,
        &res.sent_per_second,
        &res.in_flight_per_second,
    );
    r.per_second = per_second;
    r.cdf = cdf;
    if res.out_of_codes {
        r.notes.push(
            "the load generator ran out of payment codes: raise --max-rate (closed loop)".into(),
        );
    }
}

/// Reads the broker's message totals (after the statistics interval) into the report.
async fn fill_broker_counts(r: &mut Report, config: &Config, vhost: &str, answered: usize) {
    // The management plugin refreshes its statistics every 5 s.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let (url, v) = (config.management_url.clone(), vhost.to_owned());
    let counts = tokio::task::spawn_blocking(move || broker_counts(&url, &v))
        .await
        .ok()
        .flatten();
    if let Some(counts) = counts {
        let n = answered.max(1) as f64;
        r.broker_per_payment = counts.into_iter().map(|(k, v)| (k, v as f64 / n)).collect();
    }
}

/// Ctrl-C turns the flag on (and is otherwise swallowed, so cleanup can run).
fn watch_interrupt() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    actix_rt::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\n[bench] Ctrl-C: stopping and cleaning up");
            let _ = tx.send(true);
        }
    });
    rx
}

async fn interrupted(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

fn check(rx: &watch::Receiver<bool>) -> Result<(), CliError> {
    if *rx.borrow() {
        Err(fail("interrupted"))
    } else {
        Ok(())
    }
}

fn terminal_specs(
    terminals: &[(String, String)],
    jwt: &JwtKeys,
) -> Result<Vec<TerminalSpec>, CliError> {
    terminals
        .iter()
        .map(|(m, t)| {
            let token = jwt.issue_terminal(
                &MerchantId::parse(m).map_err(fail)?,
                &TerminalId::parse(t).map_err(fail)?,
            )?;
            Ok(TerminalSpec {
                merchant: m.clone(),
                terminal: t.clone(),
                token,
            })
        })
        .collect()
}

fn finish(report: &Report, args: &BenchArgs) -> Result<ExitCode, CliError> {
    println!("{}", report::human(report));
    report::write_outputs(report, args.json.as_deref(), args.svg.as_deref()).map_err(fail)?;
    Ok(if report.interrupted || report.completed == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Entry point of `campuspay bench`.
pub async fn run(args: BenchArgs, config: Config) -> Result<ExitCode, CliError> {
    if args.chain_worker {
        return chain_worker(&config, args.chain_hops.max(1)).await;
    }
    if let Some(dir) = &args.summarize {
        return summarize(dir);
    }
    if cfg!(debug_assertions) {
        eprintln!("[bench] WARNING: a debug build; numbers are not representative (cargo build --release)");
    }
    let stop = watch_interrupt();
    match args.baseline {
        Some(Baseline::Chain) => bench_chain(&args, &config, stop).await,
        Some(Baseline::Pgbench) => bench_pgbench(&args, &config, stop).await,
        None => bench_pipeline(&args, &config, stop).await,
    }
}

fn summarize(dir: &Path) -> Result<ExitCode, CliError> {
    let (summary, table) = report::summarize(dir).map_err(fail)?;
    println!("{table}");
    let fmt = |v: Option<f64>| v.map(|x| format!("{x:.0}")).unwrap_or_else(|| "–".into());
    let ratio = |v: Option<f64>| v.map(|x| format!("{x:.2}×")).unwrap_or_else(|| "–".into());
    println!(
        "pipeline max {} /s, chain {} /s, pgbench {} tps: pipeline/chain {}, pipeline/pgbench {}",
        fmt(summary.pipeline_max),
        fmt(summary.chain_max),
        fmt(summary.pgbench_tps),
        ratio(summary.ratio_pipeline_chain),
        ratio(summary.ratio_pipeline_pgbench)
    );
    let json = serde_json::to_string_pretty(&summary).map_err(fail)?;
    std::fs::write(dir.join("summary.json"), json).map_err(fail)?;
    std::fs::write(dir.join("summary.md"), table).map_err(fail)?;
    eprintln!("wrote {}/summary.json and summary.md", dir.display());
    Ok(ExitCode::SUCCESS)
}

async fn chain_worker(config: &Config, hops: usize) -> Result<ExitCode, CliError> {
    let (tx, rx) = watch::channel(false);
    let hops = actix_rt::spawn({
        let url = config.amqp_url.clone();
        let prefetch = config.prefetch;
        async move { chain::run_hops(&url, hops, prefetch, rx).await }
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

async fn rabbit_version(env: &BenchEnv) -> String {
    let (m, v) = (env.mgmt.clone(), env.name.clone());
    tokio::task::spawn_blocking(move || {
        m.definitions(&v)
            .ok()
            .and_then(|d| d["rabbit_version"].as_str().map(str::to_owned))
            .unwrap_or_default()
    })
    .await
    .unwrap_or_default()
}

async fn postgres_version(url: String) -> String {
    #[derive(diesel::QueryableByName)]
    struct V {
        #[diesel(sql_type = diesel::sql_types::Text)]
        server_version: String,
    }
    tokio::task::spawn_blocking(move || {
        let mut c = PgConnection::establish(&url).ok()?;
        diesel::sql_query("SHOW server_version")
            .get_result::<V>(&mut c)
            .ok()
            .map(|v| v.server_version)
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_default()
}

async fn bench_chain(
    args: &BenchArgs,
    config: &Config,
    stop: watch::Receiver<bool>,
) -> Result<ExitCode, CliError> {
    let mode = mode_of(args);
    let mut env = BenchEnv::create(config, false, true, args.keep).await?;
    let conn = connect_retrying(&env.amqp_url, "campuspay bench setup", 5).await?;
    let ch = conn.create_channel().await?;
    let hops = args.chain_hops.max(1);
    chain::declare(&ch, hops).await?;
    close(conn, &[ch]).await;
    let terminals: Vec<(String, String)> = (0..args.terminals)
        .map(|i| {
            (
                seed::merchant_id(i % args.merchants.max(1)),
                seed::terminal_id(i),
            )
        })
        .collect();
    let jwt = JwtKeys::new(config.jwt_secret.expose());
    let specs = terminal_specs(&terminals, &jwt)?;
    let n = codes_needed(args);
    let codes: Vec<String> = {
        let mut rng = rand::thread_rng();
        (0..n)
            .map(|_| PaymentCode::generate(&mut rng).expose().to_owned())
            .collect()
    };
    let mut children = Children { procs: Vec::new() };
    let hops_arg = hops.to_string();
    children.spawn(
        &["bench", "--chain-worker", "--chain-hops", &hops_arg],
        &[("AMQP_URL", env.amqp_url.as_str())],
        &log_path(args, &env.name, "chain-worker"),
    )?;
    let queues: Vec<String> = (1..=hops).map(chain::queue).collect();
    let outcome = async {
        wait_consumers(&env.amqp_url, &queues, &mut children, &stop).await?;
        // Only the standard five-hop chain is the baseline the targets are stated against.
        let kind = if hops == chain::HOPS {
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
        if hops != chain::HOPS && args.label.is_none() {
            report.label = format!("chain ({hops} hops) {}", report.label.trim_start_matches("chain "));
        }
        report.notes.push(format!(
            "raw chain: {hops} durable quorum queues, each hop publishes every message on (persistent, mandatory, confirmed) and acks after the confirm; no database, no batching"
        ));
        Ok::<_, CliError>(report)
    }
    .await;
    children.stop(Duration::from_secs(10));
    env.cleanup();
    finish(&outcome?, args)
}

async fn bench_pgbench(
    args: &BenchArgs,
    config: &Config,
    stop: watch::Receiver<bool>,
) -> Result<ExitCode, CliError> {
    let mut env = BenchEnv::create(config, true, false, args.keep).await?;
    let url = env.db_url.clone().unwrap_or_default();
    let opts = pgbench::PgbenchOptions {
        clients: args.pgbench_clients,
        jobs: args.pgbench_jobs,
        scale: args.pgbench_scale,
        duration: Duration::from_secs(args.duration),
    };
    check(&stop)?;
    let pg_version = postgres_version(url.clone()).await;
    let res = {
        let url = url.clone();
        blocking(move || pgbench::run(&url, &opts).map_err(fail)).await
    };
    env.cleanup();
    let res = res?;
    let mut report = base_report(
        args,
        "pgbench",
        Mode::Closed {
            in_flight: args.pgbench_clients as usize,
        },
    );
    report.label = args.label.clone().unwrap_or_else(|| {
        format!(
            "pgbench tpcb-like -c {} -s {}",
            args.pgbench_clients, args.pgbench_scale
        )
    });
    report.warmup_secs = 0.0;
    report.command = res.command.clone();
    report.completed = res.transactions;
    report.sent = res.transactions;
    report.throughput_per_sec = res.tps;
    report.latency = Latency::of(res.samples.iter().map(|s| s.1).collect());
    report.cpu = res.cpu.clone();
    report.machine.postgres = pg_version;
    report.outcomes.insert("committed".into(), res.transactions);
    let per_sec: BTreeMap<u32, u64> = res.samples.iter().fold(BTreeMap::new(), |mut m, s| {
        *m.entry(s.0 as u32).or_default() += 1;
        m
    });
    let sent: Vec<u64> = (0..=per_sec.keys().max().copied().unwrap_or(0))
        .map(|t| per_sec.get(&t).copied().unwrap_or(0))
        .collect();
    let (per_second, cdf) = report::series(&res.samples, &[], 0.0, &sent, &[]);
    report.per_second = per_second;
    report.cdf = cdf;
    report.notes.push(format!(
        "{}; tps is pgbench's own figure (without initial connection time); latency from its per-transaction log{}",
        res.version,
        res.latency_avg_ms
            .map(|l| format!(", average {l:.3} ms"))
            .unwrap_or_default()
    ));
    finish(&report, args)
}

async fn bench_pipeline(
    args: &BenchArgs,
    config: &Config,
    stop: watch::Receiver<bool>,
) -> Result<ExitCode, CliError> {
    let mode = mode_of(args);
    let mut env = BenchEnv::create(config, true, true, args.keep).await?;
    let outcome = pipeline_inner(args, config, mode, &env, &stop).await;
    env.cleanup();
    finish(&outcome?, args)
}

async fn pipeline_inner(
    args: &BenchArgs,
    config: &Config,
    mode: Mode,
    env: &BenchEnv,
    stop: &watch::Receiver<bool>,
) -> Result<Report, CliError> {
    let db_url = env.db_url.clone().unwrap_or_default();
    let pool = {
        let url = db_url.clone();
        blocking(move || {
            let pool = db::pool(&url, 4)?;
            let mut conn = pool.get().map_err(db::DbError::from)?;
            db::migrate(&mut conn)?;
            drop(conn);
            Ok(pool)
        })
        .await?
    };
    let conn = connect_retrying(&env.amqp_url, "campuspay bench setup", 5).await?;
    let ch = conn.create_channel().await?;
    topology().declare(&ch).await?;
    close(conn, &[ch]).await;
    check(stop)?;

    let n_codes = codes_needed(args);
    eprintln!(
        "[bench] seeding {} cards, {} terminals, {} merchants, {n_codes} payment codes …",
        args.cards, args.terminals, args.merchants
    );
    let seeded_at = Instant::now();
    let opts = seed::SeedOptions {
        cards: args.cards.max(1),
        terminals: args.terminals.max(1),
        merchants: args.merchants.max(1),
        codes: n_codes,
        broke_percent: args.broke_percent,
        code_ttl: chrono::Duration::hours(6),
    };
    let key = config.code_key.clone();
    let campus = {
        let pool = pool.clone();
        blocking(move || {
            let mut c = pool.get().map_err(db::DbError::from)?;
            let campus = seed::seed(&mut c, &opts, key.expose())?;
            // Fresh statistics, so the planner knows the tables are no longer empty.
            diesel::sql_query("ANALYZE")
                .execute(&mut c)
                .map_err(db::DbError::from)?;
            Ok(campus)
        })
        .await?
    };
    eprintln!(
        "[bench] seeded in {:.1} s",
        seeded_at.elapsed().as_secs_f64()
    );
    check(stop)?;

    let jwt = JwtKeys::new(config.jwt_secret.expose());
    let specs = terminal_specs(&campus.terminals, &jwt)?;
    let mut report = base_report(args, "pipeline", mode);
    report.cards = Some(args.cards);
    report.terminals = Some(args.terminals);
    report.prefetch = Some(config.prefetch);
    report.pos_connections = Some(args.pos_connections.unwrap_or(args.terminals));
    report.workers = Some(args.workers);
    report.machine.rabbitmq = rabbit_version(env).await;
    report.machine.postgres = postgres_version(db_url.clone()).await;

    // The worker: child processes, or the stages in this process (`--workers 0`).
    let mut children = Children { procs: Vec::new() };
    let mut metrics_urls = Vec::new();
    let mut in_process = None;
    if args.workers == 0 {
        let mut c = config.clone();
        c.database_url = db_url.clone();
        c.amqp_url = env.amqp_url.clone();
        in_process = Some(crate::pipeline::Pipeline::start(
            &c,
            pool.clone(),
            &StageName::ALL,
        ));
    } else {
        for i in 0..args.workers {
            let log = if args.workers == 1 {
                log_path(args, &env.name, "worker")
            } else {
                log_path(args, &env.name, &format!("worker-{i}"))
            };
            let envs = [
                ("DATABASE_URL", db_url.as_str()),
                ("AMQP_URL", env.amqp_url.as_str()),
            ];
            // Several workers split the settlement shards between them, as an operator would
            // (`run --prefer-shards`); each stands by on the others'.
            let shards: Vec<String> = (0..crate::broker::topology::SETTLEMENT_SHARDS)
                .filter(|s| s % args.workers == i)
                .map(|s| s.to_string())
                .collect();
            let shards = shards.join(",");
            let mut run_args = vec!["run"];
            if args.workers > 1 && !shards.is_empty() {
                run_args.extend(["--prefer-shards", shards.as_str()]);
            }
            if !args.worker_metrics {
                run_args.push("--no-http");
                children.spawn(&run_args, &envs, &log)?;
            } else {
                // The platform's HTTP server serves the stage metrics (`/metrics`); nothing
                // else is asked of it during the run.
                let addr = free_local_addr()?;
                metrics_urls.push(format!("http://{addr}/metrics"));
                let mut envs = envs.to_vec();
                envs.push(("CAMPUSPAY_HTTP_ADDR", addr.as_str()));
                children.spawn(&run_args, &envs, &log)?;
            }
        }
    }
    let queues: Vec<String> = StageName::ALL.iter().flat_map(|s| s.queues()).collect();
    let (warmed_tx, warmed_rx) = tokio::sync::oneshot::channel::<()>();
    if !args.no_analyze {
        let pool = pool.clone();
        actix_rt::spawn(async move {
            if warmed_rx.await.is_ok() {
                let started = Instant::now();
                let done = db::run(&pool, |c| Ok(diesel::sql_query("ANALYZE").execute(c)?)).await;
                match done {
                    Ok(_) => eprintln!(
                        "[bench] warm-up over: ANALYZE took {:.2} s",
                        started.elapsed().as_secs_f64()
                    ),
                    Err(e) => eprintln!("[bench] ANALYZE failed: {e}"),
                }
            }
        });
    }
    let res = async {
        wait_consumers(&env.amqp_url, &queues, &mut children, stop).await?;
        load::run(
            LoadOptions {
                amqp_url: env.amqp_url.clone(),
                terminals: specs,
                codes: campus.codes,
                mode,
                warmup: Duration::from_secs(args.warmup),
                duration: Duration::from_secs(args.duration),
                timeout: Duration::from_secs(args.timeout),
                connections: args.pos_connections.unwrap_or(args.terminals),
                max_in_flight: 200_000,
                worker_pids: if args.workers == 0 {
                    vec![std::process::id()]
                } else {
                    children.pids()
                },
                management: (!args.no_queue_stats).then(|| (env.mgmt.clone(), env.name.clone())),
                label: "pipeline".into(),
                metrics_urls: metrics_urls.clone(),
                warmed_up: Some(warmed_tx),
            },
            interrupted(stop.clone()),
        )
        .await
        .map_err(fail)
    }
    .await;
    if let Some(p) = in_process {
        p.shutdown().await;
    }
    let worker_exited = children.any_exited();
    children.stop(Duration::from_secs(15));
    let res = res?;
    fill_from_load(&mut report, &res, Duration::from_secs(args.timeout));
    if let Some(why) = worker_exited {
        report
            .notes
            .push(format!("a worker exited during the run: {why}"));
    }
    if args.workers == 0 {
        report
            .notes
            .push("stages ran inside the bench process (--workers 0): 'worker' CPU includes the load generator".into());
    }
    if !*stop.borrow() {
        fill_broker_counts(&mut report, config, &env.name, res.samples.len()).await;
        report.stages = stage_segments(
            &pool,
            &res,
            report.warmup_secs,
            report.warmup_secs + report.duration_secs,
        )
        .await;
        if !args.no_verify {
            let ledger = db::run(&pool, |c| db::ledger::verify(c, 300)).await;
            match ledger {
                Ok(l) => {
                    report.ledger_ok = Some(l.ok);
                    if !l.ok {
                        report.notes.push(format!("ledger verify failed: {l:?}"));
                    }
                }
                Err(e) => report
                    .notes
                    .push(format!("ledger verify could not run: {e}")),
            }
        }
    }
    Ok(report)
}

/// Where the time goes, from timestamps: POS publish → order stage (PostgreSQL `created_at`,
/// the order stage's transaction start) → settlement (`processed_at`) → result at the POS.
async fn stage_segments(pool: &db::Pool, res: &LoadResult, lo: f64, hi: f64) -> Vec<Segment> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        request_id: uuid::Uuid,
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        created_at: chrono::DateTime<chrono::Utc>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
        processed_at: Option<chrono::DateTime<chrono::Utc>>,
    }
    let Some(wall) = res.started_wall else {
        return Vec::new();
    };
    let rows = db::run(pool, |c| {
        Ok(diesel::sql_query(
            "SELECT request_id, created_at, processed_at FROM transactions WHERE state = 'approved'",
        )
        .load::<Row>(c)?)
    })
    .await;
    let Ok(rows) = rows else {
        return Vec::new();
    };
    let by_id: HashMap<
        uuid::Uuid,
        (
            chrono::DateTime<chrono::Utc>,
            Option<chrono::DateTime<chrono::Utc>>,
        ),
    > = rows
        .into_iter()
        .map(|r| (r.request_id, (r.created_at, r.processed_at)))
        .collect();
    let start: chrono::DateTime<chrono::Utc> = wall.into();
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut c = Vec::new();
    let us = |d: chrono::TimeDelta| {
        u32::try_from(d.num_microseconds().unwrap_or(0).max(0)).unwrap_or(u32::MAX)
    };
    for s in res.samples.iter().filter(|s| s.sent >= lo && s.sent < hi) {
        let Some((created, Some(processed))) = by_id.get(&s.request_id) else {
            continue;
        };
        let sent = start + chrono::TimeDelta::microseconds((s.sent * 1e6) as i64);
        let recv = sent + chrono::TimeDelta::microseconds(i64::from(s.latency_us));
        a.push(us(*created - sent));
        b.push(us(*processed - *created));
        c.push(us(recv - *processed));
    }
    [
        (
            "POS publish → order stage starts (qr_validation + 2 queues)",
            a,
        ),
        ("order → settlement decides (order, fee + 2 queues)", b),
        ("settlement → result at POS (commit, fanout + 2 queues)", c),
    ]
    .into_iter()
    .filter_map(|(name, v)| {
        let l = Latency::of(v)?;
        Some(Segment {
            name: name.into(),
            p50_ms: l.p50_ms,
            p90_ms: l.p90_ms,
            p99_ms: l.p99_ms,
            mean_ms: l.mean_ms,
        })
    })
    .collect()
}
