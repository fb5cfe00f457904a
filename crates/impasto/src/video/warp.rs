//! Backward warping: an image resampled (bilinearly) at the positions a flow points to.

use super::Flow;
use crate::image_io::Image;
use crate::{Error, Result};

/// Bilinear sample of channel `c` (of `channels`) of a row-major image at `(x, y)`, with
/// positions outside the image clamped to its border (the nearest edge pixel's value).
#[inline]
pub(crate) fn sample(
    data: &[f32],
    (width, height, channels): (usize, usize, usize),
    c: usize,
    x: f32,
    y: f32,
) -> f32 {
    let x = x.clamp(0.0, (width - 1) as f32);
    let y = y.clamp(0.0, (height - 1) as f32);
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(width - 1), (y0 + 1).min(height - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let at = |xx: usize, yy: usize| data[(yy * width + xx) * channels + c];
    let top = at(x0, y0) + fx * (at(x1, y0) - at(x0, y0));
    let bottom = at(x0, y1) + fx * (at(x1, y1) - at(x0, y1));
    top + fy * (bottom - top)
}

/// Whether `p + w(p)` lies inside the frame (the flow points at something the other frame shows).
#[inline]
pub(crate) fn inside(width: usize, height: usize, x: f32, y: f32) -> bool {
    x >= 0.0 && y >= 0.0 && x <= (width - 1) as f32 && y <= (height - 1) as f32
}

/// `image` warped by `flow`: `out(p) = image(p + w(p))`, bilinear, positions outside the image
/// clamped to its border. With `flow` from frame `a` to frame `b` (see [`Flow`]), warping `b`
/// gives an estimate of `a`; Ruder et al.'s ω warps the previous stylised frame with the flow
/// from the current frame to the previous one. Alpha, if any, is warped too.
pub fn warp(image: &Image, flow: &Flow) -> Result<Image> {
    if (image.width, image.height) != (flow.width, flow.height) {
        return Err(Error::parameter(format!(
            "cannot warp a {}×{} image by a {}×{} flow",
            image.width, image.height, flow.width, flow.height
        )));
    }
    let rgb = warp_channels(&image.rgb, 3, flow);
    let alpha = image.alpha.as_ref().map(|a| warp_channels(a, 1, flow));
    Image::new(image.width, image.height, rgb, alpha)
}

/// `data` (`channels` interleaved) warped by `flow`; sizes already checked.
pub(crate) fn warp_channels(data: &[f32], channels: usize, flow: &Flow) -> Vec<f32> {
    let (w, h) = (flow.width, flow.height);
    let mut out = vec![0.0; w * h * channels];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let (sx, sy) = (x as f32 + flow.u[i], y as f32 + flow.v[i]);
            for c in 0..channels {
                out[i * channels + c] = sample(data, (w, h, channels), c, sx, sy);
            }
        }
    }
    out
}
