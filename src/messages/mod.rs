//! Wire types. External messages are JSON (schemas in `schemas/`); internal stage messages are
//! bincode with a leading version byte. Each converts into domain types at the edge.

pub mod external;
pub mod internal;

/// One RFC 3339 rendering everywhere (microseconds, `Z`), so a re-sent result is byte-identical
/// to the first one: PostgreSQL keeps microseconds, so nothing finer may leak into a result.
pub fn format_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Now, truncated to what PostgreSQL stores.
pub fn now_micros() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}
