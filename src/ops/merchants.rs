//! Merchants, their terminals, and the static QR codes printed for their counters.

use super::{Operator, Ops, OpsError};
use crate::admin::access::{self, BrokerLogin};
use crate::admin::management::Management;
use crate::auth::JwtKeys;
use crate::broker::amqp_url;
use crate::broker::connection::connect_retrying;
use crate::broker::topology::provision_result_queue;
use crate::db::{admin, forward};
use crate::domain::campus_qr::{encode_campus, MerchantQr};
use crate::domain::{MerchantId, Refusal, TerminalId};
use crate::messages::external::pos_result_key;
use serde::Serialize;

pub async fn add_merchant(
    ops: &Ops,
    who: &Operator,
    id: &MerchantId,
    name: &str,
) -> Result<(), OpsError> {
    let (i, n) = (id.clone(), name.to_owned());
    ops.db(move |c| admin::add_merchant(c, &i, &n)).await?;
    ops.record(
        who,
        "merchant.add",
        id.to_string(),
        serde_json::json!({ "name": name }),
    )
    .await;
    Ok(())
}

/// What a terminal needs to start, shown once: its broker login, where its results arrive, and
/// its token.
#[derive(Debug, Clone, Serialize)]
pub struct TerminalCredentials {
    pub merchant_id: MerchantId,
    pub terminal_id: TerminalId,
    pub result_queue: String,
    pub broker: BrokerLogin,
    pub token: String,
    pub token_version: i32,
}

fn management(ops: &Ops) -> Result<Management, OpsError> {
    Ok(Management::new(&ops.config.management_url)?)
}

fn broker_user(ops: &Ops, m: &MerchantId, t: &TerminalId) -> String {
    let vhost = amqp_url::vhost(&ops.config.amqp_url).unwrap_or_else(|| "/".into());
    access::terminal_user(&vhost, m, t)
}

/// The broker user with a new password, the token of `version`: what add and rotate hand out.
async fn credentials(
    ops: &Ops,
    m: &MerchantId,
    t: &TerminalId,
    version: i32,
) -> Result<TerminalCredentials, OpsError> {
    let queue = pos_result_key(m, t);
    provision(ops, &queue).await?;
    let (mgmt, amqp, mm, tt) = (
        management(ops)?,
        ops.config.amqp_url.clone(),
        m.clone(),
        t.clone(),
    );
    let broker = tokio::task::spawn_blocking(move || access::grant(&mgmt, &amqp, &mm, &tt))
        .await
        .map_err(|e| OpsError::Task(e.to_string()))??;
    let token = JwtKeys::new(&ops.config.keys).issue_terminal(m, t, version)?;
    Ok(TerminalCredentials {
        merchant_id: m.clone(),
        terminal_id: t.clone(),
        result_queue: queue,
        broker,
        token,
        token_version: version,
    })
}

/// Registers a terminal: its result queue, its own broker user (with permissions only for
/// its own till) and its token. If the broker part fails the terminal is registered
/// without working credentials: `rotate_terminal` makes them.
pub async fn add_terminal(
    ops: &Ops,
    who: &Operator,
    m: &MerchantId,
    t: &TerminalId,
) -> Result<TerminalCredentials, OpsError> {
    let (mm, tt, user) = (m.clone(), t.clone(), broker_user(ops, m, t));
    let version = ops
        .db(move |c| admin::add_terminal(c, &mm, &tt, Some(&user)))
        .await?;
    let out = credentials(ops, m, t, version).await?;
    ops.record(
        who,
        "terminal.add",
        format!("{m}/{t}"),
        serde_json::json!({}),
    )
    .await;
    Ok(out)
}

/// New credentials for a terminal: a new broker password and a new token; the old ones stop
/// working at once (its open broker connections are closed).
pub async fn rotate_terminal(
    ops: &Ops,
    who: &Operator,
    m: &MerchantId,
    t: &TerminalId,
) -> Result<TerminalCredentials, OpsError> {
    let (mm, tt, user) = (m.clone(), t.clone(), broker_user(ops, m, t));
    let version = ops
        .db(move |c| admin::rotate_terminal(c, &mm, &tt, &user))
        .await?;
    let out = credentials(ops, m, t, version).await?;
    ops.record(
        who,
        "terminal.rotate",
        format!("{m}/{t}"),
        serde_json::json!({ "token_version": version }),
    )
    .await;
    Ok(out)
}

#[derive(Debug, Clone, Serialize)]
pub struct TerminalRemoved {
    pub merchant_id: MerchantId,
    pub terminal_id: TerminalId,
}

/// Removes a terminal: its tokens and its broker user stop working at once. Its payments stay
/// in the books; its result queue stays until an operator purges and deletes it.
pub async fn remove_terminal(
    ops: &Ops,
    who: &Operator,
    m: &MerchantId,
    t: &TerminalId,
) -> Result<TerminalRemoved, OpsError> {
    let (mm, tt) = (m.clone(), t.clone());
    let creds = ops.db(move |c| admin::remove_terminal(c, &mm, &tt)).await?;
    let user = creds.broker_user.unwrap_or_else(|| broker_user(ops, m, t));
    let mgmt = management(ops)?;
    tokio::task::spawn_blocking(move || access::revoke(&mgmt, &user))
        .await
        .map_err(|e| OpsError::Task(e.to_string()))??;
    ops.record(
        who,
        "terminal.remove",
        format!("{m}/{t}"),
        serde_json::json!({}),
    )
    .await;
    Ok(TerminalRemoved {
        merchant_id: m.clone(),
        terminal_id: t.clone(),
    })
}

/// Declares a result queue (terminal or cardholder) and binds it to `pay.results`.
pub(super) async fn provision(ops: &Ops, queue: &str) -> Result<(), OpsError> {
    let conn = connect_retrying(&ops.config.amqp_url, "campuspay admin", 3).await?;
    provision_result_queue(&conn, queue).await?;
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct StaticQr {
    pub merchant_id: MerchantId,
    pub terminal_id: Option<TerminalId>,
    pub payload: String,
}

/// The EMV payload of a printable static code (merchant only, or merchant + terminal),
/// recorded as printed.
pub async fn static_qr(
    ops: &Ops,
    who: &Operator,
    m: &MerchantId,
    t: Option<&TerminalId>,
) -> Result<StaticQr, OpsError> {
    let (mm, tt) = (m.clone(), t.cloned());
    let name = ops
        .db(move |c| {
            let found = forward::check_terminal(c, mm.as_str(), tt.as_ref().map(|t| t.as_str()))?;
            Ok(found.map_err(|p| match (p, tt) {
                (forward::TerminalProblem::UnknownTerminal, Some(t)) => {
                    Refusal::UnknownTerminal(mm.clone(), t)
                }
                (forward::TerminalProblem::UnknownTerminal, None)
                | (forward::TerminalProblem::UnknownMerchant, _) => {
                    Refusal::UnknownMerchant(mm.clone())
                }
            }))
        })
        .await?;
    let payload = encode_campus(
        &MerchantQr::Static {
            merchant_id: m.clone(),
            terminal_id: t.cloned(),
        },
        &name,
    )
    .map_err(|e| crate::db::DbError::Invariant(format!("static QR of {m}: {e}")))?;
    let (mm, tt, p) = (m.clone(), t.cloned(), payload.clone());
    ops.db(move |c| Ok(Ok(forward::record_static(c, &mm, tt.as_ref(), &p)?)))
        .await?;
    let subject = match t {
        Some(t) => format!("{m}/{t}"),
        None => m.to_string(),
    };
    ops.record(who, "qr.static", subject, serde_json::json!({}))
        .await;
    Ok(StaticQr {
        merchant_id: m.clone(),
        terminal_id: t.cloned(),
        payload,
    })
}

/// The merchants with their live terminals.
pub async fn list(ops: &Ops) -> Result<Vec<crate::db::listings::MerchantRow>, OpsError> {
    Ok(crate::db::run(&ops.pool, crate::db::listings::merchants).await?)
}
