//! Result fan-out: the one final result of each request goes to the terminal
//! (`pos.<merchant>.<terminal>`) and, when the cardholder is known, to `user.<id>` with the
//! balance after. A redelivered batch re-sends the same results (POS and phones dedupe on
//! `request_id`).

use super::{decode_batches, Deps, Stage, StageFuture};
use crate::broker::consumer::{HandlerOutput, Incoming};
use crate::broker::topology::{StageName, RESULTS};
use crate::broker::Outgoing;
use crate::domain::{DeclineReason, Money, TxState};
use crate::messages::external::{pos_result_key, user_result_key, ResultV1, RESULT_V1};
use crate::messages::format_time;
use crate::messages::internal::{Outcome, PaymentItem};

pub struct Fanout {
    deps: Deps,
}

impl Fanout {
    pub fn new(deps: Deps) -> Fanout {
        Fanout { deps }
    }
}

/// The terminal's copy of an item's result (`None` for an item that is not decided yet).
pub fn result_of(item: &PaymentItem) -> Option<ResultV1> {
    let Outcome::Done(done) = &item.outcome else {
        return None;
    };
    let fee = item.fee.unwrap_or(Money::ZERO);
    Some(ResultV1 {
        kind: RESULT_V1.into(),
        request_id: item.request_id,
        transaction_id: item.transaction_id,
        mode: item.mode,
        // `voided` is a decline to the outside world (reason `voided`).
        status: match done.status {
            TxState::Voided => TxState::Declined,
            other => other,
        },
        reason: match done.status {
            TxState::Voided => Some(done.reason.unwrap_or(DeclineReason::Voided)),
            TxState::Created | TxState::Approved | TxState::Declined | TxState::Reversed => {
                done.reason
            }
        },
        merchant_id: item.merchant_id.clone(),
        terminal_id: item.terminal_id.clone(),
        user_id: item.card.as_ref().map(|c| c.user_id.clone()),
        amount: item.amount,
        fee,
        total: item.amount.and_then(|a| a.money().checked_add(fee)),
        processed_at: format_time(done.processed_at),
        balance_after: None,
    })
}

impl Stage for Fanout {
    const NAME: StageName = StageName::Fanout;

    fn handle(&self, batch: Vec<Incoming>) -> StageFuture {
        let key = self.deps.keys.stage_mac.clone();
        Box::pin(async move {
            let (items, dispositions) = decode_batches(&key, &batch);
            let mut publish = Vec::with_capacity(items.len() * 2);
            for item in &items {
                let Some(result) = result_of(item) else {
                    log::error!(
                        "request {} reached fan-out undecided; not answering it (admin verify reports it)",
                        item.request_id
                    );
                    continue;
                };
                crate::metrics::result(
                    match result.status {
                        TxState::Approved => "approved",
                        TxState::Reversed => "reversed",
                        TxState::Declined | TxState::Voided | TxState::Created => "declined",
                    },
                    result.reason.map(|r| r.as_str()),
                );
                // Serialising our own plain struct cannot fail.
                let body = serde_json::to_vec(&result).unwrap_or_default();
                publish.push(Outgoing::json(
                    RESULTS,
                    pos_result_key(&item.merchant_id, &item.terminal_id),
                    body,
                ));
                if let (Some(card), Outcome::Done(done)) = (&item.card, &item.outcome) {
                    let user_copy = ResultV1 {
                        balance_after: done.balance_after,
                        ..result
                    };
                    publish.push(Outgoing::json(
                        RESULTS,
                        user_result_key(&card.user_id),
                        serde_json::to_vec(&user_copy).unwrap_or_default(),
                    ));
                }
            }
            Ok(HandlerOutput {
                publish,
                dispositions,
            })
        })
    }
}
