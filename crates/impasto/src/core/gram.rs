//! Gram matrices `G = Fᵀ F` (C × C, unnormalised) and the product `F · D` that the style loss's
//! gradient needs. Both run over the whole padded buffer: border pixels are zero and add nothing.

use rayon::prelude::*;

use super::matmul::{matmul, View};
use super::{rows_per_task, FeatureMap, Scalar};

/// Writes the `C × C` Gram matrix of `f` (row-major) into `g`.
pub fn gram<T: Scalar>(f: &FeatureMap<T>, g: &mut [T]) {
    let c = f.channels();
    assert_eq!(g.len(), c * c, "Gram matrix length");
    let data = f.data();
    let pixels = data.len() / c;
    // The reduction runs over pixels (K), which is huge while C × C is small: split K across
    // threads and add the partial matrices, since splitting the small output would starve cores.
    let parts = rayon::current_num_threads()
        .min(pixels.div_ceil(256))
        .max(1);
    let per = pixels.div_ceil(parts);
    let partial: Vec<Vec<T>> = (0..parts)
        .into_par_iter()
        .map(|i| {
            let (p0, p1) = (i * per, ((i + 1) * per).min(pixels));
            let mut part = vec![T::ZERO; c * c];
            // lhs = Fᵀ (c × k): element (i, p) at p·c + i; rhs = F (k × c).
            matmul(
                c,
                c,
                p1 - p0,
                &mut part,
                View::new(0, c, 1),
                data,
                View::new(p0 * c, 1, c),
                data,
                View::new(p0 * c, c, 1),
                false,
                T::ONE,
                false,
            );
            part
        })
        .collect();
    g.fill(T::ZERO);
    for part in partial {
        for (a, b) in g.iter_mut().zip(part) {
            *a += b;
        }
    }
}

/// `grad += scale · F · D` for a `C × C` matrix `d` (row-major). With `D = ∂L/∂G + (∂L/∂G)ᵀ`
/// this is the chain rule through `G = Fᵀ F`.
pub fn gram_gradient<T: Scalar>(f: &FeatureMap<T>, d: &[T], scale: T, grad: &mut FeatureMap<T>) {
    let c = f.channels();
    assert_eq!(d.len(), c * c, "Gram gradient matrix length");
    assert!(grad.same_shape(f), "Gram gradient shape");
    let pw = f.padded_width();
    let row_len = pw * c;
    let rows = rows_per_task(pw, c, f.height() + 2);
    let data = f.data();
    grad.data_mut()
        .par_chunks_mut(rows * row_len)
        .enumerate()
        .for_each(|(t, chunk)| {
            let m = chunk.len() / c;
            matmul(
                m,
                c,
                c,
                chunk,
                View::new(0, c, 1),
                data,
                View::new(t * rows * row_len, c, 1),
                d,
                View::new(0, c, 1),
                true,
                scale,
                false,
            );
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testutil::{on_three_threads, Rng};

    #[test]
    fn gram_and_its_gradient_product_match_naive_sums() {
        on_three_threads(|| {
            let mut rng = Rng::new(7);
            let (h, w, c) = (23, 17, 5);
            let f: FeatureMap<f64> = rng.map(h, w, c);
            let mut g = vec![0.0; c * c];
            gram(&f, &mut g);
            for i in 0..c {
                for j in 0..c {
                    let want: f64 = (0..h)
                        .flat_map(|y| (0..w).map(move |x| (y, x)))
                        .map(|(y, x)| f.pixel(y, x)[i] * f.pixel(y, x)[j])
                        .sum();
                    assert!((g[i * c + j] - want).abs() < 1e-10);
                }
            }
            let d = rng.vec(c * c, 1.0);
            let mut grad: FeatureMap<f64> = rng.map(h, w, c);
            let before = grad.clone();
            gram_gradient(&f, &d, 0.5, &mut grad);
            for y in 0..h {
                for x in 0..w {
                    for j in 0..c {
                        let fd: f64 = (0..c).map(|i| f.pixel(y, x)[i] * d[i * c + j]).sum();
                        let want = before.pixel(y, x)[j] + 0.5 * fd;
                        assert!((grad.pixel(y, x)[j] - want).abs() < 1e-12);
                    }
                }
            }
            assert!(grad.border_is_zero());
        });
    }
}
