//! The database baseline: `pgbench -b tpcb-like` against the same PostgreSQL server, in a
//! scratch database created for the run and dropped after it. Transaction latencies come from
//! pgbench's per-transaction log, so the report has the same percentiles as the others.

use super::env::{postgres_version, BenchEnv};
use super::load::Mode;
use super::report::{self, Latency};
use super::{base_report, blocking, check, fail, finish, sys, BenchArgs, BenchError};
use campuspay::config::Config;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::ExitCode;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct PgbenchOptions {
    pub clients: u32,
    pub jobs: u32,
    pub scale: u32,
    pub duration: Duration,
}

#[derive(Debug, Default)]
pub struct PgbenchResult {
    pub tps: f64,
    pub transactions: u64,
    pub latency_avg_ms: Option<f64>,
    /// Per transaction: (start offset in seconds, latency µs).
    pub samples: Vec<(f64, u32)>,
    pub cpu: Option<sys::CpuReport>,
    pub version: String,
    pub command: String,
}

fn number_after(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.trim()
            .strip_prefix(prefix)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// Runs `pgbench -i` and then the tpcb-like script against `db_url` (which must exist and be
/// empty). Progress lines go to stderr as pgbench prints them.
pub fn run(db_url: &str, opts: &PgbenchOptions) -> Result<PgbenchResult, String> {
    let version = Command::new("pgbench")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .map_err(|e| format!("pgbench is not installed or not on PATH: {e}"))?;
    eprintln!("[pgbench] initialising scale {} …", opts.scale);
    let init = Command::new("pgbench")
        .args(["-i", "-q", "-s", &opts.scale.to_string(), db_url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("pgbench -i: {e}"))?;
    if !init.status.success() {
        return Err(format!(
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&init.stderr)
        ));
    }
    let logs = std::env::temp_dir().join(format!(
        "campuspay-pgbench-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ));
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let prefix = logs.join("pgbench_log");
    let args: Vec<String> = vec![
        "-b".into(),
        "tpcb-like".into(),
        "-c".into(),
        opts.clients.to_string(),
        "-j".into(),
        opts.jobs.to_string(),
        "-T".into(),
        opts.duration.as_secs().max(1).to_string(),
        "-P".into(),
        "1".into(),
        "-l".into(),
        format!("--log-prefix={}", prefix.display()),
        db_url.into(),
    ];
    let command = format!(
        "pgbench {}",
        args[..args.len() - 1]
            .iter()
            .filter(|a| !a.starts_with("--log-prefix"))
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    );
    eprintln!("[pgbench] {command}");
    let started = Instant::now();
    let mut child = Command::new("pgbench")
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("pgbench: {e}"))?;
    // CPU is sampled between the first and the last progress line: pgbench's connections
    // (and their PostgreSQL backends) exist only while it runs.
    let (mut cpu_a, mut cpu_b) = (None, None);
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            eprintln!("[pgbench] {line}");
            if line.starts_with("progress:") {
                let snap = sys::snapshot(&[]);
                if cpu_a.is_none() {
                    cpu_a = Some(snap);
                } else {
                    cpu_b = Some(snap);
                }
            }
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("pgbench: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&logs);
        return Err(format!("pgbench failed: {stdout}"));
    }
    let tps = number_after(&stdout, "tps =").ok_or_else(|| format!("no tps in: {stdout}"))?;
    let transactions =
        number_after(&stdout, "number of transactions actually processed:").unwrap_or(0.0) as u64;
    let latency_avg_ms = number_after(&stdout, "latency average =");

    // Per-transaction log: client_id transaction_no time_us script_no epoch_s epoch_us
    let mut samples = Vec::with_capacity(transactions as usize);
    let run_start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
        - started.elapsed().as_secs_f64();
    if let Ok(dir) = std::fs::read_dir(&logs) {
        for entry in dir.flatten() {
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            for line in text.lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                let (Some(lat), Some(s), Some(us)) = (
                    f.get(2).and_then(|v| v.parse::<u32>().ok()),
                    f.get(4).and_then(|v| v.parse::<f64>().ok()),
                    f.get(5).and_then(|v| v.parse::<f64>().ok()),
                ) else {
                    continue;
                };
                let end = s + us / 1e6;
                let sent = end - f64::from(lat) / 1e6 - run_start;
                samples.push((sent.max(0.0), lat));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&logs);
    Ok(PgbenchResult {
        tps,
        transactions,
        latency_avg_ms,
        samples,
        cpu: match (&cpu_a, &cpu_b) {
            (Some(a), Some(b)) => {
                let mut c = sys::cpu_between(a, b, 0);
                // Transactions in the window, at the run's average rate.
                let n = (tps * c.window_secs).max(1.0);
                for (k, v) in c.us_per_payment.iter_mut() {
                    *v = c.cpu_secs.get(k).copied().unwrap_or(0.0) * 1e6 / n;
                }
                Some(c)
            }
            _ => None,
        },
        version,
        command,
    })
}

pub(super) async fn bench_pgbench(
    args: &BenchArgs,
    config: &Config,
    stop: watch::Receiver<bool>,
) -> Result<ExitCode, BenchError> {
    let mut env = BenchEnv::create(config, true, false, args.keep).await?;
    let url = env.db_url.clone().unwrap_or_default();
    let opts = PgbenchOptions {
        clients: args.pgbench_clients,
        jobs: args.pgbench_jobs,
        scale: args.pgbench_scale,
        duration: Duration::from_secs(args.duration),
    };
    check(&stop)?;
    let pg_version = postgres_version(url.clone()).await;
    let res = {
        let url = url.clone();
        blocking(move || run(&url, &opts).map_err(fail)).await
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
