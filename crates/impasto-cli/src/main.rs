//! The `impasto` command: a thin layer over the `impasto` library. Parsing lives in `cli`, each
//! subcommand in `commands/`. Exit status: 0 done, 2 usage error (clap), 1 any other error, 130
//! interrupted by Ctrl-C and 143 by SIGTERM (after writing the best image so far).

mod cli;
mod commands;
mod device;
mod plot;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    quiet_vulkan_device_selection();
    let cli = cli::Cli::parse();
    init_logging(cli.verbose);
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => match err.downcast_ref::<commands::Interrupted>() {
            Some(interrupted) => {
                eprintln!("{err:#}");
                ExitCode::from(interrupted.exit_code())
            }
            None => {
                eprintln!("error: {err:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Diagnostics go to stderr; `IMPASTO_LOG` (tracing's env-filter syntax) overrides `-v`.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("IMPASTO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .without_time()
        .init();
}

/// Turns off Mesa's Vulkan device-selection layer for this process, before any thread exists.
///
/// impasto picks its adapter itself (hardware first, see `device.rs`), so the layer's reordering
/// is of no use, and on a machine without a display (a server, CI, a Slurm node) the layer tries
/// to reach a Wayland compositor at instance creation and prints
/// `error: XDG_RUNTIME_DIR is invalid or not set` on stderr for every probe: noise in `--quiet`
/// runs and in the logs of batch jobs. `NODEVICE_SELECT` is the layer's own off switch; a value
/// the user set is kept.
fn quiet_vulkan_device_selection() {
    if cfg!(feature = "gpu") && std::env::var_os("NODEVICE_SELECT").is_none() {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}
