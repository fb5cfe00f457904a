use super::Scalar;

/// One image's activations: `h × w` pixels of `c` channels, stored NHWC with a one-pixel zero
/// border, i.e. `(h + 2) × (w + 2) × c` values. Kernels keep the border zero.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeatureMap<T = f32> {
    h: usize,
    w: usize,
    c: usize,
    data: Vec<T>,
}

impl<T: Scalar> FeatureMap<T> {
    /// An `h × w × c` map of zeros (with its zero border).
    pub fn zeros(h: usize, w: usize, c: usize) -> Self {
        FeatureMap {
            h,
            w,
            c,
            data: vec![T::ZERO; (h + 2) * (w + 2) * c],
        }
    }

    /// An empty map whose buffer can later [`FeatureMap::reshape`] to `elements` values without
    /// reallocating.
    pub fn with_capacity(elements: usize) -> Self {
        FeatureMap {
            h: 0,
            w: 0,
            c: 0,
            data: Vec::with_capacity(elements),
        }
    }

    /// From NCHW data of one image (`c × h × w`), as PyTorch and the reference files store it.
    pub fn from_nchw(c: usize, h: usize, w: usize, nchw: &[T]) -> Self {
        assert_eq!(nchw.len(), c * h * w, "NCHW length");
        let mut map = Self::zeros(h, w, c);
        for y in 0..h {
            for x in 0..w {
                let o = map.offset(y, x);
                for ch in 0..c {
                    map.data[o + ch] = nchw[(ch * h + y) * w + x];
                }
            }
        }
        map
    }

    /// To NCHW (`c × h × w`), dropping the border.
    pub fn to_nchw(&self) -> Vec<T> {
        let (h, w, c) = (self.h, self.w, self.c);
        let mut out = vec![T::ZERO; c * h * w];
        for y in 0..h {
            for x in 0..w {
                let o = self.offset(y, x);
                for ch in 0..c {
                    out[(ch * h + y) * w + x] = self.data[o + ch];
                }
            }
        }
        out
    }

    /// Re-shapes the buffer in place for another layer, reusing its allocation when large
    /// enough. Values are unspecified afterwards except that the caller must overwrite or zero
    /// them: every kernel writes the whole buffer, border included.
    pub fn reshape(&mut self, h: usize, w: usize, c: usize) {
        self.h = h;
        self.w = w;
        self.c = c;
        self.data.resize((h + 2) * (w + 2) * c, T::ZERO);
    }

    /// Sets every value, border included, to zero.
    pub fn zero(&mut self) {
        self.data.fill(T::ZERO);
    }

    /// Bytes held by the buffer (its capacity, which may exceed the current shape).
    pub fn allocated_bytes(&self) -> usize {
        self.data.capacity() * std::mem::size_of::<T>()
    }

    /// Height in pixels, without the border.
    pub fn height(&self) -> usize {
        self.h
    }
    /// Width in pixels, without the border.
    pub fn width(&self) -> usize {
        self.w
    }
    /// Channels per pixel.
    pub fn channels(&self) -> usize {
        self.c
    }
    /// Width including the border.
    pub fn padded_width(&self) -> usize {
        self.w + 2
    }
    /// `h · w`, the pixel count M of the paper's `N × M` feature matrix.
    pub fn pixels(&self) -> usize {
        self.h * self.w
    }

    /// Index in [`FeatureMap::data`] of interior pixel `(y, x)`'s first channel.
    pub fn offset(&self, y: usize, x: usize) -> usize {
        ((y + 1) * (self.w + 2) + (x + 1)) * self.c
    }

    /// The channels of interior pixel `(y, x)`.
    pub fn pixel(&self, y: usize, x: usize) -> &[T] {
        let o = self.offset(y, x);
        &self.data[o..o + self.c]
    }

    /// The channels of interior pixel `(y, x)`, mutable.
    pub fn pixel_mut(&mut self, y: usize, x: usize) -> &mut [T] {
        let o = self.offset(y, x);
        let c = self.c;
        &mut self.data[o..o + c]
    }

    /// The whole buffer, border included.
    pub fn data(&self) -> &[T] {
        &self.data
    }
    /// The whole buffer, border included, mutable.
    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// Interior values in row-major NHWC order, for sums and comparisons.
    pub fn interior(&self) -> impl Iterator<Item = T> + '_ {
        (0..self.h).flat_map(move |y| self.pixel_row(y).iter().copied())
    }

    /// The `w · c` interior values of row `y`.
    pub fn pixel_row(&self, y: usize) -> &[T] {
        let o = self.offset(y, 0);
        &self.data[o..o + self.w * self.c]
    }

    /// Interior row `y`'s pixels (`width × channels` values), mutable.
    pub fn pixel_row_mut(&mut self, y: usize) -> &mut [T] {
        let o = self.offset(y, 0);
        let n = self.w * self.c;
        &mut self.data[o..o + n]
    }

    /// Sets every interior value to `v`; the border stays zero.
    pub fn fill(&mut self, v: T) {
        for y in 0..self.h {
            self.pixel_row_mut(y).fill(v);
        }
    }

    /// Whether `other` has the same height, width and channels.
    pub fn same_shape(&self, other: &Self) -> bool {
        (self.h, self.w, self.c) == (other.h, other.w, other.c)
    }

    /// True if every border value is zero (an invariant every kernel keeps).
    pub fn border_is_zero(&self) -> bool {
        let pw = self.w + 2;
        let row = pw * self.c;
        let top = &self.data[..row];
        let bottom = &self.data[(self.h + 1) * row..];
        let sides = (1..=self.h).all(|r| {
            let left = &self.data[r * row..r * row + self.c];
            let right = &self.data[(r * pw + pw - 1) * self.c..(r + 1) * row];
            left.iter().chain(right).all(|v| *v == T::ZERO)
        });
        top.iter().chain(bottom).all(|v| *v == T::ZERO) && sides
    }

    /// The same map in another scalar type.
    pub fn convert<U: Scalar>(&self) -> FeatureMap<U> {
        FeatureMap {
            h: self.h,
            w: self.w,
            c: self.c,
            data: self.data.iter().map(|v| U::from_f64(v.to_f64())).collect(),
        }
    }
}

/// Zeroes the border columns (and the top/bottom border rows) of a run of whole padded rows
/// starting at padded row `r0`, and applies `f` to every interior pixel's channels.
pub(crate) fn for_each_interior_row<T: Scalar>(
    rows: &mut [T],
    r0: usize,
    h: usize,
    w: usize,
    c: usize,
    mut f: impl FnMut(usize, &mut [T]),
) {
    let row_len = (w + 2) * c;
    for (i, row) in rows.chunks_exact_mut(row_len).enumerate() {
        let r = r0 + i;
        if r == 0 || r == h + 1 {
            row.fill(T::ZERO);
            continue;
        }
        row[..c].fill(T::ZERO);
        row[(w + 1) * c..].fill(T::ZERO);
        f(r - 1, &mut row[c..(w + 1) * c]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nchw_round_trip_keeps_border_zero() {
        let nchw: Vec<f64> = (0..2 * 3 * 5).map(|v| v as f64 + 1.0).collect();
        let m = FeatureMap::from_nchw(2, 3, 5, &nchw);
        assert!(m.border_is_zero());
        assert_eq!(m.to_nchw(), nchw);
        assert_eq!(m.pixel(1, 2), &[nchw[7], nchw[15 + 7]]);
        assert_eq!(m.interior().count(), 30);
    }
}
