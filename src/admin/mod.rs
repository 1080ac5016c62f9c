//! Operating the system: the RabbitMQ management API (vhosts, definitions, queues).

pub mod access;
pub mod management;
pub mod queues;
