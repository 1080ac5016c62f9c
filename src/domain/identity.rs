//! Cardholder identity: decides the 搭伙费 (meal surcharge) rate.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Identity {
    Student,
    Staff,
    /// Short-term visitors, contractors: usually pay the surcharge.
    Temporary,
    /// Off-campus people: usually pay the surcharge.
    External,
}

impl Identity {
    pub const ALL: [Identity; 4] = [
        Identity::Student,
        Identity::Staff,
        Identity::Temporary,
        Identity::External,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Identity::Student => "student",
            Identity::Staff => "staff",
            Identity::Temporary => "temporary",
            Identity::External => "external",
        }
    }

    pub fn parse(s: &str) -> Option<Identity> {
        Identity::ALL.into_iter().find(|i| i.as_str() == s)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Identity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Identity::parse(s).ok_or_else(|| {
            format!("unknown identity {s:?}: expected student, staff, temporary or external")
        })
    }
}
