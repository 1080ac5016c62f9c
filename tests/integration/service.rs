//! Running campuspay like a service: a stage worker's operations listener answers liveness
//! and readiness probes truthfully when its database or its vhost goes away for real.

use crate::faults::Worker;
use crate::helpers::*;
use diesel::{Connection, PgConnection, RunQueryDsl};
use serde_json::Value;
use std::time::Duration;

/// A free local address for a child's listener.
pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

/// GET `url`: the status and the JSON body (Null when it is not JSON); status 0 when nothing
/// answers.
pub async fn get_json(url: &str) -> (u16, Value) {
    let url = url.to_owned();
    blocking(
        move || match ureq::get(&url).timeout(Duration::from_secs(10)).call() {
            Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
            Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap_or(Value::Null)),
            Err(_) => (0, Value::Null),
        },
    )
    .await
}

/// Waits until `url` answers `status`, returning the body.
async fn answers(what: &str, url: &str, status: u16) -> Value {
    eventually(what, WAIT, Duration::from_millis(250), || async {
        match get_json(url).await {
            (s, body) if s == status => Ok(body),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

fn not_ready(body: &Value) -> Vec<String> {
    body["not_ready"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs SQL as the administrator, outside the test's database.
async fn admin_sql(sql: String) {
    blocking(move || {
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| campuspay::config::DEFAULT_DATABASE_URL.into());
        let mut c = PgConnection::establish(&database_url(&url, "postgres")).expect("admin db");
        diesel::sql_query(sql).execute(&mut c).expect("admin sql");
    })
    .await
}

#[actix_rt::test]
async fn a_stage_worker_answers_health_and_readiness_truthfully() {
    let env = TestEnv::empty().await;
    let ops = free_addr();
    let mut worker = Worker::spawn_env(
        &env,
        &env.config.amqp_url,
        &[],
        &[("CAMPUSPAY_OPS_ADDR", ops.as_str())],
    );
    let (healthz, readyz) = (
        format!("http://{ops}/healthz"),
        format!("http://{ops}/readyz"),
    );
    let alive = answers("/healthz answers 200", &healthz, 200).await;
    assert_eq!(alive["status"], "alive");
    let ready = answers("/readyz answers 200", &readyz, 200).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    for check in ["database", "broker", "consumers"] {
        assert_eq!(ready["checks"][check], "ok", "{ready}");
    }

    // The database refuses connections, and the worker's are cut.
    let db = env.vhost.clone();
    admin_sql(format!("ALTER DATABASE {db} WITH ALLOW_CONNECTIONS false")).await;
    admin_sql(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
    ))
    .await;
    let down = answers("/readyz answers 503 without the database", &readyz, 503).await;
    assert_eq!(not_ready(&down), ["database"], "{down}");
    assert!(
        down["checks"]["database"]
            .as_str()
            .is_some_and(|s| s.starts_with("unreachable")),
        "{down}"
    );
    let (status, _) = get_json(&healthz).await;
    assert_eq!(status, 200, "still alive without its database");
    admin_sql(format!("ALTER DATABASE {db} WITH ALLOW_CONNECTIONS true")).await;
    answers("/readyz answers 200 again", &readyz, 200).await;

    // The vhost goes away: the broker closes every connection and the consumers cannot come
    // back.
    let (m, vhost) = (env.mgmt().clone(), env.vhost.clone());
    blocking(move || m.delete_vhost(&vhost).expect("delete vhost")).await;
    // The broker closes the connections one after another: wait until the fee consumer's is
    // among them, not only the first.
    let gone = eventually(
        "/readyz answers 503 naming the fee consumer without the vhost",
        WAIT,
        Duration::from_millis(250),
        || async {
            match get_json(&readyz).await {
                (503, body) if body["checks"]["consumers"]["campuspay.fee"] == "connecting" => {
                    Ok(body)
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let named = not_ready(&gone);
    assert!(named.contains(&"consumers".to_owned()), "{gone}");
    assert!(named.contains(&"broker".to_owned()), "{gone}");
    assert!(worker.terminate().success());
}

/// What a spawned `campuspay run` wrote to its standard error, as JSON lines.
fn json_lines(path: &std::path::Path) -> (String, Vec<Value>) {
    let text = std::fs::read_to_string(path).expect("log file");
    let lines = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (text, lines)
}

#[actix_rt::test]
async fn json_logs_follow_one_payment_through_every_stage_and_never_show_its_code_or_pin() {
    use campuspay::db::cards;
    use campuspay::domain::{Identity, RequestId, TxState};
    const PIN: &str = "246813";
    let env = TestEnv::empty().await;
    env.merchant("canteen", &["t1"]).await;
    // External: 50.00 password-free, so 80.00 waits for the PIN on the phone.
    let user = env.card("x001", Identity::External, "200.00").await;
    let (u, key) = (user.clone(), env.config.keys.pin_hashes.expose().to_vec());
    campuspay::db::run(&env.pool, move |c| {
        cards::set_pin_hash(c, &u, &campuspay::tsm::pin_hash(&key, &u, PIN))
    })
    .await
    .unwrap()
    .unwrap();

    let (http, ops) = (free_addr(), free_addr());
    let log_path = std::env::temp_dir().join(format!("campuspay-log-{}.jsonl", env.vhost));
    let log_file = std::fs::File::create(&log_path).expect("log file");
    let mut run = std::process::Command::new(env!("CARGO_BIN_EXE_campuspay"))
        .arg("run")
        .env("CAMPUSPAY_ENV", "development")
        .env("CAMPUSPAY_LOG_FORMAT", "json")
        // The default filter: what an operator gets.
        .env_remove("RUST_LOG")
        .env("CAMPUSPAY_HTTP_ADDR", &http)
        .env("CAMPUSPAY_OPS_ADDR", &ops)
        .env("DATABASE_URL", &env.config.database_url)
        .env("AMQP_URL", &env.config.amqp_url)
        .stdout(std::process::Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("campuspay run starts");
    answers("ready", &format!("http://{ops}/readyz"), 200).await;

    let code = env.codes(&user).await.remove(0);
    assert_eq!(code.len(), 18);
    let mut pos = env.pos("canteen", "t1").await;
    let rid = RequestId::new_random();
    let pending = pos.pay(rid, &code, "80.00", WAIT).await.unwrap();
    assert_eq!(pending.status, TxState::AwaitingConfirmation, "{pending:?}");
    let tx = pending.transaction_id.expect("a transaction").to_string();
    let phone = env.phone(&format!("http://{http}"), &user);
    let t = tx.clone();
    let confirmed = blocking(move || phone.confirm(&t, PIN).unwrap()).await;
    assert!(confirmed.status < 300, "{confirmed:?}");
    let done = pos.wait_final(rid, WAIT, |_| {}).await.unwrap();
    assert_eq!(done.status, TxState::Approved, "{done:?}");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status();
    assert!(run.wait().expect("run exits").success());

    let (text, lines) = json_lines(&log_path);
    let _ = std::fs::remove_file(&log_path);
    for line in &lines {
        for member in ["ts", "level", "target", "msg"] {
            assert!(line[member].is_string(), "{member} in {line}");
        }
    }
    let ours: Vec<&Value> = lines
        .iter()
        .filter(|l| l["request_id"] == rid.to_string())
        .collect();
    let stages: std::collections::BTreeSet<&str> =
        ours.iter().filter_map(|l| l["stage"].as_str()).collect();
    assert_eq!(
        stages.into_iter().collect::<Vec<_>>(),
        ["fanout", "fee", "order", "qr_validation", "settlement"],
        "{ours:#?}"
    );
    // Once the transaction exists its id is on the line too.
    assert!(
        ours.iter()
            .any(|l| l["stage"] == "settlement" && l["transaction_id"] == tx.as_str()),
        "{ours:#?}"
    );
    // The access log names the route, not the path.
    assert!(
        lines.iter().any(|l| l["target"] == "campuspay::access"
            && l["route"] == "/v1/confirmations/{id}/confirm"
            && l["status"] == "202"),
        "{text}"
    );
    assert!(!text.contains(&code), "the payment code is in the log");
    assert!(!text.contains(PIN), "the PIN is in the log");
}

#[actix_rt::test]
async fn pos_pay_exits_0_approved_3_declined_2_on_a_usage_error() {
    use campuspay::domain::Identity;
    let env = TestEnv::start().await;
    env.merchant("canteen", &["t1"]).await;
    let user = env.card("s001", Identity::Student, "20.00").await;
    let codes = env.codes(&user).await;
    let pay = |code: String, amount: &'static str| {
        let (db, amqp) = (env.config.database_url.clone(), env.config.amqp_url.clone());
        blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_campuspay"))
                .args(["pos", "pay", "--merchant", "canteen", "--terminal", "t1"])
                .args(["--code", &code, "--amount", amount, "--timeout-secs", "20"])
                .env("CAMPUSPAY_ENV", "development")
                .env("DATABASE_URL", db)
                .env("AMQP_URL", amqp)
                .env("RUST_LOG", "error")
                .output()
                .expect("campuspay pos pay runs")
        })
    };
    let approved = pay(codes[0].clone(), "5.00").await;
    assert_eq!(approved.status.code(), Some(0), "{approved:?}");
    // More than the balance.
    let declined = pay(codes[1].clone(), "50.00").await;
    assert_eq!(declined.status.code(), Some(3), "{declined:?}");
    assert!(String::from_utf8_lossy(&declined.stdout).contains("DECLINED"));
    // Not a payment code: refused before anything is sent.
    let usage = pay("12345".into(), "5.00").await;
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");
    assert_eq!(env.balance(&user).await, money("15.00"));
}

/// Every `--help` page, walked from the top through the subcommands it lists, shows help text
/// for each of its options and arguments.
#[test]
fn every_help_page_documents_every_argument() {
    fn help(path: &[String]) -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_campuspay"))
            .args(path)
            .arg("--help")
            .output()
            .expect("campuspay --help");
        assert!(out.status.success(), "{path:?} --help: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    let mut pending = vec![Vec::<String>::new()];
    let mut pages = 0;
    while let Some(path) = pending.pop() {
        let text = help(&path);
        pages += 1;
        let mut section = "";
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            if !line.starts_with(' ') && line.ends_with(':') {
                section = line;
                continue;
            }
            let entry = line.trim_start();
            let indent = line.len() - entry.len();
            if indent != 2 || entry.is_empty() {
                continue;
            }
            match section {
                "Commands:" => {
                    let name = entry.split_whitespace().next().unwrap_or("");
                    if name != "help" {
                        let mut sub = path.clone();
                        sub.push(name.to_owned());
                        pending.push(sub);
                    }
                }
                "Options:" | "Arguments:" => {
                    // The text follows the flag after two spaces or more, or, in long help,
                    // on the following, more indented lines.
                    let same_line = entry
                        .split_once("  ")
                        .is_some_and(|(_, text)| !text.trim().is_empty());
                    let next_line = lines.peek().is_some_and(|next| {
                        next.len() - next.trim_start().len() > 2 && !next.trim().is_empty()
                    });
                    let documented = same_line || next_line;
                    assert!(
                        documented,
                        "campuspay {} --help: {entry} has no help text",
                        path.join(" ")
                    );
                }
                _ => {}
            }
        }
    }
    assert!(pages > 40, "only {pages} help pages");
}
