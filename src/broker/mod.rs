//! lapin only: connections, the topology, the confirmed publisher and the consumer loop that
//! feeds stage actors. Nothing here knows about payments.

pub mod amqp_url;
pub mod connection;
pub mod consumer;
pub mod publisher;
pub mod topology;

pub use connection::connect;
pub use publisher::{Outgoing, Publisher, PublisherSlot};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("AMQP: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("publish to {exchange}/{routing_key} was returned by the broker: {reply}")]
    Returned {
        exchange: String,
        routing_key: String,
        reply: String,
    },
    #[error("publish to {exchange}/{routing_key} was nacked by the broker")]
    Nacked {
        exchange: String,
        routing_key: String,
    },
    #[error("no publisher confirm within {0:?}")]
    ConfirmTimeout(std::time::Duration),
    #[error("the channel is not in confirm mode")]
    NotConfirmed,
    #[error("the consumer was cancelled or its channel closed")]
    ConsumerClosed,
    #[error("stage actor unavailable: {0}")]
    Mailbox(String),
    #[error("invalid AMQP URL: {0}")]
    BadUrl(String),
    #[error("no answer from the node within {0:?}")]
    ConnectTimeout(std::time::Duration),
    #[error("no answer while opening the channel and consumer within {0:?}")]
    SetupTimeout(std::time::Duration),
}
