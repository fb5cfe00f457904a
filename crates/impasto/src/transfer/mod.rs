//! The transfer engine: targets from the content and style images, the optimisation loop over
//! the image's pixels, and what each iteration reports.
//!
//! A [`Transfer`] is built from weights, a content image, style images and
//! [`TransferSettings`]; [`Transfer::run`] steps the optimiser and shows each iteration's
//! [`LossRecord`] to an observer, which can save images, log, draw progress or stop the run. The
//! paper's reconstructions are transfers with only content layers or only style layers, started
//! from noise.

mod engine;
mod multiscale;
mod noise;
mod pixel_term;
mod prepared;
mod recolor;
mod record;
mod settings;
mod targets;

#[cfg(feature = "instant")]
pub(crate) use targets::blend_shares;

pub use engine::{load_network, RunSummary, Stop, Transfer};
pub use multiscale::{run_schedule, Outcome, Schedule, DEFAULT_START_SIZE};
pub use pixel_term::PixelTerm;
pub use prepared::PreparedStyles;
pub use record::{loss_csv, LossRecord, LOSS_CSV_HEADER};
pub use settings::{
    Init, OptimizerSettings, SpatialControl, TileSize, TransferSettings, PAPER_CONTENT_LAYERS,
    PAPER_STYLE_LAYERS,
};

#[cfg(test)]
mod tests;
