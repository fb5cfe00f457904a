//! The Gatys losses, each returning its value and adding its exact gradient.
//!
//! - content: `L_c = 1/2 Σ (F(x) − F(p))²` at any layers;
//! - style: `L_s = Σ_l w_l E_l`, `E_l = Σ (G_l(x) − A_l)² / (4 N_l² M_l²)` (w_l default 1/L),
//!   optionally restricted to a region by a [`SpatialMask`];
//! - total variation on the image's pixels;
//! - [`Objective`]: `α·content + β·style + tv_weight·tv`, reporting each unweighted part.

mod content;
mod mask;
mod objective;
mod style;
mod tiled;
mod tv;

pub use content::ContentLoss;
pub use mask::SpatialMask;
pub use objective::{LossParts, LossWeights, Objective};
pub use style::{masked_normalized_gram, normalized_gram, StyleLoss};
pub use tiled::{tiled_features, tiled_normalized_grams, Rect, Tile, Tiling};
pub use tv::total_variation;
