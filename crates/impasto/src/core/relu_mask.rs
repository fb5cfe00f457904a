//! Which values of a ReLU output are positive, one bit each.
//!
//! Why: with the weights frozen, the backward pass needs nothing of an activation that no loss
//! reads except where its ReLU let the gradient through. A bit instead of the f32 value is 1/32
//! of the memory, so only the layers the losses read are kept whole.

use rayon::prelude::*;

use super::{FeatureMap, Scalar};

/// One bit per value of an `h × w × c` feature map (interior only): set where the value is > 0.
#[derive(Clone, Debug, Default)]
pub struct ReluMask {
    h: usize,
    w: usize,
    c: usize,
    /// Words per pixel row: each row starts on a word, so rows are recorded in parallel.
    row_words: usize,
    bits: Vec<u64>,
}

impl ReluMask {
    /// Room for an `h × w × c` map, all bits clear.
    pub fn new(h: usize, w: usize, c: usize) -> Self {
        let row_words = (w * c).div_ceil(64);
        ReluMask {
            h,
            w,
            c,
            row_words,
            bits: vec![0; h * row_words],
        }
    }

    /// The mask of `act`.
    pub fn of<T: Scalar>(act: &FeatureMap<T>) -> Self {
        let mut m = Self::new(act.height(), act.width(), act.channels());
        m.record(act);
        m
    }

    /// Bytes a mask of this shape takes.
    pub fn bytes_for(h: usize, w: usize, c: usize) -> usize {
        h * (w * c).div_ceil(64) * 8
    }

    /// Bytes this mask holds.
    pub fn allocated_bytes(&self) -> usize {
        self.bits.capacity() * 8
    }

    /// Sets each bit to whether the matching value of `act` (of this mask's shape) is > 0.
    pub fn record<T: Scalar>(&mut self, act: &FeatureMap<T>) {
        assert!(
            act.height() == self.h && act.width() == self.w && act.channels() == self.c,
            "ReLU mask shape"
        );
        if self.row_words == 0 {
            return;
        }
        self.bits
            .par_chunks_mut(self.row_words)
            .enumerate()
            .for_each(|(y, words)| {
                let row = act.pixel_row(y);
                for (word, vals) in words.iter_mut().zip(row.chunks(64)) {
                    *word = positive_bits(vals);
                }
            });
    }

    /// Whether `f` has this mask's height, width and channels.
    pub fn same_shape<T: Scalar>(&self, f: &FeatureMap<T>) -> bool {
        self.h == f.height() && self.w == f.width() && self.c == f.channels()
    }

    /// Zeroes the values of `values` (the `c` channels of pixel `(y, x)`, or a run of whole
    /// pixels starting there) whose bit is clear.
    #[inline(always)]
    pub fn apply<T: Scalar>(&self, y: usize, x: usize, values: &mut [T]) {
        debug_assert!(y < self.h && x * self.c + values.len() <= self.w * self.c);
        let row = &self.bits[y * self.row_words..(y + 1) * self.row_words];
        let start = x * self.c;
        if start.is_multiple_of(64) {
            // VGG's channel counts are multiples of 64, so pixels start on a word: take the
            // values 64 at a time and skip the words that let everything through.
            let words = &row[start / 64..];
            for (chunk, &word) in values.chunks_mut(64).zip(words) {
                match word {
                    u64::MAX => {}
                    0 => chunk.fill(T::ZERO),
                    _ => zero_clear_bits(chunk, word),
                }
            }
            return;
        }
        for (i, v) in values.iter_mut().enumerate() {
            let b = start + i;
            if row[b / 64] >> (b % 64) & 1 == 0 {
                *v = T::ZERO;
            }
        }
    }

    /// [`ReluMask::apply`] to a whole pixel row (`w·c` values).
    pub fn apply_row<T: Scalar>(&self, y: usize, row: &mut [T]) {
        self.apply(y, 0, row)
    }
}

/// Bit `i` set where `vals[i] > 0` (at most 64 values). In groups of 8 so the compiler can use
/// a vector compare and move-mask.
#[inline]
fn positive_bits<T: Scalar>(vals: &[T]) -> u64 {
    let mut bits = 0u64;
    for (g, group) in vals.chunks(8).enumerate() {
        let mut b = 0u64;
        for (i, &v) in group.iter().enumerate() {
            b |= u64::from(v > T::ZERO) << i;
        }
        bits |= b << (8 * g);
    }
    bits
}

/// Zeroes `chunk[i]` where bit `i` of `word` is clear. Eight values per byte of the word with
/// constant bit positions and no branches, so the compiler makes it broadcast, and, compare and
/// select; inlined so it is compiled for the caller's instruction set (the Winograd epilogue's
/// AVX2 copy).
#[inline(always)]
fn zero_clear_bits<T: Scalar>(chunk: &mut [T], word: u64) {
    let done = chunk.len() / 8 * 8;
    let mut groups = chunk.chunks_exact_mut(8);
    for (g, group) in (&mut groups).enumerate() {
        let byte = (word >> (8 * g)) as u8;
        for (i, v) in group.iter_mut().enumerate() {
            let keep = byte & (1u8 << i) != 0;
            *v = if keep { *v } else { T::ZERO };
        }
    }
    for (i, v) in groups.into_remainder().iter_mut().enumerate() {
        if (word >> (done + i)) & 1 == 0 {
            *v = T::ZERO;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_exactly_the_values_that_are_not_positive() {
        // 65 channels: pixels straddle word boundaries; odd width: rows end mid-word.
        let (h, w, c) = (3, 5, 65);
        let mut act = FeatureMap::<f32>::zeros(h, w, c);
        for y in 0..h {
            for (i, v) in act.pixel_row_mut(y).iter_mut().enumerate() {
                *v = [(1.5f32), 0.0, -2.0, 1e-30, -0.0][(i * 7 + y) % 5];
            }
        }
        let mask = ReluMask::of(&act);
        assert!(mask.same_shape(&act));
        for y in 0..h {
            let mut g = vec![1.0f32; w * c];
            mask.apply_row(y, &mut g);
            for (i, (&gv, &a)) in g.iter().zip(act.pixel_row(y)).enumerate() {
                assert_eq!(gv, if a > 0.0 { 1.0 } else { 0.0 }, "row {y} value {i}");
            }
            for x in 0..w {
                let mut p = vec![3.0f32; c];
                mask.apply(y, x, &mut p);
                for (&got, &a) in p.iter().zip(act.pixel(y, x)) {
                    assert_eq!(got, if a > 0.0 { 3.0 } else { 0.0 });
                }
            }
        }
        assert_eq!(mask.allocated_bytes(), ReluMask::bytes_for(h, w, c));
    }

    #[test]
    fn recording_again_replaces_the_old_bits() {
        let mut act = FeatureMap::<f64>::zeros(2, 2, 3);
        act.fill(1.0);
        let mut mask = ReluMask::of(&act);
        act.fill(-1.0);
        mask.record(&act);
        let mut g = vec![1.0; 6];
        mask.apply_row(1, &mut g);
        assert!(g.iter().all(|&v| v == 0.0));
    }
}
