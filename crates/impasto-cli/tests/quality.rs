//! The image-quality features end to end on the real VGG19 weights, each measured by what it
//! must do to the image, not only by the run succeeding: coarse to fine, colour preservation,
//! several styles, spatial masks, total variation, 16-bit output and reproducibility.

mod common;

use std::path::{Path, PathBuf};

use common::{impasto, read_loss_log, real_weights, shared, stderr};
use impasto::color::{color_stats, rgb_to_yiq, ColorStats};
use impasto::image_io::{self, Image};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn painting(name: &str) -> PathBuf {
    shared().join("images").join(name)
}

/// `tubingen.jpg` with a long side of `size`, as PNG: a run at `--size size` then works on
/// exactly these pixels (no resampling), so outputs can be compared with it pixel by pixel.
fn small_content(dir: &Path, size: usize) -> (PathBuf, Image) {
    let photo = image_io::load(&painting("tubingen.jpg")).unwrap();
    let (w, h) = image_io::fit_long_side(photo.width, photo.height, size);
    let small = image_io::resize(&photo, w, h).unwrap();
    // What the PNG will hold: the resized values rounded to 8 bits.
    let path = dir.join(format!("tubingen-{size}.png"));
    image_io::save(&small, &path).unwrap();
    (path.clone(), image_io::load(&path).unwrap())
}

/// `impasto transfer` with the real weights, quietly; panics with stderr if it fails.
fn transfer(args: &[&str]) -> std::process::Output {
    let home = tempfile::tempdir().unwrap();
    let mut all = vec!["transfer"];
    all.extend_from_slice(args);
    all.extend(["--weights", s(real_weights()), "--quiet"]);
    impasto(home.path(), &all)
}

/// The flags most runs here share: one photo, one painting, an output, size and iterations.
fn basic<'a>(
    content: &'a Path,
    style: &'a Path,
    out: &'a Path,
    size: &'a str,
    iterations: &'a str,
) -> Vec<&'a str> {
    vec![
        "--content",
        s(content),
        "--style",
        s(style),
        "--output",
        s(out),
        "--size",
        size,
        "--iterations",
        iterations,
    ]
}

fn transfer_ok(args: &[&str]) -> Image {
    let o = transfer(args);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = args
        .windows(2)
        .find(|w| w[0] == "--output")
        .map(|w| w[1])
        .expect("--output");
    image_io::load(Path::new(out)).unwrap()
}

fn mean_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32
}

/// Mean absolute difference of the YIQ channels `channels` between two RGB images.
fn yiq_difference(a: &[f32], b: &[f32], channels: &[usize]) -> f32 {
    let (a, b) = (rgb_to_yiq(a), rgb_to_yiq(b));
    let pick = |v: &[f32]| -> Vec<f32> {
        v.chunks_exact(3)
            .flat_map(|p| channels.iter().map(|&c| p[c]).collect::<Vec<_>>())
            .collect()
    };
    mean_abs(&pick(&a), &pick(&b))
}

#[test]
fn coarse_to_fine_starts_the_last_scale_from_an_already_stylised_image() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.png");
    let log = dir.path().join("log.csv");
    let style = painting("starry_night.jpg");
    let photo = painting("tubingen.jpg");
    let common = [
        "--content",
        s(&photo),
        "--style",
        s(&style),
        "--output",
        s(&out),
        "--size",
        "96",
        "--loss-log",
        s(&log),
    ];
    let mut multi = common.to_vec();
    multi.extend([
        "--scales",
        "3",
        "--start-size",
        "48",
        "--scale-iterations",
        "20",
        "--iterations",
        "10",
    ]);
    let image = transfer_ok(&multi);
    assert_eq!((image.width, image.height), (96, 72));
    let (header, rows) = read_loss_log(&log);
    assert!(header.ends_with(",scale"), "{header}");
    let scales: Vec<usize> = rows.iter().map(|r| r[6] as usize).collect();
    assert_eq!(scales.iter().filter(|&&s| s == 0).count(), 21);
    assert_eq!(scales.iter().filter(|&&s| s == 1).count(), 21);
    assert_eq!(scales.iter().filter(|&&s| s == 2).count(), 11);
    assert_eq!(
        rows.last().unwrap()[0] as usize,
        50,
        "iterations counted over all scales"
    );
    let last_scale_start = rows.iter().find(|r| r[6] == 2.0).unwrap()[3];

    // The content photo's own style loss at 96 px: where a single-scale run starts.
    let mut single = common.to_vec();
    single.extend(["--scales", "1", "--iterations", "0"]);
    transfer_ok(&single);
    let (_, rows) = read_loss_log(&log);
    let photo_style = rows[0][3];
    assert!(
        last_scale_start < photo_style / 4.0,
        "the last scale starts at style loss {last_scale_start:e}, the photo has {photo_style:e}"
    );
}

#[test]
fn luminance_mode_keeps_the_photo_colours_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (content_path, content) = small_content(dir.path(), 64);
    let out = dir.path().join("out.png");
    let style = painting("starry_night.jpg");
    let run = |mode| {
        let mut args = basic(&content_path, &style, &out, "64", "30");
        args.extend(["--preserve-color", mode]);
        transfer_ok(&args)
    };
    let kept = run("luminance");
    // 8-bit rounding of the output moves I and Q by a fraction of a level.
    let chroma = yiq_difference(&kept.rgb, &content.rgb, &[1, 2]);
    assert!(chroma < 0.5, "chroma moved by {chroma} on average");
    let luminance = yiq_difference(&kept.rgb, &content.rgb, &[0]);
    assert!(
        luminance > 3.0,
        "the style changed the luminance by only {luminance}"
    );
    let plain = run("none");
    let chroma = yiq_difference(&plain.rgb, &content.rgb, &[1, 2]);
    assert!(
        chroma > 2.0,
        "a plain transfer moved the chroma by only {chroma}"
    );
}

/// The largest difference of the channel means (levels), and the covariance difference relative
/// to `want`'s (Frobenius norms).
fn stats_distance(got: &ColorStats, want: &ColorStats) -> (f64, f64) {
    let mut mean = 0.0f64;
    let (mut diff, mut norm) = (0.0, 0.0);
    for c in 0..3 {
        mean = mean.max((got.mean[c] - want.mean[c]).abs());
        for k in 0..3 {
            diff += (got.covariance[c][k] - want.covariance[c][k]).powi(2);
            norm += want.covariance[c][k].powi(2);
        }
    }
    (mean, (diff / norm).sqrt())
}

#[test]
fn histogram_mode_gives_the_painting_the_photo_colour_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let (content_path, content) = small_content(dir.path(), 64);
    let out = dir.path().join("out.png");
    let style = painting("the_scream.jpg");
    // With --init style and no iterations the output is the (recoloured) painting itself.
    let start = |mode| {
        let mut args = basic(&content_path, &style, &out, "64", "0");
        args.extend(["--init", "style", "--preserve-color", mode]);
        transfer_ok(&args)
    };
    let want = color_stats(&content.rgb);
    let (mean, cov) = stats_distance(&color_stats(&start("histogram").rgb), &want);
    // Clamping to 0–255 when saving moves the statistics a little.
    assert!(
        mean < 3.0 && cov < 0.05,
        "recoloured painting: means {mean} off, covariance {cov}"
    );
    let (mean, cov) = stats_distance(&color_stats(&start("none").rgb), &want);
    assert!(
        mean > 20.0 && cov > 0.3,
        "the painting's own colours: means {mean}, covariance {cov}"
    );
}

#[test]
fn blend_weights_choose_between_styles_and_are_normalised() {
    let dir = tempfile::tempdir().unwrap();
    let (content_path, _) = small_content(dir.path(), 64);
    let (starry, scream) = (painting("starry_night.jpg"), painting("the_scream.jpg"));
    let run = |weights: &str, name: &str| {
        let out = dir.path().join(name);
        transfer_ok(&[
            "--content",
            s(&content_path),
            "--style",
            s(&starry),
            "--style",
            s(&scream),
            "--style-blend-weights",
            weights,
            "--output",
            s(&out),
            "--size",
            "64",
            "--iterations",
            "40",
        ])
    };
    let starry_only = run("1,0", "a.png");
    let scream_only = run("0,1", "b.png");
    assert_eq!(starry_only, run("5,0", "c.png"), "weights are normalised");
    // Starry Night is blue, The Scream orange: each result leans to its style's palette.
    let mean = |img: &Image| color_stats(&img.rgb).mean;
    let styles = |p: &Path| color_stats(&image_io::load(p).unwrap().rgb).mean;
    let closer = |img: &Image, own: &Path, other: &Path| {
        let d = |m: [f64; 3]| {
            let v = mean(img);
            (0..3).map(|c| (v[c] - m[c]).powi(2)).sum::<f64>()
        };
        d(styles(own)) < d(styles(other))
    };
    assert!(closer(&starry_only, &starry, &scream));
    assert!(closer(&scream_only, &scream, &starry));
}

#[test]
fn a_content_mask_confines_the_style_to_its_region() {
    let dir = tempfile::tempdir().unwrap();
    let (content_path, content) = small_content(dir.path(), 64);
    let (w, h) = (content.width, content.height);
    // White on the left half, black on the right.
    let rgb = (0..w * h)
        .flat_map(|i| [if i % w < w / 2 { 255.0 } else { 0.0 }; 3])
        .collect();
    let mask = dir.path().join("left.png");
    image_io::save(&Image::new(w, h, rgb, None).unwrap(), &mask).unwrap();
    let out = dir.path().join("out.png");
    let style = painting("starry_night.jpg");
    let mut args = basic(&content_path, &style, &out, "64", "40");
    args.extend(["--content-mask", s(&mask)]);
    let image = transfer_ok(&args);
    let change = |left: bool| {
        let mut sum = 0.0;
        let mut n = 0;
        for y in 0..h {
            // Away from the border between the halves, which the receptive fields straddle.
            let xs = if left { 0..w / 2 - 8 } else { w / 2 + 8..w };
            for x in xs {
                for c in 0..3 {
                    let i = (y * w + x) * 3 + c;
                    sum += (image.rgb[i] - content.rgb[i]).abs();
                    n += 1;
                }
            }
        }
        sum / n as f32
    };
    let (left, right) = (change(true), change(false));
    assert!(
        left > 3.0 * right,
        "left (styled) changed {left}, right {right}"
    );

    // Two masks for one style: a clear error naming the counts, before any work.
    let mut args = basic(&content_path, &style, &out, "64", "40");
    args.extend(["--content-mask", s(&mask), "--content-mask", s(&mask)]);
    let o = transfer(&args);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("mask"), "{}", stderr(&o));
}

/// Sum of squared differences between neighbouring pixels: what TV smoothing lowers.
fn total_variation(img: &Image) -> f64 {
    let (w, h) = (img.width, img.height);
    let mut tv = 0.0;
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let v = img.rgb[(y * w + x) * 3 + c] as f64;
                if x + 1 < w {
                    tv += (img.rgb[(y * w + x + 1) * 3 + c] as f64 - v).powi(2);
                }
                if y + 1 < h {
                    tv += (img.rgb[((y + 1) * w + x) * 3 + c] as f64 - v).powi(2);
                }
            }
        }
    }
    tv
}

#[test]
fn total_variation_smooths_and_its_default_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let (content_path, _) = small_content(dir.path(), 64);
    let out = dir.path().join("out.png");
    let log = dir.path().join("log.csv");
    let style = painting("starry_night.jpg");
    let run = |tv: Option<&str>| {
        let mut args = basic(&content_path, &style, &out, "64", "40");
        args.extend(["--loss-log", s(&log)]);
        if let Some(tv) = tv {
            args.extend(["--tv-weight", tv]);
        }
        total_variation(&transfer_ok(&args))
    };
    let (off, default, strong) = (run(Some("0")), run(None), run(Some("1000")));
    assert!(default < off, "default TV {default:e} vs off {off:e}");
    assert!(
        strong < 0.7 * default,
        "strong TV {strong:e} vs default {default:e}"
    );
    let (_, rows) = read_loss_log(&log);
    assert!(
        rows.iter().all(|r| r[4] > 0.0),
        "the log reports the TV part"
    );
}

#[test]
fn sixteen_bit_output_keeps_values_between_the_8_bit_levels() {
    let dir = tempfile::tempdir().unwrap();
    let (content_path, _) = small_content(dir.path(), 32);
    let style = painting("starry_night.jpg");
    for name in ["out.png", "out.tiff"] {
        let out = dir.path().join(name);
        let mut args = basic(&content_path, &style, &out, "32", "5");
        args.extend(["--bit-depth", "16"]);
        transfer_ok(&args);
        let decoded = image::open(&out).unwrap();
        assert_eq!(decoded.color(), image::ColorType::Rgb16, "{name}");
        let values = decoded.into_rgb16().into_raw();
        let between = values.iter().filter(|v| **v % 257 != 0).count();
        assert!(
            between > values.len() / 2,
            "{name}: {between} of {} between 8-bit levels",
            values.len()
        );
    }
    // JPEG has no 16-bit form: refused before the run.
    let out = dir.path().join("out.jpg");
    let mut args = basic(&content_path, &style, &out, "32", "5");
    args.extend(["--bit-depth", "16"]);
    let o = transfer(&args);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("JPEG has 8"), "{}", stderr(&o));
    assert!(!out.exists());
}

#[test]
fn the_same_seed_and_flags_give_the_same_image() {
    let dir = tempfile::tempdir().unwrap();
    let (content_path, _) = small_content(dir.path(), 64);
    let style = painting("starry_night.jpg");
    let run = |seed: &str, name: &str| {
        let out = dir.path().join(name);
        let mut args = basic(&content_path, &style, &out, "64", "10");
        args.extend([
            "--start-size",
            "32",
            "--scales",
            "2",
            "--scale-iterations",
            "10",
            "--init",
            "noise",
            "--seed",
            seed,
        ]);
        transfer_ok(&args);
        std::fs::read(&out).unwrap()
    };
    let first = run("3", "a.png");
    assert_eq!(first, run("3", "b.png"), "same seed, different image");
    assert_ne!(first, run("4", "c.png"), "the seed has no effect");
}

/// Tiling is exact by construction (the halo covers relu5_1's receptive field), so a tiled run
/// starts at the whole-image loss and follows it; the image is the same up to rounding.
#[test]
fn a_tiled_run_gives_the_whole_image_losses() {
    let dir = tempfile::tempdir().unwrap();
    let (content, _) = small_content(dir.path(), 160);
    let style = painting("starry_night.jpg");
    let run = |name: &str, extra: &[&str]| {
        let (out, log) = (
            dir.path().join(format!("{name}.png")),
            dir.path().join(format!("{name}.csv")),
        );
        let mut args = basic(&content, &style, &out, "160", "4");
        args.extend(["--loss-log", s(&log)]);
        args.extend_from_slice(extra);
        let img = transfer_ok(&args);
        (img, read_loss_log(&log).1)
    };
    let (whole, a) = run("whole", &[]);
    let (tiled, b) = run("tiled", &["--tile-size", "48"]);
    let total = 5; // iteration,elapsed_s,content,style,tv,total
    for (i, (ra, rb)) in a.iter().zip(&b).enumerate() {
        let rel = (ra[total] - rb[total]).abs() / ra[total];
        assert!(
            rel < 1e-4,
            "iteration {i}: whole {} tiled {}",
            ra[total],
            rb[total]
        );
    }
    assert!(b[4][total] < b[0][total], "the tiled run lowers the loss");
    assert!(mean_abs(&whole.rgb, &tiled.rgb) < 0.5, "images differ");
}
