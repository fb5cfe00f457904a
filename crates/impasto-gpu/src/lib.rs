//! impasto's GPU backend: the VGG objective (content, style and total-variation losses) and its
//! gradient with respect to the image, evaluated by WGSL compute shaders through `wgpu` on
//! Vulkan, Metal or DX12 — any vendor's GPU, or Mesa's software Vulkan (lavapipe) for tests.
//!
//! The pieces, bottom-up:
//! - [`Gpu`]: the chosen adapter (hardware first), opened with all its limits, and f32 buffers
//!   on it ([`GpuBuffer`]).
//! - [`kernels`]: one shader per operation — the 3×3 convolution forward (tiled implicit GEMM
//!   in workgroup memory, bias and ReLU fused) and its input gradient (ReLU mask fused),
//!   average and max pooling both ways, Gram matrices (split-K) and their gradient, the
//!   content and style losses with their reductions, the input convention.
//! - [`GpuBackend`]: the adapter as an [`impasto::backend::Backend`]; its [`GpuNetwork`] holds
//!   the VGG's kernels for a run and builds evaluators whose activations, targets and gradients
//!   stay on the device: only the image and its gradient cross each evaluation.
//!
//! Tiling is CPU-only for now (refused with a message saying so). Total variation is computed
//! on the host, where the image and its gradient are anyway.

#![warn(missing_docs)]

mod buffer;
mod device;
mod evaluator;
pub mod kernels;
mod network;
mod plan;

pub use buffer::GpuBuffer;
pub use device::{AdapterChoice, AdapterReport, Gpu};
pub use network::{GpuBackend, GpuNetwork};
