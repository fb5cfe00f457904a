//! Encoding to PNG or JPEG and writing the file atomically.

use std::path::Path;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};

use super::Image;
use crate::{Error, Result};

/// High enough that JPEG artefacts do not blur the fine texture style transfer produces.
const JPEG_QUALITY: u8 = 95;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Png,
    Jpeg,
}

/// Writes the image atomically in the format its extension names: `.png` (8-bit RGB, or RGBA
/// when the image has alpha) or `.jpg`/`.jpeg` (quality 95, alpha dropped).
///
/// The image is encoded in memory, written to a hidden temporary file in the destination's
/// directory and renamed over the destination, so a reader (or a crash) never sees a partial
/// file and a previous output survives a failed save. Values are rounded and clamped to 0–255,
/// since the optimiser may leave them slightly outside.
pub fn save(image: &Image, path: &Path) -> Result<()> {
    let format = check_output(path)?;
    let bytes = encode(image, format)
        .map_err(|message| Error::image(path, format!("encoding failed: {message}")))?;
    crate::atomic::write_bytes_atomic(path, &bytes)
}

/// Checks an output path can be written in that format, so that a typo in `--output` fails in
/// the first second rather than after an hour of optimisation: the extension must be supported
/// and the parent directory must exist.
pub fn check_output_path(path: &Path) -> Result<()> {
    check_output(path).map(|_| ())
}

fn check_output(path: &Path) -> Result<Format> {
    let format = output_format(path)?;
    if path.is_dir() {
        return Err(Error::parameter(format!(
            "cannot write {}: it is a directory",
            path.display()
        )));
    }
    crate::atomic::check_parent_dir(path)?;
    Ok(format)
}

fn output_format(path: &Path) -> Result<Format> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("png") => Ok(Format::Png),
        Some("jpg" | "jpeg") => Ok(Format::Jpeg),
        Some(other) => Err(Error::parameter(format!(
            "cannot write {}: unsupported extension `.{other}`; use .png, .jpg or .jpeg",
            path.display()
        ))),
        None => Err(Error::parameter(format!(
            "cannot write {}: no file extension; use .png, .jpg or .jpeg",
            path.display()
        ))),
    }
}

fn encode(image: &Image, format: Format) -> std::result::Result<Vec<u8>, String> {
    let pixels = image.width * image.height;
    if image.width == 0 || image.height == 0 {
        return Err(format!("image is {}×{}", image.width, image.height));
    }
    if image.rgb.len() != pixels * 3 || image.alpha.as_ref().is_some_and(|a| a.len() != pixels) {
        return Err(format!(
            "image buffers do not match its size {}×{}",
            image.width, image.height
        ));
    }
    let (width, height) = match (u32::try_from(image.width), u32::try_from(image.height)) {
        (Ok(w), Ok(h)) => (w, h),
        _ => {
            return Err(format!(
                "image {}×{} is too large",
                image.width, image.height
            ))
        }
    };
    // NaN becomes 0 (`as u8` saturates and maps NaN to 0).
    let to_u8 = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    let rgb: Vec<u8> = image.rgb.iter().map(|&v| to_u8(v)).collect();
    let mut out = Vec::new();
    let result = match (format, &image.alpha) {
        (Format::Png, Some(alpha)) => {
            let mut rgba = Vec::with_capacity(pixels * 4);
            for (px, &a) in rgb.chunks_exact(3).zip(alpha) {
                rgba.extend_from_slice(px);
                rgba.push(to_u8(a));
            }
            PngEncoder::new(&mut out).write_image(&rgba, width, height, ExtendedColorType::Rgba8)
        }
        (Format::Png, None) => {
            PngEncoder::new(&mut out).write_image(&rgb, width, height, ExtendedColorType::Rgb8)
        }
        (Format::Jpeg, _) => JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY).write_image(
            &rgb,
            width,
            height,
            ExtendedColorType::Rgb8,
        ),
    };
    result.map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image_io::load;
    use std::fs;

    fn gradient(width: usize, height: usize, alpha: bool) -> Image {
        let n = width * height;
        let rgb = (0..n * 3).map(|i| ((i * 37) % 256) as f32).collect();
        let alpha = alpha.then(|| (0..n).map(|i| ((i * 11) % 256) as f32).collect());
        Image::new(width, height, rgb, alpha).unwrap()
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn png_round_trip_is_exact() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("out.png");
        let image = gradient(13, 7, false);
        save(&image, &path).unwrap();
        assert_eq!(load(&path).unwrap(), image);
    }

    #[test]
    fn png_with_alpha_is_rgba() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("out.png");
        let image = gradient(5, 4, true);
        save(&image, &path).unwrap();
        let decoded = image::open(&path).unwrap();
        assert_eq!(decoded.color(), image::ColorType::Rgba8);
        assert_eq!(load(&path).unwrap(), image);
    }

    #[test]
    fn jpeg_drops_alpha_and_is_close() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("out.JPEG");
        let image = Image::new(
            16,
            16,
            [90.0, 140.0, 200.0].repeat(256),
            Some(vec![0.0; 256]),
        )
        .unwrap();
        save(&image, &path).unwrap();
        let loaded = load(&path).unwrap();
        assert!(loaded.alpha.is_none());
        for (got, want) in loaded.rgb.iter().zip(&image.rgb) {
            assert!((got - want).abs() <= 3.0, "{got} vs {want}");
        }
    }

    #[test]
    fn values_are_rounded_and_clamped() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("clamp.png");
        let image = Image::new(2, 1, vec![-5.0, 300.0, 127.6, 0.4, f32::NAN, 254.5], None).unwrap();
        save(&image, &path).unwrap();
        assert_eq!(
            load(&path).unwrap().rgb,
            [0.0, 255.0, 128.0, 0.0, 0.0, 255.0]
        );
    }

    #[test]
    fn one_pixel_image_saves() {
        let d = tempfile::tempdir().unwrap();
        let one = Image::new(1, 1, vec![1.0, 2.0, 3.0], None).unwrap();
        for name in ["one.png", "one.jpg"] {
            let path = d.path().join(name);
            save(&one, &path).unwrap();
            assert_eq!(load(&path).unwrap().width, 1);
        }
    }

    #[test]
    fn unsupported_extension_is_refused() {
        let d = tempfile::tempdir().unwrap();
        for name in ["out.webp", "out"] {
            let path = d.path().join(name);
            let err = save(&gradient(2, 2, false), &path).unwrap_err();
            assert!(matches!(err, Error::Parameter(_)), "{err:?}");
            let text = err.to_string();
            assert!(text.contains("use .png, .jpg or .jpeg"), "{text}");
            assert!(check_output_path(&path).is_err());
        }
        let text = check_output_path(&d.path().join("out.webp"))
            .unwrap_err()
            .to_string();
        assert!(text.contains("unsupported extension `.webp`"), "{text}");
        assert!(entries(d.path()).is_empty());
    }

    #[test]
    fn missing_directory_is_a_clear_error_and_writes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("no-such-dir");
        let path = missing.join("out.png");
        let err = save(&gradient(2, 2, false), &path).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("no-such-dir"), "{text}");
        assert!(
            text.contains("the output directory does not exist"),
            "{text}"
        );
        assert!(check_output_path(&path).is_err());
        assert!(entries(d.path()).is_empty());
    }

    #[test]
    fn check_output_path_accepts_writable_targets() {
        let d = tempfile::tempdir().unwrap();
        check_output_path(&d.path().join("a.png")).unwrap();
        check_output_path(&d.path().join("a.JPG")).unwrap();
        check_output_path(&d.path().join("a.jpeg")).unwrap();
        check_output_path(Path::new("relative-output.png")).unwrap();
        let file = d.path().join("file.png");
        fs::write(&file, b"x").unwrap();
        let err = check_output_path(&file.join("inside.png")).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        let dir_png = d.path().join("dir.png");
        fs::create_dir(&dir_png).unwrap();
        let err = check_output_path(&dir_png).unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
    }

    #[test]
    fn overwrite_replaces_atomically_without_leftovers() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("out.png");
        fs::write(&path, b"old contents").unwrap();
        let image = gradient(6, 6, false);
        save(&image, &path).unwrap();
        assert_eq!(load(&path).unwrap(), image);
        assert_eq!(entries(d.path()), ["out.png"]);
        let second = gradient(3, 9, true);
        save(&second, &path).unwrap();
        assert_eq!(load(&path).unwrap(), second);
        assert_eq!(entries(d.path()), ["out.png"]);
    }

    #[test]
    fn failed_save_keeps_the_old_file_and_removes_the_temporary() {
        // Encoding fails (JPEG cannot exceed 65535 pixels per side) after the checks pass.
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("out.jpg");
        fs::write(&path, b"previous").unwrap();
        let wide = Image::new(70_000, 1, vec![0.0; 210_000], None).unwrap();
        let err = save(&wide, &path).unwrap_err();
        assert!(matches!(err, Error::Image { .. }), "{err:?}");
        assert_eq!(fs::read(&path).unwrap(), b"previous");
        assert_eq!(entries(d.path()), ["out.jpg"]);

        // The rename fails (destination is a non-empty directory) after the temporary is written.
        let dir_dest = d.path().join("taken.png");
        fs::create_dir(&dir_dest).unwrap();
        fs::write(dir_dest.join("keep"), b"x").unwrap();
        let err = crate::atomic::write_bytes_atomic(&dir_dest, b"data").unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert_eq!(entries(d.path()), ["out.jpg", "taken.png"]);
    }
}
