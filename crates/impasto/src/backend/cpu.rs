//! The CPU engine as a backend: [`Vgg`] on `gemm` and rayon, evaluating [`Objective`] whole or
//! tile by tile. What the other backends are measured against.

use std::sync::Arc;

use crate::core::{FeatureMap, Pooling};
use crate::loss::{
    masked_normalized_gram, normalized_gram, tiled_features, tiled_normalized_grams, LossParts,
    Objective, SpatialMask, Tiling,
};
use crate::model::{Architecture, InputConvention, Layer, Vgg, VggOptions, Workspace};
use crate::weights::VggWeights;
use crate::{memory, Error, ErrorKind, Result};

use super::{Backend, BackendInfo, DeviceMemory, Evaluator, Gram, Network, NetworkSpec, Problem};

/// The CPU engine, on rayon's current thread pool (`--threads`).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend;

impl CpuBackend {
    /// The CPU backend as the `Arc` that settings hold.
    pub fn shared() -> Arc<dyn Backend> {
        Arc::new(CpuBackend)
    }
}

impl Backend for CpuBackend {
    fn info(&self) -> BackendInfo {
        cpu_info()
    }

    fn load(&self, weights: &VggWeights, spec: &NetworkSpec) -> Result<Arc<dyn Network>> {
        Ok(Arc::new(CpuNetwork::load(weights, spec)?))
    }
}

fn cpu_info() -> BackendInfo {
    BackendInfo {
        name: "cpu".into(),
        description: format!("CPU, {} threads", rayon::current_num_threads()),
        is_software: false,
        shares_host_memory: true,
    }
}

/// [`Vgg`]'s kernels, shared by the evaluators of every scale.
#[derive(Clone, Debug)]
pub struct CpuNetwork {
    vgg: Arc<Vgg>,
    deepest: Layer,
}

impl CpuNetwork {
    /// Prepares the kernels (Winograd transforms, packed GEMM operands) up to `spec.deepest`.
    pub fn load(weights: &VggWeights, spec: &NetworkSpec) -> Result<Self> {
        let options = VggOptions {
            pooling: spec.pooling,
            algorithm: spec.algorithm,
            deepest: Some(spec.deepest),
        };
        Ok(CpuNetwork {
            vgg: Arc::new(Vgg::with_options(weights, &options)?),
            deepest: spec.deepest,
        })
    }

    /// A network already built (tests' tiny ones, [`Vgg::from_convs`]); `deepest` must be within
    /// its convolutions.
    pub fn from_vgg(vgg: Vgg, deepest: Layer) -> Self {
        CpuNetwork {
            vgg: Arc::new(vgg),
            deepest,
        }
    }

    /// The network itself.
    pub fn vgg(&self) -> &Vgg {
        &self.vgg
    }
}

/// Prefixes a parameter error's message with what it is about.
fn in_context(what: String) -> impl FnOnce(Error) -> Error {
    move |e| match e.kind() {
        ErrorKind::Parameter => e.context(what),
        _ => e,
    }
}

impl Network for CpuNetwork {
    fn info(&self) -> BackendInfo {
        cpu_info()
    }
    fn architecture(&self) -> Architecture {
        self.vgg.architecture()
    }
    fn convention(&self) -> InputConvention {
        self.vgg.convention()
    }
    fn pooling(&self) -> Pooling {
        self.vgg.pooling()
    }
    fn deepest(&self) -> Layer {
        self.deepest
    }
    fn kernel_bytes(&self) -> u64 {
        self.vgg.kernel_bytes() as u64
    }

    /// Kernels, the network's buffers at the working size (or the largest style image's while
    /// targets are computed; or one tile's window for all of them, with one style layer's
    /// features restricted to a core and the window's pixels and gradient) and the content
    /// targets.
    fn memory(&self, problem: &Problem<'_>) -> Result<DeviceMemory> {
        let net = &self.vgg;
        let taps = problem.taps();
        let (width, height) = problem.size;
        let f32s = std::mem::size_of::<f32>() as u64;
        let buffers = match problem.tiling {
            Some(t) => {
                let side = t.max_window();
                let largest = (problem.style_sizes.iter())
                    .fold((width, height), |(w, h), &(sw, sh)| (w.max(sw), h.max(sh)));
                let (wh, ww) = (side.min(largest.1) as u64, side.min(largest.0) as u64);
                let restricted = (problem.style_layers.iter())
                    .map(|l| {
                        let p = l.pools_before();
                        ((wh >> p) + 2) * ((ww >> p) + 2) * l.channels() as u64 * f32s
                    })
                    .max()
                    .unwrap_or(0);
                net.workspace_bytes(wh as usize, ww as usize, &taps)? as u64
                    + restricted
                    + 2 * wh * ww * 3 * f32s
            }
            None => {
                let mut buffers = net
                    .workspace_bytes(height, width, &taps)
                    .map_err(in_context(format!("the working image ({width}×{height})")))?
                    as u64;
                if !problem.style_layers.is_empty() {
                    for (i, &(w, h)) in problem.style_sizes.iter().enumerate() {
                        let bytes =
                            net.workspace_bytes(h, w, problem.style_layers)
                                .map_err(in_context(format!(
                                    "style image {} resized to {w}×{h} (size × style scale)",
                                    i + 1
                                )))?;
                        buffers = buffers.max(bytes as u64);
                    }
                }
                buffers
            }
        };
        let content_targets: u64 = (problem.content_layers.iter())
            .map(|l| {
                let p = l.pools_before();
                ((height >> p) + 2) as u64 * ((width >> p) + 2) as u64 * l.channels() as u64 * f32s
            })
            .sum();
        Ok(DeviceMemory {
            needed: self.kernel_bytes() + buffers + content_targets,
            available: memory::available_bytes(),
            shared_with_host: true,
        })
    }

    fn features(
        &self,
        rgb: &[f32],
        (w, h): (usize, usize),
        layers: &[Layer],
        tiling: Option<&Tiling>,
    ) -> Result<Vec<FeatureMap>> {
        match tiling {
            None => self.vgg.features_of_image(rgb, h, w, layers),
            Some(t) => {
                let mut ws = self.window_workspace(t, (w, h), layers)?;
                tiled_features(&self.vgg, &mut ws, t, rgb, (h, w), layers)
            }
        }
    }

    fn grams(
        &self,
        rgb: &[f32],
        (w, h): (usize, usize),
        layers: &[Layer],
        mask: Option<&SpatialMask>,
        tiling: Option<&Tiling>,
    ) -> Result<Vec<Option<Gram>>> {
        let arch = self.vgg.architecture();
        match (tiling, mask) {
            (Some(_), Some(_)) => Err(Error::parameter(
                "spatial masks cannot be combined with tiling (use a smaller --size)",
            )),
            (Some(t), None) => {
                let mut ws = self.window_workspace(t, (w, h), layers)?;
                let grams = tiled_normalized_grams(&self.vgg, &mut ws, t, rgb, (h, w), layers)?;
                Ok(grams
                    .into_iter()
                    .map(|(values, channels)| Some(Gram { values, channels }))
                    .collect())
            }
            (None, mask) => self.vgg.visit_features_of_image(rgb, h, w, layers, |l, f| {
                let values = match mask {
                    None => Some(normalized_gram(f)),
                    Some(m) => masked_normalized_gram(f, &m.at_layer(arch, l)?),
                };
                Ok(values.map(|values| Gram {
                    values,
                    channels: f.channels(),
                }))
            }),
        }
    }

    fn evaluator(
        &self,
        objective: Objective,
        (w, h): (usize, usize),
        tiling: Option<Tiling>,
    ) -> Result<Box<dyn Evaluator>> {
        let layers = objective.layers();
        let ws = match &tiling {
            None => self.vgg.workspace(h, w, &layers)?,
            Some(t) => self.window_workspace(t, (w, h), &layers)?,
        };
        Ok(Box::new(CpuEvaluator {
            net: Arc::clone(&self.vgg),
            objective,
            ws,
            tiling,
            size: (h, w),
        }))
    }
}

impl CpuNetwork {
    /// A workspace for one tile's window of a `w × h` image: tiles are reshaped into it.
    fn window_workspace(
        &self,
        tiling: &Tiling,
        (w, h): (usize, usize),
        layers: &[Layer],
    ) -> Result<Workspace> {
        let side = tiling.max_window();
        self.vgg.workspace(side.min(h), side.min(w), layers)
    }
}

/// The objective's targets and one workspace (the image's, or a window's).
struct CpuEvaluator {
    net: Arc<Vgg>,
    objective: Objective,
    ws: Workspace,
    tiling: Option<Tiling>,
    /// Height, width.
    size: (usize, usize),
}

impl Evaluator for CpuEvaluator {
    fn evaluate(&mut self, x: &[f32], grad: &mut [f32]) -> Result<LossParts> {
        let (h, w) = self.size;
        match &self.tiling {
            None => self.objective.evaluate(&self.net, &mut self.ws, x, grad),
            Some(t) => (self.objective).evaluate_tiled(&self.net, &mut self.ws, t, x, h, w, grad),
        }
    }

    fn next_iteration(&mut self) {
        if let Some(t) = self.tiling.as_mut() {
            t.advance();
        }
    }

    fn layers(&self) -> Vec<Layer> {
        self.objective.layers()
    }

    fn allocated_bytes(&self) -> u64 {
        self.ws.allocated_bytes() as u64
    }

    fn forward_only(&mut self, x: &[f32]) -> Result<bool> {
        if self.tiling.is_some() {
            return Ok(false);
        }
        let (h, w) = self.size;
        if x.len() != h * w * 3 {
            return Err(Error::parameter(format!(
                "{} values for a {w}×{h} RGB image",
                x.len()
            )));
        }
        self.net.convention().to_network(x, self.ws.input_mut());
        self.net.forward(&mut self.ws);
        Ok(true)
    }

    fn host_objective(&self) -> Option<&Objective> {
        Some(&self.objective)
    }
}
