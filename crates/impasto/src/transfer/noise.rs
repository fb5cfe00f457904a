/// Gaussian noise around mid-grey (σ = 32 on the 0–255 scale): the paper's white-noise start,
/// kept within the range the network saw in training so early gradients are not dominated by
/// clipping artefacts. SplitMix64 + Box–Muller, so a seed gives the same image on every platform.
pub(crate) fn gaussian_image(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        // Uniform in (0, 1]: never 0, so the logarithm below is finite.
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 + f64::EPSILON
    };
    let mut out = Vec::with_capacity(len + 1);
    while out.len() < len {
        let (u, v) = (next(), next());
        let r = (-2.0 * u.ln()).sqrt() * 32.0;
        let t = std::f64::consts::TAU * v;
        out.push((127.5 + r * t.cos()) as f32);
        out.push((127.5 + r * t.sin()) as f32);
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_reproducible_and_has_the_stated_moments() {
        let a = gaussian_image(100_001, 7);
        assert_eq!(a, gaussian_image(100_001, 7));
        assert_ne!(a, gaussian_image(100_001, 8));
        let n = a.len() as f64;
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!((mean - 127.5).abs() < 0.5, "mean {mean}");
        assert!((var.sqrt() - 32.0).abs() < 0.5, "sd {}", var.sqrt());
    }
}
