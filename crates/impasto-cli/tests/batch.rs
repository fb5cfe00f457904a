//! `impasto transfer` over many photos, end to end on the real weights at tiny sizes: outputs
//! named from the inputs, finished ones skipped on a rerun, a bad photo reported and passed over
//! (exit 1), the JSON report, shards from flags and from a scheduler's environment, the plain
//! progress lines a log gets, and a SIGTERM that keeps the photo in progress as a partial image.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{real_weights, shared, stderr};
use impasto::image_io::{self, Image};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn style() -> PathBuf {
    shared().join("images/starry_night.jpg")
}

/// `n` small photos `p0.png`… in `dir`.
fn photos(dir: &Path, n: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|i| {
            let (w, h) = (40 + 4 * i, 30);
            let rgb = (0..w * h * 3)
                .map(|k| ((k * (3 + i) + 50 * i) % 256) as f32)
                .collect();
            let p = dir.join(format!("p{i}.png"));
            image_io::save(&Image::new(w, h, rgb, None).unwrap(), &p).unwrap();
            p
        })
        .collect()
}

/// The batch command with the real weights, tiny and short.
fn command(home: &Path, args: &[&str]) -> Command {
    command_with_iterations(home, args, "3")
}

/// [`command`] with `iterations` per photo.
fn command_with_iterations(home: &Path, args: &[&str], iterations: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_impasto"));
    c.arg("transfer")
        .args(args)
        .args([
            "--style",
            s(&style()),
            "--size",
            "32",
            "--iterations",
            iterations,
        ])
        .args(["--weights", s(real_weights())])
        .env("IMPASTO_HOME", home)
        .env_remove("IMPASTO_LOG")
        .env_remove("IMPASTO_PROGRESS_SECONDS");
    for var in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "JOB_COMPLETION_INDEX",
        "IMPASTO_SHARD_INDEX",
        "IMPASTO_SHARD_COUNT",
        "AWS_BATCH_JOB_ARRAY_INDEX",
        "AWS_BATCH_JOB_ARRAY_SIZE",
    ] {
        c.env_remove(var);
    }
    c
}

fn run(home: &Path, args: &[&str]) -> Output {
    command(home, args).output().unwrap()
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn outcomes(report: &serde_json::Value) -> Vec<(String, String)> {
    report["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let name = Path::new(i["content"].as_str().unwrap())
                .file_name()
                .unwrap();
            (
                name.to_string_lossy().into_owned(),
                i["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn a_folder_is_styled_resumed_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("in");
    photos(&input, 3);
    std::fs::write(input.join("p1x.jpg"), b"not a jpeg").unwrap();
    let out = d.join("out");
    let rep = d.join("report.json");
    let args = [
        "--content",
        s(&input),
        "--output",
        s(&out),
        "--report",
        s(&rep),
    ];

    let o = run(d, &args);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a failed photo fails the run: {err}"
    );
    assert!(err.contains("3 succeeded, 0 skipped, 1 failed"), "{err}");
    assert!(err.contains("p1x.jpg: FAILED"), "{err}");
    assert!(err.contains("1 of 4 photos failed"), "{err}");
    for i in 0..3 {
        let written = image_io::load(&out.join(format!("p{i}-starry_night.png"))).unwrap();
        assert_eq!(written.long_side(), 32);
    }
    assert!(!out.join("p1x-starry_night.png").exists());
    let r = report(&rep);
    assert_eq!(
        outcomes(&r),
        pairs(&[
            ("p0.png", "succeeded"),
            ("p1.png", "succeeded"),
            ("p1x.jpg", "failed"),
            ("p2.png", "succeeded")
        ])
    );
    assert_eq!(r["summary"]["failed"], 1);
    assert!(r["items"][2]["error"].as_str().unwrap().contains("p1x.jpg"));

    // Rerun without the bad photo: everything is done already, nothing is rewritten.
    std::fs::remove_file(input.join("p1x.jpg")).unwrap();
    let kept = std::fs::read(out.join("p0-starry_night.png")).unwrap();
    let modified = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let when = modified(&out.join("p0-starry_night.png"));
    std::fs::remove_file(out.join("p2-starry_night.png")).unwrap();
    let o = run(d, &args);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("1 succeeded, 2 skipped, 0 failed"), "{err}");
    assert_eq!(
        std::fs::read(out.join("p0-starry_night.png")).unwrap(),
        kept
    );
    assert_eq!(modified(&out.join("p0-starry_night.png")), when);
    assert_eq!(
        outcomes(&report(&rep)),
        pairs(&[
            ("p0.png", "skipped"),
            ("p1.png", "skipped"),
            ("p2.png", "succeeded")
        ])
    );
    // --overwrite redoes them all.
    let mut again = args.to_vec();
    again.push("--overwrite");
    let o = run(d, &again);
    assert!(
        stderr(&o).contains("3 succeeded, 0 skipped, 0 failed"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn names_globs_and_several_contents() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = photos(&d.join("a"), 2);
    let out = d.join("out");
    // A quoted pattern (no shell expands it) and a file, with a name template.
    let pattern = d.join("a").join("*.png");
    let extra = photos(&d.join("b"), 1);
    let o = run(
        d,
        &[
            "--content",
            s(&pattern),
            s(&extra[0]),
            "--output",
            s(&out),
            "--name",
            "{dir}_{stem}.jpg",
            "--quiet",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["a_p0.jpg", "a_p1.jpg", "b_p0.jpg"]);
    assert!(stderr(&o).is_empty(), "--quiet: {}", stderr(&o));
    drop(a);
}

#[test]
fn batch_mistakes_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = photos(&d.join("a"), 1);
    let b = photos(&d.join("b"), 1);
    let out = d.join("out");
    let x_png = d.join("x.png");
    let (da, nothing) = (d.join("a"), d.join("nothing/*.png"));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--content", s(&a[0]), s(&b[0]), "--output", s(&out)],
            "would both be written to",
        ),
        (
            vec!["--content", s(&a[0]), s(&b[0]), "--output", s(&x_png)],
            "looks like an image file",
        ),
        (
            vec!["--content", s(&da), "--output", s(&da)],
            "would be taken",
        ),
        (
            vec!["--content", s(&nothing), "--output", s(&out)],
            "matches no file",
        ),
        (
            vec![
                "--content",
                s(&da),
                "--output",
                s(&out),
                "--name",
                "{stem}.gif",
            ],
            "unsupported extension",
        ),
        (
            vec![
                "--content",
                s(&da),
                "--output",
                s(&out),
                "--name",
                "{nme}.png",
            ],
            "unknown placeholder",
        ),
        (
            vec!["--content", s(&da), "--output", s(&out), "--plot", "p.svg"],
            "--plot is for one photo",
        ),
        (
            vec![
                "--content",
                s(&da),
                "--output",
                s(&out),
                "--shard-index",
                "2",
                "--shard-count",
                "2",
            ],
            "--shard-index 2 is not below --shard-count 2",
        ),
        (
            vec![
                "--content",
                s(&da),
                "--output",
                s(&out),
                "--shard-count",
                "2",
            ],
            "without a shard index",
        ),
    ];
    for (args, expected) in cases {
        let o = run(d, &args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(!out.exists() || std::fs::read_dir(&out).unwrap().next().is_none());
}

#[test]
fn shards_from_flags_and_from_the_environment_split_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    photos(&d.join("in"), 5);
    let out = d.join("out");
    let mut seen = Vec::new();
    for index in 0..2 {
        let rep = d.join(format!("r{index}.json"));
        let mut c = command(
            d,
            &[
                "--content",
                s(&d.join("in")),
                "--output",
                s(&out),
                "--report",
                s(&rep),
            ],
        );
        // Shard 0 from flags, shard 1 as a Slurm array task.
        if index == 0 {
            c.args(["--shard-index", "0", "--shard-count", "2"]);
        } else {
            c.env("SLURM_ARRAY_TASK_ID", "1")
                .env("SLURM_ARRAY_TASK_COUNT", "2");
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let r = report(&rep);
        assert_eq!(r["shard"]["index"], index);
        assert_eq!(r["shard"]["count"], 2);
        assert_eq!(r["total_items"], 5);
        let origin = if index == 0 { "explicit" } else { "slurm" };
        assert_eq!(r["shard"]["origin"], origin);
        assert_eq!(r["summary"]["skipped"], 0);
        seen.extend(outcomes(&r).into_iter().map(|(name, _)| name));
    }
    assert_eq!(seen, ["p0.png", "p1.png", "p2.png", "p3.png", "p4.png"]);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 5);
}

#[test]
fn logs_get_plain_progress_lines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = photos(&d.join("in"), 2);
    // stderr is a pipe here, as in a batch system's log; 0 s: a line at every iteration.
    let batch = command(
        d,
        &["--content", s(&d.join("in")), "--output", s(&d.join("out"))],
    )
    .env("IMPASTO_PROGRESS_SECONDS", "0")
    .output()
    .unwrap();
    let err = stderr(&batch);
    assert!(batch.status.success(), "{err}");
    assert!(err.contains("photo 1/2 (p0.png): iteration 1/3"), "{err}");
    assert!(err.contains("photo 2/2 (p1.png): iteration 3/3"), "{err}");
    assert!(err.contains("ETA"), "{err}");
    assert!(err.contains("[2/2] p1.png: wrote"), "{err}");
    // The single-photo run too.
    let single = command(
        d,
        &["--content", s(&p[0]), "--output", s(&d.join("one.png"))],
    )
    .env("IMPASTO_PROGRESS_SECONDS", "0")
    .output()
    .unwrap();
    let err = stderr(&single);
    assert!(single.status.success(), "{err}");
    for i in 1..=3 {
        assert!(err.contains(&format!("iteration {i}/3 (")), "{err}");
    }
    // By default a line every few seconds: this short run prints only the first.
    let quiet = command(
        d,
        &["--content", s(&p[0]), "--output", s(&d.join("two.png"))],
    )
    .output()
    .unwrap();
    let err = stderr(&quiet);
    let lines = err.lines().filter(|l| l.starts_with("iteration ")).count();
    assert_eq!(lines, 1, "{err}");
}

#[test]
fn sigterm_keeps_the_photo_in_progress_apart_and_a_rerun_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    photos(&d.join("in"), 2);
    let out = d.join("out");
    let input = d.join("in");
    let args = [
        "--content",
        s(&input),
        "--output",
        s(&out),
        "--name",
        "{stem}.png",
    ];
    // Long enough to be caught mid-photo: Adam runs every iteration it is given.
    let mut child = command_with_iterations(d, &args, "100000")
        .args(["--optimizer", "adam"])
        .env("IMPASTO_PROGRESS_SECONDS", "0")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        log += &line;
        log.push('\n');
        if line.contains("iteration 5/") {
            break;
        }
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    for line in lines {
        log += &line.unwrap();
        log.push('\n');
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{log}");
    assert!(log.contains("interrupted"), "{log}");
    assert!(!out.join("p0.png").exists(), "{log}");
    assert!(out.join("p0.partial.png").exists(), "{log}");
    assert!(!out.join("p1.png").exists());

    let o = run(d, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("2 succeeded, 0 skipped, 0 failed"),
        "{}",
        stderr(&o)
    );
    assert!(out.join("p0.png").exists() && out.join("p1.png").exists());
    assert!(!out.join("p0.partial.png").exists());
}
