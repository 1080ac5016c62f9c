//! Fee calculation (搭伙费): by identity and merchant from the fee-rule table, rounded half-up
//! to the fen, stored on the transaction with the rule used. Then each payment goes to the
//! settlement shard of its card.

use super::{decode_batches, to_stage, with_db, Deps, Stage, StageFuture};
use crate::broker::consumer::{HandlerOutput, Incoming};
use crate::broker::topology::{settlement_key, StageName};
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
            let (items, dispositions) = decode_batches(&key, &batch);
            let items = with_db(&pool, items, fees::apply_fees).await?;
            let mut shards: Vec<Vec<PaymentItem>> = vec![Vec::new(); shard_count.count() as usize];
            let mut done = Vec::new();
            for item in items {
                match (&item.card, item.is_pending()) {
                    (Some(card), true) => shards[shard_count.of(card.card_id) as usize].push(item),
                    _ => done.push(item),
                }
            }
            let mut publish = Vec::new();
            for (shard, items) in shards.into_iter().enumerate() {
                if !items.is_empty() {
                    publish.extend(to_stage(&key, &settlement_key(shard as u32), items)?);
                }
            }
            if !done.is_empty() {
                publish.extend(to_stage(&key, StageName::Fanout.as_str(), done)?);
            }
            Ok(HandlerOutput {
                publish,
                dispositions,
            })
        })
    }
}
