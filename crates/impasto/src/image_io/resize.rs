//! Resampling to the working resolution.

use fast_image_resize::images::{TypedImage, TypedImageRef};
use fast_image_resize::pixels::{F32x3, F32};
use fast_image_resize::{FilterType, ImageView, ResizeAlg, ResizeOptions, Resizer};

use super::Image;
use crate::{Error, Result};

/// Size whose long side is `long_side`, keeping the aspect ratio (rounded, each side ≥ 1).
///
/// The style-transfer size is given as one number (the long side) because that is what bounds
/// memory and time whatever the orientation of the photo.
pub fn fit_long_side(width: usize, height: usize, long_side: usize) -> (usize, usize) {
    let (width, height, long_side) = (width.max(1), height.max(1), long_side.max(1));
    let scale = long_side as f64 / width.max(height) as f64;
    let short = |side: usize| ((side as f64 * scale).round() as usize).clamp(1, long_side);
    if width >= height {
        (long_side, short(height))
    } else {
        (short(width), long_side)
    }
}

/// Resampled copy at exactly `width × height` with Lanczos3, on `f32` channels so 16-bit inputs
/// keep their precision; alpha is resampled the same way. An image already that size is returned
/// unchanged (bit-identical), so asking for the native size never softens it.
///
/// Lanczos rings slightly around hard edges; results are clamped to 0–255 so the network and the
/// encoder never see values a real image cannot have.
pub fn resize(image: &Image, width: usize, height: usize) -> Result<Image> {
    if width == 0 || height == 0 {
        return Err(Error::parameter(format!(
            "cannot resize to {width}×{height}: both sides must be at least 1 pixel"
        )));
    }
    if (width, height) == (image.width, image.height) {
        return Ok(image.clone());
    }
    let side = |v: usize| {
        u32::try_from(v)
            .map_err(|_| Error::limits(format!("image side of {v} pixels is too large")))
    };
    let (src_w, src_h, dst_w, dst_h) = (
        side(image.width)?,
        side(image.height)?,
        side(width)?,
        side(height)?,
    );
    let pixels = image.width * image.height;
    if image.rgb.len() != pixels * 3 || image.alpha.as_ref().is_some_and(|a| a.len() != pixels) {
        return Err(Error::parameter(format!(
            "image buffers do not match its size {}×{}",
            image.width, image.height
        )));
    }

    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    let mut resizer = Resizer::new();

    let src: Vec<F32x3> = image
        .rgb
        .chunks_exact(3)
        .map(|c| F32x3::new([c[0], c[1], c[2]]))
        .collect();
    let rgb = resample(&mut resizer, &options, src_w, src_h, &src, dst_w, dst_h)?
        .iter()
        .flat_map(|p| p.0)
        .map(|v| v.clamp(0.0, 255.0))
        .collect();

    let alpha = match &image.alpha {
        None => None,
        Some(alpha) => {
            let src: Vec<F32> = alpha.iter().map(|&a| F32::new(a)).collect();
            let out = resample(&mut resizer, &options, src_w, src_h, &src, dst_w, dst_h)?;
            Some(out.iter().map(|p| p.0.clamp(0.0, 255.0)).collect())
        }
    };
    Image::new(width, height, rgb, alpha)
}

fn resample<P>(
    resizer: &mut Resizer,
    options: &ResizeOptions,
    src_w: u32,
    src_h: u32,
    src: &[P],
    dst_w: u32,
    dst_h: u32,
) -> Result<Vec<P>>
where
    P: fast_image_resize::PixelTrait,
    for<'a> TypedImageRef<'a, P>: ImageView<Pixel = P>,
{
    let src = TypedImageRef::new(src_w, src_h, src).map_err(resize_failed)?;
    let mut dst = TypedImage::<P>::new(dst_w, dst_h);
    resizer
        .resize_typed(&src, &mut dst, options)
        .map_err(resize_failed)?;
    Ok(dst.pixels().to_vec())
}

/// The resizer's error (buffer sizes it refuses), kept as the source.
fn resize_failed(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::parameter("resizing image").with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constant(width: usize, height: usize, value: [f32; 3], alpha: Option<f32>) -> Image {
        let n = width * height;
        Image::new(width, height, value.repeat(n), alpha.map(|a| vec![a; n])).unwrap()
    }

    #[test]
    fn fit_long_side_keeps_aspect() {
        assert_eq!(fit_long_side(1024, 768, 512), (512, 384));
        assert_eq!(fit_long_side(768, 1024, 512), (384, 512));
        assert_eq!(fit_long_side(1000, 1, 10), (10, 1));
        assert_eq!(fit_long_side(1, 1000, 10), (1, 10));
        assert_eq!(fit_long_side(300, 300, 64), (64, 64));
        assert_eq!(fit_long_side(3, 2, 1000), (1000, 667));
        assert_eq!(fit_long_side(1, 1, 1), (1, 1));
    }

    #[test]
    fn same_size_is_bit_identical() {
        let rgb: Vec<f32> = (0..4 * 3 * 3).map(|i| i as f32 * 7.123 - 3.0).collect();
        let image = Image::new(4, 3, rgb, Some(vec![12.5; 12])).unwrap();
        assert_eq!(resize(&image, 4, 3).unwrap(), image);
    }

    #[test]
    fn constant_image_stays_constant() {
        let image = constant(37, 23, [12.0, 128.5, 250.0], Some(200.0));
        for (w, h) in [(16, 10), (80, 51), (37, 5), (3, 40)] {
            let out = resize(&image, w, h).unwrap();
            assert_eq!((out.width, out.height), (w, h));
            for px in out.rgb.chunks_exact(3) {
                for (got, want) in px.iter().zip([12.0, 128.5, 250.0]) {
                    assert!((got - want).abs() < 1e-3, "{got} vs {want} at {w}×{h}");
                }
            }
            let alpha = out.alpha.unwrap();
            assert_eq!(alpha.len(), w * h);
            assert!(alpha.iter().all(|a| (a - 200.0).abs() < 1e-3));
        }
    }

    #[test]
    fn one_pixel_images_resize() {
        let one = constant(1, 1, [10.0, 20.0, 30.0], None);
        assert_eq!(resize(&one, 1, 1).unwrap(), one);
        let up = resize(&one, 3, 2).unwrap();
        assert_eq!((up.width, up.height), (3, 2));
        for px in up.rgb.chunks_exact(3) {
            for (got, want) in px.iter().zip([10.0, 20.0, 30.0]) {
                assert!((got - want).abs() < 1e-3, "{got} vs {want}");
            }
        }
    }

    #[test]
    fn results_stay_in_range_and_follow_the_content() {
        // A hard black/white edge makes Lanczos ring; the output must still be 0–255.
        let (w, h) = (32, 8);
        let rgb = (0..w * h)
            .flat_map(|i| [if i % w < w / 2 { 0.0 } else { 255.0 }; 3])
            .collect();
        let image = Image::new(w, h, rgb, None).unwrap();
        let out = resize(&image, 77, 5).unwrap();
        assert!(out.rgb.iter().all(|v| (0.0..=255.0).contains(v)));
        let row = |x: usize| out.rgb[x * 3];
        assert!(row(2) < 1.0 && row(74) > 254.0, "{} {}", row(2), row(74));
    }

    #[test]
    fn zero_target_is_refused() {
        let image = constant(2, 2, [0.0; 3], None);
        let err = resize(&image, 0, 5).unwrap_err();
        assert!(err.kind() == crate::ErrorKind::Parameter, "{err:?}");
        assert!(err.to_string().contains("0×5"), "{err}");
    }
}
