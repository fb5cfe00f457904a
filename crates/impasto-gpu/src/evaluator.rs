//! The objective and its gradient on the device: the whole network, its activations, the
//! targets and the gradients stay there for the whole run; each evaluation uploads the image,
//! records the schedule built once, and reads back the image's gradient and the losses' partial
//! sums in one copy.

use std::sync::Arc;

use impasto::backend::Evaluator;
use impasto::loss::{total_variation, LossParts, LossWeights, Objective};
use impasto::model::{Architecture, Layer};
use impasto::{Error, ErrorKind, Result};

use crate::buffer::device_error;
use crate::kernels::{Dispatch, Kernels, PARTIALS_PER_SLOT};
use crate::network::{Forward, GpuNetwork};
use crate::plan::{stage_of, Stage};
use crate::{Gpu, GpuBuffer};

/// How a slot of partial sums turns into a loss part.
#[derive(Clone, Copy, Debug)]
enum Slot {
    /// `weight · ½ Σ d²`.
    Content { weight: f64 },
    /// `weight · Σ D² / (4 n²)`.
    Style { weight: f64, channels: usize },
}

pub(crate) struct GpuEvaluator {
    gpu: Arc<Gpu>,
    fwd: Forward,
    /// The losses' forward work (partial sums, Gram differences) then the backward pass.
    rest: Vec<Dispatch>,
    grad_rgb: GpuBuffer,
    sums: GpuBuffer,
    staging: wgpu::Buffer,
    slots: Vec<Slot>,
    weights: LossWeights,
    layers: Vec<Layer>,
    /// Height, width.
    size: (usize, usize),
    /// Targets, Gram scratch, gradients: held for the bind groups' sake and for the byte count.
    held: Vec<GpuBuffer>,
}

/// A loss's buffers for the backward pass: which stage it reads and whether before the ReLU.
struct Tap<'a> {
    stage: usize,
    pre: bool,
    grad: Box<dyn Fn(&GpuBuffer) -> Dispatch + 'a>,
}

impl GpuEvaluator {
    pub(crate) fn new(
        net: &GpuNetwork,
        objective: Objective,
        (w, h): (usize, usize),
    ) -> Result<Self> {
        let layers = objective.layers();
        let arch: Architecture = impasto::backend::Network::architecture(net);
        let fwd = net.forward_pass((w, h), &layers)?;
        let (g, k) = (&*net.gpu, &*net.kernels);
        let weights = objective.weights();
        let (alpha, beta) = (weights.content, weights.style);
        let n_slots = objective.content_losses().len() + objective.style_losses().len();
        let sums = g.zeros(n_slots.max(1) * PARTIALS_PER_SLOT, "loss partial sums");
        let mut held = Vec::new();
        let mut rest = Vec::new();
        let mut slots = Vec::new();

        // The losses' targets and forward work; their gradient dispatches are made later, once
        // the gradient buffers exist, from what is kept here.
        struct Pending {
            stage: usize,
            pre: bool,
            kind: PendingKind,
        }
        enum PendingKind {
            Content {
                target: usize,
                n: usize,
                scale: f32,
            },
            Style {
                diff: usize,
                weight: Option<usize>,
                pixels: usize,
                c: usize,
                scale: f32,
            },
        }
        let mut pending = Vec::new();
        for loss in objective.content_losses() {
            let layer = loss.layer();
            let (f, (sh, sw, c)) = fwd.layer(arch, layer)?;
            let t = loss.target();
            if (t.height(), t.width(), t.channels()) != (sh, sw, c) {
                return Err(Error::new(
                    ErrorKind::Parameter,
                    format!(
                        "the content target at {layer} is {}×{}×{}, the image gives {sw}×{sh}×{c}",
                        t.width(),
                        t.height(),
                        t.channels()
                    ),
                ));
            }
            let target: Vec<f32> = t.interior().collect();
            let tb = g.upload(&target, "content target");
            rest.push(k.squared_distance(f, Some(&tb), &sums, sh * sw * c, slots.len()));
            slots.push(Slot::Content {
                weight: loss.weight(),
            });
            let (stage, pre) = stage_of(arch, layer)?;
            pending.push(Pending {
                stage,
                pre,
                kind: PendingKind::Content {
                    target: held.len(),
                    n: sh * sw * c,
                    scale: (alpha * loss.weight()) as f32,
                },
            });
            held.push(tb);
        }
        for loss in objective.style_losses() {
            let layer = loss.layer();
            let (f, (sh, sw, c)) = fwd.layer(arch, layer)?;
            if loss.channels() != c {
                return Err(Error::new(
                    ErrorKind::Parameter,
                    format!(
                        "the style target at {layer} has {} channels, the layer {c}",
                        loss.channels()
                    ),
                ));
            }
            let mass = match loss.mask() {
                None => (sh * sw) as f64,
                Some(m) => {
                    if (m.height, m.width) != (sh, sw) {
                        return Err(Error::new(
                            ErrorKind::Parameter,
                            format!(
                                "the style mask at {layer} is {}×{}, the layer {sw}×{sh}",
                                m.width, m.height
                            ),
                        ));
                    }
                    m.mass()
                }
            };
            slots.push(Slot::Style {
                weight: loss.weight(),
                channels: c,
            });
            if mass == 0.0 {
                // Nothing of the region reaches this layer: no loss, no gradient (as on the CPU).
                continue;
            }
            let weight = loss.mask().map(|m| {
                held.push(g.upload(&m.values, "style mask"));
                held.len() - 1
            });
            let splits = Kernels::gram_splits(sh * sw, c);
            let partial = g.zeros(splits * c * c, "Gram partials");
            let target = g.upload(loss.target(), "style target");
            let diff = g.zeros(c * c, "Gram difference");
            rest.push(k.gram(f, weight.map(|i| &held[i]), &partial, (sh * sw, c)));
            rest.push(k.style_finish(&partial, &target, &diff, (c, splits), (1.0 / mass) as f32));
            rest.push(k.squared_distance(&diff, None, &sums, c * c, slots.len() - 1));
            let n2 = (c * c) as f64;
            let (stage, pre) = stage_of(arch, layer)?;
            pending.push(Pending {
                stage,
                pre,
                kind: PendingKind::Style {
                    diff: held.len() + 2,
                    weight,
                    pixels: sh * sw,
                    c,
                    scale: (beta * loss.weight() / (n2 * mass)) as f32,
                },
            });
            held.extend([partial, target, diff]);
        }

        // The backward pass: two gradient buffers alternate, each sized for the largest stage.
        let largest = fwd
            .shapes
            .iter()
            .map(|(_, (a, b, c))| a * b * c)
            .max()
            .unwrap_or(0);
        let grads = [
            g.zeros(largest, "gradient A"),
            g.zeros(largest, "gradient B"),
        ];
        let grad_input = g.zeros(h * w * 3, "input gradient");
        let grad_rgb = g.zeros(h * w * 3, "image gradient");
        let taps: Vec<Tap<'_>> = pending
            .iter()
            .map(|p| {
                let f = if p.pre {
                    fwd.pre[p.stage].as_ref().expect("kept pre-ReLU output")
                } else {
                    &fwd.act[p.stage]
                };
                let held = &held;
                let grad: Box<dyn Fn(&GpuBuffer) -> Dispatch> = match p.kind {
                    PendingKind::Content { target, n, scale } => {
                        Box::new(move |gb| k.content_gradient(f, &held[target], gb, n, scale))
                    }
                    PendingKind::Style {
                        diff,
                        weight,
                        pixels,
                        c,
                        scale,
                    } => Box::new(move |gb| {
                        k.gram_gradient(
                            f,
                            &held[diff],
                            weight.map(|i| &held[i]),
                            gb,
                            (pixels, c),
                            scale,
                        )
                    }),
                };
                Tap {
                    stage: p.stage,
                    pre: p.pre,
                    grad,
                }
            })
            .collect();
        let losses_at = |s: usize, pre: bool, gb: &GpuBuffer| -> Vec<Dispatch> {
            taps.iter()
                .filter(|t| t.stage == s && t.pre == pre)
                .map(|t| (t.grad)(gb))
                .collect()
        };
        let is_conv = |s: usize| matches!(fwd.shapes[s].0, Stage::Conv { .. });
        let elements = |s: usize| {
            let (a, b, c) = fwd.shapes[s].1;
            a * b * c
        };
        let deepest = fwd.shapes.len() - 1;
        let mut cur = 0;
        rest.push(k.fill_zero(&grads[cur], elements(deepest)));
        rest.extend(losses_at(deepest, false, &grads[cur]));
        if is_conv(deepest) {
            rest.push(k.mask(&fwd.act[deepest], &grads[cur], elements(deepest)));
        }
        rest.extend(losses_at(deepest, true, &grads[cur]));
        for s in (1..=deepest).rev() {
            let next = 1 - cur;
            let below = losses_at(s - 1, false, &grads[next]);
            let accumulate = !below.is_empty();
            if accumulate {
                rest.push(k.fill_zero(&grads[next], elements(s - 1)));
                rest.extend(below);
            }
            let mask = is_conv(s - 1).then(|| &fwd.act[s - 1]);
            let (sh, sw, _) = fwd.shapes[s].1;
            match fwd.shapes[s].0 {
                Stage::Conv { conv, .. } => rest.push(k.conv_backward(
                    &net.convs[conv],
                    &grads[cur],
                    &grads[next],
                    (sh, sw),
                    accumulate,
                    mask,
                )),
                Stage::Pool { .. } => {
                    let (ih, iw, ic) = fwd.shapes[s - 1].1;
                    rest.push(k.pool_backward(
                        impasto::backend::Network::pooling(net),
                        &fwd.act[s - 1],
                        &grads[cur],
                        &grads[next],
                        (ih, iw, ic),
                        accumulate,
                        mask,
                    ));
                }
            }
            rest.extend(losses_at(s - 1, true, &grads[next]));
            cur = next;
        }
        match fwd.shapes[0].0 {
            Stage::Conv { conv, .. } => rest.push(k.conv_backward(
                &net.convs[conv],
                &grads[cur],
                &grad_input,
                (h, w),
                false,
                None,
            )),
            Stage::Pool { .. } => unreachable!("VGG starts with a convolution"),
        }
        rest.push(k.convention(
            impasto::backend::Network::convention(net),
            &grad_input,
            &grad_rgb,
            h * w,
            true,
        ));
        drop(taps);
        held.extend(grads);
        held.push(grad_input);

        let staging = g.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("evaluation read-back"),
            size: grad_rgb.bytes() + sums.bytes(),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(GpuEvaluator {
            gpu: Arc::clone(&net.gpu),
            fwd,
            rest,
            grad_rgb,
            sums,
            staging,
            slots,
            weights,
            layers,
            size: (h, w),
            held,
        })
    }

    fn check(&self, x: &[f32]) -> Result<()> {
        let (h, w) = self.size;
        if x.len() != h * w * 3 {
            return Err(Error::new(
                ErrorKind::Parameter,
                format!("{} values for a {w}×{h} RGB image", x.len()),
            ));
        }
        Ok(())
    }
}

impl Evaluator for GpuEvaluator {
    fn evaluate(&mut self, x: &[f32], grad: &mut [f32]) -> Result<LossParts> {
        self.check(x)?;
        if grad.len() != x.len() {
            return Err(Error::new(
                ErrorKind::Parameter,
                format!(
                    "a gradient of {} values for an image of {}",
                    grad.len(),
                    x.len()
                ),
            ));
        }
        let g = &self.gpu;
        g.write(&self.fwd.rgb, x);
        let mut enc = g.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for d in self.fwd.dispatches.iter().chain(&self.rest) {
                d.record(&mut pass);
            }
        }
        let grad_bytes = self.grad_rgb.bytes();
        enc.copy_buffer_to_buffer(&self.grad_rgb.buffer, 0, &self.staging, 0, grad_bytes);
        enc.copy_buffer_to_buffer(
            &self.sums.buffer,
            0,
            &self.staging,
            grad_bytes,
            self.sums.bytes(),
        );
        g.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        self.staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        g.wait()?;
        rx.recv()
            .map_err(|_| device_error("the read-back was dropped"))?
            .map_err(|e| device_error("reading back from the GPU failed").with_source(e))?;
        let mut parts = LossParts::default();
        {
            let view = self
                .staging
                .get_mapped_range(..)
                .map_err(|e| device_error("mapping the read-back failed").with_source(e))?;
            let all: &[f32] = bytemuck::cast_slice(&view);
            grad.copy_from_slice(&all[..grad.len()]);
            let sums = &all[(grad_bytes / 4) as usize..];
            for (i, slot) in self.slots.iter().enumerate() {
                let s: f64 = sums[i * PARTIALS_PER_SLOT..(i + 1) * PARTIALS_PER_SLOT]
                    .iter()
                    .map(|&v| v as f64)
                    .sum();
                match *slot {
                    Slot::Content { weight } => parts.content += weight * 0.5 * s,
                    Slot::Style { weight, channels } => {
                        parts.style += weight * s / (4.0 * (channels * channels) as f64)
                    }
                }
            }
        }
        self.staging.unmap();
        parts.total = self.weights.content * parts.content + self.weights.style * parts.style;
        if self.weights.tv > 0.0 {
            // On the host: the image and its gradient are here anyway, and it is h·w·6 flops.
            let (h, w) = self.size;
            parts.tv = total_variation(x, h, w, 3, grad, self.weights.tv as f32);
            parts.total += self.weights.tv * parts.tv;
        }
        Ok(parts)
    }

    fn layers(&self) -> Vec<Layer> {
        self.layers.clone()
    }

    fn allocated_bytes(&self) -> u64 {
        self.fwd.bytes()
            + self.grad_rgb.bytes()
            + self.sums.bytes()
            + self.held.iter().map(GpuBuffer::bytes).sum::<u64>()
    }

    fn forward_only(&mut self, x: &[f32]) -> Result<bool> {
        self.check(x)?;
        self.gpu.write(&self.fwd.rgb, x);
        self.gpu.run(&self.fwd.dispatches);
        self.gpu.wait()?;
        Ok(true)
    }
}
