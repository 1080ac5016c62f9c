//! Reading the workers' own metrics during a run: each worker serves Prometheus text, and the
//! bench sums the per-stage series over workers at the start and the end of the measured window.

use std::collections::BTreeMap;
use std::time::Duration;

/// `(metric name, stage label) → value`, from Prometheus text.
pub type Metrics = BTreeMap<(String, String), f64>;

pub(super) fn parse_metrics(text: &str, into: &mut Metrics) {
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        let (name, labels) = match key.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (key, ""),
        };
        // Per-stage series only, and not the histogram buckets.
        if name.ends_with("_bucket") {
            continue;
        }
        let Some(stage) = labels
            .split(',')
            .find_map(|kv| kv.strip_prefix("stage=\""))
            .map(|s| s.trim_end_matches('"').to_owned())
        else {
            continue;
        };
        *into.entry((name.to_owned(), stage)).or_default() += v;
    }
}

/// Scrapes every worker (blocking HTTP, so on the blocking pool).
pub(super) async fn scrape(urls: &[String]) -> Option<Metrics> {
    if urls.is_empty() {
        return None;
    }
    let urls = urls.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut m = Metrics::new();
        for u in &urls {
            let text = ureq::get(u)
                .timeout(Duration::from_secs(5))
                .call()
                .ok()?
                .into_string()
                .ok()?;
            parse_metrics(&text, &mut m);
        }
        Some(m)
    })
    .await
    .ok()
    .flatten()
}
