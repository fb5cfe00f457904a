//! The transfer engine: targets from the content and style images, the optimisation loop over
//! the image's pixels, and what each iteration reports.

mod record;

pub use record::LossRecord;
