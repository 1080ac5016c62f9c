//! Integration tests against the real RabbitMQ and PostgreSQL. Each test gets its own database
//! and vhost (random names), so tests run in parallel and leave nothing behind.

mod architecture;
mod browser;
mod concurrency;
mod declines;
mod e2e;
mod faults;
mod forward;
mod helpers;
mod hostile;
mod idempotency;
mod ledger;
mod openapi;
mod operations;
mod poison;
mod queues;
mod restart;
mod reversals;
mod schemas;
mod sessions;
mod tls;
mod topology;
mod trust;
mod wallet;
