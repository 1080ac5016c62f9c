//! Settlement (the card backend): one atomic double-entry posting per payment, a whole batch per
//! database transaction. Each shard queue has a single active consumer, so one card's debits
//! never race each other; the balance guard and the CHECK constraint keep it at or above zero.

use super::trace::log_items;
use super::{decode_batches, to_stage, with_db, Deps, Stage, StageFuture};
use crate::broker::consumer::{HandlerOutput, Incoming};
use crate::broker::topology::StageName;
use crate::db::settle;
use crate::domain::AccountId;
use std::sync::{Arc, OnceLock};

pub struct Settlement {
    deps: Deps,
    /// The school's fee-income account, read on the first batch (`settle::settle`).
    fee_income: Arc<OnceLock<AccountId>>,
}

impl Settlement {
    pub fn new(deps: Deps) -> Settlement {
        Settlement {
            deps,
            fee_income: Arc::default(),
        }
    }
}

impl Stage for Settlement {
    const NAME: StageName = StageName::Settlement;

    fn handle(&self, batch: Vec<Incoming>) -> StageFuture {
        let pool = self.deps.pool.clone();
        let offset = self.deps.campus_offset;
        let confirm_for = self.deps.confirmation_timeout;
        let key = self.deps.keys.stage_mac.clone();
        let fee_income = self.fee_income.clone();
        Box::pin(async move {
            let (items, dispositions, trace) = decode_batches(&key, &batch);
            let day_start = crate::config::campus_day_start(offset, crate::messages::now_micros());
            let items = with_db(&pool, items, move |c, items| {
                settle::settle(c, items, day_start, confirm_for, &fee_income)
            })
            .await?;
            log_items(Self::NAME, &items);
            let publish = if items.is_empty() {
                Vec::new()
            } else {
                to_stage(&key, StageName::Fanout.as_str(), items, &trace)?
            };
            Ok(HandlerOutput {
                publish,
                dispositions,
            })
        })
    }
}
