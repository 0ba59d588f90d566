//! `warden user add|revoke|list`: operators of the control plane and their tokens.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use warden_server::{OperatorRecord, OperatorStore, Role};

use crate::config::Config;

#[derive(clap::Subcommand)]
pub enum UserCommand {
    /// Add an operator (or give them a new token with --rotate); prints the token once.
    Add {
        /// The operator's name, as the journal records their actions.
        name: String,
        /// viewer (reads), approver (also answers approvals) or admin (also quarantines).
        /// Default: viewer; with --rotate, the role the operator has.
        #[arg(long)]
        role: Option<String>,
        /// Replace the operator's token in force. The new token keeps the role and the
        /// lifetime of the one it replaces unless --role or --expires-in say otherwise.
        #[arg(long)]
        rotate: bool,
        /// How long the token works: days (`90d`), hours (`12h`) or minutes (`30m`), or
        /// `never`. Default: 90d; with --rotate, the lifetime of the token it replaces.
        #[arg(long)]
        expires_in: Option<String>,
        /// The configuration file (default: ./warden.toml if present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Revoke an operator's token.
    Revoke {
        /// The operator.
        name: String,
        /// The configuration file (default: ./warden.toml if present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// List operators and their roles.
    List {
        /// The configuration file (default: ./warden.toml if present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// `90d`, `12h`, `30m` in milliseconds; `never`: `None`.
fn lifetime_ms(text: &str) -> Result<Option<i64>> {
    if text == "never" {
        return Ok(None);
    }
    let unit_ms: i64 = match text.chars().last() {
        Some('d') => 86_400_000,
        Some('h') => 3_600_000,
        Some('m') => 60_000,
        _ => bail!("--expires-in is a number of days, hours or minutes (90d, 12h, 30m) or never"),
    };
    let count: i64 = text[..text.len() - 1]
        .parse()
        .ok()
        .filter(|n| *n > 0 && *n <= 3650)
        .with_context(|| format!("--expires-in {text:?}: a whole number from 1 to 3650 first"))?;
    Ok(Some(count * unit_ms))
}

/// The lifetime of a token when none is asked for.
const DEFAULT_LIFETIME_MS: i64 = 90 * 86_400_000;

/// The role and expiry of a new token: as asked, else, for a token that replaces another,
/// the replaced token's role and lifetime (a rotation must neither demote an admin nor turn a
/// 12-hour token into a 90-day one), else viewer for 90 days.
fn terms(
    role: Option<&str>,
    expires_in: Option<&str>,
    replaced: Option<&OperatorRecord>,
    now_ms: i64,
) -> Result<(Role, Option<i64>)> {
    let role = match (role, replaced) {
        (Some(text), _) => Role::parse(text)
            .with_context(|| format!("unknown role {text:?}: viewer, approver or admin"))?,
        (None, Some(old)) => old.role,
        (None, None) => Role::Viewer,
    };
    let lifetime_ms = match (expires_in, replaced) {
        (Some(text), _) => lifetime_ms(text)?,
        (None, Some(old)) => match (old.created_ms, old.expires_ms) {
            (_, None) => None,
            // A hand-edited record whose expiry is not after its creation: the default.
            (Some(created), Some(expires)) if expires > created => {
                Some(expires.saturating_sub(created).max(60_000))
            }
            (_, Some(_)) => Some(DEFAULT_LIFETIME_MS),
        },
        (None, None) => Some(DEFAULT_LIFETIME_MS),
    };
    Ok((role, lifetime_ms.map(|ms| now_ms.saturating_add(ms))))
}

fn store(config: Option<&std::path::Path>) -> Result<OperatorStore> {
    let config = Config::load(config)?;
    Ok(OperatorStore::new(
        config.resolve(&config.control.operators_file),
    ))
}

pub fn run(command: UserCommand) -> Result<ExitCode> {
    match command {
        UserCommand::Add {
            name,
            role,
            rotate,
            expires_in,
            config,
        } => {
            let store = store(config.as_deref())?;
            // Only a token in force is replaced: a revoked operator comes back as a new one
            // (viewer unless told), not with the role they lost.
            let replaced = if rotate {
                store
                    .list()
                    .context("reading the operators")?
                    .into_iter()
                    .find(|o| o.name == name && o.revoked_ms.is_none())
            } else {
                None
            };
            let (role, expires_ms) = terms(
                role.as_deref(),
                expires_in.as_deref(),
                replaced.as_ref(),
                warden_gateway::guard::now_ms(),
            )?;
            let token = store
                .add_until(&name, role, rotate, expires_ms)
                .context("adding the operator")?;
            say!(
                "operator {name} ({}, {}) — their token, shown only now:",
                role.as_str(),
                match expires_ms {
                    Some(at) => format!("expires {}", super::agents::local_time(at)),
                    None => "does not expire".to_owned(),
                }
            );
            say!("{token}");
        }
        UserCommand::Revoke { name, config } => {
            let now = warden_gateway::guard::now_ms();
            if !store(config.as_deref())?
                .revoke(&name, now)
                .context("revoking the operator")?
            {
                bail!("operator {name} has no token in force");
            }
            say!("operator {name}: token revoked");
        }
        UserCommand::List { config } => {
            let operators = store(config.as_deref())?
                .list()
                .context("reading the operators")?;
            if operators.is_empty() {
                eprintln!(
                    "warden: no operators yet; add one with `warden user add NAME --role admin`"
                );
                return Ok(ExitCode::SUCCESS);
            }
            say!("{:<24} {:<9} STATE", "NAME", "ROLE");
            for o in operators {
                let now = warden_gateway::guard::now_ms();
                let state = match (o.revoked_ms, o.expires_ms) {
                    (Some(_), _) => "revoked".to_owned(),
                    (None, Some(at)) if at <= now => "expired".to_owned(),
                    (None, Some(at)) => {
                        format!("active until {}", super::agents::local_time(at))
                    }
                    (None, None) => "active".to_owned(),
                };
                say!("{:<24} {:<9} {state}", o.name, o.role.as_str());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::{OperatorRecord, Role, lifetime_ms, terms};

    fn record(role: Role, created_ms: Option<i64>, expires_ms: Option<i64>) -> OperatorRecord {
        OperatorRecord {
            name: "ana".into(),
            role,
            token_sha256: String::new(),
            created_ms,
            revoked_ms: None,
            expires_ms,
        }
    }

    #[test]
    fn a_rotated_token_keeps_the_role_and_lifetime_it_replaces() {
        let hour = 3_600_000;
        let admin = record(Role::Admin, Some(0), Some(12 * hour));
        assert_eq!(
            terms(None, None, Some(&admin), 100 * hour).unwrap(),
            (Role::Admin, Some(112 * hour))
        );
        let forever = record(Role::Approver, Some(0), None);
        assert_eq!(
            terms(None, None, Some(&forever), 5).unwrap(),
            (Role::Approver, None)
        );
        // What is asked for wins over what the old token had.
        assert_eq!(
            terms(Some("viewer"), Some("30m"), Some(&admin), 0).unwrap(),
            (Role::Viewer, Some(30 * 60_000))
        );
        // A new operator: viewer for 90 days.
        assert_eq!(
            terms(None, None, None, 0).unwrap(),
            (Role::Viewer, Some(90 * 86_400_000))
        );
        assert!(terms(Some("root"), None, None, 0).is_err());
        // An expiry not after the creation (a hand-edited file): the default lifetime.
        let odd = record(Role::Admin, Some(i64::MAX), Some(i64::MIN));
        assert_eq!(
            terms(None, None, Some(&odd), 0).unwrap(),
            (Role::Admin, Some(90 * 86_400_000))
        );
    }

    #[test]
    fn lifetimes_are_days_hours_minutes_or_never() {
        assert_eq!(lifetime_ms("90d").unwrap(), Some(90 * 86_400_000));
        assert_eq!(lifetime_ms("12h").unwrap(), Some(12 * 3_600_000));
        assert_eq!(lifetime_ms("30m").unwrap(), Some(30 * 60_000));
        assert_eq!(lifetime_ms("never").unwrap(), None);
        for bad in [
            "", "d", "0d", "-1d", "90", "90s", "1.5d", "99999d", "\u{e9}",
        ] {
            assert!(lifetime_ms(bad).is_err(), "{bad:?}");
        }
    }
}
