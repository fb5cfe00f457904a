//! One module per subcommand; each turns parsed arguments into library calls and prints results.

mod bench;
mod weights;

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Weights(cmd) => weights::run(cmd),
        Command::Bench(args) => bench::run(&args),
    }
}
