//! `warden user add|revoke|list`: operators of the control plane and their tokens.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use warden_server::{OperatorStore, Role};

use crate::config::Config;

#[derive(clap::Subcommand)]
pub enum UserCommand {
    /// Add an operator (or give them a new token with --rotate); prints the token once.
    Add {
        /// The operator's name, as the journal records their actions.
        name: String,
        /// viewer (reads), approver (also answers approvals) or admin (also quarantines).
        #[arg(long, default_value = "viewer")]
        role: String,
        /// Replace the operator's token in force.
        #[arg(long)]
        rotate: bool,
        /// How long the token works: days (`90d`), hours (`12h`) or minutes (`30m`), or
        /// `never`.
        #[arg(long, default_value = "90d")]
        expires_in: String,
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
            let Some(role) = Role::parse(&role) else {
                bail!("unknown role {role:?}: viewer, approver or admin");
            };
            let expires_ms = lifetime_ms(&expires_in)?
                .map(|ms| warden_gateway::guard::now_ms().saturating_add(ms));
            let token = store(config.as_deref())?
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
            for o in store(config.as_deref())?
                .list()
                .context("reading the operators")?
            {
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
    use super::lifetime_ms;

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
