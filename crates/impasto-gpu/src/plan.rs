//! Which stages (a convolution with its ReLU, or a pooling) an image goes through up to the
//! deepest layer a loss reads, and the shape of each stage's output at one image size.

use impasto::model::{Architecture, Layer};
use impasto::{Error, Result};

/// One step of the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Convolution number `conv` (in [`Architecture::conv_specs`] order) and its ReLU.
    Conv {
        conv: usize,
        block: usize,
        index: usize,
    },
    /// The 2×2 pooling closing `block`.
    Pool { block: usize },
}

/// The stages of `arch` in order (all of them).
pub(crate) fn stages(arch: Architecture) -> Vec<Stage> {
    let mut out = Vec::new();
    let mut conv = 0;
    for layer in arch.layers() {
        match layer {
            Layer::Conv { block, index } => {
                out.push(Stage::Conv { conv, block, index });
                conv += 1;
            }
            Layer::Pool { block } => out.push(Stage::Pool { block }),
            Layer::Relu { .. } => {}
        }
    }
    out
}

/// The stage computing `layer`, and whether the layer is the convolution's output before its
/// ReLU (a `conv{b}_{i}` layer) rather than after it.
pub(crate) fn stage_of(arch: Architecture, layer: Layer) -> Result<(usize, bool)> {
    arch.layer_position(layer)?;
    let found = stages(arch).iter().position(|s| match (*s, layer) {
        (Stage::Conv { block, index, .. }, Layer::Conv { block: b, index: i })
        | (Stage::Conv { block, index, .. }, Layer::Relu { block: b, index: i }) => {
            block == b && index == i
        }
        (Stage::Pool { block }, Layer::Pool { block: b }) => block == b,
        _ => false,
    });
    let s = found.ok_or_else(|| Error::new(impasto::ErrorKind::UnknownLayer, layer.to_string()))?;
    Ok((s, matches!(layer, Layer::Conv { .. })))
}

/// The stages to run for `taps` on an `h × w` image, with each stage's output shape
/// `(h, w, c)`; `channels[i]` is convolution i's output channels.
#[allow(clippy::type_complexity)]
pub(crate) fn shapes(
    arch: Architecture,
    channels: &[usize],
    (h, w): (usize, usize),
    taps: &[Layer],
) -> Result<Vec<(Stage, (usize, usize, usize))>> {
    if h == 0 || w == 0 {
        return Err(Error::new(
            impasto::ErrorKind::Parameter,
            format!("image size {w}×{h} is empty"),
        ));
    }
    let mut depth = 0;
    for &t in taps {
        depth = depth.max(stage_of(arch, t)?.0 + 1);
    }
    let mut out = Vec::with_capacity(depth);
    let (mut hh, mut ww, mut c) = (h, w, 3);
    for stage in stages(arch).into_iter().take(depth) {
        match stage {
            Stage::Conv { conv, .. } => {
                c = *channels.get(conv).ok_or_else(|| {
                    Error::new(
                        impasto::ErrorKind::Parameter,
                        format!(
                            "this network was built with its first {} convolutions only, too \
                             few for the layers asked for",
                            channels.len()
                        ),
                    )
                })?;
            }
            Stage::Pool { block } => {
                if hh < 2 || ww < 2 {
                    return Err(Error::new(
                        impasto::ErrorKind::Parameter,
                        format!(
                            "a {w}×{h} image is too small to reach pool{block} (it halves the \
                             size {block} times)"
                        ),
                    ));
                }
                hh /= 2;
                ww /= 2;
            }
        }
        out.push((stage, (hh, ww, c)));
    }
    Ok(out)
}
