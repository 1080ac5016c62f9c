//! The hand-written SVG plot of a report: throughput and latency over time, and the latency
//! CDF.

use super::report::{Report, Second};
use std::fmt::Write as _;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::{series, Latency};

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
