//! Result fan-out: the one final result of each request goes to the terminal
//! (`pos.<merchant>.<terminal>`) and, when the cardholder is known, to `user.<id>` with the
//! balance after. A payment parked for its cardholder's confirmation gets a `pending` result at
//! the terminal and a `confirmation_request.v1` at `user.<id>` instead; its final result follows
//! later the same way. A redelivered batch re-sends the same messages (POS and phones dedupe on
//! `request_id`, confirmation requests on `transaction_id`).

use super::{decode_batches, Deps, Stage, StageFuture};
use crate::broker::consumer::{HandlerOutput, Incoming};
use crate::broker::topology::{StageName, RESULTS};
use crate::broker::Outgoing;
use crate::domain::{DeclineReason, Money, TxState};
use crate::messages::external::{
    pos_result_key, user_result_key, ConfirmationRequestV1, ResultV1, CONFIRMATION_REQUEST_V1,
    RESULT_V1,
};
use crate::messages::format_time;
use crate::messages::internal::{AwaitingConfirmation, Outcome, PaymentItem};

pub struct Fanout {
    deps: Deps,
}

impl Fanout {
    pub fn new(deps: Deps) -> Fanout {
        Fanout { deps }
    }
}

/// The terminal's copy of an item's answer: its final result, or `pending` while it awaits the
/// cardholder's confirmation (`None` for an item still moving down the pipeline).
pub fn result_of(item: &PaymentItem) -> Option<ResultV1> {
    let (status, reason, processed_at) = match &item.outcome {
        Outcome::Pending => return None,
        Outcome::Done(done) => match done.status {
            // `voided` is a decline to the outside world (reason `voided`).
            TxState::Voided => (
                TxState::Declined,
                Some(done.reason.unwrap_or(DeclineReason::Voided)),
                done.processed_at,
            ),
            TxState::Approved | TxState::Declined | TxState::Reversed => {
                (done.status, done.reason, done.processed_at)
            }
            // Not final states: no stage decides an item so (a bug upstream).
            TxState::Created | TxState::AwaitingConfirmation => return None,
        },
        Outcome::AwaitingConfirmation(a) => (
            TxState::AwaitingConfirmation,
            Some(DeclineReason::UserConfirming),
            a.requested_at,
        ),
    };
    let fee = item.fee.unwrap_or(Money::ZERO);
    Some(ResultV1 {
        kind: RESULT_V1.into(),
        request_id: item.request_id,
        transaction_id: item.transaction_id,
        mode: item.mode,
        status,
        reason,
        merchant_id: item.merchant_id.clone(),
        terminal_id: item.terminal_id.clone(),
        user_id: item.card.as_ref().map(|c| c.user_id.clone()),
        amount: item.amount,
        fee,
        total: item.amount.and_then(|a| a.money().checked_add(fee)),
        processed_at: format_time(processed_at),
        balance_after: None,
    })
}

/// What the cardholder is asked for an item awaiting confirmation (`None` when the item lacks
/// what the request must show: settlement parks only payments that have it all).
pub fn confirmation_request_of(
    item: &PaymentItem,
    awaiting: &AwaitingConfirmation,
) -> Option<ConfirmationRequestV1> {
    let amount = item.amount?;
    let fee = item.fee.unwrap_or(Money::ZERO);
    Some(ConfirmationRequestV1 {
        kind: CONFIRMATION_REQUEST_V1.into(),
        transaction_id: item.transaction_id?,
        request_id: item.request_id,
        merchant_id: item.merchant_id.clone(),
        merchant_name: awaiting.merchant_name.clone(),
        terminal_id: item.terminal_id.clone(),
        amount,
        fee,
        total: amount.money().checked_add(fee)?,
        expires_at: format_time(awaiting.expires_at),
    })
}

/// The label of a published answer in `campuspay_results_total`.
fn metric_status(status: TxState) -> &'static str {
    match status {
        TxState::Approved => "approved",
        TxState::Reversed => "reversed",
        TxState::AwaitingConfirmation => "pending",
        TxState::Declined | TxState::Voided | TxState::Created => "declined",
    }
}

impl Stage for Fanout {
    const NAME: StageName = StageName::Fanout;

    fn handle(&self, batch: Vec<Incoming>) -> StageFuture {
        let key = self.deps.keys.stage_mac.clone();
        Box::pin(async move {
            let (items, dispositions, trace) = decode_batches(&key, &batch);
            super::trace::log_items(Self::NAME, &items);
            let mut publish = Vec::with_capacity(items.len() * 2);
            for item in &items {
                let Some(result) = result_of(item) else {
                    log::error!(
                        request_id:% = item.request_id;
                        "request {} reached fan-out undecided; not answering it (admin verify reports it)",
                        item.request_id
                    );
                    continue;
                };
                crate::metrics::result(
                    metric_status(result.status),
                    result.reason.map(|r| r.as_str()),
                );
                // Only where the receipt time travelled with the payment (not after a
                // confirmation, which waits on a person).
                if let Some(at) = trace.received_at(&item.request_id) {
                    let secs =
                        (chrono::Utc::now() - at).num_microseconds().unwrap_or(0) as f64 / 1e6;
                    crate::metrics::result_latency(metric_status(result.status), secs);
                }
                // Serialising our own plain struct cannot fail (`result_of` gives only the
                // statuses the wire has).
                let body = serde_json::to_vec(&result).unwrap_or_default();
                publish.push(Outgoing::json(
                    RESULTS,
                    pos_result_key(&item.merchant_id, &item.terminal_id),
                    body,
                ));
                let Some(card) = &item.card else { continue };
                match &item.outcome {
                    Outcome::Done(done) => {
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
                    Outcome::AwaitingConfirmation(awaiting) => {
                        match confirmation_request_of(item, awaiting) {
                            Some(request) => publish.push(Outgoing::json(
                                RESULTS,
                                user_result_key(&card.user_id),
                                serde_json::to_vec(&request).unwrap_or_default(),
                            )),
                            None => log::error!(
                                request_id:% = item.request_id;
                                "request {} awaits confirmation without an amount or a \
                                 transaction; the cardholder cannot be asked",
                                item.request_id
                            ),
                        }
                    }
                    // `result_of` answered it, so it is not pending.
                    Outcome::Pending => {}
                }
            }
            Ok(HandlerOutput {
                publish,
                dispositions,
            })
        })
    }
}
