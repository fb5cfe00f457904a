use crate::core::Scalar;

/// Total variation of an `h × w × c` row-major image: the sum of squared differences between
/// horizontally and vertically neighbouring pixels, per channel. Adds `scale · ∂TV/∂x` to `grad`
/// and returns TV (unscaled).
pub fn total_variation<T: Scalar>(
    image: &[T],
    h: usize,
    w: usize,
    c: usize,
    grad: &mut [T],
    scale: T,
) -> f64 {
    assert_eq!(image.len(), h * w * c, "TV image length");
    assert_eq!(grad.len(), image.len(), "TV gradient length");
    let two = T::from_f64(2.0) * scale;
    let mut sum = 0.0;
    let mut pair = |a: usize, b: usize| {
        let d = image[b] - image[a];
        sum += d.to_f64() * d.to_f64();
        grad[b] += two * d;
        grad[a] += -(two * d);
    };
    for y in 0..h {
        for x in 0..w {
            let i = (y * w + x) * c;
            for ch in 0..c {
                if x + 1 < w {
                    pair(i + ch, i + c + ch);
                }
                if y + 1 < h {
                    pair(i + ch, i + w * c + ch);
                }
            }
        }
    }
    sum
}
