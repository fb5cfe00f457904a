//! Which pixels of a warped frame can be trusted: Ruder, Dosovitskiy & Brox (2016), section 3.2.

use super::warp::{inside, sample};
use super::Flow;
use crate::{Error, Result};

/// Per-pixel weights c ∈ {0, 1} for the current frame: 1 where the previous frame, warped by
/// `backward`, shows the same scene point, 0 where it cannot.
///
/// `forward` is the flow from the previous frame to the current one, `backward` the flow from
/// the current frame to the previous one (the one that warps the previous frame onto this
/// one; see [`Flow`] for the convention). A pixel gets 0 when
/// - its backward flow points outside the previous frame (content that entered at a border);
/// - the flows disagree (a disocclusion): with w̃(p) = w(p + ŵ(p)), the forward flow read where
///   the backward flow points, `|w̃ + ŵ|² > 0.01 (|w̃|² + |ŵ|²) + 0.5`;
/// - it lies on a motion boundary: `|∇û|² + |∇v̂|² > 0.01 |ŵ|² + 0.002`.
///
/// The thresholds are the paper's.
pub fn reliability(forward: &Flow, backward: &Flow) -> Result<Vec<f32>> {
    if (forward.width, forward.height) != (backward.width, backward.height) {
        return Err(Error::parameter(format!(
            "the forward flow is {}×{} but the backward flow {}×{}",
            forward.width, forward.height, backward.width, backward.height
        )));
    }
    let (w, h) = (backward.width, backward.height);
    let dims = (w, h, 1);
    let mut c = vec![1.0; w * h];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let (bu, bv) = (backward.u[i], backward.v[i]);
            let (sx, sy) = (x as f32 + bu, y as f32 + bv);
            if !inside(w, h, sx, sy) {
                c[i] = 0.0;
                continue;
            }
            let (fu, fv) = (
                sample(&forward.u, dims, 0, sx, sy),
                sample(&forward.v, dims, 0, sx, sy),
            );
            let disagreement = (fu + bu).powi(2) + (fv + bv).powi(2);
            let magnitudes = fu * fu + fv * fv + bu * bu + bv * bv;
            if disagreement > 0.01 * magnitudes + 0.5 {
                c[i] = 0.0;
                continue;
            }
            let gradient =
                gradient_norm2(&backward.u, w, h, x, y) + gradient_norm2(&backward.v, w, h, x, y);
            if gradient > 0.01 * (bu * bu + bv * bv) + 0.002 {
                c[i] = 0.0;
            }
        }
    }
    Ok(c)
}

/// `|∇f|²` at a pixel by central differences (one-sided at the border).
fn gradient_norm2(f: &[f32], w: usize, h: usize, x: usize, y: usize) -> f32 {
    let (xl, xr) = (x.saturating_sub(1), (x + 1).min(w - 1));
    let (yu, yd) = (y.saturating_sub(1), (y + 1).min(h - 1));
    let dx = (f[y * w + xr] - f[y * w + xl]) / (xr - xl).max(1) as f32;
    let dy = (f[yd * w + x] - f[yu * w + x]) / (yd - yu).max(1) as f32;
    dx * dx + dy * dy
}
