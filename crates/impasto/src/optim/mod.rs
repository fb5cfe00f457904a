//! Optimisers over an image's pixels.
//!
//! The transfer loop minimises a style loss `f(x)` over the image `x` (f32, 0–255 scale, up to
//! ~10⁷ values). One evaluation of `f` and `∇f` is a VGG forward and backward pass, about a
//! second, so **evaluations are the cost**: the vector arithmetic here is a few passes over the
//! image per iteration, runs on rayon, accumulates dot products in f64 (in fixed chunks, so the
//! results do not depend on thread scheduling) and allocates nothing per iteration beyond the
//! L-BFGS history.
//!
//! # L-BFGS ([`Lbfgs`]), the default
//!
//! Gatys et al. optimised with L-BFGS, and jcjohnson/neural-style uses Torch7's `optim.lbfgs`
//! by default. The objective is smooth and the image has millions of unknowns, so a
//! quasi-Newton direction gives far more loss reduction per evaluation than first-order methods:
//! a few hundred evaluations give a finished image. The directions follow Torch7 (two-loop
//! recursion, initial Hessian `(sᵀy)/(yᵀy)`, no `tolFun`/`tolX` stops, as neural-style). The
//! step length is where we part from neural-style: on the paper's unnormalised losses (values
//! of 1e11, gradients of 1e6–1e9) Torch7's fixed step overshoots by orders of magnitude on the
//! second iteration; sometimes the run recovers (tubingen at 256 px), sometimes it stalls for good
//! (the same at 128 px, stopped at iteration 4), so the default is PyTorch's strong-Wolfe line
//! search ([`LineSearch::StrongWolfe`], cubic interpolation, `c1 = 1e-4`, `c2 = 0.9`), which
//! costs about 1.3 evaluations per iteration. [`LineSearch::None`] remains for comparison. The
//! first iteration moves the steepest pixel by `lr` grey levels (Torch7's `min(1, 1/‖g‖₁)·lr`
//! would move pixels by less than f32 resolves; see `lbfgs.rs`).
//!
//! The history keeps the last `history` pairs `(s, y)` (default 100, as neural-style). Each
//! pair is two image-sized f32 vectors, so the history costs `2 · history · len · 4` bytes
//! ([`Lbfgs::history_bytes`]): 800 MB for a 1000×1000 RGB image at history 100. It is allocated
//! pair by pair as pairs arrive. Working vectors add two more image-sized f32 vectors (three
//! with the line search).
//!
//! # Adam ([`Adam`])
//!
//! Adam needs only two image-sized vectors and behaves predictably in pixel units: with
//! bias correction its first steps move each pixel by about `lr`, so the default `lr = 1` on the
//! 0–255 scale changes a pixel by at most about one grey level per iteration. It needs many more
//! evaluations than L-BFGS for the same loss; an optional step decay (`lr · factor^⌊t/every⌋`,
//! off by default) lets it settle instead of jittering by ±lr around the minimum.
//!
//! # The evaluation contract
//!
//! An [`Optimizer::step`] starts from `x` with its value `fx` and gradient `gx` already known,
//! and calls [`Evaluate`] as often as it needs (see [`Step::evaluations`]). On return, `x` is the
//! new point, `fx`/`gx` are its value and gradient, and **the last evaluation made was at the
//! returned `x`**, so any state the objective keeps about its last evaluation (loss parts,
//! activations) describes the returned image. An error from the evaluation aborts the step and
//! is returned as is; the optimiser's state and `x` are then unspecified.

mod adam;
mod lbfgs;
mod line_search;

pub use adam::{Adam, AdamConfig};
pub use lbfgs::{Lbfgs, LbfgsConfig, LineSearch};

use rayon::prelude::*;

/// Evaluates `f` at `x`, writes `∇f(x)` into the gradient slice, returns `f(x)`. Errors abort
/// the run.
pub type Evaluate<'a> = dyn FnMut(&[f32], &mut [f32]) -> crate::Result<f64> + 'a;

/// An iterative minimiser over a flat f32 vector.
pub trait Optimizer: Send {
    /// One iteration from `x`, whose value `fx` and gradient `gx` are known (from the previous
    /// evaluation). Moves `x`, and on return `fx`/`gx` hold the value and gradient at the new
    /// `x`: the last evaluation is always at the returned point. Returns what happened.
    fn step(
        &mut self,
        x: &mut [f32],
        fx: &mut f64,
        gx: &mut [f32],
        eval: &mut Evaluate<'_>,
    ) -> crate::Result<Step>;

    /// A short name for reports (`lbfgs`, `adam`).
    fn name(&self) -> &'static str;
}

/// What one [`Optimizer::step`] did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// Calls made to the evaluation (0 when the step found nothing to do).
    pub evaluations: usize,
    /// No further progress is possible (zero gradient, or a step too small to move the image);
    /// the caller should stop.
    pub converged: bool,
}

/// Elements per chunk of the parallel vector operations. Sums are accumulated per chunk and the
/// chunk sums added in order, so results are independent of scheduling.
const CHUNK: usize = 1 << 14;

fn check_len(what: &str, expected: usize, x: &[f32], g: &[f32]) -> crate::Result<()> {
    if x.len() != expected || g.len() != expected {
        return Err(crate::Error::parameter(format!(
            "{what}: created for {expected} values but given x of {} and gradient of {}",
            x.len(),
            g.len()
        )));
    }
    Ok(())
}

fn check_positive(name: &str, value: f64) -> crate::Result<()> {
    if !(value.is_finite() && value > 0.0) {
        return Err(crate::Error::parameter(format!(
            "{name} must be finite and > 0, got {value}"
        )));
    }
    Ok(())
}

/// Serial f64 dot product with four independent accumulators (so it vectorises).
fn dot_serial(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (a4, b4) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (a4.remainder(), b4.remainder());
    for (a, b) in a4.zip(b4) {
        for k in 0..4 {
            acc[k] += a[k] as f64 * b[k] as f64;
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(&a, &b)| a as f64 * b as f64).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Deterministic parallel reductions, reusing one buffer of chunk sums.
struct Sums {
    partials: Vec<f64>,
    pairs: Vec<(f64, f64)>,
}

impl Sums {
    fn new(len: usize) -> Self {
        Sums {
            partials: Vec::with_capacity(len.div_ceil(CHUNK)),
            pairs: Vec::with_capacity(len.div_ceil(CHUNK)),
        }
    }

    fn total(&self) -> f64 {
        self.partials.iter().sum()
    }

    /// Σ aᵢ·bᵢ in f64.
    fn dot(&mut self, a: &[f32], b: &[f32]) -> f64 {
        a.par_chunks(CHUNK)
            .zip(b.par_chunks(CHUNK))
            .map(|(a, b)| dot_serial(a, b))
            .collect_into_vec(&mut self.partials);
        self.total()
    }

    /// `y += alpha·x`, then returns Σ yᵢ·zᵢ over the updated `y` (0 without `z`).
    fn axpy_dot(&mut self, alpha: f64, x: &[f32], y: &mut [f32], z: Option<&[f32]>) -> f64 {
        let alpha = alpha as f32;
        let update = |y: &mut [f32], x: &[f32]| {
            for (y, &x) in y.iter_mut().zip(x) {
                *y += alpha * x;
            }
        };
        match z {
            Some(z) => {
                y.par_chunks_mut(CHUNK)
                    .zip(x.par_chunks(CHUNK))
                    .zip(z.par_chunks(CHUNK))
                    .map(|((y, x), z)| {
                        update(y, x);
                        dot_serial(y, z)
                    })
                    .collect_into_vec(&mut self.partials);
                self.total()
            }
            None => {
                y.par_chunks_mut(CHUNK)
                    .zip(x.par_chunks(CHUNK))
                    .for_each(|(y, x)| update(y, x));
                0.0
            }
        }
    }

    /// `(yᵀs, yᵀy)` for `s = t·d`, `y = g − g_prev`, over the f32 values of `s` and `y`.
    fn curvature(&mut self, t: f32, d: &[f32], g: &[f32], g_prev: &[f32]) -> (f64, f64) {
        g.par_chunks(CHUNK)
            .zip(g_prev.par_chunks(CHUNK))
            .zip(d.par_chunks(CHUNK))
            .map(|((g, gp), d)| {
                let (mut ys, mut yy) = (0.0f64, 0.0f64);
                for ((&g, &gp), &d) in g.iter().zip(gp).zip(d) {
                    let (y, s) = ((g - gp) as f64, (t * d) as f64);
                    ys += y * s;
                    yy += y * y;
                }
                (ys, yy)
            })
            .collect_into_vec(&mut self.pairs);
        self.pairs
            .iter()
            .fold((0.0, 0.0), |(ys, yy), &(a, b)| (ys + a, yy + b))
    }

    /// `y *= alpha`, then returns Σ yᵢ·zᵢ over the scaled `y`.
    fn scale_dot(&mut self, alpha: f64, y: &mut [f32], z: &[f32]) -> f64 {
        let alpha = alpha as f32;
        y.par_chunks_mut(CHUNK)
            .zip(z.par_chunks(CHUNK))
            .map(|(y, z)| {
                y.iter_mut().for_each(|y| *y *= alpha);
                dot_serial(y, z)
            })
            .collect_into_vec(&mut self.partials);
        self.total()
    }
}

/// max |aᵢ| (order-independent, so a plain parallel reduction is deterministic).
fn max_abs(a: &[f32]) -> f32 {
    a.par_chunks(CHUNK)
        .map(|a| a.iter().fold(0.0f32, |m, v| m.max(v.abs())))
        .reduce(|| 0.0, f32::max)
}

/// `x = x0 + t·d`.
fn set_along(x: &mut [f32], x0: &[f32], t: f64, d: &[f32]) {
    let t = t as f32;
    x.par_chunks_mut(CHUNK)
        .zip(x0.par_chunks(CHUNK))
        .zip(d.par_chunks(CHUNK))
        .for_each(|((x, x0), d)| {
            for ((x, &x0), &d) in x.iter_mut().zip(x0).zip(d) {
                *x = x0 + t * d;
            }
        });
}

/// `dst = −src`.
fn negate_into(dst: &mut [f32], src: &[f32]) {
    dst.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, &s)| *d = -s));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reductions_match_serial_sums_across_chunks() {
        let n = 3 * CHUNK + 17;
        let a: Vec<f32> = (0..n).map(|i| ((i % 7) as f32) - 3.0).collect();
        let b: Vec<f32> = (0..n).map(|i| ((i % 5) as f32) * 0.5).collect();
        let mut sums = Sums::new(n);
        let expected: f64 = a.iter().zip(&b).map(|(&a, &b)| a as f64 * b as f64).sum();
        assert_eq!(sums.dot(&a, &b), expected);
        assert_eq!(max_abs(&a), 3.0);

        let mut y = b.clone();
        let got = sums.axpy_dot(2.0, &a, &mut y, Some(&a));
        let y_expected: Vec<f32> = a.iter().zip(&b).map(|(&a, &b)| b + 2.0 * a).collect();
        assert_eq!(y, y_expected);
        let dot: f64 = y.iter().zip(&a).map(|(&y, &a)| y as f64 * a as f64).sum();
        assert!((got - dot).abs() <= 1e-9 * dot.abs());
    }
}

/// Test problems and a driver that checks the evaluation contract after every step.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Optimizer, Step};

    /// Panics unless `result` is a parameter error whose message names `name`.
    pub fn assert_refused<T>(result: crate::Result<T>, name: &str) {
        match result {
            Err(e) if e.kind() == crate::ErrorKind::Parameter => {
                assert!(e.to_string().contains(name), "{e} does not name {name}")
            }
            Err(other) => panic!("wrong error for {name}: {other}"),
            Ok(_) => panic!("{name} accepted"),
        }
    }

    /// f(x) = ½ Σ aᵢ (xᵢ − cᵢ)², aᵢ spread evenly over 1..100 (condition number 100), cᵢ on the
    /// 0–255 pixel scale.
    pub struct Quadratic {
        pub a: Vec<f64>,
        pub c: Vec<f64>,
    }

    impl Quadratic {
        pub fn new(n: usize) -> Self {
            let a = (0..n)
                .map(|i| 1.0 + 99.0 * i as f64 / (n - 1) as f64)
                .collect();
            let c = (0..n)
                .map(|i| 128.0 + 100.0 * (i as f64 * 0.7).sin())
                .collect();
            Quadratic { a, c }
        }

        pub fn eval(&self, x: &[f32], g: &mut [f32]) -> f64 {
            let mut f = 0.0;
            for i in 0..x.len() {
                let r = x[i] as f64 - self.c[i];
                f += 0.5 * self.a[i] * r * r;
                g[i] = (self.a[i] * r) as f32;
            }
            f
        }

        /// ‖x − c‖∞.
        pub fn error(&self, x: &[f32]) -> f64 {
            x.iter()
                .zip(&self.c)
                .map(|(&x, &c)| (x as f64 - c).abs())
                .fold(0.0, f64::max)
        }
    }

    /// Rosenbrock's banana, minimum 0 at (1, 1).
    pub fn rosenbrock(x: &[f32], g: &mut [f32]) -> f64 {
        let (a, b) = (x[0] as f64, x[1] as f64);
        g[0] = (-2.0 * (1.0 - a) - 400.0 * a * (b - a * a)) as f32;
        g[1] = (200.0 * (b - a * a)) as f32;
        (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
    }

    pub struct Run {
        pub x: Vec<f32>,
        pub fx: f64,
        pub steps: Vec<Step>,
        /// f after each step.
        pub values: Vec<f64>,
    }

    /// Up to `iterations` steps from `x`, stopping early on convergence or when `stop(x)`. After
    /// every step checks the contract: the last evaluation was at the returned x, and `fx`/`gx`
    /// equal a fresh evaluation there; and the reported evaluations match the calls made.
    pub fn run(
        opt: &mut dyn Optimizer,
        x: Vec<f32>,
        iterations: usize,
        f: &mut dyn FnMut(&[f32], &mut [f32]) -> f64,
        stop: &dyn Fn(&[f32]) -> bool,
    ) -> Run {
        let mut x = x;
        let mut gx = vec![0.0; x.len()];
        let mut fx = f(&x, &mut gx);
        let mut last_x = x.clone();
        let mut calls = 0;
        let (mut steps, mut values) = (Vec::new(), Vec::new());
        for _ in 0..iterations {
            let before = calls;
            let step = {
                let mut eval = |x: &[f32], g: &mut [f32]| {
                    calls += 1;
                    last_x.copy_from_slice(x);
                    Ok(f(x, g))
                };
                opt.step(&mut x, &mut fx, &mut gx, &mut eval).unwrap()
            };
            assert_eq!(step.evaluations, calls - before, "evaluations miscounted");
            assert_eq!(last_x, x, "the last evaluation is not at the returned x");
            let mut fresh = vec![0.0; x.len()];
            assert_eq!(fx, f(&x, &mut fresh), "fx is not f(x)");
            assert_eq!(gx, fresh, "gx is not ∇f(x)");
            assert!(fx.is_finite() && x.iter().all(|v| v.is_finite()));
            steps.push(step);
            values.push(fx);
            if step.converged || stop(&x) {
                break;
            }
        }
        Run {
            x,
            fx,
            steps,
            values,
        }
    }
}
