//! QR validation, the gateway's front door: bounds the message size, parses the routing key and
//! the JSON, authenticates the terminal's JWT against the routing key and the body, and resolves
//! the payment code (by its keyed hash) to a card. What cannot be tied to a request is
//! dead-lettered; what can but is invalid is declined straight to fan-out.
//!
//! Whether the code is still unused and unexpired is decided by the order stage, atomically with
//! recording the request: a retried request must find its first result, not `code_used`.

use super::{route, to_stage, Deps, Stage, StageError, StageFuture};
use crate::broker::consumer::{Disposition, HandlerOutput, Incoming};
use crate::broker::topology::StageName;
use crate::broker::topology::RESULTS;
use crate::broker::Outgoing;
use crate::db::forward::{self, NewDynamicQr, TerminalProblem};
use crate::db::requests;
use crate::db::{self, payments, validation, DbError};
use crate::domain::campus_qr::{encode_campus, MerchantQr};
use crate::domain::RequestId;
use crate::domain::{DeclineReason, PaymentMode};
use crate::messages::external::{
    parse_dynamic_qr, parse_envelope, parse_follow_up, parse_scan, DeadReason, DynamicQrIssuedV1,
    DynamicQrRequest, IssueStatus, PosRoute, QueryState, QueryStatusV1, ScanDecline,
    DYNAMIC_QR_ISSUED_V1, DYNAMIC_QR_V1, QUERY_STATUS_V1, QUERY_V1, REVERSAL_V1, SCAN_V1,
};
use crate::messages::format_time;
use crate::messages::internal::{Outcome, PaymentItem};
use crate::messages::now_micros;
use crate::tsm::code_hash;
use std::collections::HashMap;

pub struct QrValidation {
    deps: Deps,
}

impl QrValidation {
    pub fn new(deps: Deps) -> QrValidation {
        QrValidation { deps }
    }
}

/// A POS request after parsing.
#[derive(Debug)]
pub enum Request {
    /// A payment (`scan.v1`), pending or already declined.
    Payment(PaymentItem),
    /// A request for a dynamic merchant QR code (`dynamic_qr.v1`).
    DynamicQr(DynamicQrJob),
    /// A `query.v1` or `reversal.v1` about an earlier request.
    FollowUp(FollowUpJob),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUpKind {
    Query,
    Reversal,
}

#[derive(Debug)]
pub struct FollowUpJob {
    pub kind: FollowUpKind,
    pub request_id: RequestId,
    pub route: PosRoute,
    /// Why the follow-up itself is refused, if it is.
    pub refused: Option<DeclineReason>,
}

#[derive(Debug)]
pub struct DynamicQrJob {
    pub request_id: RequestId,
    pub route: PosRoute,
    pub outcome: Result<DynamicQrRequest, ScanDecline>,
}

/// Parses one delivery into a request, or says why it must be dead-lettered.
pub fn classify(inc: &Incoming, deps: &Deps) -> Result<Request, DeadReason> {
    if inc.body.len() > deps.max_message_bytes {
        return Err(DeadReason::TooLarge);
    }
    let route = PosRoute::parse(&inc.routing_key).ok_or(DeadReason::BadRoutingKey)?;
    let expected = match route.verb.as_str() {
        "scan" => SCAN_V1,
        "dynamic_qr" => DYNAMIC_QR_V1,
        "query" => QUERY_V1,
        "reversal" => REVERSAL_V1,
        _ => return Err(DeadReason::UnknownType),
    };
    let envelope = parse_envelope(&inc.body, &[expected])?;
    if expected == QUERY_V1 || expected == REVERSAL_V1 {
        let refused = match deps.jwt.verify_terminal(
            inc.authorization.as_deref(),
            &route.merchant_id,
            &route.terminal_id,
        ) {
            Err(e) => {
                log::warn!(
                    "refusing {expected} for {} on {}: {e}",
                    envelope.request_id,
                    inc.routing_key
                );
                Some(DeclineReason::Unauthorized)
            }
            Ok(_) => parse_follow_up(&inc.body, &route, expected).err(),
        };
        return Ok(Request::FollowUp(FollowUpJob {
            kind: if expected == QUERY_V1 {
                FollowUpKind::Query
            } else {
                FollowUpKind::Reversal
            },
            request_id: envelope.request_id,
            route,
            refused,
        }));
    }
    if expected == DYNAMIC_QR_V1 {
        let auth = deps.jwt.verify_terminal(
            inc.authorization.as_deref(),
            &route.merchant_id,
            &route.terminal_id,
        );
        let outcome = match auth {
            Err(e) => {
                log::warn!(
                    "declining dynamic QR request {} on {}: unauthorized ({e})",
                    envelope.request_id,
                    inc.routing_key
                );
                Err(ScanDecline {
                    reason: DeclineReason::Unauthorized,
                    amount: None,
                })
            }
            Ok(_) => parse_dynamic_qr(&inc.body, &route),
        };
        return Ok(Request::DynamicQr(DynamicQrJob {
            request_id: envelope.request_id,
            route,
            outcome,
        }));
    }
    let mut item = PaymentItem {
        request_id: envelope.request_id,
        mode: PaymentMode::ReverseScan,
        merchant_id: route.merchant_id.clone(),
        terminal_id: route.terminal_id.clone(),
        amount: None,
        code_hash: None,
        card: None,
        transaction_id: None,
        fee: None,
        fee_rule_id: None,
        pin_verified: false,
        outcome: Outcome::Pending,
    };
    let now = now_micros();
    if let Err(e) = deps.jwt.verify_terminal(
        inc.authorization.as_deref(),
        &route.merchant_id,
        &route.terminal_id,
    ) {
        log::warn!(
            "declining request {} on {}: unauthorized ({e})",
            item.request_id,
            inc.routing_key
        );
        item.decline(DeclineReason::Unauthorized, now);
        return Ok(Request::Payment(item));
    }
    match parse_scan(&inc.body, &route) {
        Ok(scan) => {
            item.amount = Some(scan.amount);
            item.code_hash = Some(code_hash(deps.code_key.expose(), &scan.payment_code));
        }
        Err(decline) => {
            item.amount = decline.amount;
            item.decline(decline.reason, now);
        }
    }
    Ok(Request::Payment(item))
}

impl Stage for QrValidation {
    const NAME: StageName = StageName::QrValidation;

    fn handle(&self, batch: Vec<Incoming>) -> StageFuture {
        let deps = self.deps.clone();
        Box::pin(async move {
            let mut dispositions = Vec::with_capacity(batch.len());
            let mut items = Vec::with_capacity(batch.len());
            let mut qr_jobs = Vec::new();
            let mut follow_ups = Vec::new();
            for inc in &batch {
                match classify(inc, &deps) {
                    Ok(Request::Payment(item)) => {
                        items.push(item);
                        dispositions.push(Disposition::Ack);
                    }
                    Ok(Request::DynamicQr(job)) => {
                        qr_jobs.push(job);
                        dispositions.push(Disposition::Ack);
                    }
                    Ok(Request::FollowUp(job)) => {
                        follow_ups.push(job);
                        dispositions.push(Disposition::Ack);
                    }
                    Err(reason) => dispositions.push(Disposition::DeadLetter {
                        reason: reason.as_str().to_owned(),
                    }),
                }
            }
            resolve_cards(&deps, &mut items).await?;
            let mut publish = route(items, StageName::Order.as_str())?;
            if !qr_jobs.is_empty() {
                publish.extend(issue_dynamic_codes(&deps, qr_jobs).await?);
            }
            if !follow_ups.is_empty() {
                publish.extend(answer_follow_ups(&deps, follow_ups).await?);
            }
            Ok(HandlerOutput {
                publish,
                dispositions,
            })
        })
    }
}

/// Resolves each pending payment's merchant, terminal and card; throttles terminals that keep
/// presenting unknown codes, and counts their new failures.
async fn resolve_cards(deps: &Deps, items: &mut [PaymentItem]) -> Result<(), StageError> {
    let pending: Vec<&PaymentItem> = items.iter().filter(|i| i.is_pending()).collect();
    if !pending.is_empty() {
        let merchants: Vec<String> = pending.iter().map(|i| i.merchant_id.to_string()).collect();
        let hashes: Vec<Vec<u8>> = pending.iter().filter_map(|i| i.code_hash.clone()).collect();
        let (lookup, throttled) = db::run(&deps.pool, move |conn| {
            let throttled = validation::throttled_terminals(conn, &merchants)?;
            Ok((
                validation::lookup_for_validation(conn, &merchants, &hashes)?,
                throttled,
            ))
        })
        .await?;
        let now = now_micros();
        for item in items.iter_mut().filter(|i| i.is_pending()) {
            let m = item.merchant_id.to_string();
            let t = item.terminal_id.to_string();
            if !lookup.merchants.contains(&m) {
                item.decline(DeclineReason::UnknownMerchant, now);
            } else if !lookup.terminals.contains(&(m.clone(), t.clone())) {
                item.decline(DeclineReason::UnknownTerminal, now);
            } else if throttled.contains(&(m, t)) {
                log::warn!(
                    "terminal {}/{} throttled: too many failed code attempts (request {})",
                    item.merchant_id,
                    item.terminal_id,
                    item.request_id
                );
                item.decline(DeclineReason::RateLimited, now);
            } else {
                match item
                    .code_hash
                    .as_ref()
                    .and_then(|h| lookup.cards_by_code.get(h))
                {
                    Some(card) => item.card = Some(card.clone()),
                    None => item.decline(DeclineReason::UnknownCode, now),
                }
            }
        }
    }
    let mut failures: HashMap<(String, String), i32> = HashMap::new();
    for item in items.iter() {
        if let Outcome::Done(d) = &item.outcome {
            if d.reason == Some(DeclineReason::UnknownCode) {
                *failures
                    .entry((item.merchant_id.to_string(), item.terminal_id.to_string()))
                    .or_default() += 1;
            }
        }
    }
    if !failures.is_empty() {
        db::run(&deps.pool, move |conn| {
            validation::record_failures(conn, &failures)
        })
        .await?;
    }
    Ok(())
}

/// Answers queries and carries out reversals. A request with a final state gets its
/// `result.v1` (re-sent through fan-out, so both the POS and the cardholder see it); one without
/// gets a `query_status.v1`.
async fn answer_follow_ups(
    deps: &Deps,
    jobs: Vec<FollowUpJob>,
) -> Result<Vec<Outgoing>, StageError> {
    let (finals, statuses) = db::run(&deps.pool, move |conn| {
        let mut finals = Vec::new();
        let mut statuses = Vec::new();
        for job in jobs {
            let status = |state, reason| QueryStatusV1 {
                kind: QUERY_STATUS_V1.into(),
                request_id: job.request_id,
                merchant_id: job.route.merchant_id.clone(),
                terminal_id: job.route.terminal_id.clone(),
                state,
                reason,
                checked_at: format_time(now_micros()),
            };
            if let Some(reason) = job.refused {
                statuses.push(status(QueryState::Rejected, Some(reason)));
                continue;
            }
            let scope = format!("pos:{}:{}", job.route.merchant_id, job.route.terminal_id);
            let found = match job.kind {
                FollowUpKind::Query => requests::query(conn, &scope, job.request_id.0)?,
                FollowUpKind::Reversal => Some(requests::reverse(
                    conn,
                    &scope,
                    job.request_id.0,
                    &job.route.merchant_id,
                    &job.route.terminal_id,
                )?),
            };
            match found {
                None => statuses.push(status(QueryState::Unknown, None)),
                Some((row, card)) => match payments::item_from_row(&row, card) {
                    Some(item) => finals.push(item),
                    None => statuses.push(status(QueryState::Processing, None)),
                },
            }
        }
        Ok((finals, statuses))
    })
    .await?;
    let mut out = Vec::new();
    if !finals.is_empty() {
        out.extend(to_stage(StageName::Fanout.as_str(), finals)?);
    }
    for s in statuses {
        let key = crate::messages::external::pos_result_key(&s.merchant_id, &s.terminal_id);
        out.push(Outgoing::json(
            RESULTS,
            key,
            serde_json::to_vec(&s).unwrap_or_default(),
        ));
    }
    Ok(out)
}

/// Issues (or, for a retried request, finds again) a dynamic code per job and answers each
/// on the terminal's result key with `dynamic_qr_issued.v1`.
async fn issue_dynamic_codes(
    deps: &Deps,
    jobs: Vec<DynamicQrJob>,
) -> Result<Vec<Outgoing>, StageError> {
    let key = deps.code_key.clone();
    let ttl =
        chrono::Duration::from_std(deps.dynamic_qr_ttl).unwrap_or(chrono::Duration::minutes(5));
    let answers = db::run(&deps.pool, move |conn| {
        let mut answers = Vec::with_capacity(jobs.len());
        for job in jobs {
            let answer =
                |status, reason, amount, payload, reference, expires_at| DynamicQrIssuedV1 {
                    kind: DYNAMIC_QR_ISSUED_V1.into(),
                    request_id: job.request_id,
                    status,
                    reason,
                    merchant_id: job.route.merchant_id.clone(),
                    terminal_id: job.route.terminal_id.clone(),
                    amount,
                    payload,
                    reference,
                    expires_at,
                };
            let req = match &job.outcome {
                Ok(r) => r,
                Err(d) => {
                    answers.push(answer(
                        IssueStatus::Declined,
                        Some(d.reason),
                        d.amount,
                        None,
                        None,
                        None,
                    ));
                    continue;
                }
            };
            let name = match forward::check_terminal(
                conn,
                req.merchant_id.as_str(),
                Some(req.terminal_id.as_str()),
            )? {
                Ok(name) => name,
                Err(p) => {
                    let reason = match p {
                        TerminalProblem::UnknownMerchant => DeclineReason::UnknownMerchant,
                        TerminalProblem::UnknownTerminal => DeclineReason::UnknownTerminal,
                    };
                    answers.push(answer(
                        IssueStatus::Declined,
                        Some(reason),
                        Some(req.amount),
                        None,
                        None,
                        None,
                    ));
                    continue;
                }
            };
            let reference = crate::qr::new_reference();
            let signature = crate::qr::sign(
                key.expose(),
                &req.merchant_id,
                &req.terminal_id,
                req.amount,
                &reference,
            );
            let payload = encode_campus(
                &MerchantQr::Dynamic {
                    merchant_id: req.merchant_id.clone(),
                    terminal_id: req.terminal_id.clone(),
                    amount: req.amount,
                    reference: reference.clone(),
                    signature,
                },
                &name,
            )
            .map_err(|e| DbError::Invariant(format!("dynamic QR of {}: {e}", req.merchant_id)))?;
            let scope = format!("pos:{}:{}", req.merchant_id, req.terminal_id);
            let row = forward::issue_dynamic(
                conn,
                NewDynamicQr {
                    scope: &scope,
                    request_id: req.request_id.0,
                    merchant: &req.merchant_id,
                    terminal: &req.terminal_id,
                    amount: req.amount,
                    reference: &reference,
                    payload: &payload,
                    expires_at: now_micros() + ttl,
                },
            )?;
            match row {
                Ok(row) => answers.push(answer(
                    IssueStatus::Issued,
                    None,
                    Some(req.amount),
                    Some(row.payload),
                    Some(row.reference),
                    Some(format_time(row.expires_at)),
                )),
                // The terminal was checked above; only a concurrent removal lands here.
                Err(p) => answers.push(answer(
                    IssueStatus::Declined,
                    Some(match p {
                        TerminalProblem::UnknownMerchant => DeclineReason::UnknownMerchant,
                        TerminalProblem::UnknownTerminal => DeclineReason::UnknownTerminal,
                    }),
                    Some(req.amount),
                    None,
                    None,
                    None,
                )),
            }
        }
        Ok(answers)
    })
    .await?;
    Ok(answers
        .into_iter()
        .map(|a| {
            let key = crate::messages::external::pos_result_key(&a.merchant_id, &a.terminal_id);
            Outgoing::json(RESULTS, key, serde_json::to_vec(&a).unwrap_or_default())
        })
        .collect())
}
