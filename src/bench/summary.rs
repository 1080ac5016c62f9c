//! The summary of a directory of reports (`bench --summarize DIR`): the best runs, the ratios
//! and the targets they are stated in.

use super::report::Report;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

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

/// Reads every report in `dir` and works out the ratios and targets (docs/PERFORMANCE.md).
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
