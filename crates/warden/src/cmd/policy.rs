//! `warden policy check` and `warden policy test`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use warden_policy::{PolicySet, load_cases, run_cases};

use crate::config::Config;

#[derive(clap::Subcommand)]
pub enum PolicyCommand {
    /// Validate every policy against Warden's schema; errors point at file:line:column.
    Check(Source),
    /// Run request → expected-decision cases (a TOML file of [[case]] tables).
    Test {
        /// The cases file.
        cases: PathBuf,
        #[command(flatten)]
        source: Source,
    },
}

#[derive(clap::Args)]
pub struct Source {
    /// The policy folder (default: the one named in the configuration).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The configuration file (default: ./warden.toml if present).
    #[arg(long)]
    config: Option<PathBuf>,
}

impl Source {
    fn load(&self) -> Result<(PathBuf, PolicySet)> {
        let dir = match &self.dir {
            Some(d) => d.clone(),
            None => Config::load(self.config.as_deref())?.policy_dir(),
        };
        let set = PolicySet::load_dir(&dir)
            .with_context(|| format!("policies in {} are not valid", dir.display()))?;
        Ok((dir, set))
    }
}

pub fn run(command: PolicyCommand) -> Result<ExitCode> {
    match command {
        PolicyCommand::Check(source) => {
            let (dir, set) = source.load()?;
            say!(
                "{}: {} policies, all valid against the schema",
                dir.display(),
                set.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Test { cases, source } => {
            let (_, set) = source.load()?;
            let cases = load_cases(&cases)?;
            let results = run_cases(&set, &cases);
            let mut failed = 0;
            for r in &results {
                if r.passed {
                    say!("PASS  {}", r.name);
                } else {
                    failed += 1;
                    say!(
                        "FAIL  {}: expected {}, got {} ({}; policies: {})",
                        r.name,
                        r.expected,
                        r.got.effect,
                        r.got.reason,
                        if r.got.policies.is_empty() {
                            "none".to_owned()
                        } else {
                            r.got.policies.join(", ")
                        }
                    );
                }
            }
            say!(
                "{} cases: {} passed, {failed} failed",
                results.len(),
                results.len() - failed
            );
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
