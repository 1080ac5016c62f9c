//! Connecting to RabbitMQ with bounded, growing back-off, over plain AMQP or TLS (`amqps://`).
//!
//! TLS is rustls with the ring provider (lapin features `rustls--ring` and
//! `rustls-native-certs`). An `amqps://` connection trusts the system's root certificates
//! (the OS store, e.g. Debian's ca-certificates; `SSL_CERT_FILE`/`SSL_CERT_DIR` point
//! elsewhere) plus, if configured, the campus CA bundle (`CAMPUSPAY_AMQP_CA_FILE`). The server's
//! name is checked against the URL's host, so the broker's certificate must name it (DNS name or
//! IP address).

use super::{amqp_url, BrokerError};
use lapin::tcp::{OwnedTLSConfig, RustlsConnectorConfig};
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};
use rustls_pki_types::{pem::PemObject, CertificateDer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// How long one connection attempt to one node may take. A node cut off by a partition does not
/// refuse a connection, it never answers: without a bound the attempt hangs on the kernel's TCP
/// timeout (minutes) instead of moving on to the next node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The heartbeat asked for when a URL does not set one (`?heartbeat=`). Heartbeats are how a
/// client notices a connection whose peer went silent (a partitioned node cannot send the close
/// it would send when it pauses); RabbitMQ's default of 60 s would leave a stage on a dead node
/// for two minutes; at 5 s a stage leaves it after 10 to 20 s. Both sides send one every
/// `heartbeat / 2`.
const DEFAULT_HEARTBEAT_SECS: u16 = 5;

/// Where the next `connect` starts in a list of nodes. Turned by every call, so that the
/// connections of a process spread over the cluster's nodes and a reconnect after a failure
/// tries another node first.
static NEXT_NODE: AtomicUsize = AtomicUsize::new(0);

/// Exponential back-off with a ceiling: 200 ms, 400 ms, … 10 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new() -> Backoff {
        Backoff {
            next: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
    pub fn reset(&mut self) {
        *self = Backoff::new();
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// Certificate authorities that `amqps://` connections trust on top of the system's roots: a
/// private campus CA that signed the broker's certificate. Built only from PEM that parsed, with
/// every certificate usable as a trust anchor.
#[derive(Clone, PartialEq, Eq)]
pub struct CaBundle {
    pem: String,
    certificates: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum CaBundleError {
    #[error("no PEM CERTIFICATE block in it")]
    NoCertificate,
    #[error("certificate {index} is not valid PEM: {why}")]
    Pem { index: usize, why: String },
    #[error("certificate {index} is not usable as a trust anchor: {why}")]
    Anchor { index: usize, why: String },
}

impl CaBundle {
    /// Parses and checks a PEM bundle the way the TLS connector will read it: rustls-connector
    /// skips certificates it cannot use without a word, which would turn a broken bundle into
    /// a puzzling "unknown issuer" at the first connection; here it is an error at start-up.
    pub fn from_pem(pem: &str) -> Result<CaBundle, CaBundleError> {
        let mut certificates = 0;
        for (index, cert) in CertificateDer::pem_slice_iter(pem.as_bytes()).enumerate() {
            let cert = cert.map_err(|e| CaBundleError::Pem {
                index,
                why: e.to_string(),
            })?;
            // A connector trusting only this certificate fails to build unless it parsed as a
            // trust anchor (an empty root store is an error).
            RustlsConnectorConfig::default()
                .with_parsable_certificates(vec![cert])
                .connector_with_no_client_auth()
                .map_err(|e| CaBundleError::Anchor {
                    index,
                    why: e.to_string(),
                })?;
            certificates += 1;
        }
        if certificates == 0 {
            return Err(CaBundleError::NoCertificate);
        }
        Ok(CaBundle {
            pem: pem.to_owned(),
            certificates,
        })
    }

    pub fn certificates(&self) -> usize {
        self.certificates
    }
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CaBundle({} certificates)", self.certificates)
    }
}

/// The process's CA bundle, set once at start-up from the configuration.
///
/// Process-wide rather than a parameter: `connect(url, name)` is called from a dozen places
/// (stage consumers, the platform's hub, admin and bench commands, simulators) that all carry
/// only the URL, and every one of them must trust the same CA. Threading the bundle through each
/// would change all those signatures for a value that never varies within a process.
static TRUSTED_CAS: OnceLock<CaBundle> = OnceLock::new();

/// `trust_cas` was given a bundle after another one was set.
#[derive(Debug, thiserror::Error)]
#[error("a different AMQP CA bundle is already in use in this process")]
pub struct CaAlreadySet;

/// Makes every later `connect` trust `ca` (on top of the system roots) for `amqps://` URLs.
/// Call once, before connecting; `None` keeps the system roots only. Setting the same bundle
/// again is fine; a different one is refused, since connections already open trust the first.
pub fn trust_cas(ca: Option<CaBundle>) -> Result<(), CaAlreadySet> {
    let Some(ca) = ca else {
        return Ok(());
    };
    if *TRUSTED_CAS.get_or_init(|| ca.clone()) == ca {
        Ok(())
    } else {
        Err(CaAlreadySet)
    }
}

/// One attempt on each node of `url` (one URL, or a comma-separated list of a cluster's nodes),
/// starting at a different node each call, until one accepts. The connection name shows in the
/// management UI, which is how an operator tells the stage workers apart. `amqps://` URLs trust
/// the bundle set by `trust_cas`.
pub async fn connect(url: &str, name: &str) -> Result<Connection, BrokerError> {
    connect_trusting(url, name, TRUSTED_CAS.get()).await
}

/// `connect`, trusting `ca` (and the system roots) instead of the process-wide bundle. lapin
/// ignores the TLS settings for a plain `amqp://` URL.
pub async fn connect_trusting(
    url: &str,
    name: &str,
    ca: Option<&CaBundle>,
) -> Result<Connection, BrokerError> {
    let nodes = amqp_url::nodes(url);
    if nodes.is_empty() {
        return Err(BrokerError::BadUrl("no node in the AMQP URL".into()));
    }
    let start = NEXT_NODE.fetch_add(1, Ordering::Relaxed);
    let mut last = None;
    for i in 0..nodes.len() {
        let node = nodes[(start + i) % nodes.len()];
        match connect_node(node, name, ca).await {
            Ok(conn) => return Ok(conn),
            Err(e) => {
                if nodes.len() > 1 {
                    log::warn!("{name}: cannot connect to {}: {e}", amqp_url::redact(node));
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(BrokerError::ConsumerClosed))
}

/// One attempt on one node, bounded by `CONNECT_TIMEOUT`, with our default heartbeat.
async fn connect_node(
    node: &str,
    name: &str,
    ca: Option<&CaBundle>,
) -> Result<Connection, BrokerError> {
    // The parser's message quotes the whole URL, password included: name the node redacted.
    let mut uri: AMQPUri = node.parse().map_err(|_: String| {
        BrokerError::BadUrl(format!("cannot parse {}", amqp_url::redact(node)))
    })?;
    uri.query.heartbeat.get_or_insert(DEFAULT_HEARTBEAT_SECS);
    let props = ConnectionProperties::default().with_connection_name(name.into());
    let tls = OwnedTLSConfig {
        identity: None,
        cert_chain: ca.map(|c| c.pem.clone()),
    };
    // The runtime `Connection::connect` would pick: the current tokio runtime.
    let runtime = lapin::runtime::default_runtime()?;
    let attempt = Connection::connect_uri_with_config(uri, props, tls, runtime);
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(conn) => Ok(conn?),
        Err(_) => Err(BrokerError::ConnectTimeout(CONNECT_TIMEOUT)),
    }
}

/// How long a closing handshake may take. lapin waits for the broker's close-ok (or cancel-ok)
/// without a limit, and a broker that has already dropped the connection on its side (a deleted
/// vhost, a partition) may never send it: a process shutting down must not wait for it forever.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Cancels `tag` on `channel` (when given) and closes `conn`, each bounded by `CLOSE_TIMEOUT`.
/// Errors are ignored: the connection is being given up either way, and the broker hands back
/// whatever was unacknowledged on it.
pub async fn close_within(
    conn: &Connection,
    cancel: Option<(&lapin::Channel, &str)>,
    reason: &str,
) {
    if let Some((channel, tag)) = cancel {
        let cancelled = channel.basic_cancel(tag.into(), Default::default());
        if tokio::time::timeout(CLOSE_TIMEOUT, cancelled)
            .await
            .is_err()
        {
            log::warn!("{reason}: the broker did not confirm the consumer's cancel within {CLOSE_TIMEOUT:?}");
        }
    }
    if tokio::time::timeout(CLOSE_TIMEOUT, conn.close(200, reason.into()))
        .await
        .is_err()
    {
        log::warn!("{reason}: the broker did not confirm the close within {CLOSE_TIMEOUT:?}");
    }
}

/// Retries `connect` up to `attempts` times with back-off; used by short-lived commands.
pub async fn connect_retrying(
    url: &str,
    name: &str,
    attempts: u32,
) -> Result<Connection, BrokerError> {
    let mut backoff = Backoff::new();
    let mut last = None;
    for _ in 0..attempts.max(1) {
        match connect(url, name).await {
            Ok(c) => return Ok(c),
            Err(e) => {
                log::warn!("cannot connect to RabbitMQ ({e}); retrying");
                last = Some(e);
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
    Err(last.unwrap_or(BrokerError::ConsumerClosed))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed CA certificate (P-256, valid until 2126), made for this test; its key was
    /// thrown away.
    const CA: &str = "-----BEGIN CERTIFICATE-----
MIIBqDCCAU+gAwIBAgIUAnequMct9uVs2J/q9QuSow2StbAwCgYIKoZIzj0EAwIw
ITEfMB0GA1UEAwwWY2FtcHVzcGF5IHVuaXQtdGVzdCBDQTAgFw0yNjExMzAxMzE4
MTlaGA8yMTI2MTEwNjEzMTgxOVowITEfMB0GA1UEAwwWY2FtcHVzcGF5IHVuaXQt
dGVzdCBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABIqHrnOqWpezsAurqrit
EflmF5ddtcXX5Y9Fg1mrWgm1gP1CLyiMvb4xwsEvfV1hwiXqck4zk0qpgHHHcVMP
pg6jYzBhMB0GA1UdDgQWBBQlxtHyrHjftPy4RoCPQrapXSW1bjAfBgNVHSMEGDAW
gBQlxtHyrHjftPy4RoCPQrapXSW1bjAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB
/wQEAwICBDAKBggqhkjOPQQDAgNHADBEAiAYk8udS7xS4P+bFaqDRutwZp3avqJY
us/+8JnfpH/poQIgQaZkJ8n0ODchaeDrcMSe07APN6LR0E0Dwd55dsyiG7c=
-----END CERTIFICATE-----
";
    /// Its public key: a PEM section that is not a certificate.
    const PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEioeuc6pal7OwC6uquK0R+WYXl121
xdflj0WDWataCbWA/UIvKIy9vjHCwS99XWHCJepyTjOTSqmAccdxUw+mDg==
-----END PUBLIC KEY-----
";

    #[test]
    fn a_ca_bundle_holds_only_usable_certificates() {
        let one = CaBundle::from_pem(CA).unwrap();
        assert_eq!(one.certificates(), 1);
        assert_eq!(format!("{one:?}"), "CaBundle(1 certificates)");
        // Other sections are skipped, each certificate counts.
        let bundle = format!("{PUBLIC_KEY}{CA}{CA}");
        assert_eq!(CaBundle::from_pem(&bundle).unwrap().certificates(), 2);

        for empty in ["", "not PEM at all", PUBLIC_KEY] {
            assert!(
                matches!(CaBundle::from_pem(empty), Err(CaBundleError::NoCertificate)),
                "{empty:?}"
            );
        }
        let not_base64 = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            CaBundle::from_pem(&format!("{CA}{not_base64}")),
            Err(CaBundleError::Pem { index: 1, .. })
        ));
        // Valid base64, but not an X.509 certificate.
        let not_x509 = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            CaBundle::from_pem(not_x509),
            Err(CaBundleError::Anchor { index: 0, .. })
        ));
    }
}
