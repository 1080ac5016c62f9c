//! Simulators: a POS terminal and a result subscriber over AMQP, the demo campus and its lunch
//! hour. They use only the public contract (routing keys, JSON, JWT headers), exactly as a
//! terminal written in another language would.

pub mod demo;
pub mod load;
pub mod phone;
pub mod pos;
pub mod results;
pub mod seed;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error(
        "no result for request {request_id} within {secs} s (send query.v1, then reversal.v1)"
    )]
    Timeout { request_id: String, secs: u64 },
    #[error("the result queue closed")]
    Closed,
    #[error("{0}")]
    Other(String),
}
