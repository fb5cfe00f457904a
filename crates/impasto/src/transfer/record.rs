use crate::loss::LossParts;

/// The losses after one iteration (iteration 0: the start image, before any update).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossRecord {
    pub iteration: usize,
    /// Seconds since the first iteration started.
    pub elapsed_s: f64,
    /// Content, style and TV unweighted; total weighted.
    pub parts: LossParts,
}
