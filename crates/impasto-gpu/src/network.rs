//! The GPU as an impasto backend: the VGG's kernels uploaded once per run ([`GpuNetwork`]), the
//! forward pass on device buffers, and the targets (content features, style Grams) computed on
//! the device and brought to the host for the transfer to assemble.

use std::sync::Arc;

use impasto::backend::{
    Backend, BackendInfo, DeviceMemory, Evaluator, Gram, Network, NetworkSpec, Problem,
};
use impasto::core::{FeatureMap, Pooling};
use impasto::loss::{Objective, SpatialMask, Tiling};
use impasto::model::{Architecture, InputConvention, Layer};
use impasto::weights::VggWeights;
use impasto::{Error, ErrorKind, Result};

use crate::evaluator::GpuEvaluator;
use crate::kernels::{Dispatch, GpuConv, Kernels, PARTIALS_PER_SLOT};
use crate::plan::{shapes, stage_of, Stage};
use crate::{AdapterChoice, Gpu, GpuBuffer};

/// The refusal of a feature the GPU backend does not have yet.
pub(crate) fn cpu_only(feature: &str) -> Error {
    Error::new(
        ErrorKind::Parameter,
        format!("{feature} is CPU-only for now: run with --device cpu"),
    )
}

/// A GPU adapter, opened once, as a [`Backend`].
#[derive(Clone, Debug)]
pub struct GpuBackend {
    gpu: Arc<Gpu>,
    kernels: Arc<Kernels>,
}

impl GpuBackend {
    /// Opens the best adapter `choice` allows and compiles the kernels.
    pub fn open(choice: AdapterChoice) -> Result<Self> {
        let gpu = Gpu::open(choice)?;
        let kernels = Kernels::new(&gpu);
        Ok(GpuBackend {
            gpu: Arc::new(gpu),
            kernels: Arc::new(kernels),
        })
    }

    /// The machine's GPU backend as the front ends list them: the best adapter (hardware if
    /// there is one, else a software one, which [`BackendInfo::is_software`] tells), or why
    /// there is none.
    pub fn available() -> std::result::Result<Vec<Arc<dyn Backend>>, String> {
        match Self::open(AdapterChoice::Any) {
            Ok(b) => Ok(vec![Arc::new(b) as Arc<dyn Backend>]),
            Err(e) => Err(format!("{e:#}")),
        }
    }

    /// The device.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The network prepared on this device, with its concrete type.
    pub fn network(&self, weights: &VggWeights, spec: &NetworkSpec) -> Result<GpuNetwork> {
        GpuNetwork::load(self, weights, spec)
    }
}

fn info_of(gpu: &Gpu) -> BackendInfo {
    let r = gpu.report();
    BackendInfo {
        name: "gpu".into(),
        description: format!(
            "{} ({}{})",
            r.name,
            r.backend,
            if r.software { ", software" } else { "" }
        ),
        is_software: r.software,
        shares_host_memory: r.software || r.device_type == "IntegratedGpu",
    }
}

impl Backend for GpuBackend {
    fn info(&self) -> BackendInfo {
        info_of(&self.gpu)
    }

    fn load(&self, weights: &VggWeights, spec: &NetworkSpec) -> Result<Arc<dyn Network>> {
        Ok(Arc::new(self.network(weights, spec)?))
    }
}

/// The VGG's convolutions on the device, up to the deepest layer a loss reads.
pub struct GpuNetwork {
    pub(crate) gpu: Arc<Gpu>,
    pub(crate) kernels: Arc<Kernels>,
    architecture: Architecture,
    convention: InputConvention,
    pooling: Pooling,
    deepest: Layer,
    pub(crate) convs: Vec<GpuConv>,
}

impl GpuNetwork {
    fn load(backend: &GpuBackend, weights: &VggWeights, spec: &NetworkSpec) -> Result<Self> {
        weights.check()?;
        let arch = weights.architecture;
        let (deepest_stage, _) = stage_of(arch, spec.deepest)?;
        let convs_needed = crate::plan::stages(arch)[..=deepest_stage]
            .iter()
            .filter(|s| matches!(s, Stage::Conv { .. }))
            .count();
        let gpu = &backend.gpu;
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let convs = arch
            .conv_specs()
            .iter()
            .zip(&weights.convs)
            .take(convs_needed)
            .map(|(s, p)| GpuConv::new(gpu, s.in_channels, s.out_channels, &p.weight, &p.bias))
            .collect();
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::new(
                ErrorKind::Limits,
                format!("the GPU has no room for the network's weights ({e})"),
            ));
        }
        Ok(GpuNetwork {
            gpu: Arc::clone(&backend.gpu),
            kernels: Arc::clone(&backend.kernels),
            architecture: arch,
            convention: weights.convention,
            pooling: spec.pooling,
            deepest: spec.deepest,
            convs,
        })
    }

    /// A network of `architecture`'s topology with other channel counts (tests use tiny random
    /// ones, as the CPU's [`impasto::model::Vgg::from_convs`]): `convs` are
    /// `(cin, cout, weight [cout][cin][3][3], bias [cout])` and must chain from 3 channels, at
    /// least up to `deepest`.
    pub fn from_convs(
        backend: &GpuBackend,
        architecture: Architecture,
        convention: InputConvention,
        pooling: Pooling,
        deepest: Layer,
        convs: &[(usize, usize, &[f32], &[f32])],
    ) -> Result<Self> {
        let mut cin = 3;
        for (i, &(ci, co, w, b)) in convs.iter().enumerate() {
            if ci != cin || w.len() != co * ci * 9 || b.len() != co {
                return Err(Error::new(
                    ErrorKind::Parameter,
                    format!("convolution {i} does not chain or has the wrong length"),
                ));
            }
            cin = co;
        }
        let gpu = &backend.gpu;
        Ok(GpuNetwork {
            gpu: Arc::clone(gpu),
            kernels: Arc::clone(&backend.kernels),
            architecture,
            convention,
            pooling,
            deepest,
            convs: convs
                .iter()
                .map(|&(ci, co, w, b)| GpuConv::new(gpu, ci, co, w, b))
                .collect(),
        })
    }

    /// Each convolution's output channels.
    pub(crate) fn channels(&self) -> Vec<usize> {
        self.convs.iter().map(GpuConv::out_channels).collect()
    }

    /// The stages and their output shapes for `taps` at `(w, h)`, with the device's limits
    /// checked: no buffer larger than the device binds, no convolution wider than a dispatch.
    #[allow(clippy::type_complexity)]
    pub(crate) fn plan(
        &self,
        (w, h): (usize, usize),
        taps: &[Layer],
    ) -> Result<Vec<(Stage, (usize, usize, usize))>> {
        let plan = shapes(self.architecture, &self.channels(), (h, w), taps)?;
        let r = self.gpu.report();
        let limit = r.max_storage_binding.min(r.max_buffer);
        for &(stage, (sh, sw, c)) in &plan {
            let bytes = (sh * sw * c * 4) as u64;
            if bytes > limit {
                return Err(Error::new(
                    ErrorKind::Limits,
                    format!(
                        "a {w}×{h} image needs a {} MiB buffer for {} ({sw}×{sh}×{c}), more than \
                         the largest this GPU binds ({} MiB, {}); use a smaller --size or \
                         --device cpu",
                        bytes >> 20,
                        stage_name(stage),
                        limit >> 20,
                        r.name
                    ),
                ));
            }
        }
        if h * w > self.kernels.max_pixels() {
            return Err(Error::new(
                ErrorKind::Limits,
                format!(
                    "a {w}×{h} image has more pixels than one GPU dispatch covers ({}); use a \
                     smaller --size",
                    self.kernels.max_pixels()
                ),
            ));
        }
        Ok(plan)
    }

    /// The forward pass's buffers and dispatches for `taps` at `(w, h)`.
    pub(crate) fn forward_pass(&self, size: (usize, usize), taps: &[Layer]) -> Result<Forward> {
        let plan = self.plan(size, taps)?;
        let (w, h) = size;
        let g = &self.gpu;
        let k = &self.kernels;
        let rgb = g.zeros(h * w * 3, "image");
        let input = g.zeros(h * w * 3, "network input");
        let mut dispatches = vec![k.convention(self.convention, &rgb, &input, h * w, false)];
        let mut act: Vec<GpuBuffer> = Vec::with_capacity(plan.len());
        let mut pre: Vec<Option<GpuBuffer>> = Vec::with_capacity(plan.len());
        let mut tapped_pre = vec![false; plan.len()];
        for &t in taps {
            let (s, is_pre) = stage_of(self.architecture, t)?;
            tapped_pre[s] |= is_pre;
        }
        let (mut ih, mut iw, mut ic) = (h, w, 3);
        for (s, &(stage, (sh, sw, c))) in plan.iter().enumerate() {
            let out = g.zeros(sh * sw * c, &stage_name(stage));
            let src = if s == 0 { &input } else { &act[s - 1] };
            let mut kept_pre = None;
            match stage {
                Stage::Conv { conv, .. } => {
                    let conv = &self.convs[conv];
                    if tapped_pre[s] {
                        let p = g.zeros(sh * sw * c, "pre-ReLU");
                        dispatches.push(k.conv_forward(conv, src, &p, (sh, sw), false));
                        dispatches.push(k.relu(&p, &out, sh * sw * c));
                        kept_pre = Some(p);
                    } else {
                        dispatches.push(k.conv_forward(conv, src, &out, (sh, sw), true));
                    }
                }
                Stage::Pool { .. } => {
                    dispatches.push(k.pool_forward(self.pooling, src, &out, (ih, iw, ic)));
                }
            }
            act.push(out);
            pre.push(kept_pre);
            (ih, iw, ic) = (sh, sw, c);
        }
        Ok(Forward {
            rgb,
            input,
            act,
            pre,
            shapes: plan,
            dispatches,
        })
    }

    /// Device bytes of the forward pass's buffers for `taps` at `size` (no allocation).
    fn forward_bytes(&self, size: (usize, usize), taps: &[Layer]) -> Result<u64> {
        let plan = self.plan(size, taps)?;
        let (w, h) = size;
        let mut bytes = 2 * (h * w * 3 * 4) as u64;
        for &t in taps {
            let (s, is_pre) = stage_of(self.architecture, t)?;
            if is_pre {
                let (sh, sw, c) = plan[s].1;
                bytes += (sh * sw * c * 4) as u64;
            }
        }
        bytes += plan
            .iter()
            .map(|(_, (sh, sw, c))| (sh * sw * c * 4) as u64)
            .sum::<u64>();
        Ok(bytes)
    }

    /// Runs `f`, failing with a clear error if the device ran out of memory (or refused
    /// anything) meanwhile.
    pub(crate) fn guarded<R>(&self, what: &str, f: impl FnOnce() -> Result<R>) -> Result<R> {
        let oom = self
            .gpu
            .device
            .push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let invalid = self
            .gpu
            .device
            .push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let invalid = pollster::block_on(invalid.pop());
        let oom = pollster::block_on(oom.pop());
        if let Some(e) = oom {
            return Err(Error::new(
                ErrorKind::Limits,
                format!("the GPU ran out of memory for {what} ({e}); use a smaller --size or --device cpu"),
            ));
        }
        if let Some(e) = invalid {
            return Err(Error::new(
                ErrorKind::Limits,
                format!("the GPU refused {what}: {e}"),
            ));
        }
        out
    }
}

pub(crate) fn stage_name(stage: Stage) -> String {
    match stage {
        Stage::Conv { block, index, .. } => format!("relu{block}_{index}"),
        Stage::Pool { block } => format!("pool{block}"),
    }
}

/// The forward pass at one size: the image, every stage's output (kept: the backward pass
/// needs them for its ReLU masks and max pooling), the pre-ReLU outputs of tapped conv layers.
pub(crate) struct Forward {
    pub rgb: GpuBuffer,
    pub input: GpuBuffer,
    pub act: Vec<GpuBuffer>,
    pub pre: Vec<Option<GpuBuffer>>,
    pub shapes: Vec<(Stage, (usize, usize, usize))>,
    pub dispatches: Vec<Dispatch>,
}

impl Forward {
    /// The buffer holding `layer` and its shape.
    pub fn layer(
        &self,
        arch: Architecture,
        layer: Layer,
    ) -> Result<(&GpuBuffer, (usize, usize, usize))> {
        let (s, is_pre) = stage_of(arch, layer)?;
        let buf = if is_pre {
            self.pre[s].as_ref()
        } else {
            Some(&self.act[s])
        };
        let buf =
            buf.ok_or_else(|| Error::new(ErrorKind::Parameter, format!("{layer} was not kept")))?;
        Ok((buf, self.shapes[s].1))
    }

    /// Bytes on the device.
    pub fn bytes(&self) -> u64 {
        self.rgb.bytes()
            + self.input.bytes()
            + self.act.iter().map(GpuBuffer::bytes).sum::<u64>()
            + self.pre.iter().flatten().map(GpuBuffer::bytes).sum::<u64>()
    }
}

fn to_feature_map((h, w, c): (usize, usize, usize), values: &[f32]) -> FeatureMap {
    let mut f = FeatureMap::zeros(h, w, c);
    for y in 0..h {
        f.pixel_row_mut(y)
            .copy_from_slice(&values[y * w * c..(y + 1) * w * c]);
    }
    f
}

fn check_rgb(rgb: &[f32], (w, h): (usize, usize)) -> Result<()> {
    if rgb.len() != h * w * 3 {
        return Err(Error::new(
            ErrorKind::Parameter,
            format!("{} values for a {w}×{h} RGB image", rgb.len()),
        ));
    }
    Ok(())
}

impl Network for GpuNetwork {
    fn info(&self) -> BackendInfo {
        info_of(&self.gpu)
    }
    fn architecture(&self) -> Architecture {
        self.architecture
    }
    fn convention(&self) -> InputConvention {
        self.convention
    }
    fn pooling(&self) -> Pooling {
        self.pooling
    }
    fn deepest(&self) -> Layer {
        self.deepest
    }
    fn kernel_bytes(&self) -> u64 {
        self.convs.iter().map(GpuConv::bytes).sum()
    }

    /// Kernels; the working image's activations (all kept), gradients and targets; or a style
    /// image's forward pass if larger. The device's free memory is not something wgpu can ask,
    /// so `available` is unknown; each buffer is checked against what the device can bind.
    fn memory(&self, problem: &Problem<'_>) -> Result<DeviceMemory> {
        if problem.tiling.is_some() {
            return Err(cpu_only("tiling (--tile)"));
        }
        let taps = problem.taps();
        let (w, h) = problem.size;
        let mut buffers = self.forward_bytes((w, h), &taps)?;
        let plan = self.plan((w, h), &taps)?;
        let largest = plan
            .iter()
            .map(|(_, (a, b, c))| a * b * c)
            .max()
            .unwrap_or(0);
        // Two gradient buffers that alternate, the input's and the image's gradient.
        buffers += (2 * largest * 4 + 2 * h * w * 3 * 4) as u64;
        for l in problem.content_layers {
            let (s, _) = stage_of(self.architecture, *l)?;
            let (sh, sw, c) = plan[s].1;
            buffers += (sh * sw * c * 4) as u64;
        }
        for l in problem.style_layers {
            let c = l.channels() as u64;
            let (s, _) = stage_of(self.architecture, *l)?;
            let (sh, sw, _) = plan[s].1;
            let splits = Kernels::gram_splits(sh * sw, c as usize) as u64;
            buffers += (2 + splits) * c * c * 4 * problem.style_sizes.len().max(1) as u64;
        }
        buffers += (PARTIALS_PER_SLOT
            * 4
            * (problem.content_layers.len()
                + problem.style_layers.len() * problem.style_sizes.len().max(1)))
            as u64;
        if !problem.style_layers.is_empty() {
            for &size in problem.style_sizes {
                buffers = buffers.max(self.forward_bytes(size, problem.style_layers)?);
            }
        }
        Ok(DeviceMemory {
            needed: self.kernel_bytes() + buffers,
            available: None,
            shared_with_host: info_of(&self.gpu).shares_host_memory,
        })
    }

    fn features(
        &self,
        rgb: &[f32],
        size: (usize, usize),
        layers: &[Layer],
        tiling: Option<&Tiling>,
    ) -> Result<Vec<FeatureMap>> {
        if tiling.is_some() {
            return Err(cpu_only("tiling (--tile)"));
        }
        check_rgb(rgb, size)?;
        self.guarded("the content image's features", || {
            let fwd = self.forward_pass(size, layers)?;
            self.gpu.write(&fwd.rgb, rgb);
            self.gpu.run(&fwd.dispatches);
            layers
                .iter()
                .map(|&l| {
                    let (buf, shape) = fwd.layer(self.architecture, l)?;
                    Ok(to_feature_map(shape, &self.gpu.read(buf)?))
                })
                .collect()
        })
    }

    fn grams(
        &self,
        rgb: &[f32],
        size: (usize, usize),
        layers: &[Layer],
        mask: Option<&SpatialMask>,
        tiling: Option<&Tiling>,
    ) -> Result<Vec<Option<Gram>>> {
        if tiling.is_some() {
            return Err(cpu_only("tiling (--tile)"));
        }
        check_rgb(rgb, size)?;
        self.guarded("the style image's Gram matrices", || {
            let fwd = self.forward_pass(size, layers)?;
            self.gpu.write(&fwd.rgb, rgb);
            self.gpu.run(&fwd.dispatches);
            let k = &self.kernels;
            let mut out = Vec::with_capacity(layers.len());
            for &l in layers {
                let (buf, (h, w, c)) = fwd.layer(self.architecture, l)?;
                let weight = match mask {
                    None => None,
                    Some(m) => Some(m.at_layer(self.architecture, l)?),
                };
                let mass = weight.as_ref().map_or((h * w) as f64, SpatialMask::mass);
                if mass == 0.0 {
                    out.push(None);
                    continue;
                }
                let wb = weight.as_ref().map(|m| self.gpu.upload(&m.values, "mask"));
                let splits = Kernels::gram_splits(h * w, c);
                let partial = self.gpu.zeros(splits * c * c, "Gram partials");
                let zero = self.gpu.zeros(c * c, "zero");
                let gram = self.gpu.zeros(c * c, "Gram");
                self.gpu.run(&[
                    k.gram(buf, wb.as_ref(), &partial, (h * w, c)),
                    k.style_finish(&partial, &zero, &gram, (c, splits), (1.0 / mass) as f32),
                ]);
                out.push(Some(Gram {
                    values: self.gpu.read(&gram)?,
                    channels: c,
                }));
            }
            Ok(out)
        })
    }

    fn evaluator(
        &self,
        objective: Objective,
        size: (usize, usize),
        tiling: Option<Tiling>,
    ) -> Result<Box<dyn Evaluator>> {
        if tiling.is_some() {
            return Err(cpu_only("tiling (--tile)"));
        }
        let ev = self.guarded("the evaluator's buffers", || {
            GpuEvaluator::new(self, objective, size)
        })?;
        Ok(Box::new(ev))
    }
}
