//! A payment over `amqps://`, end to end, against a throw-away RabbitMQ node that speaks only
//! TLS (scripts/tls-node.sh: its own node, port and CA, made on the spot; the default broker is
//! not touched). The pipeline and the POS both connect over TLS trusting the test's CA; a client
//! trusting only the system roots, or another CA, is refused by certificate verification.
//!
//! Needs root (the node runs as the `rabbitmq` user), as CI has; skipped, saying so, otherwise.

use crate::helpers::*;
use campuspay::broker::connection::{connect, connect_trusting, trust_cas, CaBundle};
use campuspay::broker::topology::{topology, Shards, StageName};
use campuspay::config::{Config, DEFAULT_DATABASE_URL};
use campuspay::db::{self, admin};
use campuspay::domain::{Amount, Identity, MerchantId, RequestId, TerminalId, TxState, UserId};
use campuspay::pipeline::Pipeline;
use campuspay::sim::pos::Pos;
use diesel::{Connection, PgConnection, RunQueryDsl};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Not the script's default port (5681), so a node started by hand with `make tls-node` and
/// this test do not meet.
const PORT: &str = "5682";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tls-node.sh")
}

/// The running TLS node; `Drop` deletes it (process, directory, CA), also when the test fails.
struct TlsNode {
    dir: PathBuf,
    url: String,
    ca: PathBuf,
}

impl TlsNode {
    fn tls_node(&self, command: &str) -> std::process::Output {
        Command::new(script())
            .arg(command)
            .env("TLS_NODE_DIR", &self.dir)
            .env("TLS_NODE_PORT", PORT)
            .output()
            .expect("run scripts/tls-node.sh")
    }

    fn up() -> TlsNode {
        let dir = std::env::temp_dir().join(format!("campuspay-tls-test-{PORT}"));
        // The guard exists before `up` runs, so a half-started node is deleted too.
        let mut node = TlsNode {
            dir,
            url: String::new(),
            ca: PathBuf::new(),
        };
        let started = Instant::now();
        let out = node.tls_node("up");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "tls-node.sh up failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in stdout.lines() {
            match line.split_once('=') {
                Some(("AMQPS_URL", v)) => node.url = v.to_owned(),
                Some(("TLS_NODE_CA", v)) => node.ca = PathBuf::from(v),
                _ => {}
            }
        }
        assert!(
            node.url.starts_with("amqps://") && node.ca.is_file(),
            "tls-node.sh up printed no settings: {stdout}"
        );
        eprintln!("tls: node up in {:?} at {}", started.elapsed(), node.url);
        node
    }

    /// Another CA, unrelated to the node's certificate, made in the node's directory.
    fn other_ca(&self) -> CaBundle {
        let (key, pem) = (self.dir.join("other-ca.key"), self.dir.join("other-ca.pem"));
        let out = Command::new("openssl")
            .args(["req", "-x509", "-new", "-newkey", "ec"])
            .args([
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "1",
            ])
            .args(["-subj", "/CN=campuspay unrelated test CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&pem)
            .output()
            .expect("run openssl");
        assert!(out.status.success(), "{out:?}");
        CaBundle::from_pem(&std::fs::read_to_string(pem).unwrap()).unwrap()
    }
}

impl Drop for TlsNode {
    fn drop(&mut self) {
        let out = self.tls_node("down");
        if !out.status.success() {
            eprintln!(
                "tls-node.sh down failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A fresh database, migrated; dropped with the guard.
struct Db {
    name: String,
    admin_url: String,
    url: String,
}

impl Db {
    fn create() -> Db {
        let base = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.into());
        let base = base.rsplit_once('/').map(|(b, _)| b).unwrap_or(&base);
        let id = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("cp_test_{}", &id[..12]);
        let db = Db {
            admin_url: format!("{base}/postgres"),
            url: format!("{base}/{name}"),
            name,
        };
        let mut c = PgConnection::establish(&db.admin_url).expect("connect to postgres");
        diesel::sql_query(format!("CREATE DATABASE {}", db.name))
            .execute(&mut c)
            .expect("create test database");
        db
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Ok(mut c) = PgConnection::establish(&self.admin_url) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut c);
        }
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The error of a connection attempt that must fail, within a bound.
async fn refused(url: &str, ca: Option<&CaBundle>) -> String {
    match tokio::time::timeout(WAIT, connect_trusting(url, "campuspay tls refused", ca)).await {
        Ok(Ok(_)) => panic!("connected to {url} though it should have been refused"),
        Ok(Err(e)) => e.to_string(),
        Err(_) => panic!("connecting to {url} neither failed nor succeeded within {WAIT:?}"),
    }
}

#[actix_rt::test]
async fn a_payment_over_amqps_with_the_campus_ca_and_no_trust_without_it() {
    if !running_as_root() {
        eprintln!(
            "SKIPPED tls::a_payment_over_amqps_…: needs root (scripts/tls-node.sh runs the node \
             as the rabbitmq user); CI runs as root"
        );
        return;
    }
    let _ = env_logger::builder().is_test(true).try_init();
    let started = Instant::now();
    // Declared first, dropped last: the node outlives every connection to it.
    let node = TlsNode::up();
    let ca = CaBundle::from_pem(&std::fs::read_to_string(&node.ca).unwrap()).unwrap();

    // Without the CA, with another CA, and in plain AMQP, the node refuses or is refused.
    let no_ca = refused(&node.url, None).await;
    assert!(no_ca.contains("UnknownIssuer"), "{no_ca}");
    let other = refused(&node.url, Some(&node.other_ca())).await;
    assert!(other.contains("UnknownIssuer"), "{other}");
    let plain = refused(&node.url.replacen("amqps://", "amqp://", 1), Some(&ca)).await;
    eprintln!("tls: refused as expected: {no_ca} / {other} / plain AMQP: {plain}");

    // From here on every connection of this process trusts the test's CA, as `campuspay`
    // does with CAMPUSPAY_AMQP_CA_FILE.
    trust_cas(Some(ca)).expect("the first CA bundle of the process");
    let conn = connect(&node.url, "campuspay tls test")
        .await
        .expect("amqps connect with the CA");
    // The TLS node's limits are not under test: no policies, no management API.
    topology(Shards::DEFAULT)
        .declare(&conn)
        .await
        .expect("declare topology over amqps");

    let db = Db::create();
    let pool = {
        let url = db.url.clone();
        tokio::task::spawn_blocking(move || {
            let pool = db::pool(&url, 4).expect("pool");
            db::migrate(&mut pool.get().expect("conn")).expect("migrate");
            pool
        })
        .await
        .unwrap()
    };
    let config = Config::for_urls(&db.url, &node.url);
    let (m, t) = (
        MerchantId::parse("canteen").unwrap(),
        TerminalId::parse("t1").unwrap(),
    );
    let user = UserId::parse("s001").unwrap();
    let (mm, tt, uu) = (m.clone(), t.clone(), user.clone());
    db::run(&pool, move |c| {
        admin::add_merchant(c, &mm, "Canteen")?.expect("merchant added");
        admin::add_terminal(c, &mm, &tt, None)?.expect("terminal added");
        admin::add_card(c, &uu, "Test Cardholder", Identity::Student)?.expect("card issued");
        let hundred = Amount::parse("100.00").unwrap();
        admin::topup(c, &uu, hundred, uuid::Uuid::new_v4(), "test")?.expect("topped up");
        Ok(())
    })
    .await
    .unwrap();
    let codes = campuspay::tsm::issue(
        &pool,
        config.keys.payment_codes.expose(),
        &user,
        config.code_ttl,
        config.code_prefix,
    )
    .await
    .unwrap()
    .unwrap()
    .codes;

    // The whole pipeline, its consumers and publishers on amqps:// like the POS.
    let pipeline = Pipeline::start(&config, pool.clone(), &StageName::ALL);
    let token = campuspay::sim::Tokens::new(&config, pool.clone())
        .terminal(&m, &t)
        .await
        .unwrap();
    let mut pos = Pos::open(&conn, &config.broker_user, m, t, token)
        .await
        .unwrap();
    let rid = RequestId::new_random();
    let paid = pos.pay(rid, &codes[0], "20.00", WAIT).await;
    pipeline.shutdown().await;
    let paid = paid.expect("a result over amqps");
    assert_eq!(paid.request_id, rid);
    assert_eq!(paid.status, TxState::Approved, "{paid:?}");
    assert_eq!(paid.total.unwrap().to_string(), "20.00");

    let u = user.to_string();
    let balance = db::run(&pool, move |c| {
        let kind = campuspay::domain::AccountKind::parse("card").unwrap();
        let a = db::journal::account_of(c, kind, &u)?.expect("the card's account");
        admin::balance_of(c, a)
    })
    .await
    .unwrap();
    assert_eq!(balance, money("80.00"), "the card paid 20.00");
    let report = db::run(&pool, |c| db::ledger::verify(c, 300))
        .await
        .unwrap();
    assert!(report.ok, "{report:?}");

    drop(pool);
    drop(conn);
    eprintln!("tls: done in {:?}", started.elapsed());
}
