//! Winograd convolution F(m×m, 3×3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural
//! Networks"): each m×m output tile costs α² = (m+2)² multiplies per channel pair instead of 9·m²
//! (2.25× fewer for F(2×2), 4× for F(4×4)). Per tile and channel the input is transformed
//! (`V = Bᵀ d B`), the α² products over channels are α² GEMMs (tiles × Cin × Cout) through `gemm`,
//! and the output is transformed back (`Y = Aᵀ M A`).
//!
//! NHWC suits it: every transform is the same arithmetic on a contiguous run of channels, so the
//! loops vectorise over channels. Tiles are processed in blocks of whole tile rows, so a block's
//! transformed data stays in cache between the three phases; the output pass fuses bias + ReLU
//! (forward) or accumulation + ReLU mask (input gradient), as the direct path does.

use rayon::prelude::*;

use super::matmul::{matmul, View};
use super::scalar::{give_back_scratch, take_scratch};
use super::{FeatureMap, ReluMask, Scalar};

/// Output tile size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WinogradTile {
    /// F(2×2, 3×3): 16 multiplies per 4 outputs (2.25× fewer than direct).
    F2,
    /// F(4×4, 3×3): 36 multiplies per 16 outputs (4× fewer), slightly less accurate.
    F4,
}

struct Matrices {
    m: usize,
    alpha: usize,
    /// α × α, row-major.
    bt: &'static [f64],
    /// α × 3.
    g: &'static [f64],
    /// m × α.
    at: &'static [f64],
}

#[rustfmt::skip]
const F2: Matrices = Matrices {
    m: 2,
    alpha: 4,
    bt: &[
        1.0, 0.0, -1.0, 0.0,
        0.0, 1.0, 1.0, 0.0,
        0.0, -1.0, 1.0, 0.0,
        0.0, 1.0, 0.0, -1.0,
    ],
    g: &[
        1.0, 0.0, 0.0,
        0.5, 0.5, 0.5,
        0.5, -0.5, 0.5,
        0.0, 0.0, 1.0,
    ],
    at: &[
        1.0, 1.0, 1.0, 0.0,
        0.0, 1.0, -1.0, -1.0,
    ],
};

/// F(4×4, 3×3) on the points {0, 1, −1, 2, ½, ∞} rather than Lavin & Gray's {0, ±1, ±2, ∞}:
/// the set is closed under p ↦ 1/p, which makes the flipped kernel's transform a permutation of
/// the kernel's own (see [`WinogradConv`]), so the input gradient needs no second copy of the
/// kernels.
/// Measured in f32 over 256 channels, its error is ≈1.4× that of Lavin & Gray's points (median
/// 4.1e-6 against 2.9e-6 of the largest output); the rows are scaled so that all flip factors are 1.
#[rustfmt::skip]
const F4: Matrices = Matrices {
    m: 4,
    alpha: 6,
    bt: &[
        2.0, -5.0, 0.0, 5.0, -2.0, 0.0,
        0.0, -2.0, 3.0, 3.0, -2.0, 0.0,
        0.0, -2.0, 7.0, -7.0, 2.0, 0.0,
        0.0, 1.0, -2.0, -1.0, 2.0, 0.0,
        0.0, 2.0, -1.0, -2.0, 1.0, 0.0,
        0.0, -2.0, 5.0, 0.0, -5.0, 2.0,
    ],
    g: &[
        1.0 / 2.0, 0.0, 0.0,
        1.0 / 2.0, 1.0 / 2.0, 1.0 / 2.0,
        1.0 / 18.0, -1.0 / 18.0, 1.0 / 18.0,
        1.0 / 18.0, 1.0 / 9.0, 2.0 / 9.0,
        2.0 / 9.0, 1.0 / 9.0, 1.0 / 18.0,
        0.0, 0.0, 1.0 / 2.0,
    ],
    at: &[
        1.0, 1.0, 1.0, 1.0, 8.0, 0.0,
        0.0, 1.0, -1.0, 2.0, 4.0, 0.0,
        0.0, 1.0, 1.0, 4.0, 2.0, 0.0,
        0.0, 1.0, -1.0, 8.0, 1.0, 1.0,
    ],
};

impl WinogradTile {
    fn matrices(self) -> &'static Matrices {
        match self {
            WinogradTile::F2 => &F2,
            WinogradTile::F4 => &F4,
        }
    }
}

/// What the output pass does with each computed value `v` at position `i` of a pixel row.
pub(crate) enum Epilogue<'a, T> {
    /// `out = relu?(v + bias)`.
    Forward { bias: &'a [T], relu: bool },
    /// `out = mask ⊙ ((accumulate ? out : 0) + v)`.
    Backward {
        accumulate: bool,
        mask: Option<&'a ReluMask>,
    },
}

/// Which of a layer's two convolutions a [`WinogradConv`] runs from its one set of kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// The layer itself: Cin → Cout channels.
    Forward,
    /// Its input gradient, the correlation with the flipped kernel: Cout → Cin channels.
    InputGradient,
}

/// A 3×3 convolution in the Winograd domain, forward and input gradient from one transformed
/// kernel.
///
/// Why one kernel serves both: the input gradient correlates with `g' = J g J` (J reverses the
/// three taps), with the channels swapped. With points closed under p ↦ 1/p, each row of `G·J`
/// is a row of `G` times a factor, `G·J = D·P·G`, so `U' = G g' Gᵀ = D P U Pᵀ D`: position
/// (i, j) of the flipped kernel's transform is `dᵢ·dⱼ` times position (π(i), π(j)) of `U`, read
/// transposed. The GEMM reads it in place through strides; no second copy is kept.
#[derive(Clone, Debug)]
pub(crate) struct WinogradConv<T> {
    tile: WinogradTile,
    cin: usize,
    cout: usize,
    /// `U = G g Gᵀ`, laid out `[ξ][ci][co]`: per transform position a Cin × Cout GEMM operand.
    u: Vec<T>,
    /// Per transform row `k`: `(π(k), d_k)` with `(G·J)[k] = d_k · G[π(k)]`.
    flip: Vec<(usize, f64)>,
}

/// `(π(k), d_k)` for every row `k` of `G`, such that row `k` of `G` with its taps reversed is
/// `d_k` times row `π(k)`. Panics if some row has no such partner: the point set is not closed
/// under inversion (a defect in the constant matrices, caught by the tests).
fn flip_relation(mt: &Matrices) -> Vec<(usize, f64)> {
    let row = |k: usize| &mt.g[k * 3..k * 3 + 3];
    (0..mt.alpha)
        .map(|k| {
            let rev = [row(k)[2], row(k)[1], row(k)[0]];
            (0..mt.alpha)
                .find_map(|p| {
                    let g = row(p);
                    let l = (0..3).max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs()))?;
                    let d = rev[l] / g[l];
                    let same = (0..3).all(|t| (rev[t] - d * g[t]).abs() <= 1e-12 * d.abs());
                    (g[l] != 0.0 && same).then_some((p, d))
                })
                .expect("Winograd points closed under inversion")
        })
        .collect()
}

impl<T: Scalar> WinogradConv<T> {
    /// `kernel(co, ci, ky, kx)` gives the correlation kernel of this direction.
    pub fn new(
        tile: WinogradTile,
        cin: usize,
        cout: usize,
        kernel: impl Fn(usize, usize, usize, usize) -> f64 + Sync,
    ) -> Self {
        let mt = tile.matrices();
        let a = mt.alpha;
        // Transform per output channel in parallel (in f64), then scatter to [ξ][ci][co].
        let per_co: Vec<Vec<T>> = (0..cout)
            .into_par_iter()
            .map(|co| {
                let mut out = vec![T::ZERO; a * a * cin];
                let mut gg = [0.0; 6 * 3];
                for ci in 0..cin {
                    // gg = G · g (α × 3), then U = gg · Gᵀ (α × α).
                    for i in 0..a {
                        for l in 0..3 {
                            gg[i * 3 + l] =
                                (0..3).map(|k| mt.g[i * 3 + k] * kernel(co, ci, k, l)).sum();
                        }
                    }
                    for i in 0..a {
                        for j in 0..a {
                            let v: f64 = (0..3).map(|l| gg[i * 3 + l] * mt.g[j * 3 + l]).sum();
                            out[(i * a + j) * cin + ci] = T::from_f64(v);
                        }
                    }
                }
                out
            })
            .collect();
        let mut u = vec![T::ZERO; a * a * cin * cout];
        for (co, vals) in per_co.iter().enumerate() {
            for (k, &v) in vals.iter().enumerate() {
                u[k * cout + co] = v;
            }
        }
        let flip = flip_relation(mt);
        WinogradConv {
            tile,
            cin,
            cout,
            u,
            flip,
        }
    }

    /// (input, output) channels of the convolution `dir` runs.
    fn channels(&self, dir: Direction) -> (usize, usize) {
        match dir {
            Direction::Forward => (self.cin, self.cout),
            Direction::InputGradient => (self.cout, self.cin),
        }
    }

    pub fn tile(&self) -> WinogradTile {
        self.tile
    }

    /// Values in the transformed kernel.
    pub fn kernel_len(&self) -> usize {
        self.u.len()
    }

    /// Runs the convolution `dir` of `input` into `out` (same size).
    pub fn run(
        &self,
        dir: Direction,
        input: &FeatureMap<T>,
        out: &mut FeatureMap<T>,
        epilogue: &Epilogue<'_, T>,
    ) {
        self.run_scheduled(dir, input, out, epilogue, None)
    }

    /// [`WinogradConv::run`] with the schedule forced, for tests of every path: (private blocks
    /// per thread or shared phases, tile rows per block).
    pub(crate) fn run_scheduled(
        &self,
        dir: Direction,
        input: &FeatureMap<T>,
        out: &mut FeatureMap<T>,
        epilogue: &Epilogue<'_, T>,
        forced: Option<(bool, usize)>,
    ) {
        let (h, w) = (input.height(), input.width());
        let (cin, cout) = self.channels(dir);
        assert_eq!(input.channels(), cin, "winograd input channels");
        assert!(
            out.height() == h && out.width() == w && out.channels() == cout,
            "winograd output shape"
        );
        let mt = self.tile.matrices();
        let (m, a2) = (mt.m, mt.alpha * mt.alpha);
        let (tiles_y, tiles_x) = (h.div_ceil(m), w.div_ceil(m));
        let row_len = (w + 2) * cout;
        // Transformed input and products of one tile row.
        let per_tile_row = a2 * tiles_x * (cin + cout) * std::mem::size_of::<T>();
        let threads = rayon::current_num_threads().max(1);

        // Zero the output's border rows: they may hold another layer's values.
        let data = out.data_mut();
        let total = data.len();
        data[..row_len].fill(T::ZERO);
        data[total - row_len..].fill(T::ZERO);
        let interior = &mut data[row_len..total - row_len];

        // Two schedules. Many tile rows: each thread takes whole blocks of tile rows, small enough
        // to stay in its share of the cache, and runs all three phases on them alone. Few tile
        // rows (deep layers): one block at a time and the threads share each phase, the GEMMs by
        // transform position, so every thread works on all tiles and each kernel matrix is
        // packed once rather than once per thread.
        const PRIVATE_BLOCK_BYTES: usize = 4 << 20;
        let rows_per_block = (PRIVATE_BLOCK_BYTES / per_tile_row)
            .max(1)
            .min(tiles_y.div_ceil(threads));
        // A private block's GEMMs must reuse each kernel matrix over enough tiles: once a
        // Cin × Cout matrix outgrows L2 (measured: 512 × 512 over 16 tiles ran at half speed), a
        // thread would stream it from memory for little work.
        let min_private_tiles = 32.max(cin * cout / 1024);
        let (private, rows_per_block) = forced.unwrap_or((
            tiles_y >= threads && rows_per_block * tiles_x >= min_private_tiles,
            rows_per_block,
        ));
        if private {
            interior
                .par_chunks_mut(rows_per_block * m * row_len)
                .enumerate()
                .for_each(|(b, rows)| {
                    let tr0 = b * rows_per_block;
                    let tr1 = (tr0 + rows_per_block).min(tiles_y);
                    self.block(dir, input, tr0, tr1, tiles_x, rows, epilogue, false);
                });
        } else {
            const SHARED_BLOCK_BYTES: usize = 32 << 20;
            let rows_per_block = match forced {
                Some((_, rows)) => rows,
                None => (SHARED_BLOCK_BYTES / per_tile_row).max(1),
            };
            for (b, rows) in interior
                .chunks_mut(rows_per_block * m * row_len)
                .enumerate()
            {
                let tr0 = b * rows_per_block;
                let tr1 = (tr0 + rows_per_block).min(tiles_y);
                self.block(dir, input, tr0, tr1, tiles_x, rows, epilogue, true);
            }
        }
    }

    /// All three phases for tile rows `tr0..tr1`, whose output rows are `rows`; `parallel`
    /// spreads each phase over the thread pool.
    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        dir: Direction,
        input: &FeatureMap<T>,
        tr0: usize,
        tr1: usize,
        tiles_x: usize,
        rows: &mut [T],
        epilogue: &Epilogue<'_, T>,
        parallel: bool,
    ) {
        let mt = self.tile.matrices();
        let (m, a, a2) = (mt.m, mt.alpha, mt.alpha * mt.alpha);
        let (cin, cout) = self.channels(dir);
        let tiles = (tr1 - tr0) * tiles_x;
        let w = input.width();
        let row_len = (w + 2) * cout;
        let mut scratch = take_scratch(tiles * a2 * (cin + cout));
        let (v, prod) = scratch.split_at_mut(tiles * a2 * cin);
        let prod = &mut prod[..tiles * a2 * cout];
        let v = &mut v[..];
        let kernel_len = self.cin * self.cout;
        let gemm = |xi: usize, plane: &mut [T], v: &[T]| {
            // plane[t][co] = Σ_ci v[t][ξ][ci] · kernel[ξ][ci][co], the kernel being `U` itself
            // or, for the input gradient, `dᵢ·dⱼ·U[π(i)][π(j)]` transposed (see the type's docs).
            let (rhs, scale) = match dir {
                Direction::Forward => (View::new(xi * kernel_len, cout, 1), T::ONE),
                Direction::InputGradient => {
                    let ((pi, di), (pj, dj)) = (self.flip[xi / a], self.flip[xi % a]);
                    let src = pi * a + pj;
                    (View::new(src * kernel_len, 1, cin), T::from_f64(di * dj))
                }
            };
            matmul(
                tiles,
                cout,
                cin,
                plane,
                View::new(0, cout, 1),
                v,
                View::new(xi * cin, a2 * cin, 1),
                &self.u,
                rhs,
                false,
                scale,
                false,
            );
        };
        let tile_row_v = tiles_x * a2 * cin;
        let out_rows = m * row_len;
        if parallel {
            v.par_chunks_mut(tile_row_v)
                .enumerate()
                .for_each(|(r, vr)| self.input_transform(input, tr0 + r, tiles_x, vr));
            let v = &*v;
            prod.par_chunks_mut(tiles * cout)
                .enumerate()
                .for_each(|(xi, plane)| gemm(xi, plane, v));
            let prod = &*prod;
            rows.par_chunks_mut(out_rows)
                .enumerate()
                .for_each(|(r, rr)| {
                    self.output_transform(
                        prod,
                        tiles,
                        r * tiles_x,
                        tr0 + r,
                        tiles_x,
                        w,
                        rr,
                        epilogue,
                    )
                });
        } else {
            for (r, vr) in v.chunks_mut(tile_row_v).enumerate() {
                self.input_transform(input, tr0 + r, tiles_x, vr);
            }
            for (xi, plane) in prod.chunks_mut(tiles * cout).enumerate() {
                gemm(xi, plane, v);
            }
            for (r, rr) in rows.chunks_mut(out_rows).enumerate() {
                self.output_transform(prod, tiles, r * tiles_x, tr0 + r, tiles_x, w, rr, epilogue);
            }
        }
        give_back_scratch(scratch);
    }

    /// `v[t][ξ][ci] = (Bᵀ d B)[ξ]` for the tiles of tile row `tr`, where `d` is the α×α patch
    /// of the padded input at the tile's top-left (zero beyond the buffer).
    fn input_transform(&self, input: &FeatureMap<T>, tr: usize, tiles_x: usize, v: &mut [T]) {
        #[cfg(target_arch = "x86_64")]
        if avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (checked at run time).
            return unsafe { self.input_transform_avx2(input, tr, tiles_x, v) };
        }
        self.input_transform_with::<false>(input, tr, tiles_x, v)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn input_transform_avx2(
        &self,
        input: &FeatureMap<T>,
        tr: usize,
        tiles_x: usize,
        v: &mut [T],
    ) {
        self.input_transform_with::<true>(input, tr, tiles_x, v)
    }

    /// The input transform's body, inlined into each caller so it is compiled for that
    /// caller's instruction set; `FMA`: fused multiply-adds (only where the CPU has them).
    #[inline(always)]
    fn input_transform_with<const FMA: bool>(
        &self,
        input: &FeatureMap<T>,
        tr: usize,
        tiles_x: usize,
        v: &mut [T],
    ) {
        let mt = self.tile.matrices();
        let (m, a) = (mt.m, mt.alpha);
        let c = input.channels();
        let data = input.data();
        let pw = input.width() + 2;
        let ph = input.height() + 2;
        let bt = coefficients::<T>(mt.bt);
        // Small per-row buffers: from the allocator's fast path, not the shared pool, which
        // holds the large block buffers (small takers there would strand or regrow them).
        let mut tmp = vec![T::ZERO; a * a * c];
        let zeros = vec![T::ZERO; c];
        let zeros = &zeros[..];
        let py = tr * m;
        for (tx, vt) in v.chunks_exact_mut(a * a * c).take(tiles_x).enumerate() {
            let px = tx * m;
            let d = |k: usize, l: usize| -> &[T] {
                let (y, x) = (py + k, px + l);
                if y < ph && x < pw {
                    let o = (y * pw + x) * c;
                    &data[o..o + c]
                } else {
                    zeros
                }
            };
            // tmp[i][l] = Σ_k Bᵀ[i][k] d[k][l]
            for i in 0..a {
                for l in 0..a {
                    let dst = &mut tmp[(i * a + l) * c..(i * a + l + 1) * c];
                    dst.fill(T::ZERO);
                    for k in 0..a {
                        let b = bt[i * a + k];
                        if b != T::ZERO {
                            axpy::<T, FMA>(dst, b, d(k, l));
                        }
                    }
                }
            }
            // v[i][j] = Σ_l tmp[i][l] Bᵀ[j][l]
            for i in 0..a {
                for j in 0..a {
                    let dst = &mut vt[(i * a + j) * c..(i * a + j + 1) * c];
                    dst.fill(T::ZERO);
                    for l in 0..a {
                        let b = bt[j * a + l];
                        if b != T::ZERO {
                            axpy::<T, FMA>(dst, b, &tmp[(i * a + l) * c..(i * a + l + 1) * c]);
                        }
                    }
                }
            }
        }
    }

    /// `Y = Aᵀ M A` for the tiles of tile row `tr`, then the epilogue, into `rows` (the tile
    /// row's whole padded output rows). `prod` holds a block of `plane_tiles` tiles, of which
    /// this row's start at `t0`.
    #[allow(clippy::too_many_arguments)]
    fn output_transform(
        &self,
        prod: &[T],
        plane_tiles: usize,
        t0: usize,
        tr: usize,
        tiles_x: usize,
        w: usize,
        rows: &mut [T],
        epilogue: &Epilogue<'_, T>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (checked at run time).
            return unsafe {
                self.output_transform_avx2(prod, plane_tiles, t0, tr, tiles_x, w, rows, epilogue)
            };
        }
        self.output_transform_with::<false>(prod, plane_tiles, t0, tr, tiles_x, w, rows, epilogue)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn output_transform_avx2(
        &self,
        prod: &[T],
        plane_tiles: usize,
        t0: usize,
        tr: usize,
        tiles_x: usize,
        w: usize,
        rows: &mut [T],
        epilogue: &Epilogue<'_, T>,
    ) {
        self.output_transform_with::<true>(prod, plane_tiles, t0, tr, tiles_x, w, rows, epilogue)
    }

    /// The output transform's body; see [`Self::input_transform_with`].
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn output_transform_with<const FMA: bool>(
        &self,
        prod: &[T],
        plane_tiles: usize,
        t0: usize,
        tr: usize,
        tiles_x: usize,
        w: usize,
        rows: &mut [T],
        epilogue: &Epilogue<'_, T>,
    ) {
        let mt = self.tile.matrices();
        let (m, a) = (mt.m, mt.alpha);
        // `prod` holds exactly this block's products: α² planes of `plane_tiles × c`.
        let c = prod.len() / (a * a * plane_tiles);
        let at = coefficients::<T>(mt.at);
        let mut tmp = vec![T::ZERO; m * a * c];
        let mut y = vec![T::ZERO; c];
        let plane = plane_tiles * c;
        let row_len = (w + 2) * c;
        let n_rows = rows.len() / row_len;
        for tx in 0..tiles_x {
            let t = t0 + tx;
            let mv = |xi: usize| &prod[xi * plane + t * c..xi * plane + (t + 1) * c];
            // tmp[r][j] = Σ_i Aᵀ[r][i] M[i][j]
            for r in 0..m {
                for j in 0..a {
                    let dst = &mut tmp[(r * a + j) * c..(r * a + j + 1) * c];
                    dst.fill(T::ZERO);
                    for i in 0..a {
                        let s = at[r * a + i];
                        if s != T::ZERO {
                            axpy::<T, FMA>(dst, s, mv(i * a + j));
                        }
                    }
                }
            }
            for r in 0..m.min(n_rows) {
                for s in 0..m {
                    let ox = tx * m + s;
                    if ox >= w {
                        break;
                    }
                    y.fill(T::ZERO);
                    for j in 0..a {
                        let k = at[s * a + j];
                        if k != T::ZERO {
                            axpy::<T, FMA>(&mut y, k, &tmp[(r * a + j) * c..(r * a + j + 1) * c]);
                        }
                    }
                    let o = r * row_len + (ox + 1) * c;
                    let dst = &mut rows[o..o + c];
                    match epilogue {
                        Epilogue::Forward { bias, relu } => {
                            for ((d, &v), &b) in dst.iter_mut().zip(y.iter()).zip(bias.iter()) {
                                let s = v + b;
                                *d = if *relu && s <= T::ZERO { T::ZERO } else { s };
                            }
                        }
                        Epilogue::Backward { accumulate, mask } => {
                            for (d, &v) in dst.iter_mut().zip(y.iter()) {
                                *d = if *accumulate { *d + v } else { v };
                            }
                            if let Some(mk) = mask {
                                mk.apply(tr * m + r, ox, dst);
                            }
                        }
                    }
                }
            }
        }
        // The border columns of these rows.
        for r in 0..n_rows {
            rows[r * row_len..r * row_len + c].fill(T::ZERO);
            rows[(r + 1) * row_len - c..(r + 1) * row_len].fill(T::ZERO);
        }
    }
}

/// A transform matrix (at most 6 × 6) in the working precision, on the stack.
fn coefficients<T: Scalar>(m: &[f64]) -> [T; 36] {
    let mut out = [T::ZERO; 36];
    for (o, &v) in out.iter_mut().zip(m) {
        *o = T::from_f64(v);
    }
    out
}

/// `dst += a · x`, over channels: the transforms' inner loop, vectorised by the compiler.
#[inline(always)]
fn axpy<T: Scalar, const FMA: bool>(dst: &mut [T], a: T, x: &[T]) {
    for (d, &v) in dst.iter_mut().zip(x) {
        *d = if FMA { v.mul_add(a, *d) } else { *d + a * v };
    }
}

/// Whether the transforms can run as AVX2 + FMA code: the crate is compiled for baseline
/// x86-64 (SSE2, 4 lanes) so one binary runs anywhere, and the transforms, about a third of a
/// Winograd convolution's time, are worth a second, 8-lane copy chosen at run time.
#[cfg(target_arch = "x86_64")]
fn avx2_fma() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}
