//! [`Conv`]'s kernel with AVX-512 vectors, chosen at run time where the CPU has AVX-512F.
//!
//! The same sums as the AVX2 kernel, in the same order (for each output pixel: zero, then one
//! fused multiply-add per input channel and tap, then the bias), so both give the same bits;
//! what differs is the width (sixteen pixels per vector) and the blocking: the 32 registers
//! hold `N` output channels × `G` vectors of pixels (up to 24 accumulators), so each input load
//! feeds `N` multiply-adds and each weight (an embedded broadcast) feeds `G`.

use std::arch::x86_64::*;

use super::{Block, Conv, Planes};

/// Pixels per vector.
pub(super) const LANES: usize = 16;

impl Conv {
    /// Output row `oy` of a block of `N` channels.
    ///
    /// # Safety
    /// The CPU must have AVX-512F (checked by the caller at run time).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn row_avx512<const N: usize>(
        &self,
        planes: &Planes,
        block: &Block,
        oy: usize,
        outs: &mut [&mut [f32]],
        bias: &[f32],
    ) {
        let ow = outs[0].len();
        let kw = self.kw;
        let blk = (&block.weights[..], block.ci0);
        self.assert_in_bounds(planes, blk, (oy, ow), LANES, N, (bias, outs.len()));
        let o = &planes.offsets[..kw];
        // Accumulators: as many as fit beside the G input vectors (and enough to hide the
        // multiply-add's latency when N is small).
        match N {
            1 => self.span::<N, 8>(planes, block, (oy, o), outs, bias),
            2..=4 => self.span::<N, 6>(planes, block, (oy, o), outs, bias),
            5 | 6 => self.span::<N, 4>(planes, block, (oy, o), outs, bias),
            _ => self.span::<N, 3>(planes, block, (oy, o), outs, bias),
        }
    }

    /// The row in tiles of `G` vectors, the rest in tiles of 4, 2 and 1 (a short row, as in the
    /// style predictor's 64 px maps, still gets independent sums); the row's last vector is
    /// masked to the row.
    #[target_feature(enable = "avx512f")]
    unsafe fn span<const N: usize, const G: usize>(
        &self,
        planes: &Planes,
        block: &Block,
        at: (usize, &[usize]),
        outs: &mut [&mut [f32]],
        bias: &[f32],
    ) {
        let ow = outs[0].len();
        if ow == 0 {
            return;
        }
        let vectors = ow.div_ceil(LANES);
        let last_mask = (((1u32 << (ow - (vectors - 1) * LANES)) - 1) & 0xffff) as u16;
        let mut v = 0;
        macro_rules! tiles {
            ($g:expr) => {
                while vectors - v >= $g {
                    let mask = if v + $g == vectors { last_mask } else { 0xffff };
                    // SAFETY: as asserted by row_avx512 (the planes hold the last vector whole);
                    // the last vector's store is masked to the row.
                    unsafe {
                        self.tile::<N, { $g }>(planes, block, at, v * LANES, mask, outs, bias)
                    };
                    v += $g;
                }
            };
        }
        tiles!(G);
        if G > 4 {
            tiles!(4);
        }
        if G > 2 {
            tiles!(2);
        }
        tiles!(1);
    }

    /// `N` channels × `G` vectors of output pixels from column `x0`; the last vector's store
    /// keeps the lanes in `last_mask`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const N: usize, const G: usize>(
        &self,
        planes: &Planes,
        block: &Block,
        (oy, offsets): (usize, &[usize]),
        x0: usize,
        last_mask: u16,
        outs: &mut [&mut [f32]],
        bias: &[f32],
    ) {
        let (kh, kw, (sy, sx)) = (self.kh, self.kw, self.stride);
        let taps = kh * kw;
        let data = planes.data.as_ptr();
        let mut acc = [[_mm512_setzero_ps(); G]; N];
        for ci in 0..self.group_in {
            for ky in 0..kh {
                let row = ((block.ci0 + ci) * planes.rows + oy * sy + ky) * sx * planes.width;
                // SAFETY (all reads): the row exists and x0 + offset + G·16 stays inside its
                // phase plane; the weights of (ci, ky) are in the block (asserted by
                // row_avx512).
                let line = unsafe { data.add(row + x0) };
                // The next tile's part of this line, into L1 while this tile computes: a tile
                // reads `group_in · kh` lines (up to 96), more streams than the hardware
                // prefetcher follows (measured: the 3×3 layers' kernels took twice as long).
                for g in 0..G {
                    let next = line.wrapping_add((G + g) * LANES);
                    _mm_prefetch::<_MM_HINT_T0>(next as *const i8);
                }
                let mut wk = unsafe { block.weights.as_ptr().add((ci * taps + ky * kw) * N) };
                for &off in offsets {
                    let at = unsafe { line.add(off) };
                    let mut xv = [_mm512_setzero_ps(); G];
                    for (g, v) in xv.iter_mut().enumerate() {
                        *v = unsafe { _mm512_loadu_ps(at.add(g * LANES)) };
                    }
                    for (n, a) in acc.iter_mut().enumerate() {
                        let w = _mm512_set1_ps(unsafe { *wk.add(n) });
                        for (a, &x) in a.iter_mut().zip(&xv) {
                            *a = _mm512_fmadd_ps(w, x, *a);
                        }
                    }
                    wk = unsafe { wk.add(N) };
                }
            }
        }
        for ((out, a), &b) in outs.iter_mut().zip(&acc).zip(bias) {
            let b = _mm512_set1_ps(b);
            for (g, &a) in a.iter().enumerate() {
                let mask = if g + 1 == G { last_mask } else { 0xffff };
                let sum = _mm512_add_ps(a, b);
                // SAFETY: the masked lanes lie inside the row (`span` builds the mask).
                unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().add(x0 + g * LANES), mask, sum) };
            }
        }
    }
}
