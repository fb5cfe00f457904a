//! Optical flow: the field of displacements between two frames, and the trait a method of
//! computing it implements.

use crate::image_io::Image;
use crate::{Error, Result};

/// A dense displacement field over a `width × height` frame, in pixels, row-major.
///
/// The convention is that of backward warping: the flow `w` from frame `a` to frame `b` says
/// where each pixel of `a` is found in `b`, `a(p) ≈ b(p + w(p))`, so
/// [`warp`](super::warp)ing `b` by `w` gives an image like `a`. Content that moves right by 3
/// px between `a` and `b` has `u = 3` everywhere.
#[derive(Clone, Debug, PartialEq)]
pub struct Flow {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Horizontal displacement of each pixel (positive: to the right).
    pub u: Vec<f32>,
    /// Vertical displacement of each pixel (positive: down).
    pub v: Vec<f32>,
}

impl Flow {
    /// No motion anywhere.
    pub fn zero(width: usize, height: usize) -> Flow {
        Flow {
            width,
            height,
            u: vec![0.0; width * height],
            v: vec![0.0; width * height],
        }
    }

    /// The same displacement everywhere.
    pub fn constant(width: usize, height: usize, u: f32, v: f32) -> Flow {
        Flow {
            width,
            height,
            u: vec![u; width * height],
            v: vec![v; width * height],
        }
    }
}

/// A way of computing dense optical flow between two frames of the same size. Implementations
/// must be usable from several threads (a forward and a backward flow run side by side).
pub trait OpticalFlow: Send + Sync {
    /// The flow from `a` to `b` (see [`Flow`] for the convention): `a(p) ≈ b(p + w(p))`.
    fn flow(&self, a: &Image, b: &Image) -> Result<Flow>;
}

/// A single-channel frame (luminance, 0–1) the flow methods work on.
#[derive(Clone, Debug)]
pub(crate) struct Gray {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl Gray {
    /// Rec. 601 luma of an RGB image, scaled to 0–1.
    pub fn from_image(image: &Image) -> Gray {
        let data = image
            .rgb
            .chunks_exact(3)
            .map(|p| (0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]) / 255.0)
            .collect();
        Gray {
            width: image.width,
            height: image.height,
            data,
        }
    }

    pub fn at(&self, x: usize, y: usize) -> f32 {
        self.data[y * self.width + x]
    }
}

/// Refuses two frames of different sizes (a flow between them means nothing).
pub(crate) fn check_same_size(a: &Image, b: &Image) -> Result<()> {
    if (a.width, a.height) != (b.width, b.height) {
        return Err(Error::parameter(format!(
            "optical flow needs two frames of one size, got {}×{} and {}×{}",
            a.width, a.height, b.width, b.height
        )));
    }
    Ok(())
}
