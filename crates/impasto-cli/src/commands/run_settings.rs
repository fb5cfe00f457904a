//! The run flags resolved, once, into what the library and the rest of the binary use (as
//! ripgrep resolves its flags into its settings): after [`RunSettings::from_args`] nothing sees
//! the raw parse.

use std::path::PathBuf;

use impasto::image_io::BitDepth;
use impasto::transfer::{OptimizerSettings, Schedule, TransferSettings};

use super::options;
use crate::cli::RunArgs;

/// Everything an optimisation run needs besides its images and losses.
#[derive(Clone, Debug)]
pub struct RunSettings {
    /// The settings every run shares (size, network, pooling, algorithm, optimiser, seed,
    /// tiling); each command adds its layers, loss weights and start.
    pub base: TransferSettings,
    /// The sizes and iterations of a coarse-to-fine run (one size by default).
    pub schedule: Schedule,
    /// `--weights`; `None`: the installed weights for the network.
    pub weights: Option<PathBuf>,
    /// Worker threads; `None`: one per core.
    pub threads: Option<u32>,
    /// Where to write the losses of every iteration as CSV.
    pub loss_log: Option<PathBuf>,
    /// Where to draw the loss curves.
    pub plot: Option<PathBuf>,
    /// Also write the image every this many iterations.
    pub save_every: Option<usize>,
    /// Bits per channel of the images written.
    pub bit_depth: BitDepth,
    /// No progress bar or summary.
    pub quiet: bool,
    /// `--device` resolved, in words (its backend is `base.backend`).
    pub device: String,
}

impl RunSettings {
    /// Resolves the flags; fails for a combination the library refuses (e.g. the schedule's).
    pub fn from_args(run: &RunArgs) -> anyhow::Result<RunSettings> {
        let device = crate::device::resolve(run.device)?;
        Ok(RunSettings {
            base: TransferSettings {
                size: run.size as usize,
                architecture: options::architecture(run.model),
                pooling: options::pooling(run.pooling),
                algorithm: options::algorithm(run.algorithm),
                optimizer: options::optimizer(run),
                seed: run.seed,
                tiles: options::tile_size(run.tile_size),
                backend: device.backend,
                ..TransferSettings::default()
            },
            schedule: options::schedule(run)?,
            weights: run.weights.clone(),
            threads: run.threads,
            loss_log: run.loss_log.clone(),
            plot: run.plot.clone(),
            save_every: run.save_every.map(|n| n as usize),
            bit_depth: options::bit_depth(run.bit_depth),
            quiet: run.quiet,
            device: device.description,
        })
    }

    /// `lbfgs` or `adam`, for the progress line.
    pub fn optimizer_name(&self) -> &'static str {
        match self.base.optimizer {
            OptimizerSettings::Lbfgs(_) => "lbfgs",
            OptimizerSettings::Adam(_) => "adam",
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn resolve(flags: &[&str]) -> RunSettings {
        let mut argv = vec![
            "impasto",
            "transfer",
            "--content",
            "c.png",
            "--style",
            "s.png",
            "--output",
            "o.png",
        ];
        argv.extend(flags);
        let Command::Transfer(args) = Cli::try_parse_from(argv).unwrap().command else {
            unreachable!()
        };
        RunSettings::from_args(&args.run).unwrap()
    }

    #[test]
    fn flags_become_library_settings() {
        let run = resolve(&[
            "--size",
            "300",
            "--model",
            "vgg16",
            "--optimizer",
            "adam",
            "--lr",
            "2",
            "--bit-depth",
            "16",
            "--save-every",
            "7",
            "--scales",
            "3",
        ]);
        assert_eq!(run.base.size, 300);
        assert_eq!(run.base.architecture, impasto::model::Architecture::Vgg16);
        assert!(
            matches!(&run.base.optimizer, OptimizerSettings::Adam(c) if c.learning_rate == 2.0)
        );
        assert_eq!(run.optimizer_name(), "adam");
        assert_eq!(run.bit_depth, BitDepth::Sixteen);
        assert_eq!(run.save_every, Some(7));
        assert_eq!(run.schedule.sizes.len(), 3);
        assert_eq!(run.schedule.sizes.last(), Some(&300));
        assert_eq!(
            resolve(&["--device", "cpu"]).base.backend.info().name,
            "cpu"
        );
    }

    #[test]
    fn defaults_are_the_papers() {
        let run = resolve(&[]);
        assert_eq!(run.base.size, 512);
        assert_eq!(run.optimizer_name(), "lbfgs");
        assert_eq!(run.schedule, Schedule::single(512, 500));
        assert_eq!(run.bit_depth, BitDepth::Eight);
        assert!(run.weights.is_none() && run.loss_log.is_none() && !run.quiet);
    }
}
