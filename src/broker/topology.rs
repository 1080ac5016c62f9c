//! The broker topology as data: exchanges, queues, bindings and the policies that set the
//! queues' limits. `campuspay topology` declares it, `rabbitmq/definitions.json` is rendered
//! from it (a test checks the file is current), and the names below are the only place a queue
//! or exchange is spelled.
//!
//! Queues are declared with only what a policy cannot set (the queue type, single active
//! consumer). Their limits (length, overflow, delivery limit, dead-lettering, TTL) are policies,
//! so that an operator changes them with `rabbitmqctl set_policy` or the definitions file,
//! without deleting a queue: a queue argument would override the policy for good.

use super::BrokerError;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ExchangeKind};
use serde_json::{json, Map, Value};

/// Pinned external exchanges (docs/ARCHITECTURE.md §3).
pub const REQUESTS: &str = "pay.requests";
pub const RESULTS: &str = "pay.results";
pub const DEAD: &str = "pay.dead";
/// Internal: stage-to-stage hops, routed by stage name.
pub const STAGE: &str = "pay.stage";
/// Internal: the alternate exchange of `pay.results`, catching results for a terminal or
/// cardholder that has no queue yet (the result is in PostgreSQL either way).
pub const UNROUTED: &str = "pay.unrouted";

pub const DEAD_QUEUE: &str = "pay.dead";
pub const UNROUTED_QUEUE: &str = "pay.unrouted";

/// How many settlement shards there are (`CAMPUSPAY_SETTLEMENT_SHARDS`). A card always maps to
/// the same shard, and each shard has one active consumer, so a card's debits are serialised
/// without lock waits. Every process of a deployment must use the same count; changing it means
/// draining the settlement queues first (docs/CLUSTER.md, "Changing the shard count"), since a
/// card's messages would otherwise sit in a shard no consumer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shards(u32);

impl Shards {
    pub const DEFAULT: Shards = Shards(4);
    /// More shards than cores of a whole campus deployment buy nothing, and each is a quorum
    /// queue (a Raft group) on every node.
    pub const MAX: u32 = 32;

    /// Every shard queue a deployment may have had: for telling what a queue is (a settlement
    /// shard, whatever the current count), never for routing.
    pub const WIDEST: Shards = Shards(Shards::MAX);

    pub fn new(n: u32) -> Option<Shards> {
        (1..=Shards::MAX).contains(&n).then_some(Shards(n))
    }

    pub fn count(self) -> u32 {
        self.0
    }

    /// Shard numbers, 0 to count − 1.
    pub fn all(self) -> std::ops::Range<u32> {
        0..self.0
    }

    /// The shard of a card. Stable for a given shard count.
    pub fn of(self, card_id: i64) -> u32 {
        // rem_euclid keeps it in 0..count even for (impossible) negative ids.
        card_id.rem_euclid(i64::from(self.0)) as u32
    }
}

impl Default for Shards {
    fn default() -> Shards {
        Shards::DEFAULT
    }
}

/// Bounded retries: after this many deliveries a message is dead-lettered by the broker.
pub const DELIVERY_LIMIT: i64 = 10;
/// Bounded stage queues; a full queue refuses new publishes (publisher sees a nack) rather than
/// dropping anything.
pub const STAGE_QUEUE_MAX_LENGTH: i64 = 1_000_000;
/// Result queues of terminals and cardholders: results wait a day for an offline device.
pub const RESULT_QUEUE_TTL_MS: i64 = 24 * 3600 * 1000;
pub const RESULT_QUEUE_MAX_LENGTH: i64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageName {
    QrValidation,
    Order,
    Fee,
    Settlement,
    Fanout,
}

impl StageName {
    pub const ALL: [StageName; 5] = [
        StageName::QrValidation,
        StageName::Order,
        StageName::Fee,
        StageName::Settlement,
        StageName::Fanout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StageName::QrValidation => "qr_validation",
            StageName::Order => "order",
            StageName::Fee => "fee",
            StageName::Settlement => "settlement",
            StageName::Fanout => "fanout",
        }
    }

    pub fn parse(s: &str) -> Option<StageName> {
        StageName::ALL.into_iter().find(|n| n.as_str() == s)
    }

    /// The queues this stage consumes.
    pub fn queues(self, shards: Shards) -> Vec<String> {
        match self {
            StageName::Settlement => shards.all().map(settlement_queue).collect(),
            other => vec![format!("campuspay.{}", other.as_str())],
        }
    }
}

pub fn settlement_queue(shard: u32) -> String {
    format!("campuspay.settlement.{shard}")
}

pub fn settlement_key(shard: u32) -> String {
    format!("settlement.{shard}")
}

#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Str(&'static str),
    Int(i64),
    Bool(bool),
}

#[derive(Debug, Clone)]
pub struct ExchangeSpec {
    pub name: &'static str,
    pub kind: &'static str,
    pub args: Vec<(&'static str, Arg)>,
}

#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub name: String,
    pub args: Vec<(&'static str, Arg)>,
    /// The policy that sets this queue's limits.
    pub policy: String,
}

/// A policy (applied to queues) of this vhost: RabbitMQ applies to each queue the one policy of
/// highest priority whose pattern matches its name, so the patterns below never overlap.
#[derive(Debug, Clone)]
pub struct PolicySpec {
    pub name: String,
    /// A regular expression on queue names, anchored at both ends.
    pub pattern: String,
    pub definition: Vec<(&'static str, Arg)>,
}

/// The priority of this system's policies. An operator's own policy for the same queues needs a
/// higher one, and then replaces ours whole (policies do not merge): `admin topology check`
/// says so.
pub const POLICY_PRIORITY: i64 = 10;
/// Every policy this system owns is named with this prefix.
pub const POLICY_PREFIX: &str = "campuspay-";

#[derive(Debug, Clone)]
pub struct BindingSpec {
    pub exchange: &'static str,
    pub queue: String,
    pub routing_key: String,
}

#[derive(Debug, Clone)]
pub struct Topology {
    pub exchanges: Vec<ExchangeSpec>,
    pub queues: Vec<QueueSpec>,
    pub bindings: Vec<BindingSpec>,
    pub policies: Vec<PolicySpec>,
}

/// What a policy cannot set: the queue type, and single active consumer.
fn stage_queue(name: String, stage: StageName) -> QueueSpec {
    let mut args = vec![("x-queue-type", Arg::Str("quorum"))];
    if stage == StageName::Settlement {
        // One consumer per shard at a time: a card's debits are serialised.
        args.push(("x-single-active-consumer", Arg::Bool(true)));
    }
    QueueSpec {
        name,
        args,
        policy: stage_policy_name(stage),
    }
}

fn stage_policy_name(stage: StageName) -> String {
    format!("{POLICY_PREFIX}stage-{}", stage.as_str())
}

/// The policy of terminals' and cardholders' result queues.
pub fn result_queue_policy() -> String {
    format!("{POLICY_PREFIX}results")
}

/// A stage's limits: a bounded queue that refuses rather than drops, and a bounded number of
/// deliveries after which the broker dead-letters the message to `pay.dead` with the stage's
/// name as routing key.
fn stage_policy(stage: StageName, pattern: String) -> PolicySpec {
    PolicySpec {
        name: stage_policy_name(stage),
        pattern,
        definition: vec![
            ("dead-letter-exchange", Arg::Str(DEAD)),
            ("dead-letter-routing-key", Arg::Str(stage.as_str())),
            // At-least-once dead-lettering (RabbitMQ ≥ 3.10) needs reject-publish overflow.
            ("dead-letter-strategy", Arg::Str("at-least-once")),
            ("overflow", Arg::Str("reject-publish")),
            ("delivery-limit", Arg::Int(DELIVERY_LIMIT)),
            ("max-length", Arg::Int(STAGE_QUEUE_MAX_LENGTH)),
        ],
    }
}

/// A queue name as a policy pattern matching it alone.
fn exactly(name: &str) -> String {
    format!("^{}$", name.replace('.', "\\."))
}

/// The whole pipeline topology, with `shards` settlement shards.
pub fn topology(shards: Shards) -> Topology {
    let exchanges = vec![
        ExchangeSpec {
            name: REQUESTS,
            kind: "topic",
            args: vec![],
        },
        ExchangeSpec {
            name: RESULTS,
            kind: "topic",
            args: vec![("alternate-exchange", Arg::Str(UNROUTED))],
        },
        ExchangeSpec {
            name: DEAD,
            kind: "topic",
            args: vec![],
        },
        ExchangeSpec {
            name: STAGE,
            kind: "direct",
            args: vec![],
        },
        ExchangeSpec {
            name: UNROUTED,
            kind: "fanout",
            args: vec![],
        },
    ];
    let mut queues = Vec::new();
    let mut bindings = Vec::new();
    let mut policies = Vec::new();
    for stage in StageName::ALL {
        match stage {
            StageName::QrValidation => {
                let q = stage.queues(shards).remove(0);
                for verb in ["scan", "dynamic_qr", "query", "reversal"] {
                    bindings.push(BindingSpec {
                        exchange: REQUESTS,
                        queue: q.clone(),
                        routing_key: format!("pos.*.*.{verb}"),
                    });
                }
                policies.push(stage_policy(stage, exactly(&q)));
                queues.push(stage_queue(q, stage));
            }
            StageName::Settlement => {
                // One policy for every shard, whatever their count.
                policies.push(stage_policy(
                    stage,
                    "^campuspay\\.settlement\\.[0-9]+$".into(),
                ));
                for shard in shards.all() {
                    let q = settlement_queue(shard);
                    bindings.push(BindingSpec {
                        exchange: STAGE,
                        queue: q.clone(),
                        routing_key: settlement_key(shard),
                    });
                    queues.push(stage_queue(q, stage));
                }
            }
            other => {
                let q = other.queues(shards).remove(0);
                bindings.push(BindingSpec {
                    exchange: STAGE,
                    queue: q.clone(),
                    routing_key: other.as_str().into(),
                });
                policies.push(stage_policy(other, exactly(&q)));
                queues.push(stage_queue(q, stage));
            }
        }
    }
    queues.push(QueueSpec {
        name: DEAD_QUEUE.into(),
        args: vec![("x-queue-type", Arg::Str("quorum"))],
        policy: format!("{POLICY_PREFIX}dead"),
    });
    policies.push(PolicySpec {
        name: format!("{POLICY_PREFIX}dead"),
        pattern: exactly(DEAD_QUEUE),
        definition: vec![
            ("overflow", Arg::Str("reject-publish")),
            ("max-length", Arg::Int(STAGE_QUEUE_MAX_LENGTH)),
        ],
    });
    bindings.push(BindingSpec {
        exchange: DEAD,
        queue: DEAD_QUEUE.into(),
        routing_key: "#".into(),
    });
    queues.push(QueueSpec {
        name: UNROUTED_QUEUE.into(),
        // Quorum, though it holds only copies: `pay.results` hands a message that no queue
        // takes to this one, and when it is down (a classic queue dies with its node) the
        // broker returns the publish as unroutable, so fan-out would stall until that one node
        // came back.
        args: vec![("x-queue-type", Arg::Str("quorum"))],
        policy: format!("{POLICY_PREFIX}unrouted"),
    });
    policies.push(PolicySpec {
        name: format!("{POLICY_PREFIX}unrouted"),
        pattern: exactly(UNROUTED_QUEUE),
        definition: vec![
            // Results nobody subscribed to: kept briefly for debugging, then expired (the
            // system of record is PostgreSQL, and `query.v1` re-sends a result).
            ("message-ttl", Arg::Int(5 * 60 * 1000)),
            ("overflow", Arg::Str("reject-publish")),
            ("max-length", Arg::Int(2_000_000)),
        ],
    });
    policies.push(PolicySpec {
        name: result_queue_policy(),
        // Terminals' and cardholders' result queues: `pos.<m>.<t>`, `user.<u>`.
        pattern: "^(pos|user)\\.".into(),
        definition: vec![
            // Results wait a day for an offline device, and a device that never comes back
            // cannot fill the broker: a full queue refuses, and the result stays in PostgreSQL.
            ("message-ttl", Arg::Int(RESULT_QUEUE_TTL_MS)),
            ("max-length", Arg::Int(RESULT_QUEUE_MAX_LENGTH)),
            ("overflow", Arg::Str("reject-publish")),
        ],
    });
    bindings.push(BindingSpec {
        exchange: UNROUTED,
        queue: UNROUTED_QUEUE.into(),
        routing_key: String::new(),
    });
    Topology {
        exchanges,
        queues,
        bindings,
        policies,
    }
}

/// Arguments of a terminal's or cardholder's durable result queue: a quorum queue, so that a
/// till's results survive the loss of any one broker node of a cluster (a classic queue lives
/// on one node). Its limits are the `campuspay-results` policy.
pub fn result_queue_args() -> Vec<(&'static str, Arg)> {
    vec![("x-queue-type", Arg::Str("quorum"))]
}

fn field_table(args: &[(&'static str, Arg)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in args {
        let v = match v {
            Arg::Str(s) => AMQPValue::LongString((*s).into()),
            Arg::Int(i) => AMQPValue::LongLongInt(*i),
            Arg::Bool(b) => AMQPValue::Boolean(*b),
        };
        t.insert((*k).into(), v);
    }
    t
}

fn json_args(args: &[(&'static str, Arg)]) -> Value {
    let mut m = Map::new();
    for (k, v) in args {
        let v = match v {
            Arg::Str(s) => json!(s),
            Arg::Int(i) => json!(i),
            Arg::Bool(b) => json!(b),
        };
        m.insert((*k).to_owned(), v);
    }
    Value::Object(m)
}

/// What declaring found.
#[derive(Debug, Default)]
pub struct Declared {
    /// Queues that exist with limits as queue arguments, declared by an earlier version: kept
    /// as they are (they work as before), but an argument overrides the policy, so changing the
    /// policy does not change them until they are drained and re-created (`admin topology
    /// check` lists them).
    pub kept_with_arguments: Vec<String>,
}

impl Topology {
    /// Declares everything (idempotent: re-declaring with the same arguments is a no-op). A
    /// queue that exists with other arguments is kept and reported rather than failing the
    /// whole declaration; see [`Declared`].
    pub async fn declare(&self, conn: &Connection) -> Result<Declared, BrokerError> {
        let mut channel = conn.create_channel().await?;
        for e in &self.exchanges {
            let kind = match e.kind {
                "topic" => ExchangeKind::Topic,
                "direct" => ExchangeKind::Direct,
                "fanout" => ExchangeKind::Fanout,
                other => ExchangeKind::Custom(other.to_owned()),
            };
            channel
                .exchange_declare(
                    e.name.into(),
                    kind,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    field_table(&e.args),
                )
                .await?;
        }
        let mut declared = Declared::default();
        for q in &self.queues {
            if !declare_queue(&mut channel, conn, &q.name, &q.args).await? {
                declared.kept_with_arguments.push(q.name.clone());
            }
        }
        for b in &self.bindings {
            channel
                .queue_bind(
                    b.queue.as_str().into(),
                    b.exchange.into(),
                    b.routing_key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        let _ = channel.close(200, "declared".into()).await;
        Ok(declared)
    }

    /// The policies in the management API's form (`PUT /api/policies/{vhost}/{name}` takes
    /// one element without its `vhost` and `name`).
    pub fn policies_json(&self, vhost: &str) -> Vec<Value> {
        self.policies
            .iter()
            .map(|p| {
                json!({
                    "vhost": vhost, "name": p.name, "pattern": p.pattern, "apply-to": "queues",
                    "priority": POLICY_PRIORITY, "definition": policy_definition(&p.definition),
                })
            })
            .collect()
    }

    /// The topology in RabbitMQ's definitions format (importable with
    /// `rabbitmqctl import_definitions` or the management UI).
    pub fn definitions_json(&self) -> Value {
        let vhost = "/";
        json!({
            "rabbit_version": "3.10.8",
            "vhosts": [{ "name": vhost }],
            "exchanges": self.exchanges.iter().map(|e| json!({
                "name": e.name, "vhost": vhost, "type": e.kind, "durable": true,
                "auto_delete": false, "internal": false, "arguments": json_args(&e.args),
            })).collect::<Vec<_>>(),
            "queues": self.queues.iter().map(|q| json!({
                "name": q.name, "vhost": vhost, "durable": true, "auto_delete": false,
                "arguments": json_args(&q.args),
            })).collect::<Vec<_>>(),
            "bindings": self.bindings.iter().map(|b| json!({
                "source": b.exchange, "vhost": vhost, "destination": b.queue,
                "destination_type": "queue", "routing_key": b.routing_key, "arguments": {},
            })).collect::<Vec<_>>(),
            "policies": self.policies_json(vhost),
        })
    }
}

/// A policy definition as JSON (the same value types as queue arguments).
pub fn policy_definition(definition: &[(&'static str, Arg)]) -> Value {
    json_args(definition)
}

/// Declares one durable queue on `channel`. Returns false when the queue exists with other
/// arguments (RabbitMQ refuses the declaration with PRECONDITION_FAILED and closes the
/// channel): it is kept as it is, and `channel` is replaced by a fresh one.
async fn declare_queue(
    channel: &mut Channel,
    conn: &Connection,
    name: &str,
    args: &[(&'static str, Arg)],
) -> Result<bool, BrokerError> {
    let declared = channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            field_table(args),
        )
        .await;
    match declared {
        Ok(_) => Ok(true),
        Err(e) if has_soft_error(&e, lapin::protocol::AMQPSoftError::PRECONDITIONFAILED) => {
            log::warn!(
                "queue {name} exists with arguments an earlier version set ({e}); kept as it is: \
                 its arguments override the policies until it is drained and re-created"
            );
            *channel = conn.create_channel().await?;
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Declares a terminal's (`pos.<m>.<t>`) or cardholder's (`user.<u>`) durable result queue and
/// binds it to `pay.results` with the same name as routing key. One declared by an earlier
/// version with its limits as arguments is kept as it is. Uses a channel of its own, since a
/// refused declaration closes its channel.
pub async fn provision_result_queue(conn: &Connection, key: &str) -> Result<(), BrokerError> {
    let mut channel = conn.create_channel().await?;
    declare_queue(&mut channel, conn, key, &result_queue_args()).await?;
    channel
        .queue_bind(
            key.into(),
            RESULTS.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let _ = channel.close(200, "provisioned".into()).await;
    Ok(())
}

/// Settlement shard queues beyond `shards` that still hold ready messages: what a lowered
/// `CAMPUSPAY_SETTLEMENT_SHARDS` would leave unread (those cards' payments would wait forever).
/// Shard queues are numbered from 0 without gaps, so the search stops at the first one that
/// does not exist.
pub async fn stranded_shards(
    conn: &Connection,
    shards: Shards,
) -> Result<Vec<(String, u32)>, BrokerError> {
    let mut stranded = Vec::new();
    for shard in shards.count()..Shards::MAX {
        let name = settlement_queue(shard);
        // A passive declare of a missing queue closes its channel: one channel per probe.
        let channel = conn.create_channel().await?;
        let probe = channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        match probe {
            Ok(q) => {
                if q.message_count() > 0 {
                    stranded.push((name, q.message_count()));
                }
                let _ = channel.close(200, "probed".into()).await;
            }
            Err(e) if is_not_found(&e) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(stranded)
}

/// Replaces queues declared by an earlier version with other arguments, where that is safe:
/// `pay.unrouted` (a classic queue before it became quorum; it holds only results nobody
/// subscribed to, kept five minutes for debugging). Every other queue keeps what it has; a
/// difference there is reported by `admin topology check`. Returns the queues replaced.
pub async fn replace_outdated(
    conn: &Connection,
    topology: &Topology,
) -> Result<Vec<String>, BrokerError> {
    let mut replaced = Vec::new();
    for q in topology.queues.iter().filter(|q| q.name == UNROUTED_QUEUE) {
        // A declare with other arguments closes its channel with PRECONDITION_FAILED.
        let probe = conn.create_channel().await?;
        let declared = probe
            .queue_declare(
                q.name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                field_table(&q.args),
            )
            .await;
        match declared {
            Ok(_) => {
                let _ = probe.close(200, "probed".into()).await;
            }
            Err(e) if has_soft_error(&e, lapin::protocol::AMQPSoftError::PRECONDITIONFAILED) => {
                let channel = conn.create_channel().await?;
                channel
                    .queue_delete(q.name.as_str().into(), Default::default())
                    .await?;
                let _ = channel.close(200, "replaced".into()).await;
                replaced.push(q.name.clone());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(replaced)
}

fn has_soft_error(e: &lapin::Error, soft: lapin::protocol::AMQPSoftError) -> bool {
    matches!(
        e.kind(),
        lapin::ErrorKind::ProtocolError(amqp)
            if *amqp.kind() == lapin::protocol::AMQPErrorKind::Soft(soft)
    )
}

fn is_not_found(e: &lapin::Error) -> bool {
    has_soft_error(e, lapin::protocol::AMQPSoftError::NOTFOUND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_binding_targets_a_declared_queue_and_exchange() {
        let t = topology(Shards::DEFAULT);
        for b in &t.bindings {
            assert!(t.queues.iter().any(|q| q.name == b.queue), "{}", b.queue);
            assert!(
                t.exchanges.iter().any(|e| e.name == b.exchange),
                "{}",
                b.exchange
            );
        }
    }

    #[test]
    fn every_policy_refuses_rather_than_drops_and_queues_carry_no_limits() {
        // Which queue each policy reaches is checked against RabbitMQ's own matching in the
        // integration tests (tests/integration/topology.rs).
        let t = topology(Shards::DEFAULT);
        let mut names: Vec<&str> = t.policies.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), t.policies.len());
        for p in &t.policies {
            assert!(p.name.starts_with(POLICY_PREFIX), "{}", p.name);
            assert!(
                p.definition
                    .contains(&("overflow", Arg::Str("reject-publish"))),
                "{}",
                p.name
            );
        }
        for q in &t.queues {
            for (k, _) in &q.args {
                assert!(
                    ["x-queue-type", "x-single-active-consumer"].contains(k),
                    "{} has {k}",
                    q.name
                );
            }
        }
    }

    #[test]
    fn shards_are_stable() {
        let four = Shards::DEFAULT;
        assert_eq!(four.of(0), 0);
        assert_eq!(four.of(5), 1);
        assert!((0..1000).all(|c| four.of(c) < four.count()));
        let two = Shards::new(2).unwrap();
        assert_eq!(two.of(5), 1);
        assert_eq!(topology(two).queues.len() + 2, topology(four).queues.len());
        assert_eq!(Shards::new(0), None);
        assert_eq!(Shards::new(Shards::MAX + 1), None);
    }
}
