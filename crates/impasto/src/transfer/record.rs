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

/// The header of [`loss_csv`]. `scale` comes last so that the columns of logs from before
/// coarse-to-fine runs keep their positions.
pub const LOSS_CSV_HEADER: &str = "iteration,elapsed_s,content,style,tv,total,scale";

/// The loss log as CSV (what `impasto transfer --loss-log` and the studio's download write): one
/// row per iteration, iteration 0 being the start image; content, style and tv unweighted, total
/// weighted, full precision. A coarse-to-fine run numbers iterations over all its scales; each
/// later scale starts with a row for its upsampled start image, which repeats the previous row's
/// iteration with the next `scale`.
pub fn loss_csv(records: &[LossRecord]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(64 * (records.len() + 1));
    out.push_str(LOSS_CSV_HEADER);
    out.push('\n');
    for r in records {
        let p = &r.parts;
        let _ = writeln!(
            out,
            "{},{:.4},{:e},{:e},{:e},{:e},{}",
            r.iteration, r.elapsed_s, p.content, p.style, p.tv, p.total, r.scale
        );
    }
    out
}
