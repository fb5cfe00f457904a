//! Encoding to PNG, JPEG or TIFF and writing the file atomically.

use std::path::Path;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::tiff::TiffEncoder;
use image::{ExtendedColorType, ImageEncoder};

use super::Image;
use crate::{Error, Result};

/// High enough that JPEG artefacts do not blur the fine texture style transfer produces.
const JPEG_QUALITY: u8 = 95;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Png,
    Jpeg,
    Tiff,
}

/// Bits per channel of a saved image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BitDepth {
    #[default]
    /// 8 bits per channel, every format.
    Eight,
    /// PNG and TIFF only. The optimiser's pixels are floats, so 16 bits keep the smooth
    /// gradients of skies and shadows that 8 bits band (and they survive later editing).
    Sixteen,
}

/// Writes the image atomically, 8 bits per channel, in the format its extension names: `.png`
/// (RGB, or RGBA when the image has alpha), `.tif`/`.tiff` (likewise) or `.jpg`/`.jpeg`
/// (quality 95, alpha dropped).
///
/// The image is encoded in memory, written to a hidden temporary file in the destination's
/// directory and renamed over the destination, so a reader (or a crash) never sees a partial
/// file and a previous output survives a failed save. A symbolic link is written through (its
/// target replaced, the link kept); a directory, device, FIFO or socket at the path is refused,
/// since replacing it would destroy it. Values are rounded and clamped to 0–255,
/// since the optimiser may leave them slightly outside.
pub fn save(image: &Image, path: &Path) -> Result<()> {
    save_with_depth(image, path, BitDepth::Eight)
}

/// [`save`] with a choice of bit depth; 16 bits are refused for JPEG, which has only 8.
pub fn save_with_depth(image: &Image, path: &Path, depth: BitDepth) -> Result<()> {
    let format = check_output_with_depth(path, depth)?;
    let bytes = encode(image, format, depth, path)?;
    crate::atomic::write_bytes_atomic(path, &bytes)
}

/// Checks an output path can be written in that format, so that a typo in `--output` fails in
/// the first second rather than after an hour of optimisation: the extension must be supported,
/// the path must be a regular file, a link to one, or free, and a file must be creatable in its
/// directory ([`crate::atomic::check_writable`]).
pub fn check_output_path(path: &Path) -> Result<()> {
    check_output_path_with_depth(path, BitDepth::Eight)
}

/// [`check_output_path`] for a given bit depth.
pub fn check_output_path_with_depth(path: &Path, depth: BitDepth) -> Result<()> {
    check_output_with_depth(path, depth)?;
    crate::atomic::check_writable(path)
}

fn check_output_with_depth(path: &Path, depth: BitDepth) -> Result<Format> {
    let format = check_output(path)?;
    if format == Format::Jpeg && depth == BitDepth::Sixteen {
        return Err(Error::parameter(format!(
            "cannot write {} with 16 bits per channel: JPEG has 8; use .png or .tiff",
            path.display()
        )));
    }
    Ok(format)
}

/// The format, after checking what sits at the path may be replaced (see [`crate::atomic`]):
/// nothing, a regular file, or a link to one (written through).
fn check_output(path: &Path) -> Result<Format> {
    let format = output_format(path)?;
    crate::atomic::destination(path)?;
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
        Some("tif" | "tiff") => Ok(Format::Tiff),
        Some(other) => Err(Error::parameter(format!(
            "cannot write {}: unsupported extension `.{other}`; use .png, .jpg, .jpeg, .tif or .tiff",
            path.display()
        ))),
        None => Err(Error::parameter(format!(
            "cannot write {}: no file extension; use .png, .jpg, .jpeg, .tif or .tiff",
            path.display()
        ))),
    }
}

fn encode(image: &Image, format: Format, depth: BitDepth, path: &Path) -> Result<Vec<u8>> {
    let invalid = |message: String| Error::image(path, format!("encoding failed: {message}"));
    let pixels = image.width * image.height;
    if image.width == 0 || image.height == 0 {
        return Err(invalid(format!(
            "image is {}×{}",
            image.width, image.height
        )));
    }
    if image.rgb.len() != pixels * 3 || image.alpha.as_ref().is_some_and(|a| a.len() != pixels) {
        return Err(invalid(format!(
            "image buffers do not match its size {}×{}",
            image.width, image.height
        )));
    }
    let (width, height) = match (u32::try_from(image.width), u32::try_from(image.height)) {
        (Ok(w), Ok(h)) => (w, h),
        _ => {
            return Err(invalid(format!(
                "image {}×{} is too large",
                image.width, image.height
            )))
        }
    };
    // JPEG has no alpha; the others keep the content's.
    let alpha = image.alpha.as_ref().filter(|_| format != Format::Jpeg);
    let channels = if alpha.is_some() { 4 } else { 3 };
    let interleaved = |to: &dyn Fn(f32) -> u16| -> Vec<u16> {
        let mut out = Vec::with_capacity(pixels * channels);
        for (i, px) in image.rgb.chunks_exact(3).enumerate() {
            out.extend(px.iter().map(|&v| to(v)));
            if let Some(a) = alpha {
                out.push(to(a[i]));
            }
        }
        out
    };
    // NaN becomes 0 (float-to-int `as` saturates and maps NaN to 0).
    let (bytes, color) = match depth {
        BitDepth::Eight => {
            let values = interleaved(&|v| v.round().clamp(0.0, 255.0) as u16);
            let bytes: Vec<u8> = values.into_iter().map(|v| v as u8).collect();
            let color = if channels == 4 {
                ExtendedColorType::Rgba8
            } else {
                ExtendedColorType::Rgb8
            };
            (bytes, color)
        }
        BitDepth::Sixteen => {
            // 0–255 maps onto 0–65535 as 16-bit loading maps back (value / 257).
            let values = interleaved(&|v| (v * 257.0).round().clamp(0.0, 65535.0) as u16);
            // Encoders take 16-bit samples as native-endian bytes.
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
            let color = if channels == 4 {
                ExtendedColorType::Rgba16
            } else {
                ExtendedColorType::Rgb16
            };
            (bytes, color)
        }
    };
    let mut out = Vec::new();
    let result = match format {
        Format::Png => PngEncoder::new(&mut out).write_image(&bytes, width, height, color),
        Format::Jpeg => JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
            .write_image(&bytes, width, height, color),
        Format::Tiff => TiffEncoder::new(std::io::Cursor::new(&mut out))
            .write_image(&bytes, width, height, color),
    };
    result.map_err(|e| Error::image(path, "encoding failed").with_source(e))?;
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

    /// A smooth ramp with values between the 8-bit levels, as the optimiser leaves them.
    fn fine_ramp(width: usize, height: usize, alpha: bool) -> Image {
        let n = width * height;
        let rgb = (0..n * 3).map(|i| (i as f32 * 0.37) % 255.0).collect();
        let alpha = alpha.then(|| (0..n).map(|i| 255.0 - (i as f32 * 0.11) % 255.0).collect());
        Image::new(width, height, rgb, alpha).unwrap()
    }

    #[test]
    fn sixteen_bits_keep_what_eight_round_away() {
        let dir = tempfile::tempdir().unwrap();
        for (name, alpha) in [
            ("a.png", false),
            ("b.png", true),
            ("c.tiff", false),
            ("d.tif", true),
        ] {
            let image = fine_ramp(31, 17, alpha);
            let path = dir.path().join(name);
            save_with_depth(&image, &path, BitDepth::Sixteen).unwrap();
            let back = load(&path).unwrap();
            assert_eq!((back.width, back.height), (31, 17));
            let worst = |a: &[f32], b: &[f32]| {
                a.iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0f32, f32::max)
            };
            // 16 bits: within half a 1/257 step; 8 bits would be off by up to 0.5.
            assert!(worst(&back.rgb, &image.rgb) < 0.003, "{name}");
            match (&back.alpha, &image.alpha) {
                (Some(b), Some(a)) => assert!(worst(b, a) < 0.003, "{name} alpha"),
                (None, None) => {}
                _ => panic!("{name}: alpha lost or invented"),
            }
            let eight = dir.path().join(format!("8-{name}"));
            save(&image, &eight).unwrap();
            let back8 = load(&eight).unwrap();
            assert!(worst(&back8.rgb, &image.rgb) > 0.3, "{name}: 8 bits round");
            assert!(
                worst(&back8.rgb, &image.rgb) <= 0.5 + 1e-3,
                "{name}: 8 bits round"
            );
        }
    }

    #[test]
    fn sixteen_bit_jpeg_is_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jpg");
        let err = save_with_depth(&fine_ramp(4, 4, false), &path, BitDepth::Sixteen).unwrap_err();
        assert!(err.to_string().contains("JPEG has 8"), "{err}");
        assert!(!path.exists());
        assert!(check_output_path_with_depth(&path, BitDepth::Sixteen).is_err());
        assert!(check_output_path_with_depth(&path, BitDepth::Eight).is_ok());
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
            assert!(err.kind() == crate::ErrorKind::Parameter, "{err:?}");
            let text = err.to_string();
            assert!(
                text.contains("use .png, .jpg, .jpeg, .tif or .tiff"),
                "{text}"
            );
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
        assert!(err.kind() == crate::ErrorKind::Io, "{err:?}");
        // The directory is the error's path; what is wrong with it, its source.
        let text = format!("{err:#}");
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
        assert!(format!("{err:#}").contains("not a directory"), "{err:#}");
        let dir_png = d.path().join("dir.png");
        fs::create_dir(&dir_png).unwrap();
        let err = check_output_path(&dir_png).unwrap_err();
        assert!(format!("{err:#}").contains("is a directory"), "{err:#}");
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
        assert!(err.kind() == crate::ErrorKind::Image, "{err:?}");
        assert_eq!(fs::read(&path).unwrap(), b"previous");
        assert_eq!(entries(d.path()), ["out.jpg"]);

        // The rename fails (destination is a non-empty directory) after the temporary is written.
        let dir_dest = d.path().join("taken.png");
        fs::create_dir(&dir_dest).unwrap();
        fs::write(dir_dest.join("keep"), b"x").unwrap();
        let err = crate::atomic::write_bytes_atomic(&dir_dest, b"data").unwrap_err();
        assert!(err.kind() == crate::ErrorKind::Io, "{err:?}");
        assert_eq!(entries(d.path()), ["out.jpg", "taken.png"]);
    }
}
