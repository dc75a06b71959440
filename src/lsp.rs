//! `basis lsp`: runs the language server over stdio (or TCP for debugging). Only
//! the protocol goes to stdout; logs go to stderr or `--log-file`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use crate::store::Store;

#[derive(Args)]
pub struct LspArgs {
    /// Serve over stdio (the default; accepted because editors pass it).
    #[arg(long)]
    stdio: bool,
    /// Listen on this address instead of stdio, e.g. 127.0.0.1:9257 (for debugging).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Write logs to this file instead of stderr.
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// Enable the basis/debug/panic and basis/debug/sleep requests (for tests).
    #[arg(long, hide = true)]
    test_hooks: bool,
}

/// Gives the model's compute pool one core fewer than the machine has (unless
/// `RAYON_NUM_THREADS` says otherwise), so that a running generation leaves a core
/// to the requests an editor sends while typing. On 2 cores generation gets one
/// thread (decode 13.3 against 22.4 tok/s in one run here) and `documentSymbol`
/// during a generation drops from p99 16.7 ms to 10.7 ms (BENCHMARKS.md).
/// Call before any thread exists.
pub fn reserve_a_core_for_the_editor() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::env::set_var("RAYON_NUM_THREADS", n.saturating_sub(1).max(1).to_string());
    }
}

/// Logs to stderr or a file; the level comes from `BASIS_LOG` (default `info`).
pub fn init_logging(file: Option<&PathBuf>) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BASIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    match file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening the log file {}", path.display()))?;
            builder.with_writer(Arc::new(f)).init();
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
    Ok(())
}

pub fn run_lsp(args: LspArgs) -> Result<()> {
    let _ = args.stdio;
    // Before any thread starts: what each thread frees stays usable by the others.
    basis_model::alloc::limit_arenas(2);
    init_logging(args.log_file.as_ref())?;
    let store = Store::open()?;
    let options = basis_server::ServerOptions {
        basis_home: store.root().to_path_buf(),
        resolver: Arc::new(|spec: Option<&str>| crate::generate::resolve(spec)),
        test_hooks: args.test_hooks,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match args.listen {
            Some(addr) => basis_server::serve_tcp(addr, options)
                .await
                .with_context(|| format!("listening on {addr}")),
            None => {
                basis_server::serve_stdio(options).await;
                Ok(())
            }
        }
    })?;
    // The blocking pool may still hold a generation that was cancelled; do not
    // wait for it at exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    Ok(())
}
