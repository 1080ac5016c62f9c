//! The bench's own scratch database and vhost (`BenchEnv`, dropped at the end, on error and
//! on Ctrl-C), the URL helpers, and what is read back from the servers: the broker's message
//! totals and the RabbitMQ and PostgreSQL versions.

use super::report::Report;
use super::{blocking, fail, BenchError};
use campuspay::admin::management::Management;
use campuspay::config::Config;
use diesel::{Connection, PgConnection, RunQueryDsl};
use std::collections::BTreeMap;
use std::time::Duration;

/// `url` with its last path segment (database or vhost) replaced by `name`, query kept.
pub(super) fn with_last_segment(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let prefix = base.rsplit_once('/').map(|(p, _)| p).unwrap_or(base);
    match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    }
}

/// An AMQP setting (one node, or a cluster's comma-separated nodes) naming vhost `name`.
pub(super) fn vhost_url(amqp_url: &str, name: &str) -> String {
    campuspay::broker::amqp_url::nodes(amqp_url)
        .into_iter()
        .map(|node| with_last_segment(node, name))
        .collect::<Vec<_>>()
        .join(",")
}

/// The bench's own database and vhost; dropped by `cleanup` (idempotent) or on drop.
pub(super) struct BenchEnv {
    pub(super) name: String,
    pub(super) admin_db_url: String,
    pub(super) db_url: Option<String>,
    pub(super) amqp_url: String,
    pub(super) mgmt: Management,
    has_vhost: bool,
    keep: bool,
    /// Dropped (or kept) already.
    done: bool,
}

impl BenchEnv {
    pub(super) async fn create(
        config: &Config,
        with_db: bool,
        with_vhost: bool,
        keep: bool,
    ) -> Result<BenchEnv, BenchError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("cp_bench_{}", &id[..12]);
        let mgmt = Management::new(&config.management_url).map_err(fail)?;
        let mut env = BenchEnv {
            admin_db_url: with_last_segment(&config.database_url, "postgres"),
            db_url: None,
            amqp_url: vhost_url(&config.amqp_url, &name),
            name,
            mgmt,
            has_vhost: false,
            keep,
            done: false,
        };
        if with_db {
            let (admin, name) = (env.admin_db_url.clone(), env.name.clone());
            blocking(move || {
                let mut c = PgConnection::establish(&admin)
                    .map_err(|e| fail(format!("cannot connect to {admin}: {e}")))?;
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut c)
                    .map_err(fail)?;
                Ok(())
            })
            .await?;
            env.db_url = Some(with_last_segment(&config.database_url, &env.name));
        }
        if with_vhost {
            let (m, name) = (env.mgmt.clone(), env.name.clone());
            // The AMQP user needs the vhost; so does the management user (queue depths).
            let mut users = vec![url_user(&config.amqp_url), url_user(&config.management_url)];
            users.dedup();
            env.has_vhost = true;
            blocking(move || {
                m.create_vhost(&name).map_err(fail)?;
                for u in &users {
                    m.grant_all(&name, u).map_err(fail)?;
                }
                Ok(())
            })
            .await?;
        }
        eprintln!("[bench] environment {} created", env.name);
        Ok(env)
    }

    pub(super) fn cleanup(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        if self.keep {
            eprintln!("[bench] keeping database and vhost {} (--keep)", self.name);
            return;
        }
        let mut left = Vec::new();
        if self.has_vhost {
            if let Err(e) = self.mgmt.delete_vhost(&self.name) {
                left.push(format!("vhost ({e})"));
            }
        }
        if self.db_url.is_some() {
            let dropped = PgConnection::establish(&self.admin_db_url)
                .map_err(|e| e.to_string())
                .and_then(|mut c| {
                    diesel::sql_query(format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        self.name
                    ))
                    .execute(&mut c)
                    .map_err(|e| e.to_string())
                });
            if let Err(e) = dropped {
                left.push(format!("database ({e})"));
            }
        }
        if left.is_empty() {
            eprintln!("[bench] environment {} dropped", self.name);
        } else {
            eprintln!(
                "[bench] WARNING: could not drop {} of {}: drop them by hand",
                left.join(" and "),
                self.name
            );
        }
    }
}

impl Drop for BenchEnv {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// The user named in `scheme://user:pass@host/...` (RabbitMQ's default: guest).
fn url_user(url: &str) -> String {
    url.split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(creds, _)| creds.split(':').next())
        .filter(|u| !u.is_empty())
        .unwrap_or("guest")
        .to_owned()
}

/// Message counts of the bench vhost from the management API, totals since it was created:
/// per queue (messages routed into it) and for the vhost (publishes, deliveries, acks,
/// confirms). Statistics are collected every few seconds, so call this a while after the run.
fn broker_counts(management_url: &str, vhost: &str) -> Option<BTreeMap<String, u64>> {
    let rest = management_url.strip_prefix("http://")?;
    let (creds, host) = rest.split_once('@')?;
    let auth = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, creds)
    );
    let get = |path: &str| -> Option<serde_json::Value> {
        ureq::get(&format!("http://{}{path}", host.trim_end_matches('/')))
            .set("authorization", &auth)
            .timeout(Duration::from_secs(15))
            .call()
            .ok()?
            .into_json()
            .ok()
    };
    let mut out = BTreeMap::new();
    let v = get(&format!("/api/vhosts/{vhost}"))?;
    for k in [
        "publish",
        "deliver_get",
        "ack",
        "confirm",
        "redeliver",
        "return_unroutable",
    ] {
        if let Some(n) = v["message_stats"][k].as_u64() {
            out.insert(format!("vhost.{k}"), n);
        }
    }
    if let Some(Some(queues)) = get(&format!("/api/queues/{vhost}")).map(|q| q.as_array().cloned())
    {
        let mut pos = 0;
        for q in queues {
            let (Some(name), n) = (q["name"].as_str(), q["message_stats"]["publish"].as_u64())
            else {
                continue;
            };
            if name.starts_with("pos.") {
                pos += n.unwrap_or(0);
            } else {
                out.insert(format!("queue.{name}"), n.unwrap_or(0));
            }
        }
        out.insert("queue.pos.*".into(), pos);
    }
    Some(out)
}

/// Reads the broker's message totals (after the statistics interval) into the report.
pub(super) async fn fill_broker_counts(
    r: &mut Report,
    config: &Config,
    vhost: &str,
    answered: usize,
) {
    // The management plugin refreshes its statistics every 5 s.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let (url, v) = (config.management_url.clone(), vhost.to_owned());
    let counts = tokio::task::spawn_blocking(move || broker_counts(&url, &v))
        .await
        .ok()
        .flatten();
    if let Some(counts) = counts {
        let n = answered.max(1) as f64;
        r.broker_per_payment = counts.into_iter().map(|(k, v)| (k, v as f64 / n)).collect();
    }
}

pub(super) async fn rabbit_version(env: &BenchEnv) -> String {
    let (m, v) = (env.mgmt.clone(), env.name.clone());
    tokio::task::spawn_blocking(move || {
        m.definitions(&v)
            .ok()
            .and_then(|d| d["rabbit_version"].as_str().map(str::to_owned))
            .unwrap_or_default()
    })
    .await
    .unwrap_or_default()
}

pub(super) async fn postgres_version(url: String) -> String {
    #[derive(diesel::QueryableByName)]
    struct V {
        #[diesel(sql_type = diesel::sql_types::Text)]
        server_version: String,
    }
    tokio::task::spawn_blocking(move || {
        let mut c = PgConnection::establish(&url).ok()?;
        diesel::sql_query("SHOW server_version")
            .get_result::<V>(&mut c)
            .ok()
            .map(|v| v.server_version)
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_default()
}

/// Closes the channels, then the connection (lapin logs an error for a connection closed with
/// channels still open).
pub async fn close(conn: lapin::Connection, channels: &[lapin::Channel]) {
    for ch in channels {
        let _ = ch.close(200, "done".into()).await;
    }
    let _ = conn.close(200, "done".into()).await;
}
