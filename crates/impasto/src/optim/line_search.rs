//! Strong-Wolfe line search, following PyTorch's `torch.optim.lbfgs._strong_wolfe` (itself a
//! port of Torch7's `lswolfe.lua`): bracketing with safeguarded cubic interpolation, then zoom.
//!
//! Differences from PyTorch, all for this crate's contract and memory budget:
//! - gradients at bracket points are not kept (each would be an image-sized copy); instead, when
//!   the accepted point is not the last one evaluated, it is evaluated once more, so that the
//!   last evaluation is at the returned point;
//! - a non-finite value or slope at a trial point counts as "too far" (Armijo fails) and a
//!   non-finite interpolation falls back to bisection, so no NaN step is ever taken.

use super::{set_along, Evaluate, Sums};

/// Sufficient decrease (Armijo) constant.
pub(super) const C1: f64 = 1e-4;
/// Curvature constant of the strong Wolfe condition.
pub(super) const C2: f64 = 0.9;
/// Stop zooming when the bracket moves the image by less than this (max over pixels).
const TOLERANCE_CHANGE: f64 = 1e-9;
/// Line-search iterations after the first trial (so at most 26 evaluations, plus one to return
/// to the accepted point when it was not the last evaluated).
pub(super) const MAX_ITERATIONS: usize = 25;

/// The accepted step: `x = x0 + t·d`, with value `f`, after `evaluations` evaluations.
pub(super) struct Accepted {
    pub t: f64,
    pub f: f64,
    pub evaluations: usize,
}

/// Minimiser of the cubic through `(x1, f1, g1)` and `(x2, f2, g2)`, clamped to `bounds` (default:
/// between the two points); the middle of the bounds when the cubic has no minimiser.
pub(super) fn cubic_interpolate(
    (x1, f1, g1): (f64, f64, f64),
    (x2, f2, g2): (f64, f64, f64),
    bounds: Option<(f64, f64)>,
) -> f64 {
    let (lo, hi) = bounds.unwrap_or(if x1 <= x2 { (x1, x2) } else { (x2, x1) });
    let d1 = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2);
    let d2_square = d1 * d1 - g1 * g2;
    let middle = (lo + hi) / 2.0;
    if d2_square >= 0.0 {
        let d2 = d2_square.sqrt();
        let min_pos = if x1 <= x2 {
            x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2.0 * d2))
        } else {
            x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2.0 * d2))
        };
        if min_pos.is_finite() {
            return min_pos.max(lo).min(hi);
        }
    }
    middle
}

/// Searches `x = x0 + t·d` from `t` for a point satisfying the strong Wolfe conditions, given
/// `f0 = f(x0)` and the directional derivative `gtd0 = ∇f(x0)ᵀd < 0`. Evaluates into `x` and
/// `g`; on return `x`, `g` are at the accepted point and the last evaluation was there.
#[allow(clippy::too_many_arguments)]
pub(super) fn strong_wolfe(
    x: &mut [f32],
    g: &mut [f32],
    x0: &[f32],
    d: &[f32],
    f0: f64,
    gtd0: f64,
    mut t: f64,
    eval: &mut Evaluate<'_>,
    sums: &mut Sums,
) -> crate::Result<Accepted> {
    let d_norm = super::max_abs(d) as f64;
    let mut line = Line {
        x0,
        d,
        eval,
        sums,
        evaluations: 0,
        last_t: f64::NAN,
    };
    let armijo_fails = |t: f64, f: f64| f.is_nan() || f > f0 + C1 * t * gtd0;
    let curvature_holds = |gtd: f64| gtd.abs() <= -C2 * gtd0;

    let (mut f_new, mut gtd_new) = line.probe(x, g, t)?;

    // Bracketing: (t, f, gtd) at the two ends; `done` when `t` already satisfies the conditions.
    let (mut t_prev, mut f_prev, mut gtd_prev) = (0.0, f0, gtd0);
    let mut done = false;
    let mut iteration = 0;
    let mut bracket: [(f64, f64, f64); 2] = [(0.0, f0, gtd0), (t, f_new, gtd_new)];
    let mut bracketed = false;
    while iteration < MAX_ITERATIONS {
        if armijo_fails(t, f_new) || (iteration > 1 && f_new >= f_prev) || gtd_new >= 0.0 {
            bracket = [(t_prev, f_prev, gtd_prev), (t, f_new, gtd_new)];
            bracketed = true;
            break;
        }
        if curvature_holds(gtd_new) {
            bracket = [(t, f_new, gtd_new), (t, f_new, gtd_new)];
            done = true;
            break;
        }
        // Extrapolate: somewhere in [t + 0.01·(t − t_prev), 10·t].
        let bounds = (t + 0.01 * (t - t_prev), t * 10.0);
        let next = cubic_interpolate(
            (t_prev, f_prev, gtd_prev),
            (t, f_new, gtd_new),
            Some(bounds),
        );
        (t_prev, f_prev, gtd_prev) = (t, f_new, gtd_new);
        t = next;
        (f_new, gtd_new) = line.probe(x, g, t)?;
        iteration += 1;
    }
    if !bracketed && !done {
        // Out of iterations while still extrapolating.
        bracket = [(0.0, f0, gtd0), (t, f_new, gtd_new)];
    }

    // Zoom: shrink the bracket until a point satisfies the conditions.
    let low_of = |b: &[(f64, f64, f64); 2]| usize::from(b[1].1 < b[0].1);
    let mut low = low_of(&bracket);
    let mut insufficient_progress = false;
    while !done && iteration < MAX_ITERATIONS {
        let (lo_t, hi_t) = (
            bracket[0].0.min(bracket[1].0),
            bracket[0].0.max(bracket[1].0),
        );
        if (hi_t - lo_t) * d_norm < TOLERANCE_CHANGE {
            break;
        }
        t = cubic_interpolate(bracket[0], bracket[1], None);
        // Keep trial points at least 10% of the bracket away from its ends when progress stalls.
        let eps = 0.1 * (hi_t - lo_t);
        if (hi_t - t).min(t - lo_t) < eps {
            if insufficient_progress || t >= hi_t || t <= lo_t {
                t = if (t - hi_t).abs() < (t - lo_t).abs() {
                    hi_t - eps
                } else {
                    lo_t + eps
                };
                insufficient_progress = false;
            } else {
                insufficient_progress = true;
            }
        } else {
            insufficient_progress = false;
        }

        (f_new, gtd_new) = line.probe(x, g, t)?;
        iteration += 1;

        let high = 1 - low;
        if armijo_fails(t, f_new) || f_new >= bracket[low].1 {
            bracket[high] = (t, f_new, gtd_new);
            low = low_of(&bracket);
        } else {
            if curvature_holds(gtd_new) {
                done = true;
            } else if gtd_new * (bracket[high].0 - bracket[low].0) >= 0.0 {
                bracket[high] = bracket[low];
            }
            bracket[low] = (t, f_new, gtd_new);
        }
    }

    let (t, mut f, _) = bracket[low];
    if t.to_bits() != line.last_t.to_bits() {
        // The accepted point was evaluated earlier (or is x0): evaluate it again so that the
        // last evaluation is at the returned point. Same formula, so the same x bit for bit.
        (f, _) = line.probe(x, g, t)?;
    }
    Ok(Accepted {
        t,
        f,
        evaluations: line.evaluations,
    })
}

/// Evaluations along `x0 + t·d`, counted, remembering the last `t`.
struct Line<'l, 'e> {
    x0: &'l [f32],
    d: &'l [f32],
    eval: &'l mut Evaluate<'e>,
    sums: &'l mut Sums,
    evaluations: usize,
    last_t: f64,
}

impl Line<'_, '_> {
    /// `(f, ∇fᵀd)` at `x0 + t·d`, written into `x`, `g`; a non-finite point reads as `(∞, NaN)`,
    /// infinitely high, so the Armijo condition fails there.
    fn probe(&mut self, x: &mut [f32], g: &mut [f32], t: f64) -> crate::Result<(f64, f64)> {
        set_along(x, self.x0, t, self.d);
        let f = (self.eval)(x, g)?;
        self.evaluations += 1;
        self.last_t = t;
        let gtd = self.sums.dot(g, self.d);
        if f.is_finite() && gtd.is_finite() {
            Ok((f, gtd))
        } else {
            Ok((f64::INFINITY, f64::NAN))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cubic_interpolation_finds_the_minimum_of_a_cubic_and_clamps() {
        // f(t) = (t − 2)² has slope −4 at 0 and 2 at 3: the cubic through them is the parabola.
        let t = cubic_interpolate((0.0, 4.0, -4.0), (3.0, 1.0, 2.0), None);
        assert!((t - 2.0).abs() < 1e-12, "{t}");
        // Same in the other order.
        let t = cubic_interpolate((3.0, 1.0, 2.0), (0.0, 4.0, -4.0), None);
        assert!((t - 2.0).abs() < 1e-12, "{t}");
        // Clamped to the bounds.
        let t = cubic_interpolate((0.0, 4.0, -4.0), (3.0, 1.0, 2.0), Some((2.5, 5.0)));
        assert_eq!(t, 2.5);
        // No real minimiser (d2² < 0): the middle of the interval.
        let t = cubic_interpolate((0.0, 0.0, 1.0), (1.0, 2.0 / 3.0, 1.0), None);
        assert_eq!(t, 0.5);
    }

    /// f(x) = Σ aᵢ(xᵢ − 1)² / 2 from x = 0 along −g, starting far too long or far too short: the
    /// accepted step satisfies both strong Wolfe conditions and is where x, g were left.
    #[test]
    fn accepted_step_satisfies_strong_wolfe_and_is_the_last_evaluated() {
        let a = [1.0f32, 10.0, 100.0];
        let value = |x: &[f32], g: &mut [f32]| {
            let mut f = 0.0;
            for i in 0..3 {
                let r = x[i] as f64 - 1.0;
                f += 0.5 * a[i] as f64 * r * r;
                g[i] = (a[i] as f64 * r) as f32;
            }
            f
        };
        for t0 in [1e-6, 1.0, 1e3] {
            let x0 = [0.0f32; 3];
            let mut g0 = [0.0f32; 3];
            let f0 = value(&x0, &mut g0);
            let d: Vec<f32> = g0.iter().map(|g| -g).collect();
            let mut sums = Sums::new(3);
            let gtd0 = sums.dot(&g0, &d);
            let (mut x, mut g) = ([0.0f32; 3], [0.0f32; 3]);
            let mut last: Vec<f32> = Vec::new();
            let mut calls = 0;
            let mut eval = |x: &[f32], g: &mut [f32]| {
                calls += 1;
                last = x.to_vec();
                Ok(value(x, g))
            };
            let r =
                strong_wolfe(&mut x, &mut g, &x0, &d, f0, gtd0, t0, &mut eval, &mut sums).unwrap();
            assert_eq!(r.evaluations, calls);
            assert_eq!(last, x.to_vec(), "t0 {t0}: last evaluation not at x");
            let mut g_fresh = [0.0f32; 3];
            assert_eq!(r.f, value(&x, &mut g_fresh));
            assert_eq!(g, g_fresh);
            let gtd = sums.dot(&g, &d);
            assert!(
                r.f <= f0 + C1 * r.t * gtd0,
                "t0 {t0}: Armijo fails at t {}",
                r.t
            );
            assert!(
                gtd.abs() <= -C2 * gtd0,
                "t0 {t0}: curvature fails at t {}",
                r.t
            );
        }
    }

    #[test]
    fn when_no_trial_is_accepted_the_start_is_evaluated_last() {
        // The slope at 0 claims descent, but every t > 0 is higher: the search ends at t = 0,
        // which it must evaluate again so that the last evaluation is at the returned point.
        let mut last = f32::NAN;
        let mut eval = |x: &[f32], g: &mut [f32]| {
            last = x[0];
            g[0] = 1.0;
            Ok(if x[0] == 0.0 { 0.0 } else { 1.0 + x[0] as f64 })
        };
        let (mut x, mut g) = ([5.0f32], [0.0f32]);
        let mut sums = Sums::new(1);
        let r = strong_wolfe(
            &mut x,
            &mut g,
            &[0.0],
            &[1.0],
            0.0,
            -1.0,
            1.0,
            &mut eval,
            &mut sums,
        )
        .unwrap();
        assert_eq!((r.t, r.f, x[0], last), (0.0, 0.0, 0.0, 0.0));
        assert!(r.evaluations >= 2);
    }

    #[test]
    fn non_finite_values_are_backed_away_from() {
        // f is infinite beyond t = 2 along d; its minimum along d is at t = 1.
        let x0 = [0.0f32];
        let d = [1.0f32];
        let mut eval = |x: &[f32], g: &mut [f32]| {
            if x[0] > 2.0 {
                g[0] = f32::NAN;
                Ok(f64::INFINITY)
            } else {
                let r = x[0] as f64 - 1.0;
                g[0] = r as f32;
                Ok(0.5 * r * r)
            }
        };
        let (mut x, mut g) = ([0.0f32], [0.0f32]);
        let mut sums = Sums::new(1);
        let r = strong_wolfe(
            &mut x, &mut g, &x0, &d, 0.5, -1.0, 100.0, &mut eval, &mut sums,
        )
        .unwrap();
        assert!(r.f.is_finite() && x[0].is_finite() && g[0].is_finite());
        assert!(r.f < 0.5, "no decrease: {}", r.f);
    }
}
