//! `campuspay admin card`: issuing cards, top-ups, freezing (挂失), limits, PIN and balance.

use super::{parse_amount, print, CliError};
use campuspay::domain::{Amount, Identity, UserId};
use campuspay::ops::{self, Operator, Ops};
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum CardCommand {
    /// Report a card lost (挂失): payments are declined `card_frozen`; unused codes are revoked.
    Freeze {
        /// The cardholder's user id (e.g. a student number).
        #[arg(long)]
        user: UserId,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Lift a freeze (解挂). The phone needs a new batch of payment codes.
    Unfreeze {
        /// The cardholder's user id (e.g. a student number).
        #[arg(long)]
        user: UserId,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show or override a card's limits (defaults come from its identity).
    Limits {
        /// The cardholder's user id (e.g. a student number).
        #[arg(long)]
        user: UserId,
        /// Most one payment may be, in yuan.
        #[arg(long, value_parser = parse_amount)]
        per_txn: Option<Amount>,
        /// Most the card may pay in one campus day, in yuan.
        #[arg(long, value_parser = parse_amount)]
        daily: Option<Amount>,
        /// Above this a forward-scan payment needs the PIN and a reverse scan is declined.
        #[arg(long, value_parser = parse_amount)]
        password_free: Option<Amount>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Lift a PIN lock (after five wrong PINs in a row) and clear the count of wrong PINs.
    PinUnlock {
        /// The cardholder's user id (e.g. a student number).
        #[arg(long)]
        user: UserId,
    },
    /// Set the card's 6-digit payment PIN (stored only as a keyed hash); lifts a PIN lock.
    Pin {
        /// The cardholder's user id (e.g. a student number).
        #[arg(long)]
        user: UserId,
        /// The PIN (six digits).
        #[arg(long, env = "CAMPUSPAY_PIN", hide_env_values = true)]
        pin: String,
    },
    /// Issue a card to a cardholder (limits from the identity's defaults).
    Add {
        /// The cardholder's user id (e.g. a student number).
        #[arg(long)]
        user: UserId,
        /// The cardholder's name as printed on the card.
        #[arg(long)]
        name: String,
        /// The cardholder's identity, which fee rules and default limits go by.
        #[arg(long, value_enum)]
        identity: super::IdentityArg,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Credit a card (recorded in the ledger as a top-up).
    Topup {
        /// The cardholder's user id (e.g. a student number).
        #[arg(long)]
        user: UserId,
        /// The amount in yuan (e.g. `12.50`).
        #[arg(long, value_parser = parse_amount)]
        amount: Amount,
        /// Idempotency key: the same id never credits twice (default: a fresh one).
        #[arg(long)]
        request_id: Option<uuid::Uuid>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A card: balance, state, limits, PIN status.
    Show {
        /// The cardholder's user id (e.g. a student number).
        #[arg(long)]
        user: UserId,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub(super) async fn run(
    command: CardCommand,
    ops: &Ops,
    me: &Operator,
) -> Result<ExitCode, CliError> {
    match command {
        CardCommand::Add {
            user,
            name,
            identity,
            json,
        } => {
            let identity: Identity = identity.into();
            let card_id = ops::cards::add_card(ops, me, &user, &name, identity)
                .await?
                .0;
            print(
                json,
                &serde_json::json!({"user_id": user, "card_id": card_id, "identity": identity}),
                |_| format!("card {card_id} issued to {user} ({identity})"),
            );
        }
        CardCommand::Topup {
            user,
            amount,
            request_id,
            json,
        } => {
            let entry = request_id.unwrap_or_else(uuid::Uuid::new_v4);
            let balance = ops::money::topup(ops, me, &user, amount, entry, "top-up").await?;
            print(
                json,
                &serde_json::json!({"user_id": user, "amount": amount, "balance": balance, "entry_id": entry}),
                |_| format!("topped up {amount} to {user}; balance {balance}"),
            );
        }
        CardCommand::Freeze { user, json } => {
            let out = ops::cards::freeze(ops, me, &user).await?;
            print(json, &out, |o| {
                format!(
                    "card of {} frozen; {} unused codes revoked",
                    o.user_id, o.codes_revoked
                )
            });
        }
        CardCommand::Unfreeze { user, json } => {
            let out = ops::cards::unfreeze(ops, me, &user).await?;
            print(json, &out, |o| {
                format!("card of {} active again", o.user_id)
            });
        }
        CardCommand::Limits {
            user,
            per_txn,
            daily,
            password_free,
            json,
        } => {
            let change = ops::cards::LimitChange {
                per_txn,
                daily,
                password_free,
            };
            let l = ops::cards::limits(ops, me, &user, change).await?;
            print(json, &l, |l| {
                format!(
                    "{user}: per transaction {:.2}, daily {:.2}, password-free up to {:.2}{}",
                    l.per_txn_limit,
                    l.daily_limit,
                    l.password_free_limit,
                    if l.has_pin { " (PIN set)" } else { " (no PIN)" }
                )
            });
        }
        CardCommand::PinUnlock { user } => {
            ops::cards::unlock_pin(ops, me, &user).await?;
            outln!("PIN of {user} unlocked");
        }
        CardCommand::Pin { user, pin } => {
            ops::cards::set_pin(ops, me, &user, &pin).await?;
            outln!("PIN set for {user}");
        }
        CardCommand::Show { user, json } => {
            let view = ops::cards::show(ops, &user).await?;
            print(json, &view, |v| {
                let mut s = format!(
                    "{} ({}, {}) card {} [{}] balance {}",
                    v.user_id, v.name, v.identity, v.card_id, v.status, v.balance
                );
                for t in &v.recent {
                    s.push_str(&format!(
                        "\n  {} {} {:<9} {} fee {} at {}/{}{}",
                        t.created_at.format("%Y-%m-%d %H:%M:%S"),
                        t.mode,
                        t.state,
                        t.amount
                            .map(|a| a.to_string())
                            .unwrap_or_else(|| "-".into()),
                        t.fee.map(|f| f.to_string()).unwrap_or_else(|| "-".into()),
                        t.merchant_id,
                        t.terminal_id,
                        t.reason
                            .as_ref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    ));
                }
                s
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
