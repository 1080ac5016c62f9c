//! What this process knows about its own readiness, for the operations listener's `/readyz`:
//! the state of each of its stage consumers, as the consumer loops report it. The database is
//! probed at request time (`platform::operations`); the consumers cannot be, so they tell.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Where one consumer loop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsumerState {
    /// No connection to the broker (starting, or reconnecting after a failure).
    Connecting,
    /// Connected, not yet (or no longer) registered on its queue.
    Connected,
    /// Registered on its queue: deliveries reach this process.
    Consuming,
    /// A settlement shard this process only backs up: it registers after the standby delay.
    /// Ready by design.
    StandingBy,
    /// Stopped by a shutdown.
    Stopped,
}

/// The consumers of one process, by queue. Shared by the consumer loops (writers) and the
/// operations listener (reader).
#[derive(Debug, Default, Clone)]
pub struct Consumers {
    states: Arc<Mutex<BTreeMap<String, ConsumerState>>>,
}

impl Consumers {
    /// A handle one consumer loop reports through; the queue counts as `Connecting` from now.
    pub fn probe(&self, queue: &str) -> ConsumerProbe {
        self.set(queue, ConsumerState::Connecting);
        ConsumerProbe {
            consumers: self.clone(),
            queue: queue.to_owned(),
        }
    }

    fn set(&self, queue: &str, state: ConsumerState) {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(queue.to_owned(), state);
    }

    /// Every consumer's state, by queue.
    pub fn snapshot(&self) -> BTreeMap<String, ConsumerState> {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// One consumer loop's reporting handle.
#[derive(Debug, Clone)]
pub struct ConsumerProbe {
    consumers: Consumers,
    queue: String,
}

impl ConsumerProbe {
    pub fn report(&self, state: ConsumerState) {
        self.consumers.set(&self.queue, state);
    }
}

/// What `/readyz` concludes about the broker and the consumers from their states: `None` when
/// ready, else what is wrong, by queue.
pub fn broker_problems(
    states: &BTreeMap<String, ConsumerState>,
) -> Option<BTreeMap<String, ConsumerState>> {
    let bad: BTreeMap<_, _> = states
        .iter()
        .filter(|(_, s)| **s == ConsumerState::Connecting || **s == ConsumerState::Stopped)
        .map(|(q, s)| (q.clone(), *s))
        .collect();
    (!bad.is_empty()).then_some(bad)
}

/// The consumers that are not registered on their queue (standbys are fine).
pub fn consumer_problems(
    states: &BTreeMap<String, ConsumerState>,
) -> Option<BTreeMap<String, ConsumerState>> {
    let bad: BTreeMap<_, _> = states
        .iter()
        .filter(|(_, s)| !matches!(s, ConsumerState::Consuming | ConsumerState::StandingBy))
        .map(|(q, s)| (q.clone(), *s))
        .collect();
    (!bad.is_empty()).then_some(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_consumer_consumes_or_stands_by() {
        let c = Consumers::default();
        let fee = c.probe("campuspay.fee");
        let shard = c.probe("campuspay.settlement.1");
        assert!(broker_problems(&c.snapshot()).is_some());
        fee.report(ConsumerState::Connected);
        shard.report(ConsumerState::StandingBy);
        assert!(broker_problems(&c.snapshot()).is_none());
        assert_eq!(
            consumer_problems(&c.snapshot()).map(|b| b.into_keys().collect::<Vec<_>>()),
            Some(vec!["campuspay.fee".to_owned()])
        );
        fee.report(ConsumerState::Consuming);
        assert!(consumer_problems(&c.snapshot()).is_none());
        fee.report(ConsumerState::Connecting);
        assert!(broker_problems(&c.snapshot()).is_some());
    }
}
