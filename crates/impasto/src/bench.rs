//! `impasto bench`: per-iteration time and GFLOP/s of the engine on a Gatys objective.
//!
//! Timings are taken in one process, after warm-up, and reported as the minimum and median of
//! several runs: machines are shared and noisy, so compare numbers from one run only.

use std::time::Instant;

use crate::loss::{ContentLoss, LossWeights, Objective, StyleLoss};
use crate::model::{Architecture, Layer, Vgg};
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
    pub forward_s: Timing,
    /// Forward, losses and the input gradient: one optimiser iteration's work.
    pub iteration_s: Timing,
    pub workspace_bytes: usize,
    /// Peak resident memory of the process, where the OS reports it.
    pub peak_rss_bytes: Option<u64>,
}

#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub min: f64,
    pub median: f64,
}

impl BenchReport {
    pub fn forward_gflops(&self) -> f64 {
        self.forward_flops / self.forward_s.min / 1e9
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

/// Builds the paper's objective at `size` on synthetic images and times it.
pub fn run(net: &Vgg, config: &BenchConfig) -> Result<BenchReport> {
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
    let all: Vec<Layer> = content_layers
        .iter()
        .chain(&style_layers)
        .copied()
        .collect();
    crate::memory::ensure_available(
        net.workspace_bytes(size, size, &all)? as u64,
        &format!("a {size}×{size} bench"),
    )?;
    let content_img = synthetic_image(size, 1);
    let style_img = synthetic_image(size, 2);
    let content = net
        .features_of_image(&content_img, size, size, &content_layers)?
        .into_iter()
        .zip(&content_layers)
        .map(|(f, &l)| ContentLoss::new(l, f, 1.0))
        .collect();
    let w_l = 1.0 / style_layers.len() as f64;
    let style = net.visit_features_of_image(&style_img, size, size, &style_layers, |l, f| {
        Ok(StyleLoss::new(l, f, w_l))
    })?;
    let mut objective = Objective::new(content, style, LossWeights::default())?;
    let mut ws = net.workspace(size, size, &objective.layers())?;
    let x = synthetic_image(size, 3);
    let mut grad = vec![0.0; x.len()];
    net.convention().to_network(&x, ws.input_mut());

    let mut forward = Vec::new();
    let mut iteration = Vec::new();
    for i in 0..config.warmup + config.iterations {
        let t = Instant::now();
        net.forward(&mut ws);
        let f = t.elapsed().as_secs_f64();
        let t = Instant::now();
        objective.evaluate(net, &mut ws, &x, &mut grad)?;
        let it = t.elapsed().as_secs_f64();
        if i >= config.warmup {
            forward.push(f);
            iteration.push(it);
        }
    }
    Ok(BenchReport {
        size,
        threads: rayon::current_num_threads(),
        forward_flops: net.forward_flops(&ws),
        forward_s: timing(forward),
        iteration_s: timing(iteration),
        workspace_bytes: ws.allocated_bytes(),
        peak_rss_bytes: crate::memory::peak_rss_bytes(),
    })
}
