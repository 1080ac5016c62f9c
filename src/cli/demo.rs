//! `campuspay demo`: seeds a demo campus, runs a scripted lunch hour and prints its summary.

use super::{print, CliError};
use campuspay::config::Config;
use campuspay::sim;
use std::process::ExitCode;
use std::time::Duration;

pub(super) async fn run(payments: usize, json: bool, config: Config) -> Result<ExitCode, CliError> {
    let started = std::time::Instant::now();
    let report = sim::demo::run(&config, &sim::demo::DemoOptions { payments }).await?;
    print(json, &report, |r| demo_summary(r, started.elapsed()));
    if !report.ledger.ok || !report.unexpected.is_empty() || !report.forward.failures.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn demo_summary(r: &sim::demo::DemoReport, total: Duration) -> String {
    let mut s = String::new();
    s.push_str("\n== lunch hour summary ==\n");
    s.push_str("reverse scan (POS scans the phone):\n");
    s.push_str(&format!("payments        {}\n", r.payments));
    s.push_str(&format!("approved        {}\n", r.approved));
    for (reason, n) in &r.declined {
        s.push_str(&format!("declined        {n:>4}  {reason}\n"));
    }
    s.push_str(&format!("amount approved {} yuan\n", r.amount_approved));
    s.push_str(&format!(
        "fees collected  {} yuan (搭伙费)\n",
        r.fees_collected
    ));
    s.push_str(&format!(
        "latency         p50 {:.1} ms, p99 {:.1} ms (POS publish → POS result)\n",
        r.latency_p50_ms, r.latency_p99_ms
    ));
    s.push_str(&format!(
        "lunch hour took {:.1} s; whole demo {:.1} s\n",
        r.lunch_hour_secs,
        total.as_secs_f64()
    ));
    s.push_str(&format!(
        "ledger check    {} ({} postings, sum {}, fee income {})\n",
        if r.ledger.ok { "OK" } else { "BROKEN" },
        r.ledger.postings,
        r.ledger.postings_sum,
        r.ledger.fee_income
    ));
    s.push_str("forward scan (phone scans the merchant):\n");
    for (kind, (ok, bad)) in &r.forward.by_kind {
        s.push_str(&format!("  {kind:<16} {ok} approved, {bad} declined\n"));
    }
    s.push_str(&format!("  QR images in    {}/\n", r.forward.qr_images));
    for f in &r.forward.failures {
        s.push_str(&format!("  UNEXPECTED: {f}\n"));
    }
    if r.unexpected.is_empty() && r.forward.failures.is_empty() {
        s.push_str("every payment ended as scripted");
    } else {
        s.push_str(&format!("{} UNEXPECTED outcomes:\n", r.unexpected.len()));
        for u in &r.unexpected {
            s.push_str(&format!("  {u}\n"));
        }
    }
    s
}
