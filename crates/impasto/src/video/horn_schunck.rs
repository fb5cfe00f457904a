//! Horn–Schunck optical flow, coarse to fine with repeated warping (as in Brox et al. 2004 and
//! Sun, Roth & Black 2010, without their robust penalties): large motions are found on small
//! copies of the frames, then refined level by level, each time linearising the brightness
//! constancy around the current flow.

use super::flow::{check_same_size, Gray};
use super::warp::{inside, sample};
use super::{Flow, OpticalFlow};
use crate::image_io::Image;
use crate::Result;

/// Dense optical flow by Horn & Schunck's method on an image pyramid, in pure Rust.
///
/// Good enough for style transfer's needs (warping a stylised frame onto the next, with
/// unreliable pixels masked out by [`reliability`](super::reliability)): on textured synthetic
/// pans it is accurate to about a tenth of a pixel. It has no robust penalty, so it smooths flow
/// across motion boundaries; the consistency check is what catches those.
#[derive(Clone, Debug, PartialEq)]
pub struct HornSchunck {
    /// Smoothness weight (on 0–1 intensities): larger gives smoother flow.
    pub alpha: f32,
    /// Re-linearisations (warps) per pyramid level.
    pub warps: usize,
    /// Gauss–Seidel sweeps per warp.
    pub iterations: usize,
    /// Levels stop before either side gets shorter than this.
    pub min_side: usize,
    /// Each frame is blurred with a Gaussian of this σ (px) before anything else: the
    /// linearisation needs smooth images.
    pub presmooth: f32,
    /// σ (px of the finer level) of the blur before each halving, against aliasing.
    pub pyramid_sigma: f32,
}

impl Default for HornSchunck {
    fn default() -> Self {
        HornSchunck {
            alpha: 0.1,
            warps: 3,
            iterations: 60,
            min_side: 6,
            presmooth: 1.0,
            pyramid_sigma: 1.0,
        }
    }
}

impl OpticalFlow for HornSchunck {
    fn flow(&self, a: &Image, b: &Image) -> Result<Flow> {
        check_same_size(a, b)?;
        let a = blur(&Gray::from_image(a), self.presmooth);
        let b = blur(&Gray::from_image(b), self.presmooth);
        let pyramid_a = pyramid(a, self.min_side, self.pyramid_sigma);
        let pyramid_b = pyramid(b, self.min_side, self.pyramid_sigma);
        let coarsest = &pyramid_a[pyramid_a.len() - 1];
        let mut flow = Flow::zero(coarsest.width, coarsest.height);
        for (level, (a, b)) in pyramid_a.iter().zip(&pyramid_b).enumerate().rev() {
            if level + 1 < pyramid_a.len() {
                flow = upsample(&flow, a.width, a.height);
            }
            for _ in 0..self.warps {
                self.refine(a, b, &mut flow);
            }
        }
        Ok(flow)
    }
}

impl HornSchunck {
    /// One warp: linearise `b(p + w) ≈ a(p)` around the current flow and solve the
    /// Horn–Schunck equations for the whole flow by Gauss–Seidel sweeps.
    fn refine(&self, a: &Gray, b: &Gray, flow: &mut Flow) {
        let (w, h) = (a.width, a.height);
        let n = w * h;
        let (mut ix, mut iy, mut it) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        let dims = (w, h, 1);
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                let (sx, sy) = (x as f32 + flow.u[i], y as f32 + flow.v[i]);
                // Where the flow leaves the frame there is nothing to compare: no data term,
                // the smoothness term fills the flow in.
                if !inside(w, h, sx, sy) {
                    continue;
                }
                let bx = 0.5
                    * (sample(&b.data, dims, 0, sx + 1.0, sy)
                        - sample(&b.data, dims, 0, sx - 1.0, sy));
                let by = 0.5
                    * (sample(&b.data, dims, 0, sx, sy + 1.0)
                        - sample(&b.data, dims, 0, sx, sy - 1.0));
                let (xl, xr) = (x.saturating_sub(1), (x + 1).min(w - 1));
                let (yu, yd) = (y.saturating_sub(1), (y + 1).min(h - 1));
                let ax = (a.at(xr, y) - a.at(xl, y)) / (xr - xl).max(1) as f32;
                let ay = (a.at(x, yd) - a.at(x, yu)) / (yd - yu).max(1) as f32;
                ix[i] = 0.5 * (ax + bx);
                iy[i] = 0.5 * (ay + by);
                it[i] = sample(&b.data, dims, 0, sx, sy) - a.data[i];
            }
        }
        let (u0, v0) = (flow.u.clone(), flow.v.clone());
        let alpha2 = self.alpha * self.alpha;
        for _ in 0..self.iterations {
            for y in 0..h {
                for x in 0..w {
                    let i = y * w + x;
                    let (ub, vb) = neighbour_mean(flow, x, y);
                    // Minimises (Ix·(u − u0) + Iy·(v − v0) + It)² + α²·4·((u − ū)² + (v − v̄)²)
                    // in (u, v) with the neighbours fixed.
                    let r = ix[i] * (ub - u0[i]) + iy[i] * (vb - v0[i]) + it[i];
                    let d = 4.0 * alpha2 + ix[i] * ix[i] + iy[i] * iy[i];
                    flow.u[i] = ub - ix[i] * r / d;
                    flow.v[i] = vb - iy[i] * r / d;
                }
            }
        }
    }
}

/// The mean of a pixel's four neighbours' flow (those inside the frame).
#[inline]
fn neighbour_mean(flow: &Flow, x: usize, y: usize) -> (f32, f32) {
    let w = flow.width;
    let (mut su, mut sv, mut k) = (0.0, 0.0, 0.0);
    let mut add = |j: usize| {
        su += flow.u[j];
        sv += flow.v[j];
        k += 1.0;
    };
    let i = y * w + x;
    if x > 0 {
        add(i - 1);
    }
    if x + 1 < w {
        add(i + 1);
    }
    if y > 0 {
        add(i - w);
    }
    if y + 1 < flow.height {
        add(i + w);
    }
    if k == 0.0 {
        (flow.u[i], flow.v[i])
    } else {
        (su / k, sv / k)
    }
}

/// The frame at full size, then halved (blurred first) until a side would be under `min_side`.
fn pyramid(frame: Gray, min_side: usize, sigma: f32) -> Vec<Gray> {
    let mut levels = vec![frame];
    loop {
        let last = &levels[levels.len() - 1];
        if last.width / 2 < min_side.max(2) || last.height / 2 < min_side.max(2) {
            return levels;
        }
        let half = halve(&blur(last, sigma));
        levels.push(half);
    }
}

/// Every other pixel's 2×2 block mean (the frame is already blurred).
fn halve(frame: &Gray) -> Gray {
    let (w, h) = (frame.width / 2, frame.height / 2);
    let mut data = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            let s = frame.at(2 * x, 2 * y)
                + frame.at(2 * x + 1, 2 * y)
                + frame.at(2 * x, 2 * y + 1)
                + frame.at(2 * x + 1, 2 * y + 1);
            data.push(s / 4.0);
        }
    }
    Gray {
        width: w,
        height: h,
        data,
    }
}

/// A coarser level's flow on a finer level's grid: bilinear, displacements scaled with the size.
fn upsample(flow: &Flow, width: usize, height: usize) -> Flow {
    let (sx, sy) = (
        flow.width as f32 / width as f32,
        flow.height as f32 / height as f32,
    );
    let dims = (flow.width, flow.height, 1);
    let mut out = Flow::zero(width, height);
    for y in 0..height {
        for x in 0..width {
            let (cx, cy) = ((x as f32 + 0.5) * sx - 0.5, (y as f32 + 0.5) * sy - 0.5);
            let i = y * width + x;
            out.u[i] = sample(&flow.u, dims, 0, cx, cy) / sx;
            out.v[i] = sample(&flow.v, dims, 0, cx, cy) / sy;
        }
    }
    out
}

/// Separable Gaussian blur with clamped borders; σ ≤ 0 leaves the frame as it is.
pub(crate) fn blur(frame: &Gray, sigma: f32) -> Gray {
    if sigma <= 0.0 {
        return frame.clone();
    }
    let radius = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f32> = (-radius..=radius)
        .map(|d| (-(d * d) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
    let (w, h) = (frame.width, frame.height);
    let pass = |src: &[f32], horizontal: bool| -> Vec<f32> {
        let mut out = vec![0.0; w * h];
        for y in 0..h {
            for x in 0..w {
                let mut s = 0.0;
                for (k, d) in kernel.iter().zip(-radius..=radius) {
                    let (xx, yy) = if horizontal {
                        ((x as isize + d).clamp(0, w as isize - 1) as usize, y)
                    } else {
                        (x, (y as isize + d).clamp(0, h as isize - 1) as usize)
                    };
                    s += k * src[yy * w + xx];
                }
                out[y * w + x] = s;
            }
        }
        out
    };
    let data = pass(&pass(&frame.data, true), false);
    Gray {
        width: w,
        height: h,
        data,
    }
}
