use crate::loss::LossParts;

/// The losses after one iteration (iteration 0: the start image, before any update).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossRecord {
    /// Which scale of a coarse-to-fine run (0: the first, or the only one).
    pub scale: usize,
    /// Counted over the whole run: a later scale's iteration 0 (its upsampled start image)
    /// repeats the number of the previous scale's last iteration.
    pub iteration: usize,
    /// Seconds since the run's first iteration started (over all scales).
    pub elapsed_s: f64,
    /// Content, style and TV unweighted; total weighted, with any
    /// [`PixelTerm`](super::PixelTerm)s' values added.
    pub parts: LossParts,
}
