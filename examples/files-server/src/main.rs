//! `warden-example-files --root DIR [--misbehave MODE | --http ADDR]`: an MCP server over stdio
//! (or Streamable HTTP at `http://ADDR/mcp`) whose tools are confined to DIR. See the library
//! documentation for what it offers.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use warden_example_files::http::MCP_PATH;
use warden_example_files::{
    Ending, HttpConfig, Misbehaviour, Root, ServerConfig, serve, serve_http,
};

const USAGE: &str =
    "usage: warden-example-files --root DIR [--misbehave MODE] [--tools-page-size N] [--http ADDR]";

/// What the command line asks for.
struct Invocation {
    config: ServerConfig,
    /// `--http`: serve Streamable HTTP on this address instead of stdio.
    http: Option<String>,
}

fn main() -> ExitCode {
    let invocation = match parse_args(std::env::args().skip(1)) {
        Ok(Some(invocation)) => invocation,
        Ok(None) => {
            println!("{USAGE}");
            let modes: Vec<_> = Misbehaviour::ALL.iter().map(|m| m.name()).collect();
            println!("misbehave modes (stdio only): {}", modes.join(", "));
            println!(
                "--http ADDR (e.g. 127.0.0.1:0) serves http://ADDR{MCP_PATH} and prints the bound address"
            );
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("warden-example-files: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(addr) = invocation.http {
        return run_http(invocation.config, &addr);
    }
    match serve(invocation.config, io::stdin().lock(), io::stdout()) {
        Ok(Ending::InputClosed) => ExitCode::SUCCESS,
        Ok(Ending::CrashRequested) => ExitCode::from(3),
        Err(e) => {
            eprintln!("warden-example-files: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Serves HTTP until SIGINT or SIGTERM.
fn run_http(config: ServerConfig, addr: &str) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("warden-example-files: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("warden-example-files: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        match listener.local_addr() {
            // Scripts and tests read this line to learn the port when ADDR asked for any.
            Ok(bound) => println!("listening on http://{bound}{MCP_PATH}"),
            Err(e) => {
                eprintln!("warden-example-files: cannot read the bound address: {e}");
                return ExitCode::FAILURE;
            }
        }
        let config = HttpConfig {
            root: config.root,
            tools_page_size: config.tools_page_size,
        };
        match serve_http(config, listener, stopped()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("warden-example-files: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Completes on SIGINT or SIGTERM (or never, if neither can be watched).
async fn stopped() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

/// `Ok(None)` means help was asked for.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Invocation>, String> {
    let mut root = None;
    let mut misbehave = None;
    let mut tools_page_size = None;
    let mut http = None;
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
            "--http" => {
                http = Some(
                    args.next()
                        .ok_or("--http needs an address, e.g. 127.0.0.1:0")?,
                )
            }
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if http.is_some() && misbehave.is_some() {
        return Err("--misbehave works over stdio only, not with --http".into());
    }
    let root = root.ok_or("--root is required")?;
    let root = Root::open(&root).map_err(|e| e.to_string())?;
    Ok(Some(Invocation {
        config: ServerConfig {
            root,
            misbehave,
            tools_page_size,
        },
        http,
    }))
}
