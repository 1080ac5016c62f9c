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
use crate::db::validation::{self, Gate};
use crate::db::{self, payments, DbError};
use crate::domain::campus_qr::{encode_campus, MerchantQr};
use crate::domain::{DeclineReason, MerchantId, PaymentMode, RequestId, TerminalId};
use crate::messages::external::{
    parse_dynamic_qr, parse_envelope, parse_follow_up, parse_scan, DeadReason, DynamicQrIssuedV1,
    DynamicQrRequest, IssueStatus, PosRoute, QueryState, QueryStatusV1, ScanDecline,
    DYNAMIC_QR_ISSUED_V1, DYNAMIC_QR_V1, QUERY_STATUS_V1, QUERY_V1, REVERSAL_V1, SCAN_V1,
};
use crate::messages::format_time;
use crate::messages::internal::{Outcome, PaymentItem};
use crate::messages::now_micros;
use crate::tsm::code_hash;
use diesel::Connection;
use std::collections::HashMap;

pub struct QrValidation {
    deps: Deps,
}

impl QrValidation {
    pub fn new(deps: Deps) -> QrValidation {
        QrValidation { deps }
    }
}

/// Who sent a request, as far as the broker and the token tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The broker user that published it: RabbitMQ's validated `user-id` property.
    pub user_id: Option<String>,
    /// The version of the terminal token it carried, when the token verified.
    pub token_version: Option<i32>,
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

/// Parses one delivery into a request and its caller, or says why it must be dead-lettered.
/// The token is checked here; whether the terminal is live, its token current and the broker
/// user its own is `admit`'s, once the terminals are loaded.
pub fn classify(inc: &Incoming, deps: &Deps) -> Result<(Request, Caller), DeadReason> {
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
    let auth = deps.jwt.verify_terminal(
        inc.authorization.as_deref(),
        &route.merchant_id,
        &route.terminal_id,
    );
    if let Err(e) = &auth {
        log::warn!(
            request_id:% = envelope.request_id;
            "refusing {expected} {} on {}: unauthorized ({e})",
            envelope.request_id,
            inc.routing_key
        );
    }
    let caller = Caller {
        user_id: inc.user_id.clone(),
        token_version: auth.as_ref().ok().map(|c| c.ver),
    };
    if expected == QUERY_V1 || expected == REVERSAL_V1 {
        let refused = match auth {
            Err(_) => Some(DeclineReason::Unauthorized),
            Ok(_) => parse_follow_up(&inc.body, &route, expected).err(),
        };
        let job = FollowUpJob {
            kind: if expected == QUERY_V1 {
                FollowUpKind::Query
            } else {
                FollowUpKind::Reversal
            },
            request_id: envelope.request_id,
            route,
            refused,
        };
        return Ok((Request::FollowUp(job), caller));
    }
    if expected == DYNAMIC_QR_V1 {
        let outcome = match auth {
            Err(_) => Err(ScanDecline {
                reason: DeclineReason::Unauthorized,
                amount: None,
            }),
            Ok(_) => parse_dynamic_qr(&inc.body, &route),
        };
        let job = DynamicQrJob {
            request_id: envelope.request_id,
            route,
            outcome,
        };
        return Ok((Request::DynamicQr(job), caller));
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
    if auth.is_err() {
        item.decline(DeclineReason::Unauthorized, now);
        return Ok((Request::Payment(item), caller));
    }
    match parse_scan(&inc.body, &route, deps.code_prefix) {
        Ok(scan) => {
            item.amount = Some(scan.amount);
            item.code_hash = Some(code_hash(
                deps.keys.payment_codes.expose(),
                &scan.payment_code,
            ));
        }
        Err(decline) => {
            item.amount = decline.amount;
            item.decline(decline.reason, now);
        }
    }
    Ok((Request::Payment(item), caller))
}

/// Whether terminal `m`/`t` may make a request: the merchant and the terminal exist and the
/// terminal is not removed; the broker user that published it is the terminal's own or the
/// pipeline's (the broker vouches for `user-id`); and its token is the current version (older
/// ones were revoked by a rotation or a removal). A request with no verified token was
/// refused already and is not asked about.
pub fn admit(
    m: &MerchantId,
    t: &TerminalId,
    caller: &Caller,
    gate: &Gate,
    service_user: &str,
) -> Result<(), DeclineReason> {
    if !gate.merchants.contains(m.as_str()) {
        return Err(DeclineReason::UnknownMerchant);
    }
    let Some(access) = gate
        .terminals
        .get(&(m.as_str().to_owned(), t.as_str().to_owned()))
    else {
        return Err(DeclineReason::UnknownTerminal);
    };
    let own_user = match caller.user_id.as_deref() {
        None => false,
        Some(u) => u == service_user || Some(u) == access.broker_user.as_deref(),
    };
    if !own_user {
        log::warn!(
            "refusing a request for terminal {m}/{t} published by broker user {:?}",
            caller.user_id
        );
        return Err(DeclineReason::Unauthorized);
    }
    match caller.token_version {
        Some(v) if v == access.token_version => Ok(()),
        _ => {
            log::warn!("refusing a request for terminal {m}/{t}: its token was revoked");
            Err(DeclineReason::Unauthorized)
        }
    }
}

impl Stage for QrValidation {
    const NAME: StageName = StageName::QrValidation;

    fn handle(&self, batch: Vec<Incoming>) -> StageFuture {
        let deps = self.deps.clone();
        Box::pin(async move {
            let mut dispositions = Vec::with_capacity(batch.len());
            let mut payments = Vec::with_capacity(batch.len());
            let mut qr_jobs = Vec::new();
            let mut follow_ups = Vec::new();
            for inc in &batch {
                match classify(inc, &deps) {
                    Ok((Request::Payment(item), caller)) => payments.push((item, caller)),
                    Ok((Request::DynamicQr(job), caller)) => qr_jobs.push((job, caller)),
                    Ok((Request::FollowUp(job), caller)) => follow_ups.push((job, caller)),
                    Err(reason) => {
                        dispositions.push(Disposition::DeadLetter {
                            reason: reason.as_str().to_owned(),
                        });
                        continue;
                    }
                }
                dispositions.push(Disposition::Ack);
            }
            let merchants: Vec<String> = payments
                .iter()
                .map(|(i, _)| i.merchant_id.to_string())
                .chain(qr_jobs.iter().map(|(j, _)| j.route.merchant_id.to_string()))
                .chain(
                    follow_ups
                        .iter()
                        .map(|(j, _)| j.route.merchant_id.to_string()),
                )
                .collect();
            let (items, gate) = screen_payments(&deps, payments, merchants).await?;
            super::trace::log_items(Self::NAME, &items);
            let trace = super::Trace::received_now(&items);
            let mut publish = route(
                &deps.keys.stage_mac,
                items,
                StageName::Order.as_str(),
                &trace,
            )?;
            if !qr_jobs.is_empty() {
                let jobs = qr_jobs
                    .into_iter()
                    .map(|(mut job, caller)| {
                        if let Ok(req) = &job.outcome {
                            let (m, t) = (&job.route.merchant_id, &job.route.terminal_id);
                            if let Err(reason) = admit(m, t, &caller, &gate, &deps.broker_user) {
                                job.outcome = Err(ScanDecline {
                                    reason,
                                    amount: Some(req.amount),
                                });
                            }
                        }
                        job
                    })
                    .collect();
                publish.extend(issue_dynamic_codes(&deps, jobs).await?);
            }
            if !follow_ups.is_empty() {
                let jobs = follow_ups
                    .into_iter()
                    .map(|(mut job, caller)| {
                        if job.refused.is_none() {
                            let (m, t) = (&job.route.merchant_id, &job.route.terminal_id);
                            job.refused = admit(m, t, &caller, &gate, &deps.broker_user).err();
                        }
                        job
                    })
                    .collect();
                publish.extend(answer_follow_ups(&deps, jobs).await?);
            }
            Ok(HandlerOutput {
                publish,
                dispositions,
            })
        })
    }
}

/// Admits each pending payment's terminal, throttles terminals that keep presenting unknown
/// codes, and resolves the codes to cards — in one database transaction that holds each
/// terminal's failure counter locked, so failed lookups are counted one at a time, in arrival
/// order, across every process: once a terminal reaches the limit, nothing it presents is
/// looked up any more (its later requests in the same batch included). Returns the items and
/// the terminals loaded, for the other requests of the batch.
async fn screen_payments(
    deps: &Deps,
    payments: Vec<(PaymentItem, Caller)>,
    merchants: Vec<String>,
) -> Result<(Vec<PaymentItem>, Gate), StageError> {
    let service_user = deps.broker_user.clone();
    Ok(db::run(&deps.pool, move |conn| {
        conn.transaction(|conn| {
            let mut merchants = merchants;
            merchants.sort();
            merchants.dedup();
            let pending: Vec<&PaymentItem> = payments
                .iter()
                .map(|(i, _)| i)
                .filter(|i| i.is_pending())
                .collect();
            let terminals: Vec<(String, String)> = pending
                .iter()
                .map(|i| (i.merchant_id.to_string(), i.terminal_id.to_string()))
                .collect();
            let hashes: Vec<Vec<u8>> = pending.iter().filter_map(|i| i.code_hash.clone()).collect();
            let mut counts = validation::lock_failure_counts(conn, &terminals)?;
            let gate = validation::gate(conn, &merchants)?;
            let cards = validation::cards_by_code(conn, &hashes)?;
            let now = now_micros();
            let mut failures: HashMap<(String, String), i32> = HashMap::new();
            let mut items = Vec::with_capacity(payments.len());
            for (mut item, caller) in payments {
                if item.is_pending() {
                    let (m, t) = (&item.merchant_id, &item.terminal_id);
                    let key = (m.to_string(), t.to_string());
                    let count = counts.entry(key.clone()).or_default();
                    if let Err(reason) = admit(m, t, &caller, &gate, &service_user) {
                        item.decline(reason, now);
                    } else if *count >= validation::FAILURE_LIMIT {
                        log::warn!(
                            request_id:% = item.request_id;
                            "terminal {m}/{t} throttled: too many failed code attempts \
                             (request {})",
                            item.request_id
                        );
                        item.decline(DeclineReason::RateLimited, now);
                    } else {
                        match item.code_hash.as_ref().and_then(|h| cards.get(h)) {
                            Some(card) => item.card = Some(card.clone()),
                            None => {
                                *count += 1;
                                *failures.entry(key).or_default() += 1;
                                item.decline(DeclineReason::UnknownCode, now);
                            }
                        }
                    }
                }
                items.push(item);
            }
            validation::record_failures(conn, &failures)?;
            Ok((items, gate))
        })
    })
    .await?)
}

/// Answers queries and carries out reversals. A request with a final state gets its
/// `result.v1` (re-sent through fan-out, so both the POS and the cardholder see it); one without
/// gets a `query_status.v1`.
async fn answer_follow_ups(
    deps: &Deps,
    jobs: Vec<FollowUpJob>,
) -> Result<Vec<Outgoing>, StageError> {
    let now = now_micros();
    // Reversals reach back only this far; older payments are refunded by an operator.
    let window_opens = deps.reversal_window.opens_at(
        now,
        crate::config::campus_day_start(deps.campus_offset, now),
    );
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
                FollowUpKind::Reversal => {
                    let r = requests::reverse(
                        conn,
                        &scope,
                        job.request_id.0,
                        &job.route.merchant_id,
                        &job.route.terminal_id,
                        window_opens,
                    )?;
                    if r.window_closed {
                        statuses.push(status(
                            QueryState::Rejected,
                            Some(DeclineReason::ReversalWindowClosed),
                        ));
                        continue;
                    }
                    Some((r.row, r.card))
                }
            };
            match found {
                None => statuses.push(status(QueryState::Unknown, None)),
                Some((row, card)) => match payments::item_from_row(conn, &row, card)? {
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
        out.extend(to_stage(
            &deps.keys.stage_mac,
            StageName::Fanout.as_str(),
            finals,
            &super::Trace::default(),
        )?);
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
    let key = deps.keys.qr_signatures.clone();
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
