//! Reading, resizing and writing images.
//!
//! Everything inside the library works on [`Image`]: RGB as `f32` in 0–255, row-major
//! `height × width × 3`. That is the network's input convention (the model subtracts its own
//! channel means from 0–255 values), so an image goes from file to optimiser without a second
//! conversion, and an 8-bit or 16-bit source is represented exactly (16-bit values are divided by
//! 257, which keeps their full precision as fractions of 0–255).
//!
//! Alpha is carried separately rather than as a fourth channel: style transfer only ever changes
//! the colours, and keeping the content image's alpha lets the output keep its transparency
//! without the network seeing a channel it was never trained on.
//!
//! Decoding is guarded by [`Limits`], like image-rs's decoder limits: the dimensions are read from
//! the header and refused before a single pixel buffer is allocated, so a hostile or mistaken file
//! (a PNG claiming 100000 × 100000 pixels) fails fast with [`ErrorKind::Limits`](crate::ErrorKind::Limits) instead of exhausting
//! memory. Errors name the problem in words an end user can act on ("truncated JPEG data",
//! "empty file", "not a JPEG, PNG or TIFF image").
//!
//! Writes are atomic (encode, write a temporary file beside the destination, rename over it), so
//! an interrupted run never leaves a half-written output or clobbers a previous good one.

mod load;
mod resize;
mod save;

#[cfg(feature = "fuzzing")]
pub(crate) use load::decode_bytes;
pub use load::{load, load_with_limits, MAX_FILE_BYTES};
pub use resize::{fit_long_side, resize};
pub use save::{check_output_path, check_output_path_with_depth, save, save_with_depth, BitDepth};

use crate::{Error, Result};

/// An image in memory: RGB, 0–255 as f32, row-major `height × width × 3`, plus an optional alpha
/// channel (0–255, `height × width`).
///
/// `f32` rather than `u8` because that is what the optimiser updates and what the network reads;
/// values may leave 0–255 during optimisation and are only rounded and clamped when saved.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height × width × 3` values, RGB interleaved, row-major, 0–255.
    pub rgb: Vec<f32>,
    /// `height × width` values, 0–255 (255 opaque); `None`: opaque.
    pub alpha: Option<Vec<f32>>,
}

impl Image {
    /// Checks the buffers against the size so that every later consumer (network, resizer,
    /// encoder) can index without checking again. A 0×0 image is refused: no stage can do
    /// anything meaningful with it.
    pub fn new(
        width: usize,
        height: usize,
        rgb: Vec<f32>,
        alpha: Option<Vec<f32>>,
    ) -> Result<Image> {
        if width == 0 || height == 0 {
            return Err(Error::parameter(format!(
                "image is {width}×{height}; both sides must be at least 1 pixel"
            )));
        }
        let pixels = width
            .checked_mul(height)
            .filter(|p| p.checked_mul(3).is_some())
            .ok_or_else(|| {
                Error::limits(format!("image of {width}×{height} pixels is too large"))
            })?;
        if rgb.len() != pixels * 3 {
            return Err(Error::parameter(format!(
                "RGB buffer has {} values, a {width}×{height} image needs {}",
                rgb.len(),
                pixels * 3
            )));
        }
        if let Some(alpha) = &alpha {
            if alpha.len() != pixels {
                return Err(Error::parameter(format!(
                    "alpha buffer has {} values, a {width}×{height} image needs {pixels}",
                    alpha.len()
                )));
            }
        }
        Ok(Image {
            width,
            height,
            rgb,
            alpha,
        })
    }

    /// The size that working resolutions (`--size`) are expressed in.
    pub fn long_side(&self) -> usize {
        self.width.max(self.height)
    }
}

/// Decoder limits: at most this many pixels and this long a side. Larger images are refused
/// with [`ErrorKind::Limits`](crate::ErrorKind::Limits) naming the size, from the header alone, before any pixel is decoded.
///
/// The defaults (100 megapixels, 32768 per side) admit any real photograph while bounding the
/// memory one file can claim (the decoded `f32` RGB of 100 megapixels is 1.2 GB); style transfer
/// works at a resized resolution anyway, so larger sources gain nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most pixels (width × height) an image may have.
    pub max_pixels: u64,
    /// Longest side an image may have, in pixels.
    pub max_side: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: 100_000_000,
            max_side: 32_768,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_sizes() {
        assert!(Image::new(2, 1, vec![0.0; 6], None).is_ok());
        assert!(Image::new(2, 1, vec![0.0; 6], Some(vec![255.0; 2])).is_ok());
        let err = Image::new(0, 0, vec![], None).unwrap_err().to_string();
        assert!(err.contains("image is 0×0"), "{err}");
        let err = Image::new(2, 1, vec![0.0; 5], None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("RGB buffer has 5 values") && err.contains("needs 6"),
            "{err}"
        );
        let err = Image::new(2, 1, vec![0.0; 6], Some(vec![0.0; 3]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("alpha buffer has 3 values"), "{err}");
    }

    #[test]
    fn long_side_is_the_larger() {
        assert_eq!(
            Image::new(3, 5, vec![0.0; 45], None).unwrap().long_side(),
            5
        );
        assert_eq!(
            Image::new(7, 2, vec![0.0; 42], None).unwrap().long_side(),
            7
        );
    }
}
