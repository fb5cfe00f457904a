//! 3×3, stride-1, pad-1 convolution: forward with bias and ReLU fused, and the input gradient.
//!
//! Layout (see `core` docs): output pixel `p` (a padded index) of kernel row `ky` reads the three
//! input pixels starting at padded index `p − (w+3) + ky·(w+2)`, which are contiguous in NHWC:
//! `3·Cin` values. So each kernel row is one GEMM with M = pixels, K = 3·Cin, N = Cout, whose
//! left-hand rows overlap (row stride Cin). Outputs are computed over the padded width; the two
//! border columns receive garbage that the fused post-pass zeroes, while the output is in cache.
//!
//! The input gradient is the same routine with the kernel flipped and in/out channels swapped.
//! Weight gradients are never computed: the network is frozen.

use rayon::prelude::*;

use super::matmul::{matmul, View};
use super::tensor::for_each_interior_row;
use super::winograd::{Direction, Epilogue, WinogradConv, WinogradTile};
use super::{rows_per_task, FeatureMap, ReluMask, Scalar};

/// How a convolution computes: the same result, at different speed and rounding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ConvAlgorithm {
    /// Three GEMMs per kernel row on the padded input in place.
    #[default]
    Direct,
    /// Winograd F(m×m, 3×3): fewer multiplies, pays off where channels are many.
    Winograd(WinogradTile),
}

/// A 3×3 convolution with its kernels pre-arranged, once, for the algorithm it runs.
#[derive(Clone, Debug)]
pub struct Conv3x3<T = f32> {
    cin: usize,
    cout: usize,
    bias: Vec<T>,
    kernels: Kernels<T>,
}

/// Only the chosen algorithm's kernels are kept: Winograd F(4×4) kernels alone take four times
/// the weights' memory, so they are kept once and serve both directions.
#[derive(Clone, Debug)]
enum Kernels<T> {
    Direct {
        /// `[ky][kx][ci][co]`: per kernel row a `3·Cin × Cout` matrix.
        forward: Vec<T>,
        /// `[ky][kx][co][ci]` of the flipped kernel: per kernel row a `3·Cout × Cin` matrix.
        backward: Vec<T>,
    },
    /// The transformed kernel, for the forward pass and the input gradient alike.
    Winograd(Box<WinogradConv<T>>),
}

impl<T: Scalar> Conv3x3<T> {
    /// A direct convolution. `weight` is `[cout, cin, 3, 3]` row-major (PyTorch's layout);
    /// `bias` is `[cout]`.
    pub fn new(cin: usize, cout: usize, weight: &[f32], bias: &[f32]) -> Self {
        Self::with_algorithm(cin, cout, weight, bias, ConvAlgorithm::Direct)
    }

    /// A convolution from PyTorch-layout `[cout, cin, 3, 3]` weights and `[cout]` biases, run with
    /// `algorithm`.
    pub fn with_algorithm(
        cin: usize,
        cout: usize,
        weight: &[f32],
        bias: &[f32],
        algorithm: ConvAlgorithm,
    ) -> Self {
        assert_eq!(weight.len(), cout * cin * 9, "conv weight length");
        assert_eq!(bias.len(), cout, "conv bias length");
        let at = |co: usize, ci: usize, ky: usize, kx: usize| {
            weight[((co * cin + ci) * 3 + ky) * 3 + kx] as f64
        };
        let kernels = match algorithm {
            ConvAlgorithm::Direct => {
                let mut forward = vec![T::ZERO; 9 * cin * cout];
                let mut backward = vec![T::ZERO; 9 * cin * cout];
                for co in 0..cout {
                    for ci in 0..cin {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let v = T::from_f64(at(co, ci, ky, kx));
                                forward[((ky * 3 + kx) * cin + ci) * cout + co] = v;
                                let (fy, fx) = (2 - ky, 2 - kx);
                                backward[((fy * 3 + fx) * cout + co) * cin + ci] = v;
                            }
                        }
                    }
                }
                Kernels::Direct { forward, backward }
            }
            ConvAlgorithm::Winograd(tile) => {
                Kernels::Winograd(Box::new(WinogradConv::new(tile, cin, cout, at)))
            }
        };
        Conv3x3 {
            cin,
            cout,
            bias: bias.iter().map(|&b| T::from_f64(b as f64)).collect(),
            kernels,
        }
    }

    /// The algorithm this convolution runs with.
    pub fn algorithm(&self) -> ConvAlgorithm {
        match &self.kernels {
            Kernels::Direct { .. } => ConvAlgorithm::Direct,
            Kernels::Winograd(w) => ConvAlgorithm::Winograd(w.tile()),
        }
    }

    /// Bytes held by the prepared kernels.
    pub fn kernel_bytes(&self) -> usize {
        let n = match &self.kernels {
            Kernels::Direct { forward, backward } => forward.len() + backward.len(),
            Kernels::Winograd(w) => w.kernel_len(),
        };
        (n + self.bias.len()) * std::mem::size_of::<T>()
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.cin
    }
    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.cout
    }

    /// Multiply-adds ×2 for one direction at `h × w`: `2·h·w·Cin·Cout·9`.
    pub fn flops(&self, h: usize, w: usize) -> f64 {
        2.0 * (h * w * self.cin * self.cout * 9) as f64
    }

    /// `out = act(conv(input) + bias)`, with `act` ReLU if `relu`, else identity. If `pre_relu` is
    /// given it receives `conv(input) + bias` (for losses on `conv{b}_{i}` layers).
    pub fn forward(
        &self,
        input: &FeatureMap<T>,
        out: &mut FeatureMap<T>,
        relu: bool,
        pre_relu: Option<&mut FeatureMap<T>>,
    ) {
        let (h, w) = (input.height(), input.width());
        assert_eq!(input.channels(), self.cin, "conv input channels");
        assert!(
            out.height() == h && out.width() == w && out.channels() == self.cout,
            "conv output shape"
        );
        if let Some(pre) = pre_relu {
            // Rare (losses on conv layers): compute without the ReLU, then copy it activated.
            assert!(pre.same_shape(out), "pre-ReLU buffer shape");
            self.forward(input, pre, false, None);
            copy_activated(pre, out, relu);
            return;
        }
        let bias = &self.bias;
        let kernel = match &self.kernels {
            Kernels::Direct { forward, .. } => forward,
            Kernels::Winograd(wg) => {
                return wg.run(
                    Direction::Forward,
                    input,
                    out,
                    &Epilogue::Forward { bias, relu },
                )
            }
        };
        let cout = self.cout;
        let row_len = (w + 2) * cout;
        let rows = rows_per_task(w + 2, cout, h + 2);
        out.data_mut()
            .par_chunks_mut(rows * row_len)
            .enumerate()
            .for_each(|(t, chunk)| {
                let r0 = t * rows;
                gemm_rows(
                    input.data(),
                    h,
                    w,
                    (self.cin, cout, kernel),
                    chunk,
                    r0,
                    false,
                );
                for_each_interior_row(chunk, r0, h, w, cout, |_, px| bias_act(px, bias, relu));
            });
    }

    /// Input gradient: `grad_in = mask ⊙ ((accumulate ? grad_in : 0) + convᵀ(grad_out))`, where
    /// `mask` (of the ReLU output `grad_in` belongs to) zeroes positions whose activation was not
    /// > 0.
    /// `grad_out` is the gradient w.r.t. this convolution's output before any ReLU.
    pub fn backward_input(
        &self,
        grad_out: &FeatureMap<T>,
        grad_in: &mut FeatureMap<T>,
        accumulate: bool,
        mask: Option<&ReluMask>,
    ) {
        let (h, w) = (grad_out.height(), grad_out.width());
        assert_eq!(grad_out.channels(), self.cout, "conv grad_out channels");
        assert!(
            grad_in.height() == h && grad_in.width() == w && grad_in.channels() == self.cin,
            "conv grad_in shape"
        );
        if let Some(m) = mask {
            assert!(m.same_shape(&*grad_in), "ReLU mask shape");
        }
        let kernel = match &self.kernels {
            Kernels::Direct { backward, .. } => backward,
            Kernels::Winograd(wg) => {
                return wg.run(
                    Direction::InputGradient,
                    grad_out,
                    grad_in,
                    &Epilogue::Backward { accumulate, mask },
                );
            }
        };
        let cin = self.cin;
        let row_len = (w + 2) * cin;
        let rows = rows_per_task(w + 2, cin, h + 2);
        grad_in
            .data_mut()
            .par_chunks_mut(rows * row_len)
            .enumerate()
            .for_each(|(t, chunk)| {
                let r0 = t * rows;
                gemm_rows(
                    grad_out.data(),
                    h,
                    w,
                    (self.cout, cin, kernel),
                    chunk,
                    r0,
                    accumulate,
                );
                for_each_interior_row(chunk, r0, h, w, cin, |y, px| {
                    if let Some(m) = mask {
                        m.apply_row(y, px);
                    }
                });
            });
    }
}

/// Computes the convolution with `(in channels, out channels, kernel)` for the padded rows `r0..`
/// covered by `out_rows` (whole padded rows), leaving garbage in their border columns.
fn gemm_rows<T: Scalar>(
    input: &[T],
    h: usize,
    w: usize,
    (ci, co, kernel): (usize, usize, &[T]),
    out_rows: &mut [T],
    r0: usize,
    accumulate: bool,
) {
    let pw = w + 2;
    let r1 = r0 + out_rows.len() / (pw * co);
    // First interior pixel (1, 1) to last interior pixel (h, w), padded indices.
    let p_start = (r0 * pw).max(pw + 1);
    let p_end = (r1 * pw).min(h * pw + w + 1);
    if p_start >= p_end {
        return;
    }
    let m = p_end - p_start;
    let k = 3 * ci;
    for ky in 0..3 {
        matmul(
            m,
            co,
            k,
            out_rows,
            View::new((p_start - r0 * pw) * co, co, 1),
            input,
            View::new((p_start - pw - 1 + ky * pw) * ci, ci, 1),
            kernel,
            View::new(ky * k * co, co, 1),
            accumulate || ky > 0,
            T::ONE,
            false,
        );
    }
}

/// `out = relu?(pre)`, border included (zero stays zero).
fn copy_activated<T: Scalar>(pre: &FeatureMap<T>, out: &mut FeatureMap<T>, relu: bool) {
    out.data_mut()
        .par_chunks_mut(1 << 16)
        .zip(pre.data().par_chunks(1 << 16))
        .for_each(|(o, p)| {
            for (o, &p) in o.iter_mut().zip(p) {
                *o = if relu && p <= T::ZERO { T::ZERO } else { p };
            }
        });
}

fn bias_act<T: Scalar>(px: &mut [T], bias: &[T], relu: bool) {
    for p in px.chunks_exact_mut(bias.len()) {
        for (v, &b) in p.iter_mut().zip(bias) {
            let s = *v + b;
            *v = if relu && s <= T::ZERO { T::ZERO } else { s };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testutil::{dot, naive_conv, on_three_threads, Rng};

    fn random_conv(rng: &mut Rng, cin: usize, cout: usize) -> (Vec<f32>, Vec<f32>) {
        let w = rng
            .vec(cout * cin * 9, 0.5)
            .iter()
            .map(|&v| v as f32)
            .collect();
        let b = rng.vec(cout, 0.5).iter().map(|&v| v as f32).collect();
        (w, b)
    }

    #[test]
    fn forward_matches_direct_convolution_at_odd_sizes() {
        on_three_threads(|| {
            let mut rng = Rng::new(1);
            for &(cin, cout, h, w) in &[(3, 5, 7, 9), (4, 3, 1, 1), (2, 6, 13, 5), (5, 4, 2, 11)] {
                let (wt, b) = random_conv(&mut rng, cin, cout);
                let conv = Conv3x3::<f64>::new(cin, cout, &wt, &b);
                let x: FeatureMap<f64> = rng.map(h, w, cin);
                let want = naive_conv(&x.to_nchw(), cin, h, w, &wt, &b, cout);
                let mut out = FeatureMap::zeros(h, w, cout);
                let mut pre = FeatureMap::zeros(h, w, cout);
                conv.forward(&x, &mut out, true, Some(&mut pre));
                assert!(out.border_is_zero() && pre.border_is_zero());
                for (i, (&got, &want)) in pre.to_nchw().iter().zip(&want).enumerate() {
                    assert!((got - want).abs() < 1e-12, "pre {i}: {got} vs {want}");
                }
                for (&got, &want) in out.to_nchw().iter().zip(&want) {
                    assert!((got - want.max(0.0)).abs() < 1e-12);
                }
                let mut linear = FeatureMap::zeros(h, w, cout);
                conv.forward(&x, &mut linear, false, None);
                assert_eq!(linear, pre);
            }
        });
    }

    #[test]
    fn input_gradient_is_the_adjoint_of_the_forward() {
        // <conv(x), y> = <x, convᵀ(y)> for the linear part (zero bias, no ReLU).
        on_three_threads(|| {
            let mut rng = Rng::new(2);
            for &(cin, cout, h, w) in &[(3, 5, 7, 9), (6, 2, 10, 3), (4, 4, 1, 2)] {
                let (wt, _) = random_conv(&mut rng, cin, cout);
                let conv = Conv3x3::<f64>::new(cin, cout, &wt, &vec![0.0; cout]);
                let x: FeatureMap<f64> = rng.map(h, w, cin);
                let y: FeatureMap<f64> = rng.map(h, w, cout);
                let mut cx = FeatureMap::zeros(h, w, cout);
                conv.forward(&x, &mut cx, false, None);
                let mut cty = FeatureMap::zeros(h, w, cin);
                conv.backward_input(&y, &mut cty, false, None);
                assert!(cty.border_is_zero());
                let (a, b) = (dot(&cx, &y), dot(&x, &cty));
                assert!((a - b).abs() < 1e-10 * a.abs().max(1.0), "{a} vs {b}");
            }
        });
    }

    #[test]
    fn backward_accumulates_then_masks() {
        let mut rng = Rng::new(3);
        let (cin, cout, h, w) = (3, 4, 6, 5);
        let (wt, _) = random_conv(&mut rng, cin, cout);
        let conv = Conv3x3::<f64>::new(cin, cout, &wt, &vec![0.0; cout]);
        let y: FeatureMap<f64> = rng.map(h, w, cout);
        let prior: FeatureMap<f64> = rng.map(h, w, cin);
        let mask: FeatureMap<f64> = rng.map(h, w, cin);
        let mut plain = FeatureMap::zeros(h, w, cin);
        conv.backward_input(&y, &mut plain, false, None);
        let mut got = prior.clone();
        conv.backward_input(&y, &mut got, true, Some(&ReluMask::of(&mask)));
        for ((g, p), (q, m)) in got
            .interior()
            .zip(plain.interior())
            .zip(prior.interior().zip(mask.interior()))
        {
            let want = if m > 0.0 { p + q } else { 0.0 };
            assert!((g - want).abs() < 1e-12);
        }
        assert!(got.border_is_zero());
    }

    #[test]
    fn f32_forward_tracks_f64() {
        let mut rng = Rng::new(4);
        let (cin, cout, h, w) = (64, 32, 12, 10);
        let (wt, b) = random_conv(&mut rng, cin, cout);
        let x64: FeatureMap<f64> = rng.map(h, w, cin);
        let mut o64 = FeatureMap::zeros(h, w, cout);
        Conv3x3::<f64>::new(cin, cout, &wt, &b).forward(&x64, &mut o64, false, None);
        let mut o32 = FeatureMap::<f32>::zeros(h, w, cout);
        Conv3x3::<f32>::new(cin, cout, &wt, &b).forward(&x64.convert(), &mut o32, false, None);
        let err: f64 = o64
            .interior()
            .zip(o32.interior())
            .map(|(a, b)| (a - b as f64).powi(2))
            .sum();
        let norm: f64 = o64.interior().map(|a| a * a).sum();
        assert!(
            (err / norm).sqrt() < 1e-6,
            "relative error {}",
            (err / norm).sqrt()
        );
    }

    fn compare_algorithms(tile: WinogradTile) {
        on_three_threads(|| {
            let mut rng = Rng::new(8);
            for &(cin, cout, h, w) in &[
                (3, 5, 7, 9),
                (8, 6, 13, 5),
                (5, 4, 1, 1),
                (6, 7, 2, 11),
                (4, 4, 17, 16),
            ] {
                let (wt, b) = random_conv(&mut rng, cin, cout);
                let direct = Conv3x3::<f64>::new(cin, cout, &wt, &b);
                let wino = Conv3x3::<f64>::with_algorithm(
                    cin,
                    cout,
                    &wt,
                    &b,
                    ConvAlgorithm::Winograd(tile),
                );
                assert_eq!(wino.algorithm(), ConvAlgorithm::Winograd(tile));
                let x: FeatureMap<f64> = rng.map(h, w, cin);
                for relu in [false, true] {
                    let mut a = FeatureMap::zeros(h, w, cout);
                    let mut b = FeatureMap::zeros(h, w, cout);
                    direct.forward(&x, &mut a, relu, None);
                    for private in [
                        None,
                        Some((true, 1)),
                        Some((true, 2)),
                        Some((false, 1)),
                        Some((false, 3)),
                        Some((false, 99)),
                    ] {
                        b.fill(7.0); // stale values must not leak through
                        let Kernels::Winograd(wg) = &wino.kernels else {
                            unreachable!()
                        };
                        let epilogue = Epilogue::Forward {
                            bias: &wino.bias,
                            relu,
                        };
                        wg.run_scheduled(Direction::Forward, &x, &mut b, &epilogue, private);
                        assert!(b.border_is_zero(), "{tile:?} border");
                        for (p, q) in a.interior().zip(b.interior()) {
                            assert!(
                                (p - q).abs() < 1e-11,
                                "{tile:?} {private:?} {cin}->{cout} {h}x{w}: {p} vs {q}"
                            );
                        }
                    }
                    wino.forward(&x, &mut b, relu, None);
                    assert!(a
                        .interior()
                        .zip(b.interior())
                        .all(|(p, q)| (p - q).abs() < 1e-11));
                    // With the pre-ReLU output kept too.
                    let (mut pa, mut pb) =
                        (FeatureMap::zeros(h, w, cout), FeatureMap::zeros(h, w, cout));
                    direct.forward(&x, &mut a, relu, Some(&mut pa));
                    wino.forward(&x, &mut b, relu, Some(&mut pb));
                    assert!(pb.border_is_zero() && b.border_is_zero());
                    assert!(a
                        .interior()
                        .zip(b.interior())
                        .all(|(p, q)| (p - q).abs() < 1e-11));
                    assert!(pa
                        .interior()
                        .zip(pb.interior())
                        .all(|(p, q)| (p - q).abs() < 1e-11));
                }
                let g: FeatureMap<f64> = rng.map(h, w, cout);
                let mask = ReluMask::of(&rng.map::<f64>(h, w, cin));
                let prior: FeatureMap<f64> = rng.map(h, w, cin);
                for (accumulate, use_mask) in [(false, false), (true, true), (false, true)] {
                    let mut a = prior.clone();
                    let mut b = prior.clone();
                    let m = use_mask.then_some(&mask);
                    direct.backward_input(&g, &mut a, accumulate, m);
                    for private in [
                        Some((true, 1)),
                        Some((true, 3)),
                        Some((false, 2)),
                        Some((false, 99)),
                    ] {
                        let mut b = prior.clone();
                        let Kernels::Winograd(wg) = &wino.kernels else {
                            unreachable!()
                        };
                        wg.run_scheduled(
                            Direction::InputGradient,
                            &g,
                            &mut b,
                            &Epilogue::Backward {
                                accumulate,
                                mask: m,
                            },
                            private,
                        );
                        assert!(b.border_is_zero());
                        for (p, q) in a.interior().zip(b.interior()) {
                            assert!(
                                (p - q).abs() < 1e-11,
                                "{tile:?} {private:?} backward: {p} vs {q}"
                            );
                        }
                    }
                    wino.backward_input(&g, &mut b, accumulate, m);
                    assert!(a
                        .interior()
                        .zip(b.interior())
                        .all(|(p, q)| (p - q).abs() < 1e-11));
                }
            }
        });
    }

    #[test]
    fn winograd_f2_matches_direct() {
        compare_algorithms(WinogradTile::F2);
    }

    #[test]
    fn winograd_f4_matches_direct() {
        compare_algorithms(WinogradTile::F4);
    }

    /// f32 error of each algorithm against the f64 direct result, on VGG-like magnitudes:
    /// (forward, input gradient), each relative in L2.
    fn f32_error(algorithm: ConvAlgorithm) -> (f64, f64) {
        let mut rng = Rng::new(9);
        let (cin, cout, h, w) = (128, 64, 19, 23);
        let (wt, b) = random_conv(&mut rng, cin, cout);
        let exact = Conv3x3::<f64>::new(cin, cout, &wt, &b);
        let conv = Conv3x3::<f32>::with_algorithm(cin, cout, &wt, &b, algorithm);
        let relative = |want: &FeatureMap<f64>, got: &FeatureMap<f32>| {
            let err: f64 = want
                .interior()
                .zip(got.interior())
                .map(|(a, b)| (a - b as f64).powi(2))
                .sum();
            let norm: f64 = want.interior().map(|a| a * a).sum();
            (err / norm).sqrt()
        };
        let x64: FeatureMap<f64> = rng.map(h, w, cin);
        let mut want = FeatureMap::zeros(h, w, cout);
        exact.forward(&x64, &mut want, false, None);
        let mut got = FeatureMap::<f32>::zeros(h, w, cout);
        conv.forward(&x64.convert(), &mut got, false, None);
        let forward = relative(&want, &got);
        let g64: FeatureMap<f64> = rng.map(h, w, cout);
        let mut want = FeatureMap::zeros(h, w, cin);
        exact.backward_input(&g64, &mut want, false, None);
        let mut got = FeatureMap::<f32>::zeros(h, w, cin);
        conv.backward_input(&g64.convert(), &mut got, false, None);
        (forward, relative(&want, &got))
    }

    /// The bounds hold for both directions: the input gradient of F(4×4) reads the forward
    /// kernel's transform permuted (see `winograd`), so it must be as accurate as the forward.
    #[test]
    fn f32_rounding_of_each_algorithm_is_bounded() {
        let direct = f32_error(ConvAlgorithm::Direct);
        let f2 = f32_error(ConvAlgorithm::Winograd(WinogradTile::F2));
        let f4 = f32_error(ConvAlgorithm::Winograd(WinogradTile::F4));
        for (name, (fwd, bwd)) in [("direct", direct), ("F2", f2), ("F4", f4)] {
            eprintln!("f32 relative error, {name}: forward {fwd:.1e}, input gradient {bwd:.1e}");
        }
        for (fwd, bwd) in [direct, f2, f4] {
            assert!(
                bwd < 2.0 * fwd.max(1e-6),
                "input gradient {bwd} vs forward {fwd}"
            );
        }
        let (direct, f2, f4) = (direct.0.max(direct.1), f2.0.max(f2.1), f4.0.max(f4.1));
        assert!(
            direct < 1e-6 && f2 < 2e-6 && f4 < 1e-5,
            "direct {direct} F2 {f2} F4 {f4}"
        );
    }
}
