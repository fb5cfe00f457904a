use rayon::prelude::*;

use crate::core::{FeatureMap, Scalar};
use crate::model::Layer;

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

    pub fn layer(&self) -> Layer {
        self.layer
    }
    pub fn weight(&self) -> f64 {
        self.weight
    }
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
