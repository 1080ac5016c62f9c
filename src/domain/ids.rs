//! Identifiers. Merchant, terminal and user ids appear inside AMQP routing keys
//! (`pos.<merchant>.<terminal>`, `user.<user>`), so they are restricted to characters that
//! cannot break a topic pattern: ASCII letters, digits, `_` and `-`, 1 to 32 of them.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

pub const MAX_ID_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must be 1 to {MAX_ID_LEN} characters of A-Z, a-z, 0-9, '_' or '-'")]
    Invalid { kind: &'static str },
    #[error("{kind} must be a UUID")]
    NotUuid { kind: &'static str },
}

fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

macro_rules! token_id {
    ($name:ident, $kind:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, IdError> {
                if valid_token(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(IdError::Invalid { kind: $kind })
                }
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
            /// For ids spelled in this code base (constants); checked in debug builds.
            pub fn from_static(s: &'static str) -> Self {
                debug_assert!(valid_token(s), "invalid constant id {s:?}");
                Self(s.to_owned())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }
    };
}

token_id!(MerchantId, "merchant id");
token_id!(TerminalId, "terminal id");
token_id!(UserId, "user id");

macro_rules! uuid_id {
    ($name:ident, $kind:literal) => {
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, IdError> {
                Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| IdError::NotUuid { kind: $kind })
            }
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }
    };
}

uuid_id!(RequestId, "request id");
uuid_id!(TransactionId, "transaction id");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_safe_ids() {
        assert!(MerchantId::parse("canteen-1").is_ok());
        assert!(TerminalId::parse("T_01").is_ok());
        for bad in [
            "",
            "a.b",
            "a*",
            "a#",
            "a b",
            "'; drop table",
            "ａ",
            &"x".repeat(33),
        ] {
            assert!(MerchantId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn uuid_ids() {
        assert!(RequestId::parse("6f1c7a52-1d1e-4c36-9d2b-6d3c8a4c2f10").is_ok());
        assert!(RequestId::parse("not-a-uuid").is_err());
    }
}
