//! `impasto bench`: per-iteration time and GFLOP/s of the engine on a Gatys objective.
//!
//! Timings are taken in one process, after warm-up, and reported as the minimum and median of
//! several runs: machines are shared and noisy, so compare numbers from one run only.

use std::time::Instant;

use crate::backend::Network;
use crate::loss::{ContentLoss, LossWeights, Objective, StyleLoss};
use crate::model::{Architecture, Layer};
use crate::weights::VggWeights;
use crate::{Error, Result};

/// The paper's layers: content relu4_2, style relu1_1 … relu5_1.
pub const GATYS_CONTENT: &[&str] = &["relu4_2"];
pub const GATYS_STYLE: &[&str] = &["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"];

#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Square image side in pixels.
    pub size: usize,
    /// Timed repetitions of each measurement (after `warmup` untimed ones).
    pub iterations: usize,
    pub warmup: usize,
}

#[derive(Clone, Debug)]
pub struct BenchReport {
    pub size: usize,
    pub threads: usize,
    /// Convolution FLOPs of one forward pass (`2·H·W·Cin·Cout·9` summed).
    pub forward_flops: f64,
    /// `None` where the backend does not run the forward pass on its own.
    pub forward_s: Option<Timing>,
    /// Forward, losses and the input gradient: one optimiser iteration's work.
    pub iteration_s: Timing,
    /// What the evaluator holds on the backend's device (buffers and targets).
    pub workspace_bytes: usize,
    /// The backend's kernels.
    pub kernel_bytes: u64,
    /// Peak resident memory of the process, where the OS reports it.
    pub peak_rss_bytes: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub min: f64,
    pub median: f64,
}

impl BenchReport {
    pub fn forward_gflops(&self) -> Option<f64> {
        self.forward_s.map(|t| self.forward_flops / t.min / 1e9)
    }
    /// The iteration does the forward convolutions and, for each, its input gradient.
    pub fn iteration_gflops(&self) -> f64 {
        2.0 * self.forward_flops / self.iteration_s.min / 1e9
    }
}

fn timing(mut samples: Vec<f64>) -> Timing {
    samples.sort_by(f64::total_cmp);
    Timing {
        min: samples[0],
        median: samples[samples.len() / 2],
    }
}

/// He-initialised random weights: for timing when none are installed (see
/// [`VggWeights::random`]).
pub fn random_weights(architecture: Architecture, seed: u64) -> VggWeights {
    VggWeights::random(architecture, seed)
}

/// A deterministic textured RGB image (0–255) for timing; values do not affect the speed.
fn synthetic_image(size: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    (0..size * size * 3)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state % 256) as f32
        })
        .collect()
}

/// Builds the paper's objective at `size` on synthetic images and times it on the network's
/// backend.
pub fn run(net: &dyn Network, config: &BenchConfig) -> Result<BenchReport> {
    if config.size < 16 || config.iterations == 0 {
        return Err(Error::parameter(
            "bench needs a size of at least 16 px (to reach relu5_1) and at least one iteration",
        ));
    }
    let arch = net.architecture();
    let parse = |names: &[&str]| -> Result<Vec<Layer>> {
        names.iter().map(|n| arch.parse_layer(n)).collect()
    };
    let (content_layers, style_layers) = (parse(GATYS_CONTENT)?, parse(GATYS_STYLE)?);
    let size = config.size;
    let need = net.memory(&crate::backend::Problem {
        size: (size, size),
        style_sizes: &[(size, size)],
        content_layers: &content_layers,
        style_layers: &style_layers,
        tiling: None,
    })?;
    let what = format!("a {size}×{size} bench");
    match need.shared_with_host {
        true => crate::memory::ensure_available(need.needed, &what)?,
        false => {
            if let Some(avail) = need.available.filter(|&a| need.needed > a) {
                return Err(Error::limits(format!(
                    "{what} needs about {:.1} GiB on {}, which has {:.1} GiB",
                    need.needed as f64 / (1u64 << 30) as f64,
                    net.info(),
                    avail as f64 / (1u64 << 30) as f64
                )));
            }
        }
    }
    let content_img = synthetic_image(size, 1);
    let style_img = synthetic_image(size, 2);
    let content = net
        .features(&content_img, (size, size), &content_layers, None)?
        .into_iter()
        .zip(&content_layers)
        .map(|(f, &l)| ContentLoss::new(l, f, 1.0))
        .collect();
    let w_l = 1.0 / style_layers.len() as f64;
    let style = (net.grams(&style_img, (size, size), &style_layers, None, None)?)
        .into_iter()
        .zip(&style_layers)
        .map(|(g, &l)| {
            let g = g.ok_or_else(|| Error::parameter(format!("no Gram matrix at {l}")))?;
            Ok(StyleLoss::from_target(l, g.values, g.channels, w_l))
        })
        .collect::<Result<Vec<_>>>()?;
    let objective = Objective::new(content, style, LossWeights::default())?;
    let mut evaluator = net.evaluator(objective, (size, size), None)?;
    let x = synthetic_image(size, 3);
    let mut grad = vec![0.0; x.len()];

    let mut forward = Vec::new();
    let mut iteration = Vec::new();
    for i in 0..config.warmup + config.iterations {
        let t = Instant::now();
        let alone = evaluator.forward_only(&x)?;
        let f = t.elapsed().as_secs_f64();
        let t = Instant::now();
        evaluator.evaluate(&x, &mut grad)?;
        let it = t.elapsed().as_secs_f64();
        if i >= config.warmup {
            if alone {
                forward.push(f);
            }
            iteration.push(it);
        }
    }
    Ok(BenchReport {
        size,
        threads: rayon::current_num_threads(),
        forward_flops: net.forward_flops((size, size)),
        forward_s: (!forward.is_empty()).then(|| timing(forward)),
        iteration_s: timing(iteration),
        workspace_bytes: evaluator.allocated_bytes() as usize,
        kernel_bytes: net.kernel_bytes(),
        peak_rss_bytes: crate::memory::peak_rss_bytes(),
    })
}
