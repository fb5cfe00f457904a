//! The graph's operators other than the convolution, with ONNX's semantics (opset 15), on
//! [`Value`]s in either storage. Big elementwise passes are split over the rayon pool.

use rayon::prelude::*;

use super::pool::Pool;
use super::value::{Data, Layout, Value, R};

/// Elements per parallel task of an elementwise pass: big enough to amortise the task, small
/// enough to spread a 1024 px activation over every core.
const CHUNK: usize = 1 << 15;

/// `x ↦ f(x)` on f32 values, in place.
pub(super) fn unary(mut x: Value, f: impl Fn(f32) -> f32 + Sync) -> R<Value> {
    match &mut x.data {
        Data::F32(v) => v
            .par_chunks_mut(CHUNK)
            .for_each(|c| c.iter_mut().for_each(|e| *e = f(*e))),
        _ => return Err("an elementwise op on non-f32 values".into()),
    }
    Ok(x)
}

/// The one-operand elementwise operators.
#[derive(Clone, Copy, Debug)]
pub(super) enum Unary {
    Relu,
    Sigmoid,
    Sqrt,
    Reciprocal,
}

impl Unary {
    /// The operator on one value, as ONNX defines it.
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Unary::Relu => {
                if x > 0.0 {
                    x
                } else {
                    0.0
                }
            }
            Unary::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Unary::Sqrt => x.sqrt(),
            Unary::Reciprocal => x.recip(),
        }
    }

    /// The operator over `v`, one monomorphised loop per operator so that each vectorises.
    pub fn over(self, v: &mut [f32]) {
        match self {
            Unary::Relu => v.iter_mut().for_each(|e| *e = Unary::Relu.apply(*e)),
            Unary::Sigmoid => v.iter_mut().for_each(|e| *e = Unary::Sigmoid.apply(*e)),
            Unary::Sqrt => v.iter_mut().for_each(|e| *e = e.sqrt()),
            Unary::Reciprocal => v.iter_mut().for_each(|e| *e = e.recip()),
        }
    }
}

/// `x ↦ op(x)` on f32 values, in place.
pub(super) fn unary_op(mut x: Value, op: Unary) -> R<Value> {
    match &mut x.data {
        Data::F32(v) => v.par_chunks_mut(CHUNK).for_each(|c| op.over(c)),
        _ => return Err("an elementwise op on non-f32 values".into()),
    }
    Ok(x)
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Binary {
    Add,
    Sub,
    Mul,
    Div,
}

impl Binary {
    /// `x op y` for one pair of values (the passes over many write one loop per operator, so
    /// that each vectorises).
    #[inline]
    pub fn apply(self, x: f32, y: f32) -> f32 {
        match self {
            Binary::Add => x + y,
            Binary::Sub => x - y,
            Binary::Mul => x * y,
            Binary::Div => x / y,
        }
    }
}

/// How element i of a binary op's bigger operand finds its partner in the smaller one.
#[derive(Clone, Copy)]
enum Pairing {
    Same,
    Scalar,
    Channel { c: usize, hw: usize, last: bool },
}

/// `big op small` with the broadcasts these graphs use: equal shapes, a single value, or a
/// per-channel `[1, C, 1, 1]` against a `[1, C, H, W]`, in place in `big`.
/// `reversed`: `small` is the left operand (`small op big`).
pub(super) fn binary(op: Binary, mut big: Value, small: &Value, reversed: bool) -> R<Value> {
    if small.len() > big.len() {
        return Err("binary: the operand modified in place must be the bigger one".into());
    }
    let s = small.f32s()?.to_vec();
    let shape_err = || {
        format!(
            "{op:?} of shapes {:?} and {:?} is not a supported broadcast",
            big.shape, small.shape
        )
    };
    let pairing = if s.len() == 1 {
        Pairing::Scalar
    } else if big.shape == small.shape {
        if big.layout == small.layout || (big.in_logical_order() && small.in_logical_order()) {
            Pairing::Same
        } else {
            return Err(shape_err());
        }
    } else if big.shape.len() == 4
        && small.shape.len() == 4
        && small.shape == [1, big.shape[1], 1, 1]
        && big.shape[0] == 1
    {
        Pairing::Channel {
            c: big.shape[1],
            hw: big.shape[2] * big.shape[3],
            last: big.layout == Layout::ChannelsLast,
        }
    } else if big.len() <= 1 << 20 {
        // Other broadcasts (the 26-style network's style blend) are of small values.
        let f = move |x: f32, y: f32| {
            if reversed {
                op.apply(y, x)
            } else {
                op.apply(x, y)
            }
        };
        return super::shapes::broadcast(f, big, small).map_err(|e| format!("{op:?}: {e}"));
    } else {
        return Err(shape_err());
    };
    let Data::F32(v) = &mut big.data else {
        return Err("an arithmetic op on non-f32 values".into());
    };
    // One monomorphised loop per operation and operand order, so each vectorises.
    match (op, reversed) {
        (Binary::Add, _) => combine(v, &s, pairing, |x, y| x + y),
        (Binary::Mul, _) => combine(v, &s, pairing, |x, y| x * y),
        (Binary::Sub, false) => combine(v, &s, pairing, |x, y| x - y),
        (Binary::Sub, true) => combine(v, &s, pairing, |x, y| y - x),
        (Binary::Div, false) => combine(v, &s, pairing, |x, y| x / y),
        (Binary::Div, true) => combine(v, &s, pairing, |x, y| y / x),
    }
    Ok(big)
}

/// `v[i] = f(v[i], partner of i in s)`.
fn combine(v: &mut [f32], s: &[f32], pairing: Pairing, f: impl Fn(f32, f32) -> f32 + Sync) {
    // Chunks hold whole pixels (channels last) or whole channels (channels first), so each
    // case is a plain loop with no index arithmetic per element.
    let (chunk, per) = match pairing {
        Pairing::Channel { c, last: true, .. } => ((CHUNK / c).max(1) * c, c),
        Pairing::Channel {
            hw, last: false, ..
        } => (hw, hw),
        _ => (CHUNK, 1),
    };
    v.par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(t, part)| match pairing {
            Pairing::Same => part
                .iter_mut()
                .zip(&s[t * chunk..])
                .for_each(|(e, &o)| *e = f(*e, o)),
            Pairing::Scalar => part.iter_mut().for_each(|e| *e = f(*e, s[0])),
            Pairing::Channel { last: true, .. } => part.chunks_exact_mut(per).for_each(|px| {
                px.iter_mut().zip(s).for_each(|(e, &o)| *e = f(*e, o));
            }),
            Pairing::Channel { c, last: false, .. } => {
                let o = s[t % c];
                part.iter_mut().for_each(|e| *e = f(*e, o));
            }
        });
}

/// Per-tensor or per-axis quantisation parameters, broadcast over the stored elements.
struct Params {
    scale: Vec<f32>,
    zero: Vec<f32>,
    /// Stored elements per step along the axis, and the axis' length (1, 1 per tensor).
    inner: usize,
    dim: usize,
}

impl Params {
    fn new(x: &Value, scale: &Value, zero: Option<&Value>, axis: i64) -> R<Params> {
        let scale_v = scale.as_f32_vec();
        let zero_v = zero.map_or_else(|| vec![0.0; scale_v.len()], Value::as_f32_vec);
        if scale_v.is_empty() || zero_v.len() != scale_v.len() {
            return Err("scale and zero point sizes differ".into());
        }
        if scale_v.len() == 1 {
            return Ok(Params {
                scale: scale_v,
                zero: zero_v,
                inner: 1,
                dim: 1,
            });
        }
        let rank = x.shape.len() as i64;
        let axis = if axis < 0 { axis + rank } else { axis };
        if !(0..rank).contains(&axis) || x.shape[axis as usize] != scale_v.len() {
            return Err(format!(
                "per-axis scales of length {} on axis {axis} of shape {:?}",
                scale_v.len(),
                x.shape
            ));
        }
        let dims = x.stored_dims();
        let stored = x.stored_axis(axis as usize);
        Ok(Params {
            inner: dims[stored + 1..].iter().product(),
            dim: dims[stored],
            scale: scale_v,
            zero: zero_v,
        })
    }

    fn at(&self, i: usize) -> (f32, f32) {
        let k = (i / self.inner) % self.dim;
        (self.scale[k], self.zero[k])
    }
}

/// A QuantizeLinear → DequantizeLinear with constant parameters over the channels of a
/// `[1, C, H, W]` value, per tensor or per channel, applied to runs of one channel's values
/// (by the fused chains and the convolutions' gathered inputs).
#[derive(Clone, Debug)]
pub(super) struct ChannelFakeQuantize {
    recip: Vec<f32>,
    scale: Vec<f32>,
    zero: Vec<f32>,
}

impl ChannelFakeQuantize {
    /// From the scales and zero points (none: zeros); `None` unless there is one of each, or
    /// one per channel of `channels` along the channel axis (`channel_axis`).
    pub fn new(
        scale: Vec<f32>,
        zero: Option<Vec<f32>>,
        channels: usize,
        channel_axis: bool,
    ) -> Option<Self> {
        let zero = zero.unwrap_or_else(|| vec![0.0; scale.len()]);
        let fits = scale.len() == 1 || (scale.len() == channels && channel_axis);
        (zero.len() == scale.len() && fits).then(|| ChannelFakeQuantize {
            recip: scale.iter().map(|s| s.recip()).collect(),
            scale,
            zero,
        })
    }

    /// Over `v`, values of channel `channel`.
    #[inline(always)]
    pub fn over(&self, v: &mut [f32], channel: usize) {
        let k = if self.scale.len() == 1 { 0 } else { channel };
        let (r, s, z) = (self.recip[k], self.scale[k], self.zero[k]);
        v.iter_mut()
            .for_each(|e| *e = fake_quantize_one(*e, r, s, z));
    }
}

/// `dequantize(quantize(v))` for one value, given the scale's reciprocal, the scale and the
/// zero point: what [`fake_quantize`] and the fused chains compute.
#[inline(always)]
pub(super) fn fake_quantize_one(v: f32, recip: f32, scale: f32, zero: f32) -> f32 {
    ((round_half_even(v * recip) + zero).clamp(-128.0, 127.0) - zero) * scale
}

/// Round half to even, for |v| < 2²²: adding 1.5·2²³ leaves no fraction bits, so the FPU's
/// default rounding (to nearest, ties to even) does the rounding. Unlike `round_ties_even` this
/// compiles to two vector additions instead of a call to `rintf` per element. Larger values are
/// clamped first (they saturate the int8 result either way); NaN stays NaN (and becomes 0).
#[inline(always)]
fn round_half_even(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    let v = v.clamp(-4_194_304.0, 4_194_304.0);
    (v + MAGIC) - MAGIC
}

/// QuantizeLinear to int8: `saturate(round_half_even(x / scale) + zero)`. The division is a
/// multiplication by the reciprocal, as tract and onnxruntime's int8 kernels do, so values on
/// a rounding boundary land where theirs do.
pub(super) fn quantize(x: &Value, scale: &Value, zero: Option<&Value>, axis: i64) -> R<Value> {
    if let Some(z) = zero {
        if !matches!(z.data, Data::I8(_)) {
            return Err("QuantizeLinear: only int8 outputs are supported".into());
        }
    }
    let p = Params::new(x, scale, zero, axis)?;
    let recip: Vec<f32> = p.scale.iter().map(|s| s.recip()).collect();
    let xs = x.f32s()?;
    let mut out = vec![0i8; xs.len()];
    let q = |v: f32, r: f32, z: f32| (round_half_even(v * r) + z).clamp(-128.0, 127.0) as i8;
    out.par_chunks_mut(CHUNK)
        .zip(xs.par_chunks(CHUNK))
        .enumerate()
        .for_each(|(t, (o, xc))| {
            if p.dim == 1 {
                let (r, z) = (recip[0], p.zero[0]);
                o.iter_mut().zip(xc).for_each(|(o, &v)| *o = q(v, r, z));
            } else {
                for (j, (o, &v)) in o.iter_mut().zip(xc).enumerate() {
                    let k = ((t * CHUNK + j) / p.inner) % p.dim;
                    *o = q(v, recip[k], p.zero[k]);
                }
            }
        });
    Ok(Value {
        shape: x.shape.clone(),
        data: Data::I8(out),
        layout: x.layout,
    })
}

/// `dequantize(quantize(x))` in place: the same values as the two ops (the integer `q − zero`
/// is exact in f32), without the int8 buffer between them.
pub(super) fn fake_quantize(
    mut x: Value,
    scale: &Value,
    zero: Option<&Value>,
    axis: i64,
) -> R<Value> {
    let p = Params::new(&x, scale, zero, axis)?;
    let recip: Vec<f32> = p.scale.iter().map(|s| s.recip()).collect();
    let fq = fake_quantize_one;
    let Data::F32(v) = &mut x.data else {
        return Err("quantizing non-f32 values".into());
    };
    v.par_chunks_mut(CHUNK).enumerate().for_each(|(t, c)| {
        if p.dim == 1 {
            let (r, s, z) = (recip[0], p.scale[0], p.zero[0]);
            c.iter_mut().for_each(|e| *e = fq(*e, r, s, z));
        } else {
            for (j, e) in c.iter_mut().enumerate() {
                let k = ((t * CHUNK + j) / p.inner) % p.dim;
                *e = fq(*e, recip[k], p.scale[k], p.zero[k]);
            }
        }
    });
    Ok(x)
}

/// DequantizeLinear: `(q − zero) · scale`, from int8 or int32.
pub(super) fn dequantize(
    x: &Value,
    scale: &Value,
    zero: Option<&Value>,
    axis: i64,
    pool: &Pool,
) -> R<Value> {
    let p = Params::new(x, scale, zero, axis)?;
    fn run<T: Copy + Sync + Into<f64>>(q: &[T], p: &Params, pool: &Pool) -> Vec<f32> {
        // int32 biases are exact in f64; their difference to the zero point too.
        let dq = |v: T, s: f32, z: f32| ((v.into() - z as f64) as f32) * s;
        let mut out = pool.take(q.len(), 0.0);
        out.par_chunks_mut(CHUNK)
            .zip(q.par_chunks(CHUNK))
            .enumerate()
            .for_each(|(t, (o, qc))| {
                if p.dim == 1 {
                    let (s, z) = (p.scale[0], p.zero[0]);
                    o.iter_mut().zip(qc).for_each(|(o, &v)| *o = dq(v, s, z));
                } else {
                    for (j, (o, &v)) in o.iter_mut().zip(qc).enumerate() {
                        let (s, z) = p.at(t * CHUNK + j);
                        *o = dq(v, s, z);
                    }
                }
            });
        out
    }
    let out = match &x.data {
        Data::I8(q) => run(q, &p, pool),
        Data::I32(q) => run(q, &p, pool),
        _ => return Err("DequantizeLinear: only int8 and int32 inputs are supported".into()),
    };
    Ok(Value {
        shape: x.shape.clone(),
        data: Data::F32(out),
        layout: x.layout,
    })
}

/// The mean over H and W of each channel: `[1, C, H, W]` → `[1, C, 1, 1]`, summed in f64 so the
/// mean does not depend on how the pixels were split over threads.
/// A sum of f32 values in f64, element `i` into partial sum `i mod 8`, the eight added at the
/// end: one running sum waits for each addition's latency (four cycles), eight are independent.
/// Every channel mean of a channels-first value goes through it (fused or not), so those agree
/// bit for bit.
#[derive(Default)]
pub(super) struct Sum([f64; 8]);

impl Sum {
    /// Adds `values`, which continue the ones added so far; every call but the last must add a
    /// multiple of eight, so that each element keeps its partial sum.
    pub fn add(&mut self, values: &[f32]) {
        let chunks = values.chunks_exact(8);
        let rest = chunks.remainder();
        for chunk in chunks {
            for (a, &e) in self.0.iter_mut().zip(chunk) {
                *a += e as f64;
            }
        }
        for (a, &e) in self.0.iter_mut().zip(rest) {
            *a += e as f64;
        }
    }

    pub fn total(&self) -> f64 {
        let s = &self.0;
        ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]))
    }
}

pub(super) fn global_average_pool(x: &Value) -> R<Value> {
    if x.layout == Layout::Logical && x.shape.len() == 4 && x.shape[0] == 1 {
        let (c, hw) = (x.shape[1], x.shape[2] * x.shape[3]);
        let mean = x
            .f32s()?
            .par_chunks(hw.max(1))
            .map(|plane| {
                let mut sum = Sum::default();
                sum.add(plane);
                (sum.total() / hw as f64) as f32
            })
            .collect();
        return Ok(Value::new(vec![1, c, 1, 1], Data::F32(mean)));
    }
    let x = x.channels_last()?;
    let c = x.shape[1];
    let pixels = x.shape[2] * x.shape[3];
    let v = x.f32s()?;
    let rows = (CHUNK / c.max(1)).max(1) * c;
    let sums = v
        .par_chunks(rows)
        .map(|chunk| {
            let mut s = vec![0f64; c];
            for px in chunk.chunks_exact(c) {
                for (a, &e) in s.iter_mut().zip(px) {
                    *a += e as f64;
                }
            }
            s
        })
        .reduce(
            || vec![0f64; c],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        );
    let mean = sums.iter().map(|s| (s / pixels as f64) as f32).collect();
    Ok(Value::new(vec![1, c, 1, 1], Data::F32(mean)))
}

#[derive(Clone, Copy, Debug)]
pub(super) enum PadMode {
    Constant,
    Reflect,
}

/// Pad of a 4-D f32 value, in either storage: `pads` are ONNX's `[begin…, end…]` in logical
/// axis order; the batch axis cannot be padded.
pub(super) fn pad(x: &Value, pads: &[i64], mode: PadMode, fill: f32, pool: &Pool) -> R<Value> {
    if x.shape.len() != 4 || pads.len() != 8 || pads.iter().any(|&p| p < 0) {
        return Err(format!(
            "Pad: pads {pads:?} on shape {:?} (4-D, non-negative only)",
            x.shape
        ));
    }
    let d = x.stored_dims();
    let mut before = [0usize; 4];
    let mut after = [0usize; 4];
    for axis in 0..4 {
        let s = x.stored_axis(axis);
        before[s] = pads[axis] as usize;
        after[s] = pads[axis + 4] as usize;
    }
    if before[0] + after[0] != 0 {
        return Err(format!(
            "Pad: the batch axis cannot be padded, got {pads:?}"
        ));
    }
    if let PadMode::Reflect = mode {
        if (1..4).any(|a| before[a] >= d[a] || after[a] >= d[a]) {
            return Err(format!(
                "Pad: reflecting {pads:?} needs a bigger input than {:?}",
                x.shape
            ));
        }
    }
    let od: Vec<usize> = (0..4).map(|a| d[a] + before[a] + after[a]).collect();
    // The source index along axis `a` of output index `i`, or None for the fill value.
    let source = |a: usize, i: usize| -> Option<usize> {
        let (i, n) = (i as isize - before[a] as isize, d[a] as isize);
        match mode {
            PadMode::Constant => (0..n).contains(&i).then_some(i as usize),
            PadMode::Reflect if i < 0 => Some((-i) as usize),
            PadMode::Reflect if i >= n => Some((2 * (n - 1) - i) as usize),
            PadMode::Reflect => Some(i as usize),
        }
    };
    let src = x.f32s()?;
    let mut out = pool.take(od.iter().product(), fill);
    // One task per index of the first two stored axes: od[2] runs of od[3] values each.
    out.par_chunks_mut(od[2] * od[3])
        .enumerate()
        .for_each(|(t, block)| {
            let (i0, i1) = (t / od[1], t % od[1]);
            let Some(s1) = source(1, i1) else { return };
            for (i2, run) in block.chunks_exact_mut(od[3]).enumerate() {
                let Some(s2) = source(2, i2) else { continue };
                let line = &src[((i0 * d[1] + s1) * d[2] + s2) * d[3]..][..d[3]];
                run[before[3]..][..d[3]].copy_from_slice(line);
                for i3 in (0..before[3]).chain(before[3] + d[3]..od[3]) {
                    if let Some(s3) = source(3, i3) {
                        run[i3] = line[s3];
                    }
                }
            }
        });
    let mut shape = x.shape.clone();
    for axis in 0..4 {
        shape[axis] += (pads[axis] + pads[axis + 4]) as usize;
    }
    Ok(Value {
        shape,
        data: Data::F32(out),
        layout: x.layout,
    })
}

/// Nearest-neighbour upsampling by whole factors along the spatial axes (ONNX Resize with
/// `asymmetric` coordinates and `floor` rounding: output pixel y reads input y / factor).
pub(super) fn upsample(x: &Value, factors: [usize; 4], pool: &Pool) -> R<Value> {
    if factors[0] != 1 || factors[1] != 1 || x.shape.len() != 4 || x.shape[0] != 1 {
        return Err(format!(
            "Resize: factors {factors:?} of shape {:?}",
            x.shape
        ));
    }
    let (fy, fx) = (factors[2], factors[3]);
    if fy == 1 && fx == 1 {
        return Ok(Value {
            data: Data::F32(pool.copy(x.f32s()?)),
            ..x.clone_shape()
        });
    }
    if x.layout == Layout::Logical {
        // Channel planes: each input row widened once, then copied to its `fy` output rows.
        let (c, h, w) = (x.shape[1], x.shape[2], x.shape[3]);
        let (oh, ow) = (h * fy, w * fx);
        let src = x.f32s()?;
        let mut out = pool.take(c * oh * ow, 0.0);
        out.par_chunks_mut(fy * ow)
            .enumerate()
            .for_each(|(r, rows)| {
                let row = &src[r * w..][..w];
                let (first, others) = rows.split_at_mut(ow);
                for (&v, dst) in row.iter().zip(first.chunks_exact_mut(fx)) {
                    dst.fill(v);
                }
                for other in others.chunks_exact_mut(ow) {
                    other.copy_from_slice(first);
                }
            });
        return Ok(Value::new(vec![1, c, oh, ow], Data::F32(out)));
    }
    let x = x.channels_last()?;
    let (c, h, w) = (x.shape[1], x.shape[2], x.shape[3]);
    let (oh, ow) = (h * fy, w * fx);
    let src = x.f32s()?;
    let mut out = pool.take(oh * ow * c, 0.0);
    // One input row makes `fy` equal output rows: widen it once, then copy it.
    out.par_chunks_mut(fy * ow * c)
        .enumerate()
        .for_each(|(y, rows)| {
            let row = &src[y * w * c..][..w * c];
            let (first, others) = rows.split_at_mut(ow * c);
            for (px, dst) in row.chunks_exact(c).zip(first.chunks_exact_mut(fx * c)) {
                for d in dst.chunks_exact_mut(c) {
                    d.copy_from_slice(px);
                }
            }
            for other in others.chunks_exact_mut(ow * c) {
                other.copy_from_slice(first);
            }
        });
    Ok(Value {
        shape: vec![1, c, oh, ow],
        data: Data::F32(out),
        layout: Layout::ChannelsLast,
    })
}

/// Reshape (ONNX's 0 = keep, −1 = infer).
pub(super) fn reshape(x: Value, target: &[i64]) -> R<Value> {
    let x = x.into_logical();
    let len = x.len();
    let mut shape = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            0 => shape.push(*x.shape.get(i).ok_or("Reshape: 0 beyond the input's rank")?),
            -1 if infer.is_none() => {
                infer = Some(i);
                shape.push(1);
            }
            t if t > 0 => shape.push(t as usize),
            _ => return Err(format!("Reshape: bad target shape {target:?}")),
        }
    }
    let known: usize = shape.iter().product();
    if let Some(i) = infer {
        if known == 0 || !len.is_multiple_of(known) {
            return Err(format!(
                "Reshape: cannot infer {target:?} from {len} values"
            ));
        }
        shape[i] = len / known;
    }
    if shape.iter().product::<usize>() != len {
        return Err(format!("Reshape: {:?} to {target:?}", x.shape));
    }
    Ok(Value::new(shape, x.data))
}

/// Transpose. NHWC ↔ NCHW of a 4-D value only relabels its storage; others reorder.
pub(super) fn transpose(x: Value, perm: &[usize]) -> R<Value> {
    let s = &x.shape;
    match (x.layout, perm) {
        (Layout::Logical, [0, 3, 1, 2]) if s.len() == 4 => Ok(Value {
            shape: vec![s[0], s[3], s[1], s[2]],
            data: x.data,
            layout: Layout::ChannelsLast,
        }),
        (Layout::ChannelsLast, [0, 2, 3, 1]) => {
            Ok(Value::new(vec![s[0], s[2], s[3], s[1]], x.data))
        }
        _ => x.permuted(perm),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cl(c: usize, h: usize, w: usize, data: Vec<f32>) -> Value {
        Value {
            shape: vec![1, c, h, w],
            data: Data::F32(data),
            layout: Layout::ChannelsLast,
        }
    }

    #[test]
    fn a_sum_added_in_blocks_is_the_sum_added_at_once() {
        let v: Vec<f32> = (0..10_001)
            .map(|i| ((i * 7919 % 1009) as f32 - 500.0) / 3.0)
            .collect();
        let mut whole = Sum::default();
        whole.add(&v);
        let mut blocks = Sum::default();
        for b in v.chunks(2048) {
            blocks.add(b);
        }
        assert_eq!(whole.total().to_bits(), blocks.total().to_bits());
        let plain: f64 = v.iter().map(|&e| e as f64).sum();
        assert!((whole.total() - plain).abs() <= 1e-9 * plain.abs().max(1.0));
    }

    #[test]
    fn quantize_rounds_half_to_even_and_saturates() {
        let x = Value::new(vec![5], Data::F32(vec![0.5, 1.5, 2.5, -300.0, 300.0]));
        let one = Value::new(vec![], Data::F32(vec![1.0]));
        let zero = Value::new(vec![], Data::I8(vec![0]));
        let q = quantize(&x, &one, Some(&zero), 1).unwrap();
        let Data::I8(q) = q.data else { panic!() };
        assert_eq!(q, [0, 2, 2, -128, 127]);
    }

    #[test]
    fn per_channel_dequantize_follows_the_channel_in_either_storage() {
        // logical [1, 2, 1, 2] with per-channel scales 1 and 10
        let q = Value::new(vec![1, 2, 1, 2], Data::I8(vec![1, 2, 3, 4]));
        let scale = Value::new(vec![2], Data::F32(vec![1.0, 10.0]));
        let zero = Value::new(vec![2], Data::I8(vec![0, 1]));
        let d = dequantize(&q, &scale, Some(&zero), 1, &Pool::default()).unwrap();
        assert_eq!(d.f32s().unwrap(), &[1.0, 2.0, 20.0, 30.0]);
        let q_cl = Value {
            data: Data::I8(vec![1, 3, 2, 4]),
            layout: Layout::ChannelsLast,
            ..q
        };
        let d = dequantize(&q_cl, &scale, Some(&zero), 1, &Pool::default()).unwrap();
        assert_eq!(d.f32s().unwrap(), &[1.0, 20.0, 2.0, 30.0]);
    }

    fn padded(x: &Value, pads: &[i64], mode: PadMode, fill: f32) -> Value {
        pad(x, pads, mode, fill, &Pool::default()).unwrap()
    }

    #[test]
    fn reflect_pad_mirrors_without_repeating_the_edge() {
        // one channel, 1×3 row [1 2 3] padded by 2 on the left and 1 on the right
        let row_pads = [0, 0, 0, 2, 0, 0, 0, 1];
        let p = padded(
            &cl(1, 1, 3, vec![1.0, 2.0, 3.0]),
            &row_pads,
            PadMode::Reflect,
            0.0,
        );
        assert_eq!(p.shape, [1, 1, 1, 6]);
        assert_eq!(p.f32s().unwrap(), &[3.0, 2.0, 1.0, 2.0, 3.0, 2.0]);
        // The same row stored channel-first, and a logical NHWC image padded on H and W.
        let x = Value::new(vec![1, 1, 1, 3], Data::F32(vec![1.0, 2.0, 3.0]));
        let p = padded(&x, &row_pads, PadMode::Reflect, 0.0);
        assert_eq!(p.f32s().unwrap(), &[3.0, 2.0, 1.0, 2.0, 3.0, 2.0]);
        let nhwc = Value::new(vec![1, 2, 1, 2], Data::F32(vec![1.0, 2.0, 3.0, 4.0]));
        let p = padded(&nhwc, &[0, 1, 1, 0, 0, 0, 0, 0], PadMode::Constant, 9.0);
        assert_eq!(p.shape, [1, 3, 2, 2]);
        assert_eq!(
            p.f32s().unwrap(),
            &[9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 1.0, 2.0, 9.0, 9.0, 3.0, 4.0]
        );
    }

    #[test]
    fn channel_broadcast_and_mean_pool_per_channel() {
        let x = cl(2, 1, 2, vec![1.0, 10.0, 3.0, 30.0]);
        let m = global_average_pool(&x).unwrap();
        assert_eq!(m.f32s().unwrap(), &[2.0, 20.0]);
        let d = binary(Binary::Sub, x, &m, false).unwrap();
        assert_eq!(d.f32s().unwrap(), &[-1.0, -10.0, 1.0, 10.0]);
        let r = binary(
            Binary::Sub,
            d,
            &Value::new(vec![], Data::F32(vec![1.0])),
            true,
        )
        .unwrap();
        assert_eq!(r.f32s().unwrap(), &[2.0, 11.0, 0.0, -9.0]);
        let up = upsample(&cl(1, 1, 2, vec![1.0, 2.0]), [1, 1, 2, 2], &Pool::default()).unwrap();
        assert_eq!(
            up.f32s().unwrap(),
            &[1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0]
        );
        let planes = Value::new(vec![1, 2, 1, 2], Data::F32(vec![1.0, 2.0, 3.0, 4.0]));
        let up = upsample(&planes, [1, 1, 2, 2], &Pool::default())
            .unwrap()
            .into_logical();
        assert_eq!(&up.f32s().unwrap()[8..12], &[3.0, 3.0, 4.0, 4.0]);
        let m = global_average_pool(&planes).unwrap();
        assert_eq!(m.f32s().unwrap(), &[1.5, 3.5]);
    }
}
