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
    /// The same figure for the POS contract alone (the 1-hop chain: a request in, a result
    /// out, no stages, no database), where it has one: a goal beyond it cannot be met by
    /// anything the stages do.
    pub floor: Option<f64>,
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
    /// The 1-hop chain (`--baseline chain --chain-hops 1`, closed loop): the POS contract alone.
    pub chain_1hop_max: Option<f64>,
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
    let low_load = low_load_figures(&reports, pipeline_max);
    let target = |name: &str, goal: &str, measured: Option<f64>, ok: &dyn Fn(f64) -> bool| Target {
        name: name.into(),
        goal: goal.into(),
        measured,
        floor: None,
        met: measured.map(ok),
    };
    let with_floor = |t: Target, floor: Option<f64>| Target { floor, ..t };
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
        // Cheap at the load a campus really has (docs/PERFORMANCE.md §9).
        // The floor: the 1-hop chain's CPU per payment at 200/s over the pipeline's at
        // saturation.
        with_floor(
            target(
                "CPU per payment at 200/s offered / at saturation",
                "<= 2",
                ratio(low_load.cpu_at_200, low_load.cpu_at_max),
                &|v| v <= 2.0,
            ),
            ratio(low_load.chain_1hop_cpu_at_200, low_load.cpu_at_max),
        ),
        with_floor(
            target(
                "p99 at 200/s offered (ms)",
                "<= 50",
                low_load.p99_at_200,
                &|v| v <= 50.0,
            ),
            low_load.chain_1hop_p99_at_200,
        ),
        target(
            "p99 at 50 % of the measured saturation rate (ms)",
            "<= 150",
            low_load.p99_at_half,
            &|v| v <= 150.0,
        ),
        target(
            "pipeline closed loop / 1-hop chain floor",
            ">= 0.9",
            ratio(pipeline_max, low_load.chain_1hop_max),
            &|v| v >= 0.9,
        ),
        target(
            "broker publishes per payment, closed loop (request + one result + stage batches)",
            "<= 2.2",
            low_load.publishes_at_max,
            &|v| v <= 2.2,
        ),
        // Reported only: at low load the stages' batches are small, so their messages count.
        Target {
            name: "broker publishes per payment at 200/s offered".into(),
            goal: "(reported)".into(),
            measured: low_load.publishes_at_200,
            floor: None,
            met: None,
        },
        target(
            "soak at 70 % of saturation: worker RSS at minute 10 / minute 2",
            "0.95–1.05",
            low_load.soak_rss_ratio,
            &|v| (0.95..=1.05).contains(&v),
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
    if let (Some(low), Some(max)) = (low_load.cpu_at_200, low_load.cpu_at_max) {
        let _ = writeln!(
            t,
            "CPU per payment (µs, the benchmark's processes, not 'other'): {low:.0} at 200/s \
             offered, {max:.0} at saturation\n"
        );
    }
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
    let _ = writeln!(
        t,
        "| target | goal | measured | floor: the POS contract alone (1-hop chain) | met |"
    );
    let _ = writeln!(t, "|---|---|---:|---:|---|");
    for x in &targets {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} |",
            x.name,
            x.goal,
            opt(x.measured, 2),
            opt(x.floor, 2),
            match (x.met, x.measured) {
                (Some(true), _) => "yes",
                (Some(false), _) => "NO",
                (None, Some(_)) => "–",
                (None, None) => "not measured",
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
            chain_1hop_max: low_load.chain_1hop_max,
            targets,
        },
        t,
    ))
}

/// The figures the low-load targets are stated in, from one directory of reports.
#[derive(Debug, Default)]
struct LowLoad {
    /// CPU µs per payment of the benchmark's own processes (everything but "other").
    cpu_at_200: Option<f64>,
    cpu_at_max: Option<f64>,
    p99_at_200: Option<f64>,
    /// The open-loop run offered 45–55 % of the closed loop's throughput.
    p99_at_half: Option<f64>,
    chain_1hop_max: Option<f64>,
    /// The 1-hop chain offered 200/s: what the POS contract alone costs at that load.
    chain_1hop_cpu_at_200: Option<f64>,
    chain_1hop_p99_at_200: Option<f64>,
    publishes_at_max: Option<f64>,
    publishes_at_200: Option<f64>,
    /// RSS at minute 10 of the measured window over minute 2, of the soak: an open-loop run
    /// measured for 10 minutes or more at 60–80 % of saturation.
    soak_rss_ratio: Option<f64>,
}

/// CPU µs per payment of the benchmark's processes: the machine's total without "other"
/// (processes outside the benchmark, on a shared machine).
fn cpu_per_payment(r: &Report) -> Option<f64> {
    let c = r.cpu.as_ref()?;
    let total = c.us_per_payment.get("total")?;
    Some(total - c.us_per_payment.get("other").copied().unwrap_or(0.0))
}

fn low_load_figures(reports: &[(String, Report)], pipeline_max: Option<f64>) -> LowLoad {
    let pipeline = |mode: &'static str| {
        reports
            .iter()
            .map(|(_, r)| r)
            .filter(move |r| r.kind == "pipeline" && r.mode == mode)
    };
    let max_run =
        pipeline("closed").max_by(|a, b| a.throughput_per_sec.total_cmp(&b.throughput_per_sec));
    let at_200 =
        pipeline("open").rfind(|r| r.offered_rate == Some(200.0) && r.duration_secs < 600.0);
    let share_of_max = |r: &Report| match (r.offered_rate, pipeline_max) {
        (Some(rate), Some(max)) if max > 0.0 => Some(rate / max),
        _ => None,
    };
    let at_half = pipeline("open")
        .filter(|r| r.duration_secs < 600.0)
        .find(|r| share_of_max(r).is_some_and(|s| (0.45..=0.55).contains(&s)));
    let soak = pipeline("open")
        .filter(|r| r.duration_secs >= 600.0)
        .find(|r| share_of_max(r).is_some_and(|s| (0.6..=0.8).contains(&s)));
    let publishes = |r: &Report| r.broker_per_payment.get("vhost.publish").copied();
    let chain_at_200 = reports
        .iter()
        .map(|(_, r)| r)
        .rfind(|r| r.kind == "chain-1-hops" && r.mode == "open" && r.offered_rate == Some(200.0));
    LowLoad {
        cpu_at_200: at_200.and_then(cpu_per_payment),
        cpu_at_max: max_run.and_then(cpu_per_payment),
        p99_at_200: at_200.and_then(|r| r.latency.as_ref().map(|l| l.p99_ms)),
        p99_at_half: at_half.and_then(|r| r.latency.as_ref().map(|l| l.p99_ms)),
        chain_1hop_max: reports
            .iter()
            .filter(|(_, r)| r.kind == "chain-1-hops" && r.mode == "closed")
            .map(|(_, r)| r.throughput_per_sec)
            .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v)))),
        chain_1hop_cpu_at_200: chain_at_200.and_then(cpu_per_payment),
        chain_1hop_p99_at_200: chain_at_200.and_then(|r| r.latency.as_ref().map(|l| l.p99_ms)),
        publishes_at_max: max_run.and_then(publishes),
        publishes_at_200: at_200.and_then(publishes),
        soak_rss_ratio: soak.and_then(|r| {
            let rss = r.worker_rss_mb.as_ref()?;
            // Sample k is taken RSS_SAMPLE_SECS * (k + 1) seconds after the start.
            let at = |secs: f64| {
                let k = (secs / super::sys::RSS_SAMPLE_SECS as f64).round() as usize;
                rss.samples.get(k.checked_sub(1)?).copied()
            };
            let minute2 = at(r.warmup_secs + 120.0)?;
            let minute10 = at(r.warmup_secs + 600.0).or(rss.samples.last().copied())?;
            (minute2 > 0.0).then(|| minute10 / minute2)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::sys::{CpuReport, RssReport};

    fn run(kind: &str, mode: &str, rate: Option<f64>, tput: f64, us: f64, other: f64) -> Report {
        let mut r = Report {
            kind: kind.into(),
            label: format!("{kind} {mode}"),
            mode: mode.into(),
            offered_rate: rate,
            duration_secs: 30.0,
            warmup_secs: 10.0,
            throughput_per_sec: tput,
            latency: Some(crate::bench::report::Latency {
                p99_ms: 40.0,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut cpu = CpuReport::default();
        cpu.us_per_payment.insert("total".into(), us + other);
        cpu.us_per_payment.insert("other".into(), other);
        r.cpu = Some(cpu);
        r.broker_per_payment.insert("vhost.publish".into(), 2.1);
        r
    }

    #[test]
    fn low_load_ratios_come_from_the_runs_they_name() {
        let mut soak = run("pipeline", "open", Some(700.0), 700.0, 1500.0, 0.0);
        soak.duration_secs = 600.0;
        // Samples every 10 s from the start: minute 2 of the window is t = 130 s (index 12),
        // minute 10 is t = 610 s (index 60).
        let mut samples = vec![100.0; 61];
        samples[12] = 90.0;
        samples[60] = 93.0;
        soak.worker_rss_mb = Some(RssReport {
            samples,
            ..Default::default()
        });
        let reports = vec![
            (
                "a".into(),
                run("pipeline", "closed", None, 1000.0, 1200.0, 100.0),
            ),
            (
                "b".into(),
                run("pipeline", "open", Some(200.0), 200.0, 2400.0, 900.0),
            ),
            (
                "c".into(),
                run("pipeline", "open", Some(500.0), 500.0, 2000.0, 0.0),
            ),
            (
                "d".into(),
                run("chain-1-hops", "closed", None, 1100.0, 800.0, 0.0),
            ),
            (
                "d2".into(),
                run("chain-1-hops", "open", Some(200.0), 200.0, 3000.0, 500.0),
            ),
            ("e".into(), soak),
        ];
        let l = low_load_figures(&reports, Some(1000.0));
        // "other" is left out of both.
        assert_eq!(l.cpu_at_200, Some(2400.0));
        assert_eq!(l.cpu_at_max, Some(1200.0));
        assert_eq!(l.p99_at_half, Some(40.0));
        assert_eq!(l.chain_1hop_max, Some(1100.0));
        assert_eq!(l.chain_1hop_cpu_at_200, Some(3000.0));
        assert_eq!(l.chain_1hop_p99_at_200, Some(40.0));
        assert_eq!(l.publishes_at_max, Some(2.1));
        let ratio = l.soak_rss_ratio.unwrap_or_default();
        assert!((ratio - 93.0 / 90.0).abs() < 1e-9, "{ratio}");
    }
}
