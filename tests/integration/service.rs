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
    let gone = answers("/readyz answers 503 without the vhost", &readyz, 503).await;
    let named = not_ready(&gone);
    assert!(named.contains(&"consumers".to_owned()), "{gone}");
    assert!(named.contains(&"broker".to_owned()), "{gone}");
    assert_eq!(
        gone["checks"]["consumers"]["campuspay.fee"], "connecting",
        "{gone}"
    );
    assert!(worker.terminate().success());
}
