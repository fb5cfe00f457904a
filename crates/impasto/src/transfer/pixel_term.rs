//! Terms of the objective that read the image's pixels directly, not the network's features
//! (e.g. video's temporal loss): evaluated on the host after the network's part, whatever runs
//! the network.

/// A term added to a transfer's objective that depends on the pixels alone.
///
/// Its value goes into every [`LossRecord`](super::LossRecord)'s `parts.total` (and so into the
/// choice of the best image); `content`, `style` and `tv` stay the network's and the TV term's.
pub trait PixelTerm: Send + Sync {
    /// This term's value at `x` (RGB, `height × width × 3`, 0–255, the transfer's working
    /// image), already weighted; its gradient with respect to `x` is **added** to `grad` (which
    /// holds the rest of the objective's gradient).
    fn evaluate(&self, x: &[f32], grad: &mut [f32]) -> f64;
}

/// Adds every term's value and gradient at `x`; their summed value.
pub(super) fn evaluate_all(terms: &[Box<dyn PixelTerm>], x: &[f32], grad: &mut [f32]) -> f64 {
    terms.iter().map(|t| t.evaluate(x, grad)).sum()
}
