//! `warden init`: a starter configuration and policy folder that pass `warden policy check`
//! and `warden policy test` as written.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

const FILES: &[(&str, &str)] = &[
    ("warden.toml", include_str!("../../templates/warden.toml")),
    (
        "policies/starter.cedar",
        include_str!("../../templates/starter.cedar"),
    ),
    (
        "policies/arguments.cedarschema",
        include_str!("../../templates/arguments.cedarschema"),
    ),
    (
        "policies/tests.toml",
        include_str!("../../templates/tests.toml"),
    ),
];

pub fn run(dir: &Path, force: bool) -> Result<ExitCode> {
    if !force {
        let existing: Vec<_> = FILES
            .iter()
            .map(|(name, _)| dir.join(name))
            .filter(|p| p.exists())
            .collect();
        if !existing.is_empty() {
            bail!(
                "{} already exists; nothing was written (use --force to overwrite)",
                existing[0].display()
            );
        }
    }
    std::fs::create_dir_all(dir.join("policies"))
        .with_context(|| format!("creating {}", dir.join("policies").display()))?;
    for (name, text) in FILES {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        say!("wrote {}", path.display());
    }
    say!(
        "next: edit policies/starter.cedar, then `warden policy check` and \
         `warden policy test policies/tests.toml`"
    );
    Ok(ExitCode::SUCCESS)
}
