//! Publishing with confirms: every message is persistent and `mandatory`, and only a plain
//! broker ack counts as success. A return (unroutable), a nack or a timeout is a failure.

use super::connection::connect;
use super::BrokerError;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Outgoing {
    pub exchange: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
}

impl Outgoing {
    pub fn json(exchange: &str, routing_key: String, body: Vec<u8>) -> Outgoing {
        Outgoing {
            exchange: exchange.into(),
            routing_key,
            body,
            content_type: "application/json",
            headers: Vec::new(),
        }
    }
    pub fn binary(exchange: &str, routing_key: String, body: Vec<u8>) -> Outgoing {
        Outgoing {
            exchange: exchange.into(),
            routing_key,
            body,
            content_type: "application/x-campuspay-batch",
            headers: Vec::new(),
        }
    }
    pub fn with_header(mut self, k: &str, v: &str) -> Outgoing {
        self.headers.push((k.into(), v.into()));
        self
    }
}

#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    timeout: Duration,
    /// Set as every message's `user-id` property: the broker refuses a publish whose user-id
    /// is not the user this connection logged in as, so a consumer can trust it.
    user_id: Option<String>,
}

impl Publisher {
    pub async fn new(conn: &Connection, timeout: Duration) -> Result<Publisher, BrokerError> {
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Publisher {
            channel,
            timeout,
            user_id: None,
        })
    }

    /// Names the broker user every message is published as (it must be the user the
    /// connection logged in as, or the broker closes the channel).
    pub fn as_user(mut self, user: &str) -> Publisher {
        self.user_id = Some(user.to_owned());
        self
    }

    /// Publishes all messages, then waits for every confirm. Returns the first failure.
    pub async fn publish_all(&self, messages: &[Outgoing]) -> Result<(), BrokerError> {
        let mut pending = Vec::with_capacity(messages.len());
        for m in messages {
            let mut headers = FieldTable::default();
            for (k, v) in &m.headers {
                headers.insert(k.as_str().into(), AMQPValue::LongString(v.as_str().into()));
            }
            let mut props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type(m.content_type.into())
                .with_headers(headers);
            if let Some(u) = &self.user_id {
                props = props.with_user_id(u.as_str().into());
            }
            let confirm = self
                .channel
                .basic_publish(
                    m.exchange.as_str().into(),
                    m.routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &m.body,
                    props,
                )
                .await?;
            pending.push((m, confirm));
        }
        let mut first_err = None;
        for (m, confirm) in pending {
            let res = self.settle(confirm, &m.exchange, &m.routing_key).await;
            if let Err(e) = res {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Waits for one confirm; only a plain ack is success.
    async fn settle(
        &self,
        confirm: lapin::PublisherConfirm,
        exchange: &str,
        routing_key: &str,
    ) -> Result<(), BrokerError> {
        match tokio::time::timeout(self.timeout, confirm).await {
            Err(_) => Err(BrokerError::ConfirmTimeout(self.timeout)),
            Ok(Err(e)) => Err(BrokerError::Amqp(e)),
            Ok(Ok(Confirmation::Ack(None))) => Ok(()),
            Ok(Ok(Confirmation::Ack(Some(ret)))) => Err(BrokerError::Returned {
                exchange: exchange.to_owned(),
                routing_key: routing_key.to_owned(),
                reply: ret.reply_text.to_string(),
            }),
            Ok(Ok(Confirmation::Nack(_))) => Err(BrokerError::Nacked {
                exchange: exchange.to_owned(),
                routing_key: routing_key.to_owned(),
            }),
            Ok(Ok(Confirmation::NotRequested)) => Err(BrokerError::NotConfirmed),
        }
    }

    /// Re-publishes a message with the properties it already has (headers of any AMQP type,
    /// message id, content type), persistent, `mandatory` and confirmed like every other
    /// publish. Used to replay dead letters, whose `x-death` header is not a string.
    pub async fn publish_with_properties(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), BrokerError> {
        let confirm = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                properties.with_delivery_mode(2),
            )
            .await?;
        self.settle(confirm, exchange, routing_key).await
    }

    pub async fn publish(&self, message: Outgoing) -> Result<(), BrokerError> {
        self.publish_all(std::slice::from_ref(&message)).await
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }
}

/// A lazily (re)connected confirmed publisher, shared by the tasks of a process that publish
/// now and then (the HTTP workers, the confirmation sweeper). It connects on first use and,
/// after any failure, on the next one rather than reuse a channel in an unknown state.
pub struct PublisherSlot {
    url: String,
    /// The connection's name in the broker's management UI.
    name: &'static str,
    timeout: Duration,
    /// The AMQP `user-id` every message carries (`Publisher::as_user`), if any.
    user: Option<String>,
    inner: tokio::sync::Mutex<Option<(Connection, Publisher)>>,
}

impl PublisherSlot {
    pub fn new(url: &str, name: &'static str, timeout: Duration) -> PublisherSlot {
        PublisherSlot {
            url: url.to_owned(),
            name,
            timeout,
            user: None,
            inner: tokio::sync::Mutex::new(None),
        }
    }

    /// Every message published through this slot carries `user` as its AMQP `user-id`, which
    /// the broker checks against the connection's login (the POS bridge: QR validation admits a
    /// terminal's request only from the terminal's own broker user or the pipeline's).
    pub fn as_user(mut self, user: &str) -> PublisherSlot {
        self.user = Some(user.to_owned());
        self
    }

    pub async fn publish(&self, messages: &[Outgoing]) -> Result<(), BrokerError> {
        let mut slot = self.inner.lock().await;
        if slot.is_none() {
            let conn = connect(&self.url, self.name).await?;
            let mut publisher = Publisher::new(&conn, self.timeout).await?;
            if let Some(u) = &self.user {
                publisher = publisher.as_user(u);
            }
            *slot = Some((conn, publisher));
        }
        let result = match slot.as_ref() {
            Some((_, p)) => p.publish_all(messages).await,
            None => Err(BrokerError::NotConfirmed),
        };
        if result.is_err() {
            *slot = None;
        }
        result
    }
}
