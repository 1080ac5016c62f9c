//! Test environment: a fresh database (migrated) and a fresh vhost (topology declared) per test,
//! the pipeline running in-process, and helpers to set up a campus and pay.

use campuspay::admin::management::Management;
use campuspay::admin::queues::{
    committed_definitions, topology_check, TopologyReport, DEFINITIONS_FILE,
};
use campuspay::auth::JwtKeys;
use campuspay::broker::topology::{topology, StageName};
use campuspay::config::{Config, DEFAULT_AMQP_URL, DEFAULT_DATABASE_URL};
use campuspay::db::{self, admin, journal, ledger::LedgerReport, Pool};
use campuspay::domain::{
    AccountKind, Amount, FeeRate, Identity, MerchantId, Money, RequestId, TerminalId, UserId,
};
use campuspay::messages::external::ResultV1;
use campuspay::pipeline::Pipeline;
use campuspay::sim::pos::Pos;
use campuspay::sim::results::Subscriber;
use campuspay::tsm;
use diesel::{Connection, PgConnection, RunQueryDsl};
use std::time::Duration;

pub const WAIT: Duration = Duration::from_secs(20);

/// `url` naming `name` as its database or vhost (its last path segment) instead, its query
/// string (`?target_session_attrs=…`, `?heartbeat=…`) kept.
fn renamed(url: &str, name: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, format!("?{q}")),
        None => (url, String::new()),
    };
    let base = head.rsplit_once('/').map(|(b, _)| b).unwrap_or(head);
    format!("{base}/{name}{query}")
}

/// A PostgreSQL URL (one host, or libpq's `h1:p1,h2:p2` list) for database `name`.
/// The committed `rabbitmq/definitions.json`.
pub fn definitions_file() -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFINITIONS_FILE);
    committed_definitions(Some(&path))
        .expect("definitions.json")
        .0
}

/// A topology report's drift as (problem, object, name).
pub fn drift_found(r: &TopologyReport) -> Vec<(&str, &str, &str)> {
    r.drift
        .iter()
        .map(|d| (d.problem, d.object, d.name.as_str()))
        .collect()
}

pub fn database_url(url: &str, name: &str) -> String {
    renamed(url, name)
}

/// An AMQP URL (one node, or a comma-separated list of a cluster's nodes) for vhost `name`.
pub fn vhost_url(url: &str, name: &str) -> String {
    campuspay::broker::amqp_url::nodes(url)
        .into_iter()
        .map(|node| renamed(node, name))
        .collect::<Vec<_>>()
        .join(",")
}

pub struct TestEnv {
    pub config: Config,
    pub pool: Pool,
    pub conn: lapin::Connection,
    pub jwt: JwtKeys,
    pub vhost: String,
    db_name: String,
    admin_db_url: String,
    mgmt: Management,
    pipeline: Option<Pipeline>,
    platform: Option<campuspay::platform::Platform>,
}

impl TestEnv {
    /// A fresh database and vhost with the whole pipeline running.
    pub async fn start() -> TestEnv {
        let mut env = TestEnv::empty().await;
        env.pipeline = Some(Pipeline::start(
            &env.config,
            env.pool.clone(),
            &StageName::ALL,
        ));
        env
    }

    /// A fresh database and vhost, topology declared, no stage running.
    pub async fn empty() -> TestEnv {
        let _ = env_logger::builder().is_test(true).try_init();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("cp_test_{}", &id[..12]);
        let db_env = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.into());
        let amqp_env = std::env::var("AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.into());
        let admin_db_url = database_url(&db_env, "postgres");
        let db_url = database_url(&db_env, &name);
        let amqp_url = vhost_url(&amqp_env, &name);
        let config = Config::for_urls(&db_url, &amqp_url);
        let mgmt = Management::new(&config.management_url).expect("management url");

        let (n, a, u) = (name.clone(), admin_db_url.clone(), db_url.clone());
        let m = mgmt.clone();
        let pool = tokio::task::spawn_blocking(move || {
            let mut admin = PgConnection::establish(&a).expect("connect to postgres");
            diesel::sql_query(format!("CREATE DATABASE {n}"))
                .execute(&mut admin)
                .expect("create test database");
            m.create_vhost(&n).expect("create vhost");
            m.grant_all(&n, "guest").expect("grant vhost");
            let pool = db::pool(&u, 6).expect("pool");
            db::migrate(&mut pool.get().expect("conn")).expect("migrate");
            pool
        })
        .await
        .expect("setup task");

        let conn = campuspay::broker::connection::connect_retrying(&amqp_url, "campuspay test", 5)
            .await
            .expect("amqp connect");
        campuspay::admin::queues::set_up(
            &conn,
            &mgmt,
            &name,
            &topology(config.settlement_shards),
            campuspay::admin::queues::ExistingPolicies::Reset,
        )
        .await
        .expect("declare topology and its policies");
        let jwt = JwtKeys::new(&config.keys);
        TestEnv {
            config,
            pool,
            conn,
            jwt,
            vhost: name.clone(),
            db_name: name,
            admin_db_url,
            mgmt,
            pipeline: None,
            platform: None,
        }
    }

    pub fn mgmt(&self) -> &Management {
        &self.mgmt
    }

    /// `topology_check` of this test's vhost against the committed definitions.
    pub async fn check_topology(&self) -> TopologyReport {
        topology_check(
            &self.mgmt,
            &self.vhost,
            &definitions_file(),
            DEFINITIONS_FILE,
            self.config.settlement_shards,
        )
        .await
        .expect("topology check")
    }

    pub async fn merchant(&self, m: &str, terminals: &[&str]) -> MerchantId {
        let mid = MerchantId::parse(m).unwrap();
        let ts: Vec<TerminalId> = terminals
            .iter()
            .map(|t| TerminalId::parse(t).unwrap())
            .collect();
        let mm = mid.clone();
        db::run(&self.pool, move |c| {
            admin::add_merchant(c, &mm, &format!("Merchant {mm}"))?.expect("merchant added");
            for t in &ts {
                admin::add_terminal(c, &mm, t, None)?.expect("terminal added");
            }
            Ok(())
        })
        .await
        .unwrap();
        mid
    }

    pub async fn fee(&self, identity: Identity, rate: &str, merchant: Option<&str>) {
        let rate = FeeRate::parse(rate).unwrap();
        let m = merchant.map(|m| MerchantId::parse(m).unwrap());
        db::run(&self.pool, move |c| {
            Ok(admin::set_fee(c, identity, rate, m.as_ref())?.expect("fee rule added"))
        })
        .await
        .unwrap();
    }

    /// A cardholder with a card holding `balance` (a top-up when > 0).
    pub async fn card(&self, user: &str, identity: Identity, balance: &str) -> UserId {
        let u = UserId::parse(user).unwrap();
        let uu = u.clone();
        let amount = Amount::parse(balance).ok();
        db::run(&self.pool, move |c| {
            admin::add_card(c, &uu, "Test Cardholder", identity)?.expect("card issued");
            if let Some(a) = amount {
                admin::topup(c, &uu, a, uuid::Uuid::new_v4(), "test")?.expect("topped up");
            }
            Ok(())
        })
        .await
        .unwrap();
        u
    }

    pub async fn codes(&self, user: &UserId) -> Vec<String> {
        tsm::issue(
            &self.pool,
            self.config.keys.payment_codes.expose(),
            user,
            self.config.code_ttl,
            self.config.code_prefix,
        )
        .await
        .unwrap()
        .unwrap()
        .codes
    }

    pub async fn pos(&self, m: &str, t: &str) -> Pos {
        let (m, t) = (MerchantId::parse(m).unwrap(), TerminalId::parse(t).unwrap());
        // At the terminal's current version; a terminal that is not registered (tests of
        // unknown terminals) gets a version-1 token.
        let token = match self.tokens().terminal(&m, &t).await {
            Ok(token) => token,
            Err(_) => self.jwt.issue_terminal(&m, &t, 1).unwrap(),
        };
        Pos::open(&self.conn, &self.config.broker_user, m, t, token)
            .await
            .unwrap()
    }

    /// The set-up of the refund and reversal tests: merchant m1 with till t1, a 10 % fee for
    /// external cards, and card x001 (100.00) that has just paid 20.00 at t1 through the
    /// pipeline. Returns the cardholder, the till, the request and its result.
    pub async fn paid_twenty_with_fee(&self) -> (UserId, Pos, RequestId, ResultV1) {
        self.merchant("m1", &["t1"]).await;
        self.fee(Identity::External, "0.10", None).await;
        let user = self.card("x001", Identity::External, "100.00").await;
        let mut pos = self.pos("m1", "t1").await;
        let codes = self.codes(&user).await;
        let rid = RequestId::new_random();
        let paid = pos.pay(rid, &codes[0], "20.00", WAIT).await.unwrap();
        (user, pos, rid, paid)
    }

    /// Tokens at the versions the database holds.
    pub fn tokens(&self) -> campuspay::sim::Tokens {
        campuspay::sim::Tokens::new(&self.config, self.pool.clone())
    }

    pub async fn subscribe(&self, queue: &str) -> Subscriber {
        Subscriber::open(&self.conn, queue).await.unwrap()
    }

    pub async fn balance(&self, user: &UserId) -> Money {
        let u = user.to_string();
        self.account_balance("card", &u).await
    }

    pub async fn account_balance(&self, kind: &str, owner: &str) -> Money {
        let kind = AccountKind::parse(kind).expect("an account kind");
        let o = owner.to_string();
        db::run(&self.pool, move |c| {
            let a = journal::account_of(c, kind, &o)?.expect("the account exists");
            admin::balance_of(c, a)
        })
        .await
        .unwrap()
    }

    pub async fn verify(&self) -> LedgerReport {
        db::run(&self.pool, |c| db::ledger::verify(c, 300))
            .await
            .unwrap()
    }

    pub async fn sql(&self, sql: &str) -> usize {
        let s = sql.to_string();
        db::run(&self.pool, move |c| Ok(diesel::sql_query(s).execute(c)?))
            .await
            .unwrap()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.try_count(sql).await.unwrap()
    }

    /// `count`, or the error: for polling while the database fails over.
    pub async fn try_count(&self, sql: &str) -> Result<i64, db::DbError> {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let s = sql.to_string();
        db::run(&self.pool, move |c| {
            Ok(diesel::sql_query(s).get_result::<N>(c)?.n)
        })
        .await
    }

    /// Serves the payment platform on a free local port and waits until its result hub
    /// consumes results (so no pushed result is missed); returns its base URL.
    pub async fn start_platform(&mut self) -> String {
        self.serve("127.0.0.1:0").await
    }

    /// Stops the platform; returns the address it served (for `start_platform_at`).
    pub async fn stop_platform(&mut self) -> String {
        let p = self.platform.take().expect("a platform to stop");
        let addr = p.addr.to_string();
        p.stop().await;
        addr
    }

    /// Serves the platform at `addr` again after `stop_platform`: open pages reconnect to it
    /// as across a deployment.
    pub async fn start_platform_at(&mut self, addr: &str) -> String {
        self.serve(addr).await
    }

    async fn serve(&mut self, addr: &str) -> String {
        let p = campuspay::platform::Platform::start(&self.config, self.pool.clone(), addr)
            .expect("platform starts");
        tokio::time::timeout(WAIT, p.ready())
            .await
            .expect("the platform's result hub is ready in time");
        let url = format!("http://{}", p.addr);
        self.platform = Some(p);
        // Sign-in links made from now on point at this platform.
        self.config.public_url = url.clone();
        url
    }

    /// The back office's use cases on this test's database and settings.
    pub fn ops(&self) -> campuspay::ops::Ops {
        campuspay::ops::Ops::new(self.pool.clone(), self.config.clone())
    }

    /// A one-time sign-in link for the wallet page (`admin token --user U --link`), on the
    /// platform started last.
    pub async fn sign_in_link(&self, user: &UserId) -> String {
        campuspay::ops::tokens::cardholder_link(
            &self.ops(),
            &campuspay::ops::Operator::admin("admin:test"),
            user,
            None,
        )
        .await
        .expect("a sign-in link")
        .url
    }

    /// A phone signed in as `user` (a new cardholder's tokens are of version 1).
    pub fn phone(&self, base: &str, user: &UserId) -> campuspay::sim::phone::Phone {
        let token = self.jwt.issue_cardholder(user, 3600, 1).unwrap();
        campuspay::sim::phone::Phone::new(base, &token)
    }

    /// Starts the whole pipeline (again).
    pub fn start_pipeline(&mut self) {
        self.start_stages(&StageName::ALL);
    }

    pub fn start_stages(&mut self, stages: &[StageName]) {
        assert!(self.pipeline.is_none(), "pipeline already running");
        self.pipeline = Some(Pipeline::start(&self.config, self.pool.clone(), stages));
    }

    /// Stops the pipeline gracefully (in-flight batches finish).
    pub async fn stop_pipeline(&mut self) {
        if let Some(p) = self.pipeline.take() {
            p.shutdown().await;
        }
    }
}

/// Runs blocking work (ureq calls, std I/O) off the async test thread.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Polls `check` every `every` until it returns `Ok`, for at most `within`; then panics with
/// `what` and the last `Err` it returned (what was seen instead). The one poll loop of the
/// tests: the broker's management statistics and a worker's progress are only observable by
/// asking again.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, every: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(seen) => assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within {within:?}; last seen: {seen}"
            ),
        }
        tokio::time::sleep(every).await;
    }
}

/// Asserts nothing more arrives on `sub` for a short while ("exactly one result").
pub async fn assert_quiet(sub: &mut Subscriber) {
    if let Some((extra, _)) = sub.next_raw(Duration::from_millis(500)).await.unwrap() {
        panic!("unexpected extra result on {}: {extra:?}", sub.queue);
    }
}

#[test]
fn urls_are_renamed_for_each_test() {
    assert_eq!(
        database_url(
            "postgres://p@h1:5433,h2:5434/campuspay?target_session_attrs=read-write",
            "x"
        ),
        "postgres://p@h1:5433,h2:5434/x?target_session_attrs=read-write"
    );
    assert_eq!(
        database_url("postgres://p@h/campuspay", "x"),
        "postgres://p@h/x"
    );
    assert_eq!(
        vhost_url("amqp://g:g@a:1/%2f,amqp://g:g@b:2/%2f?heartbeat=5", "v"),
        "amqp://g:g@a:1/v,amqp://g:g@b:2/v?heartbeat=5"
    );
}

pub fn money(s: &str) -> Money {
    Money::try_from(s.to_string()).unwrap()
}

pub fn schema_check(kind: &str, raw: &[u8]) {
    let path = format!("{}/schemas/{kind}.json", env!("CARGO_MANIFEST_DIR"));
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("schema file")).unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema compiles");
    let instance: serde_json::Value = serde_json::from_slice(raw).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{kind} message {instance} violates the schema: {errors:?}"
    );
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Best effort, and never panic in drop: the vhost (closing its connections) and the
        // database (terminating its sessions) go away, and so do the terminals' broker users
        // made in it (`pos.<m>.<t>@<vhost>`: users are not per vhost).
        let _ = self.mgmt.delete_vhost(&self.vhost);
        let suffix = format!("@{}", self.vhost);
        for user in self.mgmt.users().unwrap_or_default() {
            if user.ends_with(&suffix) {
                let _ = self.mgmt.delete_user(&user);
            }
        }
        if let Ok(mut c) = PgConnection::establish(&self.admin_db_url) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.db_name
            ))
            .execute(&mut c);
        }
    }
}

/// Takes (and acks) the next `n` dead letters from `pay.dead`, waiting up to `wait` for each.
pub async fn take_dead_letters(
    env: &TestEnv,
    n: usize,
    wait: Duration,
) -> Vec<lapin::message::Delivery> {
    use futures_util::StreamExt;
    let channel = env.conn.create_channel().await.unwrap();
    let mut dead = channel
        .basic_consume(
            campuspay::broker::topology::DEAD_QUEUE.into(),
            "".into(),
            lapin::options::BasicConsumeOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let d = tokio::time::timeout(wait, dead.next())
            .await
            .expect("a dead letter")
            .unwrap()
            .unwrap();
        d.ack(lapin::options::BasicAckOptions::default())
            .await
            .unwrap();
        out.push(d);
    }
    out
}

/// A string header of a delivery.
pub fn header(d: &lapin::message::Delivery, key: &str) -> Option<String> {
    match d.properties.headers().as_ref()?.inner().get(key)? {
        lapin::types::AMQPValue::LongString(s) => {
            Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        lapin::types::AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}
