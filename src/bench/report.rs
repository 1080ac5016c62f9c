//! The benchmark report: one JSON shape for the pipeline and both baselines, a hand-written
//! SVG plot (throughput and latency over time, latency CDF), and the summary of a `make bench`
//! directory with the ratios the targets are stated in.

use super::load::QueueDepth;
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

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

struct Panel {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

impl Panel {
    fn px(&self, f: f64) -> f64 {
        self.x + f.clamp(0.0, 1.0) * self.w
    }
    fn py(&self, f: f64) -> f64 {
        self.y + self.h - f.clamp(0.0, 1.0) * self.h
    }
}

fn log_frac(v: f64, lo: f64, hi: f64) -> f64 {
    (v.max(lo).ln() - lo.ln()) / (hi.ln() - lo.ln())
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

fn polyline(out: &mut String, pts: &[(f64, f64)], color: &str, width: f64) {
    if pts.is_empty() {
        return;
    }
    let d: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = writeln!(
        out,
        r#"<polyline fill="none" stroke="{color}" stroke-width="{width}" points="{}"/>"#,
        d.join(" ")
    );
}

fn text(out: &mut String, x: f64, y: f64, anchor: &str, size: u32, s: &str) {
    let _ = writeln!(
        out,
        r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}" font-size="{size}">{}</text>"#,
        esc(s)
    );
}

const LAT_TICKS: [f64; 7] = [0.1, 1.0, 10.0, 100.0, 1000.0, 10_000.0, 100_000.0];

/// Throughput over time, latency over time (log scale) and the latency CDF, in one SVG.
pub fn svg(r: &Report) -> String {
    let (w, h) = (960.0, 900.0);
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">"#
    );
    let _ = writeln!(o, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let title = format!(
        "campuspay bench — {} ({}{}): {:.0}/s, p50 {:.1} ms, p99 {:.1} ms",
        r.label,
        r.mode,
        r.offered_rate
            .map(|x| format!(" at {x:.0}/s offered"))
            .unwrap_or_default(),
        r.throughput_per_sec,
        r.latency.as_ref().map(|l| l.p50_ms).unwrap_or(0.0),
        r.latency.as_ref().map(|l| l.p99_ms).unwrap_or(0.0),
    );
    text(&mut o, w / 2.0, 24.0, "middle", 16, &title);
    let secs = r.per_second.len().max(1) as f64;
    let tx = |p: &Panel, t: f64| p.px(t / secs);

    // 1. Throughput over time.
    let p1 = Panel {
        x: 80.0,
        y: 50.0,
        w: 840.0,
        h: 200.0,
    };
    let top = nice_max(
        r.per_second
            .iter()
            .map(|s| s.done.max(s.sent) as f64)
            .fold(0.0, f64::max),
    );
    axes(&mut o, &p1, "payments / s (sent grey, answered blue)");
    for i in 0..=4 {
        let v = top * f64::from(i) / 4.0;
        let y = p1.py(v / top);
        let _ = writeln!(
            o,
            r##"<line x1="{:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/>"##,
            p1.x,
            p1.x + p1.w
        );
        text(&mut o, p1.x - 6.0, y + 4.0, "end", 11, &format!("{v:.0}"));
    }
    warmup_band(&mut o, &p1, r.warmup_secs / secs);
    let sent: Vec<(f64, f64)> = r
        .per_second
        .iter()
        .map(|s| (tx(&p1, f64::from(s.t)), p1.py(s.sent as f64 / top)))
        .collect();
    let done: Vec<(f64, f64)> = r
        .per_second
        .iter()
        .map(|s| (tx(&p1, f64::from(s.t)), p1.py(s.done as f64 / top)))
        .collect();
    polyline(&mut o, &sent, "#999", 1.5);
    polyline(&mut o, &done, "#1f77b4", 2.0);
    time_ticks(&mut o, &p1, secs);

    // 2. Latency over time (of payments sent in each second), log scale.
    let p2 = Panel {
        x: 80.0,
        y: 300.0,
        w: 840.0,
        h: 240.0,
    };
    let hi = r
        .per_second
        .iter()
        .filter_map(|s| s.max_ms)
        .fold(10.0, f64::max);
    let hi = 10f64.powf(hi.log10().ceil());
    let lo = 0.1;
    axes(
        &mut o,
        &p2,
        "latency ms, log (p50 green, p99 orange, max red), by send second",
    );
    log_grid(&mut o, &p2, lo, hi, false);
    warmup_band(&mut o, &p2, r.warmup_secs / secs);
    for (f, color) in [
        (
            Box::new(|s: &Second| s.max_ms) as Box<dyn Fn(&Second) -> Option<f64>>,
            "#d62728",
        ),
        (Box::new(|s: &Second| s.p99_ms), "#ff7f0e"),
        (Box::new(|s: &Second| s.p50_ms), "#2ca02c"),
    ] {
        let pts: Vec<(f64, f64)> = r
            .per_second
            .iter()
            .filter_map(|s| f(s).map(|v| (tx(&p2, f64::from(s.t)), p2.py(log_frac(v, lo, hi)))))
            .collect();
        polyline(&mut o, &pts, color, 1.5);
    }
    time_ticks(&mut o, &p2, secs);

    // 3. Latency CDF of the measured window.
    let p3 = Panel {
        x: 80.0,
        y: 600.0,
        w: 840.0,
        h: 250.0,
    };
    let hi3 = r.cdf.iter().map(|c| c.0).fold(10.0, f64::max);
    let hi3 = 10f64.powf(hi3.log10().ceil());
    axes(
        &mut o,
        &p3,
        "latency CDF after warm-up (x: latency ms, log; y: share of payments)",
    );
    log_grid(&mut o, &p3, lo, hi3, true);
    for i in 0..=4 {
        let q = f64::from(i) / 4.0;
        let y = p3.py(q);
        text(&mut o, p3.x - 6.0, y + 4.0, "end", 11, &format!("{q:.2}"));
    }
    let pts: Vec<(f64, f64)> = r
        .cdf
        .iter()
        .map(|(ms, q)| (p3.px(log_frac(*ms, lo, hi3)), p3.py(*q)))
        .collect();
    polyline(&mut o, &pts, "#1f77b4", 2.0);
    if let Some(l) = &r.latency {
        for (name, v) in [("p50", l.p50_ms), ("p99", l.p99_ms)] {
            let x = p3.px(log_frac(v, lo, hi3));
            let _ = writeln!(
                o,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" stroke="#999" stroke-dasharray="4,3"/>"##,
                p3.y,
                p3.y + p3.h
            );
            text(
                &mut o,
                x + 4.0,
                // p99 one line below p50: they are often close together.
                p3.y + if name == "p50" { 14.0 } else { 28.0 },
                "start",
                11,
                &format!("{name} {v:.1} ms"),
            );
        }
    }
    o.push_str("</svg>\n");
    o
}

fn axes(o: &mut String, p: &Panel, label: &str) {
    let _ = writeln!(
        o,
        r##"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#333"/>"##,
        p.x, p.y, p.w, p.h
    );
    text(o, p.x, p.y - 8.0, "start", 13, label);
}

fn warmup_band(o: &mut String, p: &Panel, frac: f64) {
    if frac > 0.0 {
        let _ = writeln!(
            o,
            r##"<rect x="{}" y="{}" width="{:.1}" height="{}" fill="#f3f3f3"/>"##,
            p.x,
            p.y,
            frac.min(1.0) * p.w,
            p.h
        );
        text(o, p.x + 4.0, p.y + 14.0, "start", 11, "warm-up");
    }
}

fn time_ticks(o: &mut String, p: &Panel, secs: f64) {
    let step = nice_max(secs / 8.0).max(1.0);
    let mut t = 0.0;
    while t <= secs {
        let x = p.px(t / secs);
        text(o, x, p.y + p.h + 16.0, "middle", 11, &format!("{t:.0}s"));
        t += step;
    }
}

fn log_grid(o: &mut String, p: &Panel, lo: f64, hi: f64, horizontal_axis: bool) {
    for v in LAT_TICKS.iter().copied().filter(|v| *v >= lo && *v <= hi) {
        let f = log_frac(v, lo, hi);
        let label = if v < 1.0 {
            format!("{v}")
        } else {
            format!("{v:.0}")
        };
        if horizontal_axis {
            let x = p.px(f);
            let _ = writeln!(
                o,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{}" y2="{}" stroke="#eee"/>"##,
                p.y,
                p.y + p.h
            );
            text(o, x, p.y + p.h + 16.0, "middle", 11, &label);
        } else {
            let y = p.py(f);
            let _ = writeln!(
                o,
                r##"<line x1="{}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/>"##,
                p.x,
                p.x + p.w
            );
            text(o, p.x - 6.0, y + 4.0, "end", 11, &label);
        }
    }
}

/// A one-line human summary of a report.
pub fn one_line(r: &Report) -> String {
    let lat = r
        .latency
        .as_ref()
        .map(|l| {
            format!(
                "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
            )
        })
        .unwrap_or_else(|| "no latency samples".into());
    format!(
        "{}: {:.0}/s ({} answered in {:.0} s) — {lat}",
        r.label, r.throughput_per_sec, r.completed, r.duration_secs
    )
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

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    pub goal: String,
    pub measured: Option<f64>,
    pub met: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub runs: Vec<SummaryRow>,
    pub pipeline_max: Option<f64>,
    pub chain_max: Option<f64>,
    pub pgbench_tps: Option<f64>,
    pub ratio_pipeline_chain: Option<f64>,
    pub ratio_pipeline_pgbench: Option<f64>,
    pub targets: Vec<Target>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SummaryRow {
    pub file: String,
    pub kind: String,
    pub label: String,
    pub mode: String,
    pub offered_rate: Option<f64>,
    pub throughput_per_sec: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub timeouts: u64,
    /// Cores used by processes that are not part of the benchmark (a shared machine): above
    /// ~0.1 the run was disturbed.
    pub other_cores: Option<f64>,
}

/// Reads every report in `dir` and works out the ratios and targets (DESIGN/issue #6).
pub fn summarize(dir: &Path) -> Result<(Summary, String), String> {
    let mut reports: Vec<(String, Report)> = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut paths: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter(|p| p.file_name().is_some_and(|n| n != "summary.json"))
        .collect();
    paths.sort();
    for p in paths {
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        if let Ok(r) = serde_json::from_str::<Report>(&text) {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            reports.push((name, r));
        }
    }
    if reports.is_empty() {
        return Err(format!("no bench reports in {}", dir.display()));
    }
    let best = |kind: &str, mode: &str| {
        reports
            .iter()
            .filter(|(_, r)| r.kind == kind && r.mode == mode)
            .map(|(_, r)| r.throughput_per_sec)
            .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))))
    };
    let pipeline_max = best("pipeline", "closed");
    let chain_max = best("chain", "closed").or_else(|| best("chain", "open"));
    let pgbench_tps = best("pgbench", "closed");
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let ratio_pipeline_chain = ratio(pipeline_max, chain_max);
    let ratio_pipeline_pgbench = ratio(pipeline_max, pgbench_tps);
    let open_at = |rate: f64| {
        reports
            .iter()
            .find(|(_, r)| r.kind == "pipeline" && r.mode == "open" && r.offered_rate == Some(rate))
    };
    let p99_at_1000 = open_at(1000.0).and_then(|(_, r)| r.latency.as_ref().map(|l| l.p99_ms));
    // The soak: an open-loop pipeline run at 1,000/s or more, measured for 10 minutes or more.
    let soak_growth = reports
        .iter()
        .filter(|(_, r)| r.kind == "pipeline" && r.mode == "open")
        .filter(|(_, r)| r.offered_rate.is_some_and(|x| x >= 1000.0) && r.duration_secs >= 600.0)
        .filter_map(|(_, r)| r.worker_rss_mb.as_ref().map(|m| m.growth()))
        .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))));
    let target = |name: &str, goal: &str, measured: Option<f64>, ok: &dyn Fn(f64) -> bool| Target {
        name: name.into(),
        goal: goal.into(),
        measured,
        met: measured.map(ok),
    };
    let targets = vec![
        target(
            "pipeline max throughput (payments/s)",
            ">= 3000",
            pipeline_max,
            &|v| v >= 3000.0,
        ),
        target("pipeline / chain", ">= 1.5", ratio_pipeline_chain, &|v| {
            v >= 1.5
        }),
        target(
            "pipeline / pgbench",
            ">= 1.3",
            ratio_pipeline_pgbench,
            &|v| v >= 1.3,
        ),
        target("p99 at 1000/s offered (ms)", "<= 50", p99_at_1000, &|v| {
            v <= 50.0
        }),
        // "Flat" with room for allocator noise: a leak of one small allocation per payment
        // would add ~600,000 of them over the soak, far more than this.
        target(
            "worker RSS growth over a 10-min soak at 1000/s (MiB)",
            "<= 5",
            soak_growth,
            &|v| v <= 5.0,
        ),
    ];
    let runs: Vec<SummaryRow> = reports
        .iter()
        .map(|(f, r)| SummaryRow {
            file: f.clone(),
            kind: r.kind.clone(),
            label: r.label.clone(),
            mode: r.mode.clone(),
            offered_rate: r.offered_rate,
            throughput_per_sec: r.throughput_per_sec,
            p50_ms: r.latency.as_ref().map(|l| l.p50_ms),
            p99_ms: r.latency.as_ref().map(|l| l.p99_ms),
            timeouts: r.timeouts,
            other_cores: r.cpu.as_ref().and_then(|c| c.cores.get("other").copied()),
        })
        .collect();
    let mut runs = runs;
    let rank = |k: &str| match k {
        "chain" => 0,
        "pgbench" => 1,
        "pipeline" => 2,
        _ => 3,
    };
    runs.sort_by(|a, b| {
        (
            rank(&a.kind),
            &a.kind,
            &a.mode,
            a.offered_rate.unwrap_or(0.0) as u64,
        )
            .cmp(&(
                rank(&b.kind),
                &b.kind,
                &b.mode,
                b.offered_rate.unwrap_or(0.0) as u64,
            ))
    });
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| run | mode | offered/s | throughput/s | p50 ms | p99 ms | timeouts | other cores |"
    );
    let _ = writeln!(t, "|---|---|---:|---:|---:|---:|---:|---:|");
    let opt = |v: Option<f64>, prec: usize| {
        v.map(|x| format!("{x:.prec$}"))
            .unwrap_or_else(|| "–".into())
    };
    for r in &runs {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} |",
            r.label,
            r.mode,
            opt(r.offered_rate, 0),
            r.throughput_per_sec,
            opt(r.p50_ms, 1),
            opt(r.p99_ms, 1),
            r.timeouts,
            opt(r.other_cores, 2)
        );
    }
    let _ = writeln!(t);
    let _ = writeln!(t, "| target | goal | measured | met |");
    let _ = writeln!(t, "|---|---|---:|---|");
    for x in &targets {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} |",
            x.name,
            x.goal,
            opt(x.measured, 2),
            match x.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "not measured",
            }
        );
    }
    Ok((
        Summary {
            runs,
            pipeline_max,
            chain_max,
            pgbench_tps,
            ratio_pipeline_chain,
            ratio_pipeline_pgbench,
            targets,
        },
        t,
    ))
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

    #[test]
    fn svg_is_well_formed_enough() {
        let samples: Vec<(f64, u32)> = (0..1000)
            .map(|i| (f64::from(i) / 100.0, 1000 + i))
            .collect();
        let (per_second, cdf) = series(&samples, &[], 2.0, &[100; 10], &[5; 10]);
        assert_eq!(per_second.len(), 10);
        let r = Report {
            label: "t".into(),
            mode: "closed".into(),
            warmup_secs: 2.0,
            per_second,
            cdf,
            latency: Latency::of(samples.iter().map(|s| s.1).collect()),
            ..Report::default()
        };
        let s = svg(&r);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<polyline").count(), 6);
    }
}
