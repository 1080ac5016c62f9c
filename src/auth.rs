//! JWTs for terminals, cardholders and admins: HS256 only (pinned), expiry required.

use crate::domain::{MerchantId, TerminalId, UserId};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Terminal,
    Cardholder,
    Admin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token does not grant this: {0}")]
    Forbidden(&'static str),
}

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

/// Terminal tokens are long-lived device credentials; rotate by re-provisioning.
pub const TERMINAL_TOKEN_DAYS: i64 = 365;

impl JwtKeys {
    pub fn new(secret: &[u8]) -> JwtKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }

    pub fn issue_terminal(
        &self,
        merchant: &MerchantId,
        terminal: &TerminalId,
    ) -> Result<String, AuthError> {
        let now = chrono::Utc::now().timestamp();
        self.sign(&Claims {
            sub: format!("terminal:{merchant}:{terminal}"),
            role: Role::Terminal,
            merchant_id: Some(merchant.to_string()),
            terminal_id: Some(terminal.to_string()),
            user_id: None,
            iat: now,
            exp: now + TERMINAL_TOKEN_DAYS * 86_400,
        })
    }

    pub fn issue_cardholder(&self, user: &UserId, ttl_secs: i64) -> Result<String, AuthError> {
        let now = chrono::Utc::now().timestamp();
        self.sign(&Claims {
            sub: format!("user:{user}"),
            role: Role::Cardholder,
            merchant_id: None,
            terminal_id: None,
            user_id: Some(user.to_string()),
            iat: now,
            exp: now + ttl_secs,
        })
    }

    /// An operator's token for `/admin/v1`.
    pub fn issue_admin(&self, name: &str, ttl_secs: i64) -> Result<String, AuthError> {
        let now = chrono::Utc::now().timestamp();
        self.sign(&Claims {
            sub: format!("admin:{name}"),
            role: Role::Admin,
            merchant_id: None,
            terminal_id: None,
            user_id: None,
            iat: now,
            exp: now + ttl_secs,
        })
    }

    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }

    /// Checks an AMQP `authorization` header (`Bearer <jwt>`) for a terminal acting as
    /// `merchant`/`terminal`.
    pub fn verify_terminal(
        &self,
        header: Option<&str>,
        merchant: &MerchantId,
        terminal: &TerminalId,
    ) -> Result<Claims, AuthError> {
        let token = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or(AuthError::Missing)?;
        let claims = self.verify(token.trim())?;
        if claims.role != Role::Terminal {
            return Err(AuthError::Forbidden("role is not terminal"));
        }
        if claims.merchant_id.as_deref() != Some(merchant.as_str())
            || claims.terminal_id.as_deref() != Some(terminal.as_str())
        {
            return Err(AuthError::Forbidden("token belongs to another terminal"));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (MerchantId, TerminalId) {
        (
            MerchantId::parse("m1").unwrap(),
            TerminalId::parse("t1").unwrap(),
        )
    }

    #[test]
    fn terminal_token_round_trip_and_binding() {
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef");
        let (m, t) = ids();
        let tok = keys.issue_terminal(&m, &t).unwrap();
        let header = format!("Bearer {tok}");
        assert!(keys.verify_terminal(Some(&header), &m, &t).is_ok());
        let other = TerminalId::parse("t2").unwrap();
        assert!(matches!(
            keys.verify_terminal(Some(&header), &m, &other),
            Err(AuthError::Forbidden(_))
        ));
        assert_eq!(keys.verify_terminal(None, &m, &t), Err(AuthError::Missing));
    }

    #[test]
    fn forged_and_expired_tokens_fail() {
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef");
        let forger = JwtKeys::new(b"another-secret-another-secret-xx");
        let (m, t) = ids();
        let forged = forger.issue_terminal(&m, &t).unwrap();
        assert!(keys.verify(&forged).is_err());
        let now = chrono::Utc::now().timestamp();
        let expired = keys
            .sign(&Claims {
                sub: "x".into(),
                role: Role::Terminal,
                merchant_id: Some("m1".into()),
                terminal_id: Some("t1".into()),
                user_id: None,
                iat: now - 7200,
                exp: now - 3600,
            })
            .unwrap();
        assert!(keys.verify(&expired).is_err());
        // alg=none: header {"alg":"none"}, no signature.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4Iiwicm9sZSI6InRlcm1pbmFsIiwiZXhwIjo0MTAyNDQ0ODAwfQ.";
        assert!(keys.verify(none).is_err());
    }
}
