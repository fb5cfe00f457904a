//! ONNX Conv (any kernel size, strides and zero pads; no groups or dilation), written for this
//! network's few-channel layers (3 to 32 channels, 9×9 and 3×3 kernels). A GEMM formulation
//! (impasto's VGG convolution, or tract's im2col) wastes most of its time there packing
//! patches and filling 6- or 16-wide tiles with 3 or 8 output channels; here each output row is
//! computed directly, a vector of pixels at a time: for every input channel and kernel tap, one
//! contiguous load of inputs and one multiply-add per output channel into registers. The
//! kernel is chosen at run time ([`Kernel`]): AVX-512 (sixteen pixels, [`avx512`]), AVX2
//! (eight), or plain Rust; the vector kernels sum in the same order and give the same bits.
//!
//! The input is first copied into *phase planes*: per channel and row, the columns split by
//! their remainder modulo the stride (so a stride-2 tap also reads contiguous pixels), with the
//! zero padding and a zero margin for the last partial group of eight built in. The output is
//! channel-first (logical NCHW), as the next ops want it.

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
mod avx512;

use super::gather::Gather;
use super::pool::Pool;
use super::value::{Data, Layout, Value, R};

/// Output pixels computed together: one 8-lane (AVX2) vector per output channel.
const LANES: usize = 8;
/// The widest kernel's vector (AVX-512's sixteen lanes): the phase planes hold a whole last
/// vector of them.
const WIDEST: usize = 16;
/// Output pixels a task computes at least (whole rows).
const TASK_PIXELS: usize = 2048;
/// Tasks a convolution is split into at least, where it has enough blocks of channels.
const MIN_TASKS: usize = 8;
/// Output channels per pass over the input: 8 accumulator vectors plus an input vector and a
/// broadcast weight fit the 16 AVX2 registers.
const BLOCK: usize = 8;
/// The longest row a pointwise convolution reads its input's rows merged into (see
/// [`Conv::rows_as`]).
const MERGED_ROW: usize = 512;

pub(super) struct Conv {
    cin: usize,
    /// Input channels each output channel reads (`cin / groups`; 1 for a depthwise layer).
    group_in: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    stride: (usize, usize),
    /// Zero padding: top, left, bottom, right.
    pads: [usize; 4],
    /// The output channels in blocks of up to [`BLOCK`], none straddling two groups.
    blocks: Vec<Block>,
    bias: Vec<f32>,
    /// The upsampling, padding and quantisation folded into the copy of the input.
    gather: Option<Gather>,
}

/// The input rearranged for the kernel: element (ci, row, phase, x') is input pixel
/// (row − top, x'·sx + phase − left) of channel ci, or 0 outside the input.
struct Planes {
    data: Vec<f32>,
    rows: usize,
    phases: usize,
    width: usize,
    /// Where tap kx reads in its row's phase planes, relative to the row's first plane:
    /// computed once per run, so the kernels do no division (and no checked arithmetic).
    offsets: Vec<usize>,
}

/// A run of blocks, the first output row, and each of the blocks' channels' rows from there.
type Task<'a> = (&'a [Block], usize, Vec<&'a mut [f32]>);

/// Consecutive output channels of one group, computed together.
struct Block {
    /// The group's first input channel and the block's first output channel.
    ci0: usize,
    co0: usize,
    /// Output channels (up to [`BLOCK`]).
    channels: usize,
    /// `[ci in group][ky][kx][co in block]`.
    weights: Vec<f32>,
}

impl Planes {
    fn row(&self, ci: usize, row: usize, phase: usize) -> &[f32] {
        &self.data[((ci * self.rows + row) * self.phases + phase) * self.width..][..self.width]
    }
}

impl Conv {
    /// From ONNX's `[Cout, Cin / groups, kh, kw]` weights, optional bias and attributes.
    pub fn new(
        weights: &Value,
        bias: Option<&Value>,
        groups: usize,
        strides: &[i64],
        pads: &[i64],
    ) -> R<Conv> {
        let &[cout, group_in, kh, kw] = weights.shape.as_slice() else {
            return Err(format!("Conv weights of shape {:?}", weights.shape));
        };
        if groups == 0 || cout % groups != 0 || kh == 0 || kw == 0 {
            return Err(format!(
                "Conv of {groups} groups with weights {:?}",
                weights.shape
            ));
        }
        let group_out = cout / groups;
        let w = weights.clone().into_logical();
        let w = w.f32s()?;
        let mut blocks = Vec::new();
        for g in 0..groups {
            for c0 in (g * group_out..(g + 1) * group_out).step_by(BLOCK) {
                let n = BLOCK.min((g + 1) * group_out - c0);
                let mut block = Vec::with_capacity(group_in * kh * kw * n);
                for ci in 0..group_in {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            for co in c0..c0 + n {
                                block.push(w[((co * group_in + ci) * kh + ky) * kw + kx]);
                            }
                        }
                    }
                }
                blocks.push(Block {
                    ci0: g * group_in,
                    co0: c0,
                    channels: n,
                    weights: block,
                });
            }
        }
        let cin = group_in * groups;
        let bias = match bias {
            Some(b) if b.len() == cout => b.f32s()?.to_vec(),
            Some(b) => {
                return Err(format!(
                    "Conv bias of {} values for {cout} outputs",
                    b.len()
                ))
            }
            None => vec![0.0; cout],
        };
        let stride = match strides {
            [] => (1, 1),
            &[sy, sx] if sy > 0 && sx > 0 => (sy as usize, sx as usize),
            _ => return Err(format!("Conv strides {strides:?}")),
        };
        let pads = match pads {
            [] => [0; 4],
            &[t, l, b, r] if t >= 0 && l >= 0 && b >= 0 && r >= 0 => {
                [t as usize, l as usize, b as usize, r as usize]
            }
            _ => return Err(format!("Conv pads {pads:?}")),
        };
        Ok(Conv {
            cin,
            group_in,
            cout,
            kh,
            kw,
            stride,
            pads,
            blocks,
            bias,
            gather: None,
        })
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.cin
    }

    /// Its own zero padding: top, left, bottom, right.
    pub fn pads(&self) -> [usize; 4] {
        self.pads
    }

    /// Whether it reads its input through a [`Gather`].
    #[cfg(test)]
    pub fn gathers(&self) -> bool {
        self.gather.is_some()
    }

    /// Reads its input through `gather` (see [`super::gather::fuse`]).
    pub fn set_gather(&mut self, gather: Gather) {
        self.gather = Some(gather);
    }

    pub fn run(&self, x: &Value, pool: &Pool) -> R<Value> {
        self.run_with(x, pool, Kernel::best())
    }

    /// [`Conv::run`] with the given kernel (tests compare them).
    fn run_with(&self, x: &Value, pool: &Pool, kernel: Kernel) -> R<Value> {
        if x.shape.len() != 4 || x.shape[0] != 1 || x.shape[1] != self.cin {
            return Err(format!(
                "Conv of {} input channels on shape {:?}",
                self.cin, x.shape
            ));
        }
        let (xh, xw) = self.rows_as((x.shape[2], x.shape[3]));
        let (h, w) = match &self.gather {
            Some(g) => g.upsampled((xh, xw)),
            None => (xh, xw),
        };
        let [top, left, bottom, right] = self
            .gather
            .as_ref()
            .map_or(self.pads, |g| g.pads(self.pads));
        let (hp, wp) = (h + top + bottom, w + left + right);
        if hp < self.kh || wp < self.kw {
            return Err(format!(
                "Conv {}×{} kernel on a {h}×{w} input",
                self.kh, self.kw
            ));
        }
        let (sy, sx) = self.stride;
        let (oh, ow) = ((hp - self.kh) / sy + 1, (wp - self.kw) / sx + 1);
        let start = tracing::enabled!(tracing::Level::TRACE).then(std::time::Instant::now);
        let planes = self.planes(x, (xh, xw), hp, ow, pool)?;
        let planes_done = start.map(|s| s.elapsed());
        // Every output value is written by the kernels.
        let mut out = pool.take_overwritten(self.cout * oh * ow);
        let plane = oh * ow;
        // Tasks: a few output rows (at least TASK_PIXELS pixels, so that the small maps of the
        // style predictor are not thousands of tiny tasks) of a run of blocks of channels (a
        // channel's rows lie a plane apart). A task computes each of its rows for all its
        // blocks before the next row, so the blocks read the same phase-plane rows while they
        // are in the cache; the blocks are split among tasks only where there are too few rows
        // to keep the threads busy.
        let rows_per_task = TASK_PIXELS.div_ceil(ow.max(1)).max(1);
        let row_tasks = oh.div_ceil(rows_per_task);
        let runs = MIN_TASKS
            .div_ceil(row_tasks.max(1))
            .clamp(1, self.blocks.len());
        let blocks_per_run = self.blocks.len().div_ceil(runs);
        let mut tasks: Vec<Task> = Vec::new();
        let mut rest = &mut out[..];
        for blocks in self.blocks.chunks(blocks_per_run) {
            let n: usize = blocks.iter().map(|b| b.channels).sum();
            let (run_out, after) = rest.split_at_mut(n * plane);
            rest = after;
            let mut channels: Vec<_> = (run_out.chunks_mut(plane))
                .map(|c| c.chunks_mut(rows_per_task * ow))
                .collect();
            for y0 in (0..oh).step_by(rows_per_task) {
                let parts = channels.iter_mut().filter_map(Iterator::next).collect();
                tasks.push((blocks, y0, parts));
            }
        }
        tasks.into_par_iter().for_each(|(blocks, y0, mut parts)| {
            let rows = parts.first().map_or(0, |p| p.len() / ow.max(1));
            for r in 0..rows {
                let mut rest = &mut parts[..];
                for block in blocks {
                    let (mine, after) = rest.split_at_mut(block.channels);
                    rest = after;
                    // On the stack: a depthwise layer makes a call per channel and row.
                    let mut outs: [&mut [f32]; BLOCK] = Default::default();
                    for (o, p) in outs.iter_mut().zip(mine.iter_mut()) {
                        *o = &mut p[r * ow..][..ow];
                    }
                    self.row(&planes, block, y0 + r, &mut outs[..block.channels], kernel);
                }
            }
        });
        if let (Some(start), Some(planes_done)) = (start, planes_done) {
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
            tracing::trace!(
                "{:8.3} ms planes, {:8.3} ms kernel",
                ms(planes_done),
                ms(start.elapsed() - planes_done)
            );
        }
        // The planes' buffer (as big as the input, or four times with an upsampling) goes back
        // to the pool: fresh memory of that size costs a page fault per 4 kB.
        pool.give(Value::new(vec![planes.data.len()], Data::F32(planes.data)));
        // Rows merged by rows_as are the input's pixels in order, as are the output's.
        let (oh, ow) = if (xh, xw) == (x.shape[2], x.shape[3]) {
            (oh, ow)
        } else {
            (x.shape[2], x.shape[3])
        };
        Ok(Value {
            shape: vec![1, self.cout, oh, ow],
            data: Data::F32(out),
            layout: Layout::Logical,
        })
    }

    /// The rows and columns this convolution reads an `h`×`w` input as. A pointwise one (1×1,
    /// stride 1, no padding, no upsampling: the style predictor's expansions and projections)
    /// computes each pixel on its own, so it reads short rows merged into fewer, longer ones
    /// of the same pixels in the same order (the pixels' sums are unchanged): the 8×8 and
    /// 16×16 maps filled half a 16-lane vector or made a kernel call per 16 pixels.
    fn rows_as(&self, (h, w): (usize, usize)) -> (usize, usize) {
        let pointwise = (self.kh, self.kw, self.stride, self.pads) == (1, 1, (1, 1), [0; 4])
            && self.gather.as_ref().is_none_or(Gather::is_elementwise);
        if !pointwise {
            return (h, w);
        }
        let merged = (1..=h).rev().find(|k| h % k == 0 && k * w <= MERGED_ROW);
        let k = merged.unwrap_or(1);
        (h / k, k * w)
    }

    /// The phase planes of `x`, read as `h`×`w`, through a [`Gather`].
    fn gathered_planes(
        &self,
        x: &Value,
        g: &Gather,
        (h, w): (usize, usize),
        hp: usize,
        ow: usize,
        pool: &Pool,
    ) -> R<Planes> {
        let cin = self.cin;
        let width = self.plane_width(ow);
        let columns = g.columns((h, w), self.pads, self.stride.1, width)?;
        let src = x.f32s()?;
        let channels_last = x.layout == Layout::ChannelsLast;
        let copy = |ci, row, phases: &mut [f32]| {
            let shape = (cin, h, w);
            g.row(
                src,
                channels_last,
                shape,
                (ci, row),
                &columns,
                self.pads,
                phases,
            )
        };
        Ok(self.fill_planes(hp, width, pool, copy, |ci, block| g.apply(block, ci)))
    }

    /// Values per phase-plane row: the output's groups of eight and the kernel's reach.
    fn plane_width(&self, ow: usize) -> usize {
        ow.div_ceil(WIDEST) * WIDEST + (self.kw - 1) / self.stride.1 + 1
    }

    /// Phase planes of `rows` rows of `width`, zeros filled by `row(ci, row, phases)`, then
    /// changed by `then(ci, rows)` a few rows of a channel at a time (zeros included).
    fn fill_planes(
        &self,
        rows: usize,
        width: usize,
        pool: &Pool,
        row: impl Fn(usize, usize, &mut [f32]) + Sync,
        then: impl Fn(usize, &mut [f32]) + Sync,
    ) -> Planes {
        let sx = self.stride.1;
        let channel = rows * sx * width;
        // Rows a task fills, then changes: about 16 kB, changed while in the cache but after
        // the copy's stores are done (changed right after, row by row, the loads waited on them).
        let block = (4096 / (sx * width)).clamp(1, rows.max(1)) * sx * width;
        // Each row is zeroed while it is in the cache, before `row` fills what it reads.
        let mut data = pool.take_overwritten(self.cin * channel);
        data.par_chunks_mut(channel.max(1))
            .enumerate()
            .flat_map(|(ci, c)| {
                c.par_chunks_mut(block.max(1))
                    .enumerate()
                    .map(move |(b, rows)| (ci, b, rows))
            })
            .for_each(|(ci, b, task)| {
                let first = b * block / (sx * width);
                for (r, phases) in task.chunks_mut(sx * width).enumerate() {
                    phases.fill(0.0);
                    row(ci, first + r, phases);
                }
                then(ci, task);
            });
        Planes {
            data,
            rows,
            phases: sx,
            width,
            offsets: (0..self.kw).map(|kx| (kx % sx) * width + kx / sx).collect(),
        }
    }

    /// The phase planes of `x` (either storage), read as `h`×`w` (see [`Conv::rows_as`]), with
    /// room for the last vector.
    fn planes(
        &self,
        x: &Value,
        (h, w): (usize, usize),
        hp: usize,
        ow: usize,
        pool: &Pool,
    ) -> R<Planes> {
        if let Some(g) = &self.gather {
            return self.gathered_planes(x, g, (h, w), hp, ow, pool);
        }
        let cin = self.cin;
        let [top, left, ..] = self.pads;
        let sx = self.stride.1;
        let width = self.plane_width(ow);
        let src = x.f32s()?;
        let channels_last = x.layout == Layout::ChannelsLast;
        let copy = |ci: usize, row: usize, phases: &mut [f32]| {
            let Some(y) = row.checked_sub(top).filter(|&y| y < h) else {
                return; // a padding row: zeros
            };
            for (p, dst) in phases.chunks_mut(width).enumerate() {
                // dst[xq] is input column xq·sx + p − left, for the xq where that exists.
                let first = left.saturating_sub(p).div_ceil(sx);
                let columns = (first..width)
                    .map(|xq| xq * sx + p - left)
                    .take_while(|&x| x < w);
                if channels_last {
                    for (d, x) in dst[first..].iter_mut().zip(columns) {
                        *d = src[(y * w + x) * cin + ci];
                    }
                } else {
                    let line = &src[(ci * h + y) * w..][..w];
                    if sx == 1 {
                        let n = w.min(width - first);
                        dst[first..first + n].copy_from_slice(&line[first + p - left..][..n]);
                    } else {
                        for (d, x) in dst[first..].iter_mut().zip(columns) {
                            *d = line[x];
                        }
                    }
                }
            }
        };
        // No elementwise steps: nothing to change.
        Ok(self.fill_planes(hp, width, pool, copy, |_, _| ()))
    }

    /// Output row `oy` of a block of channels (`outs`: one row per channel of the block).
    fn row(
        &self,
        planes: &Planes,
        block: &Block,
        oy: usize,
        outs: &mut [&mut [f32]],
        kernel: Kernel,
    ) {
        let bias = &self.bias[block.co0..][..outs.len()];
        macro_rules! dispatch {
            ($($n:literal)*) => {
                match outs.len() {
                    $($n => self.row_n::<$n>(planes, block, oy, outs, bias, kernel),)*
                    n => unreachable!("a block of {n} output channels"),
                }
            };
        }
        dispatch!(1 2 3 4 5 6 7 8)
    }

    fn row_n<const N: usize>(
        &self,
        planes: &Planes,
        block: &Block,
        oy: usize,
        outs: &mut [&mut [f32]],
        bias: &[f32],
        kernel: Kernel,
    ) {
        let (w, ci0) = (&block.weights[..], block.ci0);
        match kernel {
            // SAFETY: a Kernel names only what the CPU runs (Kernel::best and ::available check
            // its features): this one, AVX-512F.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { self.row_avx512::<N>(planes, block, oy, outs, bias) },
            // SAFETY: as above: AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { self.row_avx2::<N>(planes, (w, ci0), oy, outs, bias) },
            Kernel::Plain => self.row_with::<N>(planes, (w, ci0), oy, outs, bias),
        }
    }

    /// What makes a vector kernel's unchecked reads in bounds (it panics otherwise): every
    /// line holds the last vector of `lanes` pixels at its furthest tap, the rows and channels
    /// exist, the block of `n` channels has all its weights, and there is a bias and an output
    /// row per channel.
    #[cfg(target_arch = "x86_64")]
    fn assert_in_bounds(
        &self,
        planes: &Planes,
        (w, ci0): (&[f32], usize),
        (oy, ow): (usize, usize),
        lanes: usize,
        n: usize,
        (bias, outs): (&[f32], usize),
    ) {
        let (kh, kw, (sy, sx)) = (self.kh, self.kw, self.stride);
        assert!(planes.width >= ow.div_ceil(lanes) * lanes + (kw - 1) / sx);
        assert!(oy * sy + kh <= planes.rows && planes.phases == sx);
        assert!(planes.data.len() == self.cin * planes.rows * sx * planes.width);
        assert!(w.len() >= self.group_in * kh * kw * n && bias.len() >= n && outs == n);
        assert!(ci0 + self.group_in <= self.cin);
    }

    /// The kernel with AVX2 vectors: for each group of eight output pixels, `N` accumulators
    /// stay in registers over every input channel and tap.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn row_avx2<const N: usize>(
        &self,
        planes: &Planes,
        (w, ci0): (&[f32], usize),
        oy: usize,
        outs: &mut [&mut [f32]],
        bias: &[f32],
    ) {
        use std::arch::x86_64::*;
        let (kh, kw, (sy, sx)) = (self.kh, self.kw, self.stride);
        let ow = outs[0].len();
        let taps = kh * kw;
        self.assert_in_bounds(planes, (w, ci0), (oy, ow), LANES, N, (bias, outs.len()));
        let offsets = &planes.offsets[..kw];
        let rows_of = |ci: usize, row: usize| ((ci * planes.rows + row) * sx) * planes.width;
        let data = planes.data.as_ptr();
        // Few output channels (a depthwise layer's one, the last layer's three): their few
        // accumulators would make each tap wait for the previous multiply-add and load a
        // weight per multiply-add, so several groups of eight pixels are summed side by side.
        let start = match N {
            1 | 2 => self.wide_avx2::<N, 4>(planes, (w, ci0), oy, outs, bias, offsets),
            3 | 4 => self.wide_avx2::<N, 2>(planes, (w, ci0), oy, outs, bias, offsets),
            _ => 0,
        };
        for x0 in (start..ow).step_by(LANES) {
            // The bias is added after the sum, as tract and onnxruntime do: rounding in the
            // same order keeps int8 results off the other side of quantisation boundaries.
            let mut acc = [_mm256_setzero_ps(); N];
            for ci in 0..self.group_in {
                for ky in 0..kh {
                    // SAFETY: the row exists and x0 + offset + 8 stays inside its phase plane
                    // (asserted above); the weights of (ci, ky) are in the block.
                    let line = data.add(rows_of(ci0 + ci, oy * sy + ky) + x0);
                    let mut wk = w.as_ptr().add((ci * taps + ky * kw) * N);
                    for &off in offsets {
                        let xv = _mm256_loadu_ps(line.add(off));
                        for (n, a) in acc.iter_mut().enumerate() {
                            *a = _mm256_fmadd_ps(_mm256_set1_ps(*wk.add(n)), xv, *a);
                        }
                        wk = wk.add(N);
                    }
                }
            }
            let valid = LANES.min(ow - x0);
            let mut lanes = [0f32; LANES];
            for ((out, a), &b) in outs.iter_mut().zip(&acc).zip(bias) {
                _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(*a, _mm256_set1_ps(b)));
                out[x0..x0 + valid].copy_from_slice(&lanes[..valid]);
            }
        }
    }

    /// [`Conv::row_avx2`] for `G` groups of eight pixels at once, each summed in the same
    /// order (the same bits); returns where it stopped (the rest is fewer than `8·G` pixels).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn wide_avx2<const N: usize, const G: usize>(
        &self,
        planes: &Planes,
        (w, ci0): (&[f32], usize),
        oy: usize,
        outs: &mut [&mut [f32]],
        bias: &[f32],
        offsets: &[usize],
    ) -> usize {
        use std::arch::x86_64::*;
        let (kh, kw, sy, sx) = (self.kh, self.kw, self.stride.0, self.stride.1);
        let (ow, taps) = (outs[0].len(), kh * kw);
        let rows_of = |ci: usize, row: usize| ((ci * planes.rows + row) * sx) * planes.width;
        let data = planes.data.as_ptr();
        let mut start = 0;
        while start + G * LANES <= ow {
            let mut acc = [[_mm256_setzero_ps(); G]; N];
            for ci in 0..self.group_in {
                for ky in 0..kh {
                    // SAFETY: as in row_avx2 (asserted there), for groups ending at or before
                    // ow.
                    let line = data.add(rows_of(ci0 + ci, oy * sy + ky) + start);
                    let mut wk = w.as_ptr().add((ci * taps + ky * kw) * N);
                    for &off in offsets {
                        let mut xv = [_mm256_setzero_ps(); G];
                        for (g, v) in xv.iter_mut().enumerate() {
                            *v = _mm256_loadu_ps(line.add(off + g * LANES));
                        }
                        for (n, a) in acc.iter_mut().enumerate() {
                            let wv = _mm256_set1_ps(*wk.add(n));
                            for (a, &x) in a.iter_mut().zip(&xv) {
                                *a = _mm256_fmadd_ps(wv, x, *a);
                            }
                        }
                        wk = wk.add(N);
                    }
                }
            }
            for ((out, a), &b) in outs.iter_mut().zip(&acc).zip(bias) {
                for (g, a) in a.iter().enumerate() {
                    let o = &mut out[start + g * LANES..start + (g + 1) * LANES];
                    _mm256_storeu_ps(o.as_mut_ptr(), _mm256_add_ps(*a, _mm256_set1_ps(b)));
                }
            }
            start += G * LANES;
        }
        start
    }

    /// The kernel in plain Rust, for CPUs without AVX2 (and other architectures).
    fn row_with<const N: usize>(
        &self,
        planes: &Planes,
        (w, ci0): (&[f32], usize),
        oy: usize,
        outs: &mut [&mut [f32]],
        bias: &[f32],
    ) {
        let (kh, kw, sx) = (self.kh, self.kw, self.stride.1);
        let ow = outs[0].len();
        let taps = kh * kw;
        for x0 in (0..ow).step_by(LANES) {
            let mut acc = [[0f32; LANES]; N];
            for ci in 0..self.group_in {
                for ky in 0..kh {
                    let row = oy * self.stride.0 + ky;
                    for kx in 0..kw {
                        let line = planes.row(ci0 + ci, row, kx % sx);
                        let x = &line[x0 + kx / sx..][..LANES];
                        let wk = &w[((ci * taps) + ky * kw + kx) * N..][..N];
                        for (a, &wv) in acc.iter_mut().zip(wk) {
                            for (a, &xv) in a.iter_mut().zip(x) {
                                *a += wv * xv;
                            }
                        }
                    }
                }
            }
            let valid = LANES.min(ow - x0);
            for ((out, a), &b) in outs.iter_mut().zip(&acc).zip(bias) {
                for (o, &v) in out[x0..x0 + valid].iter_mut().zip(a) {
                    *o = v + b;
                }
            }
        }
    }
}

/// The convolution kernels, by instruction set; the CPU's best is chosen at run time (the crate
/// is compiled for baseline x86-64). The vector kernels give the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kernel {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Plain,
}

impl Kernel {
    /// The widest the CPU runs; `IMPASTO_NO_AVX512` set in the environment passes over AVX-512
    /// (to compare the two on one machine).
    pub fn best() -> Kernel {
        static BEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                let avx512 = std::is_x86_feature_detected!("avx512f")
                    && std::env::var_os("IMPASTO_NO_AVX512").is_none();
                if avx512 {
                    return Kernel::Avx512;
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    return Kernel::Avx2;
                }
            }
            Kernel::Plain
        })
    }

    /// The ones this CPU can run.
    #[cfg(test)]
    fn available() -> Vec<Kernel> {
        let mut all = vec![Kernel::Plain];
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                all.push(Kernel::Avx2);
            }
            if std::is_x86_feature_detected!("avx512f") {
                all.push(Kernel::Avx512);
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ONNX's Conv written out naively on NCHW.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        x: &[f32],
        (cin, h, w): (usize, usize, usize),
        wt: &[f32],
        (cout, kh, kw): (usize, usize, usize),
        bias: &[f32],
        (sy, sx): (usize, usize),
        [t, l, b, r]: [usize; 4],
    ) -> (Vec<f32>, usize, usize) {
        let (oh, ow) = ((h + t + b - kh) / sy + 1, (w + l + r - kw) / sx + 1);
        let mut out = vec![0f32; cout * oh * ow];
        for co in 0..cout {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = bias[co] as f64;
                    for ci in 0..cin {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let (y, xx) = (
                                    (oy * sy + ky) as isize - t as isize,
                                    (ox * sx + kx) as isize - l as isize,
                                );
                                if y < 0 || xx < 0 || y >= h as isize || xx >= w as isize {
                                    continue;
                                }
                                s += (x[(ci * h + y as usize) * w + xx as usize]
                                    * wt[((co * cin + ci) * kh + ky) * kw + kx])
                                    as f64;
                            }
                        }
                    }
                    out[(co * oh + oy) * ow + ox] = s as f32;
                }
            }
        }
        (out, oh, ow)
    }

    #[test]
    fn grouped_and_depthwise_convolutions_are_one_convolution_per_group() {
        // 6 channels in 3 groups of 2, then depthwise; stride 2 and TF-style asymmetric pads.
        for &(groups, cout) in &[(3usize, 6usize), (6, 6)] {
            // 37 output columns: the depthwise kernel's four groups of eight, then a tail.
            let (cin, h, w, k, pads) = (6, 13, 75, 3, [0, 0, 1, 1]);
            let gin = cin / groups;
            let gout = cout / groups;
            let x: Vec<f32> = (0..cin * h * w)
                .map(|i| ((i * 31 % 97) as f32 - 48.0) / 40.0)
                .collect();
            let wt: Vec<f32> = (0..cout * gin * k * k)
                .map(|i| ((i * 17 % 23) as f32 - 11.0) / 12.0)
                .collect();
            let bias: Vec<f32> = (0..cout).map(|i| 0.5 - i as f32 * 0.2).collect();
            let conv = Conv::new(
                &Value::new(vec![cout, gin, k, k], Data::F32(wt.clone())),
                Some(&Value::new(vec![cout], Data::F32(bias.clone()))),
                groups,
                &[2, 2],
                &pads.map(|p| p as i64),
            )
            .unwrap();
            let got = conv
                .run(
                    &Value::new(vec![1, cin, h, w], Data::F32(x.clone())),
                    &Pool::default(),
                )
                .unwrap();
            let got = got.f32s().unwrap();
            for g in 0..groups {
                let xg = &x[g * gin * h * w..][..gin * h * w];
                let wg = &wt[g * gout * gin * k * k..][..gout * gin * k * k];
                let (want, oh, ow) = naive(
                    xg,
                    (gin, h, w),
                    wg,
                    (gout, k, k),
                    &bias[g * gout..],
                    (2, 2),
                    pads,
                );
                let gotg = &got[g * gout * oh * ow..][..gout * oh * ow];
                for (a, b) in gotg.iter().zip(&want) {
                    assert!(
                        (a - b).abs() < 1e-4 * (1.0 + b.abs()),
                        "group {g} of {groups}: {a} vs {b}"
                    );
                }
            }
        }
    }

    /// A convolution reading through a gather (×2 upsampling, a mirror or zero pad, two fake
    /// quantisations) gives the bits it gives on the ops' explicit result, for input stored
    /// either way and strides 1 and 2.
    #[test]
    fn a_gathered_input_is_the_explicit_upsampling_padding_and_quantisation() {
        use super::super::gather::{explicit, Gather};
        use super::super::ops::PadMode;
        let (cin, cout, h, w) = (3, 5, 7, 9);
        let x = Value::new(
            vec![1, cin, h, w],
            Data::F32(
                (0..cin * h * w)
                    .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                    .collect(),
            ),
        );
        let wt: Vec<f32> = (0..cout * cin * 9)
            .map(|i| ((i * 53 % 89) as f32 - 44.0) / 90.0)
            .collect();
        let weights = Value::new(vec![cout, cin, 3, 3], Data::F32(wt));
        let pool = Pool::default();
        for (up, pad) in [
            ((2, 2), Some((PadMode::Reflect, [1, 1, 1, 1]))),
            ((1, 1), Some((PadMode::Reflect, [2, 1, 0, 3]))),
            ((2, 2), Some((PadMode::Constant, [1, 0, 2, 1]))),
            ((2, 2), None),
        ] {
            let g = Gather::for_test(up, pad);
            for stride in [1i64, 2] {
                for channels_last in [false, true] {
                    let input = if channels_last {
                        x.clone().into_channels_last().unwrap()
                    } else {
                        x.clone()
                    };
                    let plain = Conv::new(&weights, None, 1, &[stride, stride], &[]).unwrap();
                    let want = plain.run(&explicit(&input, &g).unwrap(), &pool).unwrap();
                    let mut fused = Conv::new(&weights, None, 1, &[stride, stride], &[]).unwrap();
                    fused.set_gather(g.clone());
                    let got = fused.run(&input, &pool).unwrap();
                    assert_eq!(got.shape, want.shape, "{up:?} {pad:?} stride {stride}");
                    let same = (got.f32s().unwrap().iter())
                        .zip(want.f32s().unwrap())
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{up:?} {pad:?} stride {stride} last {channels_last}");
                }
            }
        }
    }

    /// A pointwise convolution reads its input's rows merged ([`Conv::rows_as`]); run on one
    /// row at a time, nothing merges. Both give the same bits, in the input's shape, with and
    /// without a gather, for maps merged into one row (a prime height among them) or into
    /// several, and a map of rows too long to merge, stored either way.
    #[test]
    fn a_pointwise_convolution_on_merged_rows_gives_the_same_bits() {
        use super::super::gather::Gather;
        let pool = Pool::default();
        let (cin, cout) = (19, 11);
        let wt: Vec<f32> = (0..cout * cin)
            .map(|i| ((i * 53 % 89) as f32 - 44.0) / 31.0)
            .collect();
        let weights = Value::new(vec![cout, cin, 1, 1], Data::F32(wt));
        let bias = Value::new(vec![cout], Data::F32((0..cout).map(|i| i as f32).collect()));
        let plain = Conv::new(&weights, Some(&bias), 1, &[], &[]).unwrap();
        let mut gathered = Conv::new(&weights, Some(&bias), 1, &[], &[]).unwrap();
        gathered.set_gather(Gather::for_test((1, 1), None));
        for (h, w) in [(8, 8), (16, 16), (64, 48), (23, 19), (3, 700)] {
            let x: Vec<f32> = (0..cin * h * w)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 13.0)
                .collect();
            let row = |y: usize| {
                let r = (0..cin).flat_map(|c| &x[(c * h + y) * w..][..w]).copied();
                Value::new(vec![1, cin, 1, w], Data::F32(r.collect()))
            };
            let x = Value::new(vec![1, cin, h, w], Data::F32(x.clone()));
            for conv in [&plain, &gathered] {
                if w <= MERGED_ROW {
                    assert_ne!(conv.rows_as((h, w)), (h, w), "{h}×{w} is not merged");
                }
                // want[c][y][x] from the rows' results.
                let rows: Vec<Value> = (0..h).map(|y| conv.run(&row(y), &pool).unwrap()).collect();
                let want: Vec<u32> = (0..cout)
                    .flat_map(|c| {
                        rows.iter()
                            .flat_map(move |r| &r.f32s().unwrap()[c * w..][..w])
                    })
                    .map(|v| v.to_bits())
                    .collect();
                for x in [x.clone(), x.clone().into_channels_last().unwrap()] {
                    let got = conv.run(&x, &pool).unwrap();
                    assert_eq!(got.shape, [1, cout, h, w]);
                    let got: Vec<u32> = got.f32s().unwrap().iter().map(|v| v.to_bits()).collect();
                    let gathers = conv.gathers();
                    assert!(got == want, "{h}×{w}, {:?}, gather {gathers}", x.layout);
                }
            }
        }
    }

    #[test]
    fn matches_the_naive_convolution_for_the_transform_s_shapes() {
        // 9×9 stride 1 (the first and last layers), 3×3 stride 2, 3×3 with zero pads, 1×1.
        for &(cin, cout, k, s, p) in &[
            (3, 8, 9, 1, 0),
            (8, 16, 3, 2, 0),
            (5, 3, 3, 1, 1),
            (7, 4, 1, 1, 0),
        ] {
            let (h, w) = (23, 19);
            let x: Vec<f32> = (0..cin * h * w)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
                .collect();
            let wt: Vec<f32> = (0..cout * cin * k * k)
                .map(|i| ((i * 53 % 89) as f32 - 44.0) / 90.0)
                .collect();
            let bias: Vec<f32> = (0..cout).map(|i| i as f32 * 0.1).collect();
            let (want, oh, ow) = naive(&x, (cin, h, w), &wt, (cout, k, k), &bias, (s, s), [p; 4]);
            let conv = Conv::new(
                &Value::new(vec![cout, cin, k, k], Data::F32(wt)),
                Some(&Value::new(vec![cout], Data::F32(bias))),
                1,
                &[s as i64, s as i64],
                &[p as i64; 4],
            )
            .unwrap();
            let x = Value::new(vec![1, cin, h, w], Data::F32(x));
            for kernel in Kernel::available() {
                let got = conv.run_with(&x, &Pool::default(), kernel).unwrap();
                assert_eq!(got.shape, [1, cout, oh, ow]);
                let got = got.into_logical();
                for (g, w) in got.f32s().unwrap().iter().zip(&want) {
                    assert!(
                        (g - w).abs() < 1e-4 * (1.0 + w.abs()),
                        "{kernel:?} {cin}→{cout} k{k} s{s}: {g} vs {w}"
                    );
                }
            }
        }
    }

    /// The AVX2 and AVX-512 kernels sum in the same order, so the kernel the CPU picks changes
    /// no bit of the result (and no quantisation step after it): every block size from 1 to 8
    /// output channels, wide and single vectors and masked tails, both strides.
    #[test]
    fn the_vector_kernels_give_the_same_bits() {
        let vector: Vec<Kernel> = (Kernel::available().into_iter())
            .filter(|&k| k != Kernel::Plain)
            .collect();
        if vector.len() < 2 {
            eprintln!("this CPU runs {vector:?}: nothing to compare");
            return;
        }
        let pool = Pool::default();
        for cout in (1..=8).chain([11, 32]) {
            for &(cin, k, s, w) in &[(3, 9, 1, 121), (8, 3, 2, 100), (5, 3, 1, 37), (4, 1, 1, 16)] {
                let h = 7 + k;
                let x: Vec<f32> = (0..cin * h * w)
                    .map(|i| ((i * 37 % 101) as f32 - 50.0) / 13.0)
                    .collect();
                let wt: Vec<f32> = (0..cout * cin * k * k)
                    .map(|i| ((i * 53 % 89) as f32 - 44.0) / 31.0)
                    .collect();
                let bias: Vec<f32> = (0..cout).map(|i| i as f32 * 0.37 - 1.0).collect();
                let conv = Conv::new(
                    &Value::new(vec![cout, cin, k, k], Data::F32(wt)),
                    Some(&Value::new(vec![cout], Data::F32(bias))),
                    1,
                    &[s as i64, s as i64],
                    &[1, 1, 1, 1],
                )
                .unwrap();
                let x = Value::new(vec![1, cin, h, w], Data::F32(x));
                let runs: Vec<Vec<u32>> = (vector.iter())
                    .map(|&kernel| {
                        let y = conv.run_with(&x, &pool, kernel).unwrap();
                        y.f32s().unwrap().iter().map(|v| v.to_bits()).collect()
                    })
                    .collect();
                for (kernel, run) in vector.iter().zip(&runs).skip(1) {
                    assert!(
                        run == &runs[0],
                        "{kernel:?} against {:?}: {cin}→{cout} k{k} s{s} on {h}×{w}",
                        vector[0]
                    );
                }
            }
        }
    }
}
