use rayon::prelude::*;

use crate::core::{FeatureMap, Scalar};
use crate::model::Layer;

use super::tiled::CoreAt;

/// `1/2 Σ (F(x) − P)²` at one layer, P being the content image's features there.
#[derive(Clone, Debug)]
pub struct ContentLoss<T = f32> {
    layer: Layer,
    target: FeatureMap<T>,
    weight: f64,
}

impl<T: Scalar> ContentLoss<T> {
    /// `weight` scales this layer's term inside the content part (1 for a single layer).
    pub fn new(layer: Layer, target: FeatureMap<T>, weight: f64) -> Self {
        ContentLoss {
            layer,
            target,
            weight,
        }
    }

    /// The layer whose features are compared.
    pub fn layer(&self) -> Layer {
        self.layer
    }
    /// The loss's weight among the content layers.
    pub fn weight(&self) -> f64 {
        self.weight
    }
    /// The target features (the content photo's).
    pub fn target(&self) -> &FeatureMap<T> {
        &self.target
    }

    /// The loss for features `f` (unweighted), summed in f64.
    pub fn value(&self, f: &FeatureMap<T>) -> f64 {
        assert!(f.same_shape(&self.target), "content features shape");
        let sum: f64 = (0..f.height())
            .into_par_iter()
            .map(|y| {
                f.pixel_row(y)
                    .iter()
                    .zip(self.target.pixel_row(y))
                    .map(|(&a, &b)| {
                        let d = (a - b).to_f64();
                        d * d
                    })
                    .sum::<f64>()
            })
            .sum();
        0.5 * sum
    }

    /// The loss over one tile's core: `f` is the tile window's features, `core` says which of
    /// them are the core's and where the window sits in the whole image's features.
    pub(crate) fn value_of_part(&self, f: &FeatureMap<T>, core: &CoreAt) -> f64 {
        let c = f.channels();
        let mut sum = 0.0;
        for y in core.rows.0..core.rows.1 {
            let (a, b) = (core.cols.0 * c, core.cols.1 * c);
            let target = self.target.pixel_row(y + core.origin.0);
            let t0 = core.origin.1 * c;
            for (&v, &p) in f.pixel_row(y)[a..b].iter().zip(&target[t0 + a..t0 + b]) {
                let d = (v - p).to_f64();
                sum += d * d;
            }
        }
        0.5 * sum
    }

    /// `grad += scale · (F − P)` over one tile's core (see [`ContentLoss::value_of_part`]).
    pub(crate) fn add_gradient_of_part(
        &self,
        f: &FeatureMap<T>,
        core: &CoreAt,
        grad: &mut FeatureMap<T>,
        scale: T,
    ) {
        let c = f.channels();
        for y in core.rows.0..core.rows.1 {
            let (a, b) = (core.cols.0 * c, core.cols.1 * c);
            let target = self.target.pixel_row(y + core.origin.0);
            let t0 = core.origin.1 * c;
            let fr = &f.pixel_row(y)[a..b];
            let pr = &target[t0 + a..t0 + b];
            for ((g, &v), &p) in grad.pixel_row_mut(y)[a..b].iter_mut().zip(fr).zip(pr) {
                *g += scale * (v - p);
            }
        }
    }

    /// `grad += scale · (F − P)`.
    pub fn add_gradient(&self, f: &FeatureMap<T>, grad: &mut FeatureMap<T>, scale: T) {
        assert!(
            f.same_shape(&self.target) && grad.same_shape(f),
            "content gradient shape"
        );
        for y in 0..f.height() {
            let (fr, pr) = (f.pixel_row(y), self.target.pixel_row(y));
            for ((g, &a), &b) in grad.pixel_row_mut(y).iter_mut().zip(fr).zip(pr) {
                *g += scale * (a - b);
            }
        }
    }
}
