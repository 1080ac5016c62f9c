//! Process-wide metrics in Prometheus text format (`GET /metrics`): per stage, batches and
//! messages processed, dead-lettered and retried, handling latency; per result, final outcomes
//! by status and reason and the time from the pipeline's receipt of the request to the
//! result's publication; the platform's HTTP requests by route pattern and status, and their
//! duration; the process's own memory, CPU time, open files and start time (`process`).
//! Queue depths are not here: RabbitMQ's own exporter (rabbitmq_prometheus) serves them, so a
//! scrape costs the broker nothing. Hand-rolled (a few atomics behind a map per series) rather
//! than a metrics framework: the set of series is small and fixed.

pub mod process;

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
    /// (metric, labels) → histogram
    histograms: Mutex<BTreeMap<(&'static str, String), std::sync::Arc<Histogram>>>,
}

/// Histograms and their help text.
const HISTOGRAMS: [(&str, &str); 3] = [
    (
        "campuspay_stage_batch_seconds",
        "Time to handle a batch, publish its output and ack it.",
    ),
    (
        "campuspay_result_latency_seconds",
        "Time from the pipeline's receipt of a payment request to the publication of its answer (pending or final), by status.",
    ),
    (
        "campuspay_http_request_duration_seconds",
        "Time to answer an HTTP request of the platform, by route pattern (a stream: until its headers).",
    ),
];

fn observe(metric: &'static str, labels: String, secs: f64) {
    let h = {
        let mut l = registry()
            .histograms
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        l.entry((metric, labels)).or_default().clone()
    };
    h.observe(secs);
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
    observe(
        "campuspay_stage_batch_seconds",
        format!("stage=\"{stage}\""),
        secs,
    );
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

/// Fan-out published an answer `secs` after the pipeline received the request.
pub fn result_latency(status: &str, secs: f64) {
    observe(
        "campuspay_result_latency_seconds",
        format!("status=\"{status}\""),
        secs.max(0.0),
    );
}

/// The platform answered an HTTP request. `route` is the pattern (`/v1/orders/{id}`), never
/// the path, so the number of series stays bounded.
pub fn http_request(method: &str, route: &str, status: u16, secs: f64) {
    add(
        "campuspay_http_requests_total",
        format!("method=\"{method}\",route=\"{route}\",status=\"{status}\""),
        1,
    );
    observe(
        "campuspay_http_request_duration_seconds",
        format!("route=\"{route}\""),
        secs,
    );
}

/// The exposition text.
pub fn render() -> String {
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
        (
            "campuspay_http_requests_total",
            "HTTP requests the platform answered, by method, route pattern and status.",
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
    let histograms = registry()
        .histograms
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for (name, help) in HISTOGRAMS {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for ((metric, labels), h) in &histograms {
            if *metric != name {
                continue;
            }
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{{labels},le=\"{b}\"}} {}",
                    h.counts[i].load(Ordering::Relaxed)
                );
            }
            let count = h.count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
            let _ = writeln!(
                out,
                "{name}_sum{{{labels}}} {}",
                h.sum_us.load(Ordering::Relaxed) as f64 / 1e6
            );
            let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
        }
    }
    process::render(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_gauges() {
        batch_done("unit_test_stage", 3, 1, 0.004);
        result("declined", Some("code_used"));
        result_latency("approved", 0.3);
        http_request("GET", "/v1/orders/{id}", 200, 0.002);
        let text = render();
        assert!(text.contains("campuspay_stage_messages_total{stage=\"unit_test_stage\"} 3"));
        assert!(text.contains("campuspay_stage_dead_lettered_total{stage=\"unit_test_stage\"} 1"));
        assert!(text.contains(
            "campuspay_stage_batch_seconds_bucket{stage=\"unit_test_stage\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "campuspay_stage_batch_seconds_bucket{stage=\"unit_test_stage\",le=\"0.0025\"} 0"
        ));
        assert!(text.contains("campuspay_results_total{status=\"declined\",reason=\"code_used\"}"));
        assert!(text
            .contains("campuspay_result_latency_seconds_bucket{status=\"approved\",le=\"0.5\"} 1"));
        assert!(text.contains(
            "campuspay_http_requests_total{method=\"GET\",route=\"/v1/orders/{id}\",status=\"200\"} 1"
        ));
        assert!(text.contains("process_resident_memory_bytes "));
    }
}
