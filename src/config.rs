//! Settings from environment variables (the README's Configuration table), validated once at start-up.

use crate::broker::connection::CaBundle;
use crate::broker::topology::Shards;
use crate::domain::refund::ReversalWindow;
use crate::domain::CodePrefix;
use crate::keys::Keys;
use std::time::Duration;

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/campuspay";
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const DEFAULT_MANAGEMENT_URL: &str = "http://guest:guest@127.0.0.1:15672";

/// Published in this source file, so usable only with `CAMPUSPAY_ENV=development`: anyone can
/// mint tokens and forge codes with them.
const DEV_JWT_SECRET: &str = "campuspay-dev-secret-do-not-use-in-production";
const DEV_CODE_KEY: &str = "campuspay-dev-code-key-do-not-use-in-production";
const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "{0} is not set: campuspay refuses to run without real secrets unless \
         CAMPUSPAY_ENV=development (which uses keys published in the source)"
    )]
    Missing(&'static str),
    #[error(
        "{0} is the published development secret: set a secret of your own (at least \
         {MIN_SECRET_LEN} random bytes), or CAMPUSPAY_ENV=development"
    )]
    DevelopmentSecret(&'static str),
    #[error("{name} must be at least {MIN_SECRET_LEN} bytes long")]
    TooShort { name: &'static str },
    #[error("{name}={value:?} is not valid: {why}")]
    Invalid {
        name: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("CAMPUSPAY_CODE_PREFIX={value:?} is not valid: {source}")]
    CodePrefix {
        value: String,
        source: crate::domain::CodePrefixError,
    },
    #[error("{name}={path:?}: {why}")]
    File {
        name: &'static str,
        path: String,
        why: String,
    },
}

/// A secret that never prints itself.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub amqp_url: String,
    /// The broker user of `amqp_url`: the pipeline's own service account. A request that this
    /// user published (the platform's web tills, tools) is trusted like the pipeline itself.
    pub broker_user: String,
    /// CAs that `amqps://` connections trust besides the system roots (`CAMPUSPAY_AMQP_CA_FILE`);
    /// installed process-wide by `broker::connection::trust_cas` at start-up.
    pub amqp_ca: Option<CaBundle>,
    pub management_url: String,
    /// One key per purpose, derived from `CAMPUSPAY_JWT_SECRET` and `CAMPUSPAY_CODE_KEY`.
    pub keys: Keys,
    /// How long an issued payment code stays valid.
    pub code_ttl: Duration,
    /// What the payment codes this campus issues start with (codes with the legacy `28` are
    /// accepted too).
    pub code_prefix: CodePrefix,
    /// How long a dynamic merchant QR code stays payable.
    pub dynamic_qr_ttl: Duration,
    /// The campus time zone as a UTC offset: where a "day" starts for daily limits and reports.
    pub campus_offset: chrono::FixedOffset,
    /// Where `campuspay run` serves the payment platform's HTTP API.
    pub http_addr: String,
    /// The platform's address as browsers reach it (`CAMPUSPAY_PUBLIC_URL`, default
    /// `http://<http_addr>`): sign-in links point there, and an `https://` one makes the
    /// session cookie `Secure`. No trailing slash.
    pub public_url: String,
    /// Where every `campuspay run` process serves its operations listener (`/healthz`,
    /// `/readyz`, `/metrics`).
    pub ops_addr: OpsAddr,
    /// Messages larger than this are dead-lettered unread (a POS message is < 1 KiB).
    pub max_message_bytes: usize,
    /// Unacked deliveries per stage consumer; also the largest natural batch.
    pub prefetch: u16,
    /// The request stage's adaptive linger (`CAMPUSPAY_LINGER_MS`, 20; 0–50, 0 turns it off):
    /// how long `qr_validation` may wait for more requests when they arrive often enough that
    /// waiting gathers a batch (`broker::consumer::Linger`, docs/PERFORMANCE.md §9).
    pub linger: Duration,
    pub db_pool_size: u32,
    /// How long a publisher waits for the broker's confirm before treating it as a failure.
    pub confirm_timeout: Duration,
    /// How many settlement shards the deployment has (`CAMPUSPAY_SETTLEMENT_SHARDS`, 1–32).
    pub settlement_shards: Shards,
    /// Settlement shards this process is meant to be active on (`run --prefer-shards`);
    /// `None`: all of them.
    pub preferred_shards: Option<Vec<u32>>,
    /// How long a process waits before registering as a standby consumer on a shard it does
    /// not prefer, so that the preferring process (started at about the same time) becomes
    /// the shard's single active consumer.
    pub standby_delay: Duration,
    /// How far back a POS may reverse its own payments.
    pub reversal_window: ReversalWindow,
    /// How long a reverse scan above the password-free amount waits for its cardholder to
    /// confirm it on the phone before it is declined `confirmation_timeout`.
    pub confirmation_timeout: Duration,
    /// `CAMPUSPAY_ENV=development`: the published development keys are allowed.
    pub development: bool,
}

/// `day` (the current campus day) or a number of seconds, 60 to 604800.
fn parse_reversal_window(value: Option<String>) -> Result<ReversalWindow, ConfigError> {
    match value.as_deref().map(str::trim) {
        None | Some("day") => Ok(ReversalWindow::CampusDay),
        Some(v) => match v.parse::<u32>() {
            Ok(s) if (60..=604_800).contains(&s) => Ok(ReversalWindow::Seconds(s)),
            _ => Err(ConfigError::Invalid {
                name: "CAMPUSPAY_REVERSAL_WINDOW",
                value: v.to_owned(),
                why: "expected `day` or a number of seconds from 60 to 604800",
            }),
        },
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn parse_num<T>(name: &'static str, default: T, min: T, max: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + Copy,
{
    match env(name) {
        None => Ok(default),
        Some(v) => match v.parse::<T>() {
            Ok(n) if n >= min && n <= max => Ok(n),
            _ => Err(ConfigError::Invalid {
                name,
                value: v,
                why: "out of range or not a number",
            }),
        },
    }
}

/// The PEM bundle named by `CAMPUSPAY_AMQP_CA_FILE`, read and checked now rather than at the
/// first `amqps://` connection.
fn amqp_ca() -> Result<Option<CaBundle>, ConfigError> {
    const NAME: &str = "CAMPUSPAY_AMQP_CA_FILE";
    let Some(path) = env(NAME) else {
        return Ok(None);
    };
    let bad = |why: String| ConfigError::File {
        name: NAME,
        path: path.clone(),
        why,
    };
    let pem = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
    let ca = CaBundle::from_pem(&pem).map_err(|e| bad(e.to_string()))?;
    Ok(Some(ca))
}

/// `CAMPUSPAY_CODE_PREFIX`: two digits that no other wallet uses, `88` when unset. Public so
/// that the POS simulator checks a typed code against the same prefix offline.
pub fn code_prefix() -> Result<CodePrefix, ConfigError> {
    parse_code_prefix(env("CAMPUSPAY_CODE_PREFIX"))
}

fn parse_code_prefix(value: Option<String>) -> Result<CodePrefix, ConfigError> {
    match value {
        None => Ok(CodePrefix::DEFAULT),
        Some(v) => CodePrefix::parse(v.trim())
            .map_err(|source| ConfigError::CodePrefix { value: v, source }),
    }
}

/// `CAMPUSPAY_OPS_ADDR`: unset, `off`, or an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpsAddr {
    /// Unset: `127.0.0.1:9188` for a process that serves the platform, `127.0.0.1:9189` for a
    /// stage worker (`run --no-http`), so the two on one host do not collide.
    Default,
    /// `off`: no operations listener (nothing can probe or scrape the process).
    Off,
    /// `host:port` (port 0: any free one).
    At(String),
}

impl OpsAddr {
    pub const PLATFORM_DEFAULT: &'static str = "127.0.0.1:9188";
    pub const WORKER_DEFAULT: &'static str = "127.0.0.1:9189";

    fn parse(value: Option<String>) -> OpsAddr {
        match value {
            None => OpsAddr::Default,
            Some(v) if v.trim().is_empty() => OpsAddr::Default,
            Some(v) if v.trim().eq_ignore_ascii_case("off") => OpsAddr::Off,
            Some(v) => OpsAddr::At(v.trim().to_owned()),
        }
    }

    /// Where to listen (`None`: not at all), for a process with (`serves_http`) or without the
    /// platform.
    pub fn resolve(&self, serves_http: bool) -> Option<&str> {
        match self {
            OpsAddr::Off => None,
            OpsAddr::At(a) => Some(a),
            OpsAddr::Default if serves_http => Some(Self::PLATFORM_DEFAULT),
            OpsAddr::Default => Some(Self::WORKER_DEFAULT),
        }
    }
}

/// `http(s)://host[:port][/prefix]` without a trailing slash; default `http://<http_addr>`.
/// Anything else would make sign-in links that lead nowhere, so it is refused at start-up.
fn parse_public_url(value: Option<String>, http_addr: &str) -> Result<String, ConfigError> {
    let Some(v) = value else {
        return Ok(format!("http://{http_addr}"));
    };
    let trimmed = v.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    let host_ok = rest.is_some_and(|r| {
        let host = r.split('/').next().unwrap_or("");
        !host.is_empty() && !r.contains(['?', '#', ' ', '"', '<', '>', '\\']) && !host.contains('@')
    });
    if !host_ok {
        return Err(ConfigError::Invalid {
            name: "CAMPUSPAY_PUBLIC_URL",
            value: v,
            why: "expected http://host[:port] or https://host[:port], optionally with a path",
        });
    }
    Ok(trimmed.to_owned())
}

/// "+08:00" → UTC+8.
fn parse_offset(s: &str) -> Result<chrono::FixedOffset, ConfigError> {
    let bad = || ConfigError::Invalid {
        name: "CAMPUSPAY_UTC_OFFSET",
        value: s.to_owned(),
        why: "expected +HH:MM or -HH:MM",
    };
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if !(0..=14).contains(&h) || !(0..60).contains(&m) {
        return Err(bad());
    }
    chrono::FixedOffset::east_opt(sign * (h * 3600 + m * 60)).ok_or_else(bad)
}

/// The UTC instant the campus day containing `now` began.
pub fn campus_day_start(
    offset: chrono::FixedOffset,
    now: chrono::DateTime<chrono::Utc>,
) -> chrono::DateTime<chrono::Utc> {
    let local = now.with_timezone(&offset);
    let midnight = local
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap_or_else(|| local.naive_local());
    chrono::DateTime::<chrono::Utc>::from_naive_utc_and_offset(midnight - offset, chrono::Utc)
}

/// Whether `CAMPUSPAY_ENV` names development (case-insensitive). Anything else, and no value,
/// is production: a forgotten variable must not open the published keys.
pub fn is_development(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim().eq_ignore_ascii_case("development"))
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        let development = is_development(env("CAMPUSPAY_ENV").as_deref());
        let secret = |name: &'static str, dev: &str| -> Result<Secret, ConfigError> {
            match env(name) {
                Some(v) if v.len() < MIN_SECRET_LEN => Err(ConfigError::TooShort { name }),
                Some(v) if v == dev && !development => Err(ConfigError::DevelopmentSecret(name)),
                Some(v) => Ok(Secret::new(v)),
                None if development => {
                    log::warn!(
                        "{name} is not set: using the development key published in the source \
                         (CAMPUSPAY_ENV=development; never for real money)"
                    );
                    Ok(Secret::new(dev))
                }
                None => Err(ConfigError::Missing(name)),
            }
        };
        let jwt_secret = secret("CAMPUSPAY_JWT_SECRET", DEV_JWT_SECRET)?;
        let code_key = secret("CAMPUSPAY_CODE_KEY", DEV_CODE_KEY)?;
        let amqp_url = env("AMQP_URL").unwrap_or_else(|| DEFAULT_AMQP_URL.into());
        let http_addr = env("CAMPUSPAY_HTTP_ADDR").unwrap_or_else(|| "127.0.0.1:8080".into());
        let public_url = parse_public_url(env("CAMPUSPAY_PUBLIC_URL"), &http_addr)?;
        Ok(Config {
            database_url: env("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            broker_user: crate::broker::amqp_url::user(&amqp_url),
            amqp_url,
            amqp_ca: amqp_ca()?,
            management_url: env("RABBITMQ_MANAGEMENT_URL")
                .unwrap_or_else(|| DEFAULT_MANAGEMENT_URL.into()),
            keys: Keys::derive(jwt_secret.expose(), code_key.expose()),
            code_ttl: Duration::from_secs(parse_num("CAMPUSPAY_CODE_TTL_SECS", 600, 10, 86_400)?),
            code_prefix: code_prefix()?,
            dynamic_qr_ttl: Duration::from_secs(parse_num(
                "CAMPUSPAY_DYNAMIC_QR_TTL_SECS",
                300,
                10,
                86_400,
            )?),
            http_addr,
            public_url,
            ops_addr: OpsAddr::parse(env("CAMPUSPAY_OPS_ADDR")),
            campus_offset: parse_offset(
                env("CAMPUSPAY_UTC_OFFSET").as_deref().unwrap_or("+08:00"),
            )?,
            max_message_bytes: parse_num("CAMPUSPAY_MAX_MESSAGE_BYTES", 16 * 1024, 256, 1 << 20)?,
            prefetch: parse_num("CAMPUSPAY_PREFETCH", 300, 1, 1000)?,
            linger: Duration::from_millis(parse_num("CAMPUSPAY_LINGER_MS", 20, 0, 50)?),
            db_pool_size: parse_num("CAMPUSPAY_DB_POOL", 8, 1, 100)?,
            confirm_timeout: Duration::from_secs(parse_num(
                "CAMPUSPAY_CONFIRM_TIMEOUT_SECS",
                10,
                1,
                300,
            )?),
            settlement_shards: Shards::new(parse_num(
                "CAMPUSPAY_SETTLEMENT_SHARDS",
                Shards::DEFAULT.count(),
                1,
                Shards::MAX,
            )?)
            .unwrap_or_default(),
            preferred_shards: None,
            standby_delay: Duration::from_millis(parse_num(
                "CAMPUSPAY_STANDBY_DELAY_MS",
                3_000,
                0,
                60_000,
            )?),
            reversal_window: parse_reversal_window(env("CAMPUSPAY_REVERSAL_WINDOW"))?,
            confirmation_timeout: Duration::from_secs(parse_num(
                "CAMPUSPAY_CONFIRMATION_TIMEOUT_SECS",
                60,
                10,
                600,
            )?),
            development,
        })
    }

    /// Development settings for tests and tools, pointing at the given database and broker.
    pub fn for_urls(database_url: &str, amqp_url: &str) -> Config {
        Config {
            database_url: database_url.into(),
            amqp_url: amqp_url.into(),
            broker_user: crate::broker::amqp_url::user(amqp_url),
            amqp_ca: None,
            management_url: env("RABBITMQ_MANAGEMENT_URL")
                .unwrap_or_else(|| DEFAULT_MANAGEMENT_URL.into()),
            keys: Keys::derive(DEV_JWT_SECRET.as_bytes(), DEV_CODE_KEY.as_bytes()),
            code_ttl: Duration::from_secs(600),
            code_prefix: CodePrefix::DEFAULT,
            dynamic_qr_ttl: Duration::from_secs(300),
            http_addr: "127.0.0.1:0".into(),
            // Tests point it at the platform they start (its port is known only then).
            public_url: "http://127.0.0.1:0".into(),
            ops_addr: OpsAddr::At("127.0.0.1:0".into()),
            campus_offset: chrono::FixedOffset::east_opt(8 * 3600)
                .unwrap_or_else(|| chrono::Offset::fix(&chrono::Utc)),
            max_message_bytes: 16 * 1024,
            prefetch: 300,
            linger: Duration::from_millis(20),
            db_pool_size: 8,
            confirm_timeout: Duration::from_secs(10),
            settlement_shards: Shards::DEFAULT,
            preferred_shards: None,
            standby_delay: Duration::from_secs(3),
            reversal_window: ReversalWindow::CampusDay,
            confirmation_timeout: Duration::from_secs(60),
            development: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn offsets_and_campus_days() {
        assert_eq!(parse_offset("+08:00").unwrap().local_minus_utc(), 8 * 3600);
        assert_eq!(
            parse_offset("-05:30").unwrap().local_minus_utc(),
            -(5 * 3600 + 1800)
        );
        for bad in ["8", "+8", "+24:00", "+08:60", "", "Z"] {
            assert!(parse_offset(bad).is_err(), "{bad}");
        }
        let cst = parse_offset("+08:00").unwrap();
        // 2026-11-26 01:00 UTC is 09:00 in Beijing: the day began at 2026-11-25 16:00 UTC.
        let now = chrono::Utc.with_ymd_and_hms(2026, 11, 26, 1, 0, 0).unwrap();
        assert_eq!(
            campus_day_start(cst, now),
            chrono::Utc
                .with_ymd_and_hms(2026, 11, 25, 16, 0, 0)
                .unwrap()
        );
        // 17:00 UTC is already the next campus day.
        let late = chrono::Utc
            .with_ymd_and_hms(2026, 11, 26, 17, 0, 0)
            .unwrap();
        assert_eq!(
            campus_day_start(cst, late),
            chrono::Utc
                .with_ymd_and_hms(2026, 11, 26, 16, 0, 0)
                .unwrap()
        );
    }

    #[test]
    fn code_prefixes() {
        assert_eq!(parse_code_prefix(None).unwrap(), CodePrefix::DEFAULT);
        assert_eq!(
            parse_code_prefix(Some(" 77 ".into())).unwrap().to_string(),
            "77"
        );
        for bad in ["28", "12", "62", "01", "8", "x8"] {
            let e = parse_code_prefix(Some(bad.into())).unwrap_err();
            assert!(
                e.to_string().starts_with("CAMPUSPAY_CODE_PREFIX="),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn public_urls_are_checked_and_default_to_the_http_address() {
        assert_eq!(
            parse_public_url(None, "0.0.0.0:8080").unwrap(),
            "http://0.0.0.0:8080"
        );
        for (given, want) in [
            ("https://pay.campus.example/", "https://pay.campus.example"),
            ("http://192.168.1.5:8080", "http://192.168.1.5:8080"),
            ("https://campus.example/pay", "https://campus.example/pay"),
        ] {
            assert_eq!(parse_public_url(Some(given.into()), "x").unwrap(), want);
        }
        for bad in [
            "pay.campus.example",
            "ftp://x",
            "https://",
            "https://a b",
            "https://u:p@host",
            "https://x/?q",
            "javascript:alert(1)",
        ] {
            assert!(parse_public_url(Some(bad.into()), "x").is_err(), "{bad}");
        }
    }

    #[test]
    fn only_an_explicit_development_opens_the_published_keys() {
        for dev in ["development", "Development", "DEVELOPMENT", " development "] {
            assert!(is_development(Some(dev)), "{dev:?}");
        }
        for prod in [
            None,
            Some(""),
            Some("production"),
            Some("Production"),
            Some("dev"),
        ] {
            assert!(!is_development(prod), "{prod:?}");
        }
    }
}
