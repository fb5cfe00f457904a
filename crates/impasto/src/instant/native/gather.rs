//! What a convolution reads on its way into its phase planes: the transform computes
//! `Conv(FakeQuantize(Pad(FakeQuantize(Resize(x)))))` before most of its convolutions (a
//! mirror pad, the decoder's ×2 upsampling), and each of those was a pass over a tensor of up to
//! 100 MB at 1024 px — the pads alone took an eighth of a run. The convolution copies its input
//! into phase planes anyway ([`super::conv`]); a [`Gather`] makes that copy read each plane
//! element straight from `x` through the upsampling and the padding, and fake-quantises it
//! there. Copies commute with the elementwise quantisation, so the values are the same. The
//! style predictor's ReLU6 (a Clip before each quantisation) is applied there too: a pass
//! over each of its expanded maps fewer.

use std::collections::HashMap;

use super::conv::Kernel;
use super::ops::{ChannelFakeQuantize, PadMode};
use super::value::{Value, R};
use super::{Op, Source, Step};

/// The upsampling, padding and quantisation between a convolution's input and what it
/// convolves.
#[derive(Clone, Debug)]
pub(super) struct Gather {
    /// Nearest-neighbour factors (rows, columns), applied first.
    up: (usize, usize),
    /// The padding (top, left, bottom, right) and how it fills; `None`: the convolution's own
    /// zero padding.
    pad: Option<(PadMode, [usize; 4])>,
    /// Applied in order to every value (they commute with the copying).
    elementwise: Vec<Elementwise>,
}

/// What a [`Gather`] does to each value it copies: each maps zero to zero, so the zeros of
/// a padding, made before or after it in the graph, are the same.
#[derive(Clone, Debug)]
enum Elementwise {
    Quantize(ChannelFakeQuantize),
    /// A Clip (the predictor's ReLU6) with its bounds, which hold zero.
    Clip(f32, f32),
}

impl Elementwise {
    /// Whether it maps a zero to a zero (the same bits) in each of `channels` channels: the
    /// zeros of a padding may be copied either side of it, and all of a phase plane's zeros
    /// go through it.
    fn keeps_zero(&self, channels: usize) -> bool {
        (0..channels).all(|c| {
            let mut zero = [0.0];
            self.over(&mut zero, c);
            zero[0].to_bits() == 0
        })
    }

    /// Over `v`, values of channel `channel`.
    #[inline(always)]
    fn over(&self, v: &mut [f32], channel: usize) {
        match self {
            Elementwise::Quantize(q) => q.over(v, channel),
            // max/min as the Clip step computes it.
            &Elementwise::Clip(lo, hi) => v.iter_mut().for_each(|x| *x = x.max(lo).min(hi)),
        }
    }
}

/// Where padded index `i` (of `before + n·factor + after`) reads, in the unpadded,
/// not-upsampled input; `None` for a zero.
fn source(i: usize, before: usize, n: usize, factor: usize, mode: PadMode) -> Option<usize> {
    let up = n * factor;
    let i = i as isize - before as isize;
    let j = match mode {
        _ if (0..up as isize).contains(&i) => i,
        PadMode::Constant => return None,
        PadMode::Reflect if i < 0 => -i,
        PadMode::Reflect => 2 * (up as isize - 1) - i,
    };
    (0..up as isize).contains(&j).then_some(j as usize / factor)
}

impl Gather {
    /// The padding the convolution sees: this one's, or its own (`conv_pads`, zeros).
    pub fn pads(&self, conv_pads: [usize; 4]) -> [usize; 4] {
        self.pad.map_or(conv_pads, |(_, p)| p)
    }

    /// Whether it only changes values (no upsampling or padding): the convolution's input keeps
    /// its shape.
    pub fn is_elementwise(&self) -> bool {
        self.up == (1, 1) && self.pad.is_none()
    }

    /// The input's size after upsampling.
    pub fn upsampled(&self, (h, w): (usize, usize)) -> (usize, usize) {
        (h * self.up.0, w * self.up.1)
    }

    /// Fills `phases` (`sx` planes of `width` values: row `row` of channel `ci`, padded
    /// coordinates) from `src`, a `[1, C, h, w]` value stored channels first or last, through
    /// the upsampling and padding; the elementwise steps are [`Gather::apply`]'s, run after.
    #[allow(clippy::too_many_arguments)]
    pub fn row(
        &self,
        src: &[f32],
        channels_last: bool,
        (c, h, w): (usize, usize, usize),
        (ci, row): (usize, usize),
        columns: &[Columns],
        conv_pads: [usize; 4],
        phases: &mut [f32],
    ) {
        let [top, ..] = self.pads(conv_pads);
        let mode = self.pad.map_or(PadMode::Constant, |(m, _)| m);
        let width = phases.len() / columns.len();
        let Some(y) = source(row, top, h, self.up.0, mode) else {
            return; // a zero row
        };
        for (dst, cols) in phases.chunks_mut(width).zip(columns) {
            // Zeros outside `cols.first..` (each step keeps a zero).
            let dst = &mut dst[cols.first..][..cols.x.len()];
            if channels_last {
                let base = y * w * c + ci;
                for (d, &x) in dst.iter_mut().zip(&cols.x) {
                    *d = src[base + x as usize * c];
                }
            } else {
                let line = &src[(ci * h + y) * w..][..w];
                let (lo, hi) = cols.run;
                for (d, &x) in (dst.iter_mut().zip(&cols.x)).take(lo) {
                    *d = line[x as usize];
                }
                // The stretch without upsampling or mirroring: a copy of every column or of
                // every other one, without the table.
                if hi > lo {
                    let from = cols.x[lo] as usize;
                    match cols.step {
                        1 => dst[lo..hi].copy_from_slice(&line[from..][..hi - lo]),
                        2 => {
                            let pairs = line[from..][..2 * (hi - lo) - 1].chunks(2);
                            for (d, pair) in dst[lo..hi].iter_mut().zip(pairs) {
                                *d = pair[0];
                            }
                        }
                        _ => unreachable!("Columns::run is only set for steps 1 and 2"),
                    }
                }
                for (d, &x) in (dst.iter_mut().zip(&cols.x)).skip(hi) {
                    *d = line[x as usize];
                }
            }
        }
    }

    /// Its elementwise steps in order over `v`, values of channel `channel` (zeros stay zeros),
    /// compiled for the widest vectors the CPU has ([`Kernel::best`]): the crate is built for
    /// baseline x86-64, whose four lanes made this a fifth of the style predictor's time. The
    /// same operations on each value, so the same bits (Rust never fuses a multiply and an add
    /// on its own).
    pub fn apply(&self, v: &mut [f32], channel: usize) {
        #[inline(always)]
        fn each(steps: &[Elementwise], v: &mut [f32], channel: usize) {
            for e in steps {
                e.over(v, channel);
            }
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        fn avx512(steps: &[Elementwise], v: &mut [f32], channel: usize) {
            each(steps, v, channel)
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        fn avx2(steps: &[Elementwise], v: &mut [f32], channel: usize) {
            each(steps, v, channel)
        }
        let steps = &self.elementwise[..];
        match Kernel::best() {
            // SAFETY: Kernel::best names only what the CPU runs.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { avx512(steps, v, channel) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { avx2(steps, v, channel) },
            Kernel::Plain => each(steps, v, channel),
        }
    }

    /// For each of `sx` phases, the input column of each of its plane columns that reads one
    /// (the others are zeros); fails where a mirror pad is wider than the input.
    pub fn columns(
        &self,
        (h, w): (usize, usize),
        conv_pads: [usize; 4],
        sx: usize,
        width: usize,
    ) -> R<Vec<Columns>> {
        let [top, left, bottom, right] = self.pads(conv_pads);
        let (uh, uw) = self.upsampled((h, w));
        let mode = self.pad.map_or(PadMode::Constant, |(m, _)| m);
        if matches!(mode, PadMode::Reflect) && (top.max(bottom) >= uh || left.max(right) >= uw) {
            return Err(format!(
                "Pad: reflecting {:?} needs a bigger input than {uw}×{uh}",
                [top, left, bottom, right]
            ));
        }
        Ok((0..sx)
            .map(|p| {
                let all: Vec<Option<usize>> = (0..width)
                    .map(|xq| {
                        let pc = xq * sx + p;
                        (pc < left + uw + right)
                            .then(|| source(pc, left, w, self.up.1, mode))
                            .flatten()
                    })
                    .collect();
                // Zeros only at the ends (the zero padding and the margin): one run reads.
                let first = all.iter().position(Option::is_some).unwrap_or(width);
                let x: Vec<u32> = all[first..]
                    .iter()
                    .map_while(|&x| x.map(|x| x as u32))
                    .collect();
                // The longest stretch reading every sx-th column (sx of 1 or 2), if any.
                let step = sx as u32;
                let mut run = (0, 0);
                if self.up.1 == 1 && (sx == 1 || sx == 2) {
                    let mut lo = 0;
                    for i in 1..=x.len() {
                        if i == x.len() || x[i] != x[i - 1].wrapping_add(step) {
                            if i - lo > run.1 - run.0 {
                                run = (lo, i);
                            }
                            lo = i;
                        }
                    }
                }
                Columns {
                    first,
                    x,
                    run,
                    step: sx,
                }
            })
            .collect())
    }
}

/// The input columns one phase plane reads: plane columns `first..first + x.len()` read
/// input columns `x`; the others are zeros.
#[derive(Clone, Debug)]
pub(super) struct Columns {
    first: usize,
    x: Vec<u32>,
    /// A stretch `lo..hi` of `x` where each entry is the previous one plus `step` (the
    /// stride, 1 or 2; empty where the input is upsampled), copied without the table.
    run: (usize, usize),
    step: usize,
}

/// Folds into each convolution the upsampling, padding and fake-quantisation steps before it
/// whose results only it reads: at most one Resize, then at most one Pad (mirror, or zeros
/// when the convolution pads nothing itself), with any number of per-tensor or per-channel
/// fake quantisations and Clips (whose bounds hold zero) around them, all with constant
/// parameters.
pub(super) fn fuse(steps: Vec<Step>, consts: &[Value], output: Source) -> Vec<Step> {
    let readers = super::readers(&steps);
    let producer: HashMap<usize, usize> = (steps.iter().enumerate())
        .map(|(i, s)| (s.output, i))
        .collect();
    let konst = |s: Option<&Source>| match s {
        Some(Source::Const(c)) => Some(&consts[*c]),
        _ => None,
    };
    let mut absorbed = vec![false; steps.len()];
    let mut rewrites: Vec<(usize, Gather, Source)> = Vec::new();
    for (j, step) in steps.iter().enumerate() {
        let Op::Conv(conv) = &step.op else { continue };
        let mut gather = Gather {
            up: (1, 1),
            pad: None,
            elementwise: Vec::new(),
        };
        let (mut cur, mut taken) = (step.inputs[0], Vec::new());
        while let Source::Slot(s) = cur {
            if readers.get(&s) != Some(&1) || output == cur {
                break;
            }
            let Some(&i) = producer.get(&s) else { break };
            let st = &steps[i];
            let ok = match &st.op {
                Op::FakeQuantize { axis } => {
                    let scale = konst(st.inputs.get(1)).map(Value::as_f32_vec);
                    // Absent: zeros; not constant: no fusion.
                    let zero = match st.inputs.get(2) {
                        None | Some(Source::Absent) => Some(None),
                        z => konst(z).map(|v| Some(v.as_f32_vec())),
                    };
                    let channels = conv.in_channels();
                    let q = scale.zip(zero).and_then(|(scale, zero)| {
                        ChannelFakeQuantize::new(scale, zero, channels, *axis == 1)
                    });
                    let q = q.map(Elementwise::Quantize);
                    let q = q.filter(|q| q.keeps_zero(channels));
                    q.map(|q| gather.elementwise.push(q)).is_some()
                }
                Op::Clip => {
                    // Absent bounds: none; not constant: no fusion.
                    let bound = |i: usize, none: f32| match st.inputs.get(i) {
                        None | Some(Source::Absent) => Some(none),
                        b => konst(b).and_then(|v| v.as_f32_vec().first().copied()),
                    };
                    match (bound(1, f32::NEG_INFINITY), bound(2, f32::INFINITY)) {
                        (Some(lo), Some(hi)) => {
                            let clip = Elementwise::Clip(lo, hi);
                            let keeps = clip.keeps_zero(1);
                            keeps.then(|| gather.elementwise.push(clip)).is_some()
                        }
                        _ => false,
                    }
                }
                // Walking backwards, the pad comes before the upsampling (or there is none).
                Op::Pad(mode) if gather.pad.is_none() && gather.up == (1, 1) => {
                    let pads = konst(st.inputs.get(1)).and_then(|v| v.i64s().ok());
                    let fill = match st.inputs.get(2) {
                        None | Some(Source::Absent) => Some(0.0),
                        f => konst(f).and_then(|v| v.as_f32_vec().first().copied()),
                    };
                    match (pads, fill) {
                        (Some(&[0, 0, t, l, 0, 0, b, r]), Some(fill))
                            if t >= 0
                                && l >= 0
                                && b >= 0
                                && r >= 0
                                && (matches!(mode, PadMode::Reflect) || fill == 0.0)
                                && conv.pads() == [0; 4] =>
                        {
                            gather.pad =
                                Some((*mode, [t as usize, l as usize, b as usize, r as usize]));
                            true
                        }
                        _ => false,
                    }
                }
                Op::Upsample if gather.up == (1, 1) => {
                    let scales = konst(st.inputs.get(2)).map(Value::as_f32_vec);
                    match scales.as_deref() {
                        Some(&[1.0, 1.0, fy, fx])
                            if fy >= 1.0 && fx >= 1.0 && fy.fract() == 0.0 && fx.fract() == 0.0 =>
                        {
                            gather.up = (fy as usize, fx as usize);
                            true
                        }
                        _ => false,
                    }
                }
                _ => false,
            };
            if !ok {
                break;
            }
            taken.push(i);
            cur = st.inputs[0];
        }
        if taken.is_empty() {
            continue;
        }
        gather.elementwise.reverse();
        for &i in &taken {
            absorbed[i] = true;
        }
        rewrites.push((j, gather, cur));
    }
    let mut steps: Vec<Option<Step>> = steps.into_iter().map(Some).collect();
    for (j, gather, input) in rewrites {
        let step = steps[j].as_mut().expect("a convolution is never absorbed");
        if let Op::Conv(conv) = &mut step.op {
            conv.set_gather(gather);
        }
        step.inputs[0] = input;
    }
    (steps.into_iter().zip(absorbed))
        .filter_map(|(s, a)| if a { None } else { s })
        .collect()
}

/// Not used by the runner: the ops one by one, for the tests' comparison.
#[cfg(test)]
pub(super) fn explicit(x: &Value, g: &Gather) -> R<Value> {
    use super::pool::Pool;
    use super::value::Data;
    let pool = Pool::default();
    let mut v = if g.up != (1, 1) {
        super::ops::upsample(x, [1, 1, g.up.0, g.up.1], &pool)?
    } else {
        x.clone()
    };
    if let Some((mode, [t, l, b, r])) = g.pad {
        let pads = [0, 0, t as i64, l as i64, 0, 0, b as i64, r as i64];
        v = super::ops::pad(&v, &pads, mode, 0.0, &pool)?;
    }
    let mut v = v.into_logical();
    let c = v.shape[1];
    let plane = v.shape[2] * v.shape[3];
    if let Data::F32(data) = &mut v.data {
        for (ci, p) in data.chunks_mut(plane).enumerate() {
            for e in &g.elementwise {
                e.over(p, ci % c);
            }
        }
    }
    Ok(v)
}

#[cfg(test)]
impl Gather {
    pub(super) fn for_test(up: (usize, usize), pad: Option<(PadMode, [usize; 4])>) -> Gather {
        let q =
            |s: f32, z: f32| ChannelFakeQuantize::new(vec![s], Some(vec![z]), 1, false).unwrap();
        Gather {
            up,
            pad,
            elementwise: vec![
                Elementwise::Quantize(q(0.05, 3.0)),
                Elementwise::Clip(-0.4, 0.3),
                Elementwise::Quantize(q(0.11, -2.0)),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A phase plane's zeros (padding and margins) go through the steps, and zeros may be
    /// padded either side of them: a step that moves zero (a zero point outside int8, a Clip
    /// whose bounds exclude zero) is not folded into a gather.
    #[test]
    fn only_steps_that_keep_zero_are_gathered() {
        let q = |zeros: Vec<f32>| {
            let scales = vec![0.5; zeros.len()];
            let n = zeros.len();
            Elementwise::Quantize(ChannelFakeQuantize::new(scales, Some(zeros), n, true).unwrap())
        };
        assert!(q(vec![3.0, -128.0, 127.0]).keeps_zero(3));
        assert!(!q(vec![3.0, 200.0]).keeps_zero(2));
        assert!(Elementwise::Clip(0.0, 6.0).keeps_zero(1));
        assert!(!Elementwise::Clip(0.1, 6.0).keeps_zero(1));
        assert!(!Elementwise::Clip(-2.0, -1.0).keeps_zero(1));
    }
}
