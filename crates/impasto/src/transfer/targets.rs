//! Turns images and layer names into the objective: the content photo's features and the blended,
//! normalised Gram matrices of the style images, or with spatial control one masked style loss
//! per style and layer.

use crate::backend::Network;
use crate::image_io::{self, Image};
use crate::loss::{ContentLoss, Objective, SpatialMask, StyleLoss, Tiling};
use crate::model::{Architecture, Layer};
use crate::{Error, Result};

use super::{SpatialControl, TransferSettings};

/// The settings' layers, parsed for the chosen network (so a typo fails before any work).
#[derive(Clone, Debug)]
pub(crate) struct LayerPlan {
    pub content: Vec<Layer>,
    pub style: Vec<Layer>,
    /// w_l for each style layer.
    pub style_weights: Vec<f64>,
    /// Share of each style image, summing to 1.
    pub blend: Vec<f64>,
    /// Regions of the image under spatial control (one per style), 0 without masks.
    pub regions: usize,
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
                blend_shares(b)?
            }
        };
        let regions = match &settings.masks {
            None => 0,
            Some(control) => {
                if style.is_empty() {
                    return Err(Error::parameter(
                        "masks restrict the style loss, but there are no style layers",
                    ));
                }
                if settings.style_blend_weights.is_some() {
                    return Err(Error::parameter(
                        "style blend weights do not apply with masks: each style has its own \
                         region instead of a share of a blend",
                    ));
                }
                check_mask_counts(control, styles)?;
                // An empty region is a mistake best reported before any work; the check is
                // repeated at the working size, where it counts.
                region_masks(control, styles, |image| (image.height, image.width))?;
                for (i, mask) in control.style.iter().enumerate() {
                    if let Some(image) = mask {
                        mask_weights(image, image.height, image.width, &style_mask_name(i))?;
                    }
                }
                styles
            }
        };
        Ok(LayerPlan {
            content,
            style,
            style_weights,
            blend,
            regions,
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

    /// The objective for a content image at the working size and style images at their sizes,
    /// their features computed by the backend's network. With `tiling` every image runs tile by
    /// tile.
    pub fn objective(
        &self,
        net: &dyn Network,
        content: &Image,
        styles: &[Image],
        settings: &TransferSettings,
        tiling: Option<&Tiling>,
        style_losses: Option<&[StyleLoss]>,
    ) -> Result<Objective> {
        let size = |image: &Image| (image.width, image.height);
        let content_features = match self.content.is_empty() {
            true => Vec::new(),
            false => net.features(&content.rgb, size(content), &self.content, tiling)?,
        };
        let content_losses = (content_features.into_iter().zip(&self.content))
            .map(|(f, &l)| ContentLoss::new(l, f, 1.0))
            .collect();
        // Targets computed before for the same settings and size (a batch): the styles are not
        // looked at again.
        if let Some(losses) = style_losses {
            if settings.masks.is_some() {
                return Err(Error::parameter(
                    "style targets cannot be shared between transfers with masks",
                ));
            }
            return Objective::new(content_losses, losses.to_vec(), settings.weights);
        }
        if let Some(control) = &settings.masks {
            if tiling.is_some() {
                return Err(Error::parameter(
                    "spatial masks cannot be combined with tiling (use a smaller --size)",
                ));
            }
            let style_losses = self.masked_style_losses(net, content, styles, control)?;
            return Objective::new(content_losses, style_losses, settings.weights);
        }
        let mut targets: Vec<Option<(Vec<f32>, usize)>> = vec![None; self.style.len()];
        if !self.style.is_empty() {
            for (image, &share) in styles.iter().zip(&self.blend) {
                let grams = net.grams(&image.rgb, size(image), &self.style, None, tiling)?;
                for ((slot, g), l) in targets.iter_mut().zip(grams).zip(&self.style) {
                    let g = g.ok_or_else(|| {
                        Error::parameter(format!("the backend gave no Gram matrix at {l}"))
                    })?;
                    let channels = g.channels;
                    let (acc, _) =
                        slot.get_or_insert_with(|| (vec![0.0; g.values.len()], channels));
                    for (a, v) in acc.iter_mut().zip(&g.values) {
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

    /// For each style layer, one loss per style restricted to that style's region of the content.
    ///
    /// Region k's loss is weighted by its area share `a_k = M_k / M` (`M_k = Σ m²` at the layer,
    /// `M` its pixel count). The masked loss normalises its Gram matrix by `M_k`, so on its own
    /// each pixel's gradient would scale with `1/M_k`: a small region would be pushed far harder
    /// per pixel than a large one, and a partition into regions would weigh more in total than
    /// the unmasked style loss it replaces. With `a_k` the per-pixel gradient is
    /// `w_l m_p² F_p (G_k − Â_k) / (N² M)`, independent of the region's size, and the weights of
    /// a binary partition sum to `w_l`, so β keeps its meaning. (For soft masks `m` and `1 − m`
    /// the shares sum to less than 1 where they overlap, as each pixel's weight is `m²`.)
    fn masked_style_losses(
        &self,
        net: &dyn Network,
        content: &Image,
        styles: &[Image],
        control: &SpatialControl,
    ) -> Result<Vec<StyleLoss>> {
        let arch = net.architecture();
        let (h, w) = (content.height, content.width);
        let regions = region_masks(control, styles.len(), |_| (h, w))?;
        let mut targets = Vec::with_capacity(styles.len());
        for (i, image) in styles.iter().enumerate() {
            let (sh, sw) = (image.height, image.width);
            let mask = match control.style.get(i).and_then(Option::as_ref) {
                Some(m) => Some(mask_weights(m, sh, sw, &style_mask_name(i))?),
                None => None,
            };
            let vanished = |l: Layer| {
                Error::parameter(format!(
                    "{} keeps nothing of style image {} at {l}: its region lies in the rows or \
                     columns that pooling drops",
                    style_mask_name(i),
                    i + 1
                ))
            };
            let grams = net.grams(&image.rgb, (sw, sh), &self.style, mask.as_ref(), None)?;
            let per_layer = (grams.into_iter().zip(&self.style))
                .map(|(g, &l)| g.map(|g| (g.values, g.channels)).ok_or_else(|| vanished(l)))
                .collect::<Result<Vec<_>>>()?;
            targets.push(per_layer);
        }
        let mut losses = Vec::new();
        for (j, (&l, &w_l)) in self.style.iter().zip(&self.style_weights).enumerate() {
            for (region, style_targets) in regions.iter().zip(&targets) {
                let mask = region.at_layer(arch, l)?;
                let share = mask.area_share();
                // A region that pooling has shrunk to nothing at this layer has no statistics
                // there; skipping it saves a Gram matrix whose loss would be 0 anyway.
                if share == 0.0 {
                    continue;
                }
                let (g, c) = &style_targets[j];
                losses.push(StyleLoss::from_target(l, g.clone(), *c, w_l * share).with_mask(mask));
            }
        }
        Ok(losses)
    }

    /// Bytes the masks add to a transfer at `(width, height)` with styles at `style_sizes`: each
    /// region's mask at every style layer, and the masked copy of one layer's features that a
    /// masked Gram matrix is computed from.
    pub fn mask_bytes(
        &self,
        arch: Architecture,
        (width, height): (usize, usize),
        style_sizes: &[(usize, usize)],
    ) -> u64 {
        if self.regions == 0 {
            return 0;
        }
        let f32s = std::mem::size_of::<f32>() as u64;
        let specs = arch.conv_specs();
        let at = |l: Layer, (w, h): (usize, usize)| -> (u64, u64) {
            let (pools, block) = match l {
                Layer::Pool { block } | Layer::Conv { block, .. } | Layer::Relu { block, .. } => {
                    (l.pools_before(), block)
                }
            };
            let c = specs
                .iter()
                .find(|s| s.block == block)
                .map_or(0, |s| s.out_channels) as u64;
            let pixels = ((h >> pools) * (w >> pools)) as u64;
            (pixels, (((h >> pools) + 2) * ((w >> pools) + 2)) as u64 * c)
        };
        let masks: u64 = self.style.iter().map(|&l| at(l, (width, height)).0).sum();
        let scratch = std::iter::once((width, height))
            .chain(style_sizes.iter().copied())
            .flat_map(|size| self.style.iter().map(move |&l| at(l, size).1))
            .max()
            .unwrap_or(0);
        (self.regions as u64 * masks + scratch) * f32s
    }
}

fn style_mask_name(i: usize) -> String {
    format!("style mask {}", i + 1)
}

/// One mask per style image, or one mask for two styles: its white part for the first, its black
/// part for the second.
fn check_mask_counts(control: &SpatialControl, styles: usize) -> Result<()> {
    let content = control.content.len();
    if content != styles && !(content == 1 && styles == 2) {
        return Err(Error::parameter(format!(
            "{content} content masks for {styles} style images: give one mask per style image, \
             or one mask for two style images (the first where it is white, the second where it \
             is black)"
        )));
    }
    if !control.style.is_empty() && control.style.len() != styles {
        return Err(Error::parameter(format!(
            "{} style masks for {styles} style images: give one per style image (or none)",
            control.style.len()
        )));
    }
    Ok(())
}

/// Each style's region of the content image, at the size `size` gives for a mask image. Counts
/// must have been checked.
fn region_masks(
    control: &SpatialControl,
    styles: usize,
    size: impl Fn(&Image) -> (usize, usize),
) -> Result<Vec<SpatialMask>> {
    let mut regions = Vec::with_capacity(styles);
    for (i, image) in control.content.iter().enumerate() {
        let (h, w) = size(image);
        regions.push(mask_weights(
            image,
            h,
            w,
            &format!("content mask {}", i + 1),
        )?);
    }
    if regions.len() == 1 && styles == 2 {
        let rest = regions[0].complement();
        if rest.is_empty() {
            return Err(Error::parameter(
                "content mask 1 is entirely white, so style image 2 (its black part) would \
                 apply nowhere",
            ));
        }
        regions.push(rest);
    }
    Ok(regions)
}

/// A mask image's weights at `height × width`: brightness (mean of R, G, B) / 255, clamped to
/// [0, 1] since resampling rings around hard edges. A mask that weights nothing is refused,
/// naming it as `what`.
fn mask_weights(image: &Image, height: usize, width: usize, what: &str) -> Result<SpatialMask> {
    let resized = image_io::resize(image, width, height)?;
    let values = resized
        .rgb
        .chunks_exact(3)
        .map(|p| ((p[0] + p[1] + p[2]) / (3.0 * 255.0)).clamp(0.0, 1.0))
        .collect();
    let mask = SpatialMask::new(height, width, values)?;
    if mask.is_empty() {
        return Err(Error::parameter(format!(
            "{what} is entirely black: its style would apply nowhere"
        )));
    }
    Ok(mask)
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

/// Each blend weight's share of their sum. Divided by the largest first, so that weights whose
/// sum overflows (1e308 twice) keep their proportions instead of all becoming 0. Shared by
/// every blend of styles (the instant networks' too).
pub(crate) fn blend_shares(weights: &[f64]) -> Result<Vec<f64>> {
    let largest = weights.iter().copied().fold(0.0, f64::max);
    if largest <= 0.0 {
        return Err(Error::parameter("style blend weights sum to 0"));
    }
    let scaled: Vec<f64> = weights.iter().map(|w| w / largest).collect();
    // Each term is at most 1, so the sum is at most the count: finite.
    let sum: f64 = scaled.iter().sum();
    Ok(scaled.iter().map(|w| w / sum).collect())
}

fn check_weights(what: &str, values: &[f64]) -> Result<()> {
    match values.iter().find(|v| !v.is_finite() || **v < 0.0) {
        Some(v) => Err(Error::parameter(format!(
            "{what} must be a finite number ≥ 0, got {v}"
        ))),
        None => Ok(()),
    }
}
