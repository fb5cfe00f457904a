//! A VGG network that runs forward and backward (input gradient only) up to the deepest layer any
//! loss reads, on buffers allocated once per image size.

use crate::core::{
    pool_backward, pool_forward, Conv3x3, ConvAlgorithm, FeatureMap, Pooling, ReluMask, Scalar,
    WinogradTile,
};
use crate::weights::VggWeights;
use crate::{Error, Result};

use super::{Architecture, InputConvention, Layer};

/// Called by [`Vgg::backward`] at each tapped layer with the layer's output and the gradient
/// buffer for it, into which the losses add their gradient.
pub type LossGradients<'a, T> = dyn FnMut(Layer, &FeatureMap<T>, &mut FeatureMap<T>) + 'a;

/// Which convolution algorithm the layers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum AlgorithmPolicy {
    /// Winograd F(4×4, 3×3) wherever it pays: every layer but the first, whose 3 input channels
    /// make it slower there (measured 2.3–2.9× faster than direct on the others at 256–512 px).
    #[default]
    Auto,
    /// The direct three-GEMM convolution everywhere (the reference path).
    Direct,
    /// Winograd with the given tile everywhere but the first layer.
    Winograd(WinogradTile),
}

impl AlgorithmPolicy {
    /// Layers with fewer input channels than this always run direct.
    const MIN_WINOGRAD_CHANNELS: usize = 16;

    /// The algorithm for a convolution with `in_channels` inputs.
    pub fn for_layer(self, in_channels: usize) -> ConvAlgorithm {
        if in_channels < Self::MIN_WINOGRAD_CHANNELS {
            return ConvAlgorithm::Direct;
        }
        match self {
            AlgorithmPolicy::Auto => ConvAlgorithm::Winograd(WinogradTile::F4),
            AlgorithmPolicy::Direct => ConvAlgorithm::Direct,
            AlgorithmPolicy::Winograd(t) => ConvAlgorithm::Winograd(t),
        }
    }
}

/// How to build a network from weights.
#[derive(Clone, Copy, Debug, Default)]
pub struct VggOptions {
    /// Average (the paper's) or max pooling.
    pub pooling: Pooling,
    /// Which convolution algorithm each layer runs.
    pub algorithm: AlgorithmPolicy,
    /// Build only the convolutions up to this layer (saves their memory); `None`: all.
    pub deepest: Option<Layer>,
}

/// Frozen VGG convolutions plus the choice of pooling.
#[derive(Clone, Debug)]
pub struct Vgg<T = f32> {
    architecture: Architecture,
    convention: InputConvention,
    pooling: Pooling,
    convs: Vec<Conv3x3<T>>,
}

/// One step of the forward pass: a convolution with its ReLU, or a pooling.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stage {
    Conv {
        conv: usize,
        block: usize,
        index: usize,
    },
    Pool {
        block: usize,
    },
}

impl<T: Scalar> Vgg<T> {
    /// All layers, with the default algorithms. Fails if the weights do not fit their
    /// architecture (every loader checks this; weights built by hand may not).
    pub fn new(weights: &VggWeights, pooling: Pooling) -> Result<Self> {
        let options = VggOptions {
            pooling,
            ..VggOptions::default()
        };
        Self::with_options(weights, &options)
    }

    /// Fails if the weights do not fit their architecture or `options.deepest` is not one of its
    /// layers.
    pub fn with_options(weights: &VggWeights, options: &VggOptions) -> Result<Self> {
        weights.check()?;
        let arch = weights.architecture;
        let count = match options.deepest {
            None => weights.convs.len(),
            Some(layer) => {
                let pos = arch.layer_position(layer)?;
                // Convolutions at or before the layer: each conv layer precedes its relu.
                arch.layers()[..=pos]
                    .iter()
                    .filter(|l| matches!(l, Layer::Conv { .. }))
                    .count()
            }
        };
        Ok(Self::build(weights, options, count))
    }

    fn build(weights: &VggWeights, options: &VggOptions, count: usize) -> Self {
        let convs = weights
            .architecture
            .conv_specs()
            .iter()
            .zip(&weights.convs)
            .take(count)
            .map(|(s, p)| {
                let alg = options.algorithm.for_layer(s.in_channels);
                tracing::debug!(
                    "{}: {} -> {} channels, {alg:?}",
                    s.name(),
                    s.in_channels,
                    s.out_channels
                );
                Conv3x3::with_algorithm(s.in_channels, s.out_channels, &p.weight, &p.bias, alg)
            })
            .collect::<Vec<_>>();
        tracing::info!(
            "{}: {} of {} convolutions prepared, {:.0} MiB of kernels",
            weights.architecture,
            convs.len(),
            weights.convs.len(),
            convs.iter().map(Conv3x3::kernel_bytes).sum::<usize>() as f64 / (1 << 20) as f64
        );
        Vgg {
            architecture: weights.architecture,
            convention: weights.convention,
            pooling: options.pooling,
            convs,
        }
    }

    /// Bytes held by the prepared convolution kernels.
    pub fn kernel_bytes(&self) -> usize {
        self.convs.iter().map(Conv3x3::kernel_bytes).sum()
    }

    /// A network of the given topology with other channel counts (tests use tiny random ones).
    /// `convs` must chain: 3 input channels, each one's outputs the next one's inputs; it may
    /// stop before the architecture's last convolution.
    pub fn from_convs(
        architecture: Architecture,
        convention: InputConvention,
        pooling: Pooling,
        convs: Vec<Conv3x3<T>>,
    ) -> Result<Self> {
        if convs.is_empty() || convs.len() > architecture.conv_specs().len() {
            return Err(Error::parameter(format!(
                "{architecture} has {} convolutions, got {}",
                architecture.conv_specs().len(),
                convs.len()
            )));
        }
        let mut cin = 3;
        for (i, c) in convs.iter().enumerate() {
            if c.in_channels() != cin {
                return Err(Error::parameter(format!(
                    "convolution {i} takes {} channels but receives {cin}",
                    c.in_channels()
                )));
            }
            cin = c.out_channels();
        }
        Ok(Vgg {
            architecture,
            convention,
            pooling,
            convs,
        })
    }

    /// VGG16 or VGG19.
    pub fn architecture(&self) -> Architecture {
        self.architecture
    }
    /// The input convention of its weights.
    pub fn convention(&self) -> InputConvention {
        self.convention
    }
    /// The pooling it was built with.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    fn stages(&self) -> Vec<Stage> {
        let mut stages = Vec::new();
        let mut conv = 0;
        for (b, &n) in self.architecture.convs_per_block().iter().enumerate() {
            for i in 0..n {
                stages.push(Stage::Conv {
                    conv,
                    block: b + 1,
                    index: i + 1,
                });
                conv += 1;
            }
            stages.push(Stage::Pool { block: b + 1 });
        }
        stages
    }

    /// The stage computing `layer`, and whether the layer is the pre-ReLU convolution output.
    fn stage_of(&self, stages: &[Stage], layer: Layer) -> Result<(usize, bool)> {
        self.architecture.layer_position(layer)?;
        let found = stages.iter().position(|s| match (*s, layer) {
            (Stage::Conv { block, index, .. }, Layer::Conv { block: b, index: i })
            | (Stage::Conv { block, index, .. }, Layer::Relu { block: b, index: i }) => {
                block == b && index == i
            }
            (Stage::Pool { block }, Layer::Pool { block: b }) => block == b,
            _ => false,
        });
        // layer_position succeeded, so the stage exists.
        let s = found.ok_or_else(|| Error::parameter(format!("no stage computes {layer}")))?;
        Ok((s, matches!(layer, Layer::Conv { .. })))
    }

    /// Buffers for `h × w` images that can serve the given loss layers. Fails for an unknown layer
    /// or an image too small to reach the deepest layer.
    pub fn workspace(&self, h: usize, w: usize, taps: &[Layer]) -> Result<Workspace<T>> {
        let plan = self.plan(h, w, taps)?;
        let map = |shape: &(usize, usize, usize)| FeatureMap::zeros(shape.0, shape.1, shape.2);
        let kept = (plan.shapes.iter().zip(&plan.keep))
            .map(|(shape, &k)| k.then(|| map(shape)))
            .collect();
        let pre = (plan.shapes.iter().zip(&plan.keep_pre))
            .map(|(shape, &k)| k.then(|| map(shape)))
            .collect();
        let masks = (plan.shapes.iter().zip(&plan.stages))
            .map(|(shape, stage)| {
                matches!(stage, Stage::Conv { .. })
                    .then(|| ReluMask::new(shape.0, shape.1, shape.2))
            })
            .collect();
        let scratch = plan.scratch_elements();
        let ws = Workspace {
            input: FeatureMap::zeros(h, w, 3),
            kept,
            pre,
            masks,
            scratch: [
                FeatureMap::with_capacity(scratch),
                FeatureMap::with_capacity(scratch),
            ],
            plan,
        };
        tracing::debug!(
            "workspace for {w}×{h} to {} stages: {:.0} MiB",
            ws.plan.stages.len(),
            ws.allocated_bytes() as f64 / (1 << 20) as f64
        );
        Ok(ws)
    }

    /// Re-plans `ws` for `h × w` images with the same loss layers, reusing its buffers (they
    /// grow only if the new size needs more): tiles of one image differ in size at its edges.
    pub fn reshape_workspace(&self, ws: &mut Workspace<T>, h: usize, w: usize) -> Result<()> {
        if (h, w) == (ws.plan.h, ws.plan.w) {
            return Ok(());
        }
        let taps = ws.taps();
        let plan = self.plan(h, w, &taps)?;
        let fit =
            |slot: &mut Option<FeatureMap<T>>, keep: bool, shape: &(usize, usize, usize)| match (
                slot.as_mut(),
                keep,
            ) {
                (Some(f), true) => f.reshape(shape.0, shape.1, shape.2),
                (None, true) => *slot = Some(FeatureMap::zeros(shape.0, shape.1, shape.2)),
                (_, false) => *slot = None,
            };
        for (s, shape) in plan.shapes.iter().enumerate() {
            fit(&mut ws.kept[s], plan.keep[s], shape);
            fit(&mut ws.pre[s], plan.keep_pre[s], shape);
            if let Some(m) = ws.masks[s].as_mut() {
                *m = ReluMask::new(shape.0, shape.1, shape.2);
            }
        }
        // The input's border must read as zero padding; kernels rewrite every other buffer whole.
        ws.input.reshape(h, w, 3);
        ws.input.zero();
        ws.plan = plan;
        Ok(())
    }

    /// Bytes [`Vgg::workspace`] would allocate, without allocating: for refusing absurd sizes.
    pub fn workspace_bytes(&self, h: usize, w: usize, taps: &[Layer]) -> Result<usize> {
        Ok(self.plan(h, w, taps)?.bytes::<T>())
    }

    /// The outputs at `layers` of an `h × w` RGB image (row-major, 0–255): what content and
    /// style targets are made of.
    pub fn features_of_image(
        &self,
        rgb: &[T],
        h: usize,
        w: usize,
        layers: &[Layer],
    ) -> Result<Vec<FeatureMap<T>>> {
        self.visit_features_of_image(rgb, h, w, layers, |_, f| Ok(f.clone()))
    }

    /// `visit(layer, output)` for each of `layers` of an `h × w` RGB image, in order, without
    /// copying the outputs: a style target needs only a Gram matrix of each, and copies of the
    /// shallow layers would be most of a large image's memory.
    pub fn visit_features_of_image<R>(
        &self,
        rgb: &[T],
        h: usize,
        w: usize,
        layers: &[Layer],
        mut visit: impl FnMut(Layer, &FeatureMap<T>) -> Result<R>,
    ) -> Result<Vec<R>> {
        if rgb.len() != h * w * 3 {
            return Err(Error::parameter(format!(
                "{} values for a {w}×{h} RGB image",
                rgb.len()
            )));
        }
        let mut ws = self.workspace(h, w, layers)?;
        self.convention.to_network(rgb, ws.input_mut());
        self.forward(&mut ws);
        layers
            .iter()
            .map(|&l| visit(l, self.features(&ws, l)?))
            .collect()
    }

    fn plan(&self, h: usize, w: usize, taps: &[Layer]) -> Result<Plan> {
        if h == 0 || w == 0 {
            return Err(Error::parameter(format!("image size {w}×{h} is empty")));
        }
        if taps.is_empty() {
            return Err(Error::parameter("no loss layers given"));
        }
        let all = self.stages();
        let mut located = Vec::new();
        for &t in taps {
            located.push((t, self.stage_of(&all, t)?));
        }
        let depth = located.iter().map(|(_, (s, _))| s + 1).max().unwrap_or(0);
        let stages = all[..depth].to_vec();
        let convs_needed = stages
            .iter()
            .filter(|s| matches!(s, Stage::Conv { .. }))
            .count();
        if convs_needed > self.convs.len() {
            let deepest = located.iter().max_by_key(|(_, (s, _))| *s).map(|(l, _)| *l);
            return Err(Error::parameter(format!(
                "this network was built with its first {} convolutions only, too few for {}",
                self.convs.len(),
                deepest.map(|l| l.to_string()).unwrap_or_default()
            )));
        }
        let mut shapes = Vec::with_capacity(depth);
        let (mut hh, mut ww) = (h, w);
        for st in &stages {
            match *st {
                Stage::Conv { conv, .. } => shapes.push((hh, ww, self.convs[conv].out_channels())),
                Stage::Pool { block } => {
                    let c = shapes
                        .last()
                        .map(|s: &(usize, usize, usize)| s.2)
                        .unwrap_or(3);
                    if hh < 2 || ww < 2 {
                        return Err(Error::parameter(format!(
                            "a {w}×{h} image is too small to reach pool{block} \
                             (it halves the size {block} times)"
                        )));
                    }
                    hh /= 2;
                    ww /= 2;
                    shapes.push((hh, ww, c));
                }
            }
        }
        let mut keep_pre = vec![false; depth];
        let mut keep = vec![false; depth];
        for (_, (s, is_conv)) in &located {
            keep_pre[*s] |= *is_conv;
            keep[*s] |= !*is_conv;
        }
        // Max pooling's backward routes each gradient to its window's maximum: it reads its input.
        if self.pooling == Pooling::Max {
            for (s, st) in stages.iter().enumerate() {
                if matches!(st, Stage::Pool { .. }) && s > 0 {
                    keep[s - 1] = true;
                }
            }
        }
        Ok(Plan {
            h,
            w,
            stages,
            shapes,
            keep,
            keep_pre,
            taps: located,
        })
    }

    /// Runs the network on `ws.input` (already in this network's input convention). Keeps the
    /// outputs losses read and each convolution's ReLU mask; every other output lives only until
    /// the next stage has read it.
    pub fn forward(&self, ws: &mut Workspace<T>) {
        let mut src = Slot::Input;
        for s in 0..ws.plan.stages.len() {
            let (h, w, c) = ws.plan.shapes[s];
            let dst = if ws.plan.keep[s] {
                Slot::Kept(s)
            } else {
                // Either scratch buffer but the one being read.
                Slot::Scratch(match src {
                    Slot::Scratch(k) => 1 - k,
                    _ => 0,
                })
            };
            let mut out = std::mem::take(ws.slot_mut(dst));
            out.reshape(h, w, c);
            let mut pre = ws.pre[s].take();
            let input = ws.slot(src);
            match ws.plan.stages[s] {
                Stage::Conv { conv, .. } => {
                    self.convs[conv].forward(input, &mut out, true, pre.as_mut());
                }
                Stage::Pool { .. } => pool_forward(self.pooling, input, &mut out),
            }
            if let Some(mask) = ws.masks[s].as_mut() {
                mask.record(&out);
            }
            ws.pre[s] = pre;
            *ws.slot_mut(dst) = out;
            src = dst;
        }
    }

    /// Floating-point operations of one forward pass over the workspace's layers (convolutions
    /// only, `2·H·W·Cin·Cout·9` each); the input gradient costs the same.
    pub fn forward_flops(&self, ws: &Workspace<T>) -> f64 {
        ws.plan
            .stages
            .iter()
            .zip(&ws.plan.shapes)
            .map(|(st, sh)| match *st {
                Stage::Conv { conv, .. } => self.convs[conv].flops(sh.0, sh.1),
                Stage::Pool { .. } => 0.0,
            })
            .sum()
    }

    /// Back-propagates to the network input. At every tapped layer `add_grad(layer, features,
    /// grad)` must add the losses' gradient w.r.t. that layer's output into `grad`. Returns the
    /// gradient w.r.t. `ws.input`. Requires a [`Vgg::forward`] on the same input first; reads only
    /// the kept outputs and the ReLU masks, and walks down with the gradient in the two scratch
    /// buffers, whose forward contents are dead by then.
    pub fn backward<'w>(
        &self,
        ws: &'w mut Workspace<T>,
        add_grad: &mut LossGradients<'_, T>,
    ) -> &'w FeatureMap<T> {
        let Workspace {
            plan,
            input,
            kept,
            pre,
            masks,
            scratch,
        } = ws;
        let depth = plan.stages.len();
        let taps_at = |s: usize,
                       want_pre: bool,
                       g: &mut FeatureMap<T>,
                       add_grad: &mut LossGradients<'_, T>|
         -> bool {
            let mut any = false;
            for &(layer, (ts, is_pre)) in &plan.taps {
                if ts == s && is_pre == want_pre {
                    let kept_features = if is_pre { &pre[s] } else { &kept[s] };
                    // The plan keeps every tapped output.
                    if let Some(f) = kept_features {
                        add_grad(layer, f, g);
                        any = true;
                    }
                }
            }
            any
        };

        // Seed: gradient w.r.t. the deepest stage's output (pre-ReLU for a convolution).
        let [first, second] = scratch;
        let (mut cur, mut prev) = (first, second);
        let last = depth - 1;
        let (h, w, c) = plan.shapes[last];
        cur.reshape(h, w, c);
        cur.zero();
        taps_at(last, false, cur, add_grad);
        if let Some(mask) = &masks[last] {
            for y in 0..h {
                mask.apply_row(y, cur.pixel_row_mut(y));
            }
            taps_at(last, true, cur, add_grad);
        }

        for s in (0..depth).rev() {
            let (h, w, c) = if s == 0 {
                (input.height(), input.width(), 3)
            } else {
                plan.shapes[s - 1]
            };
            prev.reshape(h, w, c);
            let accumulate = s > 0 && {
                prev.zero();
                taps_at(s - 1, false, prev, add_grad)
            };
            let mask = if s > 0 { masks[s - 1].as_ref() } else { None };
            match plan.stages[s] {
                Stage::Conv { conv, .. } => {
                    self.convs[conv].backward_input(cur, prev, accumulate, mask)
                }
                Stage::Pool { .. } => {
                    let forward_input = if s > 0 { kept[s - 1].as_ref() } else { None };
                    pool_backward(self.pooling, forward_input, cur, prev, accumulate, mask)
                }
            }
            if mask.is_some() {
                taps_at(s - 1, true, prev, add_grad);
            }
            std::mem::swap(&mut cur, &mut prev);
        }
        cur
    }

    /// The output of `layer` from the last [`Vgg::forward`]; valid until the next one.
    pub fn features<'w>(&self, ws: &'w Workspace<T>, layer: Layer) -> Result<&'w FeatureMap<T>> {
        let (s, is_pre) = ws
            .plan
            .taps
            .iter()
            .find(|(l, _)| *l == layer)
            .map(|(_, loc)| *loc)
            .ok_or_else(|| {
                Error::parameter(format!("layer {layer} is not among the workspace's taps"))
            })?;
        let kept = if is_pre { &ws.pre[s] } else { &ws.kept[s] };
        kept.as_ref()
            .ok_or_else(|| Error::parameter(format!("layer {layer} is not kept")))
    }
}

/// Where a stage's output lives during [`Vgg::forward`].
#[derive(Clone, Copy, Debug, PartialEq)]
enum Slot {
    Input,
    Kept(usize),
    Scratch(usize),
}

#[derive(Clone, Debug)]
struct Plan {
    h: usize,
    w: usize,
    stages: Vec<Stage>,
    /// Output (h, w, c) per stage.
    shapes: Vec<(usize, usize, usize)>,
    /// Whether a stage's output is kept after the next stage has read it: a loss reads it, or
    /// max pooling's backward does.
    keep: Vec<bool>,
    /// Whether a stage keeps its pre-ReLU output (a loss reads `conv{b}_{i}`).
    keep_pre: Vec<bool>,
    /// Each tapped layer with (stage, reads the pre-ReLU output).
    taps: Vec<(Layer, (usize, bool))>,
}

impl Plan {
    fn padded(shape: &(usize, usize, usize)) -> usize {
        (shape.0 + 2) * (shape.1 + 2) * shape.2
    }

    /// Elements of each scratch buffer: the largest stage output or the input, since the
    /// forward pass writes unkept outputs there and the backward pass every gradient.
    fn scratch_elements(&self) -> usize {
        let input = 3 * (self.h + 2) * (self.w + 2);
        self.shapes.iter().map(Self::padded).fold(input, usize::max)
    }

    /// Bytes a workspace for this plan holds: input, kept outputs (pre-ReLU ones too), the
    /// two scratch buffers and the ReLU masks.
    fn bytes<T>(&self) -> usize {
        let kept: usize = (self.shapes.iter())
            .zip(self.keep.iter().zip(&self.keep_pre))
            .map(|(shape, (&k, &p))| Self::padded(shape) * (k as usize + p as usize))
            .sum();
        let elements = 3 * (self.h + 2) * (self.w + 2) + kept + 2 * self.scratch_elements();
        let masks: usize = (self.shapes.iter().zip(&self.stages))
            .filter(|(_, st)| matches!(st, Stage::Conv { .. }))
            .map(|(sh, _)| ReluMask::bytes_for(sh.0, sh.1, sh.2))
            .sum();
        elements * std::mem::size_of::<T>() + masks
    }
}

/// Buffers for one image size: the input, the outputs that losses (or max pooling's backward)
/// read, a ReLU mask per convolution, and two scratch buffers for everything else, allocated
/// once and reused every iteration.
#[derive(Clone, Debug)]
pub struct Workspace<T = f32> {
    plan: Plan,
    input: FeatureMap<T>,
    /// Per stage, its output where the plan keeps it.
    kept: Vec<Option<FeatureMap<T>>>,
    /// Per stage, its pre-ReLU output where a loss reads it.
    pre: Vec<Option<FeatureMap<T>>>,
    /// Per convolution stage, where its ReLU let values through: all the backward pass needs of
    /// an output nobody keeps.
    masks: Vec<Option<ReluMask>>,
    /// The forward pass alternates unkept outputs between these; the backward pass walks down
    /// with the gradient in them.
    scratch: [FeatureMap<T>; 2],
}

impl<T: Scalar> Workspace<T> {
    /// Image height these buffers are for.
    pub fn height(&self) -> usize {
        self.plan.h
    }
    /// Image width these buffers are for.
    pub fn width(&self) -> usize {
        self.plan.w
    }
    /// The network input (3 channels, in the weights' convention) that `forward` reads.
    pub fn input(&self) -> &FeatureMap<T> {
        &self.input
    }
    /// The network's input, to fill (in its input convention) before a forward pass.
    pub fn input_mut(&mut self) -> &mut FeatureMap<T> {
        &mut self.input
    }
    /// The layers this workspace serves, in the order given.
    pub fn taps(&self) -> Vec<Layer> {
        self.plan.taps.iter().map(|(l, _)| *l).collect()
    }
    /// Bytes allocated by this workspace.
    pub fn allocated_bytes(&self) -> usize {
        let maps = |v: &[Option<FeatureMap<T>>]| {
            v.iter()
                .flatten()
                .map(FeatureMap::allocated_bytes)
                .sum::<usize>()
        };
        self.input.allocated_bytes()
            + maps(&self.kept)
            + maps(&self.pre)
            + self
                .masks
                .iter()
                .flatten()
                .map(ReluMask::allocated_bytes)
                .sum::<usize>()
            + self
                .scratch
                .iter()
                .map(FeatureMap::allocated_bytes)
                .sum::<usize>()
    }

    fn slot(&self, slot: Slot) -> &FeatureMap<T> {
        match slot {
            Slot::Input => &self.input,
            // The forward pass fills a kept slot before any stage reads it.
            Slot::Kept(s) => self.kept[s].as_ref().unwrap_or(&self.input),
            Slot::Scratch(k) => &self.scratch[k],
        }
    }

    fn slot_mut(&mut self, slot: Slot) -> &mut FeatureMap<T> {
        match slot {
            Slot::Input => &mut self.input,
            Slot::Kept(s) => self.kept[s].get_or_insert_with(FeatureMap::default),
            Slot::Scratch(k) => &mut self.scratch[k],
        }
    }
}
