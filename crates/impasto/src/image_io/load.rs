//! Decoding JPEG, PNG and TIFF files into [`Image`], with the format recognised from the first
//! bytes, the file's size capped and the image's size checked before any pixel is decoded.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read, Seek};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader};

use super::{Image, Limits};
use crate::{Error, Result};

/// The most bytes of an image file that are read: 1 GiB. The largest image within the default
/// [`Limits`] stored as plainly as it can be (an uncompressed 16-bit RGBA TIFF of 100 megapixels)
/// is 800 MB; anything longer is not an image we would decode, and reading it would cost its
/// size in memory (a JPEG is decoded from memory) or time.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// How much of a file is read to recognise its format (and to tell text from binary).
const HEAD_BYTES: usize = 256;

/// Loads a JPEG, PNG or TIFF with the default [`Limits`].
pub fn load(path: &Path) -> Result<Image> {
    load_with_limits(path, &Limits::default())
}

/// Loads a JPEG, PNG or TIFF, refusing images beyond `limits` from their header alone.
///
/// The format is recognised from the content, not the extension, so a PNG saved as `.jpg` still
/// loads. Grayscale and palette images become RGB with the value replicated; 16-bit images keep
/// their full precision (`value / 257`). Alpha, when the file has it, is returned separately.
///
/// Only the first bytes are read before the format is known, so a file that is not an image
/// (even `/dev/zero`) is refused at once; files over [`MAX_FILE_BYTES`] are refused. PNG and
/// TIFF files are decoded as they are read; a JPEG is read into memory first (its decoder needs
/// that, and so does the check for truncated JPEG data).
pub fn load_with_limits(path: &Path, limits: &Limits) -> Result<Image> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    // A regular file's length is known before reading it; pipes and devices are read through
    // the cap instead.
    let regular_len = file
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    let head = read_up_to(&mut file, HEAD_BYTES as u64).map_err(|e| Error::io(path, e))?;
    if head.is_empty() {
        return Err(Error::image(path, "empty file"));
    }
    let format = sniff(path, &head)?;
    if let Some(len) = regular_len.filter(|&len| len > MAX_FILE_BYTES) {
        return Err(too_long(path, &format!("is {:.1} GiB", len as f64 / GIB)));
    }
    match (format, regular_len) {
        (ImageFormat::Jpeg, _) | (_, None) => {
            let mut bytes = head;
            let rest = read_up_to(&mut file, MAX_FILE_BYTES + 1 - bytes.len() as u64)
                .map_err(|e| Error::io(path, e))?;
            bytes.extend(rest);
            if bytes.len() as u64 > MAX_FILE_BYTES {
                return Err(too_long(path, "goes on for longer"));
            }
            if format == ImageFormat::Jpeg {
                check_jpeg(path, &bytes)?;
            }
            decode(path, Cursor::new(bytes), format, limits)
        }
        (_, Some(_)) => {
            file.rewind().map_err(|e| Error::io(path, e))?;
            decode(path, BufReader::new(file), format, limits)
        }
    }
}

/// Decodes an image from bytes already in memory; `path` only names it in messages. What the
/// fuzz target calls: [`load_with_limits`] less the file handling.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn decode_bytes(path: &Path, bytes: &[u8], limits: &Limits) -> Result<Image> {
    if bytes.is_empty() {
        return Err(Error::image(path, "empty file"));
    }
    let format = sniff(path, &bytes[..bytes.len().min(HEAD_BYTES)])?;
    if format == ImageFormat::Jpeg {
        check_jpeg(path, bytes)?;
    }
    decode(path, Cursor::new(bytes), format, limits)
}

const GIB: f64 = (1u64 << 30) as f64;

fn too_long(path: &Path, what: &str) -> Error {
    Error::limits(format!(
        "{}: the file {what}; image files over {:.0} GiB are not read",
        path.display(),
        MAX_FILE_BYTES as f64 / GIB
    ))
}

/// Reads until `limit` bytes or the end of the file, whichever comes first.
fn read_up_to(file: &mut File, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    file.by_ref().take(limit).read_to_end(&mut out)?;
    Ok(out)
}

/// Refuses a JPEG that ends before its image does: zune-jpeg fills missing rows with grey rather
/// than failing, so a half-downloaded photo would otherwise be accepted silently.
fn check_jpeg(path: &Path, bytes: &[u8]) -> Result<()> {
    if jpeg_is_truncated(bytes) {
        return Err(Error::image(
            path,
            "truncated JPEG data (the file ends before the image does)",
        ));
    }
    Ok(())
}

fn decode<R: BufRead + Seek>(
    path: &Path,
    source: R,
    format: ImageFormat,
    limits: &Limits,
) -> Result<Image> {
    let name = format_name(format);

    // No limits while reading the header, so that an oversized image gets our message naming its
    // size; the allocation limit is applied once the size has been accepted.
    let mut reader = ImageReader::with_format(source, format);
    reader.no_limits();
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| decode_error(path, &name, e))?;
    let (width, height) = decoder.dimensions();
    check_size(path, width, height, limits)?;

    let mut decoder_limits = image::Limits::default();
    // Room for the largest accepted image as 16-bit RGBA, plus the decoder's working buffers.
    decoder_limits.max_alloc = Some(
        limits
            .max_pixels
            .saturating_mul(8)
            .saturating_add(256 << 20),
    );
    decoder_limits
        .reserve(decoder.total_bytes())
        .and_then(|()| decoder.set_limits(decoder_limits))
        .map_err(|e| decode_error(path, &name, e))?;
    // Cameras store portrait photos sideways with an EXIF note saying how to turn them; without
    // applying it, a phone photo would be repainted lying on its side.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut decoded =
        DynamicImage::from_decoder(decoder).map_err(|e| decode_error(path, &name, e))?;
    decoded.apply_orientation(orientation);
    to_image(path, decoded)
}

/// Accepts only JPEG, PNG and TIFF (which impasto writes at 16 bits, so its outputs can be read
/// back as start images), and says what the file is otherwise: "not an image" and "an image
/// in a format we do not read" call for different actions from the user.
fn sniff(path: &Path, bytes: &[u8]) -> Result<ImageFormat> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(ImageFormat::Jpeg);
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(ImageFormat::Png);
    }
    // Classic TIFF, then BigTIFF.
    let tiff: [&[u8]; 4] = [b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"];
    if tiff.iter().any(|magic| bytes.starts_with(magic)) {
        return Ok(ImageFormat::Tiff);
    }
    let what = if let Ok(other) = image::guess_format(bytes) {
        format!("a {} image", format_name(other))
    } else if bytes.len() >= 12
        && &bytes[4..8] == b"ftyp"
        && matches!(&bytes[8..12], b"heic" | b"heix" | b"mif1" | b"msf1")
    {
        "a HEIC/HEIF image".to_string()
    } else if looks_like_text(bytes) {
        "not a JPEG, PNG or TIFF image (the file starts with text)".to_string()
    } else {
        "not a JPEG, PNG or TIFF image (unrecognised content)".to_string()
    };
    let message = if what.starts_with("a ") {
        format!("{what}; only JPEG, PNG and TIFF images can be read, convert it first")
    } else {
        what
    };
    Err(Error::image(path, message))
}

fn format_name(format: ImageFormat) -> String {
    match format {
        ImageFormat::Jpeg => "JPEG".to_string(),
        ImageFormat::Png => "PNG".to_string(),
        ImageFormat::Tiff => "TIFF".to_string(),
        other => other
            .to_mime_type()
            .rsplit('/')
            .next()
            .unwrap_or("unknown")
            .to_ascii_uppercase(),
    }
}

fn looks_like_text(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(256)];
    let valid = match std::str::from_utf8(head) {
        Ok(s) => s,
        // A multi-byte character cut by the 256-byte window is still text.
        Err(e) if e.valid_up_to() + 4 > head.len() && e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    !valid.is_empty()
        && valid
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
}

/// True when a JPEG ends before its end-of-image marker (FF D9).
///
/// Walks the marker segments up to the first start-of-scan, then looks for FF D9 in the rest:
/// inside entropy-coded data every FF byte is followed by 00 or a restart marker, so the first
/// FF D9 there is the real end. Skipping the header segments matters because an EXIF thumbnail
/// carries an FF D9 of its own; searching forward rather than at the very end accepts files with
/// data appended after the image (motion photos append a whole video). Malformed headers are left
/// for the decoder to report.
fn jpeg_is_truncated(bytes: &[u8]) -> bool {
    let mut i = 2; // after SOI
    loop {
        if i >= bytes.len() {
            return true;
        }
        if bytes[i] != 0xFF {
            return false;
        }
        while i < bytes.len() && bytes[i] == 0xFF {
            i += 1; // fill bytes
        }
        let Some(&marker) = bytes.get(i) else {
            return true;
        };
        i += 1;
        match marker {
            0xDA => break,
            0xD9 => return false,
            0x01 | 0xD0..=0xD7 => continue,
            _ => {
                let Some(len) = bytes.get(i..i + 2) else {
                    return true;
                };
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                if len < 2 {
                    return false;
                }
                i += len;
            }
        }
    }
    !bytes[i.min(bytes.len())..]
        .windows(2)
        .any(|w| w == [0xFF, 0xD9])
}

fn check_size(path: &Path, width: u32, height: u32, limits: &Limits) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(Error::image(path, format!("image is {width}×{height}")));
    }
    let pixels = u64::from(width) * u64::from(height);
    if width > limits.max_side || height > limits.max_side || pixels > limits.max_pixels {
        return Err(Error::limits(format!(
            "{}: image is {width}×{height} ({:.1} megapixels); the limit is {} pixels per side \
             and {:.1} megapixels",
            path.display(),
            pixels as f64 / 1e6,
            limits.max_side,
            limits.max_pixels as f64 / 1e6
        )));
    }
    Ok(())
}

fn decode_error(path: &Path, name: &str, error: ImageError) -> Error {
    let err = match &error {
        ImageError::Limits(_) => {
            Error::limits(format!("{}: beyond the decoder's limits", path.display()))
        }
        // The data ran out before the image did.
        ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::image(path, format!("truncated {name} data"))
        }
        ImageError::IoError(_) => Error::image(path, format!("reading {name} data")),
        ImageError::Decoding(_) => Error::image(path, format!("truncated or corrupt {name} data")),
        ImageError::Unsupported(_) => Error::image(path, format!("unsupported {name} image")),
        _ => Error::image(path, name),
    };
    err.with_source(error)
}

fn to_image(path: &Path, decoded: DynamicImage) -> Result<Image> {
    let (width, height) = (decoded.width() as usize, decoded.height() as usize);
    let color = decoded.color();
    let has_alpha = color.has_alpha();
    let deep = color.bits_per_pixel() / u16::from(color.channel_count()) > 8;
    let (rgb, alpha) = match (deep, has_alpha) {
        (true, true) => split(decoded.into_rgba16().as_raw(), 4, |v| f32::from(v) / 257.0),
        (true, false) => split(decoded.into_rgb16().as_raw(), 3, |v| f32::from(v) / 257.0),
        (false, true) => split(decoded.into_rgba8().as_raw(), 4, f32::from),
        (false, false) => split(decoded.into_rgb8().as_raw(), 3, f32::from),
    };
    Image::new(width, height, rgb, alpha).map_err(|e| Error::image(path, e.to_string()))
}

/// Interleaved RGB or RGBA samples into the RGB buffer and a separate alpha plane.
fn split<T: Copy>(
    raw: &[T],
    channels: usize,
    to_f32: impl Fn(T) -> f32,
) -> (Vec<f32>, Option<Vec<f32>>) {
    if channels == 3 {
        return (raw.iter().map(|&v| to_f32(v)).collect(), None);
    }
    let pixels = raw.len() / 4;
    let mut rgb = Vec::with_capacity(pixels * 3);
    let mut alpha = Vec::with_capacity(pixels);
    for px in raw.chunks_exact(4) {
        rgb.extend([to_f32(px[0]), to_f32(px[1]), to_f32(px[2])]);
        alpha.push(to_f32(px[3]));
    }
    (rgb, Some(alpha))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, ImageBuffer, Luma, Rgb, RgbImage, Rgba, RgbaImage};
    use tempfile::TempDir;

    fn dir() -> TempDir {
        tempfile::tempdir().unwrap()
    }

    fn message(result: Result<Image>) -> String {
        result.unwrap_err().to_string()
    }

    /// An RGB JPEG with a horizontal gradient, encoded by the image crate (baseline).
    fn jpeg_bytes(width: u32, height: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(width, height, |x, y| {
            Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, 128])
        });
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 90)
            .write_image(img.as_raw(), width, height, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    use image::codecs::jpeg::JpegEncoder;
    use image::ImageEncoder;

    /// 16×12, left half (200, 30, 40), right half (20, 60, 220), written once by Pillow with
    /// `progressive=True, quality=90` (the image crate cannot encode progressive JPEGs).
    const PROGRESSIVE_JPEG: &[u8] = &[
        0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00,
        0x01, 0x00, 0x01, 0x00, 0x00, 0xff, 0xdb, 0x00, 0x43, 0x00, 0x03, 0x02, 0x02, 0x03, 0x02,
        0x02, 0x03, 0x03, 0x03, 0x03, 0x04, 0x03, 0x03, 0x04, 0x05, 0x08, 0x05, 0x05, 0x04, 0x04,
        0x05, 0x0a, 0x07, 0x07, 0x06, 0x08, 0x0c, 0x0a, 0x0c, 0x0c, 0x0b, 0x0a, 0x0b, 0x0b, 0x0d,
        0x0e, 0x12, 0x10, 0x0d, 0x0e, 0x11, 0x0e, 0x0b, 0x0b, 0x10, 0x16, 0x10, 0x11, 0x13, 0x14,
        0x15, 0x15, 0x15, 0x0c, 0x0f, 0x17, 0x18, 0x16, 0x14, 0x18, 0x12, 0x14, 0x15, 0x14, 0xff,
        0xdb, 0x00, 0x43, 0x01, 0x03, 0x04, 0x04, 0x05, 0x04, 0x05, 0x09, 0x05, 0x05, 0x09, 0x14,
        0x0d, 0x0b, 0x0d, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14,
        0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14,
        0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14,
        0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0xff, 0xc2, 0x00, 0x11, 0x08, 0x00, 0x0c,
        0x00, 0x10, 0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01, 0xff, 0xc4, 0x00,
        0x15, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x05, 0x06, 0xff, 0xc4, 0x00, 0x14, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0xff, 0xda, 0x00,
        0x0c, 0x03, 0x01, 0x00, 0x02, 0x10, 0x03, 0x10, 0x00, 0x00, 0x01, 0x81, 0x29, 0x52, 0x95,
        0x22, 0xff, 0xc4, 0x00, 0x14, 0x10, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00,
        0x01, 0x05, 0x02, 0x1f, 0xff, 0xc4, 0x00, 0x18, 0x11, 0x00, 0x02, 0x03, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x44, 0x82, 0xc2,
        0xff, 0xda, 0x00, 0x08, 0x01, 0x03, 0x01, 0x01, 0x3f, 0x01, 0x75, 0x8f, 0x6c, 0x9f, 0xff,
        0xc4, 0x00, 0x18, 0x11, 0x00, 0x02, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x44, 0x82, 0xc2, 0xff, 0xda, 0x00, 0x08, 0x01,
        0x02, 0x01, 0x01, 0x3f, 0x01, 0x4d, 0x91, 0x5d, 0x1f, 0xff, 0xc4, 0x00, 0x14, 0x10, 0x01,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x20, 0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x06, 0x3f, 0x02, 0x1f, 0xff, 0xc4, 0x00,
        0x14, 0x10, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x20, 0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x01, 0x3f, 0x21, 0x1f,
        0xff, 0xda, 0x00, 0x0c, 0x03, 0x01, 0x00, 0x02, 0x00, 0x03, 0x00, 0x00, 0x00, 0x10, 0xf3,
        0xff, 0xc4, 0x00, 0x14, 0x11, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xda, 0x00, 0x08, 0x01, 0x03, 0x01, 0x01,
        0x3f, 0x10, 0x37, 0xff, 0xc4, 0x00, 0x14, 0x11, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xda, 0x00, 0x08, 0x01,
        0x02, 0x01, 0x01, 0x3f, 0x10, 0x57, 0xff, 0xc4, 0x00, 0x14, 0x10, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0xff, 0xda,
        0x00, 0x08, 0x01, 0x01, 0x00, 0x01, 0x3f, 0x10, 0x1f, 0xff, 0xd9,
    ];

    /// 3×2 palette PNG written by Pillow: rows [red, (0,128,255), (10,20,30)] and the reverse.
    const PALETTE_PNG: &[u8] = &[
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x02, 0x02, 0x03, 0x00, 0x00, 0x00, 0xe0,
        0x1a, 0x8e, 0x89, 0x00, 0x00, 0x00, 0x09, 0x50, 0x4c, 0x54, 0x45, 0xff, 0x00, 0x00, 0x00,
        0x80, 0xff, 0x0a, 0x14, 0x1e, 0x7c, 0xf9, 0x3c, 0x08, 0x00, 0x00, 0x00, 0x0c, 0x49, 0x44,
        0x41, 0x54, 0x78, 0x9c, 0x63, 0x90, 0x60, 0x98, 0x00, 0x00, 0x00, 0xdc, 0x00, 0xa9, 0x6c,
        0xe7, 0xc0, 0x23, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ];

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend(kind);
        out.extend(data);
        let crc = crc32(&out[start..]);
        out.extend(crc.to_be_bytes());
    }

    /// A syntactically valid PNG header claiming `width × height` 8-bit RGB, with no pixel data.
    fn png_header_only(width: u32, height: u32) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend(width.to_be_bytes());
        ihdr.extend(height.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]);
        png_chunk(&mut out, b"IHDR", &ihdr);
        png_chunk(&mut out, b"IDAT", &[]);
        png_chunk(&mut out, b"IEND", &[]);
        out
    }

    #[test]
    fn rgb_png_loads_exactly() {
        let d = dir();
        let path = d.path().join("rgb.png");
        let img = RgbImage::from_fn(5, 3, |x, y| Rgb([x as u8 * 50, y as u8 * 100, 7]));
        img.save(&path).unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!((loaded.width, loaded.height), (5, 3));
        assert!(loaded.alpha.is_none());
        let expected: Vec<f32> = img.as_raw().iter().map(|&v| f32::from(v)).collect();
        assert_eq!(loaded.rgb, expected);
    }

    #[test]
    fn grayscale_png_is_replicated_to_rgb() {
        let d = dir();
        let path = d.path().join("gray.png");
        GrayImage::from_fn(4, 2, |x, y| Luma([(x * 60 + y) as u8]))
            .save(&path)
            .unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!((loaded.width, loaded.height), (4, 2));
        for (i, px) in loaded.rgb.chunks_exact(3).enumerate() {
            let (x, y) = (i % 4, i / 4);
            assert_eq!(px, [(x * 60 + y) as f32; 3]);
        }
    }

    #[test]
    fn grayscale_jpeg_is_replicated_to_rgb() {
        let d = dir();
        let path = d.path().join("gray.jpg");
        GrayImage::from_pixel(8, 8, Luma([100]))
            .save(&path)
            .unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!((loaded.width, loaded.height), (8, 8));
        for px in loaded.rgb.chunks_exact(3) {
            assert_eq!(px[0], px[1]);
            assert_eq!(px[1], px[2]);
            assert!((px[0] - 100.0).abs() <= 2.0, "{px:?}");
        }
    }

    #[test]
    fn baseline_jpeg_loads() {
        let d = dir();
        let path = d.path().join("photo.jpeg");
        std::fs::write(&path, jpeg_bytes(20, 10)).unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!((loaded.width, loaded.height), (20, 10));
        assert!(loaded.alpha.is_none());
    }

    #[test]
    fn exif_orientation_is_applied() {
        // 16×8, left half red, right half blue, stored with EXIF orientation 6 ("rotate 90°
        // clockwise to display"), written by Pillow.
        let bytes = include_bytes!("../../tests/fixtures/exif-orientation-6.jpg");
        let d = dir();
        let path = d.path().join("phone.jpg");
        std::fs::write(&path, bytes).unwrap();
        let img = load(&path).unwrap();
        assert_eq!((img.width, img.height), (8, 16), "turned upright");
        let pixel = |x: usize, y: usize| &img.rgb[(y * 8 + x) * 3..][..3];
        assert!(
            pixel(4, 2)[0] > 200.0 && pixel(4, 2)[2] < 60.0,
            "top is red"
        );
        assert!(
            pixel(4, 13)[2] > 200.0 && pixel(4, 13)[0] < 60.0,
            "bottom is blue"
        );
    }

    #[test]
    fn progressive_jpeg_loads() {
        // SOF2 is the progressive frame marker: make sure the fixture is what it claims.
        assert!(PROGRESSIVE_JPEG.windows(2).any(|w| w == [0xFF, 0xC2]));
        let d = dir();
        let path = d.path().join("progressive.jpg");
        std::fs::write(&path, PROGRESSIVE_JPEG).unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!((loaded.width, loaded.height), (16, 12));
        let at = |x: usize, y: usize| &loaded.rgb[(y * 16 + x) * 3..][..3];
        for (got, want) in [
            (at(2, 6), [200.0, 30.0, 40.0]),
            (at(13, 6), [20.0, 60.0, 220.0]),
        ] {
            for c in 0..3 {
                assert!((got[c] - want[c]).abs() < 12.0, "{got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn rgba_png_keeps_alpha() {
        let d = dir();
        let path = d.path().join("rgba.png");
        RgbaImage::from_fn(3, 2, |x, y| Rgba([10, 20, 30, (x * 100 + y) as u8]))
            .save(&path)
            .unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.rgb, [10.0, 20.0, 30.0].repeat(6));
        assert_eq!(
            loaded.alpha.unwrap(),
            [0.0, 100.0, 200.0, 1.0, 101.0, 201.0]
        );
    }

    #[test]
    fn rgb16_png_keeps_full_precision() {
        let d = dir();
        let path = d.path().join("deep.png");
        let values = [0u16, 1, 1000, 32768, 65534, 65535];
        ImageBuffer::<Rgb<u16>, Vec<u16>>::from_raw(2, 1, values.to_vec())
            .unwrap()
            .save(&path)
            .unwrap();
        let loaded = load(&path).unwrap();
        let expected: Vec<f32> = values.iter().map(|&v| f32::from(v) / 257.0).collect();
        assert_eq!(loaded.rgb, expected);
        // 1/257 of a level: not representable in 8 bits, so not rounded through them.
        assert!(loaded.rgb[1] > 0.0 && loaded.rgb[1] < 0.01);
    }

    #[test]
    fn gray16_png_keeps_full_precision() {
        let d = dir();
        let path = d.path().join("deep-gray.png");
        ImageBuffer::<Luma<u16>, Vec<u16>>::from_raw(3, 1, vec![3, 40000, 65535])
            .unwrap()
            .save(&path)
            .unwrap();
        let loaded = load(&path).unwrap();
        let expected: Vec<f32> = [3u16, 40000, 65535]
            .iter()
            .flat_map(|&v| [f32::from(v) / 257.0; 3])
            .collect();
        assert_eq!(loaded.rgb, expected);
        assert_eq!(loaded.rgb[8], 255.0);
    }

    #[test]
    fn palette_png_is_expanded() {
        let d = dir();
        let path = d.path().join("palette.png");
        std::fs::write(&path, PALETTE_PNG).unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!((loaded.width, loaded.height), (3, 2));
        let (a, b, c) = ([255.0, 0.0, 0.0], [0.0, 128.0, 255.0], [10.0, 20.0, 30.0]);
        assert_eq!(loaded.rgb, [a, b, c, c, b, a].concat());
        assert!(loaded.alpha.is_none());
    }

    #[test]
    fn one_pixel_images_load() {
        let d = dir();
        let png = d.path().join("one.png");
        RgbImage::from_pixel(1, 1, Rgb([1, 2, 3]))
            .save(&png)
            .unwrap();
        let loaded = load(&png).unwrap();
        assert_eq!((loaded.width, loaded.height, loaded.long_side()), (1, 1, 1));
        assert_eq!(loaded.rgb, [1.0, 2.0, 3.0]);
        let jpg = d.path().join("one.jpg");
        std::fs::write(&jpg, jpeg_bytes(1, 1)).unwrap();
        assert_eq!(load(&jpg).unwrap().rgb.len(), 3);
    }

    #[test]
    fn format_comes_from_content_not_extension() {
        let d = dir();
        let path = d.path().join("really-a-png.jpg");
        RgbImage::from_pixel(2, 2, Rgb([9, 9, 9]))
            .save_with_format(&path, ImageFormat::Png)
            .unwrap();
        assert_eq!(load(&path).unwrap().rgb, vec![9.0; 12]);
    }

    #[test]
    fn missing_file_is_an_io_error_naming_the_path() {
        let d = dir();
        let path = d.path().join("nope.jpg");
        let err = load(&path).unwrap_err();
        assert!(err.kind() == crate::ErrorKind::Io, "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&*path.to_string_lossy()), "{text}");
    }

    #[test]
    fn text_file_named_jpg_is_refused() {
        let d = dir();
        let path = d.path().join("notes.jpg");
        std::fs::write(&path, "these are not pixels\n").unwrap();
        let err = load(&path).unwrap_err();
        assert!(err.kind() == crate::ErrorKind::Image, "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("not a JPEG, PNG or TIFF image (the file starts with text)"),
            "{text}"
        );
        assert!(text.contains("notes.jpg"), "{text}");
    }

    #[test]
    fn other_image_formats_are_named() {
        let d = dir();
        let path = d.path().join("anim.png");
        std::fs::write(&path, b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").unwrap();
        let text = message(load(&path));
        assert!(
            text.contains("a GIF image; only JPEG, PNG and TIFF"),
            "{text}"
        );
        std::fs::write(&path, [0u8, 1, 2, 3, 200, 201]).unwrap();
        let text = message(load(&path));
        assert!(text.contains("unrecognised content"), "{text}");
    }

    #[test]
    fn truncated_jpeg_is_refused() {
        let d = dir();
        let path = d.path().join("half.jpg");
        let full = jpeg_bytes(64, 48);
        std::fs::write(&path, &full[..full.len() / 2]).unwrap();
        let err = load(&path).unwrap_err();
        assert!(err.kind() == crate::ErrorKind::Image, "{err:?}");
        assert!(err.to_string().contains("truncated JPEG data"), "{err}");
        // Cut inside the header segments, before any scan.
        std::fs::write(&path, &full[..40]).unwrap();
        assert!(message(load(&path)).contains("truncated"));
    }

    #[test]
    fn jpeg_with_data_after_the_end_marker_loads() {
        // Motion photos and some cameras append data (even a video) after the image.
        let d = dir();
        let path = d.path().join("trailer.jpg");
        let mut bytes = jpeg_bytes(16, 16);
        bytes.extend(std::iter::repeat_n(0xAB, 4096));
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(load(&path).unwrap().width, 16);
    }

    #[test]
    fn truncated_png_is_refused() {
        let d = dir();
        let path = d.path().join("half.png");
        let img = RgbImage::from_fn(64, 64, |x, y| {
            Rgb([(x * 3) as u8, (y * 5) as u8, (x ^ y) as u8])
        });
        let mut full = Vec::new();
        img.write_to(&mut Cursor::new(&mut full), ImageFormat::Png)
            .unwrap();
        std::fs::write(&path, &full[..full.len() / 2]).unwrap();
        let err = load(&path).unwrap_err();
        assert!(err.kind() == crate::ErrorKind::Image, "{err:?}");
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn empty_file_is_refused() {
        let d = dir();
        let path = d.path().join("empty.png");
        std::fs::write(&path, b"").unwrap();
        let err = load(&path).unwrap_err();
        assert!(err.kind() == crate::ErrorKind::Image, "{err:?}");
        assert!(err.to_string().contains("empty file"), "{err}");
    }

    #[test]
    fn absurd_dimensions_are_refused_from_the_header() {
        let d = dir();
        let path = d.path().join("huge.png");
        // 10 gigapixels: decoding would need 30 GB, so the refusal must come from the header.
        std::fs::write(&path, png_header_only(100_000, 100_000)).unwrap();
        let err = load(&path).unwrap_err();
        assert!(err.kind() == crate::ErrorKind::Limits, "{err:?}");
        assert!(err.to_string().contains("100000×100000"), "{err}");
    }

    #[test]
    fn custom_limits_apply_to_pixels_and_sides() {
        let d = dir();
        let path = d.path().join("small.png");
        RgbImage::new(10, 10).save(&path).unwrap();
        let few_pixels = Limits {
            max_pixels: 99,
            max_side: 100,
        };
        let err = load_with_limits(&path, &few_pixels).unwrap_err();
        assert!(err.kind() == crate::ErrorKind::Limits, "{err:?}");
        assert!(err.to_string().contains("10×10"), "{err}");
        let short_sides = Limits {
            max_pixels: 1000,
            max_side: 9,
        };
        assert_eq!(
            load_with_limits(&path, &short_sides).unwrap_err().kind(),
            crate::ErrorKind::Limits
        );
        let exact = Limits {
            max_pixels: 100,
            max_side: 10,
        };
        assert!(load_with_limits(&path, &exact).is_ok());
    }

    /// A PNG of `bytes` as a test writes it, for the loader to read back.
    fn png_bytes(width: u32, height: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(width, height, |x, y| Rgb([x as u8, y as u8, 7]));
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn dev_zero_is_refused_from_its_first_bytes() {
        // Reading the whole "file" first never ends: memory grows until the kernel kills us.
        let started = std::time::Instant::now();
        let text = message(load(Path::new("/dev/zero")));
        assert!(text.contains("unrecognised content"), "{text}");
        assert!(started.elapsed().as_secs_f64() < 5.0);
    }

    #[test]
    fn a_gigabyte_of_zeros_named_jpg_is_refused_without_reading_it() {
        let d = dir();
        let path = d.path().join("zeros.jpg");
        // Sparse: no disk, but 1 GiB of memory and time for a loader that reads it all.
        File::create(&path).unwrap().set_len(1 << 30).unwrap();
        let started = std::time::Instant::now();
        let text = message(load(&path));
        let took = started.elapsed().as_secs_f64();
        assert!(text.contains("unrecognised content"), "{text}");
        assert!(took < 0.1, "took {took:.3} s");
    }

    #[test]
    fn a_file_over_the_byte_cap_is_refused_before_it_is_read() {
        let d = dir();
        let path = d.path().join("endless.png");
        let mut file = File::create(&path).unwrap();
        std::io::Write::write_all(&mut file, &png_bytes(4, 4)).unwrap();
        file.set_len(MAX_FILE_BYTES + 1).unwrap();
        let started = std::time::Instant::now();
        let err = load(&path).unwrap_err();
        assert!(err.kind() == crate::ErrorKind::Limits, "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("endless.png") && text.contains("image files over 1 GiB are not read"),
            "{text}"
        );
        assert!(started.elapsed().as_secs_f64() < 0.1);
    }

    /// A FIFO at `path` (`mkfifo`), or `None` where there is no such command.
    fn fifo(path: &Path) -> Option<()> {
        let made = std::process::Command::new("mkfifo").arg(path).status();
        made.ok().filter(|s| s.success()).map(|_| ())
    }

    #[test]
    fn a_pipe_is_read_only_as_far_as_it_needs() {
        let d = dir();
        let path = d.path().join("pipe.png");
        if fifo(&path).is_none() {
            return;
        }
        // Not an image: refused after its first bytes, although the writer never closes the
        // pipe (a loader that reads to the end would wait for ever).
        let writer_path = path.clone();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let writer = std::thread::spawn(move || {
            let mut w = std::fs::OpenOptions::new()
                .write(true)
                .open(&writer_path)
                .unwrap();
            let _ = std::io::Write::write_all(&mut w, &[0u8; 4096]);
            let _ = done_rx.recv();
        });
        let text = message(load(&path));
        assert!(text.contains("unrecognised content"), "{text}");
        done_tx.send(()).unwrap();
        writer.join().unwrap();

        // A real image through a pipe loads (read into memory, within the cap).
        let writer_path = path.clone();
        let writer = std::thread::spawn(move || {
            let mut w = std::fs::OpenOptions::new()
                .write(true)
                .open(&writer_path)
                .unwrap();
            std::io::Write::write_all(&mut w, &png_bytes(5, 3)).unwrap();
        });
        let loaded = load(&path).unwrap();
        writer.join().unwrap();
        assert_eq!((loaded.width, loaded.height), (5, 3));
    }

    #[test]
    fn decode_bytes_matches_the_file_loader() {
        let d = dir();
        let path = d.path().join("same.jpg");
        let jpeg = jpeg_bytes(12, 9);
        std::fs::write(&path, &jpeg).unwrap();
        let limits = Limits::default();
        assert_eq!(
            decode_bytes(&path, &jpeg, &limits).unwrap(),
            load(&path).unwrap()
        );
        let text = decode_bytes(&path, &jpeg[..jpeg.len() / 2], &limits)
            .unwrap_err()
            .to_string();
        assert!(text.contains("truncated JPEG data"), "{text}");
        assert!(decode_bytes(&path, &[], &limits).is_err());
    }

    #[test]
    fn text_detection() {
        assert!(looks_like_text(b"hello\tworld\r\n"));
        assert!(looks_like_text("café ☕".as_bytes()));
        assert!(!looks_like_text(&[0, 1, 2]));
        assert!(!looks_like_text(&[0xC3, 0x28]));
    }
}
