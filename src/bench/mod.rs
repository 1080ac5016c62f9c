//! `campuspay bench`: measures the pipeline end to end on its own fresh database and vhost, and
//! the two baselines the targets are stated against (`docs/PERFORMANCE.md`):
//!
//! - the pipeline: a campus is seeded in bulk (`seed`), a worker process (`campuspay run`, so
//!   the load generator's CPU is not the worker's) runs every stage and the platform, whose
//!   result hub consumes the cardholders' copies, and the load generator (`load`) plays POS
//!   terminals, open loop at a fixed rate or closed loop with a fixed number of payments in
//!   flight;
//! - `--baseline chain`: five confirmed quorum-queue hops, one message per payment, same
//!   library, same load generator (`chain`);
//! - `--baseline pgbench`: `pgbench -b tpcb-like` against the same PostgreSQL (`pgbench`);
//! - `--summarize DIR`: the ratios and targets over a directory of reports (`report`).
//!
//! Every run writes the same report (JSON, and an SVG plot). Databases and vhosts are named
//! `cp_bench_<random>` and dropped at the end, on error, and on Ctrl-C (`--keep` keeps them).
//!
//! One file per scenario (`pipeline`, `chain`, `pgbench`); `env` is the scratch database and
//! vhost, `children` the worker processes. This file holds the arguments, the dispatch and what
//! the scenarios share: the interrupt flag and filling in the report.

pub mod chain;
mod children;
mod env;
pub mod load;
pub mod pgbench;
mod pipeline;
pub mod report;
pub mod scrape;
pub mod seed;
pub mod summary;
pub mod svg;
pub mod sys;

use campuspay::auth::AuthError;
use campuspay::auth::JwtKeys;
use campuspay::broker::topology::StageName;
use campuspay::broker::BrokerError;
use campuspay::config::Config;
use campuspay::db::DbError;
use campuspay::domain::{MerchantId, TerminalId};
use clap::{Args, ValueEnum};
use load::{LoadResult, Mode, TerminalSpec};
use report::{Latency, Report};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::watch;

/// Why a bench run failed. Displayed like the command line's own errors, which it becomes.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0}")]
    Failed(String),
}

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
    /// Cardholders in the benchmark campus.
    #[arg(long, default_value_t = 10_000)]
    pub cards: usize,
    /// Terminals (tills) in the benchmark campus.
    #[arg(long, default_value_t = 200)]
    pub terminals: usize,
    /// Merchants in the benchmark campus.
    #[arg(long, default_value_t = 20)]
    pub merchants: usize,
    /// AMQP connections the simulated terminals share (default: one per terminal).
    #[arg(long)]
    pub pos_connections: Option<usize>,
    /// Worker processes running every stage and the platform (`campuspay run`); 0 runs the
    /// stages inside the bench process instead.
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
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also write the QR code (or chart) as an SVG image to this file.
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
    /// Scrape the workers' `/metrics` for per-stage batch statistics (batches, batch time, how
    /// busy each stage is).
    #[arg(long)]
    pub worker_metrics: bool,
    /// Run the workers as `campuspay run --no-http`: without the platform, whose result hub
    /// consumes the cardholders' copies of the results as in production (without it they go
    /// to `pay.unrouted`).
    #[arg(long)]
    pub no_result_hub: bool,
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

fn fail(e: impl std::fmt::Display) -> BenchError {
    BenchError::Failed(e.to_string())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BenchError> + Send + 'static,
) -> Result<T, BenchError> {
    tokio::task::spawn_blocking(f).await.map_err(fail)?
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
        started_at: campuspay::messages::format_time(chrono::Utc::now()),
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
        let get = |m: &scrape::Metrics, name: &str, stage: &str| {
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

fn check(rx: &watch::Receiver<bool>) -> Result<(), BenchError> {
    if *rx.borrow() {
        Err(fail("interrupted"))
    } else {
        Ok(())
    }
}

fn terminal_specs(
    terminals: &[(String, String)],
    jwt: &JwtKeys,
) -> Result<Vec<TerminalSpec>, BenchError> {
    terminals
        .iter()
        .map(|(m, t)| {
            // The seed's terminals are new: token version 1.
            let token = jwt.issue_terminal(
                &MerchantId::parse(m).map_err(fail)?,
                &TerminalId::parse(t).map_err(fail)?,
                1,
            )?;
            Ok(TerminalSpec {
                merchant: m.clone(),
                terminal: t.clone(),
                token,
            })
        })
        .collect()
}

fn finish(report: &Report, args: &BenchArgs) -> Result<ExitCode, BenchError> {
    outln!("{}", report::human(report));
    report::write_outputs(report, args.json.as_deref(), args.svg.as_deref()).map_err(fail)?;
    Ok(if report.interrupted || report.completed == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Entry point of `campuspay bench`.
pub async fn run(args: BenchArgs, config: Config) -> Result<ExitCode, BenchError> {
    if args.chain_worker {
        return chain::chain_worker(&config, args.chain_hops.max(1)).await;
    }
    if let Some(dir) = &args.summarize {
        return summarize(dir);
    }
    if cfg!(debug_assertions) {
        eprintln!("[bench] WARNING: a debug build; numbers are not representative (cargo build --release)");
    }
    let stop = watch_interrupt();
    match args.baseline {
        Some(Baseline::Chain) => chain::bench_chain(&args, &config, stop).await,
        Some(Baseline::Pgbench) => pgbench::bench_pgbench(&args, &config, stop).await,
        None => pipeline::bench_pipeline(&args, &config, stop).await,
    }
}

fn summarize(dir: &Path) -> Result<ExitCode, BenchError> {
    let (summary, table) = summary::summarize(dir).map_err(fail)?;
    outln!("{table}");
    let fmt = |v: Option<f64>| v.map(|x| format!("{x:.0}")).unwrap_or_else(|| "–".into());
    let ratio = |v: Option<f64>| v.map(|x| format!("{x:.2}×")).unwrap_or_else(|| "–".into());
    outln!(
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
