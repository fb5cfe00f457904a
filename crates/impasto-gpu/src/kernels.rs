//! The compute kernels: one WGSL shader each (shaders/*.wgsl), and for each a function that
//! prepares one dispatch of it on given buffers. A [`Dispatch`] is built once (its parameters
//! and bind group) and recorded into as many command buffers as needed, so an evaluator builds
//! its whole schedule once per run and only records it per evaluation.
//!
//! Feature maps on the device are NHWC without a border (`h·w·c` values); convolutions pad by
//! bounds checks instead.

use impasto::core::Pooling;
use impasto::model::InputConvention;
use wgpu::util::DeviceExt;

use crate::{Gpu, GpuBuffer};

/// The shared tiled matrix product, appended to the shaders that use it.
const GEMM: &str = include_str!("../shaders/gemm.wgsl");

/// Threads per workgroup of the one-dimensional kernels.
const WG: usize = 256;
/// Values each [`Kernels::squared_distance`] call writes: a (hi, lo) pair per workgroup, whose
/// sum in f64 is the partial sum.
pub const PARTIALS_PER_SLOT: usize = 512;
/// Workgroups of a [`Kernels::squared_distance`] call.
const REDUCTION_GROUPS: u32 = 256;
/// Values of a Gram matrix's partial sums kept at most (split-K's scratch, 16 MiB).
const MAX_GRAM_PARTIAL: usize = 4 << 20;
/// Output tile edge of the tiled matrix product (gemm.wgsl's TM and TN).
const TILE: usize = 64;

/// One prepared dispatch: pipeline, bound buffers and parameters, workgroup counts.
#[derive(Debug, Clone)]
pub struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
}

impl Dispatch {
    /// Records the dispatch into a compute pass.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.groups;
        pass.dispatch_workgroups(x, y, z);
    }
}

/// A convolution's kernels on the device, arranged as the implicit GEMM reads them.
#[derive(Debug)]
pub struct GpuConv {
    cin: usize,
    cout: usize,
    /// `[ky][kx][ci][co]`: a `9·cin × cout` matrix.
    forward: GpuBuffer,
    /// The flipped kernel `[ky][kx][co][ci]`: a `9·cout × cin` matrix.
    backward: GpuBuffer,
    bias: GpuBuffer,
}

impl GpuConv {
    /// From PyTorch-layout `[cout, cin, 3, 3]` weights and `[cout]` biases.
    pub fn new(gpu: &Gpu, cin: usize, cout: usize, weight: &[f32], bias: &[f32]) -> Self {
        assert_eq!(weight.len(), cout * cin * 9, "conv weight length");
        assert_eq!(bias.len(), cout, "conv bias length");
        let mut forward = vec![0.0; 9 * cin * cout];
        let mut backward = vec![0.0; 9 * cin * cout];
        for co in 0..cout {
            for ci in 0..cin {
                for ky in 0..3 {
                    for kx in 0..3 {
                        let v = weight[((co * cin + ci) * 3 + ky) * 3 + kx];
                        forward[((ky * 3 + kx) * cin + ci) * cout + co] = v;
                        let (fy, fx) = (2 - ky, 2 - kx);
                        backward[((fy * 3 + fx) * cout + co) * cin + ci] = v;
                    }
                }
            }
        }
        GpuConv {
            cin,
            cout,
            forward: gpu.upload(&forward, "conv forward kernel"),
            backward: gpu.upload(&backward, "conv backward kernel"),
            bias: gpu.upload(bias, "conv bias"),
        }
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.cin
    }
    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.cout
    }
    /// Bytes of its buffers on the device.
    pub fn bytes(&self) -> u64 {
        self.forward.bytes() + self.backward.bytes() + self.bias.bytes()
    }
}

/// Flags of conv3x3.wgsl's epilogue.
const BIAS: u32 = 1;
const RELU: u32 = 2;
const ACCUMULATE: u32 = 4;
const MASK: u32 = 8;

/// The compiled pipelines.
#[derive(Debug)]
pub struct Kernels {
    device: wgpu::Device,
    conv: wgpu::ComputePipeline,
    gram: wgpu::ComputePipeline,
    gram_gradient: wgpu::ComputePipeline,
    style_finish: wgpu::ComputePipeline,
    pool_forward: wgpu::ComputePipeline,
    pool_backward: wgpu::ComputePipeline,
    relu: wgpu::ComputePipeline,
    mask: wgpu::ComputePipeline,
    fill: wgpu::ComputePipeline,
    content_gradient: wgpu::ComputePipeline,
    squared_distance: wgpu::ComputePipeline,
    convention: wgpu::ComputePipeline,
    /// Bound where a shader's optional input is off (no bias, no mask, no pixel weights).
    dummy: GpuBuffer,
    max_groups: u32,
}

fn pipeline(device: &wgpu::Device, name: &str, source: &str) -> wgpu::ComputePipeline {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(name),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(name),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    })
}

fn with_gemm(source: &str) -> String {
    format!("{source}\n{GEMM}")
}

/// Workgroups for a grid-stride loop over `n` values.
fn groups_for(n: usize, max: u32) -> [u32; 3] {
    [(n.div_ceil(WG).max(1) as u32).min(max), 1, 1]
}

/// A kernel's 64-byte parameter block (every shader's `Params` fits in it).
#[derive(Clone, Copy, Default)]
struct Params([u32; 16]);

impl Params {
    fn new(values: &[u32]) -> Self {
        let mut p = [0u32; 16];
        p[..values.len()].copy_from_slice(values);
        Params(p)
    }
    fn set_f32(mut self, i: usize, v: f32) -> Self {
        self.0[i] = v.to_bits();
        self
    }
}

impl Kernels {
    /// Compiles every shader for `gpu`.
    pub fn new(gpu: &Gpu) -> Self {
        let d = &gpu.device;
        Kernels {
            device: d.clone(),
            conv: pipeline(
                d,
                "conv3x3",
                &with_gemm(include_str!("../shaders/conv3x3.wgsl")),
            ),
            gram: pipeline(d, "gram", &with_gemm(include_str!("../shaders/gram.wgsl"))),
            gram_gradient: pipeline(
                d,
                "gram_gradient",
                &with_gemm(include_str!("../shaders/gram_gradient.wgsl")),
            ),
            style_finish: pipeline(
                d,
                "style_finish",
                include_str!("../shaders/style_finish.wgsl"),
            ),
            pool_forward: pipeline(
                d,
                "pool_forward",
                include_str!("../shaders/pool_forward.wgsl"),
            ),
            pool_backward: pipeline(
                d,
                "pool_backward",
                include_str!("../shaders/pool_backward.wgsl"),
            ),
            relu: pipeline(d, "relu", include_str!("../shaders/relu.wgsl")),
            mask: pipeline(d, "mask", include_str!("../shaders/mask.wgsl")),
            fill: pipeline(d, "fill", include_str!("../shaders/fill.wgsl")),
            content_gradient: pipeline(
                d,
                "content_gradient",
                include_str!("../shaders/content_gradient.wgsl"),
            ),
            squared_distance: pipeline(
                d,
                "squared_distance",
                include_str!("../shaders/squared_distance.wgsl"),
            ),
            convention: pipeline(d, "convention", include_str!("../shaders/convention.wgsl")),
            dummy: gpu.zeros(4, "unused input"),
            max_groups: gpu.limits().max_compute_workgroups_per_dimension,
        }
    }

    fn dispatch(
        &self,
        pipeline: &wgpu::ComputePipeline,
        params: Params,
        buffers: &[&GpuBuffer],
        groups: [u32; 3],
    ) -> Dispatch {
        let uniform = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytemuck::cast_slice(&params.0),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.as_entire_binding(),
        }];
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.buffer.as_entire_binding(),
            });
        }
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Dispatch {
            pipeline: pipeline.clone(),
            bind_group,
            groups,
        }
    }

    fn gemm_groups(&self, m: usize, n: usize, z: usize) -> [u32; 3] {
        let gx = m.div_ceil(TILE);
        assert!(
            gx <= self.max_groups as usize,
            "{m} rows exceed one dispatch ({} workgroups of {TILE})",
            self.max_groups
        );
        [gx as u32, n.div_ceil(TILE) as u32, z as u32]
    }

    /// The most pixels one convolution dispatch can cover on this device.
    pub fn max_pixels(&self) -> usize {
        self.max_groups as usize * TILE
    }

    /// `out = act(conv(input) + bias)` on `h × w` maps; `act` is ReLU if `relu`.
    pub fn conv_forward(
        &self,
        conv: &GpuConv,
        input: &GpuBuffer,
        out: &GpuBuffer,
        (h, w): (usize, usize),
        relu: bool,
    ) -> Dispatch {
        assert!(input.len() >= h * w * conv.cin && out.len() >= h * w * conv.cout);
        let flags = BIAS | if relu { RELU } else { 0 };
        let p = Params::new(&[h as u32, w as u32, conv.cin as u32, conv.cout as u32, flags]);
        self.dispatch(
            &self.conv,
            p,
            &[input, &conv.forward, &conv.bias, &self.dummy, out],
            self.gemm_groups(h * w, conv.cout, 1),
        )
    }

    /// `grad_in = mask ⊙ ((accumulate ? grad_in : 0) + convᵀ(grad_out))`, where `mask`, if
    /// given, is the activation `grad_in` belongs to (zero where it is not > 0), and `grad_out` is
    /// the gradient with respect to the convolution's output before its ReLU.
    pub fn conv_backward(
        &self,
        conv: &GpuConv,
        grad_out: &GpuBuffer,
        grad_in: &GpuBuffer,
        (h, w): (usize, usize),
        accumulate: bool,
        mask: Option<&GpuBuffer>,
    ) -> Dispatch {
        assert!(grad_out.len() >= h * w * conv.cout && grad_in.len() >= h * w * conv.cin);
        let flags = if accumulate { ACCUMULATE } else { 0 } | if mask.is_some() { MASK } else { 0 };
        let p = Params::new(&[h as u32, w as u32, conv.cout as u32, conv.cin as u32, flags]);
        self.dispatch(
            &self.conv,
            p,
            &[
                grad_out,
                &conv.backward,
                &self.dummy,
                mask.unwrap_or(&self.dummy),
                grad_in,
            ],
            self.gemm_groups(h * w, conv.cin, 1),
        )
    }

    /// 2×2 stride-2 pooling of an `h × w × c` map into `out` (`h/2 × w/2 × c`).
    pub fn pool_forward(
        &self,
        kind: Pooling,
        input: &GpuBuffer,
        out: &GpuBuffer,
        (h, w, c): (usize, usize, usize),
    ) -> Dispatch {
        let p = Params::new(&[h as u32, w as u32, c as u32, (kind == Pooling::Max) as u32]);
        self.dispatch(
            &self.pool_forward,
            p,
            &[input, out],
            groups_for((h / 2) * (w / 2) * c, self.max_groups),
        )
    }

    /// Pooling's input gradient into the `h × w × c` `grad_in`:
    /// `mask ⊙ ((accumulate ? grad_in : 0) + poolᵀ(grad_out))`. `input` is the forward input
    /// (max pooling reads it; average pooling ignores it).
    #[allow(clippy::too_many_arguments)]
    pub fn pool_backward(
        &self,
        kind: Pooling,
        input: &GpuBuffer,
        grad_out: &GpuBuffer,
        grad_in: &GpuBuffer,
        (h, w, c): (usize, usize, usize),
        accumulate: bool,
        mask: Option<&GpuBuffer>,
    ) -> Dispatch {
        let p = Params::new(&[
            h as u32,
            w as u32,
            c as u32,
            (kind == Pooling::Max) as u32,
            accumulate as u32,
            mask.is_some() as u32,
        ]);
        self.dispatch(
            &self.pool_backward,
            p,
            &[input, grad_out, mask.unwrap_or(&self.dummy), grad_in],
            groups_for(h * w * c, self.max_groups),
        )
    }

    /// How many chunks of pixels [`Kernels::gram`] splits a `pixels × c` map into.
    pub fn gram_splits(pixels: usize, c: usize) -> usize {
        let (chunk, _) = gram_chunks(pixels, c);
        pixels.div_ceil(chunk).max(1)
    }

    /// Partial Gram matrices `Σ w_p² F_p F_pᵀ` of a `pixels × c` map over
    /// [`Kernels::gram_splits`] chunks of pixels into `partial` (`splits × c × c`); `weight` is
    /// an optional per-pixel mask. [`Kernels::style_finish`] adds them up.
    pub fn gram(
        &self,
        features: &GpuBuffer,
        weight: Option<&GpuBuffer>,
        partial: &GpuBuffer,
        (pixels, c): (usize, usize),
    ) -> Dispatch {
        let (chunk, _) = gram_chunks(pixels, c);
        let splits = Self::gram_splits(pixels, c);
        assert!(partial.len() >= splits * c * c, "Gram partials buffer");
        let p = Params::new(&[
            c as u32,
            pixels as u32,
            chunk as u32,
            weight.is_some() as u32,
        ]);
        self.dispatch(
            &self.gram,
            p,
            &[features, weight.unwrap_or(&self.dummy), partial],
            self.gemm_groups(c, c, splits),
        )
    }

    /// `diff = Σ_z partial[z] · inv_mass − target`, for `c × c` matrices.
    pub fn style_finish(
        &self,
        partial: &GpuBuffer,
        target: &GpuBuffer,
        diff: &GpuBuffer,
        (c, splits): (usize, usize),
        inv_mass: f32,
    ) -> Dispatch {
        let p = Params::new(&[(c * c) as u32, splits as u32]).set_f32(2, inv_mass);
        self.dispatch(
            &self.style_finish,
            p,
            &[partial, target, diff],
            groups_for(c * c, self.max_groups),
        )
    }

    /// `grad += scale · w_p² · (F · D)` for a `pixels × c` map `F` and a `c × c` matrix `D`.
    pub fn gram_gradient(
        &self,
        features: &GpuBuffer,
        d: &GpuBuffer,
        weight: Option<&GpuBuffer>,
        grad: &GpuBuffer,
        (pixels, c): (usize, usize),
        scale: f32,
    ) -> Dispatch {
        let p =
            Params::new(&[pixels as u32, c as u32, 0, weight.is_some() as u32]).set_f32(2, scale);
        self.dispatch(
            &self.gram_gradient,
            p,
            &[features, d, weight.unwrap_or(&self.dummy), grad],
            self.gemm_groups(pixels, c, 1),
        )
    }

    /// `out = max(input, 0)` over `n` values.
    pub fn relu(&self, input: &GpuBuffer, out: &GpuBuffer, n: usize) -> Dispatch {
        let groups = groups_for(n, self.max_groups);
        self.dispatch(&self.relu, Params::new(&[n as u32]), &[input, out], groups)
    }

    /// `grad = act > 0 ? grad : 0` over `n` values.
    pub fn mask(&self, act: &GpuBuffer, grad: &GpuBuffer, n: usize) -> Dispatch {
        let groups = groups_for(n, self.max_groups);
        self.dispatch(&self.mask, Params::new(&[n as u32]), &[act, grad], groups)
    }

    /// Zeroes the first `n` values of `out`.
    pub fn fill_zero(&self, out: &GpuBuffer, n: usize) -> Dispatch {
        let groups = groups_for(n, self.max_groups);
        self.dispatch(&self.fill, Params::new(&[n as u32]), &[out], groups)
    }

    /// `grad += scale · (f − target)` over `n` values.
    pub fn content_gradient(
        &self,
        f: &GpuBuffer,
        target: &GpuBuffer,
        grad: &GpuBuffer,
        n: usize,
        scale: f32,
    ) -> Dispatch {
        let p = Params::new(&[n as u32]).set_f32(1, scale);
        let groups = groups_for(n, self.max_groups);
        self.dispatch(&self.content_gradient, p, &[f, target, grad], groups)
    }

    /// `Σ (a − b)²` over `n` values (`b` optional) as [`PARTIALS_PER_SLOT`] partial sums at
    /// `sums[slot · PARTIALS_PER_SLOT ..]`.
    pub fn squared_distance(
        &self,
        a: &GpuBuffer,
        b: Option<&GpuBuffer>,
        sums: &GpuBuffer,
        n: usize,
        slot: usize,
    ) -> Dispatch {
        assert!(
            sums.len() >= (slot + 1) * PARTIALS_PER_SLOT,
            "partial sums buffer"
        );
        let p = Params::new(&[n as u32, slot as u32, b.is_some() as u32]);
        self.dispatch(
            &self.squared_distance,
            p,
            &[a, b.unwrap_or(&self.dummy), sums],
            [REDUCTION_GROUPS, 1, 1],
        )
    }

    /// The input convention on `pixels` RGB pixels: `rgb → network input` (forward), or the
    /// chain rule `grad_input → grad_rgb` (backward, overwriting `dst`).
    pub fn convention(
        &self,
        convention: InputConvention,
        src: &GpuBuffer,
        dst: &GpuBuffer,
        pixels: usize,
        backward: bool,
    ) -> Dispatch {
        let affine = convention.channel_affine();
        let mut p = Params::new(&[
            pixels as u32,
            backward as u32,
            affine[0].0 as u32,
            affine[1].0 as u32,
            affine[2].0 as u32,
        ]);
        for (c, &(_, scale, offset)) in affine.iter().enumerate() {
            p = p.set_f32(8 + c, scale).set_f32(12 + c, offset);
        }
        self.dispatch(
            &self.convention,
            p,
            &[src, dst],
            groups_for(pixels * 3, self.max_groups),
        )
    }
}

/// (pixels per chunk, chunks) of a Gram matrix's split-K: enough chunks to occupy the device,
/// few enough that the partial matrices stay small; chunks are whole K steps of the tile.
fn gram_chunks(pixels: usize, c: usize) -> (usize, usize) {
    let by_memory = (MAX_GRAM_PARTIAL / (c * c).max(1)).max(1);
    let wanted = pixels.div_ceil(1024).clamp(1, 256).min(by_memory);
    let chunk = pixels.div_ceil(wanted).next_multiple_of(16).max(16);
    (chunk, pixels.div_ceil(chunk).max(1))
}

impl Gpu {
    /// Records `dispatches` into one compute pass and submits them (for tests and one-off
    /// work; an evaluator records its schedule into its own command buffer).
    pub fn run(&self, dispatches: &[Dispatch]) {
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for d in dispatches {
                d.record(&mut pass);
            }
        }
        self.queue.submit([enc.finish()]);
    }
}
