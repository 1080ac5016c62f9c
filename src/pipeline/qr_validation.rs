//! QR validation, the gateway's front door: bounds the message size, parses the routing key and
//! the JSON, authenticates the terminal's JWT against the routing key and the body, and resolves
//! the payment code (by its keyed hash) to a card. What cannot be tied to a request is
//! dead-lettered; what can but is invalid is declined straight to fan-out.
//!
//! Whether the code is still unused and unexpired is decided by the order stage, atomically with
//! recording the request: a retried request must find its first result, not `code_used`.

use super::{route, Deps, Stage, StageError, StageFuture};
use crate::broker::consumer::{Disposition, HandlerOutput, Incoming};
use crate::broker::topology::StageName;
use crate::db::{self, payments};
use crate::domain::{DeclineReason, PaymentMode};
use crate::messages::external::{parse_envelope, parse_scan, DeadReason, PosRoute, SCAN_V1};
use crate::messages::internal::{Outcome, PaymentItem};
use crate::messages::now_micros;
use crate::tsm::code_hash;

pub struct QrValidation {
    deps: Deps,
}

impl QrValidation {
    pub fn new(deps: Deps) -> QrValidation {
        QrValidation { deps }
    }
}

/// Parses one delivery into a payment item (pending or already declined), or a dead letter.
pub fn classify(inc: &Incoming, deps: &Deps) -> Result<PaymentItem, DeadReason> {
    if inc.body.len() > deps.max_message_bytes {
        return Err(DeadReason::TooLarge);
    }
    let route = PosRoute::parse(&inc.routing_key).ok_or(DeadReason::BadRoutingKey)?;
    if route.verb != "scan" {
        return Err(DeadReason::UnknownType);
    }
    let envelope = parse_envelope(&inc.body, &[SCAN_V1])?;
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
        return Ok(item);
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
    Ok(item)
}

impl Stage for QrValidation {
    const NAME: StageName = StageName::QrValidation;

    fn handle(&self, batch: Vec<Incoming>) -> StageFuture {
        let deps = self.deps.clone();
        Box::pin(async move {
            let mut dispositions = Vec::with_capacity(batch.len());
            let mut items = Vec::with_capacity(batch.len());
            for inc in &batch {
                match classify(inc, &deps) {
                    Ok(item) => {
                        items.push(item);
                        dispositions.push(Disposition::Ack);
                    }
                    Err(reason) => dispositions.push(Disposition::DeadLetter {
                        reason: reason.as_str().to_owned(),
                    }),
                }
            }
            let pending: Vec<&PaymentItem> = items.iter().filter(|i| i.is_pending()).collect();
            if !pending.is_empty() {
                let merchants: Vec<String> =
                    pending.iter().map(|i| i.merchant_id.to_string()).collect();
                let hashes: Vec<Vec<u8>> =
                    pending.iter().filter_map(|i| i.code_hash.clone()).collect();
                let lookup = db::run(&deps.pool, move |conn| {
                    payments::lookup_for_validation(conn, &merchants, &hashes)
                })
                .await
                .map_err(StageError::from)?;
                let now = now_micros();
                for item in items.iter_mut().filter(|i| i.is_pending()) {
                    let m = item.merchant_id.to_string();
                    if !lookup.merchants.contains(&m) {
                        item.decline(DeclineReason::UnknownMerchant, now);
                    } else if !lookup
                        .terminals
                        .contains(&(m, item.terminal_id.to_string()))
                    {
                        item.decline(DeclineReason::UnknownTerminal, now);
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
            Ok(HandlerOutput {
                publish: route(items, StageName::Order.as_str())?,
                dispositions,
            })
        })
    }
}
