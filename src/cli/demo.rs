//! `campuspay demo`: seeds a demo campus, runs a scripted lunch hour and prints its summary and
//! the wallet's, a till's and the console's sign-in links; with `--serve` it then keeps the
//! pipeline and the platform running for a person with a phone (and a browser as the till).

use super::{pool, print, CliError};
use campuspay::config::Config;
use campuspay::domain::{MerchantId, TerminalId, UserId};
use campuspay::ops::{self, Operator, Ops};
use campuspay::sim;
use std::process::ExitCode;
use std::time::Duration;

/// The demo cardholders whose sign-in links are printed: one of each identity.
const WALLET_USERS: [(&str, &str); 4] = [
    ("s001", "student, no 搭伙费"),
    ("f001", "staff, no 搭伙费"),
    ("v001", "temporary, 10 % 搭伙费 (0 % at the market)"),
    ("x001", "external, 15 % 搭伙费"),
];

pub(super) async fn run(
    payments: usize,
    json: bool,
    serve: bool,
    config: Config,
) -> Result<ExitCode, CliError> {
    let started = std::time::Instant::now();
    let report = sim::demo::run(&config, &sim::demo::DemoOptions { payments }).await?;
    print(json, &report, |r| demo_summary(r, started.elapsed()));
    if !report.ledger.ok || !report.unexpected.is_empty() || !report.forward.failures.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    let wallet = wallet_section(&config, serve).await?;
    // --json keeps stdout one JSON document: the links go to stderr there.
    if json {
        eprintln!("{wallet}");
    } else {
        outln!("{wallet}");
    }
    if serve {
        return super::run::run(Vec::new(), false, Vec::new(), config).await;
    }
    Ok(ExitCode::SUCCESS)
}

/// The till whose sign-in link is printed (a canteen's counter).
const TILL: (&str, &str) = ("canteen-1", "t2");

/// The wallet's address and a one-time sign-in link for each of `WALLET_USERS`, and one for
/// the till `TILL` (recorded on the operators' trail like any link).
async fn wallet_section(config: &Config, serve: bool) -> Result<String, CliError> {
    let ops = Ops::new(pool(config).await?, config.clone());
    let me = Operator::from_shell();
    let mut s = String::from("\n== wallet (the cardholder's phone) ==\n");
    s.push_str(&format!("wallet          {}/app\n", config.public_url));
    s.push_str(
        "sign-in links   (each works once, for 15 minutes; more: \
         campuspay admin token --user ID --link)\n",
    );
    for (user, what) in WALLET_USERS {
        let u = UserId::parse(user).map_err(|e| CliError::Usage(e.to_string()))?;
        let link = ops::tokens::cardholder_link(&ops, &me, &u, None).await?;
        s.push_str(&format!("  {user}  {what}\n        {}\n", link.url));
    }
    let (m, t) = TILL;
    let till = ops::tokens::terminal_link(
        &ops,
        &me,
        &MerchantId::parse(m).map_err(|e| CliError::Usage(e.to_string()))?,
        &TerminalId::parse(t).map_err(|e| CliError::Usage(e.to_string()))?,
        None,
    )
    .await?;
    s.push_str("\n== till (the cashier's browser: a tablet or a PC) ==\n");
    s.push_str(&format!("till            {}/pos\n", config.public_url));
    s.push_str(&format!(
        "sign-in link    {m}/{t} (works once, for 15 minutes; more: \
         campuspay admin token --terminal MERCHANT/TERMINAL --link)\n        {}\n",
        till.url
    ));
    let console = ops::tokens::operator_link(&ops, &me, "demo", None).await?;
    s.push_str(&format!(
        "\n== console (the operators' back office) ==\n\
         console         {}/console\n\
         sign-in link    (works once, for 15 minutes; more: \
         campuspay admin token --admin NAME --link)\n        {}\n",
        config.public_url, console.url
    ));
    if serve {
        s.push_str(&format!(
            "serving the pipeline and the platform on {} until Ctrl-C; charge the code the \
             phone shows on the till's page, or from another shell:\n  \
             CAMPUSPAY_ENV=development campuspay pos pay --merchant canteen-1 --terminal t1 \
             --amount 12.50 --code <the 18 digits>",
            config.public_url
        ));
    } else {
        s.push_str("the links need the platform running: `make demo SERVE=1` (or `campuspay run`)");
    }
    Ok(s)
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
