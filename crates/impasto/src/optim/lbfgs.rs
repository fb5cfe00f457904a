//! Limited-memory BFGS, following Torch7's `optim.lbfgs` (as jcjohnson/neural-style runs it) and,
//! for the optional strong-Wolfe line search, PyTorch's `torch.optim.LBFGS`.

use super::line_search::strong_wolfe;
use super::{check_len, check_positive, max_abs, negate_into, Evaluate, Optimizer, Step, Sums};
use crate::{Error, Result};
use rayon::prelude::*;

/// How L-BFGS chooses the step length along its direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LineSearch {
    /// Torch7's behaviour and neural-style's default: step `lr` (the first iteration moves the
    /// steepest value by `lr`) and exactly one evaluation per iteration, even if the loss rises.
    /// On the paper's style loss (quartic in the features) the second step overshoots by
    /// orders of magnitude, after which the run may recover or stall; kept for comparison.
    None,
    /// PyTorch's strong-Wolfe search (`c1 = 1e-4`, `c2 = 0.9`, cubic interpolation, at most 25
    /// iterations): the loss decreases every iteration, at the price of extra evaluations
    /// (about 1.3 per iteration on a transfer). The default.
    #[default]
    StrongWolfe,
}

/// Settings of [`Lbfgs`].
#[derive(Clone, Debug, PartialEq)]
pub struct LbfgsConfig {
    /// Correction pairs kept (≥ 1). Default 100, as neural-style; costs
    /// [`Lbfgs::history_bytes`].
    pub history: usize,
    /// Default [`LineSearch::StrongWolfe`].
    pub line_search: LineSearch,
    /// Step length along the L-BFGS direction (finite, > 0). Default 1.
    pub learning_rate: f64,
}

impl Default for LbfgsConfig {
    fn default() -> Self {
        LbfgsConfig {
            history: 100,
            line_search: LineSearch::StrongWolfe,
            learning_rate: 1.0,
        }
    }
}

/// A correction pair `s = x₊ − x`, `y = g₊ − g` with `rho = 1/(yᵀs)`.
struct Pair {
    s: Vec<f32>,
    y: Vec<f32>,
    rho: f64,
}

/// L-BFGS over a flat f32 vector. Directions by the two-loop recursion over the last `history`
/// pairs (a ring buffer) with initial Hessian `H₀ = (sᵀy)/(yᵀy)` of the newest pair. A pair is
/// stored only when `yᵀs > 1e-10`, which keeps the inverse-Hessian estimate positive definite.
///
/// If rounding ever makes the direction non-descending (`gᵀd ≥ 0`), the history is dropped and
/// the iteration restarts like the first one, along `−g`.
///
/// [`Step::converged`] is set when `‖g‖∞ = 0` at the start of a step (nothing is evaluated) or
/// when the step taken is negligible, `max |t·d| < 1e-12` or too small to change any value in
/// f32 (without line search this is checked
/// before moving, and nothing is evaluated either).
pub struct Lbfgs {
    config: LbfgsConfig,
    len: usize,
    /// Ring buffer, grown pair by pair up to `history`; logical pair `i` (0 = oldest) lives at
    /// `(start + i) % history`.
    pairs: Vec<Pair>,
    start: usize,
    count: usize,
    /// Two-loop coefficients, one per pair.
    alpha: Vec<f64>,
    h_diag: f64,
    /// Iterations since the start or the last restart.
    iterations: usize,
    /// The direction.
    d: Vec<f32>,
    /// The gradient at the start of the step.
    g_prev: Vec<f32>,
    /// The point at the start of the step (line search only).
    x0: Vec<f32>,
    sums: Sums,
}

/// Below this, `yᵀs` is too small for a trustworthy curvature pair (Torch7, PyTorch).
const CURVATURE_MIN: f64 = 1e-10;
/// Steps moving no pixel by more than this end the run.
const STEP_MIN: f64 = 1e-12;

/// A step moving no value by `STEP_MIN` or more (or a NaN one).
fn negligible(step: f64) -> bool {
    step.is_nan() || step < STEP_MIN
}

impl Lbfgs {
    /// An optimiser for vectors of `len` values. Allocates its working vectors (two of `len`
    /// f32, three with the line search); the history grows as pairs arrive.
    pub fn new(len: usize, config: LbfgsConfig) -> Result<Self> {
        if len == 0 {
            return Err(Error::parameter(
                "L-BFGS needs at least one value to optimise",
            ));
        }
        if config.history == 0 {
            return Err(Error::parameter("L-BFGS history must be at least 1"));
        }
        check_positive("L-BFGS learning_rate", config.learning_rate)?;
        let x0 = match config.line_search {
            LineSearch::None => Vec::new(),
            LineSearch::StrongWolfe => vec![0.0; len],
        };
        Ok(Lbfgs {
            alpha: vec![0.0; config.history],
            config,
            len,
            pairs: Vec::new(),
            start: 0,
            count: 0,
            h_diag: 1.0,
            iterations: 0,
            d: vec![0.0; len],
            g_prev: vec![0.0; len],
            x0,
            sums: Sums::new(len),
        })
    }

    /// Bytes of a full history for vectors of `len` values: `2 · history · len · 4`.
    pub fn history_bytes(len: usize, history: usize) -> usize {
        2usize
            .saturating_mul(history)
            .saturating_mul(len)
            .saturating_mul(std::mem::size_of::<f32>())
    }

    fn slot(&self, i: usize) -> usize {
        (self.start + i) % self.config.history
    }

    /// Drops the history (its buffers are kept for reuse) and restarts like the first iteration.
    fn restart(&mut self) {
        self.start = 0;
        self.count = 0;
        self.h_diag = 1.0;
        self.iterations = 0;
    }

    /// `d = −H·g` by the two-loop recursion. Each pass over the data updates one vector and
    /// computes the dot product the next pass needs.
    fn two_loop(&mut self, g: &[f32]) {
        let k = self.count;
        let (start, history) = (self.start, self.config.history);
        let Lbfgs {
            pairs,
            alpha,
            d,
            sums,
            h_diag,
            ..
        } = self;
        let pair = |i: usize| &pairs[(start + i) % history];
        negate_into(d, g);
        if k == 0 {
            let h = *h_diag as f32;
            d.par_iter_mut().for_each(|v| *v *= h);
            return;
        }
        // q = −g; for i newest → oldest: αᵢ = ρᵢ sᵢᵀq, q −= αᵢ yᵢ.
        let mut dot = sums.dot(&pair(k - 1).s, d);
        for i in (0..k).rev() {
            alpha[i] = pair(i).rho * dot;
            let next = (i > 0).then(|| pair(i - 1).s.as_slice());
            dot = sums.axpy_dot(-alpha[i], &pair(i).y, d, next);
        }
        // r = H₀ q; for i oldest → newest: βᵢ = ρᵢ yᵢᵀr, r += (αᵢ − βᵢ) sᵢ.
        dot = sums.scale_dot(*h_diag, d, &pair(0).y);
        for (i, &alpha) in alpha.iter().enumerate().take(k) {
            let beta = pair(i).rho * dot;
            let next = (i + 1 < k).then(|| pair(i + 1).y.as_slice());
            dot = sums.axpy_dot(alpha - beta, &pair(i).s, d, next);
        }
    }

    /// Stores `s = t·d`, `y = g − g_prev` if `yᵀs > 1e-10`, dropping the oldest pair when full.
    fn remember(&mut self, t: f64, g: &[f32]) {
        let tf = t as f32;
        // yᵀs and yᵀy over the f32 values that would be stored.
        let (ys, yy) = self.sums.curvature(tf, &self.d, g, &self.g_prev);
        if ys.is_nan() || ys <= CURVATURE_MIN || !yy.is_finite() {
            return;
        }
        let history = self.config.history;
        let slot = if self.count < history {
            self.slot(self.count)
        } else {
            let oldest = self.start;
            self.start = (self.start + 1) % history;
            self.count -= 1;
            oldest
        };
        if slot == self.pairs.len() {
            self.pairs.push(Pair {
                s: vec![0.0; self.len],
                y: vec![0.0; self.len],
                rho: 0.0,
            });
        }
        let pair = &mut self.pairs[slot];
        pair.rho = 1.0 / ys;
        pair.s
            .par_chunks_mut(super::CHUNK)
            .zip(pair.y.par_chunks_mut(super::CHUNK))
            .zip(g.par_chunks(super::CHUNK))
            .zip(self.g_prev.par_chunks(super::CHUNK))
            .zip(self.d.par_chunks(super::CHUNK))
            .for_each(|((((s, y), g), gp), d)| {
                for i in 0..s.len() {
                    s[i] = tf * d[i];
                    y[i] = g[i] - gp[i];
                }
            });
        self.count += 1;
        self.h_diag = ys / yy;
    }
}

impl Optimizer for Lbfgs {
    fn step(
        &mut self,
        x: &mut [f32],
        fx: &mut f64,
        gx: &mut [f32],
        eval: &mut Evaluate<'_>,
    ) -> Result<Step> {
        check_len("L-BFGS", self.len, x, gx)?;
        let g_max = max_abs(gx);
        if g_max == 0.0 {
            return Ok(Step {
                evaluations: 0,
                converged: true,
            });
        }
        let lr = self.config.learning_rate;
        // Torch7 starts with `min(1, 1/‖g‖₁)·lr`, which moves each pixel by about 1/len of a
        // grey level when ‖g‖₁ ≫ 1 — as with the paper's unnormalised losses, whose gradients
        // reach 1e6–1e9. That is below f32's resolution at pixel values near 100, so the first
        // curvature pair would be rounding noise and the second step explode. Moving the
        // steepest pixel by `lr` grey levels makes the first step meaningful at any loss scale.
        let first_step = lr / g_max as f64;

        // Direction and initial step length.
        let mut t;
        if self.iterations == 0 {
            negate_into(&mut self.d, gx);
            t = first_step;
        } else {
            self.two_loop(gx);
            t = lr;
        }
        let mut gtd = self.sums.dot(gx, &self.d);
        if gtd.is_nan() || gtd >= 0.0 {
            // Not a descent direction (rounding in f32): forget the history, go along −g.
            self.restart();
            negate_into(&mut self.d, gx);
            t = first_step;
            gtd = self.sums.dot(gx, &self.d);
        }

        self.g_prev.copy_from_slice(gx);
        let d_max = max_abs(&self.d) as f64;
        let evaluations;
        match self.config.line_search {
            LineSearch::None => {
                if negligible(t * d_max) {
                    return Ok(Step {
                        evaluations: 0,
                        converged: true,
                    });
                }
                let tf = t as f32;
                let moved = x
                    .par_chunks_mut(super::CHUNK)
                    .zip(self.d.par_chunks(super::CHUNK))
                    .map(|(x, d)| {
                        let mut moved = false;
                        for (x, &d) in x.iter_mut().zip(d) {
                            let new = *x + tf * d;
                            moved |= new != *x;
                            *x = new;
                        }
                        moved
                    })
                    .reduce(|| false, |a, b| a || b);
                if !moved {
                    // Below f32's resolution everywhere: x, fx and gx are as they were, and
                    // every later step would be the same.
                    return Ok(Step {
                        evaluations: 0,
                        converged: true,
                    });
                }
                *fx = eval(x, gx)?;
                evaluations = 1;
            }
            LineSearch::StrongWolfe => {
                self.x0.copy_from_slice(x);
                let accepted =
                    strong_wolfe(x, gx, &self.x0, &self.d, *fx, gtd, t, eval, &mut self.sums)?;
                t = accepted.t;
                *fx = accepted.f;
                evaluations = accepted.evaluations;
            }
        }
        self.iterations += 1;
        let converged = negligible(t * d_max);
        if !converged {
            self.remember(t, gx);
        }
        Ok(Step {
            evaluations,
            converged,
        })
    }

    fn name(&self) -> &'static str {
        "L-BFGS"
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{assert_refused, rosenbrock, run, Quadratic};
    use super::*;

    fn lbfgs(len: usize, history: usize, line_search: LineSearch) -> Lbfgs {
        let config = LbfgsConfig {
            history,
            line_search,
            ..LbfgsConfig::default()
        };
        Lbfgs::new(len, config).unwrap()
    }

    /// Iterations to reach ‖x − c‖∞ < 1e-3 on the ill-conditioned quadratic, n = 1000, from 0.
    fn quadratic_iterations(opt: &mut Lbfgs, limit: usize) -> (usize, f64) {
        let q = Quadratic::new(1000);
        let r = run(
            opt,
            vec![0.0; 1000],
            limit,
            &mut |x, g| q.eval(x, g),
            &|x| q.error(x) < 1e-3,
        );
        (r.steps.len(), q.error(&r.x))
    }

    #[test]
    fn quadratic_converges_without_line_search_one_evaluation_per_iteration() {
        let mut opt = lbfgs(1000, 100, LineSearch::None);
        let q = Quadratic::new(1000);
        let r = run(
            &mut opt,
            vec![0.0; 1000],
            100,
            &mut |x, g| q.eval(x, g),
            &|x| q.error(x) < 1e-3,
        );
        let error = q.error(&r.x);
        eprintln!(
            "no line search: {} iterations, error {error:e}",
            r.steps.len()
        );
        assert!(
            error < 1e-3,
            "error {error} after {} iterations",
            r.steps.len()
        );
        assert!(r.steps.iter().all(|s| s.evaluations == 1 && !s.converged));
    }

    #[test]
    fn quadratic_converges_with_strong_wolfe() {
        let mut opt = lbfgs(1000, 100, LineSearch::StrongWolfe);
        let (iterations, error) = quadratic_iterations(&mut opt, 100);
        eprintln!("strong Wolfe: {iterations} iterations, error {error:e}");
        assert!(error < 1e-3, "error {error} after {iterations} iterations");
    }

    #[test]
    fn rosenbrock_with_strong_wolfe_decreases_and_never_rises() {
        let mut opt = lbfgs(2, 100, LineSearch::StrongWolfe);
        let x0 = vec![-1.2f32, 1.0];
        let f0 = rosenbrock(&x0, &mut [0.0; 2]);
        let r = run(&mut opt, x0, 100, &mut rosenbrock, &|_| false);
        let hit = r.values.iter().position(|&f| f < f0 / 1e3);
        let evaluations: usize = r.steps.iter().map(|s| s.evaluations).sum();
        eprintln!(
            "Rosenbrock: f {} after {} iterations, {evaluations} evaluations, 1e3× at {hit:?}",
            r.fx,
            r.steps.len()
        );
        assert!(
            matches!(hit, Some(i) if i < 50),
            "f {} after 50 iterations",
            r.fx
        );
        let mut previous = f0;
        for &f in &r.values {
            assert!(
                f <= previous,
                "the line search let f rise: {previous} → {f}"
            );
            previous = f;
        }
    }

    #[test]
    fn history_is_a_ring_buffer_of_the_newest_pairs() {
        let mut opt = lbfgs(1000, 3, LineSearch::None);
        let q = Quadratic::new(1000);
        let mut x = vec![0.0f32; 1000];
        let mut g = vec![0.0f32; 1000];
        let mut fx = q.eval(&x, &mut g);
        let mut eval = |x: &[f32], g: &mut [f32]| Ok(q.eval(x, g));
        for _ in 0..10 {
            opt.step(&mut x, &mut fx, &mut g, &mut eval).unwrap();
        }
        assert_eq!((opt.count, opt.pairs.len()), (3, 3));
        // The newest pair is s = x₁₀ − x₉ (up to rounding) and is the logical last one.
        let newest = &opt.pairs[opt.slot(2)];
        let s_norm: f64 = newest.s.iter().map(|v| (*v as f64).powi(2)).sum();
        assert!(s_norm > 0.0 && newest.rho > 0.0);

        let mut opt = lbfgs(1000, 3, LineSearch::None);
        let (iterations, error) = quadratic_iterations(&mut opt, 300);
        eprintln!("history 3: {iterations} iterations, error {error:e}");
        assert!(
            error < 1e-3,
            "history 3: error {error} after {iterations} iterations"
        );
    }

    #[test]
    fn a_gradient_pointing_the_wrong_way_once_does_not_derail() {
        for line_search in [LineSearch::None, LineSearch::StrongWolfe] {
            let mut opt = lbfgs(1000, 10, line_search);
            let q = Quadratic::new(1000);
            let mut calls = 0;
            let mut lying = |x: &[f32], g: &mut [f32]| {
                calls += 1;
                let f = q.eval(x, g);
                if calls == 6 {
                    g.iter_mut().for_each(|g| *g = -*g);
                }
                f
            };
            let mut x = vec![0.0f32; 1000];
            let mut g = vec![0.0f32; 1000];
            let mut fx = lying(&x, &mut g);
            let mut eval = |x: &[f32], g: &mut [f32]| Ok(lying(x, g));
            for _ in 0..300 {
                let step = opt.step(&mut x, &mut fx, &mut g, &mut eval).unwrap();
                assert!(fx.is_finite() && x.iter().chain(&g).all(|v| v.is_finite()));
                if step.converged || q.error(&x) < 1e-3 {
                    break;
                }
            }
            let error = q.error(&x);
            assert!(error < 1e-3, "{line_search:?}: error {error}");
        }
    }

    #[test]
    fn a_non_descent_direction_restarts_along_the_negative_gradient() {
        let mut opt = lbfgs(2, 5, LineSearch::None);
        // A pair with negative curvature makes H indefinite: for g = (1, 0) the two-loop
        // recursion gives d = (1, 0), uphill.
        opt.pairs.push(Pair {
            s: vec![1.0, 0.0],
            y: vec![-1.0, 0.0],
            rho: -1.0,
        });
        opt.count = 1;
        opt.iterations = 1;
        opt.two_loop(&[1.0, 0.0]);
        assert_eq!(opt.d, vec![1.0, 0.0]);

        let mut x = vec![0.0f32, 0.0];
        let mut g = vec![1.0f32, 0.0];
        let mut fx = 0.0;
        let mut eval = |x: &[f32], g: &mut [f32]| {
            g.copy_from_slice(&[1.0, 0.0]);
            Ok(x[0] as f64)
        };
        let step = opt.step(&mut x, &mut fx, &mut g, &mut eval).unwrap();
        assert_eq!(step.evaluations, 1);
        // Restarted: first-iteration step lr/‖g‖∞ = 1 along −g, no pair (y = 0).
        assert_eq!(x, vec![-1.0, 0.0]);
        assert_eq!(fx, -1.0);
        assert_eq!(opt.count, 0);
        assert_eq!(opt.iterations, 1);
    }

    #[test]
    fn zero_gradient_or_negligible_step_converges_without_evaluating() {
        let mut opt = lbfgs(3, 5, LineSearch::None);
        let mut x = vec![1.0f32; 3];
        let mut g = vec![0.0f32; 3];
        let mut fx = 0.0;
        let mut eval = |_: &[f32], _: &mut [f32]| -> crate::Result<f64> { unreachable!() };
        let step = opt.step(&mut x, &mut fx, &mut g, &mut eval).unwrap();
        assert_eq!(
            step,
            Step {
                evaluations: 0,
                converged: true
            }
        );
        // A first step of lr = 1e-8 cannot change values near 1 in f32.
        let mut opt = Lbfgs::new(
            3,
            LbfgsConfig {
                learning_rate: 1e-8,
                line_search: LineSearch::None,
                ..LbfgsConfig::default()
            },
        )
        .unwrap();
        g[0] = 1e-3;
        let step = opt.step(&mut x, &mut fx, &mut g, &mut eval).unwrap();
        assert!(step.converged && step.evaluations == 0);
        assert_eq!(x, vec![1.0f32; 3]);
        // The same step from 0 does move.
        let mut x0 = vec![0.0f32; 3];
        let mut eval = |x: &[f32], g: &mut [f32]| -> crate::Result<f64> {
            g.fill(1e-3);
            Ok(x[0] as f64)
        };
        let step = opt.step(&mut x0, &mut fx, &mut g, &mut eval).unwrap();
        assert!(!step.converged && step.evaluations == 1, "{step:?}");
    }

    #[test]
    fn settings_are_validated() {
        let bad = |config: LbfgsConfig, name: &str| assert_refused(Lbfgs::new(10, config), name);
        let ok = LbfgsConfig::default();
        bad(
            LbfgsConfig {
                history: 0,
                ..ok.clone()
            },
            "history",
        );
        for lr in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            bad(
                LbfgsConfig {
                    learning_rate: lr,
                    ..ok.clone()
                },
                "learning_rate",
            );
        }
        assert!(Lbfgs::new(0, ok.clone()).is_err());
        let mut opt = Lbfgs::new(10, ok).unwrap();
        let mut eval = |_: &[f32], _: &mut [f32]| Ok(0.0);
        let r = opt.step(&mut [0.0; 9], &mut 0.0, &mut [1.0; 9], &mut eval);
        assert_eq!(r.err().map(|e| e.kind()), Some(crate::ErrorKind::Parameter));
    }

    #[test]
    fn history_bytes_counts_two_f32_vectors_per_pair() {
        assert_eq!(Lbfgs::history_bytes(1000, 100), 800_000);
        assert_eq!(Lbfgs::history_bytes(usize::MAX, 2), usize::MAX);
    }
}
