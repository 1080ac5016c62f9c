//! Order creation: writes the transaction record (交易流水) once per request and consumes the
//! payment code; a retried request gets its stored transaction back.

use super::trace::log_items;
use super::{decode_batches, route, with_db, Deps, Stage, StageFuture};
use crate::broker::consumer::{HandlerOutput, Incoming};
use crate::broker::topology::StageName;
use crate::db::orders;

pub struct Order {
    deps: Deps,
}

impl Order {
    pub fn new(deps: Deps) -> Order {
        Order { deps }
    }
}

impl Stage for Order {
    const NAME: StageName = StageName::Order;

    fn handle(&self, batch: Vec<Incoming>) -> StageFuture {
        let pool = self.deps.pool.clone();
        let key = self.deps.keys.stage_mac.clone();
        Box::pin(async move {
            let (items, dispositions, trace) = decode_batches(&key, &batch);
            let items = with_db(&pool, items, orders::create_orders).await?;
            log_items(Self::NAME, &items);
            Ok(HandlerOutput {
                publish: route(&key, items, StageName::Fee.as_str(), &trace)?,
                dispositions,
            })
        })
    }
}
