//! Turns images and layer names into the objective: the content photo's features and the blended,
//! normalised Gram matrices of the style images.

use crate::image_io::Image;
use crate::loss::{normalized_gram, ContentLoss, Objective, StyleLoss};
use crate::model::{Architecture, Layer, Vgg};
use crate::{Error, Result};

use super::TransferSettings;

/// The settings' layers, parsed for the chosen network (so a typo fails before any work).
#[derive(Clone, Debug)]
pub(crate) struct LayerPlan {
    pub content: Vec<Layer>,
    pub style: Vec<Layer>,
    /// w_l for each style layer.
    pub style_weights: Vec<f64>,
    /// Share of each style image, summing to 1.
    pub blend: Vec<f64>,
}

impl LayerPlan {
    pub fn new(settings: &TransferSettings, styles: usize) -> Result<Self> {
        let arch = settings.architecture;
        let content = parse_all(arch, &settings.content_layers)?;
        let style = parse_all(arch, &settings.style_layers)?;
        if content.is_empty() && style.is_empty() {
            return Err(Error::parameter("no content layers and no style layers"));
        }
        if !style.is_empty() && styles == 0 {
            return Err(Error::parameter("style layers given but no style image"));
        }
        let style_weights = match &settings.style_layer_weights {
            None => vec![1.0 / style.len().max(1) as f64; style.len()],
            Some(w) => {
                if w.len() != style.len() {
                    return Err(Error::parameter(format!(
                        "{} style layer weights for {} style layers",
                        w.len(),
                        style.len()
                    )));
                }
                check_weights("style layer weight", w)?;
                w.clone()
            }
        };
        let blend = match &settings.style_blend_weights {
            None => vec![1.0 / styles.max(1) as f64; styles],
            Some(b) => {
                if b.len() != styles {
                    return Err(Error::parameter(format!(
                        "{} style blend weights for {styles} style images",
                        b.len()
                    )));
                }
                check_weights("style blend weight", b)?;
                let sum: f64 = b.iter().sum();
                if sum <= 0.0 {
                    return Err(Error::parameter("style blend weights sum to 0"));
                }
                b.iter().map(|v| v / sum).collect()
            }
        };
        Ok(LayerPlan {
            content,
            style,
            style_weights,
            blend,
        })
    }

    /// Every layer a loss reads, for the workspace.
    pub fn taps(&self) -> Vec<Layer> {
        let mut out = self.content.clone();
        for l in &self.style {
            if !out.contains(l) {
                out.push(*l);
            }
        }
        out
    }

    /// The deepest of them: the network is built and run only that far.
    pub fn deepest(&self, arch: Architecture) -> Result<Layer> {
        let mut best = None;
        for l in self.taps() {
            let p = arch.layer_position(l)?;
            if best.is_none_or(|(bp, _)| p > bp) {
                best = Some((p, l));
            }
        }
        best.map(|(_, l)| l)
            .ok_or_else(|| Error::parameter("no loss layers"))
    }

    /// The objective for a content image at the working size and style images at their sizes.
    pub fn objective(
        &self,
        net: &Vgg,
        content: &Image,
        styles: &[Image],
        settings: &TransferSettings,
    ) -> Result<Objective> {
        let content_losses = if self.content.is_empty() {
            Vec::new()
        } else {
            net.features_of_image(&content.rgb, content.height, content.width, &self.content)?
                .into_iter()
                .zip(&self.content)
                .map(|(f, &l)| ContentLoss::new(l, f, 1.0))
                .collect()
        };
        let mut targets: Vec<Option<(Vec<f32>, usize)>> = vec![None; self.style.len()];
        if !self.style.is_empty() {
            for (image, &share) in styles.iter().zip(&self.blend) {
                let features =
                    net.features_of_image(&image.rgb, image.height, image.width, &self.style)?;
                for (slot, f) in targets.iter_mut().zip(&features) {
                    let g = normalized_gram(f);
                    let (acc, _) = slot.get_or_insert_with(|| (vec![0.0; g.len()], f.channels()));
                    for (a, v) in acc.iter_mut().zip(&g) {
                        *a += share as f32 * v;
                    }
                }
            }
        }
        let style_losses = targets
            .into_iter()
            .zip(&self.style)
            .zip(&self.style_weights)
            .filter_map(|((t, &l), &w)| t.map(|(g, c)| StyleLoss::from_target(l, g, c, w)))
            .collect();
        Objective::new(content_losses, style_losses, settings.weights)
    }
}

fn parse_all(arch: Architecture, names: &[String]) -> Result<Vec<Layer>> {
    let mut out = Vec::new();
    for n in names {
        let l = arch.parse_layer(n.trim())?;
        if out.contains(&l) {
            return Err(Error::parameter(format!("layer {l} is listed twice")));
        }
        out.push(l);
    }
    Ok(out)
}

fn check_weights(what: &str, values: &[f64]) -> Result<()> {
    match values.iter().find(|v| !v.is_finite() || **v < 0.0) {
        Some(v) => Err(Error::parameter(format!(
            "{what} must be a finite number ≥ 0, got {v}"
        ))),
        None => Ok(()),
    }
}
