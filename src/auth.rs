//! JWTs for terminals, cardholders and operators: HS256 only (pinned), one key per role
//! (`keys::Keys`), with issuer, audience, expiry and issue time required, and a maximum
//! lifetime per role enforced on verification (a token minted with a ten-year `exp` is refused
//! even when its signature is good). Terminal and cardholder tokens carry a version (`ver`);
//! the database holds the current one, and bumping it revokes every older token at once.

use crate::domain::{MerchantId, SessionSecret, TerminalId, UserId};
use crate::keys::Keys;
use hmac::{Hmac, Mac};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// `iss` of every token campuspay issues.
pub const ISSUER: &str = "campuspay";
/// Clock skew tolerated between the machines that issue and check tokens.
const LEEWAY_SECS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Terminal,
    Cardholder,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Terminal, Role::Cardholder, Role::Admin];

    /// `aud` of this role's tokens.
    pub fn audience(self) -> &'static str {
        match self {
            Role::Terminal => "campuspay:terminal",
            Role::Cardholder => "campuspay:cardholder",
            Role::Admin => "campuspay:admin",
        }
    }

    /// The longest a token of this role may live, whatever its `exp` says. A till's token is
    /// a device credential rotated with `admin terminal rotate`; a phone signs in again; an
    /// operator's token is for a working week at most.
    pub fn max_lifetime_secs(self) -> i64 {
        match self {
            Role::Terminal => 90 * 86_400,
            Role::Cardholder => 30 * 86_400,
            Role::Admin => 7 * 86_400,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The token version of the terminal or cardholder when the token was issued.
    #[serde(default)]
    pub ver: i32,
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
    #[error("token revoked (a newer one was issued, or the credentials were withdrawn)")]
    Revoked,
}

struct RoleKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl RoleKeys {
    fn new(role: Role, secret: &[u8]) -> RoleKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "aud", "iss"]);
        validation.set_audience(&[role.audience()]);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = LEEWAY_SECS as u64;
        RoleKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }
}

pub struct JwtKeys {
    terminal: RoleKeys,
    cardholder: RoleKeys,
    admin: RoleKeys,
}

impl JwtKeys {
    pub fn new(keys: &Keys) -> JwtKeys {
        JwtKeys {
            terminal: RoleKeys::new(Role::Terminal, keys.terminal_tokens.expose()),
            cardholder: RoleKeys::new(Role::Cardholder, keys.cardholder_tokens.expose()),
            admin: RoleKeys::new(Role::Admin, keys.admin_tokens.expose()),
        }
    }

    fn of(&self, role: Role) -> &RoleKeys {
        match role {
            Role::Terminal => &self.terminal,
            Role::Cardholder => &self.cardholder,
            Role::Admin => &self.admin,
        }
    }

    /// Signs claims as they are, with the key of their role (tests use this to forge what an
    /// attacker would try).
    pub fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &self.of(claims.role).encoding,
        )
        .map_err(|e| AuthError::Invalid(e.to_string()))
    }

    fn issue(
        &self,
        role: Role,
        sub: String,
        ttl_secs: i64,
        fill: impl FnOnce(&mut Claims),
    ) -> Result<String, AuthError> {
        let now = chrono::Utc::now().timestamp();
        let mut claims = Claims {
            iss: ISSUER.into(),
            aud: role.audience().into(),
            sub,
            role,
            merchant_id: None,
            terminal_id: None,
            user_id: None,
            ver: 0,
            iat: now,
            exp: now + ttl_secs.clamp(1, role.max_lifetime_secs()),
        };
        fill(&mut claims);
        self.sign(&claims)
    }

    /// A terminal's token, valid for the longest a terminal token may live.
    pub fn issue_terminal(
        &self,
        merchant: &MerchantId,
        terminal: &TerminalId,
        version: i32,
    ) -> Result<String, AuthError> {
        self.issue_terminal_for(
            merchant,
            terminal,
            version,
            Role::Terminal.max_lifetime_secs(),
        )
    }

    /// A terminal's token valid for `ttl_secs` (the POS page's bridge mints one per request,
    /// short-lived, for the terminal its session is).
    pub fn issue_terminal_for(
        &self,
        merchant: &MerchantId,
        terminal: &TerminalId,
        version: i32,
        ttl_secs: i64,
    ) -> Result<String, AuthError> {
        self.issue(
            Role::Terminal,
            format!("terminal:{merchant}:{terminal}"),
            ttl_secs,
            |c| {
                c.merchant_id = Some(merchant.to_string());
                c.terminal_id = Some(terminal.to_string());
                c.ver = version;
            },
        )
    }

    pub fn issue_cardholder(
        &self,
        user: &UserId,
        ttl_secs: i64,
        version: i32,
    ) -> Result<String, AuthError> {
        self.issue(Role::Cardholder, format!("user:{user}"), ttl_secs, |c| {
            c.user_id = Some(user.to_string());
            c.ver = version;
        })
    }

    /// An operator's token for `/admin/v1` and the console.
    pub fn issue_admin(&self, name: &str, ttl_secs: i64) -> Result<String, AuthError> {
        self.issue(Role::Admin, format!("admin:{name}"), ttl_secs, |_| {})
    }

    /// A token of `role`: signed with that role's key, for that audience, not expired, issued
    /// not in the future and living no longer than the role allows.
    pub fn verify(&self, role: Role, token: &str) -> Result<Claims, AuthError> {
        let keys = self.of(role);
        let claims = decode::<Claims>(token, &keys.decoding, &keys.validation)
            .map(|d| d.claims)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        if claims.role != role {
            return Err(AuthError::Forbidden(
                "the token's role does not match its key",
            ));
        }
        let now = chrono::Utc::now().timestamp();
        if claims.iat > now + LEEWAY_SECS {
            return Err(AuthError::Invalid("issued in the future".into()));
        }
        if claims.exp - claims.iat > role.max_lifetime_secs() {
            return Err(AuthError::Invalid(format!(
                "lives longer than a {role:?} token may ({} days)",
                role.max_lifetime_secs() / 86_400
            )));
        }
        Ok(claims)
    }

    /// Whichever role's token this is (to tell "wrong role" from "no valid token").
    pub fn verify_any(&self, token: &str) -> Result<Claims, AuthError> {
        let mut last = AuthError::Missing;
        for role in Role::ALL {
            match self.verify(role, token) {
                Ok(c) => return Ok(c),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Checks an AMQP `authorization` header (`Bearer <jwt>`) for a terminal acting as
    /// `merchant`/`terminal`. The caller still compares `ver` with the database.
    pub fn verify_terminal(
        &self,
        header: Option<&str>,
        merchant: &MerchantId,
        terminal: &TerminalId,
    ) -> Result<Claims, AuthError> {
        let token = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or(AuthError::Missing)?;
        let claims = self.verify(Role::Terminal, token.trim())?;
        if claims.merchant_id.as_deref() != Some(merchant.as_str())
            || claims.terminal_id.as_deref() != Some(terminal.as_str())
        {
            return Err(AuthError::Forbidden("token belongs to another terminal"));
        }
        Ok(claims)
    }
}

/// The keyed hash (HMAC-SHA256 under `Keys::sessions`) under which a sign-in link or a
/// session is stored and looked up: a copy of the table gives no usable link or cookie.
pub fn session_hash(key: &[u8], secret: &SessionSecret) -> Vec<u8> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(b"session:");
            mac.update(secret.expose().as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(&Keys::derive(&[1; 32], &[2; 32]))
    }

    fn ids() -> (MerchantId, TerminalId) {
        (
            MerchantId::parse("m1").unwrap(),
            TerminalId::parse("t1").unwrap(),
        )
    }

    #[test]
    fn terminal_token_round_trip_and_binding() {
        let keys = keys();
        let (m, t) = ids();
        let tok = keys.issue_terminal(&m, &t, 3).unwrap();
        let header = format!("Bearer {tok}");
        assert_eq!(keys.verify_terminal(Some(&header), &m, &t).unwrap().ver, 3);
        let other = TerminalId::parse("t2").unwrap();
        assert!(matches!(
            keys.verify_terminal(Some(&header), &m, &other),
            Err(AuthError::Forbidden(_))
        ));
        assert_eq!(keys.verify_terminal(None, &m, &t), Err(AuthError::Missing));
    }

    #[test]
    fn a_token_for_one_role_is_refused_for_another() {
        let keys = keys();
        let (m, t) = ids();
        let user = UserId::parse("s001").unwrap();
        let cardholder = keys.issue_cardholder(&user, 600, 1).unwrap();
        let admin = keys.issue_admin("ops", 600).unwrap();
        let terminal = keys.issue_terminal(&m, &t, 1).unwrap();
        assert!(keys.verify(Role::Admin, &cardholder).is_err());
        assert!(keys.verify(Role::Terminal, &admin).is_err());
        assert!(keys.verify(Role::Cardholder, &terminal).is_err());
        assert_eq!(keys.verify_any(&admin).unwrap().role, Role::Admin);
        // Signed with the admin key but claiming another audience or role: refused.
        let now = chrono::Utc::now().timestamp();
        let mut claims = keys.verify(Role::Admin, &admin).unwrap();
        claims.aud = Role::Cardholder.audience().into();
        assert!(keys
            .verify(Role::Admin, &keys.sign(&claims).unwrap())
            .is_err());
        claims.aud = Role::Admin.audience().into();
        claims.iss = "someone-else".into();
        assert!(keys
            .verify(Role::Admin, &keys.sign(&claims).unwrap())
            .is_err());
        claims.iss = ISSUER.into();
        claims.iat = now;
        claims.exp = now + 10 * 365 * 86_400;
        let long = keys.sign(&claims).unwrap();
        assert!(
            matches!(keys.verify(Role::Admin, &long), Err(AuthError::Invalid(e)) if e.contains("longer")),
            "a ten-year token"
        );
    }

    #[test]
    fn forged_and_expired_tokens_fail() {
        let keys = keys();
        let forger = JwtKeys::new(&Keys::derive(&[9; 32], &[2; 32]));
        let (m, t) = ids();
        let forged = forger.issue_terminal(&m, &t, 1).unwrap();
        assert!(keys.verify(Role::Terminal, &forged).is_err());
        let now = chrono::Utc::now().timestamp();
        let expired = keys
            .sign(&Claims {
                iss: ISSUER.into(),
                aud: Role::Terminal.audience().into(),
                sub: "x".into(),
                role: Role::Terminal,
                merchant_id: Some("m1".into()),
                terminal_id: Some("t1".into()),
                user_id: None,
                ver: 1,
                iat: now - 7200,
                exp: now - 3600,
            })
            .unwrap();
        assert!(keys.verify(Role::Terminal, &expired).is_err());
        // alg=none: header {"alg":"none"}, no signature.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4Iiwicm9sZSI6InRlcm1pbmFsIiwiZXhwIjo0MTAyNDQ0ODAwfQ.";
        assert!(keys.verify_any(none).is_err());
    }
}
