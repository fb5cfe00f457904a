//! One module per subcommand; each turns parsed arguments into library calls and prints results.

mod batch;
mod bench;
mod bench_instant;
mod loss_log;
mod optimize;
mod options;
mod outputs;
mod progress;
mod reconstruct;
mod run_settings;
mod samples;
mod serve;
#[cfg(test)]
mod studio_parity;
mod stylize;
mod transfer;
mod video;
mod weights;

pub use optimize::Interrupted;

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Weights(cmd) => weights::run(cmd),
        Command::Bench(args) => bench::run(&args),
        Command::Transfer(args) => transfer::run(&args),
        Command::Stylize(args) => stylize::run(&args),
        Command::Video(args) => video::run(&args),
        Command::Reconstruct(cmd) => reconstruct::run(&cmd),
        Command::Samples(cmd) => samples::run(&cmd),
        Command::Serve(args) => serve::run(&args),
    }
}
