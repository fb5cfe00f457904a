//! Helpers for the core's unit tests: a deterministic generator and naive reference kernels.

use super::{FeatureMap, Scalar};

pub(crate) use super::test_rng::Rng;

impl Rng {
    pub fn map<T: Scalar>(&mut self, h: usize, w: usize, c: usize) -> FeatureMap<T> {
        let v: Vec<T> = self
            .vec(c * h * w, 1.0)
            .into_iter()
            .map(T::from_f64)
            .collect();
        FeatureMap::from_nchw(c, h, w, &v)
    }
}

/// Direct 3×3 pad-1 convolution in f64 on NCHW data.
pub(crate) fn naive_conv(
    x: &[f64],
    cin: usize,
    h: usize,
    w: usize,
    weight: &[f32],
    bias: &[f32],
    cout: usize,
) -> Vec<f64> {
    let mut y = vec![0.0; cout * h * w];
    for co in 0..cout {
        for oy in 0..h {
            for ox in 0..w {
                let mut s = bias[co] as f64;
                for ci in 0..cin {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (iy, ix) = (oy + ky, ox + kx);
                            if iy < 1 || ix < 1 || iy > h || ix > w {
                                continue;
                            }
                            let wv = weight[((co * cin + ci) * 3 + ky) * 3 + kx] as f64;
                            s += wv * x[(ci * h + iy - 1) * w + ix - 1];
                        }
                    }
                }
                y[(co * h + oy) * w + ox] = s;
            }
        }
    }
    y
}

pub(crate) fn dot<T: Scalar>(a: &FeatureMap<T>, b: &FeatureMap<T>) -> f64 {
    a.interior()
        .zip(b.interior())
        .map(|(x, y)| x.to_f64() * y.to_f64())
        .sum()
}

/// Runs `f` on a 3-thread pool so work splits into uneven chunks.
pub(crate) fn on_three_threads<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .expect("thread pool")
        .install(f)
}
