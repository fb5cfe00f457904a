//! Pre- and post-processing around the networks: 0–255 ↔ 0–1, the predictor's centred square,
//! reflect padding to the transform's multiple of 4 and the crop back, channel orders.

use crate::image_io::{self, Image};
use crate::Result;

/// RGB 0–255 → 0–1, channels last (what the arbitrary networks read).
pub(crate) fn to_unit(rgb: &[f32]) -> Vec<f32> {
    rgb.iter().map(|v| v / 255.0).collect()
}

/// 0–1 → 0–255, clamped (the networks end in a sigmoid, but a blend may overshoot by ulps).
pub(crate) fn from_unit(values: &[f32]) -> Vec<f32> {
    values
        .iter()
        .map(|v| (v * 255.0).clamp(0.0, 255.0))
        .collect()
}

/// The largest centred square of the image, resized to `side`×`side` (Lanczos): what the style
/// predictor sees, as Magenta and the wheel prepare it.
pub(crate) fn centred_square(image: &Image, side: usize) -> Result<Image> {
    let s = image.width.min(image.height);
    let (x0, y0) = ((image.width - s) / 2, (image.height - s) / 2);
    let mut rgb = Vec::with_capacity(s * s * 3);
    for y in y0..y0 + s {
        let row = (y * image.width + x0) * 3;
        rgb.extend_from_slice(&image.rgb[row..row + s * 3]);
    }
    // The predictor never sees alpha.
    let square = Image::new(s, s, rgb, None)?;
    image_io::resize(&square, side, side)
}

/// Pads `h × w × c` (channels last) at the bottom and right to multiples of `multiple`, with
/// reflection (the edge pixel not repeated, as numpy's and ONNX's `reflect`), so the strided
/// convolutions see image-like content rather than a hard border. Returns the padded size.
/// Needs `h, w > multiple - 1` (the caller's minimum side guarantees it).
pub(crate) fn pad_reflect(
    data: &[f32],
    h: usize,
    w: usize,
    c: usize,
    multiple: usize,
) -> (Vec<f32>, usize, usize) {
    let (ph, pw) = (
        h.div_ceil(multiple) * multiple,
        w.div_ceil(multiple) * multiple,
    );
    if (ph, pw) == (h, w) {
        return (data.to_vec(), h, w);
    }
    // Index i ≥ n reflects to 2(n-1) - i.
    let reflect = |i: usize, n: usize| if i < n { i } else { 2 * (n - 1) - i };
    let mut out = Vec::with_capacity(ph * pw * c);
    for y in 0..ph {
        let sy = reflect(y, h);
        for x in 0..pw {
            let sx = reflect(x, w);
            let at = (sy * w + sx) * c;
            out.extend_from_slice(&data[at..at + c]);
        }
    }
    (out, ph, pw)
}

/// The top-left `h × w` of a `ph × pw × c` buffer.
pub(crate) fn crop(data: &[f32], pw: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(h * w * c);
    for y in 0..h {
        out.extend_from_slice(&data[y * pw * c..(y * pw + w) * c]);
    }
    out
}

/// Channels last (`h × w × c`) → channels first (`c × h × w`).
pub(crate) fn to_channels_first(data: &[f32], h: usize, w: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for (p, px) in data.chunks_exact(c).enumerate() {
        for (k, v) in px.iter().enumerate() {
            out[k * h * w + p] = *v;
        }
    }
    out
}

/// Channels first (`c × h × w`) → channels last (`h × w × c`).
pub(crate) fn to_channels_last(data: &[f32], h: usize, w: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for k in 0..c {
        for p in 0..h * w {
            out[p * c + k] = data[k * h * w + p];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_padding_matches_numpy() {
        // np.pad(np.arange(5*3).reshape(5,3,1), ((0,3),(0,1),(0,0)), mode="reflect")[..., 0]
        let data: Vec<f32> = (0..15).map(|v| v as f32).collect();
        let (out, ph, pw) = pad_reflect(&data, 5, 3, 1, 4);
        assert_eq!((ph, pw), (8, 4));
        #[rustfmt::skip]
        let want = [
            0., 1., 2., 1.,
            3., 4., 5., 4.,
            6., 7., 8., 7.,
            9., 10., 11., 10.,
            12., 13., 14., 13.,
            9., 10., 11., 10.,
            6., 7., 8., 7.,
            3., 4., 5., 4.,
        ];
        assert_eq!(out, want);
        assert_eq!(crop(&out, pw, 1, 5, 3), data);
    }

    #[test]
    fn a_multiple_of_four_is_not_padded() {
        let data = vec![1.0; 8 * 4 * 3];
        let (out, ph, pw) = pad_reflect(&data, 8, 4, 3, 4);
        assert_eq!((ph, pw, out), (8, 4, data));
    }

    #[test]
    fn channel_orders_round_trip() {
        let data: Vec<f32> = (0..2 * 3 * 3).map(|v| v as f32).collect();
        let first = to_channels_first(&data, 2, 3, 3);
        assert_eq!(&first[..6], &[0., 3., 6., 9., 12., 15.]);
        assert_eq!(to_channels_last(&first, 2, 3, 3), data);
    }

    #[test]
    fn centred_square_takes_the_middle() {
        // 6×2, the middle 2×2 columns 2–3 are white, the rest black: the square is all white.
        let rgb = (0..12)
            .flat_map(|i| {
                [if (2..4).contains(&(i % 6)) {
                    255.0
                } else {
                    0.0
                }; 3]
            })
            .collect();
        let image = Image::new(6, 2, rgb, None).unwrap();
        let square = centred_square(&image, 2).unwrap();
        assert!(square.rgb.iter().all(|v| *v == 255.0), "{:?}", square.rgb);
    }
}
