//! Where the CPU goes, from `/proc`: CPU time per component (the worker, the load generator,
//! RabbitMQ, PostgreSQL, everything else) over the measured window, the worker's resident
//! memory, and a description of the machine. Linux only; elsewhere the numbers are absent.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct CpuSnapshot {
    at: Instant,
    /// Clock ticks of user + system time per component.
    ticks: BTreeMap<String, u64>,
    /// Machine-wide busy and total ticks (all CPUs), from `/proc/stat`.
    busy: u64,
    total: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CpuReport {
    pub window_secs: f64,
    /// Average busy share of the whole machine (1.0 = every core busy).
    pub machine_busy: f64,
    /// CPU seconds per component over the window.
    pub cpu_secs: BTreeMap<String, f64>,
    /// Cores used on average per component (cpu seconds / window).
    pub cores: BTreeMap<String, f64>,
    /// CPU microseconds per completed payment, per component (`total` included).
    pub us_per_payment: BTreeMap<String, f64>,
}

fn clock_ticks() -> f64 {
    // CLK_TCK is 100 on every Linux we run on; `getconf` confirms it when available.
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// (comm, utime + stime) of one process.
fn proc_stat(pid: u32) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `comm` is in parentheses and may contain spaces: split at the last ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = text.get(close + 2..)?.split_whitespace().collect();
    // Fields after comm start at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

fn component(pid: u32, comm: &str, workers: &[u32]) -> &'static str {
    if workers.contains(&pid) {
        "worker"
    } else if pid == std::process::id() || comm == "pgbench" {
        "bench"
    } else if comm.starts_with("beam") || comm == "erl_child_setup" || comm == "epmd" {
        "rabbitmq"
    } else if comm == "postgres" || comm == "postmaster" {
        "postgres"
    } else {
        "other"
    }
}

pub fn snapshot(workers: &[u32]) -> CpuSnapshot {
    let mut ticks: BTreeMap<String, u64> = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some((comm, t)) = proc_stat(pid) {
                *ticks
                    .entry(component(pid, &comm, workers).to_owned())
                    .or_default() += t;
            }
        }
    }
    let (busy, total) = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let line = s.lines().next()?.to_owned();
            let v: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let total: u64 = v.iter().sum();
            // idle + iowait
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            Some((total.saturating_sub(idle), total))
        })
        .unwrap_or((0, 0));
    CpuSnapshot {
        at: Instant::now(),
        ticks,
        busy,
        total,
    }
}

/// CPU used between two snapshots. Processes that started or ended in between (short-lived
/// PostgreSQL backends) count only with what they had at the snapshots; the bench keeps its
/// connections open, so that is noise.
pub fn cpu_between(a: &CpuSnapshot, b: &CpuSnapshot, payments: u64) -> CpuReport {
    let hz = clock_ticks();
    let window = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    let mut cpu_secs = BTreeMap::new();
    let mut total = 0.0;
    for (k, &t1) in &b.ticks {
        let t0 = a.ticks.get(k).copied().unwrap_or(0);
        let secs = t1.saturating_sub(t0) as f64 / hz;
        total += secs;
        cpu_secs.insert(k.clone(), secs);
    }
    // Processes that start and end between the snapshots (a compiler run by someone else on a
    // shared machine) are in the machine-wide counters only: whatever the machine was busy
    // with beyond the named components counts as "other".
    let dt_all = b.total.saturating_sub(a.total) as f64;
    let busy_secs = b.busy.saturating_sub(a.busy) as f64 / hz;
    if dt_all > 0.0 {
        let named: f64 = cpu_secs
            .iter()
            .filter(|(k, _)| k.as_str() != "other")
            .map(|(_, v)| *v)
            .sum();
        let residual = (busy_secs - named).max(0.0);
        let other = cpu_secs.entry("other".into()).or_insert(0.0);
        if residual > *other {
            total += residual - *other;
            *other = residual;
        }
    }
    cpu_secs.insert("total".into(), total);
    let cores = cpu_secs
        .iter()
        .map(|(k, v)| (k.clone(), v / window))
        .collect();
    let us_per_payment = cpu_secs
        .iter()
        .map(|(k, v)| (k.clone(), v * 1e6 / payments.max(1) as f64))
        .collect();
    let dt = b.total.saturating_sub(a.total).max(1) as f64;
    CpuReport {
        window_secs: window,
        machine_busy: b.busy.saturating_sub(a.busy) as f64 / dt,
        cpu_secs,
        cores,
        us_per_payment,
    }
}

/// Resident memory of a process in MiB.
pub fn rss_mb(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RssReport {
    /// At the end of the warm-up.
    pub after_warmup: f64,
    pub end: f64,
    pub max: f64,
    /// Every RSS_SAMPLE_SECS from the start of the run: a soak shows whether memory is flat.
    #[serde(default)]
    pub samples: Vec<f64>,
}

/// Seconds between the RSS samples kept in the report.
pub const RSS_SAMPLE_SECS: u64 = 10;

impl RssReport {
    /// Growth over the measured window, in MiB: the end minus the end of the warm-up.
    pub fn growth(&self) -> f64 {
        self.end - self.after_warmup
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    pub hostname: String,
    pub nproc: usize,
    pub cpu_model: String,
    pub mem_total_mb: u64,
    pub kernel: String,
    pub postgres: String,
    pub rabbitmq: String,
    pub campuspay: String,
    pub build: String,
}

fn first_line(path: &str) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.lines().next().map(|l| l.trim().to_owned()))
        .unwrap_or_default()
}

/// What can be read locally; the servers' versions are filled in by the caller.
pub fn machine() -> Machine {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default();
    let mem_total_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0);
    Machine {
        hostname: first_line("/proc/sys/kernel/hostname"),
        nproc: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        cpu_model,
        mem_total_mb,
        kernel: first_line("/proc/sys/kernel/osrelease"),
        campuspay: env!("CARGO_PKG_VERSION").to_owned(),
        build: if cfg!(debug_assertions) {
            "debug (not representative)".into()
        } else {
            "release".into()
        },
        ..Machine::default()
    }
}
