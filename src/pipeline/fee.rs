//! Fee calculation (搭伙费): by identity and merchant from the fee-rule table, rounded half-up
//! to the fen, stored on the transaction with the rule used. Then each payment goes to the
//! settlement shard of its card.

use super::trace::log_items;
use super::{decode_batches, to_settlement, to_stage, with_db, Deps, Stage, StageFuture};
use crate::broker::consumer::{HandlerOutput, Incoming};
use crate::broker::topology::StageName;
use crate::db::fees;
use crate::messages::internal::PaymentItem;

pub struct Fee {
    deps: Deps,
}

impl Fee {
    pub fn new(deps: Deps) -> Fee {
        Fee { deps }
    }
}

impl Stage for Fee {
    const NAME: StageName = StageName::Fee;

    fn handle(&self, batch: Vec<Incoming>) -> StageFuture {
        let pool = self.deps.pool.clone();
        let key = self.deps.keys.stage_mac.clone();
        let shard_count = self.deps.settlement_shards;
        Box::pin(async move {
            let (items, dispositions, trace) = decode_batches(&key, &batch);
            let items = with_db(&pool, items, fees::apply_fees).await?;
            log_items(Self::NAME, &items);
            let (pending, done): (Vec<PaymentItem>, Vec<PaymentItem>) = items
                .into_iter()
                .partition(|i| i.card.is_some() && i.is_pending());
            let mut publish = to_settlement(&key, shard_count, pending, &trace)?;
            if !done.is_empty() {
                publish.extend(to_stage(&key, StageName::Fanout.as_str(), done, &trace)?);
            }
            Ok(HandlerOutput {
                publish,
                dispositions,
            })
        })
    }
}
