//! A VGG network that runs forward and backward (input gradient only) up to the deepest layer any
//! loss reads, on buffers allocated once per image size.

use crate::core::{
    pool_backward, pool_forward, Conv3x3, ConvAlgorithm, FeatureMap, Pooling, Scalar, WinogradTile,
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
    pub pooling: Pooling,
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
        weights.validate(std::path::Path::new(&weights.source))?;
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

    pub fn architecture(&self) -> Architecture {
        self.architecture
    }
    pub fn convention(&self) -> InputConvention {
        self.convention
    }
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
        let mut act = Vec::with_capacity(plan.stages.len());
        let mut pre = Vec::with_capacity(plan.stages.len());
        for (s, shape) in plan.shapes.iter().enumerate() {
            act.push(FeatureMap::zeros(shape.0, shape.1, shape.2));
            pre.push(plan.keep_pre[s].then(|| FeatureMap::zeros(shape.0, shape.1, shape.2)));
        }
        let (grad, spare) = plan.gradient_buffer_sizes();
        tracing::debug!(
            "workspace for {w}×{h} to {} stages: {:.0} MiB",
            plan.stages.len(),
            (plan.elements() * std::mem::size_of::<T>()) as f64 / (1 << 20) as f64
        );
        Ok(Workspace {
            input: FeatureMap::zeros(h, w, 3),
            act,
            pre,
            grad: FeatureMap::with_capacity(grad),
            spare: FeatureMap::with_capacity(spare),
            plan,
        })
    }

    /// Bytes [`Vgg::workspace`] would allocate, without allocating: for refusing absurd sizes.
    pub fn workspace_bytes(&self, h: usize, w: usize, taps: &[Layer]) -> Result<usize> {
        Ok(self.plan(h, w, taps)?.elements() * std::mem::size_of::<T>())
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
            .map(|&l| self.features(&ws, l).cloned())
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
        for (_, (s, is_conv)) in &located {
            keep_pre[*s] |= *is_conv;
        }
        Ok(Plan {
            h,
            w,
            stages,
            shapes,
            keep_pre,
            taps: located,
        })
    }

    /// Runs the network on `ws.input` (already in this network's input convention).
    pub fn forward(&self, ws: &mut Workspace<T>) {
        let Workspace {
            plan,
            input,
            act,
            pre,
            ..
        } = ws;
        // `backward` leaves gradients of other shapes in some of these buffers.
        for (a, shape) in act.iter_mut().zip(&plan.shapes) {
            a.reshape(shape.0, shape.1, shape.2);
        }
        for (s, stage) in plan.stages.iter().enumerate() {
            let (before, rest) = act.split_at_mut(s);
            let src = if s == 0 { &*input } else { &before[s - 1] };
            let out = &mut rest[0];
            match *stage {
                Stage::Conv { conv, .. } => {
                    self.convs[conv].forward(src, out, true, pre[s].as_mut());
                }
                Stage::Pool { .. } => pool_forward(self.pooling, src, out),
            }
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
    /// gradient w.r.t. `ws.input`. Requires a [`Vgg::forward`] on the same input first, and
    /// consumes its activations: a convolution's output buffer, once the walk down has passed
    /// it, holds the next gradient instead of a buffer of its own.
    pub fn backward<'w>(
        &self,
        ws: &'w mut Workspace<T>,
        add_grad: &mut LossGradients<'_, T>,
    ) -> &'w FeatureMap<T> {
        let Workspace {
            plan,
            input,
            act,
            pre,
            grad,
            spare,
        } = ws;
        let depth = plan.stages.len();
        let taps_at = |s: usize,
                       want_pre: bool,
                       act: &[FeatureMap<T>],
                       g: &mut FeatureMap<T>,
                       add_grad: &mut LossGradients<'_, T>|
         -> bool {
            let mut any = false;
            for &(layer, (ts, is_pre)) in &plan.taps {
                if ts == s && is_pre == want_pre {
                    let f = match (want_pre, &pre[s]) {
                        (true, Some(p)) => p,
                        _ => &act[s],
                    };
                    add_grad(layer, f, g);
                    any = true;
                }
            }
            any
        };

        // Seed: gradient w.r.t. the deepest stage's output (pre-ReLU for a convolution).
        let last = depth - 1;
        let (h, w, c) = plan.shapes[last];
        let mut cur = std::mem::take(grad);
        let mut cur_home = Home::Grad;
        cur.reshape(h, w, c);
        cur.zero();
        taps_at(last, false, act, &mut cur, add_grad);
        if let Stage::Conv { .. } = plan.stages[last] {
            mask_in_place(&mut cur, &act[last]);
            taps_at(last, true, act, &mut cur, add_grad);
        }

        for s in (0..depth).rev() {
            // Where the gradient below goes: a convolution's own output is dead once its
            // gradient exists (nothing further down reads it) and is large enough for its
            // input's gradient; a pooling's input is 4× its output, so it takes a spare buffer.
            let prev_home = match (plan.stages[s], cur_home) {
                (Stage::Conv { .. }, _) => Home::Act(s),
                (Stage::Pool { .. }, Home::Grad) => Home::Spare,
                (Stage::Pool { .. }, _) => Home::Grad,
            };
            let mut prev = std::mem::take(prev_home.slot(act, grad, spare));
            let (h, w, c) = if s == 0 {
                (input.height(), input.width(), 3)
            } else {
                plan.shapes[s - 1]
            };
            prev.reshape(h, w, c);
            let accumulate = s > 0 && {
                prev.zero();
                taps_at(s - 1, false, act, &mut prev, add_grad)
            };
            let below_is_conv = s > 0 && matches!(plan.stages[s - 1], Stage::Conv { .. });
            let mask = below_is_conv.then(|| &act[s - 1]);
            match plan.stages[s] {
                Stage::Conv { conv, .. } => {
                    self.convs[conv].backward_input(&cur, &mut prev, accumulate, mask)
                }
                Stage::Pool { .. } => {
                    pool_backward(self.pooling, &act[s - 1], &cur, &mut prev, accumulate, mask)
                }
            }
            if below_is_conv {
                taps_at(s - 1, true, act, &mut prev, add_grad);
            }
            *cur_home.slot(act, grad, spare) = std::mem::replace(&mut cur, prev);
            cur_home = prev_home;
        }
        // The input gradient ends in the first convolution's buffer, reshaped to 3 channels;
        // `forward` gives every buffer its activation shape back.
        let slot = cur_home.slot(act, grad, spare);
        *slot = cur;
        &*slot
    }

    /// The output of `layer` from the last [`Vgg::forward`] (not valid after a
    /// [`Vgg::backward`], which reuses the buffers).
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
        Ok(if is_pre {
            ws.pre[s].as_ref().unwrap_or(&ws.act[s])
        } else {
            &ws.act[s]
        })
    }
}

/// Which workspace buffer holds a gradient during [`Vgg::backward`].
#[derive(Clone, Copy, Debug, PartialEq)]
enum Home {
    Grad,
    Spare,
    Act(usize),
}

impl Home {
    fn slot<'a, T>(
        self,
        act: &'a mut [FeatureMap<T>],
        grad: &'a mut FeatureMap<T>,
        spare: &'a mut FeatureMap<T>,
    ) -> &'a mut FeatureMap<T> {
        match self {
            Home::Grad => grad,
            Home::Spare => spare,
            Home::Act(s) => &mut act[s],
        }
    }
}

fn mask_in_place<T: Scalar>(g: &mut FeatureMap<T>, act: &FeatureMap<T>) {
    for y in 0..g.height() {
        crate::core::apply_mask(g.pixel_row_mut(y), act.pixel_row(y));
    }
}

#[derive(Clone, Debug)]
struct Plan {
    h: usize,
    w: usize,
    stages: Vec<Stage>,
    /// Output (h, w, c) per stage.
    shapes: Vec<(usize, usize, usize)>,
    /// Whether a stage keeps its pre-ReLU output (a loss reads `conv{b}_{i}`).
    keep_pre: Vec<bool>,
    /// Each tapped layer with (stage, reads the pre-ReLU output).
    taps: Vec<(Layer, (usize, bool))>,
}

impl Plan {
    /// Values a workspace for this plan holds: input, stage outputs (twice where the pre-ReLU
    /// output is kept) and the gradient buffers.
    fn elements(&self) -> usize {
        let size = |s: &(usize, usize, usize)| (s.0 + 2) * (s.1 + 2) * s.2;
        let stages: usize = self
            .shapes
            .iter()
            .zip(&self.keep_pre)
            .map(|(shape, &pre)| size(shape) * if pre { 2 } else { 1 })
            .sum();
        let (grad, spare) = self.gradient_buffer_sizes();
        3 * (self.h + 2) * (self.w + 2) + stages + grad + spare
    }

    /// Elements of the gradient buffer (the largest stage output or the input) and of the
    /// spare one, needed only when the deepest stage is a pooling (see [`Vgg::backward`]).
    fn gradient_buffer_sizes(&self) -> (usize, usize) {
        let size = |s: &(usize, usize, usize)| (s.0 + 2) * (s.1 + 2) * s.2;
        let input = 3 * (self.h + 2) * (self.w + 2);
        let grad = self.shapes.iter().map(size).fold(input, usize::max);
        let depth = self.stages.len();
        let spare = match self.stages[depth - 1] {
            Stage::Pool { .. } if depth >= 2 => size(&self.shapes[depth - 2]),
            _ => 0,
        };
        (grad, spare)
    }
}

/// Buffers for one image size: the input, every stage's output, and the gradient buffer(s) that
/// the backward pass walks down with (reusing dead activations, see [`Vgg::backward`]).
#[derive(Clone, Debug)]
pub struct Workspace<T = f32> {
    plan: Plan,
    input: FeatureMap<T>,
    act: Vec<FeatureMap<T>>,
    pre: Vec<Option<FeatureMap<T>>>,
    grad: FeatureMap<T>,
    spare: FeatureMap<T>,
}

impl<T: Scalar> Workspace<T> {
    pub fn height(&self) -> usize {
        self.plan.h
    }
    pub fn width(&self) -> usize {
        self.plan.w
    }
    /// The network input (3 channels, in the weights' convention) that `forward` reads.
    pub fn input(&self) -> &FeatureMap<T> {
        &self.input
    }
    pub fn input_mut(&mut self) -> &mut FeatureMap<T> {
        &mut self.input
    }
    /// The layers this workspace serves, in the order given.
    pub fn taps(&self) -> Vec<Layer> {
        self.plan.taps.iter().map(|(l, _)| *l).collect()
    }
    /// Bytes allocated by this workspace.
    pub fn allocated_bytes(&self) -> usize {
        self.input.allocated_bytes()
            + self
                .act
                .iter()
                .map(FeatureMap::allocated_bytes)
                .sum::<usize>()
            + self
                .pre
                .iter()
                .flatten()
                .map(FeatureMap::allocated_bytes)
                .sum::<usize>()
            + self.grad.allocated_bytes()
            + self.spare.allocated_bytes()
    }
}
