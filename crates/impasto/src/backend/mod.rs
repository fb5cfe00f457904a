//! The boundary a transfer evaluates through: what runs the network and the objective, on which
//! device.
//!
//! Three levels, each built once for what it depends on:
//!
//! - a [`Backend`] is a device (the CPU, a GPU adapter). Front ends choose one and put it in
//!   [`TransferSettings::backend`](crate::transfer::TransferSettings::backend); [`CpuBackend`]
//!   is the default.
//! - a [`Network`] is the VGG prepared on that device from the weights ([`Backend::load`]): its
//!   kernels, about 200 MB for VGG19. It is built **once per run**: every scale of a
//!   coarse-to-fine run and the memory preflight share it.
//! - an [`Evaluator`] ([`Network::evaluator`]) holds the objective's targets and the buffers
//!   for one image size (or one tile's window): given the image `x` it returns the loss parts
//!   and writes the gradient. Only `x` and its gradient cross the boundary each evaluation.
//!
//! Everything above it (optimisers with L-BFGS's history, coarse to fine, colour, masks,
//! reporting) lives on the host and does not know which backend runs.
//!
//! # The data that crosses
//!
//! All host data, `f32`, in the layouts the CPU engine uses, so another crate (the `wgpu`
//! backend in `impasto-gpu`) can implement these traits and upload it:
//!
//! - images: RGB, 0–255, row-major `h × w × 3` (`[(y * w + x) * 3 + c]`); the network's input
//!   convention ([`InputConvention`], from the weights) is the backend's to apply, forward and
//!   for the gradient.
//! - weights: [`VggWeights`], one [`ConvParams`](crate::weights::ConvParams) per convolution of
//!   [`Architecture::conv_specs`](crate::model::Architecture::conv_specs), OIHW (`[cout][cin][3][3]`)
//!   and a bias per output; [`NetworkSpec`] says the pooling and how deep to build.
//!   The layer plan (which layer follows which) is
//!   [`Architecture::layers`](crate::model::Architecture::layers) up to [`NetworkSpec::deepest`].
//! - feature maps: [`FeatureMap`] (NHWC, one pixel's channels contiguous, a one-pixel zero
//!   border; read rows with [`FeatureMap::pixel_row`]).
//! - the objective's targets: an [`Objective`]: content feature maps per layer with their
//!   weights ([`Objective::content_losses`]), style Gram targets `G/M` (`channels²`, row-major)
//!   per layer with their layer weights and optional [`SpatialMask`] already at the layer's
//!   resolution ([`Objective::style_losses`]), and α, β and the TV weight
//!   ([`Objective::weights`]). Several style losses may read the same layer (masks: one per
//!   region). The loss definitions are in [`crate::loss`]; the CPU's are the reference.
//! - tiling: a [`Tiling`] the transfer chose to fit memory; a backend that cannot tile refuses
//!   it in [`Network::evaluator`] with a clear [`ErrorKind::Parameter`](crate::ErrorKind).

mod cpu;

use std::fmt;
use std::sync::Arc;

use crate::core::{FeatureMap, Pooling};
use crate::loss::{LossParts, Objective, SpatialMask, Tiling};
use crate::model::{AlgorithmPolicy, Architecture, InputConvention, Layer};
use crate::weights::VggWeights;
use crate::Result;

pub use cpu::{CpuBackend, CpuNetwork};

/// What a backend is, for choosing one and for printing the choice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendInfo {
    /// A short name: `cpu`, `gpu`.
    pub name: String,
    /// The device in words (`"CPU, 2 threads"`, `"NVIDIA H200 (Vulkan)"`).
    pub description: String,
    /// Whether the device is a software emulation (a CPU rasteriser such as Mesa's llvmpipe):
    /// `--device auto` never picks one over the CPU backend.
    pub is_software: bool,
    /// Whether the device's memory is the host's (the CPU, integrated GPUs): then the device's
    /// and the host's bytes of a run count against one budget.
    pub shares_host_memory: bool,
}

impl fmt::Display for BackendInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.description)
    }
}

/// How to build the network on a device.
#[derive(Clone, Copy, Debug)]
pub struct NetworkSpec {
    /// Average (the paper's) or max pooling.
    pub pooling: Pooling,
    /// The convolution algorithm; a hint the CPU follows and other backends may ignore.
    pub algorithm: AlgorithmPolicy,
    /// Build only up to this layer: no loss reads deeper.
    pub deepest: Layer,
}

/// A device that can run the VGG objective: the CPU engine, a GPU. Cheap to clone through an
/// `Arc`; choosing one does no work, [`Backend::load`] does.
pub trait Backend: Send + Sync + fmt::Debug {
    /// What this backend is.
    fn info(&self) -> BackendInfo;

    /// The network prepared on this device from `weights` (checked against their
    /// architecture): its kernels. Built once per run.
    fn load(&self, weights: &VggWeights, spec: &NetworkSpec) -> Result<Arc<dyn Network>>;
}

/// The shape of a problem, for a memory estimate before anything is built: the working size,
/// the style images' sizes, the layers and the tiling.
#[derive(Clone, Copy, Debug)]
pub struct Problem<'a> {
    /// Working image width and height.
    pub size: (usize, usize),
    /// Each style image's width and height at its working size.
    pub style_sizes: &'a [(usize, usize)],
    /// Layers the content loss reads.
    pub content_layers: &'a [Layer],
    /// Layers the style loss reads.
    pub style_layers: &'a [Layer],
    /// Set when the image runs tile by tile.
    pub tiling: Option<&'a Tiling>,
}

impl Problem<'_> {
    /// Every layer a loss reads, without repeats (content first).
    pub fn taps(&self) -> Vec<Layer> {
        let mut out = self.content_layers.to_vec();
        for l in self.style_layers {
            if !out.contains(l) {
                out.push(*l);
            }
        }
        out
    }
}

/// The memory a backend needs for a problem on its device, and what the device has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceMemory {
    /// Peak bytes on the device: kernels, activations (or one window's), targets, masks.
    pub needed: u64,
    /// Bytes the device can give; `None` where it does not say (then the run proceeds).
    pub available: Option<u64>,
    /// Whether those bytes are the host's (see [`BackendInfo::shares_host_memory`]).
    pub shared_with_host: bool,
}

/// A style image's Gram matrix at one layer, normalised by its pixel count (`G / M`, or by the
/// mask's mass with a mask): `channels²` values, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Gram {
    /// `G / M`.
    pub values: Vec<f32>,
    /// Channels of the layer.
    pub channels: usize,
}

/// The VGG network prepared on one device (its kernels), for one architecture, input convention
/// and pooling. Shared by every scale of a run.
pub trait Network: Send + Sync {
    /// The backend that built it.
    fn info(&self) -> BackendInfo;
    /// VGG16 or VGG19.
    fn architecture(&self) -> Architecture;
    /// The weights' input convention.
    fn convention(&self) -> InputConvention;
    /// The pooling it was built with.
    fn pooling(&self) -> Pooling;
    /// The deepest layer it was built to.
    fn deepest(&self) -> Layer;

    /// Bytes the kernels hold on the device.
    fn kernel_bytes(&self) -> u64;

    /// Peak device memory of computing the targets of `problem` and evaluating it (kernels
    /// included), and what the device has. Called before anything is allocated, several times
    /// while the transfer looks for a tiling that fits: no allocation here.
    fn memory(&self, problem: &Problem<'_>) -> Result<DeviceMemory>;

    /// The outputs at `layers` of an RGB image (`size` = width, height), whole, brought to the
    /// host: the content targets. With `tiling` computed tile by tile.
    fn features(
        &self,
        rgb: &[f32],
        size: (usize, usize),
        layers: &[Layer],
        tiling: Option<&Tiling>,
    ) -> Result<Vec<FeatureMap>>;

    /// The normalised Gram matrices at `layers` of an RGB image: the style targets. With a mask
    /// (at the image's size; the backend brings it to each layer with
    /// [`SpatialMask::at_layer`]) the Gram of the masked features over the mask's mass, `None`
    /// at a layer where pooling leaves the mask nothing. Masks and `tiling` are not combined.
    fn grams(
        &self,
        rgb: &[f32],
        size: (usize, usize),
        layers: &[Layer],
        mask: Option<&SpatialMask>,
        tiling: Option<&Tiling>,
    ) -> Result<Vec<Option<Gram>>>;

    /// An evaluator of `objective` for images of `size` (width, height), tile by tile with
    /// `tiling`. Allocates its buffers (on the device) here, once.
    fn evaluator(
        &self,
        objective: Objective,
        size: (usize, usize),
        tiling: Option<Tiling>,
    ) -> Result<Box<dyn Evaluator>>;

    /// Floating-point operations of one forward pass at `size` (convolutions, `2·H·W·Cin·Cout·9`
    /// each): for GFLOP/s in benchmarks. The input gradient costs the same.
    fn forward_flops(&self, size: (usize, usize)) -> f64 {
        forward_flops(self.architecture(), self.deepest(), size)
    }
}

/// The objective and its gradient for images of one size on one device.
pub trait Evaluator: Send {
    /// The losses at `x` (RGB, 0–255, `h × w × 3` row-major, host) with the gradient of the
    /// total w.r.t. `x` written into `grad` (same length; overwritten, not added to).
    fn evaluate(&mut self, x: &[f32], grad: &mut [f32]) -> Result<LossParts>;

    /// A new optimiser iteration begins: a tiled evaluator moves its cuts (the same within one
    /// iteration, so a line search sees one function). Nothing for others.
    fn next_iteration(&mut self) {}

    /// Every layer a loss reads, in first-use order.
    fn layers(&self) -> Vec<Layer>;

    /// Device bytes this evaluator holds (buffers and targets, not the kernels).
    fn allocated_bytes(&self) -> u64;

    /// Runs only the network's forward pass at `x`, for benchmarks; `Ok(false)` where the
    /// backend does not offer it on its own.
    fn forward_only(&mut self, _x: &[f32]) -> Result<bool> {
        Ok(false)
    }

    /// The targets, where the evaluator keeps them on the host (the CPU's does): for tests that
    /// inspect what a transfer built. `None` elsewhere.
    fn host_objective(&self) -> Option<&Objective> {
        None
    }
}

/// Floating-point operations of one VGG forward pass to `deepest` at `(width, height)`.
pub fn forward_flops(arch: Architecture, deepest: Layer, (w, h): (usize, usize)) -> f64 {
    let Ok(last) = arch.layer_position(deepest) else {
        return 0.0;
    };
    let specs = arch.conv_specs();
    let (mut hh, mut ww, mut conv, mut flops) = (h, w, 0, 0.0);
    for layer in &arch.layers()[..=last] {
        match layer {
            Layer::Conv { .. } => {
                let s = &specs[conv];
                flops += 2.0 * (hh * ww * s.in_channels * s.out_channels * 9) as f64;
                conv += 1;
            }
            Layer::Pool { .. } => {
                hh /= 2;
                ww /= 2;
            }
            Layer::Relu { .. } => {}
        }
    }
    flops
}
