use crate::core::{gram, gram_gradient, FeatureMap, Scalar};
use crate::model::Layer;

/// `E_l = Σ (G/M − Â)² / (4 N²)` at one layer, where `G = Fᵀ F` is the Gram matrix of the image's
/// `N`-channel, `M`-pixel features and `Â = A / M_s` the style image's Gram matrix divided by its
/// pixel count. When the two images have the same size this is exactly the paper's
/// `Σ (G − A)² / (4 N² M²)`; dividing each Gram by its own pixel count keeps the loss meaningful
/// when the style image is resized differently from the content.
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
        }
    }

    pub fn layer(&self) -> Layer {
        self.layer
    }
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
        gram(f, &mut self.diff);
        self.pixels = f.pixels();
        let inv_m = T::from_f64(1.0 / self.pixels as f64);
        let mut sum = 0.0;
        for (d, &a) in self.diff.iter_mut().zip(&self.target) {
            *d = *d * inv_m - a;
            sum += d.to_f64() * d.to_f64();
        }
        sum / (4.0 * (n * n) as f64)
    }

    /// `grad += scale · ∂E/∂F = scale · F · (G/M − Â) / (N² M)`, using the last evaluation.
    pub fn add_gradient(&self, f: &FeatureMap<T>, grad: &mut FeatureMap<T>, scale: T) {
        assert_eq!(f.pixels(), self.pixels, "style gradient before evaluate");
        let n = self.channels as f64;
        let s = scale * T::from_f64(1.0 / (n * n * self.pixels as f64));
        gram_gradient(f, &self.diff, s, grad);
    }
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
