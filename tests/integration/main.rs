//! Integration tests against the real RabbitMQ and PostgreSQL. Each test gets its own database
//! and vhost (random names), so tests run in parallel and leave nothing behind.

mod architecture;
mod asyncapi;
mod browser;
mod cluster;
mod concurrency;
mod confirm;
mod console;
mod declines;
mod deploy;
mod e2e;
mod faults;
mod forward;
mod helpers;
mod hostile;
mod idempotency;
mod ledger;
mod openapi;
mod openapi_admin;
mod openapi_confirm;
mod operations;
mod poison;
mod queues;
mod restart;
mod reversals;
mod schemas;
mod service;
mod sessions;
mod shards;
mod till;
mod tls;
mod topology;
mod trust;
mod wallet;
mod wallet_confirm;
