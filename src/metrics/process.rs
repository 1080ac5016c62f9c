//! The process's own metrics, under the names Prometheus's client libraries use (`process_…`),
//! read from `/proc/self` at scrape time: no crate for four numbers. Elsewhere than Linux, or
//! when `/proc` is not mounted, they are left out.

use std::fmt::Write;

/// Clock ticks per second of `/proc/<pid>/stat`: USER_HZ, 100 on every Linux architecture
/// (the kernel's ABI; `sysconf(_SC_CLK_TCK)` would need libc for the same number).
const TICKS_PER_SEC: f64 = 100.0;
/// `VmRSS` in `/proc/self/status` is in kB (KiB): no page size needed, unlike `statm`.
const KIB: f64 = 1024.0;

fn rss_bytes() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * KIB)
}

/// (CPU seconds, user + system; start time in seconds since the epoch).
fn cpu_and_start() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 (utime), 15 (stime) and 22 (starttime) of proc(5); `rest` starts at field 3.
    let ticks = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    let cpu = (ticks(14)? + ticks(15)?) / TICKS_PER_SEC;
    let since_boot = ticks(22)? / TICKS_PER_SEC;
    let boot: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some((cpu, boot + since_boot))
}

fn open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

/// Appends the process metrics to `out`.
pub fn render(out: &mut String) {
    let mut gauge = |name: &str, kind: &str, help: &str, value: Option<f64>| {
        if let Some(v) = value {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
    };
    gauge(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        rss_bytes(),
    );
    let cpu_start = cpu_and_start();
    gauge(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        cpu_start.map(|c| c.0),
    );
    gauge(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch in seconds.",
        cpu_start.map(|c| c.1),
    );
    gauge(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        open_fds().map(|n| n as f64),
    );
}
