//! torchvision VGG16/VGG19 checkpoints: `features.N.weight` `[out, in, 3, 3]` and
//! `features.N.bias` `[out]`, N being the convolution's index in the `features` Sequential.
//! `classifier.*` is ignored. The network expects torchvision's normalised RGB input.

use std::collections::BTreeSet;
use std::path::Path;

use super::torch::Checkpoint;
use super::{ConvParams, VggWeights};
use crate::model::{Architecture, InputConvention};
use crate::{Error, Result};

/// The key prefix of the feature stack: `features.`, or `module.features.` for checkpoints saved
/// from a `DataParallel` wrapper.
fn prefix(ckpt: &Checkpoint) -> Option<&'static str> {
    ["features.", "module.features."]
        .into_iter()
        .find(|p| ckpt.names().any(|n| n.starts_with(p)))
}

/// Whether a checkpoint has torchvision's key layout.
pub fn is_torchvision(ckpt: &Checkpoint) -> bool {
    prefix(ckpt).is_some()
}

/// The architecture whose convolution indices are exactly the `features.N.weight` present.
pub fn detect_architecture(ckpt: &Checkpoint) -> std::result::Result<Architecture, String> {
    let prefix = prefix(ckpt).ok_or("no `features.N.weight` keys")?;
    if ckpt
        .names()
        .any(|n| n.starts_with(prefix) && n.ends_with(".running_mean"))
    {
        return Err(
            "this is a batch-norm VGG (vgg16_bn/vgg19_bn), which is not supported".to_string(),
        );
    }
    let found: BTreeSet<usize> = ckpt
        .names()
        .filter_map(|n| {
            n.strip_prefix(prefix)?
                .strip_suffix(".weight")?
                .parse()
                .ok()
        })
        .collect();
    let indices = |a: Architecture| -> BTreeSet<usize> {
        a.conv_specs().iter().map(|s| s.torchvision_index).collect()
    };
    for arch in [Architecture::Vgg16, Architecture::Vgg19] {
        if found == indices(arch) {
            return Ok(arch);
        }
    }
    Err(format!(
        "{prefix}N.weight indices {found:?} match neither VGG16 {:?} nor VGG19 {:?}",
        indices(Architecture::Vgg16),
        indices(Architecture::Vgg19)
    ))
}

/// Reads the convolutions. With `hint`, the detected architecture must match it.
pub fn from_checkpoint(
    path: &Path,
    ckpt: &mut Checkpoint,
    source_sha256: String,
    hint: Option<Architecture>,
) -> Result<VggWeights> {
    let bad = |m: String| Error::weights(path, m);
    let arch = detect_architecture(ckpt).map_err(bad)?;
    if let Some(h) = hint {
        if h != arch {
            return Err(bad(format!("expected {h} weights, found {arch}")));
        }
    }
    let prefix = prefix(ckpt).unwrap_or("features.");
    let mut convs = Vec::new();
    for spec in arch.conv_specs() {
        let (out_c, in_c) = (spec.out_channels, spec.in_channels);
        let wname = format!("{prefix}{}.weight", spec.torchvision_index);
        let bname = format!("{prefix}{}.bias", spec.torchvision_index);
        // Shapes and dtypes are checked before any data is read.
        for (name, shape) in [(&wname, vec![out_c, in_c, 3, 3]), (&bname, vec![out_c])] {
            let info = ckpt
                .info(name)
                .ok_or_else(|| bad(format!("missing tensor `{name}` ({})", spec.name())))?;
            if info.shape != shape || !info.dtype.is_float() {
                return Err(bad(format!(
                    "{name} ({}) is {} {:?}, expected float {shape:?}",
                    spec.name(),
                    info.dtype,
                    info.shape
                )));
            }
        }
        let read = |ckpt: &mut Checkpoint, name: &str| -> Result<Vec<f32>> {
            let t = ckpt.read(name)?;
            t.to_f32()
                .ok_or_else(|| bad(format!("{name} is {}, expected float", t.dtype)))
        };
        let weight = read(ckpt, &wname)?;
        let bias = read(ckpt, &bname)?;
        convs.push(ConvParams { weight, bias });
    }
    let source = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "torchvision checkpoint".to_string());
    let weights = VggWeights {
        architecture: arch,
        convention: InputConvention::TorchvisionRgb,
        convs,
        source,
        source_sha256,
    };
    weights.validate(path)?;
    Ok(weights)
}
