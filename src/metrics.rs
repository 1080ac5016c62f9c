//! Process-wide metrics in Prometheus text format (`GET /metrics`): per stage, batches and
//! messages processed, dead-lettered and retried, handling latency; per result, final outcomes
//! by status and reason. Hand-rolled (a few atomics behind one mutex-free map per series) rather
//! than a metrics framework: the set of series is small and fixed.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Latency buckets in seconds: from a fast batch to a stuck one.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum in microseconds (integer, so it can be atomic).
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Registry {
    /// (metric, labels) → counter
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
    /// stage → batch latency
    latency: Mutex<BTreeMap<String, std::sync::Arc<Histogram>>>,
}

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Registry::default)
}

fn add(metric: &'static str, labels: String, n: u64) {
    let mut c = registry()
        .counters
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    *c.entry((metric, labels)).or_default() += n;
}

/// A stage settled a batch: `messages` deliveries, of which `dead` were dead-lettered.
pub fn batch_done(stage: &str, messages: usize, dead: usize, secs: f64) {
    add(
        "campuspay_stage_batches_total",
        format!("stage=\"{stage}\""),
        1,
    );
    add(
        "campuspay_stage_messages_total",
        format!("stage=\"{stage}\""),
        messages as u64,
    );
    if dead > 0 {
        add(
            "campuspay_stage_dead_lettered_total",
            format!("stage=\"{stage}\""),
            dead as u64,
        );
    }
    let h = {
        let mut l = registry().latency.lock().unwrap_or_else(|p| p.into_inner());
        l.entry(stage.to_owned()).or_default().clone()
    };
    h.observe(secs);
}

/// A stage had to retry a batch (database down, publish failed, …).
pub fn batch_retried(stage: &str) {
    add(
        "campuspay_stage_retries_total",
        format!("stage=\"{stage}\""),
        1,
    );
}

/// Fan-out published a final result.
pub fn result(status: &str, reason: Option<&str>) {
    add(
        "campuspay_results_total",
        format!("status=\"{status}\",reason=\"{}\"", reason.unwrap_or("")),
        1,
    );
}

/// Queue backlog as read from the broker at scrape time: (queue, ready, unacked, consumers).
pub type Backlog = Vec<(String, i64, i64, i64)>;

/// The exposition text.
pub fn render(backlog: &Backlog) -> String {
    let mut out = String::new();
    let helps = [
        (
            "campuspay_stage_batches_total",
            "Batches settled (acked after commit and confirm) per stage.",
        ),
        (
            "campuspay_stage_messages_total",
            "Deliveries settled per stage.",
        ),
        (
            "campuspay_stage_dead_lettered_total",
            "Deliveries dead-lettered per stage.",
        ),
        (
            "campuspay_stage_retries_total",
            "In-place retries of a failing batch per stage.",
        ),
        (
            "campuspay_results_total",
            "Final results fanned out, by status and reason.",
        ),
    ];
    let counters = registry()
        .counters
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for (name, help) in helps {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for ((metric, labels), v) in &counters {
            if *metric == name {
                let _ = writeln!(out, "{name}{{{labels}}} {v}");
            }
        }
    }
    let name = "campuspay_stage_batch_seconds";
    let _ = writeln!(out, "# HELP {name} Time to handle a batch, publish its output and ack it.\n# TYPE {name} histogram");
    let latency = registry()
        .latency
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for (stage, h) in &latency {
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{stage=\"{stage}\",le=\"{b}\"}} {}",
                h.counts[i].load(Ordering::Relaxed)
            );
        }
        let count = h.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{stage=\"{stage}\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "{name}_sum{{stage=\"{stage}\"}} {}",
            h.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{stage=\"{stage}\"}} {count}");
    }
    for (metric, help, idx) in [
        ("campuspay_queue_ready", "Messages ready in the queue.", 1),
        (
            "campuspay_queue_unacked",
            "Messages delivered but not acked.",
            2,
        ),
        ("campuspay_queue_consumers", "Consumers of the queue.", 3),
    ] {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} gauge");
        for q in backlog {
            let v = match idx {
                1 => q.1,
                2 => q.2,
                _ => q.3,
            };
            let _ = writeln!(out, "{metric}{{queue=\"{}\"}} {v}", q.0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        batch_done("unit_test_stage", 3, 1, 0.004);
        result("declined", Some("code_used"));
        let text = render(&vec![("campuspay.fee".into(), 5, 1, 2)]);
        assert!(text.contains("campuspay_stage_messages_total{stage=\"unit_test_stage\"} 3"));
        assert!(text.contains("campuspay_stage_dead_lettered_total{stage=\"unit_test_stage\"} 1"));
        assert!(text.contains(
            "campuspay_stage_batch_seconds_bucket{stage=\"unit_test_stage\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "campuspay_stage_batch_seconds_bucket{stage=\"unit_test_stage\",le=\"0.0025\"} 0"
        ));
        assert!(text.contains("campuspay_results_total{status=\"declined\",reason=\"code_used\"}"));
        assert!(text.contains("campuspay_queue_ready{queue=\"campuspay.fee\"} 5"));
    }
}
