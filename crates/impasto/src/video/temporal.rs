//! Ruder et al.'s short-term temporal loss: the stylised frame should equal the previous
//! stylised frame warped onto it, where that warp can be trusted.

use crate::image_io::Image;
use crate::transfer::PixelTerm;
use crate::{Error, Result};

/// `γ · (1/D) Σ_p c_p Σ_ch (x_p,ch − ω_p,ch)²`, with D = width × height × 3, ω the previous
/// stylised frame warped onto this one and c ∈ {0, 1} its [`reliability`](super::reliability)
/// (Ruder, Dosovitskiy & Brox 2016, eq. 7). Joins a transfer through
/// [`Transfer::add_pixel_term`](crate::transfer::Transfer::add_pixel_term).
#[derive(Clone, Debug)]
pub struct TemporalLoss {
    target: Vec<f32>,
    reliability: Vec<f32>,
    weight: f64,
}

impl TemporalLoss {
    /// The loss towards `warped_previous` (at the working size) with per-pixel weights
    /// `reliability` (one per pixel), scaled by `weight` (γ, ≥ 0).
    pub fn new(warped_previous: &Image, reliability: Vec<f32>, weight: f64) -> Result<Self> {
        let pixels = warped_previous.width * warped_previous.height;
        if reliability.len() != pixels {
            return Err(Error::parameter(format!(
                "{} reliability weights for a {}×{} frame",
                reliability.len(),
                warped_previous.width,
                warped_previous.height
            )));
        }
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(Error::parameter(format!(
                "the temporal weight must be a number ≥ 0, got {weight}"
            )));
        }
        Ok(TemporalLoss {
            target: warped_previous.rgb.clone(),
            reliability,
            weight,
        })
    }

    /// The share of pixels the loss acts on.
    pub fn coverage(&self) -> f64 {
        self.reliability.iter().map(|&c| c as f64).sum::<f64>() / self.reliability.len() as f64
    }
}

impl PixelTerm for TemporalLoss {
    fn evaluate(&self, x: &[f32], grad: &mut [f32]) -> f64 {
        assert_eq!(x.len(), self.target.len(), "temporal loss on another size");
        let scale = self.weight / self.target.len() as f64;
        let g_scale = (2.0 * scale) as f32;
        let mut sum = 0.0f64;
        for (p, &c) in self.reliability.iter().enumerate() {
            if c == 0.0 {
                continue;
            }
            for ch in 0..3 {
                let i = p * 3 + ch;
                let d = x[i] - self.target[i];
                sum += c as f64 * (d as f64) * (d as f64);
                grad[i] += g_scale * c * d;
            }
        }
        scale * sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loss(w: usize, h: usize, weight: f64) -> TemporalLoss {
        let target: Vec<f32> = (0..w * h * 3).map(|i| ((i * 37) % 251) as f32).collect();
        let c: Vec<f32> = (0..w * h).map(|p| (p % 3 != 1) as u8 as f32).collect();
        TemporalLoss::new(&Image::new(w, h, target, None).unwrap(), c, weight).unwrap()
    }

    #[test]
    fn value_is_the_weighted_mean_squared_difference_over_reliable_pixels() {
        let l = loss(3, 2, 2.0);
        let x: Vec<f32> = l.target.iter().map(|t| t + 4.0).collect();
        let mut grad = vec![1.0; x.len()];
        let v = l.evaluate(&x, &mut grad);
        // 4 of the 6 pixels are reliable: 2 · (1/18) · 4 · 3 · 16.
        assert!((v - 2.0 * 4.0 * 3.0 * 16.0 / 18.0).abs() < 1e-9, "{v}");
        // Added to what was there; zero on unreliable pixels.
        assert_eq!(grad[3], 1.0);
        assert!((grad[0] - (1.0 + 2.0 * 2.0 * 4.0 / 18.0)).abs() < 1e-6);
        assert!((l.coverage() - 4.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (w, h) = (5, 4);
        let l = loss(w, h, 3.5);
        let x: Vec<f32> = (0..w * h * 3)
            .map(|i| ((i * 91) % 255) as f32 * 0.9)
            .collect();
        let mut grad = vec![0.0; x.len()];
        l.evaluate(&x, &mut grad);
        for i in 0..x.len() {
            let eps = 0.5f32;
            let (mut plus, mut minus) = (x.clone(), x.clone());
            plus[i] += eps;
            minus[i] -= eps;
            let mut scratch = vec![0.0; x.len()];
            let numeric = (l.evaluate(&plus, &mut scratch) - l.evaluate(&minus, &mut scratch))
                / (2.0 * eps as f64);
            let analytic = grad[i] as f64;
            assert!(
                (numeric - analytic).abs() <= 1e-4 * numeric.abs().max(1.0),
                "value {i}: finite differences {numeric}, gradient {analytic}"
            );
        }
    }

    #[test]
    fn bad_arguments_are_refused() {
        let img = Image::new(2, 2, vec![0.0; 12], None).unwrap();
        assert!(TemporalLoss::new(&img, vec![1.0; 3], 1.0).is_err());
        assert!(TemporalLoss::new(&img, vec![1.0; 4], -1.0).is_err());
        assert!(TemporalLoss::new(&img, vec![1.0; 4], f64::NAN).is_err());
    }
}
