//! Browser sessions and the one-time sign-in links that start them: the rules, no I/O.
//!
//! A browser cannot send a bearer token with `EventSource`, so the pages (`/app`, the till's
//! `/pos` and the console's `/console`) use a session cookie instead. A session has exactly one role
//! and one subject (a cardholder, a till, an operator); it starts from a one-time sign-in link
//! that the back office hands out (`campuspay admin token --user U --link`). Both the link and
//! the session are 32 random bytes shown once; the database keeps only keyed hashes of them.

use super::Refusal;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Who a session (and the link that starts it) acts for: exactly one role each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionRole {
    Cardholder,
    Terminal,
    Admin,
}

named_enum!(SessionRole {
    Cardholder => "cardholder",
    Terminal => "terminal",
    Admin => "admin",
});

impl SessionRole {
    /// The longest a session of this role lives after sign-in (a fixed deadline, not renewed
    /// by use). A phone stays signed in like a phone app does, up to the cardholder token's own
    /// maximum; a till's browser for a shift; an operator's for a working day.
    pub fn lifetime_secs(self) -> i64 {
        match self {
            SessionRole::Cardholder => 30 * 86_400,
            SessionRole::Terminal => 12 * 3_600,
            SessionRole::Admin => 8 * 3_600,
        }
    }

    /// The page a browser signed in with this role lands on (the pages of the design: `/app`,
    /// `/pos`, `/console`).
    pub fn home(self) -> &'static str {
        match self {
            SessionRole::Cardholder => "/app",
            SessionRole::Terminal => "/pos",
            SessionRole::Admin => "/console",
        }
    }
}

/// How long a sign-in link stays redeemable unless the operator says otherwise: long enough to
/// read a message and tap the link, short enough that a forwarded or leaked one soon dies.
pub const LINK_TTL_DEFAULT_SECS: i64 = 15 * 60;
pub const LINK_TTL_MIN_SECS: i64 = 60;
/// A day at most: a link is a bearer credential until it is used.
pub const LINK_TTL_MAX_SECS: i64 = 86_400;

/// Live sessions one subject may hold; signing in once more ends the oldest. Bounds the table
/// and what a leaked link-making script could pile up.
pub const MAX_LIVE_SESSIONS: usize = 5;

/// The lifetime of a new link: the default, or the one asked for if it is within bounds.
pub fn link_ttl(requested: Option<i64>) -> Result<i64, Refusal> {
    match requested {
        None => Ok(LINK_TTL_DEFAULT_SECS),
        Some(s) if (LINK_TTL_MIN_SECS..=LINK_TTL_MAX_SECS).contains(&s) => Ok(s),
        Some(_) => Err(Refusal::InvalidLifetime {
            what: "a sign-in link",
            min_secs: LINK_TTL_MIN_SECS,
            max_secs: LINK_TTL_MAX_SECS,
        }),
    }
}

/// Bytes of randomness in a link or session secret.
const SECRET_BYTES: usize = 32;
/// Its length as unpadded base64url.
const SECRET_CHARS: usize = 43;

/// The secret of a sign-in link (in its URL) or of a session (the cookie's value): 32 random
/// bytes as unpadded base64url. Never logged; `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionSecret(String);

impl SessionSecret {
    /// A fresh secret from `rng` (the OS CSPRNG in production).
    pub fn generate(rng: &mut impl rand::RngCore) -> SessionSecret {
        let mut bytes = [0u8; SECRET_BYTES];
        rng.fill_bytes(&mut bytes);
        SessionSecret(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// A secret as it came back from a browser: exactly the shape `generate` makes, so nothing
    /// else ever reaches a database lookup (or a page).
    pub fn parse(s: &str) -> Option<SessionSecret> {
        let ok = s.len() == SECRET_CHARS
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && URL_SAFE_NO_PAD
                .decode(s)
                .is_ok_and(|b| b.len() == SECRET_BYTES);
        ok.then(|| SessionSecret(s.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionSecret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_and_nothing_else_parses() {
        let mut rng = rand::rngs::OsRng;
        let a = SessionSecret::generate(&mut rng);
        let b = SessionSecret::generate(&mut rng);
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), SECRET_CHARS);
        assert_eq!(SessionSecret::parse(a.expose()), Some(a.clone()));
        assert_eq!(format!("{a:?}"), "SessionSecret(***)");
        let long = format!("{}A", a.expose());
        let short = &a.expose()[1..];
        let padded = format!("{}=", &a.expose()[1..]);
        let html = format!("{}<", &a.expose()[1..]);
        for bad in ["", short, long.as_str(), padded.as_str(), html.as_str()] {
            assert_eq!(SessionSecret::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn link_lifetimes_default_short_and_bounded() {
        assert_eq!(link_ttl(None), Ok(900));
        assert_eq!(link_ttl(Some(60)), Ok(60));
        assert_eq!(link_ttl(Some(86_400)), Ok(86_400));
        for bad in [-1, 0, 59, 86_401, i64::MAX] {
            assert!(link_ttl(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn each_role_has_a_home_and_a_bounded_lifetime() {
        for role in SessionRole::ALL {
            assert!(role.home().starts_with('/'));
            assert!(role.lifetime_secs() > 0 && role.lifetime_secs() <= 30 * 86_400);
            assert_eq!(SessionRole::parse(role.as_str()), Some(*role));
        }
    }
}
