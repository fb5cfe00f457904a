//! Coarse to fine: optimise at a small size first, then upsample the result as the start of the
//! next, larger scale, up to the requested size.
//!
//! Why it pays: an iteration at 128 px costs about 1/16 of one at 512 px, and the large
//! structures of the style (swirls, strokes, colour fields) form just as well there. The full-size
//! scale then starts from an image that already has them and only has to add fine texture.
//! crowsonkb/style-transfer-pytorch steps by √2 from 128 px; so does the default here.
//!
//! It is not the tool's default: measured on tubingen + starry_night, a single-scale run from the
//! photo reached every loss level sooner, at 512 px (4.0e10 after 108 s against 242 s) and at
//! 768 px (9.0e10 after 69 s against 152 s). The upsampled coarse result has lost the fine texture
//! the shallow style layers measure (at 768 px its loss is 2.9e11, against 7.7e10 when converged)
//! and the last scale must rebuild it. What coarse to fine gives is a look: larger, more coherent
//! strokes.
//!
//! The network is built once, on the settings' backend, and serves every scale. Each scale is
//! a fresh [`Transfer`] on it (targets are recomputed from the originals at that size;
//! L-BFGS's curvature history does not carry over, since its vectors belong to the old size).
//! Records are numbered and timed over the whole run and say which scale they belong to.

use std::ops::ControlFlow;
use std::time::Instant;

use crate::color::PreserveColor;
use crate::image_io::{self, Image};
use crate::weights::VggWeights;
use crate::{Error, Result};

use super::engine::{load_network, preflight};
use super::prepared::PreparedStyles;
use super::{Init, LossRecord, RunSummary, Stop, Transfer, TransferSettings};

/// Where a coarse-to-fine run with a given number of scales starts by default (long side,
/// pixels), as crowsonkb/style-transfer-pytorch does.
pub const DEFAULT_START_SIZE: usize = 128;

/// The working sizes of a coarse-to-fine run (long sides, smallest first, the last being
/// `size`), and how many iterations each gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Long sides, smallest first.
    pub sizes: Vec<usize>,
    /// Iterations at each size.
    pub iterations: Vec<usize>,
}

impl Schedule {
    /// One scale: a plain run.
    pub fn single(size: usize, iterations: usize) -> Schedule {
        Schedule {
            sizes: vec![size],
            iterations: vec![iterations],
        }
    }

    /// `scales` sizes spaced geometrically from `start_size` to `size`, or with `scales: None`,
    /// steps of about √2 (one scale when `size ≤ start_size`). The last scale gets `last_iterations`,
    /// each earlier one `coarse_iterations`.
    pub fn geometric(
        size: usize,
        start_size: usize,
        scales: Option<usize>,
        last_iterations: usize,
        coarse_iterations: usize,
    ) -> Result<Schedule> {
        if size == 0 || start_size == 0 {
            return Err(Error::parameter("sizes must be at least 1 pixel"));
        }
        let ratio = size as f64 / start_size as f64;
        let explicit = scales;
        let scales = match scales {
            Some(0) => return Err(Error::parameter("the number of scales must be at least 1")),
            Some(n) => n,
            None if ratio <= 1.0 => 1,
            None => (2.0 * ratio.log2()).round() as usize + 1,
        };
        if scales > 1 && start_size >= size {
            return Err(Error::parameter(format!(
                "{scales} scales need a start size below the size: start size {start_size}, \
                 size {size}"
            )));
        }
        let sizes: Vec<usize> = (0..scales)
            .map(|i| {
                if i + 1 == scales {
                    return size;
                }
                let t = i as f64 / (scales - 1) as f64;
                (start_size as f64 * ratio.powf(t)).round().max(1.0) as usize
            })
            .collect();
        let mut sizes = sizes;
        if explicit.is_none() {
            // √2 steps from a start of 1–2 px can round to the same size twice.
            sizes.dedup();
        }
        let scales = sizes.len();
        if sizes.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::parameter(format!(
                "{scales} scales from {start_size} to {size} px would repeat a size ({sizes:?}); \
                 use fewer scales"
            )));
        }
        let mut iterations = vec![coarse_iterations; scales];
        iterations[scales - 1] = last_iterations;
        Ok(Schedule { sizes, iterations })
    }

    /// Iterations over all scales.
    pub fn total_iterations(&self) -> usize {
        self.iterations.iter().sum()
    }
}

/// How a coarse-to-fine run ended.
pub struct Outcome {
    /// The last scale reached (the final one unless the run stopped early).
    pub transfer: Transfer,
    /// Every scale's records, in order.
    pub records: Vec<LossRecord>,
    /// Over all scales: iterations and evaluations summed, time from the first scale's start;
    /// the best image and losses are the last scale's.
    pub summary: RunSummary,
    /// The working size of the last scale in the schedule.
    pub final_size: (usize, usize),
    /// An error that ended the run at a later scale (e.g. memory that was there at the start
    /// is gone): `transfer` is then the last scale that finished, so its work is not lost.
    pub failed: Option<Error>,
    /// In luminance-only mode, the content at the final size, whose chroma an image from an
    /// earlier scale takes once upsampled.
    chroma_at_final: Option<Image>,
}

impl Outcome {
    /// The best image of the last scale reached, upsampled to the final size if the run stopped
    /// before it.
    pub fn best_image(&self) -> Result<Image> {
        match &self.chroma_at_final {
            Some(content) if self.transfer.size() != self.final_size => {
                // Upsample the optimised luminance, then take the full-size photo's chroma,
                // so the photo's colours stay exact rather than upsampled from a small copy.
                let (w, h) = self.final_size;
                let mut image = image_io::resize(&self.transfer.best_optimised(), w, h)?;
                image.rgb = crate::color::recombine_with_chroma(&image.rgb, &content.rgb);
                Ok(image)
            }
            // Resizing to the same size returns the image as it is.
            _ => image_io::resize(
                &self.transfer.best_image(),
                self.final_size.0,
                self.final_size.1,
            ),
        }
    }
}

/// Runs `schedule` (whose last size overrides `settings.size`). `observer` sees every
/// iteration of every scale (its transfer says which scale and size) and may stop the run.
///
/// The largest scale is checked first (settings, memory), so a run that cannot finish fails
/// before the small scales spend any time. An error at a later scale ends the run with
/// [`Outcome::failed`] set and the previous scale's result, rather than losing it.
pub fn run_schedule(
    weights: &VggWeights,
    content: &Image,
    styles: &[Image],
    settings: &TransferSettings,
    schedule: &Schedule,
    observer: impl FnMut(&Transfer, &LossRecord) -> ControlFlow<()>,
) -> Result<Outcome> {
    run_schedule_in(weights, content, styles, settings, schedule, None, observer)
}

/// [`run_schedule`], with the network and style targets of `prepared` when given (whose
/// styles and settings these are).
pub(super) fn run_schedule_in(
    weights: &VggWeights,
    content: &Image,
    styles: &[Image],
    settings: &TransferSettings,
    schedule: &Schedule,
    prepared: Option<&PreparedStyles<'_>>,
    mut observer: impl FnMut(&Transfer, &LossRecord) -> ControlFlow<()>,
) -> Result<Outcome> {
    if schedule.sizes.is_empty() || schedule.sizes.len() != schedule.iterations.len() {
        return Err(Error::parameter(format!(
            "a schedule of {} sizes and {} iteration counts",
            schedule.sizes.len(),
            schedule.iterations.len()
        )));
    }
    let at = |size: usize, init: Init| TransferSettings {
        size,
        init,
        ..settings.clone()
    };
    let last = *schedule.sizes.last().expect("checked non-empty");
    // One network (its kernels) for the preflight and every scale.
    let network = match prepared {
        Some(p) => p.network(),
        None => load_network(weights, &at(last, settings.init.clone()), styles.len())?,
    };
    preflight(&*network, content, styles, &at(last, settings.init.clone()))?;
    let final_size = image_io::fit_long_side(content.width, content.height, last);
    let chroma_at_final = match settings.preserve_color {
        PreserveColor::Luminance if schedule.sizes.len() > 1 => {
            Some(image_io::resize(content, final_size.0, final_size.1)?)
        }
        _ => None,
    };

    let clock = Instant::now();
    let mut records = Vec::new();
    let (mut iterations, mut evaluations) = (0, 0);
    let mut init = settings.init.clone();
    let mut previous: Option<(Transfer, RunSummary)> = None;
    let mut scale = 0;
    loop {
        let size = schedule.sizes[scale];
        let scale_settings = at(size, init);
        let attempt = match prepared {
            Some(p) => p.transfer_with(content, &scale_settings),
            None => Transfer::with_network(&*network, content, styles, &scale_settings),
        };
        let attempt = attempt.and_then(|mut t| {
            let first_iteration = records.last().map_or(0, |r: &LossRecord| r.iteration);
            t.continue_run(scale, first_iteration, clock);
            let summary = t.run(schedule.iterations[scale], &mut observer)?;
            Ok((t, summary))
        });
        let (transfer, summary, failed) = match (attempt, previous.take()) {
            (Ok((t, summary)), _) => {
                records.extend_from_slice(t.records());
                iterations += summary.iterations;
                evaluations += summary.evaluations;
                (t, summary, None)
            }
            (Err(e), Some((t, summary))) => (t, summary, Some(e)),
            (Err(e), None) => return Err(e),
        };
        // A coarse scale that converged hands on its image like one that completed.
        let stopped = matches!(summary.stop, Stop::Interrupted | Stop::Diverged);
        if scale + 1 == schedule.sizes.len() || stopped || failed.is_some() {
            return Ok(Outcome {
                summary: RunSummary {
                    iterations,
                    evaluations,
                    elapsed_s: clock.elapsed().as_secs_f64(),
                    ..summary
                },
                transfer,
                records,
                final_size,
                failed,
                chroma_at_final,
            });
        }
        // The best image, not the last: the one a stop here would have kept; as optimised,
        // since in luminance mode the recombined colours could be clipped by resizing.
        init = Init::Image(transfer.best_optimised());
        previous = Some((transfer, summary));
        scale += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_scales_step_by_root_two_from_the_start_size() {
        let s = Schedule::geometric(512, 128, None, 500, 100).unwrap();
        assert_eq!(s.sizes, [128, 181, 256, 362, 512]);
        assert_eq!(s.iterations, [100, 100, 100, 100, 500]);
        assert_eq!(s.total_iterations(), 900);
        assert_eq!(
            Schedule::geometric(256, 128, None, 50, 10).unwrap().sizes,
            [128, 181, 256]
        );
        // At or below the start size there is nothing coarser to do.
        for size in [64, 128] {
            let s = Schedule::geometric(size, 128, None, 50, 10).unwrap();
            assert_eq!(s, Schedule::single(size, 50));
        }
    }

    #[test]
    fn a_scale_count_spaces_sizes_geometrically() {
        let s = Schedule::geometric(1024, 256, Some(3), 7, 3).unwrap();
        assert_eq!(s.sizes, [256, 512, 1024]);
        assert_eq!(s.iterations, [3, 3, 7]);
        assert_eq!(
            Schedule::geometric(1024, 128, Some(1), 7, 3).unwrap(),
            Schedule::single(1024, 7)
        );
    }

    #[test]
    fn impossible_schedules_are_refused() {
        let err = |r: Result<Schedule>| r.unwrap_err().to_string();
        assert!(err(Schedule::geometric(512, 128, Some(0), 1, 1)).contains("at least 1"));
        assert!(err(Schedule::geometric(128, 128, Some(3), 1, 1)).contains("start size below"));
        assert!(err(Schedule::geometric(130, 128, Some(4), 1, 1)).contains("repeat a size"));
        assert!(err(Schedule::geometric(0, 128, None, 1, 1)).contains("at least 1 pixel"));
        // Without a count, sizes that round alike are merged rather than refused.
        assert_eq!(
            Schedule::geometric(4, 1, None, 1, 1).unwrap().sizes,
            [1, 2, 3, 4]
        );
    }
}
