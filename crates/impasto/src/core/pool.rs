//! 2×2, stride-2 pooling in floor mode (an odd last row or column is dropped, as in PyTorch).

use std::fmt;
use std::str::FromStr;

use rayon::prelude::*;

use super::tensor::for_each_interior_row;
use super::{FeatureMap, ReluMask, Scalar};
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
/// The 2×2, stride-2 pooling between VGG's blocks.
pub enum Pooling {
    /// Average pooling: the Gatys paper found it gives better images.
    #[default]
    Avg,
    /// Max pooling, as the network was trained.
    Max,
}

impl fmt::Display for Pooling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pooling::Avg => "avg",
            Pooling::Max => "max",
        })
    }
}

impl FromStr for Pooling {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "avg" => Ok(Pooling::Avg),
            "max" => Ok(Pooling::Max),
            other => Err(Error::parameter(format!(
                "unknown pooling `{other}` (expected avg or max)"
            ))),
        }
    }
}

/// Index (0..4, row-major in the window) of the window's maximum; the first one wins ties, as in
/// PyTorch's CPU kernel.
fn argmax4<T: Scalar>(v: [T; 4]) -> usize {
    let mut best = 0;
    for i in 1..4 {
        if v[i] > v[best] {
            best = i;
        }
    }
    best
}

/// `out` must be `(h/2) × (w/2)` with the input's channels.
pub fn pool_forward<T: Scalar>(kind: Pooling, input: &FeatureMap<T>, out: &mut FeatureMap<T>) {
    let (oh, ow, c) = (out.height(), out.width(), out.channels());
    assert!(
        oh == input.height() / 2 && ow == input.width() / 2 && c == input.channels(),
        "pool output shape"
    );
    let quarter = T::from_f64(0.25);
    let row_len = (ow + 2) * c;
    out.data_mut()
        .par_chunks_mut(row_len)
        .enumerate()
        .for_each(|(r, row)| {
            for_each_interior_row(row, r, oh, ow, c, |oy, px| {
                let (top, bottom) = (input.pixel_row(2 * oy), input.pixel_row(2 * oy + 1));
                for ox in 0..ow {
                    let i = 2 * ox * c;
                    for ch in 0..c {
                        let v = [
                            top[i + ch],
                            top[i + c + ch],
                            bottom[i + ch],
                            bottom[i + c + ch],
                        ];
                        px[ox * c + ch] = match kind {
                            Pooling::Avg => (v[0] + v[1] + v[2] + v[3]) * quarter,
                            Pooling::Max => v[argmax4(v)],
                        };
                    }
                }
            });
        });
}

/// `grad_in = mask ⊙ ((accumulate ? grad_in : 0) + poolᵀ(grad_out))`. Max pooling needs the
/// forward `input` to route each gradient to its window's maximum; average pooling reads none.
pub fn pool_backward<T: Scalar>(
    kind: Pooling,
    input: Option<&FeatureMap<T>>,
    grad_out: &FeatureMap<T>,
    grad_in: &mut FeatureMap<T>,
    accumulate: bool,
    mask: Option<&ReluMask>,
) {
    let (h, w, c) = (grad_in.height(), grad_in.width(), grad_in.channels());
    let input = match (kind, input) {
        (Pooling::Max, None) => panic!("max pooling's backward needs its forward input"),
        (_, Some(x)) => {
            assert!(grad_in.same_shape(x), "pool grad_in shape");
            Some(x)
        }
        (Pooling::Avg, None) => None,
    };
    assert!(
        grad_out.height() == h / 2 && grad_out.width() == w / 2 && grad_out.channels() == c,
        "pool grad_out shape"
    );
    if let Some(m) = mask {
        assert!(m.same_shape(&*grad_in), "ReLU mask shape");
    }
    let (oh, ow) = (h / 2, w / 2);
    let quarter = T::from_f64(0.25);
    let row_len = (w + 2) * c;
    grad_in
        .data_mut()
        .par_chunks_mut(row_len)
        .enumerate()
        .for_each(|(r, row)| {
            for_each_interior_row(row, r, h, w, c, |y, px| {
                if !accumulate {
                    px.fill(T::ZERO);
                }
                let oy = y / 2;
                if oy < oh {
                    let g = grad_out.pixel_row(oy);
                    // The two input rows of this window row, to find each window's maximum.
                    let rows = input.map(|x| (x.pixel_row(2 * oy), x.pixel_row(2 * oy + 1)));
                    let dy = y % 2;
                    for ox in 0..ow {
                        for dx in 0..2 {
                            let x = 2 * ox + dx;
                            for ch in 0..c {
                                let go = g[ox * c + ch];
                                px[x * c + ch] += match kind {
                                    Pooling::Avg => go * quarter,
                                    Pooling::Max => {
                                        // Checked on entry: max pooling has its input.
                                        let (top, bottom) = rows.unwrap_or_default();
                                        let i = 2 * ox * c + ch;
                                        let v = [top[i], top[i + c], bottom[i], bottom[i + c]];
                                        if argmax4(v) == dy * 2 + dx {
                                            go
                                        } else {
                                            T::ZERO
                                        }
                                    }
                                };
                            }
                        }
                    }
                }
                if let Some(m) = mask {
                    m.apply_row(y, px);
                }
            });
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testutil::{dot, on_three_threads, Rng};

    fn naive_pool(kind: Pooling, x: &FeatureMap<f64>) -> FeatureMap<f64> {
        let (oh, ow, c) = (x.height() / 2, x.width() / 2, x.channels());
        let mut out = FeatureMap::zeros(oh, ow, c);
        for oy in 0..oh {
            for ox in 0..ow {
                for ch in 0..c {
                    let v: Vec<f64> = [(0, 0), (0, 1), (1, 0), (1, 1)]
                        .iter()
                        .map(|(dy, dx)| x.pixel(2 * oy + dy, 2 * ox + dx)[ch])
                        .collect();
                    out.pixel_mut(oy, ox)[ch] = match kind {
                        Pooling::Avg => v.iter().sum::<f64>() / 4.0,
                        Pooling::Max => v.iter().cloned().fold(f64::MIN, f64::max),
                    };
                }
            }
        }
        out
    }

    #[test]
    fn forward_matches_naive_in_floor_mode() {
        on_three_threads(|| {
            let mut rng = Rng::new(5);
            for kind in [Pooling::Avg, Pooling::Max] {
                for &(h, w, c) in &[(7, 9, 3), (2, 2, 1), (8, 5, 4), (3, 3, 2)] {
                    let x: FeatureMap<f64> = rng.map(h, w, c);
                    let mut out = FeatureMap::zeros(h / 2, w / 2, c);
                    pool_forward(kind, &x, &mut out);
                    assert_eq!(out, naive_pool(kind, &x), "{kind} {h}x{w}");
                    assert!(out.border_is_zero());
                }
            }
        });
    }

    #[test]
    fn average_backward_is_the_adjoint_and_drops_odd_edges() {
        on_three_threads(|| {
            let mut rng = Rng::new(6);
            let (h, w, c) = (9, 7, 3);
            let x: FeatureMap<f64> = rng.map(h, w, c);
            let g: FeatureMap<f64> = rng.map(h / 2, w / 2, c);
            let mut px = FeatureMap::zeros(h / 2, w / 2, c);
            pool_forward(Pooling::Avg, &x, &mut px);
            let mut gx = FeatureMap::zeros(h, w, c);
            pool_backward(Pooling::Avg, None, &g, &mut gx, false, None);
            assert!((dot(&px, &g) - dot(&x, &gx)).abs() < 1e-12);
            assert!(gx.pixel_row(h - 1).iter().all(|&v| v == 0.0), "dropped row");
            assert!(
                (0..h).all(|y| gx.pixel(y, w - 1).iter().all(|&v| v == 0.0)),
                "dropped column"
            );
            assert!(gx.border_is_zero());
        });
    }

    #[test]
    fn max_backward_routes_to_the_first_maximum() {
        // One window with a tie between positions 1 and 3: the first (1) receives the gradient.
        let mut x = FeatureMap::<f64>::zeros(2, 2, 1);
        x.pixel_mut(0, 0)[0] = 1.0;
        x.pixel_mut(0, 1)[0] = 5.0;
        x.pixel_mut(1, 0)[0] = -2.0;
        x.pixel_mut(1, 1)[0] = 5.0;
        let mut g = FeatureMap::zeros(1, 1, 1);
        g.pixel_mut(0, 0)[0] = 3.0;
        let mut gx = FeatureMap::zeros(2, 2, 1);
        pool_backward(Pooling::Max, Some(&x), &g, &mut gx, false, None);
        assert_eq!(gx.to_nchw(), vec![0.0, 3.0, 0.0, 0.0]);
        // Accumulating adds to what is there; the mask then zeroes non-positive activations.
        let mut mask = FeatureMap::zeros(2, 2, 1);
        mask.fill(1.0);
        mask.pixel_mut(1, 1)[0] = 0.0;
        let mut acc = FeatureMap::zeros(2, 2, 1);
        acc.fill(10.0);
        pool_backward(
            Pooling::Max,
            Some(&x),
            &g,
            &mut acc,
            true,
            Some(&ReluMask::of(&mask)),
        );
        assert_eq!(acc.to_nchw(), vec![10.0, 13.0, 10.0, 0.0]);
    }
}
