//! The operators' trail: who changed what in the back office, and when.

use super::schema::operator_actions;
use super::DbError;
use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use serde::Serialize;

pub fn record(
    conn: &mut PgConnection,
    operator: &str,
    action: &str,
    subject: &str,
    detail: &serde_json::Value,
) -> Result<(), DbError> {
    diesel::insert_into(operator_actions::table)
        .values((
            operator_actions::operator.eq(operator),
            operator_actions::action.eq(action),
            operator_actions::subject.eq(subject),
            operator_actions::detail.eq(detail.to_string()),
        ))
        .execute(conn)?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, Queryable)]
pub struct Action {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub operator: String,
    pub action: String,
    pub subject: String,
    pub detail: String,
}

/// The newest actions first, at most `limit`, optionally about one subject.
pub fn recent(
    conn: &mut PgConnection,
    subject: Option<&str>,
    limit: i64,
) -> Result<Vec<Action>, DbError> {
    let mut q = operator_actions::table
        .order(operator_actions::id.desc())
        .limit(limit.clamp(1, 1000))
        .into_boxed();
    if let Some(s) = subject {
        q = q.filter(operator_actions::subject.eq(s));
    }
    Ok(q.select((
        operator_actions::id,
        operator_actions::at,
        operator_actions::operator,
        operator_actions::action,
        operator_actions::subject,
        operator_actions::detail,
    ))
    .load(conn)?)
}
