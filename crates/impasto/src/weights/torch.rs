//! Tensors from PyTorch `torch.save` files, in the legacy (pre-zip) and zip formats.
//!
//! Opening a checkpoint parses its pickle and checks every tensor's storage reference (dtype,
//! element count, offset, contiguity) against the storages the file actually holds; reading a
//! tensor then copies its bytes out. Only contiguous little-endian tensors are supported.
//!
//! Legacy layout (`_use_new_zipfile_serialization=False`): five pickles — the magic number
//! [`LEGACY_MAGIC`], protocol version 1001, a sys-info dict, the object, the list of storage keys
//! — then, for each key in that order, an `i64` element count and the raw data.
//!
//! Zip layout: `<prefix>/data.pkl` and one entry `<prefix>/data/<key>` of raw bytes per storage.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use zip::ZipArchive;

use super::pickle::{self, Value};
use crate::{Error, Result};

/// The legacy format's magic number `0x1950a86a20f9469cfc6c`, as little-endian bytes.
pub const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// The legacy format's protocol version.
pub const LEGACY_PROTOCOL_VERSION: i64 = 1001;
/// Largest `data.pkl` accepted from a zip checkpoint: 1 MiB. torchvision's VGG16 features take
/// 2.3 kB (the test fixture), a whole VGG19 state dict with its classifier under 4 kB.
const MAX_PICKLE_BYTES: u64 = 1 << 20;

/// The first 14 bytes of every legacy-format checkpoint: `PROTO 2`, `LONG1` of 10 bytes, the magic.
pub const LEGACY_SIGNATURE: [u8; 14] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19,
];

/// Whether `head` (the first bytes of a file) starts a legacy-format checkpoint: a protocol-2
/// pickle of the magic number.
pub fn is_legacy(head: &[u8]) -> bool {
    head.starts_with(&LEGACY_SIGNATURE)
}

/// Element type of a storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// Whether [`Tensor::to_f32`] converts this dtype.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F64 | DType::F32 | DType::F16 | DType::BF16)
    }

    /// PyTorch's name, e.g. `float32`.
    pub fn name(self) -> &'static str {
        match self {
            DType::F64 => "float64",
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }

    /// The dtype of a `torch.<Name>Storage` class (or `UntypedStorage`, read as bytes).
    fn from_storage_class(module: &str, name: &str) -> Option<DType> {
        if module != "torch" && module != "torch.storage" {
            return None;
        }
        Some(match name {
            "DoubleStorage" => DType::F64,
            "FloatStorage" => DType::F32,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ShortStorage" => DType::I16,
            "CharStorage" => DType::I8,
            "ByteStorage" | "UntypedStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            _ => return None,
        })
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A contiguous tensor read from a checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// `numel × dtype.size()` little-endian bytes, row-major.
    pub data: Vec<u8>,
}

impl Tensor {
    pub fn numel(&self) -> usize {
        self.data.len() / self.dtype.size()
    }

    /// The values as `f32`, for floating-point dtypes (f64 and half types are converted);
    /// `None` for integer and bool tensors.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        let d = &self.data;
        Some(match self.dtype {
            DType::F32 => d
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::F64 => d
                .chunks_exact(8)
                .map(|c| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(c);
                    f64::from_le_bytes(a) as f32
                })
                .collect(),
            DType::F16 => d
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            DType::BF16 => d
                .chunks_exact(2)
                .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
                .collect(),
            _ => return None,
        })
    }
}

/// IEEE half to single precision (exact), by the `half` crate.
fn f16_to_f32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

/// Where a tensor's elements are, before they are read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Storage key (`data/<key>` in a zip).
    pub storage: String,
    /// First element within the storage (a legacy storage view's offset included).
    pub offset: usize,
    pub numel: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StorageInfo {
    dtype: DType,
    numel: usize,
}

enum Source {
    /// The whole file, and each storage's byte range in it.
    Legacy {
        data: Vec<u8>,
        ranges: HashMap<String, (usize, usize)>,
    },
    Zip {
        archive: Box<ZipArchive<Box<dyn ReadSeek>>>,
        prefix: String,
    },
}

/// What a zip checkpoint is read from: a file, or bytes in memory (the fuzz targets). Send and
/// Sync, as a `ZipArchive<File>` is, so that a checkpoint still is.
pub(crate) trait ReadSeek: Read + Seek + Send + Sync {}
impl<T: Read + Seek + Send + Sync> ReadSeek for T {}

/// An opened checkpoint: the tensors of its state dict, ready to be read.
pub struct Checkpoint {
    path: PathBuf,
    tensors: Vec<(String, TensorInfo)>,
    storages: HashMap<String, StorageInfo>,
    source: Source,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("tensors", &self.tensors)
            .finish_non_exhaustive()
    }
}

impl Checkpoint {
    /// Opens a zip or legacy checkpoint, telling them apart by content.
    pub fn open(path: &Path) -> Result<Checkpoint> {
        let mut head = [0u8; 14];
        let n = read_head(path, &mut head)?;
        if head[..n].starts_with(b"PK\x03\x04") || head[..n].starts_with(b"PK\x05\x06") {
            Checkpoint::open_zip(path)
        } else if is_legacy(&head[..n]) {
            let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            Checkpoint::from_legacy_bytes(path, data)
        } else {
            Err(Error::weights(
                path,
                "not a PyTorch checkpoint (neither a zip archive nor the legacy pickle format)",
            ))
        }
    }

    /// Parses a legacy-format checkpoint held in memory; `path` is only used in messages.
    pub fn from_legacy_bytes(path: &Path, data: Vec<u8>) -> Result<Checkpoint> {
        let bad = |m: String| Error::weights(path, m);
        let pickle_err = |what: &str, e: pickle::PickleError| bad(format!("{what}: {e}"));
        if data.is_empty() {
            return Err(bad("empty file".into()));
        }

        let (magic, pos) = pickle::parse_at(&data, 0).map_err(|e| pickle_err("magic number", e))?;
        if magic != Value::BigInt(LEGACY_MAGIC.to_vec()) {
            return Err(bad(
                "not a legacy PyTorch checkpoint (wrong magic number)".into()
            ));
        }
        let (version, pos) =
            pickle::parse_at(&data, pos).map_err(|e| pickle_err("protocol version", e))?;
        if version != Value::Int(LEGACY_PROTOCOL_VERSION) {
            return Err(bad(format!(
                "unsupported legacy protocol version {version:?} (expected {LEGACY_PROTOCOL_VERSION})"
            )));
        }
        let (sys_info, pos) =
            pickle::parse_at(&data, pos).map_err(|e| pickle_err("sys info", e))?;
        match sys_info.get("little_endian") {
            Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => {
                return Err(bad("big-endian checkpoints are not supported".into()))
            }
            _ => return Err(bad("sys info has no `little_endian` flag".into())),
        }
        let (root, pos) = pickle::parse_at(&data, pos).map_err(|e| pickle_err("state dict", e))?;
        let (tensors, storages) = collect_tensors(path, &root)?;
        let (keys, mut pos) =
            pickle::parse_at(&data, pos).map_err(|e| pickle_err("storage key list", e))?;
        let keys = keys
            .as_sequence()
            .ok_or_else(|| bad(format!("storage key list is a {}", keys.kind())))?;

        let mut ranges = HashMap::new();
        for key in keys {
            let key = storage_key(key)
                .ok_or_else(|| bad(format!("storage key list holds a {}", key.kind())))?;
            let info = storages.get(&key).ok_or_else(|| {
                bad(format!(
                    "storage `{key}` is stored but no tensor refers to it"
                ))
            })?;
            if ranges.contains_key(&key) {
                return Err(bad(format!("storage `{key}` is stored twice")));
            }
            let remaining = data.len() - pos;
            if remaining < 8 {
                return Err(bad(format!(
                    "truncated: storage `{key}` has no element count ({remaining} bytes left)"
                )));
            }
            let mut count = [0u8; 8];
            count.copy_from_slice(&data[pos..pos + 8]);
            let count = i64::from_le_bytes(count);
            pos += 8;
            if usize::try_from(count).ok() != Some(info.numel) {
                return Err(bad(format!(
                    "storage `{key}` holds {count} elements but the state dict says {}",
                    info.numel
                )));
            }
            let bytes = info
                .numel
                .checked_mul(info.dtype.size())
                .ok_or_else(|| bad(format!("storage `{key}` is impossibly large")))?;
            let remaining = data.len() - pos;
            if bytes > remaining {
                return Err(bad(format!(
                    "truncated: storage `{key}` needs {bytes} bytes but only {remaining} remain"
                )));
            }
            ranges.insert(key, (pos, pos + bytes));
            pos += bytes;
        }
        if let Some(missing) = storages.keys().find(|k| !ranges.contains_key(*k)) {
            return Err(bad(format!(
                "storage `{missing}` is referenced but not stored"
            )));
        }
        if pos != data.len() {
            return Err(bad(format!(
                "{} unexpected bytes after the last storage",
                data.len() - pos
            )));
        }
        Ok(Checkpoint {
            path: path.to_path_buf(),
            tensors,
            storages,
            source: Source::Legacy { data, ranges },
        })
    }

    /// Opens a zip-format checkpoint (`<prefix>/data.pkl`, `<prefix>/data/<key>`).
    pub fn open_zip(path: &Path) -> Result<Checkpoint> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        Checkpoint::from_zip_reader(path, Box::new(file))
    }

    /// [`Checkpoint::open_zip`] on a zip read from `source`; `path` only names it in messages.
    pub(crate) fn from_zip_reader(path: &Path, source: Box<dyn ReadSeek>) -> Result<Checkpoint> {
        let bad = |m: String| Error::weights(path, m);
        let mut archive = ZipArchive::new(source)
            .map_err(|e| bad("not a valid zip archive".into()).with_source(e))?;
        let pickles: Vec<String> = archive
            .file_names()
            .filter_map(|n| n.ok())
            .filter(|n| {
                n.strip_suffix("/data.pkl")
                    .is_some_and(|p| !p.is_empty() && !p.contains('/'))
            })
            .map(|n| n.into_owned())
            .collect();
        let pkl_name = match pickles.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(bad(
                    "zip archive has no <dir>/data.pkl: not a PyTorch checkpoint".into(),
                ))
            }
            many => {
                return Err(bad(format!(
                    "zip archive has several checkpoints: {}",
                    many.join(", ")
                )))
            }
        };
        let prefix = pkl_name.trim_end_matches("data.pkl").to_string();

        if archive
            .index_for_name(&format!("{prefix}byteorder"))
            .is_some()
        {
            let order = read_entry(path, &mut archive, &format!("{prefix}byteorder"), 16)?;
            if order != b"little" {
                return Err(bad(format!(
                    "byte order `{}` is not supported (only little-endian)",
                    String::from_utf8_lossy(&order)
                )));
            }
        }

        let pkl = read_entry(path, &mut archive, &pkl_name, MAX_PICKLE_BYTES)?;
        let root = pickle::parse(&pkl).map_err(|e| bad(format!("{pkl_name}: {e}")))?;
        let (tensors, storages) = collect_tensors(path, &root)?;

        for (key, info) in &storages {
            let name = format!("{prefix}data/{key}");
            let expected = (info.numel as u64) * (info.dtype.size() as u64);
            let entry = archive.by_name(&name).map_err(|_| {
                bad(format!(
                    "storage `{key}` is missing ({name} not in the zip)"
                ))
            })?;
            if entry.size() != expected {
                return Err(bad(format!(
                    "storage `{key}`: {name} holds {} bytes, expected {expected} ({} × {})",
                    entry.size(),
                    info.numel,
                    info.dtype
                )));
            }
            // Deflate cannot expand more than ~1032:1; a larger claim is a corrupt directory.
            if entry.size()
                > entry
                    .compressed_size()
                    .saturating_mul(1032)
                    .saturating_add(1024)
            {
                return Err(bad(format!(
                    "storage `{key}`: {name} claims {} bytes from {} compressed (corrupt)",
                    entry.size(),
                    entry.compressed_size()
                )));
            }
        }
        Ok(Checkpoint {
            path: path.to_path_buf(),
            tensors,
            storages,
            source: Source::Zip {
                archive: Box::new(archive),
                prefix,
            },
        })
    }

    /// Tensor names in the order the state dict lists them.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|(n, _)| n.as_str())
    }

    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, i)| i)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.info(name).is_some()
    }

    /// Reads one tensor's data.
    pub fn read(&mut self, name: &str) -> Result<Tensor> {
        let path = self.path.clone();
        let bad = |m: String| Error::weights(&path, m);
        let info = self
            .info(name)
            .cloned()
            .ok_or_else(|| bad(format!("no tensor `{name}`")))?;
        let es = info.dtype.size();
        let start = info.offset * es;
        let end = start + info.numel * es; // checked against the storage size when opened
        let data = match &mut self.source {
            Source::Legacy { data, ranges } => {
                let &(s, _) = ranges
                    .get(&info.storage)
                    .ok_or_else(|| bad(format!("storage `{}` is not stored", info.storage)))?;
                data.get(s + start..s + end)
                    .ok_or_else(|| bad(format!("tensor `{name}` lies outside the file")))?
                    .to_vec()
            }
            Source::Zip { archive, prefix } => {
                let storage = *self
                    .storages
                    .get(&info.storage)
                    .ok_or_else(|| bad(format!("storage `{}` is not stored", info.storage)))?;
                let expected = (storage.numel * storage.dtype.size()) as u64;
                let entry = format!("{prefix}data/{}", info.storage);
                let bytes = read_entry(&path, archive, &entry, expected)?;
                if bytes.len() as u64 != expected {
                    return Err(bad(format!(
                        "{entry}: read {} bytes, expected {expected}",
                        bytes.len()
                    )));
                }
                if start == 0 && end == bytes.len() {
                    bytes
                } else {
                    bytes
                        .get(start..end)
                        .ok_or_else(|| bad(format!("tensor `{name}` lies outside its storage")))?
                        .to_vec()
                }
            }
        };
        Ok(Tensor {
            dtype: info.dtype,
            shape: info.shape,
            data,
        })
    }
}

/// Reads up to `head.len()` bytes from the start of a file.
pub(crate) fn read_head(path: &Path, head: &mut [u8]) -> Result<usize> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok(n)
}

/// Reads a whole zip entry, refusing entries larger than `max` bytes. The zip reader checks the
/// CRC when it reaches the end of the entry.
pub(crate) fn read_entry<R: Read + Seek>(
    path: &Path,
    archive: &mut ZipArchive<R>,
    name: &str,
    max: u64,
) -> Result<Vec<u8>> {
    let bad = |m: String| Error::weights(path, m);
    let entry = archive
        .by_name(name)
        .map_err(|e| bad(format!("{name}: {e}")))?;
    let size = entry.size();
    if size > max {
        return Err(bad(format!(
            "{name} is {size} bytes, more than the {max} expected"
        )));
    }
    // The declared size may lie: reserve a bounded amount and let the real data decide.
    let mut out = Vec::with_capacity(size.min(64 << 20) as usize);
    entry
        .take(max.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| bad(format!("{name}: {e}")))?;
    if out.len() as u64 != size {
        return Err(bad(format!(
            "{name}: read {} bytes but the zip directory says {size}",
            out.len()
        )));
    }
    Ok(out)
}

/// A storage key as written by torch: a string (or, defensively, an integer).
fn storage_key(v: &Value) -> Option<String> {
    match v {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

type Collected = (Vec<(String, TensorInfo)>, HashMap<String, StorageInfo>);

/// Finds the state dict in a checkpoint's root object and describes each tensor in it.
fn collect_tensors(path: &Path, root: &Value) -> Result<Collected> {
    let bad = |m: String| Error::weights(path, m);
    let mut items = dict_items(root).ok_or_else(|| {
        bad(format!(
            "the checkpoint holds a {}, not a state dict",
            root.kind()
        ))
    })?;
    // A training checkpoint that wraps the state dict: `{"state_dict": {...}, "epoch": ...}`.
    if !items.iter().any(|(_, v)| tensor_call(v).is_some()) {
        if let Some(inner) = items
            .iter()
            .find(|(k, _)| k.as_str() == Some("state_dict"))
            .and_then(|(_, v)| dict_items(v))
        {
            items = inner;
        }
    }

    let mut tensors: Vec<(String, TensorInfo)> = Vec::new();
    let mut storages: HashMap<String, StorageInfo> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for (key, value) in items {
        let Some(args) = tensor_call(value).transpose().map_err(|m| {
            bad(format!(
                "`{}`: {m}",
                key.as_str().unwrap_or("<non-string key>")
            ))
        })?
        else {
            continue; // not a tensor (e.g. an epoch counter): ignored
        };
        let name = key
            .as_str()
            .ok_or_else(|| bad(format!("a tensor's key is a {}, not a string", key.kind())))?;
        if !seen.insert(name.to_string()) {
            return Err(bad(format!("tensor `{name}` appears twice")));
        }
        let (info, storage) =
            tensor_info(args).map_err(|m| bad(format!("tensor `{name}`: {m}")))?;
        match storages.get(&info.storage) {
            Some(s) if *s != storage => {
                return Err(bad(format!(
                    "storage `{}` is described inconsistently ({} × {} and {} × {})",
                    info.storage, s.numel, s.dtype, storage.numel, storage.dtype
                )))
            }
            _ => {
                storages.insert(info.storage.clone(), storage);
            }
        }
        tensors.push((name.to_string(), info));
    }
    Ok((tensors, storages))
}

/// The items of a dict, or of an `OrderedDict` with state (`BUILD` of a dict).
fn dict_items(v: &Value) -> Option<&[(Value, Value)]> {
    match v {
        Value::Dict(d) => Some(d),
        Value::Build { object, .. } => object.as_dict(),
        _ => None,
    }
}

/// If `v` rebuilds a tensor, the arguments of `_rebuild_tensor_v2`; an error for tensor kinds we
/// cannot read; `None` for anything else.
fn tensor_call(v: &Value) -> Option<std::result::Result<&[Value], String>> {
    let Value::Call { callable, args } = v else {
        return None;
    };
    let Value::Global { module, name } = callable.as_ref() else {
        return None;
    };
    if module != "torch._utils" {
        return None;
    }
    let args = args.as_sequence()?;
    match name.as_str() {
        "_rebuild_tensor_v2" | "_rebuild_tensor" => Some(Ok(args)),
        // nn.Parameter(tensor, requires_grad, hooks)
        "_rebuild_parameter" | "_rebuild_parameter_with_state" => match args.first() {
            Some(inner) => {
                tensor_call(inner).or_else(|| Some(Err(format!("{name} of a {}", inner.kind()))))
            }
            None => Some(Err(format!("{name} without arguments"))),
        },
        other => Some(Err(format!(
            "unsupported tensor kind torch._utils.{other} (only plain dense tensors)"
        ))),
    }
}

fn usize_of(v: &Value, what: &str) -> std::result::Result<usize, String> {
    match v {
        Value::Int(i) if *i >= 0 => {
            usize::try_from(*i).map_err(|_| format!("{what} {i} too large"))
        }
        Value::Int(i) => Err(format!("negative {what} {i}")),
        other => Err(format!("{what} is a {}, expected an int", other.kind())),
    }
}

fn usize_list(v: &Value, what: &str) -> std::result::Result<Vec<usize>, String> {
    v.as_sequence()
        .ok_or_else(|| format!("{what} is a {}, expected a tuple", v.kind()))?
        .iter()
        .map(|x| usize_of(x, what))
        .collect()
}

/// Interprets `_rebuild_tensor_v2(storage, offset, size, stride, ...)`.
fn tensor_info(args: &[Value]) -> std::result::Result<(TensorInfo, StorageInfo), String> {
    if args.len() < 4 {
        return Err(format!("_rebuild_tensor_v2 with {} arguments", args.len()));
    }
    let Value::PersistentId(pid) = &args[0] else {
        return Err(format!(
            "storage is a {}, expected a persistent id",
            args[0].kind()
        ));
    };
    let pid = pid
        .as_sequence()
        .ok_or_else(|| format!("storage id is a {}", pid.kind()))?;
    if pid.len() < 5 || pid[0].as_str() != Some("storage") {
        return Err(format!("unrecognised storage id {pid:?}"));
    }
    let dtype = match &pid[1] {
        Value::Global { module, name } => DType::from_storage_class(module, name)
            .ok_or_else(|| format!("unsupported storage type {module}.{name}"))?,
        other => return Err(format!("storage type is a {}", other.kind())),
    };
    let key = storage_key(&pid[2]).ok_or_else(|| format!("storage key is a {}", pid[2].kind()))?;
    let storage_numel = usize_of(&pid[4], "storage size")?;

    // Legacy storage views: (view_key, offset, size) within the root storage.
    let (base, limit) = match pid.get(5) {
        None | Some(Value::None) => (0, storage_numel),
        Some(Value::Tuple(view)) if view.len() == 3 => {
            let off = usize_of(&view[1], "storage view offset")?;
            let len = usize_of(&view[2], "storage view size")?;
            if off.checked_add(len).is_none_or(|end| end > storage_numel) {
                return Err(format!(
                    "storage view [{off}, +{len}) exceeds storage `{key}` of {storage_numel} elements"
                ));
            }
            (off, len)
        }
        Some(other) => return Err(format!("storage view metadata is a {}", other.kind())),
    };

    let offset = usize_of(&args[1], "storage offset")?;
    let shape = usize_list(&args[2], "size")?;
    let stride = usize_list(&args[3], "stride")?;
    if shape.len() != stride.len() {
        return Err(format!(
            "size {shape:?} and stride {stride:?} have different lengths"
        ));
    }
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("size {shape:?} overflows"))?;
    if numel > 0 {
        let mut expected = 1usize;
        for (&d, &s) in shape.iter().zip(&stride).rev() {
            if d != 1 && s != expected {
                return Err(format!(
                    "not contiguous (size {shape:?}, stride {stride:?}); only contiguous tensors are supported"
                ));
            }
            expected *= d;
        }
    }
    if offset.checked_add(numel).is_none_or(|end| end > limit) {
        return Err(format!(
            "elements [{offset}, {offset}+{numel}) lie outside storage `{key}` of {limit} elements"
        ));
    }
    if storage_numel.checked_mul(dtype.size()).is_none() {
        return Err(format!("storage `{key}` is impossibly large"));
    }
    Ok((
        TensorInfo {
            dtype,
            shape,
            storage: key,
            offset: base + offset,
            numel,
        },
        StorageInfo {
            dtype,
            numel: storage_numel,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_conversion() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn legacy_sniffing() {
        // python3: pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2)
        assert!(is_legacy(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."));
        assert!(!is_legacy(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x18."));
        assert!(!is_legacy(b"\x80\x02"));
    }

    fn s(x: &str) -> Value {
        Value::Str(x.into())
    }

    fn global(m: &str, n: &str) -> Value {
        Value::Global {
            module: m.into(),
            name: n.into(),
        }
    }

    fn ints(v: &[i64]) -> Value {
        Value::Tuple(v.iter().map(|&i| Value::Int(i)).collect())
    }

    fn rebuild(storage_numel: i64, offset: i64, size: &[i64], stride: &[i64]) -> Vec<Value> {
        vec![
            Value::PersistentId(Box::new(Value::Tuple(vec![
                s("storage"),
                global("torch", "FloatStorage"),
                s("0"),
                s("cpu"),
                Value::Int(storage_numel),
            ]))),
            Value::Int(offset),
            ints(size),
            ints(stride),
            Value::Bool(false),
        ]
    }

    #[test]
    fn tensor_info_checks_contiguity_and_bounds() {
        let (info, storage) = tensor_info(&rebuild(24, 0, &[2, 3, 4], &[12, 4, 1])).unwrap();
        assert_eq!((info.numel, info.offset, storage.numel), (24, 0, 24));
        // Size-1 dimensions may have any stride.
        assert!(tensor_info(&rebuild(24, 0, &[2, 1, 12], &[12, 99, 1])).is_ok());
        // A transposed view is refused.
        let e = tensor_info(&rebuild(24, 0, &[4, 6], &[1, 4])).unwrap_err();
        assert!(e.contains("not contiguous"), "{e}");
        // Offset past the end.
        let e = tensor_info(&rebuild(24, 1, &[24], &[1])).unwrap_err();
        assert!(e.contains("outside storage"), "{e}");
        // Huge sizes overflow instead of wrapping.
        let e = tensor_info(&rebuild(24, 0, &[1 << 40, 1 << 40], &[1 << 40, 1])).unwrap_err();
        assert!(e.contains("overflows"), "{e}");
        let e = tensor_info(&rebuild(24, -1, &[2], &[1])).unwrap_err();
        assert!(e.contains("negative storage offset"), "{e}");
    }

    #[test]
    fn legacy_storage_views_offset_into_the_root_storage() {
        let mut args = rebuild(100, 2, &[5], &[1]);
        if let Value::PersistentId(pid) = &mut args[0] {
            if let Value::Tuple(t) = pid.as_mut() {
                t.push(Value::Tuple(vec![
                    s("view"),
                    Value::Int(40),
                    Value::Int(10),
                ]));
            }
        }
        let (info, storage) = tensor_info(&args).unwrap();
        assert_eq!((info.offset, info.numel, storage.numel), (42, 5, 100));
        // The tensor must fit in the view, and the view in the storage.
        args[1] = Value::Int(6);
        assert!(tensor_info(&args).unwrap_err().contains("outside storage"));
        if let Value::PersistentId(pid) = &mut args[0] {
            if let Value::Tuple(t) = pid.as_mut() {
                t[5] = Value::Tuple(vec![s("view"), Value::Int(95), Value::Int(10)]);
            }
        }
        assert!(tensor_info(&args).unwrap_err().contains("exceeds storage"));
    }

    /// A zip checkpoint under `archive/` holding `data.pkl` only.
    fn zip_with_pickle(path: &Path, pkl: &[u8]) {
        use std::io::Write;
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        let mut z = zip::ZipWriter::new(File::create(path).unwrap());
        z.start_file("archive/data.pkl", opts).unwrap();
        z.write_all(pkl).unwrap();
        z.finish().unwrap();
    }

    #[test]
    fn data_pkl_over_the_cap_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.pth");
        // A valid pickle (an empty dict and padding the reader would have to walk) just over
        // the cap: refused from the zip directory's size.
        let mut pkl = b"\x80\x02}".to_vec();
        pkl.resize(MAX_PICKLE_BYTES as usize, b'N');
        pkl.extend(b"0.");
        zip_with_pickle(&path, &pkl);
        let e = Checkpoint::open_zip(&path).unwrap_err().to_string();
        assert!(
            e.contains("archive/data.pkl is 1048578 bytes, more than the 1048576 expected"),
            "{e}"
        );
    }

    #[test]
    fn a_real_checkpoint_is_far_within_the_pickle_bounds() {
        let pth = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/reference/vgg16_torchvision_format_random.pth");
        let mut archive = ZipArchive::new(File::open(&pth).unwrap()).unwrap();
        let name = "vgg16_torchvision_format_random/data.pkl";
        let pkl = read_entry(&pth, &mut archive, name, MAX_PICKLE_BYTES).unwrap();
        let (_, _, (objects, payload)) = pickle::parse_measured(&pkl, 0).unwrap();
        eprintln!(
            "{name}: {} bytes, {objects} objects, {payload} bytes of strings",
            pkl.len()
        );
        // VGG19 with its classifier has 38 tensors to VGG16 features' 26: at least a hundred
        // times the headroom even then.
        assert!(pkl.len() as u64 * 100 <= MAX_PICKLE_BYTES, "{}", pkl.len());
        assert!(objects * 100 <= pickle::MAX_OBJECTS, "{objects}");
        assert!(payload * 100 <= pickle::MAX_PAYLOAD_BYTES, "{payload}");
    }

    #[test]
    fn storage_types() {
        let mut args = rebuild(4, 0, &[4], &[1]);
        if let Value::PersistentId(pid) = &mut args[0] {
            if let Value::Tuple(t) = pid.as_mut() {
                t[1] = global("torch", "ComplexFloatStorage");
            }
        }
        let e = tensor_info(&args).unwrap_err();
        assert!(
            e.contains("unsupported storage type torch.ComplexFloatStorage"),
            "{e}"
        );
        assert_eq!(
            DType::from_storage_class("torch", "HalfStorage"),
            Some(DType::F16)
        );
        assert_eq!(DType::from_storage_class("os", "FloatStorage"), None);
    }
}
