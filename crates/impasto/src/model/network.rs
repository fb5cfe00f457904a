//! A VGG network that runs forward and backward (input gradient only) up to the deepest layer any
//! loss reads, on buffers allocated once per image size.

use crate::core::{pool_backward, pool_forward, Conv3x3, FeatureMap, Pooling, Scalar};
use crate::weights::VggWeights;
use crate::{Error, Result};

use super::{Architecture, InputConvention, Layer};

/// Called by [`Vgg::backward`] at each tapped layer with the layer's output and the gradient
/// buffer for it, into which the losses add their gradient.
pub type LossGradients<'a, T> = dyn FnMut(Layer, &FeatureMap<T>, &mut FeatureMap<T>) + 'a;

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
    pub fn new(weights: &VggWeights, pooling: Pooling) -> Self {
        let convs = weights
            .architecture
            .conv_specs()
            .iter()
            .zip(&weights.convs)
            .map(|(s, p)| Conv3x3::new(s.in_channels, s.out_channels, &p.weight, &p.bias))
            .collect();
        Vgg {
            architecture: weights.architecture,
            convention: weights.convention,
            pooling,
            convs,
        }
    }

    /// A network of the given topology with other channel counts (tests use tiny random ones).
    /// `convs` must chain: 3 input channels, each one's outputs the next one's inputs.
    pub fn from_convs(
        architecture: Architecture,
        convention: InputConvention,
        pooling: Pooling,
        convs: Vec<Conv3x3<T>>,
    ) -> Result<Self> {
        if convs.len() != architecture.conv_specs().len() {
            return Err(Error::parameter(format!(
                "{architecture} needs {} convolutions, got {}",
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
    pub fn set_pooling(&mut self, pooling: Pooling) {
        self.pooling = pooling;
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
        let mut biggest = 3 * (h + 2) * (w + 2);
        for (s, shape) in plan.shapes.iter().enumerate() {
            act.push(FeatureMap::zeros(shape.0, shape.1, shape.2));
            pre.push(plan.keep_pre[s].then(|| FeatureMap::zeros(shape.0, shape.1, shape.2)));
            biggest = biggest.max((shape.0 + 2) * (shape.1 + 2) * shape.2);
        }
        let grad_buffer = || FeatureMap::with_capacity(biggest);
        Ok(Workspace {
            plan,
            input: FeatureMap::zeros(h, w, 3),
            act,
            pre,
            grad: [grad_buffer(), grad_buffer()],
        })
    }

    /// Bytes [`Vgg::workspace`] would allocate, without allocating: for refusing absurd sizes.
    pub fn workspace_bytes(&self, h: usize, w: usize, taps: &[Layer]) -> Result<usize> {
        let plan = self.plan(h, w, taps)?;
        let size = |s: &(usize, usize, usize)| (s.0 + 2) * (s.1 + 2) * s.2;
        let mut elems = 3 * (h + 2) * (w + 2);
        let mut biggest = elems;
        for (s, shape) in plan.shapes.iter().enumerate() {
            let n = size(shape);
            elems += n * if plan.keep_pre[s] { 2 } else { 1 };
            biggest = biggest.max(n);
        }
        Ok((elems + 2 * biggest) * std::mem::size_of::<T>())
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
    /// gradient w.r.t. `ws.input`. Requires a [`Vgg::forward`] on the same input first.
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
        } = ws;
        let [cur, prev] = grad;
        let depth = plan.stages.len();
        let mut taps_at = |s: usize, want_pre: bool, g: &mut FeatureMap<T>| -> bool {
            let mut any = false;
            for &(layer, (ts, is_pre)) in &plan.taps {
                if ts == s && is_pre == want_pre {
                    let f = if want_pre {
                        pre[s].as_ref().unwrap_or(&act[s])
                    } else {
                        &act[s]
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
        cur.reshape(h, w, c);
        cur.zero();
        taps_at(last, false, cur);
        if let Stage::Conv { .. } = plan.stages[last] {
            mask_in_place(cur, &act[last]);
            taps_at(last, true, cur);
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
                taps_at(s - 1, false, prev)
            };
            let below_is_conv = s > 0 && matches!(plan.stages[s - 1], Stage::Conv { .. });
            let mask = below_is_conv.then(|| &act[s - 1]);
            match plan.stages[s] {
                Stage::Conv { conv, .. } => {
                    self.convs[conv].backward_input(cur, prev, accumulate, mask)
                }
                Stage::Pool { .. } => {
                    pool_backward(self.pooling, &act[s - 1], cur, prev, accumulate, mask)
                }
            }
            if below_is_conv {
                taps_at(s - 1, true, prev);
            }
            std::mem::swap(cur, prev);
        }
        &*cur
    }

    /// The output of `layer` from the last [`Vgg::forward`].
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

/// Buffers for one image size: the input, every stage's output, and two gradient buffers that
/// take turns as the backward pass walks down.
#[derive(Clone, Debug)]
pub struct Workspace<T = f32> {
    plan: Plan,
    input: FeatureMap<T>,
    act: Vec<FeatureMap<T>>,
    pre: Vec<Option<FeatureMap<T>>>,
    grad: [FeatureMap<T>; 2],
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
            + self
                .grad
                .iter()
                .map(FeatureMap::allocated_bytes)
                .sum::<usize>()
    }
}
