//! `warden-example-files --root DIR [--misbehave MODE]`: an MCP server over stdio whose tools
//! are confined to DIR. See the library documentation for what it offers.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use warden_example_files::{Ending, Misbehaviour, Root, ServerConfig, serve};

const USAGE: &str =
    "usage: warden-example-files --root DIR [--misbehave MODE] [--tools-page-size N]";

fn main() -> ExitCode {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(Some(config)) => config,
        Ok(None) => {
            println!("{USAGE}");
            let modes: Vec<_> = Misbehaviour::ALL.iter().map(|m| m.name()).collect();
            println!("misbehave modes: {}", modes.join(", "));
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("warden-example-files: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match serve(config, io::stdin().lock(), io::stdout()) {
        Ok(Ending::InputClosed) => ExitCode::SUCCESS,
        Ok(Ending::CrashRequested) => ExitCode::from(3),
        Err(e) => {
            eprintln!("warden-example-files: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `Ok(None)` means help was asked for.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<ServerConfig>, String> {
    let mut root = None;
    let mut misbehave = None;
    let mut tools_page_size = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--root" => root = Some(PathBuf::from(args.next().ok_or("--root needs a value")?)),
            "--misbehave" => {
                let mode = args.next().ok_or("--misbehave needs a value")?;
                misbehave = Some(mode.parse::<Misbehaviour>().map_err(|e| e.to_string())?);
            }
            "--tools-page-size" => {
                let n = args.next().ok_or("--tools-page-size needs a value")?;
                tools_page_size = Some(
                    n.parse::<usize>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or("--tools-page-size needs a positive number")?,
                );
            }
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let root = root.ok_or("--root is required")?;
    let root = Root::open(&root).map_err(|e| e.to_string())?;
    Ok(Some(ServerConfig {
        root,
        misbehave,
        tools_page_size,
    }))
}
