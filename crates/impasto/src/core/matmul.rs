//! The one place that calls the `gemm` crate. Every call checks that the strided views it hands
//! over lie inside their slices, so the `unsafe` stays local and provably in bounds.

use gemm::Parallelism;

use super::Scalar;

/// A strided matrix view into a slice: element `(i, j)` is `data[offset + i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View {
    pub offset: usize,
    pub rs: usize,
    pub cs: usize,
}

impl View {
    pub fn new(offset: usize, rs: usize, cs: usize) -> Self {
        View { offset, rs, cs }
    }

    fn check(&self, rows: usize, cols: usize, len: usize, what: &str) {
        if rows == 0 || cols == 0 {
            return;
        }
        let last = self.offset + (rows - 1) * self.rs + (cols - 1) * self.cs;
        assert!(last < len, "{what} view out of bounds: {last} >= {len}");
    }
}

/// `dst = (accumulate ? dst : 0) + scale · lhs · rhs` with `dst` m×n, `lhs` m×k, `rhs` k×n.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul<T: Scalar>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    dv: View,
    lhs: &[T],
    lv: View,
    rhs: &[T],
    rv: View,
    accumulate: bool,
    scale: T,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    dv.check(m, n, dst.len(), "dst");
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst[dv.offset + i * dv.rs + j * dv.cs] = T::ZERO;
                }
            }
        }
        return;
    }
    lv.check(m, k, lhs.len(), "lhs");
    rv.check(k, n, rhs.len(), "rhs");
    let parallelism = if parallel {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: the three views were checked above to address only elements inside their slices;
    // `dst` is borrowed mutably and cannot alias `lhs` or `rhs`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().add(dv.offset),
            dv.cs as isize,
            dv.rs as isize,
            accumulate,
            lhs.as_ptr().add(lv.offset),
            lv.cs as isize,
            lv.rs as isize,
            rhs.as_ptr().add(rv.offset),
            rv.cs as isize,
            rv.rs as isize,
            T::ONE,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_product_with_strides_and_accumulation() {
        let (m, n, k) = (5, 3, 4);
        let a: Vec<f64> = (0..m * k).map(|v| (v as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|v| (v as f64 * 0.91).cos()).collect();
        // b used transposed: (i, j) = b[j*k + i]
        let mut c = vec![1.0; m * n];
        matmul(
            m,
            n,
            k,
            &mut c,
            View::new(0, n, 1),
            &a,
            View::new(0, k, 1),
            &b,
            View::new(0, 1, k),
            true,
            2.0,
            false,
        );
        for i in 0..m {
            for j in 0..n {
                let want: f64 =
                    1.0 + 2.0 * (0..k).map(|p| a[i * k + p] * b[j * k + p]).sum::<f64>();
                assert!((c[i * n + j] - want).abs() < 1e-12);
            }
        }
    }
}
