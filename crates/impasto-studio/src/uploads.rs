//! Accepting an uploaded image: size limits in bytes and pixels, the type from the content
//! (never the name or the request's `Content-Type`), decoded with the library's limits before
//! it is kept, and a thumbnail for the page.

use axum::http::StatusCode;

use impasto::image_io::{self, Limits};
use impasto::ErrorKind;

use crate::api_error::ApiError;
use crate::id::Id;
use crate::store::{now, Store, Upload};

/// Long side of the thumbnails.
pub const THUMB_SIDE: usize = 160;

/// `jpeg`, `png` or `tiff` from the first bytes, or `None`.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("jpeg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("png")
    } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        Some("tiff")
    } else {
        None
    }
}

/// Checks and keeps an upload. `name` is only shown; `limits` bounds the pixels.
pub fn accept(
    store: &Store,
    bytes: &[u8],
    name: &str,
    limits: &Limits,
) -> Result<Upload, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::field("file", "the file is empty"));
    }
    let Some(format) = sniff(bytes) else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not a JPEG, PNG or TIFF image",
        )
        .on("file"));
    };
    let temp = store.upload_temp();
    crate::store::write_atomic(&temp, bytes).map_err(ApiError::internal)?;
    let decoded = image_io::load_with_limits(&temp, limits);
    let image = match decoded {
        Ok(image) => image,
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            let status = match e.kind() {
                ErrorKind::Limits => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            // The message names the temporary file; the person knows the file by its own name.
            let message =
                format!("{e:#}").replace(&temp.display().to_string(), &display_name(name));
            return Err(ApiError::new(status, message).on("file"));
        }
    };
    let upload = Upload {
        id: Id::random(),
        name: display_name(name),
        width: image.width,
        height: image.height,
        format: format.to_string(),
        bytes: bytes.len() as u64,
        created: now(),
    };
    let kept = (|| -> std::io::Result<()> {
        std::fs::rename(&temp, store.upload_file(&upload))?;
        let (w, h) = image_io::fit_long_side(image.width, image.height, THUMB_SIDE);
        let thumb = if image.long_side() > THUMB_SIDE {
            image_io::resize(&image, w, h).map_err(|e| std::io::Error::other(e.to_string()))?
        } else {
            image
        };
        image_io::save(&thumb, &store.upload_thumb(upload.id))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        store.save_upload(&upload)
    })();
    if let Err(e) = kept {
        let _ = std::fs::remove_file(&temp);
        return Err(ApiError::internal(e));
    }
    Ok(upload)
}

/// A name fit to show: the last path component, printable, at most 100 characters.
pub fn display_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = last.chars().filter(|c| !c.is_control()).take(100).collect();
    if clean.is_empty() {
        "image".to_string()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_the_content() {
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0rest"), Some("jpeg"));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), Some("png"));
        assert_eq!(sniff(b"GIF89a"), None);
        assert_eq!(sniff(b"<html>"), None);
    }

    #[test]
    fn names_are_only_shown_never_paths() {
        assert_eq!(display_name("../../etc/passwd"), "passwd");
        assert_eq!(display_name("C:\\x\\photo.jpg"), "photo.jpg");
        assert_eq!(display_name(""), "image");
        assert_eq!(display_name("a\nb.png"), "ab.png");
    }
}
