//! Colour preservation: keeping the content photo's colours in a style transfer, after Gatys,
//! Ecker, Bethge, Hertzmann & Shechtman (2017), "Controlling Perceptual Factors in Neural Style
//! Transfer" (CVPR), section 5.
//!
//! Plain style transfer copies the painting's palette along with its brush strokes. The paper
//! gives two ways to keep the photo's colours instead, both pure pixel operations around an
//! otherwise unchanged transfer:
//!
//! - **Luminance-only transfer** ([`PreserveColor::Luminance`]). The images are split into
//!   YIQ, the NTSC television colour space: Y is the luminance (the weighted sum of R, G and B
//!   that the eye reads as brightness) and I, Q are two chroma axes that are zero for every grey.
//!   The network sees only luminance: the content's Y ([`luminance_only`]) and the style's Y with
//!   its mean and standard deviation matched to the content's ([`matched_luminance`]), so that a
//!   dark painting does not darken the photo. Afterwards the result's Y is joined with the
//!   content's I and Q ([`recombine_with_chroma`]). Style is transferred as brightness patterns
//!   only and the photo's hues survive exactly.
//! - **Colour histogram matching** ([`PreserveColor::Histogram`]). Before the run, the style
//!   image's colours are moved by an affine map so that their mean and covariance equal the
//!   content's ([`match_color_statistics`]); the transfer then runs in full colour with a
//!   repainted style image. Strokes keep their colour variation, but in the photo's palette.
//!
//! Everything here works on 0–255 `f32` RGB as [`Image`] holds it, computes in `f64`, and never
//! clamps: values may leave 0–255 and are only clamped when an image is saved, like everywhere
//! else in the pipeline.

use crate::image_io::Image;
use crate::{Error, Result};

/// How the output keeps the content photo's colours.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PreserveColor {
    /// Plain transfer: the output takes the style's colours.
    #[default]
    None,
    /// Transfer on luminance only, then restore the content's chroma (YIQ I and Q).
    Luminance,
    /// Recolour the style image to the content's colour mean and covariance before the run.
    Histogram,
}

/// RGB → YIQ, rows Y, I, Q. The precise NTSC coefficients: every I and Q row sums to exactly
/// zero, so a grey pixel has no chroma and its Y equals its grey level.
const RGB_TO_YIQ: [[f64; 3]; 3] = [
    [0.299, 0.587, 0.114],
    [0.595716, -0.274453, -0.321263],
    [0.211456, -0.522591, 0.311135],
];

/// The exact inverse, computed rather than copied from a table: the rounded published inverse
/// would make a round trip drift by ~1e-4 per pass.
const YIQ_TO_RGB: [[f64; 3]; 3] = invert3(RGB_TO_YIQ);

/// Inverse of a 3×3 matrix by cofactors (the adjugate over the determinant).
const fn invert3(m: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let c00 = m[1][1] * m[2][2] - m[1][2] * m[2][1];
    let c01 = m[1][2] * m[2][0] - m[1][0] * m[2][2];
    let c02 = m[1][0] * m[2][1] - m[1][1] * m[2][0];
    let det = m[0][0] * c00 + m[0][1] * c01 + m[0][2] * c02;
    let d = 1.0 / det;
    [
        [
            c00 * d,
            (m[0][2] * m[2][1] - m[0][1] * m[2][2]) * d,
            (m[0][1] * m[1][2] - m[0][2] * m[1][1]) * d,
        ],
        [
            c01 * d,
            (m[0][0] * m[2][2] - m[0][2] * m[2][0]) * d,
            (m[0][2] * m[1][0] - m[0][0] * m[1][2]) * d,
        ],
        [
            c02 * d,
            (m[0][1] * m[2][0] - m[0][0] * m[2][1]) * d,
            (m[0][0] * m[1][1] - m[0][1] * m[1][0]) * d,
        ],
    ]
}

fn mat_vec(m: &[[f64; 3]; 3], v: [f64; 3]) -> [f64; 3] {
    m.map(|row| row[0] * v[0] + row[1] * v[1] + row[2] * v[2])
}

fn pixel(p: &[f32]) -> [f64; 3] {
    [p[0] as f64, p[1] as f64, p[2] as f64]
}

fn luma(p: &[f32]) -> f64 {
    let [r, g, b] = pixel(p);
    let y = RGB_TO_YIQ[0];
    y[0] * r + y[1] * g + y[2] * b
}

fn check_triples(what: &str, values: &[f32]) {
    assert!(
        values.len().is_multiple_of(3),
        "{what} has {} values, not a whole number of pixels",
        values.len()
    );
}

fn convert(m: &[[f64; 3]; 3], values: &[f32]) -> Vec<f32> {
    values
        .chunks_exact(3)
        .flat_map(|p| mat_vec(m, pixel(p)).map(|v| v as f32))
        .collect()
}

/// RGB (0–255, interleaved) to YIQ (Y in 0–255, I and Q signed), interleaved the same way.
///
/// # Panics
/// If the length is not a multiple of 3.
pub fn rgb_to_yiq(rgb: &[f32]) -> Vec<f32> {
    check_triples("RGB buffer", rgb);
    convert(&RGB_TO_YIQ, rgb)
}

/// The exact inverse of [`rgb_to_yiq`]. Out-of-gamut YIQ gives RGB outside 0–255, unclamped.
///
/// # Panics
/// If the length is not a multiple of 3.
pub fn yiq_to_rgb(yiq: &[f32]) -> Vec<f32> {
    check_triples("YIQ buffer", yiq);
    convert(&YIQ_TO_RGB, yiq)
}

/// The luminance of each pixel as the single value repeated in three channels.
fn grey_from(luminance: impl Iterator<Item = f64>, pixels: usize) -> Vec<f32> {
    let mut rgb = Vec::with_capacity(pixels * 3);
    for y in luminance {
        let y = y as f32;
        rgb.extend_from_slice(&[y, y, y]);
    }
    rgb
}

/// The image's luminance Y replicated into three channels, alpha kept: what the network sees of
/// the content in luminance-only transfer. Y of the result is Y of the input, since Y of a grey
/// (v, v, v) is v.
pub fn luminance_only(image: &Image) -> Image {
    let pixels = image.rgb.len() / 3;
    Image {
        width: image.width,
        height: image.height,
        rgb: grey_from(image.rgb.chunks_exact(3).map(luma), pixels),
        alpha: image.alpha.clone(),
    }
}

/// Mean and population standard deviation of the luminance, two passes for accuracy.
fn luma_mean_std(rgb: &[f32]) -> (f64, f64) {
    let n = (rgb.len() / 3).max(1) as f64;
    let mean = rgb.chunks_exact(3).map(luma).sum::<f64>() / n;
    let var = rgb
        .chunks_exact(3)
        .map(|p| (luma(p) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

/// Below this luminance standard deviation (in 0–255 grey levels) the style counts as flat: a
/// gain of σ_c/σ_s would only blow rounding noise or a lone stray pixel up to absurd values.
const FLAT_LUMINANCE_STD: f64 = 1e-3;

/// The style's luminance, replicated into three channels, with its mean and standard deviation
/// matched to the content's: Y' = (Y − μ_s)·σ_c/σ_s + μ_c (Gatys et al. 2017, section 5.1). This is the
/// style target of luminance-only transfer; without the match, the style's overall brightness and
/// contrast would leak into the output. A flat style (σ_s ≈ 0) has no contrast to rescale and is
/// only shifted to μ_c. The style's alpha is kept.
pub fn matched_luminance(style: &Image, content: &Image) -> Image {
    let (mean_s, std_s) = luma_mean_std(&style.rgb);
    let (mean_c, std_c) = luma_mean_std(&content.rgb);
    let gain = if std_s > FLAT_LUMINANCE_STD {
        std_c / std_s
    } else {
        1.0
    };
    let pixels = style.rgb.len() / 3;
    let matched = style
        .rgb
        .chunks_exact(3)
        .map(|p| (luma(p) - mean_s) * gain + mean_c);
    Image {
        width: style.width,
        height: style.height,
        rgb: grey_from(matched, pixels),
        alpha: style.alpha.clone(),
    }
}

/// The final step of luminance-only transfer: the result's luminance (Y of its YIQ) joined with
/// the content's chroma (its I and Q), back in RGB. `content_rgb` is the content at the working
/// size, so both buffers describe the same pixels.
///
/// # Panics
/// If the lengths differ or are not a multiple of 3.
pub fn recombine_with_chroma(result_rgb: &[f32], content_rgb: &[f32]) -> Vec<f32> {
    check_triples("result", result_rgb);
    assert_eq!(
        result_rgb.len(),
        content_rgb.len(),
        "result and content must have the same number of values"
    );
    result_rgb
        .chunks_exact(3)
        .zip(content_rgb.chunks_exact(3))
        .flat_map(|(r, c)| {
            let [_, i, q] = mat_vec(&RGB_TO_YIQ, pixel(c));
            mat_vec(&YIQ_TO_RGB, [luma(r), i, q]).map(|v| v as f32)
        })
        .collect()
}

/// Colour statistics of a set of RGB pixels: the mean and the (population) covariance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColorStats {
    /// Mean of each channel.
    pub mean: [f64; 3],
    /// The channels' 3×3 covariance matrix.
    pub covariance: [[f64; 3]; 3],
}

/// Mean and 3×3 covariance of the pixels (dividing by n, not n − 1), in two passes so that a
/// large mean does not cancel away the covariance's digits.
///
/// # Panics
/// If the length is not a multiple of 3. An empty buffer gives zero statistics.
pub fn color_stats(rgb: &[f32]) -> ColorStats {
    check_triples("RGB buffer", rgb);
    let n = (rgb.len() / 3).max(1) as f64;
    let mut mean = [0.0; 3];
    for p in rgb.chunks_exact(3) {
        for (m, v) in mean.iter_mut().zip(pixel(p)) {
            *m += v;
        }
    }
    let mean = mean.map(|m| m / n);
    let mut covariance = [[0.0; 3]; 3];
    for p in rgb.chunks_exact(3) {
        let d = [0, 1, 2].map(|k| p[k] as f64 - mean[k]);
        for (row, dj) in covariance.iter_mut().zip(d) {
            for (c, dk) in row.iter_mut().zip(d) {
                *c += dj * dk;
            }
        }
    }
    ColorStats {
        mean,
        covariance: covariance.map(|row| row.map(|c| c / n)),
    }
}

fn check_image(what: &str, image: &Image) -> Result<()> {
    let expected = image
        .width
        .checked_mul(image.height)
        .and_then(|p| p.checked_mul(3));
    if image.rgb.is_empty() || expected != Some(image.rgb.len()) {
        return Err(Error::parameter(format!(
            "{what} image has {} RGB values for {}×{} pixels",
            image.rgb.len(),
            image.width,
            image.height
        )));
    }
    if image.rgb.iter().any(|v| !v.is_finite()) {
        return Err(Error::parameter(format!(
            "{what} image has non-finite pixel values"
        )));
    }
    Ok(())
}

/// Relative ridge added to the style covariance before inverting its square root: it keeps a
/// grey or one-colour style (a singular covariance) finite while changing a real photo's
/// statistics by about a millionth.
const RIDGE_RELATIVE: f64 = 1e-6;
/// Absolute part of the ridge, for a perfectly flat style whose covariance trace is zero.
const RIDGE_ABSOLUTE: f64 = 1e-9;

/// Colour histogram matching (Gatys et al. 2017, section 5.2): the style image recoloured by the
/// affine map x' = A (x − μ_s) + μ_c with A = Σ_c^{1/2} Σ_s^{-1/2}, so that its colour mean and
/// covariance become the content's. Any A with A Σ_s Aᵀ = Σ_c would do; the paper discusses a
/// Cholesky factor too, but that one depends on the order of the channels (R, G, B treated
/// differently), while symmetric square roots treat all three alike.
///
/// Σ_s gets a small ridge before its inverse square root, so a grey style (all channels equal)
/// or a one-colour style comes out finite: its missing directions of variation simply stay
/// missing. The style's size and alpha are kept; values are not clamped.
pub fn match_color_statistics(style: &Image, content: &Image) -> Result<Image> {
    check_image("style", style)?;
    check_image("content", content)?;
    let s = color_stats(&style.rgb);
    let c = color_stats(&content.rgb);
    let mut sigma_s = s.covariance;
    let trace = sigma_s[0][0] + sigma_s[1][1] + sigma_s[2][2];
    let ridge = RIDGE_RELATIVE * trace + RIDGE_ABSOLUTE;
    for (k, row) in sigma_s.iter_mut().enumerate() {
        row[k] += ridge;
    }
    // Rounding can leave a (near-)singular covariance with a slightly negative eigenvalue.
    let sqrt_c = symmetric_function(c.covariance, |l| l.max(0.0).sqrt());
    let inv_sqrt_s = symmetric_function(sigma_s, |l| 1.0 / l.max(ridge).sqrt());
    let a = mat_mul(&sqrt_c, &inv_sqrt_s);
    let rgb = style
        .rgb
        .chunks_exact(3)
        .flat_map(|p| {
            let d = [0, 1, 2].map(|k| p[k] as f64 - s.mean[k]);
            let m = mat_vec(&a, d);
            [0, 1, 2].map(|k| (m[k] + c.mean[k]) as f32)
        })
        .collect();
    Ok(Image {
        width: style.width,
        height: style.height,
        rgb,
        alpha: style.alpha.clone(),
    })
}

fn mat_mul(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    a.map(|row| [0, 1, 2].map(|j| row[0] * b[0][j] + row[1] * b[1][j] + row[2] * b[2][j]))
}

/// f(M) = V f(Λ) Vᵀ for a symmetric M = V Λ Vᵀ: its square root, inverse square root...
fn symmetric_function(m: [[f64; 3]; 3], f: impl Fn(f64) -> f64) -> [[f64; 3]; 3] {
    let (values, vectors) = symmetric_eigen(m);
    let f_values = values.map(f);
    [0, 1, 2].map(|i| {
        [0, 1, 2].map(|j| {
            (0..3)
                .map(|k| vectors[i][k] * f_values[k] * vectors[j][k])
                .sum()
        })
    })
}

/// Eigen-decomposition of a symmetric 3×3 matrix by the cyclic Jacobi method: returns the
/// eigenvalues and the matrix V whose columns are the matching orthonormal eigenvectors, so that
/// M = V diag(λ) Vᵀ. Jacobi rather than a closed-form cubic because it stays accurate for the
/// repeated and near-zero eigenvalues that grey or flat images produce, and converges
/// quadratically, so a handful of sweeps reach machine precision on a 3×3.
fn symmetric_eigen(mut a: [[f64; 3]; 3]) -> ([f64; 3], [[f64; 3]; 3]) {
    let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for _sweep in 0..50 {
        let off = a[0][1].powi(2) + a[0][2].powi(2) + a[1][2].powi(2);
        let diagonal = a[0][0].powi(2) + a[1][1].powi(2) + a[2][2].powi(2);
        if off <= f64::EPSILON.powi(2) * 1e-4 * diagonal {
            break;
        }
        for (p, q) in [(0, 1), (0, 2), (1, 2)] {
            let apq = a[p][q];
            if apq == 0.0 {
                continue;
            }
            // The rotation that zeroes a[p][q], taking the smaller angle for stability
            // (Golub & Van Loan, Matrix Computations, algorithm 8.5.1); hypot avoids overflow
            // when a[p][q] is tiny next to the diagonal gap.
            let theta = (a[q][q] - a[p][p]) / (2.0 * apq);
            let t = theta.signum() / (theta.abs() + theta.hypot(1.0));
            let c = 1.0 / t.hypot(1.0);
            let s = t * c;
            // A ← Jᵀ A J and V ← V J, J the rotation by (c, s) in the (p, q) plane.
            for row in a.iter_mut().chain(v.iter_mut()) {
                let (xp, xq) = (row[p], row[q]);
                row[p] = c * xp - s * xq;
                row[q] = s * xp + c * xq;
            }
            let (row_p, row_q) = (a[p], a[q]);
            for k in 0..3 {
                a[p][k] = c * row_p[k] - s * row_q[k];
                a[q][k] = s * row_p[k] + c * row_q[k];
            }
            // Exactly zero in exact arithmetic; storing it keeps rounding from lingering.
            a[p][q] = 0.0;
            a[q][p] = 0.0;
        }
    }
    ([a[0][0], a[1][1], a[2][2]], v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testutil::Rng;

    fn image(width: usize, height: usize, rgb: Vec<f32>) -> Image {
        Image::new(width, height, rgb, None).unwrap()
    }

    /// Y, I, Q of each pixel, computed in f64 straight from the matrix.
    fn yiq64(rgb: &[f32]) -> Vec<[f64; 3]> {
        rgb.chunks_exact(3)
            .map(|p| mat_vec(&RGB_TO_YIQ, pixel(p)))
            .collect()
    }

    fn mean_std(values: &[f64]) -> (f64, f64) {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt())
    }

    fn frobenius(m: &[[f64; 3]; 3]) -> f64 {
        m.iter().flatten().map(|v| v * v).sum::<f64>().sqrt()
    }

    fn difference(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
        [0, 1, 2].map(|i| [0, 1, 2].map(|j| a[i][j] - b[i][j]))
    }

    fn transpose(m: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
        [0, 1, 2].map(|i| [0, 1, 2].map(|j| m[j][i]))
    }

    fn random_rgb(rng: &mut Rng, pixels: usize) -> Vec<f32> {
        (0..pixels * 3)
            .map(|_| (127.5 + 127.5 * rng.uniform()) as f32)
            .collect()
    }

    /// A gradient image whose channels all follow the same two ramps plus noise, so they are
    /// strongly correlated: `base + u·along_x + v·along_y + noise`.
    fn gradient(
        rng: &mut Rng,
        (width, height): (usize, usize),
        base: [f64; 3],
        along_x: [f64; 3],
        along_y: [f64; 3],
        noise: f64,
    ) -> Image {
        let mut rgb = Vec::with_capacity(width * height * 3);
        for y in 0..height {
            for x in 0..width {
                let u = x as f64 / (width - 1) as f64;
                let v = y as f64 / (height - 1) as f64;
                for k in 0..3 {
                    let value = base[k] + u * along_x[k] + v * along_y[k] + noise * rng.uniform();
                    rgb.push(value as f32);
                }
            }
        }
        image(width, height, rgb)
    }

    #[test]
    fn yiq_matrices_are_exact_inverses_and_greys_have_no_chroma() {
        let product = mat_mul(&RGB_TO_YIQ, &YIQ_TO_RGB);
        let identity = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        assert!(frobenius(&difference(&product, &identity)) < 1e-14);
        let product = mat_mul(&YIQ_TO_RGB, &RGB_TO_YIQ);
        assert!(frobenius(&difference(&product, &identity)) < 1e-14);
        for grey in [0.0f32, 1.0, 128.0, 255.0] {
            let yiq = rgb_to_yiq(&[grey; 3]);
            assert!((yiq[0] - grey).abs() < 1e-4, "{yiq:?}");
            assert!(yiq[1].abs() < 1e-4 && yiq[2].abs() < 1e-4, "{yiq:?}");
        }
        // The primaries have the textbook luminance and chroma signs.
        let red = rgb_to_yiq(&[255.0, 0.0, 0.0]);
        assert!((red[0] - 0.299 * 255.0).abs() < 1e-3 && red[1] > 0.0 && red[2] > 0.0);
        let blue = rgb_to_yiq(&[0.0, 0.0, 255.0]);
        assert!(blue[1] < 0.0 && blue[2] > 0.0, "{blue:?}");
    }

    #[test]
    fn yiq_round_trip_on_random_and_extreme_values() {
        let mut rng = Rng::new(7);
        let mut rgb: Vec<f32> = (0..3000).map(|_| (rng.uniform() * 400.0) as f32).collect();
        // Every corner of the RGB cube, and far out of gamut as optimisation can go.
        for extreme in [0.0f32, 255.0, -255.0, 510.0, 1000.0, -1000.0] {
            for corner in 0..8 {
                for k in 0..3 {
                    rgb.push(if corner >> k & 1 == 1 { extreme } else { 0.0 });
                }
            }
        }
        rgb.extend_from_slice(&[255.0, 255.0, 255.0, f32::MIN_POSITIVE, 0.0, 1e-7]);
        let back = yiq_to_rgb(&rgb_to_yiq(&rgb));
        assert_eq!(back.len(), rgb.len());
        for (i, (a, b)) in rgb.iter().zip(&back).enumerate() {
            assert!((a - b).abs() < 1e-3, "value {i}: {a} came back as {b}");
        }
        // The other direction too: YIQ values that are not even in gamut.
        let yiq: Vec<f32> = (0..3000).map(|_| (rng.uniform() * 300.0) as f32).collect();
        let back = rgb_to_yiq(&yiq_to_rgb(&yiq));
        for (a, b) in yiq.iter().zip(&back) {
            assert!((a - b).abs() < 1e-3, "{a} came back as {b}");
        }
    }

    #[test]
    fn luminance_only_replicates_y_and_keeps_alpha() {
        let mut rng = Rng::new(3);
        let rgb = random_rgb(&mut rng, 12);
        let alpha: Vec<f32> = (0..12).map(|i| i as f32 * 20.0).collect();
        let photo = Image::new(4, 3, rgb.clone(), Some(alpha.clone())).unwrap();
        let grey = luminance_only(&photo);
        assert_eq!((grey.width, grey.height), (4, 3));
        assert_eq!(grey.alpha.as_deref(), Some(&alpha[..]));
        for (out, y) in grey.rgb.chunks_exact(3).zip(yiq64(&rgb)) {
            assert_eq!(out[0], out[1]);
            assert_eq!(out[1], out[2]);
            assert!((out[0] as f64 - y[0]).abs() < 1e-4, "{out:?} vs {y:?}");
        }
        // Y of the grey image is the original Y, and it has no chroma.
        for (g, y) in yiq64(&grey.rgb).iter().zip(yiq64(&rgb)) {
            assert!((g[0] - y[0]).abs() < 1e-3 && g[1].abs() < 1e-3 && g[2].abs() < 1e-3);
        }
    }

    #[test]
    fn recombine_keeps_result_luminance_and_content_chroma() {
        let mut rng = Rng::new(11);
        let result: Vec<f32> = (0..600)
            .map(|_| (127.5 + 160.0 * rng.uniform()) as f32)
            .collect();
        let content = random_rgb(&mut rng, 200);
        let out = recombine_with_chroma(&result, &content);
        assert_eq!(out.len(), result.len());
        let (mut moved_r, mut moved_c) = (0.0f64, 0.0f64);
        for ((o, r), c) in yiq64(&out).iter().zip(yiq64(&result)).zip(yiq64(&content)) {
            assert!((o[0] - r[0]).abs() < 1e-3, "Y {} should be {}", o[0], r[0]);
            assert!((o[1] - c[1]).abs() < 1e-3, "I {} should be {}", o[1], c[1]);
            assert!((o[2] - c[2]).abs() < 1e-3, "Q {} should be {}", o[2], c[2]);
            moved_r += (o[1] - r[1]).abs();
            moved_c += (o[0] - c[0]).abs();
        }
        // The data must actually differ, or the checks above would prove nothing.
        assert!(moved_r > 1000.0 && moved_c > 1000.0);
        // Unclamped: a bright result on a saturated content leaves 0–255.
        let out = recombine_with_chroma(&[255.0; 3], &[255.0, 0.0, 0.0]);
        assert!(out.iter().any(|v| *v > 255.0), "{out:?}");
    }

    #[test]
    #[should_panic(expected = "same number of values")]
    fn recombine_refuses_mismatched_sizes() {
        recombine_with_chroma(&[0.0; 6], &[0.0; 3]);
    }

    #[test]
    fn matched_luminance_takes_the_content_mean_and_std() {
        let mut rng = Rng::new(5);
        // A dark, low-contrast style and a bright, contrasty content.
        let style_rgb: Vec<f32> = (0..30 * 20 * 3)
            .map(|_| (40.0 + 15.0 * rng.uniform()) as f32)
            .collect();
        let alpha = vec![200.0; 30 * 20];
        let style = Image::new(30, 20, style_rgb.clone(), Some(alpha.clone())).unwrap();
        let content = image(16, 25, random_rgb(&mut rng, 16 * 25));
        let out = matched_luminance(&style, &content);
        assert_eq!((out.width, out.height), (30, 20));
        assert_eq!(out.alpha.as_deref(), Some(&alpha[..]));
        for p in out.rgb.chunks_exact(3) {
            assert!(p[0] == p[1] && p[1] == p[2], "{p:?}");
        }
        let y = |rgb: &[f32]| yiq64(rgb).iter().map(|p| p[0]).collect::<Vec<_>>();
        let (mean_o, std_o) = mean_std(&y(&out.rgb));
        let (mean_c, std_c) = mean_std(&y(&content.rgb));
        let (mean_s, std_s) = mean_std(&y(&style_rgb));
        assert!(
            (mean_s - mean_c).abs() > 50.0 && std_c > 3.0 * std_s,
            "the test images must differ"
        );
        assert!(
            (mean_o - mean_c).abs() <= 1e-3 * mean_c,
            "{mean_o} vs {mean_c}"
        );
        assert!((std_o - std_c).abs() <= 1e-3 * std_c, "{std_o} vs {std_c}");
        // It is an increasing affine map of the style's Y: the pattern survives.
        let ys = y(&style_rgb);
        let yo = y(&out.rgb);
        for k in 1..ys.len() {
            let predicted = (ys[k] - mean_s) * std_c / std_s + mean_c;
            assert!((yo[k] - predicted).abs() < 1e-2, "{} vs {predicted}", yo[k]);
        }
    }

    #[test]
    fn matched_luminance_shifts_a_flat_style_to_the_content_mean() {
        let style = image(5, 4, [30.0f32, 60.0, 90.0].repeat(20));
        let mut rng = Rng::new(9);
        let content = image(6, 6, random_rgb(&mut rng, 36));
        let out = matched_luminance(&style, &content);
        let (mean_c, _) = mean_std(&yiq64(&content.rgb).iter().map(|p| p[0]).collect::<Vec<_>>());
        for v in &out.rgb {
            assert!(
                v.is_finite() && (*v as f64 - mean_c).abs() < 1e-3,
                "{v} vs {mean_c}"
            );
        }
    }

    #[test]
    fn color_stats_of_known_pixels() {
        // Two pixels: mean halfway, covariance (d dᵀ)/4 for d their difference.
        let stats = color_stats(&[10.0, 20.0, 30.0, 30.0, 20.0, 10.0]);
        assert_eq!(stats.mean, [20.0, 20.0, 20.0]);
        assert_eq!(
            stats.covariance,
            [[100.0, 0.0, -100.0], [0.0, 0.0, 0.0], [-100.0, 0.0, 100.0]]
        );
        // A large common offset must not eat the covariance's digits.
        let mut rng = Rng::new(1);
        let rgb: Vec<f32> = (0..3000).map(|_| (rng.uniform()) as f32).collect();
        let shifted: Vec<f32> = rgb.iter().map(|v| v + 10_000.0).collect();
        let (a, b) = (color_stats(&rgb), color_stats(&shifted));
        let diff = frobenius(&difference(&a.covariance, &b.covariance));
        assert!(diff < 1e-3 * frobenius(&a.covariance), "{a:?} vs {b:?}");
    }

    #[test]
    fn match_color_statistics_gives_the_content_mean_and_covariance() {
        let mut rng = Rng::new(2024);
        // A reddish style and a bluish content, both with correlated channels but different
        // correlations, so the map has to rotate as well as scale.
        let style = gradient(
            &mut rng,
            (40, 30),
            [150.0, 50.0, 30.0],
            [90.0, 40.0, 5.0],
            [10.0, 30.0, 20.0],
            12.0,
        );
        let mut content = gradient(
            &mut rng,
            (35, 27),
            [30.0, 70.0, 140.0],
            [-10.0, 40.0, 100.0],
            [20.0, 5.0, -40.0],
            6.0,
        );
        content.alpha = Some(vec![255.0; 35 * 27]);
        let out = match_color_statistics(&style, &content).unwrap();
        assert_eq!((out.width, out.height, out.alpha), (40, 30, None));
        let (s, c, o) = (
            color_stats(&style.rgb),
            color_stats(&content.rgb),
            color_stats(&out.rgb),
        );
        let mean_gap =
            |a: [f64; 3], b: [f64; 3]| (0..3).map(|k| (a[k] - b[k]).powi(2)).sum::<f64>().sqrt();
        let norm = |m: [f64; 3]| mean_gap(m, [0.0; 3]);
        let cov_gap = |a: &ColorStats, b: &ColorStats| {
            frobenius(&difference(&a.covariance, &b.covariance)) / frobenius(&b.covariance)
        };
        assert!(mean_gap(s.mean, c.mean) > 0.5 * norm(c.mean) && cov_gap(&s, &c) > 0.5);
        assert!(
            mean_gap(o.mean, c.mean) <= 1e-3 * norm(c.mean),
            "{:?} vs {:?}",
            o.mean,
            c.mean
        );
        assert!(cov_gap(&o, &c) <= 1e-3, "{o:?} vs {c:?}");
    }

    #[test]
    fn match_color_statistics_is_finite_on_grey_and_one_colour_styles() {
        let mut rng = Rng::new(8);
        let content = gradient(
            &mut rng,
            (20, 20),
            [30.0, 70.0, 140.0],
            [-10.0, 40.0, 100.0],
            [20.0, 5.0, -40.0],
            6.0,
        );
        let c = color_stats(&content.rgb);
        let grey_levels: Vec<f32> = (0..15 * 10).map(|i| (i % 97) as f32 * 2.5).collect();
        let grey = image(15, 10, grey_levels.iter().flat_map(|g| [*g; 3]).collect());
        let one_colour =
            Image::new(9, 7, [200.0f32, 40.0, 90.0].repeat(63), Some(vec![9.0; 63])).unwrap();
        for style in [&grey, &one_colour] {
            let out = match_color_statistics(style, &content).unwrap();
            assert_eq!(out.alpha, style.alpha);
            assert!(out.rgb.iter().all(|v| v.is_finite()), "{:?}", &out.rgb[..6]);
            let o = color_stats(&out.rgb);
            for k in 0..3 {
                assert!((o.mean[k] - c.mean[k]).abs() < 1e-2, "{o:?} vs {c:?}");
            }
        }
        // The grey style keeps its variation, along the content's main colour direction.
        let o = color_stats(&match_color_statistics(&grey, &content).unwrap().rgb);
        assert!(o.covariance[2][2] > 100.0, "{o:?}");
    }

    #[test]
    fn match_color_statistics_refuses_inconsistent_images() {
        let good = image(2, 2, vec![1.0; 12]);
        let short = Image {
            width: 3,
            ..good.clone()
        };
        let err = match_color_statistics(&short, &good).unwrap_err();
        assert!(err.kind() == crate::ErrorKind::Parameter, "{err}");
        assert!(err
            .to_string()
            .contains("style image has 12 RGB values for 3×2"));
        let mut nan = good.clone();
        nan.rgb[4] = f32::NAN;
        let err = match_color_statistics(&good, &nan).unwrap_err();
        assert!(
            err.to_string().contains("content image has non-finite"),
            "{err}"
        );
    }

    fn check_eigen(m: [[f64; 3]; 3]) {
        let (values, v) = symmetric_eigen(m);
        let lambda_vt = [0, 1, 2].map(|i| [0, 1, 2].map(|j| values[i] * v[j][i]));
        let rebuilt = mat_mul(&v, &lambda_vt);
        let scale = frobenius(&m).max(1.0);
        let err = frobenius(&difference(&rebuilt, &m));
        assert!(
            err <= 1e-9 * scale,
            "{m:?}: V Λ Vᵀ = {rebuilt:?}, error {err}"
        );
        let vtv = mat_mul(&transpose(&v), &v);
        let identity = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        assert!(frobenius(&difference(&vtv, &identity)) < 1e-12, "{vtv:?}");
    }

    #[test]
    fn jacobi_eigen_reconstructs_symmetric_matrices() {
        let mut rng = Rng::new(42);
        for _ in 0..200 {
            let r = rng.vec(6, 100.0);
            check_eigen([[r[0], r[1], r[2]], [r[1], r[3], r[4]], [r[2], r[4], r[5]]]);
        }
        // Already diagonal, repeated eigenvalues, rank one, zero, and wildly scaled entries.
        check_eigen([[3.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 2.0]]);
        check_eigen([[2.0, 1.0, 1.0], [1.0, 2.0, 1.0], [1.0, 1.0, 2.0]]);
        check_eigen([[1.0; 3]; 3]);
        check_eigen([[0.0; 3]; 3]);
        check_eigen([[1e6, 1e-6, 0.0], [1e-6, 1.0, 1e3], [0.0, 1e3, 1e-9]]);
        // The eigenvalues themselves, on a matrix with known ones: I + 𝟙𝟙ᵀ has 1, 1 and 4.
        let (mut values, _) = symmetric_eigen([[2.0, 1.0, 1.0], [1.0, 2.0, 1.0], [1.0, 1.0, 2.0]]);
        values.sort_by(f64::total_cmp);
        for (got, want) in values.iter().zip([1.0, 1.0, 4.0]) {
            assert!((got - want).abs() < 1e-12, "{values:?}");
        }
    }

    #[test]
    fn symmetric_square_roots_square_back() {
        let mut rng = Rng::new(6);
        let b = [0, 1, 2].map(|_| [0, 1, 2].map(|_| rng.uniform() * 50.0));
        // BᵀB + I is symmetric positive definite.
        let mut m = mat_mul(&transpose(&b), &b);
        for (k, row) in m.iter_mut().enumerate() {
            row[k] += 1.0;
        }
        let root = symmetric_function(m, f64::sqrt);
        let inv_root = symmetric_function(m, |l| 1.0 / l.sqrt());
        assert!(frobenius(&difference(&root, &transpose(&root))) < 1e-9);
        assert!(frobenius(&difference(&mat_mul(&root, &root), &m)) < 1e-9 * frobenius(&m));
        let identity = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        let product = mat_mul(&mat_mul(&inv_root, &m), &inv_root);
        assert!(
            frobenius(&difference(&product, &identity)) < 1e-9,
            "{product:?}"
        );
    }
}
