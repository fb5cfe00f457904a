use crate::core::{FeatureMap, Scalar};
use crate::model::{Layer, Vgg, Workspace};
use crate::{Error, Result};

use super::{total_variation, ContentLoss, StyleLoss};

/// α, β and the total-variation weight of `α·content + β·style + tv·TV`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossWeights {
    /// α, the weight of the content loss.
    pub content: f64,
    /// β, the weight of the style loss.
    pub style: f64,
    /// The weight of the image's total variation (smoothing); 0: none.
    pub tv: f64,
}

impl Default for LossWeights {
    /// The paper's α/β = 1e-3, no smoothing.
    fn default() -> Self {
        LossWeights {
            content: 1.0,
            style: 1e3,
            tv: 0.0,
        }
    }
}

/// One evaluation's losses: each part unweighted, the total weighted.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossParts {
    /// `Σ_l c_l · 1/2 Σ (F_l(x) − F_l(p))²`.
    pub content: f64,
    /// `Σ_l w_l E_l`.
    pub style: f64,
    /// Total variation of the image (0 when its weight is 0).
    pub tv: f64,
    /// `α·content + β·style + tv_weight·tv`.
    pub total: f64,
}

/// The full objective over an image.
#[derive(Clone, Debug)]
pub struct Objective<T = f32> {
    pub(super) content: Vec<ContentLoss<T>>,
    pub(super) style: Vec<StyleLoss<T>>,
    pub(super) weights: LossWeights,
}

impl<T: Scalar> Objective<T> {
    /// The objective of these losses; fails for weights that are negative or not finite.
    pub fn new(
        content: Vec<ContentLoss<T>>,
        style: Vec<StyleLoss<T>>,
        weights: LossWeights,
    ) -> Result<Self> {
        if content.is_empty() && style.is_empty() {
            return Err(Error::parameter(
                "the objective has neither content nor style layers",
            ));
        }
        for (name, w) in [
            ("content", weights.content),
            ("style", weights.style),
            ("tv", weights.tv),
        ] {
            if !w.is_finite() || w < 0.0 {
                return Err(Error::parameter(format!(
                    "{name} weight must be a finite number ≥ 0, got {w}"
                )));
            }
        }
        Ok(Objective {
            content,
            style,
            weights,
        })
    }

    /// α, β and the TV weight.
    pub fn weights(&self) -> LossWeights {
        self.weights
    }
    /// The content losses.
    pub fn content_losses(&self) -> &[ContentLoss<T>] {
        &self.content
    }
    /// The style losses.
    pub fn style_losses(&self) -> &[StyleLoss<T>] {
        &self.style
    }

    /// Every layer a loss reads, without repeats, in first-use order.
    pub fn layers(&self) -> Vec<Layer> {
        let mut out: Vec<Layer> = Vec::new();
        let all = self
            .content
            .iter()
            .map(|c| c.layer())
            .chain(self.style.iter().map(|s| s.layer()));
        for l in all {
            if !out.contains(&l) {
                out.push(l);
            }
        }
        out
    }

    /// Losses of the network input already in `ws` (no TV), and their gradient w.r.t. that input.
    pub fn evaluate_network<'w>(
        &mut self,
        net: &Vgg<T>,
        ws: &'w mut Workspace<T>,
    ) -> Result<(LossParts, &'w FeatureMap<T>)> {
        net.forward(ws);
        let mut parts = LossParts::default();
        for c in &self.content {
            parts.content += c.weight() * c.value(net.features(ws, c.layer())?);
        }
        for s in &mut self.style {
            parts.style += s.weight() * s.evaluate(net.features(ws, s.layer())?);
        }
        parts.total = self.weights.content * parts.content + self.weights.style * parts.style;
        let (alpha, beta) = (self.weights.content, self.weights.style);
        let (content, style) = (&self.content, &self.style);
        let grad = net.backward(ws, &mut |layer, f, g| {
            for c in content.iter().filter(|c| c.layer() == layer) {
                c.add_gradient(f, g, T::from_f64(alpha * c.weight()));
            }
            for s in style.iter().filter(|s| s.layer() == layer) {
                s.add_gradient(f, g, T::from_f64(beta * s.weight()));
            }
        });
        Ok((parts, grad))
    }

    /// Losses of an RGB image (`h × w × 3`, 0–255, the workspace's size) and their gradient
    /// w.r.t. its pixels, written into `grad`.
    pub fn evaluate(
        &mut self,
        net: &Vgg<T>,
        ws: &mut Workspace<T>,
        image: &[T],
        grad: &mut [T],
    ) -> Result<LossParts> {
        let (h, w) = (ws.height(), ws.width());
        if image.len() != h * w * 3 || grad.len() != image.len() {
            return Err(Error::parameter(format!(
                "image of {} values and gradient of {} for a {w}×{h} workspace",
                image.len(),
                grad.len()
            )));
        }
        let convention = net.convention();
        convention.to_network(image, ws.input_mut());
        grad.fill(T::ZERO);
        let (mut parts, grad_input) = self.evaluate_network(net, ws)?;
        convention.gradient_to_rgb(grad_input, grad);
        if self.weights.tv > 0.0 {
            parts.tv = total_variation(image, h, w, 3, grad, T::from_f64(self.weights.tv));
            parts.total += self.weights.tv * parts.tv;
        }
        Ok(parts)
    }
}
