//! `impasto transfer` and `impasto reconstruct` end to end, on the real VGG19 weights and the
//! shared test images: the losses must fall, the outputs must be right, and every bad input
//! must give a clear message and a non-zero exit.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fixture, impasto, read_loss_log, real_weights, shared, stderr};

fn image(name: &str) -> PathBuf {
    shared().join("images").join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs impasto with the real weights and a private cache.
fn run(args: &[&str]) -> std::process::Output {
    let home = tempfile::tempdir().unwrap();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--weights", s(real_weights()), "--quiet"]);
    impasto(home.path(), &all)
}

/// `impasto transfer` of `content` with `style` into `out` at `size` px, plus `extra` flags.
fn transfer(
    content: &Path,
    style: &Path,
    out: &Path,
    size: u32,
    iterations: u32,
    extra: &[&str],
) -> std::process::Output {
    let (size, iterations) = (size.to_string(), iterations.to_string());
    let mut args = vec![
        "transfer",
        "--content",
        s(content),
        "--style",
        s(style),
        "--output",
        s(out),
        "--size",
        &size,
        "--iterations",
        &iterations,
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// `impasto reconstruct KIND` at 64 px.
fn reconstruct(
    kind: &str,
    image: &Path,
    layers: &str,
    out: &Path,
    iterations: u32,
    log: Option<&Path>,
) -> std::process::Output {
    let layers_flag = if kind == "content" {
        "--layer"
    } else {
        "--layers"
    };
    let iterations = iterations.to_string();
    let mut args = vec![
        "reconstruct",
        kind,
        "--image",
        s(image),
        layers_flag,
        layers,
        "--output",
        s(out),
        "--size",
        "64",
        "--iterations",
        &iterations,
    ];
    if let Some(log) = log {
        args.extend(["--loss-log", s(log)]);
    }
    run(&args)
}

#[test]
fn style_loss_falls_tenfold_in_100_lbfgs_iterations_at_128px() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.png");
    let log = dir.path().join("loss.csv");
    let plot = dir.path().join("loss.svg");
    let o = transfer(
        &image("tubingen.jpg"),
        &image("starry_night.jpg"),
        &out,
        128,
        100,
        &[
            "--loss-log",
            s(&log),
            "--plot",
            s(&plot),
            "--save-every",
            "50",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    let (header, rows) = read_loss_log(&log);
    assert_eq!(header, "iteration,elapsed_s,content,style,tv,total,scale");
    assert_eq!(
        rows.len(),
        101,
        "a row for iteration 0 and one per iteration"
    );
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[0] as usize, i);
        // total = α·content + β·style + tv·TV with the defaults α = 1, β = 1e3, tv = 10.
        let expected = r[2] + 1e3 * r[3] + 10.0 * r[4];
        assert!((r[5] - expected).abs() <= 1e-6 * expected, "row {i}: {r:?}");
    }
    // Seconds since the run started: setting up and evaluating the start image come first.
    assert!(rows[0][1] >= 0.0 && rows[0][1] < rows[100][1]);
    assert!(rows.windows(2).all(|w| w[1][1] >= w[0][1]), "elapsed_s");
    assert_eq!(rows[0][2], 0.0, "the content start has no content loss");
    let (first, last) = (rows[0][3], rows[100][3]);
    assert!(
        first / last >= 10.0,
        "style loss fell only {:.1}× ({first:e} → {last:e})",
        first / last
    );

    let img = image::open(&out).unwrap();
    assert_eq!((img.width(), img.height()), (128, 96), "tubingen is 4:3");
    for it in ["out-iter0050.png", "out-iter0100.png"] {
        assert!(dir.path().join(it).is_file(), "{it} missing");
    }
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.contains("<svg"), "plot is not an SVG");
}

#[test]
fn content_reconstruction_from_noise_recovers_the_photo() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("content.png");
    let log = dir.path().join("loss.csv");
    let photo = image("tubingen.jpg");
    let o = reconstruct("content", &photo, "relu2_2", &out, 80, Some(&log));
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, rows) = read_loss_log(&log);
    let (first, last) = (rows[0][2], rows.last().unwrap()[2]);
    assert!(first / last >= 100.0, "content loss {first:e} → {last:e}");
    assert!(rows.iter().all(|r| r[3] == 0.0), "no style loss");

    // The reconstruction is much closer to the photo than the noise it started from.
    let start = dir.path().join("start.png");
    let o = reconstruct("content", &photo, "relu2_2", &start, 0, None);
    assert!(o.status.success(), "{}", stderr(&o));
    let want = image::open(&photo)
        .unwrap()
        .resize_exact(64, 48, image::imageops::FilterType::Lanczos3)
        .to_rgb8();
    let distance = |p: &Path| {
        let got = image::open(p).unwrap().to_rgb8();
        got.as_raw()
            .iter()
            .zip(want.as_raw())
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .sum::<f64>()
            / got.as_raw().len() as f64
    };
    let (before, after) = (distance(&start), distance(&out));
    assert!(
        after < 0.4 * before,
        "mean absolute difference to the photo: {before:.1} at the start, {after:.1} after"
    );
}

#[test]
fn style_reconstruction_from_noise_matches_the_paintings_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("style.png");
    let log = dir.path().join("loss.csv");
    let painting = image("starry_night.jpg");
    let o = reconstruct(
        "style",
        &painting,
        "relu1_1,relu2_1,relu3_1",
        &out,
        80,
        Some(&log),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, rows) = read_loss_log(&log);
    let (first, last) = (rows[0][3], rows.last().unwrap()[3]);
    assert!(first / last >= 100.0, "style loss {first:e} → {last:e}");
    assert!(rows.iter().all(|r| r[2] == 0.0), "no content loss");
    let img = image::open(&out).unwrap();
    assert_eq!(
        (img.width(), img.height()),
        (64, 40),
        "starry_night is 1024×640"
    );
}

#[test]
fn adam_with_step_decay_lowers_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("adam.jpg");
    let log = dir.path().join("loss.csv");
    let o = transfer(
        &image("golden_gate.jpg"),
        &image("the_scream.jpg"),
        &out,
        64,
        40,
        &[
            "--optimizer",
            "adam",
            "--lr",
            "4",
            "--lr-decay-every",
            "20",
            "--lr-decay-factor",
            "0.5",
            "--loss-log",
            s(&log),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, rows) = read_loss_log(&log);
    assert_eq!(rows.len(), 41);
    let (first, last) = (rows[0][5], rows[40][5]);
    assert!(last < 0.5 * first, "total loss {first:e} → {last:e}");
    assert!(image::open(&out).is_ok());
}

/// Writes an image with the `image` crate into `dir`.
fn write(dir: &Path, name: &str, img: image::DynamicImage) -> PathBuf {
    let p = dir.join(name);
    img.save(&p).unwrap();
    p
}

#[test]
fn odd_but_valid_images_just_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gradient = |x: u32, y: u32| [(x * 4) as u8, (y * 4) as u8, 128];
    let rgba = write(
        d,
        "rgba.png",
        image::DynamicImage::ImageRgba8(image::RgbaImage::from_fn(40, 30, |x, y| {
            let [r, g, b] = gradient(x, y);
            image::Rgba([r, g, b, if x < 20 { 255 } else { 60 }])
        })),
    );
    let deep = write(
        d,
        "deep.png",
        image::DynamicImage::ImageRgb16(image::ImageBuffer::from_fn(40, 30, |x, y| {
            image::Rgb([(x * 1500) as u16, (y * 2000) as u16, 40000])
        })),
    );
    let dot = write(
        d,
        "dot.png",
        image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            1,
            1,
            image::Rgb([200, 30, 30]),
        )),
    );
    let style = image("the_scream.jpg");
    for (content, name) in [
        (fixture("grayscale.jpg"), "grayscale"),
        (fixture("progressive.jpg"), "progressive"),
        (rgba.clone(), "rgba"),
        (deep, "16-bit"),
        (dot, "1x1"),
    ] {
        let out = d.join(format!("out-{name}.png"));
        let o = transfer(&content, &style, &out, 32, 2, &[]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let img = image::open(&out).unwrap();
        assert_eq!(img.width().max(img.height()), 32, "{name}");
    }
    // The output keeps the content's alpha.
    let out = image::open(d.join("out-rgba.png")).unwrap();
    assert!(out.color().has_alpha(), "alpha dropped");
    let a = out.to_rgba8();
    assert_eq!((a.width(), a.height()), (32, 24));
    assert_eq!(a.get_pixel(2, 12)[3], 255);
    assert_eq!(a.get_pixel(30, 12)[3], 60);
}

#[test]
fn bad_inputs_fail_with_a_message_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = d.join("notes.jpg");
    std::fs::write(&text, "this is not a picture\n").unwrap();
    let truncated = d.join("cut.jpg");
    let full = std::fs::read(image("tubingen.jpg")).unwrap();
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let empty = d.join("blank.png");
    std::fs::write(&empty, b"").unwrap();
    let corrupt_weights = d.join("weights.safetensors");
    std::fs::write(&corrupt_weights, vec![7u8; 4096]).unwrap();
    let content = image("tubingen.jpg");
    let style = image("starry_night.jpg");
    let out = d.join("out.png");
    let missing = d.join("missing.png");

    let transfer = |content: &Path, extra: &[&str]| {
        let mut args = vec![
            "transfer",
            "--content",
            s(content),
            "--style",
            s(&style),
            "--output",
            s(&out),
            "--iterations",
            "1",
        ];
        if !extra.contains(&"--size") {
            args.extend(["--size", "64"]);
        }
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let cases: Vec<(&str, Vec<String>, i32, &str)> = vec![
        ("missing file", transfer(&missing, &[]), 1, "missing.png"),
        ("text named .jpg", transfer(&text, &[]), 1, "notes.jpg"),
        ("truncated JPEG", transfer(&truncated, &[]), 1, "truncated"),
        ("empty PNG", transfer(&empty, &[]), 1, "empty"),
        ("size 0", transfer(&content, &["--size", "0"]), 2, "--size"),
        (
            "negative iterations",
            transfer(&content, &["--iterations", "-5"]),
            2,
            "--iterations",
        ),
        (
            "size beyond memory",
            transfer(&content, &["--size", "200000"]),
            1,
            "needs about",
        ),
        (
            "unknown layer",
            transfer(&content, &["--style-layers", "relu1_1,relu9_9"]),
            1,
            "relu9_9",
        ),
        (
            "output is an input",
            {
                let mut a = transfer(&content, &[]);
                let i = a.iter().position(|x| x == "--output").unwrap();
                a[i + 1] = s(&style).to_string();
                a
            },
            1,
            "refusing to overwrite",
        ),
        (
            "unsupported output format",
            {
                let mut a = transfer(&content, &[]);
                let i = a.iter().position(|x| x == "--output").unwrap();
                a[i + 1] = s(&d.join("out.bmp")).to_string();
                a
            },
            1,
            "out.bmp",
        ),
    ];
    for (name, args, code, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run(&args);
        assert_eq!(o.status.code(), Some(code), "{name}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(needle), "{name}: `{needle}` not in: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
    // Corrupt weights are named as such (not through `run`, which passes the real ones).
    let home = tempfile::tempdir().unwrap();
    let mut args = transfer(&content, &[]);
    args.extend(["--weights".into(), s(&corrupt_weights).into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = impasto(home.path(), &args);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("weights.safetensors"), "{}", stderr(&o));
    assert!(!out.exists(), "no output after failures");
    // The inputs are untouched.
    assert_eq!(std::fs::read(image("tubingen.jpg")).unwrap(), full);
}

#[test]
fn ctrl_c_writes_the_best_image_so_far_and_exits_130() {
    a_signal_writes_the_best_image_so_far("INT", 130);
}

#[test]
fn sigterm_writes_the_best_image_so_far_and_exits_143() {
    a_signal_writes_the_best_image_so_far("TERM", 143);
}

/// Sends `SIG<signal>` once iterations are running: the run stops, writes the best image and
/// the loss log, leaves no temporary file, and exits with `code`.
fn a_signal_writes_the_best_image_so_far(signal: &str, code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.png");
    let log = dir.path().join("loss.csv");
    let home = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_impasto"))
        .args([
            "transfer",
            "--content",
            s(&image("hoovertowernight.jpg")),
            "--style",
            s(&image("shipwreck.jpg")),
            "--output",
            s(&out),
            "--size",
            "64",
            "--iterations",
            "100000",
            "--save-every",
            "2",
            "--loss-log",
            s(&log),
            "--quiet",
            "--weights",
            s(real_weights()),
        ])
        .env("IMPASTO_HOME", home.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until iterations are running (an intermediate image appears).
    let first = dir.path().join("out-iter000002.png");
    let start = std::time::Instant::now();
    while !first.exists() {
        assert!(
            start.elapsed().as_secs() < 120,
            "no iteration within 2 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let killed = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(code), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("SIG{signal}")),
        "{}",
        stderr(&o)
    );
    assert!(image::open(&out).is_ok(), "best image written");
    let (_, rows) = read_loss_log(&log);
    assert!(rows.len() >= 3, "the log covers the iterations done");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn outputs_that_are_not_regular_files_or_cannot_be_created_are_refused_before_the_run() {
    use std::os::unix::fs::{symlink, FileTypeExt};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let content = d.join("photo.jpg");
    std::fs::copy(image("tubingen.jpg"), &content).unwrap();
    let original = std::fs::read(&content).unwrap();
    let fifo = d.join("fifo.csv");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    // Never /dev/null itself: the code under test could replace the system's device.
    let null_link = d.join("null.svg");
    symlink("/dev/null", &null_link).unwrap();
    let log_dir = d.join("logs.csv");
    std::fs::create_dir(&log_dir).unwrap();
    let input_link = d.join("input-link.csv");
    symlink(&content, &input_link).unwrap();
    let intermediate_link = d.join("out-iter0002.png");
    symlink(&content, &intermediate_link).unwrap();
    let out = d.join("out.png");
    let base = |extra: &[&str]| {
        let mut a: Vec<String> = [
            "transfer",
            "--content",
            s(&content),
            "--style",
            s(&image("the_scream.jpg")),
            "--output",
            s(&out),
            "--size",
            "32",
            "--iterations",
            "4",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let mut cases = vec![
        ("loss log a FIFO", base(&["--loss-log", s(&fifo)]), "FIFO"),
        (
            "plot a link to /dev/null",
            base(&["--plot", s(&null_link)]),
            "a link to /dev/null, which is a character device",
        ),
        (
            "loss log a link to /dev/null",
            base(&["--loss-log", s(&null_link)]),
            "character device",
        ),
        (
            "loss log a directory",
            base(&["--loss-log", s(&log_dir)]),
            "directory",
        ),
        (
            "loss log through a link onto the input",
            base(&["--loss-log", s(&input_link)]),
            "is the input",
        ),
        (
            "an intermediate through a link onto the input",
            base(&["--save-every", "2"]),
            "through its link",
        ),
    ];
    // A directory where no file can be created, even by root (permission bits do not stop it).
    if Path::new("/sys").is_dir() {
        cases.push((
            "plot in an unwritable directory",
            base(&["--plot", "/sys/impasto-test-plot.svg"]),
            "cannot create a file in /sys",
        ));
        cases.push((
            "loss log in an unwritable directory",
            base(&["--loss-log", "/sys/impasto-test-log.csv"]),
            "cannot create a file in /sys",
        ));
    }
    for (name, args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run(&args);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{name}: {}", stderr(&o));
        assert!(!out.exists(), "{name}: refused before running");
    }
    let kind = |p: &Path| std::fs::symlink_metadata(p).unwrap().file_type();
    assert!(kind(&fifo).is_fifo());
    assert!(kind(&null_link).is_symlink() && kind(&input_link).is_symlink());
    assert!(kind(&intermediate_link).is_symlink() && kind(&log_dir).is_dir());
    assert!(kind(Path::new("/dev/null")).is_char_device());
    assert_eq!(std::fs::read(&content).unwrap(), original);
}

#[test]
fn an_output_that_is_a_symlink_is_written_through_and_kept() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let real = d.join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("out.png"), b"previous").unwrap();
    std::fs::write(real.join("loss.csv"), b"previous").unwrap();
    let out = d.join("out.png");
    let log = d.join("loss.csv");
    symlink("real/out.png", &out).unwrap();
    symlink(real.join("loss.csv"), &log).unwrap();
    let o = transfer(
        &image("tubingen.jpg"),
        &image("the_scream.jpg"),
        &out,
        32,
        2,
        &["--loss-log", s(&log)],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for link in [&out, &log] {
        assert!(std::fs::symlink_metadata(link)
            .unwrap()
            .file_type()
            .is_symlink());
    }
    assert!(image::open(real.join("out.png")).is_ok());
    let (_, rows) = read_loss_log(&real.join("loss.csv"));
    assert_eq!(rows.len(), 3);
}

#[test]
fn outputs_that_would_destroy_a_file_are_refused_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let content = d.join("photo.jpg");
    std::fs::copy(image("tubingen.jpg"), &content).unwrap();
    let original = std::fs::read(&content).unwrap();
    // An input named like an intermediate of the output.
    let look_alike = d.join("out-iter0002.jpg");
    std::fs::copy(image("tubingen.jpg"), &look_alike).unwrap();
    let link = d.join("link.jpg");
    std::os::unix::fs::symlink(&content, &link).unwrap();
    let style = image("the_scream.jpg");
    let base = |content: &Path, out: &Path| {
        vec![
            "transfer".to_string(),
            "--content".into(),
            s(content).into(),
            "--style".into(),
            s(&style).into(),
            "--output".into(),
            s(out).into(),
            "--size".into(),
            "32".into(),
            "--iterations".into(),
            "2".into(),
        ]
    };
    let with = |mut a: Vec<String>, extra: &[&str]| {
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let out = d.join("out.png");
    let cases = [
        (
            "output through a symlink to the input",
            base(&content, &link),
            "is the input",
        ),
        (
            "output and loss log the same file",
            with(base(&content, &out), &["--loss-log", s(&out)]),
            "same file",
        ),
        (
            "plot and loss log the same file",
            with(
                base(&content, &out),
                &[
                    "--loss-log",
                    s(&d.join("l.svg")),
                    "--plot",
                    s(&d.join("l.svg")),
                ],
            ),
            "same file",
        ),
        (
            "an intermediate would land on an input",
            with(
                base(&look_alike, &d.join("out.jpg")),
                &["--save-every", "2"],
            ),
            "--save-every",
        ),
        (
            "loss log in a missing directory",
            with(
                base(&content, &out),
                &["--loss-log", s(&d.join("no/l.csv"))],
            ),
            "does not exist",
        ),
        (
            "loss log over the weights",
            with(base(&content, &out), &["--loss-log", s(real_weights())]),
            "is the input",
        ),
    ];
    for (name, args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run(&args);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{name}: {}", stderr(&o));
        assert!(!out.exists(), "{name}: refused before running");
    }
    assert_eq!(std::fs::read(&content).unwrap(), original);
    assert_eq!(
        std::fs::read(&look_alike).unwrap(),
        std::fs::read(image("tubingen.jpg")).unwrap()
    );
}

#[test]
fn a_diverging_run_still_writes_its_best_image_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.png");
    let log = dir.path().join("loss.csv");
    let o = transfer(
        &image("tubingen.jpg"),
        &image("starry_night.jpg"),
        &out,
        64,
        10,
        &["--optimizer", "adam", "--lr", "1e30", "--loss-log", s(&log)],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("stopped being finite"),
        "{}",
        stderr(&o)
    );
    assert!(image::open(&out).is_ok(), "best image written");
    let (_, rows) = read_loss_log(&log);
    assert!(
        rows.iter().all(|r| r[5].is_finite()),
        "only finite rows logged"
    );
}
