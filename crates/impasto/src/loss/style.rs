use crate::core::{gram, gram_gradient, FeatureMap, Scalar};
use crate::model::Layer;

use super::SpatialMask;

/// `E_l = Σ (G/M − Â)² / (4 N²)` at one layer, where `G = Fᵀ F` is the Gram matrix of the image's
/// `N`-channel, `M`-pixel features and `Â = A / M_s` the style image's Gram matrix divided by its
/// pixel count. When the two images have the same size this is exactly the paper's
/// `Σ (G − A)² / (4 N² M²)`; dividing each Gram by its own pixel count keeps the loss meaningful
/// when the style image is resized differently from the content.
///
/// With a [`SpatialMask`] `m` (spatial control, Gatys et al. 2017) the statistics are those of
/// the region only: `G = Σ_p m_p² F_p F_pᵀ` and `M = Σ_p m_p²`, i.e. the Gram matrix of `m ∘ F`
/// normalised by the region's weighted pixel count. A region with no weight at this layer has
/// no statistics to match: its loss is 0, not NaN.
#[derive(Clone, Debug)]
pub struct StyleLoss<T = f32> {
    layer: Layer,
    channels: usize,
    /// Â, row-major `N × N`.
    target: Vec<T>,
    weight: f64,
    /// `G/M − Â` from the last [`StyleLoss::evaluate`], with `M`.
    diff: Vec<T>,
    pixels: usize,
    /// Per-pixel weights at this layer's feature size; `None`: every pixel counts fully.
    mask: Option<SpatialMask>,
    /// `M` of the last evaluation: the pixel count, or `Σ m²` with a mask.
    mass: f64,
}

impl<T: Scalar> StyleLoss<T> {
    /// Targets the style of `style_features` (the style image's output at `layer`); `weight` is
    /// w_l, this layer's share of the style part.
    pub fn new(layer: Layer, style_features: &FeatureMap<T>, weight: f64) -> Self {
        Self::from_target(
            layer,
            normalized_gram(style_features),
            style_features.channels(),
            weight,
        )
    }

    /// Targets a given normalised Gram matrix `Â` (e.g. a blend of several styles').
    pub fn from_target(layer: Layer, target: Vec<T>, channels: usize, weight: f64) -> Self {
        assert_eq!(target.len(), channels * channels, "style target length");
        StyleLoss {
            layer,
            channels,
            target,
            weight,
            diff: vec![T::ZERO; channels * channels],
            pixels: 0,
            mask: None,
            mass: 0.0,
        }
    }

    /// Restricts the loss to the region `mask` weights; the mask must already be at this layer's
    /// feature size (see [`SpatialMask::at_layer`]). The Gram routines take plain features, so
    /// each evaluation and gradient works on a weighted copy of `F`, freed when done.
    pub fn with_mask(mut self, mask: SpatialMask) -> Self {
        self.mask = Some(mask);
        self
    }

    /// The region of the image this loss applies to; `None`: all of it.
    pub fn mask(&self) -> Option<&SpatialMask> {
        self.mask.as_ref()
    }

    /// The layer whose Gram matrix is compared.
    pub fn layer(&self) -> Layer {
        self.layer
    }
    /// w_l, the loss's weight among the style layers.
    pub fn weight(&self) -> f64 {
        self.weight
    }
    /// The normalised target Gram matrix Â.
    pub fn target(&self) -> &[T] {
        &self.target
    }

    /// Computes the loss for features `f` (unweighted) and keeps what the gradient needs.
    pub fn evaluate(&mut self, f: &FeatureMap<T>) -> f64 {
        let n = self.channels;
        assert_eq!(f.channels(), n, "style features channels");
        self.pixels = f.pixels();
        match &self.mask {
            None => {
                gram(f, &mut self.diff);
                self.mass = self.pixels as f64;
            }
            Some(mask) => {
                self.mass = mask.mass();
                if self.mass == 0.0 {
                    return 0.0;
                }
                gram(&mask.weigh(f, 1), &mut self.diff);
            }
        }
        self.finish()
    }

    /// The loss from a Gram matrix `gram` of `pixels` pixels summed elsewhere (over the tiles
    /// of one image), keeping what [`StyleLoss::add_gradient_of_part`] needs. Unmasked only.
    pub(crate) fn evaluate_summed(&mut self, gram: &[T], pixels: usize) -> f64 {
        debug_assert!(self.mask.is_none(), "tiles of a masked style loss");
        self.diff.copy_from_slice(gram);
        self.pixels = pixels;
        self.mass = pixels as f64;
        self.finish()
    }

    /// `grad += scale · ∂E/∂F` for the features `part` of one part of the image (zero
    /// elsewhere), after [`StyleLoss::evaluate_summed`] over all parts.
    pub(crate) fn add_gradient_of_part(
        &self,
        part: &FeatureMap<T>,
        grad: &mut FeatureMap<T>,
        scale: T,
    ) {
        let n = self.channels as f64;
        let s = scale * T::from_f64(1.0 / (n * n * self.mass));
        gram_gradient(part, &self.diff, s, grad);
    }

    /// Channels of the layer (the Gram matrix is `channels × channels`).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// From `diff` = G and `mass` = M: `diff` becomes `G/M − Â`; returns the loss.
    fn finish(&mut self) -> f64 {
        let n = self.channels;
        let inv_m = T::from_f64(1.0 / self.mass);
        let mut sum = 0.0;
        for (d, &a) in self.diff.iter_mut().zip(&self.target) {
            *d = *d * inv_m - a;
            sum += d.to_f64() * d.to_f64();
        }
        sum / (4.0 * (n * n) as f64)
    }

    /// `grad += scale · ∂E/∂F = scale · F · (G/M − Â) / (N² M)`, using the last evaluation;
    /// with a mask `F_p` is weighted by `m_p²`, once for each factor of `m ∘ F` in `G`.
    pub fn add_gradient(&self, f: &FeatureMap<T>, grad: &mut FeatureMap<T>, scale: T) {
        assert_eq!(f.pixels(), self.pixels, "style gradient before evaluate");
        if self.mass == 0.0 {
            return;
        }
        let n = self.channels as f64;
        let s = scale * T::from_f64(1.0 / (n * n * self.mass));
        match &self.mask {
            None => gram_gradient(f, &self.diff, s, grad),
            Some(mask) => gram_gradient(&mask.weigh(f, 2), &self.diff, s, grad),
        }
    }
}

/// `(m ∘ F)ᵀ (m ∘ F) / Σ m²`: the statistics of a style image's masked region, the target of a
/// masked [`StyleLoss`]. `None` if the mask has no weight at this layer.
pub fn masked_normalized_gram<T: Scalar>(f: &FeatureMap<T>, mask: &SpatialMask) -> Option<Vec<T>> {
    let mass = mask.mass();
    if mass == 0.0 {
        return None;
    }
    let c = f.channels();
    let mut g = vec![T::ZERO; c * c];
    gram(&mask.weigh(f, 1), &mut g);
    let inv_m = T::from_f64(1.0 / mass);
    for v in &mut g {
        *v *= inv_m;
    }
    Some(g)
}

/// `Fᵀ F / M`.
pub fn normalized_gram<T: Scalar>(f: &FeatureMap<T>) -> Vec<T> {
    let c = f.channels();
    let mut g = vec![T::ZERO; c * c];
    gram(f, &mut g);
    let inv_m = T::from_f64(1.0 / f.pixels() as f64);
    for v in &mut g {
        *v *= inv_m;
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testutil::Rng;

    fn relu1_1() -> Layer {
        Layer::Relu { block: 1, index: 1 }
    }

    /// Loss and `∂E/∂F` (scale 1) of `loss` at `f`, on a gradient that starts at zero.
    fn loss_and_gradient(loss: &mut StyleLoss<f64>, f: &FeatureMap<f64>) -> (f64, FeatureMap<f64>) {
        let e = loss.evaluate(f);
        let mut g = FeatureMap::zeros(f.height(), f.width(), f.channels());
        loss.add_gradient(f, &mut g, 1.0);
        (e, g)
    }

    #[test]
    fn an_all_ones_mask_is_the_unmasked_loss() {
        let mut rng = Rng::new(11);
        let (h, w, c) = (9, 7, 4);
        let f: FeatureMap<f64> = rng.map(h, w, c);
        let style: FeatureMap<f64> = rng.map(6, 11, c);
        let plain = StyleLoss::new(relu1_1(), &style, 0.5);
        let masked = plain.clone().with_mask(SpatialMask::ones(h, w));
        let (e0, g0) = loss_and_gradient(&mut plain.clone(), &f);
        let (e1, g1) = loss_and_gradient(&mut masked.clone(), &f);
        assert!(e0 > 0.0);
        assert!((e0 - e1).abs() <= 1e-14 * e0, "{e0} vs {e1}");
        for (a, b) in g0.data().iter().zip(g1.data()) {
            assert!((a - b).abs() <= 1e-14 * a.abs().max(1e-300), "{a} vs {b}");
        }
        let all = SpatialMask::ones(style.height(), style.width());
        assert_eq!(
            masked_normalized_gram(&style, &all).unwrap(),
            normalized_gram(&style)
        );
    }

    #[test]
    fn masked_loss_and_gradient_match_the_weighted_sums() {
        // Spelled out per pixel: G = Σ m² F Fᵀ / Σ m², E = Σ (G − Â)² / 4N²,
        // ∂E/∂F_p = m_p² (G − Â) F_p / (N² Σ m²).
        let mut rng = Rng::new(12);
        let (h, w, c) = (6, 5, 3);
        let f: FeatureMap<f64> = rng.map(h, w, c);
        let values: Vec<f32> = (0..h * w).map(|i| ((i * 7) % 11) as f32 / 10.0).collect();
        let mask = SpatialMask::new(h, w, values.clone()).unwrap();
        let target: Vec<f64> = rng.vec(c * c, 1.0);
        let mut loss = StyleLoss::from_target(relu1_1(), target.clone(), c, 1.0).with_mask(mask);
        let (e, g) = loss_and_gradient(&mut loss, &f);
        let m2 = |y: usize, x: usize| (values[y * w + x] as f64).powi(2);
        let mass: f64 = (0..h)
            .flat_map(|y| (0..w).map(move |x| (y, x)))
            .map(|(y, x)| m2(y, x))
            .sum();
        let mut d = vec![0.0; c * c];
        for i in 0..c {
            for j in 0..c {
                let sum: f64 = (0..h)
                    .flat_map(|y| (0..w).map(move |x| (y, x)))
                    .map(|(y, x)| m2(y, x) * f.pixel(y, x)[i] * f.pixel(y, x)[j])
                    .sum();
                d[i * c + j] = sum / mass - target[i * c + j];
            }
        }
        let n2 = (c * c) as f64;
        let want: f64 = d.iter().map(|v| v * v).sum::<f64>() / (4.0 * n2);
        assert!((e - want).abs() <= 1e-12 * want, "{e} vs {want}");
        for y in 0..h {
            for x in 0..w {
                for j in 0..c {
                    let fd: f64 = (0..c).map(|i| f.pixel(y, x)[i] * d[i * c + j]).sum();
                    let want = m2(y, x) * fd / (n2 * mass);
                    assert!((g.pixel(y, x)[j] - want).abs() <= 1e-12 * want.abs().max(1e-9));
                }
            }
        }
        assert!(g.border_is_zero());
    }

    #[test]
    fn a_region_with_no_weight_has_no_loss_and_no_gradient() {
        let mut rng = Rng::new(13);
        let f: FeatureMap<f64> = rng.map(4, 4, 2);
        let target = rng.vec(4, 1.0);
        let zero = SpatialMask::new(4, 4, vec![0.0; 16]).unwrap();
        let mut loss = StyleLoss::from_target(relu1_1(), target, 2, 1.0).with_mask(zero.clone());
        let (e, g) = loss_and_gradient(&mut loss, &f);
        assert_eq!(e, 0.0);
        assert!(g.data().iter().all(|&v| v == 0.0));
        assert!(masked_normalized_gram(&f, &zero).is_none());
    }
}
