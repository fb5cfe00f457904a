//! How much a stylised video flickers: Ruder, Dosovitskiy & Brox's temporal consistency error.

use super::{reliability, warp, OpticalFlow};
use crate::image_io::Image;
use crate::{Error, Result};

/// The mean, over consecutive pairs of output frames, of the mean over reliable pixels of
/// `(o_t − ω(o_{t−1}))²` (all three channels, 0–255 scale): `ω` warps the previous output by the
/// flow computed on the *input* frames, whose consistency check also says which pixels count
/// (Ruder et al. 2016, section 7.1). Frames and outputs must be of one size; 0 for fewer than
/// two frames.
pub fn flicker(frames: &[Image], outputs: &[Image], flow: &dyn OpticalFlow) -> Result<f64> {
    if frames.len() != outputs.len() {
        return Err(Error::parameter(format!(
            "{} input frames but {} outputs",
            frames.len(),
            outputs.len()
        )));
    }
    let mut pairs = Vec::new();
    for t in 1..frames.len() {
        let backward = flow.flow(&frames[t], &frames[t - 1])?;
        let forward = flow.flow(&frames[t - 1], &frames[t])?;
        let c = reliability(&forward, &backward)?;
        let warped = warp(&outputs[t - 1], &backward)?;
        let out = &outputs[t];
        if out.rgb.len() != warped.rgb.len() {
            return Err(Error::parameter("outputs and frames differ in size"));
        }
        let (mut sum, mut n) = (0.0f64, 0usize);
        for (p, &cp) in c.iter().enumerate() {
            if cp > 0.0 {
                for ch in 0..3 {
                    let d = (out.rgb[p * 3 + ch] - warped.rgb[p * 3 + ch]) as f64;
                    sum += d * d;
                }
                n += 3;
            }
        }
        if n > 0 {
            pairs.push(sum / n as f64);
        }
    }
    Ok(if pairs.is_empty() {
        0.0
    } else {
        pairs.iter().sum::<f64>() / pairs.len() as f64
    })
}
