//! `warden doctor`: which containment layers this kernel and these privileges support, and
//! which the configuration requires.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use warden_contain::cgroup::CGROUP_ROOT;

use crate::config::Config;

#[derive(clap::Args)]
pub struct Args {
    /// The configuration file (default: ./warden.toml if present).
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let config = Config::load(args.config.as_deref())?;
    let required = config.sandbox.required()?;
    let report = warden_contain::doctor::probe(Path::new(CGROUP_ROOT));
    say!(
        "running as {}; the agent runs as host uid {}",
        if report.root {
            "root"
        } else {
            "an unprivileged user"
        },
        if report.root {
            config.sandbox.user.to_string()
        } else {
            "of this user".to_owned()
        }
    );
    for f in &report.findings {
        say!(
            "{:<4} {:<15} {}{}",
            if f.available { "ok" } else { "MISSING" },
            f.layer.as_str(),
            f.detail,
            if !f.available && required.contains(&f.layer) {
                "  (required: `warden run` refuses to start)"
            } else {
                ""
            }
        );
    }
    let missing = report.missing(&required);
    Ok(if missing.is_empty() {
        say!("every required layer is available");
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
