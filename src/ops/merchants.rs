//! Merchants, their terminals, and the static QR codes printed for their counters.

use super::{Operator, Ops, OpsError};
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

/// What a new terminal needs to start: where its results arrive and its token.
#[derive(Debug, Clone, Serialize)]
pub struct TerminalAdded {
    pub merchant_id: MerchantId,
    pub terminal_id: TerminalId,
    pub result_queue: String,
    pub token: String,
}

/// Registers a terminal, provisions its durable result queue and issues its token.
pub async fn add_terminal(
    ops: &Ops,
    who: &Operator,
    m: &MerchantId,
    t: &TerminalId,
) -> Result<TerminalAdded, OpsError> {
    let (mm, tt) = (m.clone(), t.clone());
    ops.db(move |c| admin::add_terminal(c, &mm, &tt)).await?;
    let queue = pos_result_key(m, t);
    provision(ops, &queue).await?;
    let token = crate::auth::JwtKeys::new(ops.config.jwt_secret.expose()).issue_terminal(m, t)?;
    ops.record(
        who,
        "terminal.add",
        format!("{m}/{t}"),
        serde_json::json!({}),
    )
    .await;
    Ok(TerminalAdded {
        merchant_id: m.clone(),
        terminal_id: t.clone(),
        result_queue: queue,
        token,
    })
}

/// Declares a result queue (terminal or cardholder) and binds it to `pay.results`.
pub(super) async fn provision(ops: &Ops, queue: &str) -> Result<(), OpsError> {
    let conn = connect_retrying(&ops.config.amqp_url, "campuspay admin", 3).await?;
    let channel = conn.create_channel().await?;
    provision_result_queue(&channel, queue).await?;
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
