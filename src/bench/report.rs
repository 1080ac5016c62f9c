//! The benchmark report: one JSON shape for the pipeline and both baselines, the series it
//! plots, and its text rendering. The SVG plot is `svg`; the summary of a `make bench`
//! directory, with the ratios the targets are stated in, is `summary`.

use super::load::QueueDepth;
use super::svg::svg;
use super::sys::{CpuReport, Machine, RssReport};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub samples: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// Nearest-rank percentile of sorted microseconds, in ms.
pub fn pct(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let idx = ((sorted_us.len() as f64) * p).ceil() as usize;
    f64::from(sorted_us[idx.clamp(1, sorted_us.len()) - 1]) / 1000.0
}

impl Latency {
    pub fn of(mut us: Vec<u32>) -> Option<Latency> {
        if us.is_empty() {
            return None;
        }
        us.sort_unstable();
        let mean = us.iter().map(|&v| f64::from(v)).sum::<f64>() / us.len() as f64 / 1000.0;
        Some(Latency {
            samples: us.len(),
            mean_ms: mean,
            p50_ms: pct(&us, 0.50),
            p90_ms: pct(&us, 0.90),
            p99_ms: pct(&us, 0.99),
            p999_ms: pct(&us, 0.999),
            max_ms: pct(&us, 1.0),
        })
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the start (the second ending at `t`).
    pub t: u32,
    pub warmup: bool,
    /// Payments sent in this second.
    pub sent: u64,
    /// Payments answered in this second.
    pub done: u64,
    pub in_flight: u64,
    /// Latency of the payments *sent* in this second.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// Time between two points of a payment's way, from timestamps (POS clock, PostgreSQL's
/// `transactions.created_at` and `processed_at`, POS clock again; one machine, one clock).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Segment {
    pub name: String,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
}

/// One stage's consumers over the measured window, from the workers' `/metrics`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StageStat {
    pub stage: String,
    pub batches: f64,
    /// Deliveries (stage messages) settled.
    pub messages: f64,
    /// Handle + publish with confirms + ack, per batch.
    pub mean_batch_ms: f64,
    /// Seconds spent in batches per second of the window, summed over the stage's consumers
    /// (settlement has one per shard): near 1.0 per consumer means the stage never waits.
    pub busy: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// `pipeline`, `chain` or `pgbench`.
    pub kind: String,
    pub label: String,
    /// `open` or `closed`.
    pub mode: String,
    pub offered_rate: Option<f64>,
    pub in_flight_limit: Option<usize>,
    pub warmup_secs: f64,
    pub duration_secs: f64,
    pub cards: Option<usize>,
    pub terminals: Option<usize>,
    pub pos_connections: Option<usize>,
    pub workers: Option<u32>,
    pub prefetch: Option<u16>,
    pub started_at: String,
    pub command: String,
    /// Payments handed to terminals over the whole run (warm-up included).
    pub sent: u64,
    /// Answered within the measured window (after the warm-up).
    pub completed: u64,
    /// Answered per second within the measured window.
    pub throughput_per_sec: f64,
    /// Of the payments sent within the measured window.
    pub latency: Option<Latency>,
    /// Answers by outcome within the measured window (`approved`, `declined:<reason>`, …).
    pub outcomes: BTreeMap<String, u64>,
    pub timeouts: u64,
    pub publish_errors: u64,
    pub not_sent: u64,
    pub late_or_duplicate: u64,
    pub out_of_codes: bool,
    pub interrupted: bool,
    pub scheduler_lag_p99_ms: Option<f64>,
    pub stages: Vec<Segment>,
    pub stage_stats: Vec<StageStat>,
    pub cpu: Option<CpuReport>,
    pub worker_rss_mb: Option<RssReport>,
    /// Messages in each queue (ready + unacked), sampled from the management API.
    pub queues: BTreeMap<String, QueueDepth>,
    /// Broker work per answered payment (management API totals over the whole run): `vhost.*`
    /// publishes, deliveries, acks, confirms; `queue.<name>` messages routed into each queue.
    /// For a stage queue, 1 / value is the average number of payments per message (batch).
    pub broker_per_payment: BTreeMap<String, f64>,
    pub ledger_ok: Option<bool>,
    pub per_second: Vec<Second>,
    /// (latency ms, share of payments at or below it).
    pub cdf: Vec<(f64, f64)>,
    pub machine: Machine,
    pub notes: Vec<String>,
}

/// Per-second series and CDF from (sent offset s, latency µs) pairs.
/// `lost`: payments that got no answer, at the timeout; they count in the latency series and
/// the CDF (as a lower bound), not as answered.
pub fn series(
    samples: &[(f64, u32)],
    lost: &[(f64, u32)],
    warmup: f64,
    sent_per_second: &[u64],
    in_flight_per_second: &[u64],
) -> (Vec<Second>, Vec<(f64, f64)>) {
    let mut by_sent: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let mut done: BTreeMap<u32, u64> = BTreeMap::new();
    for &(sent, us) in samples {
        by_sent.entry(sent as u32).or_default().push(us);
        *done.entry((sent + f64::from(us) / 1e6) as u32).or_default() += 1;
    }
    for &(sent, us) in lost {
        by_sent.entry(sent as u32).or_default().push(us);
    }
    let last = by_sent
        .keys()
        .chain(done.keys())
        .copied()
        .max()
        .unwrap_or(0)
        .max(sent_per_second.len() as u32);
    let mut out = Vec::new();
    for t in 0..=last {
        let lat = by_sent.remove(&t).map(|mut v| {
            v.sort_unstable();
            v
        });
        out.push(Second {
            t: t + 1,
            warmup: f64::from(t) < warmup,
            sent: sent_per_second.get(t as usize).copied().unwrap_or(0),
            done: done.get(&t).copied().unwrap_or(0),
            in_flight: in_flight_per_second.get(t as usize).copied().unwrap_or(0),
            p50_ms: lat.as_ref().map(|v| pct(v, 0.5)),
            p99_ms: lat.as_ref().map(|v| pct(v, 0.99)),
            max_ms: lat.as_ref().map(|v| pct(v, 1.0)),
        });
    }
    while out.last().is_some_and(|s| s.sent == 0 && s.done == 0) {
        out.pop();
    }
    let mut measured: Vec<u32> = samples
        .iter()
        .chain(lost)
        .filter(|(s, _)| *s >= warmup)
        .map(|(_, us)| *us)
        .collect();
    measured.sort_unstable();
    let mut cdf = Vec::new();
    if !measured.is_empty() {
        for i in 0..=200 {
            let q = f64::from(i) / 200.0;
            cdf.push((pct(&measured, q.max(1e-9)), q));
        }
        cdf.push((pct(&measured, 0.999), 0.999));
        cdf.sort_by(|a, b| a.1.total_cmp(&b.1));
    }
    (out, cdf)
}

/// Human-readable report.
pub fn human(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n== {} ({}) ==", r.label, r.kind);
    let _ = writeln!(
        s,
        "mode {}{}{}, warm-up {:.0} s, measured {:.0} s",
        r.mode,
        r.offered_rate
            .map(|x| format!(", offered {x:.0}/s"))
            .unwrap_or_default(),
        r.in_flight_limit
            .map(|x| format!(", {x} in flight"))
            .unwrap_or_default(),
        r.warmup_secs,
        r.duration_secs
    );
    let _ = writeln!(
        s,
        "throughput      {:.0}/s ({} answered in the window, {} sent in all)",
        r.throughput_per_sec, r.completed, r.sent
    );
    if let Some(l) = &r.latency {
        let _ = writeln!(
            s,
            "latency         p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  p99.9 {:.1} ms  max {:.1} ms  (mean {:.1} ms, {} samples)",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms, l.samples
        );
    }
    if !r.outcomes.is_empty() {
        let o: Vec<String> = r.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(s, "outcomes        {}", o.join(", "));
    }
    let _ = writeln!(
        s,
        "problems        {} timed out, {} publish errors, {} not sent (overload), {} late/duplicate{}{}",
        r.timeouts,
        r.publish_errors,
        r.not_sent,
        r.late_or_duplicate,
        if r.out_of_codes { ", RAN OUT OF CODES" } else { "" },
        if r.interrupted { ", INTERRUPTED" } else { "" }
    );
    if let Some(lag) = r.scheduler_lag_p99_ms {
        let _ = writeln!(s, "scheduler lag   p99 {lag:.1} ms");
    }
    for seg in &r.stages {
        let _ = writeln!(
            s,
            "segment         {:<44} p50 {:>6.1} ms  p90 {:>6.1} ms  p99 {:>6.1} ms",
            seg.name, seg.p50_ms, seg.p90_ms, seg.p99_ms
        );
    }
    for st in &r.stage_stats {
        let _ = writeln!(
            s,
            "stage           {:<14} {:>7.0} batches, {:>5.1} deliveries/batch, {:>6.1} ms/batch, busy {:.2}",
            st.stage,
            st.batches,
            st.messages / st.batches.max(1.0),
            st.mean_batch_ms,
            st.busy
        );
    }
    if let Some(c) = &r.cpu {
        let parts: Vec<String> = c
            .cores
            .iter()
            .filter(|(k, _)| k.as_str() != "total")
            .map(|(k, v)| {
                format!(
                    "{k} {v:.2} ({:.0} µs/payment)",
                    c.us_per_payment.get(k).copied().unwrap_or(0.0)
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "cpu (cores)     machine busy {:.0} %: {}",
            c.machine_busy * 100.0,
            parts.join(", ")
        );
    }
    if let Some(m) = &r.worker_rss_mb {
        let _ = writeln!(
            s,
            "worker rss      {:.0} MiB after warm-up, {:.0} MiB at the end ({:+.1} MiB), {:.0} MiB max",
            m.after_warmup,
            m.end,
            m.growth(),
            m.max
        );
        // A long run (a soak) also shows the course, one value per minute.
        let per_minute = (60 / super::sys::RSS_SAMPLE_SECS) as usize;
        if m.samples.len() > 2 * per_minute {
            let course: Vec<String> = m
                .samples
                .iter()
                .step_by(per_minute)
                .map(|v| format!("{v:.0}"))
                .collect();
            let _ = writeln!(s, "rss per minute  {} MiB", course.join(" "));
        }
    }
    // Result queues of terminals are many and shallow: one line for all of them.
    let (pos, other): (Vec<_>, Vec<_>) = r.queues.iter().partition(|(q, _)| q.starts_with("pos."));
    let mut deep: Vec<String> = other
        .iter()
        .filter(|(_, d)| d.max > 0)
        .map(|(q, d)| format!("{q} max {} mean {:.0}", d.max, d.mean))
        .collect();
    if let Some(max) = pos.iter().map(|(_, d)| d.max).max() {
        deep.push(format!("pos.* ({} queues) max {max}", pos.len()));
    }
    if !deep.is_empty() {
        let _ = writeln!(s, "queue depth     {}", deep.join("; "));
    }
    if !r.broker_per_payment.is_empty() {
        let v: Vec<String> = r
            .broker_per_payment
            .iter()
            .filter(|(k, _)| k.starts_with("vhost."))
            .map(|(k, v)| format!("{} {v:.2}", &k[6..]))
            .collect();
        let _ = writeln!(s, "broker/payment  {}", v.join(", "));
        let q: Vec<String> = r
            .broker_per_payment
            .iter()
            .filter(|(k, v)| k.starts_with("queue.") && **v > 0.0)
            .map(|(k, v)| {
                let name = k[6..].trim_start_matches("campuspay.");
                if *v < 0.9 {
                    format!("{name} {v:.3} (batch {:.1})", 1.0 / v)
                } else {
                    format!("{name} {v:.2}")
                }
            })
            .collect();
        let _ = writeln!(s, "msgs/payment    {}", q.join(", "));
    }
    if let Some(ok) = r.ledger_ok {
        let _ = writeln!(
            s,
            "ledger          {}",
            if ok { "verifies" } else { "BROKEN" }
        );
    }
    for n in &r.notes {
        let _ = writeln!(s, "note            {n}");
    }
    s
}

pub fn write_outputs(
    r: &Report,
    json: Option<&Path>,
    svg_path: Option<&Path>,
) -> Result<(), String> {
    if let Some(p) = json {
        let text = serde_json::to_string_pretty(r).map_err(|e| e.to_string())?;
        std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()))?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = svg_path {
        std::fs::write(p, svg(r)).map_err(|e| format!("{}: {e}", p.display()))?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(pct(&v, 0.5), 50.0);
        assert_eq!(pct(&v, 0.99), 99.0);
        assert_eq!(pct(&v, 1.0), 100.0);
        assert_eq!(pct(&[], 0.5), 0.0);
    }
}
