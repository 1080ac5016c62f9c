//! `campuspay admin token`: a cardholder's token for the phone API or a one-time sign-in link
//! for the wallet page, a one-time sign-in link for a till's page (`/pos`), or an operator's
//! token for `/admin/v1` or a sign-in link for the console. A terminal's token itself comes
//! from `admin terminal add` and `rotate` (with its broker login), so `--terminal` makes links
//! only.

use super::{print, CliError};
use campuspay::domain::{MerchantId, TerminalId, UserId};
use campuspay::ops::{self, Operator, Ops};
use clap::Args;
use std::process::ExitCode;

/// A token's validity unless `--ttl` says otherwise.
const TOKEN_TTL_SECS: i64 = 86_400;

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The cardholder's user id (e.g. a student number).
    #[arg(
        long,
        required_unless_present_any = ["admin", "terminal"],
        conflicts_with_all = ["admin", "terminal"]
    )]
    user: Option<UserId>,
    /// The operator name an admin token or console link is issued to (its changes are
    /// recorded under it).
    #[arg(long, conflicts_with = "terminal")]
    admin: Option<String>,
    /// MERCHANT/TERMINAL: with --link, a one-time sign-in link for the till's page (/pos).
    #[arg(long, value_parser = parse_terminal, requires = "link")]
    terminal: Option<(MerchantId, TerminalId)>,
    /// With --user: revoke every token the cardholder holds (a lost phone), their browser
    /// sessions and unused sign-in links, instead of issuing one.
    #[arg(long, requires = "user", conflicts_with = "link")]
    revoke: bool,
    /// Print a one-time sign-in link (CAMPUSPAY_PUBLIC_URL/signin/…) instead of a token: with
    /// --user for the wallet page, with --terminal for the till's page (/pos), with --admin
    /// for the operator console. Valid for 15 minutes unless --ttl says otherwise (60 s to a
    /// day).
    #[arg(long)]
    link: bool,
    /// Validity in seconds (a token: 1 day by default; a link: 15 minutes).
    #[arg(long)]
    ttl: Option<i64>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(args: TokenArgs, ops: &Ops, me: &Operator) -> Result<ExitCode, CliError> {
    let TokenArgs {
        user,
        admin: operator,
        terminal,
        revoke,
        link,
        ttl,
        json,
    } = args;
    if let (true, Some(user)) = (revoke, &user) {
        let version = ops::tokens::revoke_cardholder(ops, me, user).await?;
        print(
            json,
            &serde_json::json!({"user_id": user, "token_version": version}),
            |_| format!("every earlier token, session and sign-in link of {user} is revoked"),
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Some((m, t)) = &terminal {
        let made = ops::tokens::terminal_link(ops, me, m, t, ttl).await?;
        print(json, &made, |l| l.url.clone());
        return Ok(ExitCode::SUCCESS);
    }
    if link {
        let made = match (&user, &operator) {
            (Some(user), _) => ops::tokens::cardholder_link(ops, me, user, ttl).await?,
            (None, Some(name)) => ops::tokens::operator_link(ops, me, name, ttl).await?,
            // clap requires one of the two: a usage error.
            (None, None) => return Ok(ExitCode::from(2)),
        };
        print(json, &made, |l| l.url.clone());
        return Ok(ExitCode::SUCCESS);
    }
    let ttl = ttl.unwrap_or(TOKEN_TTL_SECS);
    let (token, who) = match (user, operator) {
        (Some(user), _) => (
            ops::tokens::cardholder(ops, me, &user, ttl).await?,
            serde_json::json!({"user_id": user}),
        ),
        (None, Some(name)) => (
            ops::tokens::operator(ops, me, &name, ttl).await?,
            serde_json::json!({"admin": name}),
        ),
        // clap requires one of the two: a usage error.
        (None, None) => return Ok(ExitCode::from(2)),
    };
    print(
        json,
        &serde_json::json!({"for": who, "token": token}),
        |_| token.clone(),
    );
    Ok(ExitCode::SUCCESS)
}

/// `MERCHANT/TERMINAL`, each a valid id.
fn parse_terminal(s: &str) -> Result<(MerchantId, TerminalId), String> {
    let (m, t) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: expected MERCHANT/TERMINAL"))?;
    Ok((
        MerchantId::parse(m).map_err(|e| e.to_string())?,
        TerminalId::parse(t).map_err(|e| e.to_string())?,
    ))
}
