//! `campuspay demo`: a scripted lunch hour on the demo campus. Every terminal works through its
//! queue of customers one at a time (as a real till does), all terminals at once. Some payments
//! are meant to fail — nearly broke students, codes scanned twice, codes that were never issued —
//! and the summary shows each outcome next to what was expected.

use super::pos::Pos;
use super::seed::{self, Campus};
use super::{SimError, Tokens};
use crate::admin::management::Management;
use crate::admin::queues::{self, ExistingPolicies, QueuesError};
use crate::broker::connection::connect_retrying;
use crate::broker::topology::{topology, StageName};
use crate::config::Config;
use crate::db::{self, ledger::LedgerReport};
use crate::domain::{DeclineReason, PaymentCode, RequestId, TxState, UserId};
use crate::messages::external::ResultV1;
use crate::pipeline::Pipeline;
use crate::tsm;
use rand::seq::SliceRandom;
use rand::Rng;
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

const RESULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Ordinary payments in the lunch hour (the scripted failures come on top).
    pub payments: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Approved,
    Declined(DeclineReason),
}

#[derive(Debug, Clone)]
struct Planned {
    terminal: usize,
    user: Option<UserId>,
    code: String,
    amount: String,
    expect: Expect,
}

#[derive(Debug, Default, Serialize)]
pub struct ForwardReport {
    /// Forward-scan payments by QR kind: (approved, declined).
    pub by_kind: BTreeMap<String, (usize, usize)>,
    pub qr_images: String,
    pub failures: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DemoReport {
    pub forward: ForwardReport,
    pub payments: usize,
    pub approved: usize,
    pub declined: BTreeMap<String, usize>,
    pub unexpected: Vec<String>,
    pub amount_approved: String,
    pub fees_collected: String,
    pub lunch_hour_secs: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub ledger: LedgerReport,
}

struct Outcome {
    planned: Planned,
    result: Result<ResultV1, String>,
    latency: Duration,
}

fn amount_for(rng: &mut impl Rng) -> String {
    // 6.00 to 28.00 in 0.50 steps: a canteen meal or a shop basket.
    let halves: u32 = rng.gen_range(12..=56);
    format!(
        "{}.{}",
        halves / 2,
        if halves % 2 == 1 { "50" } else { "00" }
    )
}

async fn plan(
    pool: &db::Pool,
    config: &Config,
    campus: &Campus,
    n: usize,
) -> Result<(Vec<Planned>, usize), SimError> {
    let mut rng = rand::thread_rng();
    let mut normal: Vec<&seed::Cardholder> =
        campus.cardholders.iter().filter(|c| !c.broke).collect();
    normal.shuffle(&mut rng);
    let mut codes: HashMap<UserId, Vec<String>> = HashMap::new();
    let take_code = |user: &UserId, codes: &mut HashMap<UserId, Vec<String>>| -> Option<String> {
        codes.get_mut(user).and_then(|v| v.pop())
    };
    let mut planned = Vec::new();
    let terminals = campus.terminals.len();
    // Each card gets one batch of 10 codes; a batch supersedes the previous one, so a card is
    // never asked for more than 10 payments here.
    let mut users: Vec<UserId> = Vec::new();
    for i in 0..n {
        let ch = normal[i % normal.len()];
        if !codes.contains_key(&ch.user) {
            let issued = tsm::issue(
                pool,
                config.keys.payment_codes.expose(),
                &ch.user,
                config.code_ttl,
                config.code_prefix,
            )
            .await?
            .map_err(|r| SimError::Other(r.to_string()))?;
            codes.insert(ch.user.clone(), issued.codes);
            users.push(ch.user.clone());
        }
        let Some(code) = take_code(&ch.user, &mut codes) else {
            continue;
        };
        planned.push(Planned {
            terminal: i % terminals,
            user: Some(ch.user.clone()),
            code,
            amount: amount_for(&mut rng),
            expect: Expect::Approved,
        });
    }
    for (k, ch) in campus.cardholders.iter().filter(|c| c.broke).enumerate() {
        let issued = tsm::issue(
            pool,
            config.keys.payment_codes.expose(),
            &ch.user,
            config.code_ttl,
            config.code_prefix,
        )
        .await?
        .map_err(|r| SimError::Other(r.to_string()))?;
        planned.push(Planned {
            terminal: k % terminals,
            user: Some(ch.user.clone()),
            code: issued.codes[0].clone(),
            amount: "15.00".into(),
            expect: Expect::Declined(DeclineReason::InsufficientBalance),
        });
    }
    let mut os = rand::rngs::OsRng;
    for k in 0..5 {
        planned.push(Planned {
            terminal: (k * 3) % terminals,
            user: None,
            code: PaymentCode::generate(&mut os, config.code_prefix)
                .expose()
                .to_owned(),
            amount: "9.00".into(),
            expect: Expect::Declined(DeclineReason::UnknownCode),
        });
    }
    planned.shuffle(&mut rng);
    Ok((planned, terminals))
}

async fn run_phase(
    conn: &lapin::Connection,
    broker_user: &str,
    campus: &Campus,
    tokens: &Tokens,
    planned: Vec<Planned>,
) -> Result<Vec<Outcome>, SimError> {
    let mut per_terminal: Vec<Vec<Planned>> = vec![Vec::new(); campus.terminals.len()];
    for p in planned {
        per_terminal[p.terminal].push(p);
    }
    let mut tills = Vec::new();
    for (idx, queue) in per_terminal.into_iter().enumerate() {
        let (m, t) = campus.terminals[idx].clone();
        let token = tokens.terminal(&m, &t).await?;
        let pos = Pos::open(conn, broker_user, m, t, token).await?;
        tills.push(async move {
            let mut pos = pos;
            let mut out = Vec::with_capacity(queue.len());
            for p in queue {
                let started = Instant::now();
                let result = pos
                    .pay(RequestId::new_random(), &p.code, &p.amount, RESULT_TIMEOUT)
                    .await
                    .map_err(|e| e.to_string());
                out.push(Outcome {
                    planned: p,
                    result,
                    latency: started.elapsed(),
                });
            }
            out
        });
    }
    Ok(futures_util::future::join_all(tills)
        .await
        .into_iter()
        .flatten()
        .collect())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

pub async fn run(config: &Config, opts: &DemoOptions) -> Result<DemoReport, SimError> {
    println!("== campuspay demo ==");
    let pool = db::pool(&config.database_url, config.db_pool_size)?;
    let applied = db::run(&pool, db::migrate).await?;
    println!("database ready ({} new migrations)", applied.len());
    let conn = connect_retrying(&config.amqp_url, "campuspay demo", 10).await?;
    let t = topology(config.settlement_shards);
    crate::broker::topology::replace_outdated(&conn, &t).await?;
    let mgmt = Management::new(&config.management_url).map_err(QueuesError::from)?;
    let vhost = queues::vhost_of(&config.amqp_url)?;
    queues::set_up(&conn, &mgmt, &vhost, &t, ExistingPolicies::Keep).await?;
    println!("broker topology declared, with its policies");
    let campus = seed::seed(&pool).await?;
    println!(
        "campus seeded: {} merchants, {} terminals, {} cardholders (top-ups done)",
        seed::MERCHANTS.len(),
        campus.terminals.len(),
        campus.cardholders.len()
    );
    let pipeline = Pipeline::start(config, pool.clone(), &StageName::ALL);
    println!("pipeline started: qr_validation → order → fee → settlement ×4 → fanout");
    let tokens = Tokens::new(config, pool.clone());

    let (planned, _) = plan(&pool, config, &campus, opts.payments).await?;
    println!(
        "lunch hour: {} customers at {} tills …",
        planned.len(),
        campus.terminals.len()
    );
    let started = Instant::now();
    let mut outcomes = run_phase(&conn, &config.broker_user, &campus, &tokens, planned).await?;
    // Second wave: five customers whose codes were already used get scanned again.
    let reused: Vec<Planned> = outcomes
        .iter()
        .filter(|o| matches!(&o.result, Ok(r) if r.status == TxState::Approved))
        .take(5)
        .enumerate()
        .map(|(k, o)| Planned {
            terminal: (o.planned.terminal + 1 + k) % campus.terminals.len(),
            user: o.planned.user.clone(),
            code: o.planned.code.clone(),
            amount: o.planned.amount.clone(),
            expect: Expect::Declined(DeclineReason::CodeUsed),
        })
        .collect();
    outcomes.extend(run_phase(&conn, &config.broker_user, &campus, &tokens, reused).await?);
    let forward = forward_scan(config, &pool, &conn, &campus, &tokens).await?;
    let lunch = started.elapsed();
    pipeline.shutdown().await;
    let _ = conn.close(200, "demo done".into()).await;

    let mut approved = 0;
    let mut declined: BTreeMap<String, usize> = BTreeMap::new();
    let mut unexpected = Vec::new();
    let mut amount = Decimal::ZERO;
    let mut fees = Decimal::ZERO;
    let mut latencies: Vec<Duration> = Vec::new();
    for o in &outcomes {
        latencies.push(o.latency);
        let got = match &o.result {
            Ok(r) if r.status == TxState::Approved => {
                approved += 1;
                amount += r.amount.map(|a| a.value()).unwrap_or_default();
                fees += r.fee.value();
                Expect::Approved
            }
            Ok(r) => {
                let reason = r.reason.unwrap_or(DeclineReason::InternalError);
                *declined.entry(reason.as_str().to_owned()).or_default() += 1;
                Expect::Declined(reason)
            }
            Err(e) => {
                unexpected.push(format!("{}: {e}", o.planned.amount));
                continue;
            }
        };
        if got != o.planned.expect {
            unexpected.push(format!(
                "{:?} paying {} got {:?}, expected {:?}",
                o.planned.user, o.planned.amount, got, o.planned.expect
            ));
        }
    }
    latencies.sort();
    let ledger = db::run(&pool, |c| db::ledger::verify(c, 300)).await?;
    Ok(DemoReport {
        forward,
        payments: outcomes.len(),
        approved,
        declined,
        unexpected,
        amount_approved: format!("{amount:.2}"),
        fees_collected: format!("{fees:.2}"),
        lunch_hour_secs: lunch.as_secs_f64(),
        latency_p50_ms: percentile(&latencies, 0.5),
        latency_p99_ms: percentile(&latencies, 0.99),
        ledger,
    })
}

/// Where the demo writes its merchants' printable QR codes.
pub const QR_DIR: &str = "demo-out/qr";

/// The forward-scan part: print the merchants' QR codes, then cardholders scan each kind with
/// their phones through the platform's HTTP API.
async fn forward_scan(
    config: &Config,
    pool: &db::Pool,
    conn: &lapin::Connection,
    campus: &Campus,
    tokens: &Tokens,
) -> Result<ForwardReport, SimError> {
    use crate::domain::campus_qr::{encode_campus, MerchantQr};
    let mut report = ForwardReport {
        qr_images: QR_DIR.into(),
        ..ForwardReport::default()
    };
    std::fs::create_dir_all(QR_DIR).map_err(|e| SimError::Other(format!("{QR_DIR}: {e}")))?;
    let mut statics: Vec<(String, String)> = Vec::new();
    for (m, name, ts) in seed::MERCHANTS {
        let merchant_id =
            crate::domain::MerchantId::parse(m).map_err(|e| SimError::Other(e.to_string()))?;
        let mut kinds = vec![(m.to_string(), None)];
        for t in ts {
            kinds.push((
                format!("{m}-{t}"),
                Some(
                    crate::domain::TerminalId::parse(t)
                        .map_err(|e| SimError::Other(e.to_string()))?,
                ),
            ));
        }
        for (file, terminal_id) in kinds {
            let kind = if terminal_id.is_some() {
                "static_terminal"
            } else {
                "static_merchant"
            };
            let payload = encode_campus(
                &MerchantQr::Static {
                    merchant_id: merchant_id.clone(),
                    terminal_id,
                },
                name,
            )
            .map_err(|e| SimError::Other(e.to_string()))?;
            let png =
                crate::qr::render_png(&payload).map_err(|e| SimError::Other(e.to_string()))?;
            let svg =
                crate::qr::render_svg(&payload).map_err(|e| SimError::Other(e.to_string()))?;
            let write = |ext: &str, bytes: &[u8]| {
                std::fs::write(format!("{QR_DIR}/{file}.{ext}"), bytes)
                    .map_err(|e| SimError::Other(e.to_string()))
            };
            write("png", &png)?;
            write("svg", svg.as_bytes())?;
            statics.push((kind.to_owned(), payload));
        }
    }
    println!("merchant QR codes written to {QR_DIR}/ (PNG and SVG)");

    let platform = crate::platform::Platform::start(config, pool.clone(), "127.0.0.1:0")
        .map_err(|e| SimError::Other(format!("platform: {e}")))?;
    let base = format!("http://{}", platform.addr);
    println!("payment platform on {base}; phones scanning merchant QR codes …");
    let (m, t) = campus.terminals[0].clone();
    let token = tokens.terminal(&m, &t).await?;
    let mut till = Pos::open(conn, &config.broker_user, m.clone(), t.clone(), token).await?;
    let phones: Vec<&seed::Cardholder> = campus
        .cardholders
        .iter()
        .filter(|c| !c.broke)
        .take(24)
        .collect();
    let mut rng = rand::thread_rng();
    for (i, ch) in phones.iter().enumerate() {
        let (kind, payload, amount) = match i % 3 {
            0 => {
                let (k, p) = statics
                    .iter()
                    .filter(|(k, _)| k == "static_merchant")
                    .nth(i % 4)
                    .cloned()
                    .unwrap_or_default();
                (k, p, Some(amount_for(&mut rng)))
            }
            1 => {
                let (k, p) = statics
                    .iter()
                    .filter(|(k, _)| k == "static_terminal")
                    .nth(i % 8)
                    .cloned()
                    .unwrap_or_default();
                (k, p, Some(amount_for(&mut rng)))
            }
            _ => {
                let issued = till
                    .request_dynamic_qr(
                        RequestId::new_random(),
                        &amount_for(&mut rng),
                        RESULT_TIMEOUT,
                    )
                    .await?;
                (
                    "dynamic".to_owned(),
                    issued.payload.unwrap_or_default(),
                    None,
                )
            }
        };
        let token = tokens.cardholder(&ch.user, 600).await?;
        let phone = super::phone::Phone::new(&base, &token);
        let done =
            tokio::task::spawn_blocking(move || -> Result<super::phone::Answer, SimError> {
                let order = phone.create_order(&uuid::Uuid::new_v4().to_string(), &payload)?;
                if order.status != 201 {
                    return Ok(order);
                }
                let id = order.body["order_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let paid = phone.pay(&id, amount.as_deref())?;
                if paid.status >= 400 {
                    return Ok(paid);
                }
                phone.wait_final(&id, RESULT_TIMEOUT)
            })
            .await
            .map_err(|e| SimError::Other(e.to_string()))??;
        let entry = report.by_kind.entry(kind.clone()).or_default();
        if done.body["status"] == "approved" {
            entry.0 += 1;
        } else {
            entry.1 += 1;
            report
                .failures
                .push(format!("{kind} for {}: {}", ch.user, done.body));
        }
    }
    platform.stop().await;
    Ok(report)
}
