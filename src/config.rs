//! Settings from environment variables (DESIGN.md §8), validated once at start-up.

use std::time::Duration;

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/campuspay";
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const DEFAULT_MANAGEMENT_URL: &str = "http://guest:guest@127.0.0.1:15672";

/// Used only outside production mode, and loudly: anyone can mint tokens with it.
const DEV_JWT_SECRET: &str = "campuspay-dev-secret-do-not-use-in-production";
const DEV_CODE_KEY: &str = "campuspay-dev-code-key-do-not-use-in-production";
const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} must be set in production mode (CAMPUSPAY_ENV=production)")]
    Missing(&'static str),
    #[error("{name} must be at least {MIN_SECRET_LEN} bytes long")]
    TooShort { name: &'static str },
    #[error("{name}={value:?} is not valid: {why}")]
    Invalid {
        name: &'static str,
        value: String,
        why: &'static str,
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
    pub management_url: String,
    pub jwt_secret: Secret,
    pub code_key: Secret,
    /// How long an issued payment code stays valid.
    pub code_ttl: Duration,
    /// How long a dynamic merchant QR code stays payable.
    pub dynamic_qr_ttl: Duration,
    /// Where `campuspay run` serves the payment platform's HTTP API.
    pub http_addr: String,
    /// Messages larger than this are dead-lettered unread (a POS message is < 1 KiB).
    pub max_message_bytes: usize,
    /// Unacked deliveries per stage consumer; also the largest natural batch.
    pub prefetch: u16,
    pub db_pool_size: u32,
    /// How long a publisher waits for the broker's confirm before treating it as a failure.
    pub confirm_timeout: Duration,
    pub production: bool,
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

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        let production = env("CAMPUSPAY_ENV").as_deref() == Some("production");
        let secret = |name: &'static str, dev: &str| -> Result<Secret, ConfigError> {
            match env(name) {
                Some(v) if v.len() < MIN_SECRET_LEN => Err(ConfigError::TooShort { name }),
                Some(v) => Ok(Secret::new(v)),
                None if production => Err(ConfigError::Missing(name)),
                None => {
                    log::warn!(
                        "{name} is not set: using the development default (not for production)"
                    );
                    Ok(Secret::new(dev))
                }
            }
        };
        Ok(Config {
            database_url: env("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            amqp_url: env("AMQP_URL").unwrap_or_else(|| DEFAULT_AMQP_URL.into()),
            management_url: env("RABBITMQ_MANAGEMENT_URL")
                .unwrap_or_else(|| DEFAULT_MANAGEMENT_URL.into()),
            jwt_secret: secret("CAMPUSPAY_JWT_SECRET", DEV_JWT_SECRET)?,
            code_key: secret("CAMPUSPAY_CODE_KEY", DEV_CODE_KEY)?,
            code_ttl: Duration::from_secs(parse_num("CAMPUSPAY_CODE_TTL_SECS", 600, 10, 86_400)?),
            dynamic_qr_ttl: Duration::from_secs(parse_num(
                "CAMPUSPAY_DYNAMIC_QR_TTL_SECS",
                300,
                10,
                86_400,
            )?),
            http_addr: env("CAMPUSPAY_HTTP_ADDR").unwrap_or_else(|| "127.0.0.1:8080".into()),
            max_message_bytes: parse_num("CAMPUSPAY_MAX_MESSAGE_BYTES", 16 * 1024, 256, 1 << 20)?,
            prefetch: parse_num("CAMPUSPAY_PREFETCH", 100, 1, 1000)?,
            db_pool_size: parse_num("CAMPUSPAY_DB_POOL", 8, 1, 100)?,
            confirm_timeout: Duration::from_secs(parse_num(
                "CAMPUSPAY_CONFIRM_TIMEOUT_SECS",
                10,
                1,
                300,
            )?),
            production,
        })
    }

    /// Development settings for tests and tools, pointing at the given database and broker.
    pub fn for_urls(database_url: &str, amqp_url: &str) -> Config {
        Config {
            database_url: database_url.into(),
            amqp_url: amqp_url.into(),
            management_url: env("RABBITMQ_MANAGEMENT_URL")
                .unwrap_or_else(|| DEFAULT_MANAGEMENT_URL.into()),
            jwt_secret: Secret::new(DEV_JWT_SECRET),
            code_key: Secret::new(DEV_CODE_KEY),
            code_ttl: Duration::from_secs(600),
            dynamic_qr_ttl: Duration::from_secs(300),
            http_addr: "127.0.0.1:0".into(),
            max_message_bytes: 16 * 1024,
            prefetch: 100,
            db_pool_size: 8,
            confirm_timeout: Duration::from_secs(10),
            production: false,
        }
    }
}
