//! Style transfer for videos after Ruder, Dosovitskiy & Brox (2016), "Artistic style transfer
//! for videos": optical flow between frames ([`OpticalFlow`], with [`HornSchunck`] as our own
//! dense method), backward warping ([`warp()`]), the forward–backward consistency check that
//! says which warped pixels to trust ([`reliability`]), and the short-term temporal loss that
//! joins a transfer's objective ([`TemporalLoss`], a [`PixelTerm`](crate::transfer::PixelTerm)).

mod consistency;
mod flicker;
mod flow;
mod frames;
mod horn_schunck;
mod shards;
mod stylize;
mod temporal;
mod warp;

pub use consistency::reliability;
pub use flicker::flicker;
pub use flow::{Flow, OpticalFlow};
pub use frames::{
    frame_files, frame_name, probe, Ffmpeg, FrameRate, FrameReader, FrameWriter, VideoInfo,
    DEFAULT_FOLDER_FPS,
};
pub use horn_schunck::HornSchunck;
pub use shards::shard_frames;
pub use stylize::{FrameOutcome, FrameStylizer, VideoSettings, DEFAULT_TEMPORAL_WEIGHT};
pub use temporal::TemporalLoss;
pub use warp::warp;

#[cfg(test)]
mod frames_tests;
#[cfg(test)]
mod tests;
