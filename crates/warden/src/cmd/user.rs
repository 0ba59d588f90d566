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
            config,
        } => {
            let Some(role) = Role::parse(&role) else {
                bail!("unknown role {role:?}: viewer, approver or admin");
            };
            let token = store(config.as_deref())?
                .add(&name, role, rotate)
                .context("adding the operator")?;
            say!(
                "operator {name} ({}) — their token, shown only now:",
                role.as_str()
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
                say!(
                    "{:<24} {:<9} {}",
                    o.name,
                    o.role.as_str(),
                    if o.revoked_ms.is_some() {
                        "revoked"
                    } else {
                        "active"
                    }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
