//! The compute core: NHWC feature maps with a one-pixel zero border, and the kernels that run on
//! them. Everything is generic over [`Scalar`] (f32 for work, f64 for gradient checks) so the
//! finite-difference tests exercise exactly the code that runs in production.
//!
//! Why a zero border kept in the buffer: a 3×3 pad-1 convolution then becomes three GEMMs (one per
//! kernel row, K = 3·Cin) that read the input in place with overlapping rows, no im2col copy; and
//! Gram matrices can run over the whole buffer since border pixels contribute nothing.

mod conv;
mod gram;
pub(crate) mod matmul;
mod pool;
mod relu_mask;
mod scalar;
mod tensor;
#[cfg(test)]
mod test_rng;
#[cfg(test)]
pub(crate) mod testutil;
mod winograd;

pub use conv::{Conv3x3, ConvAlgorithm};
pub use gram::{gram, gram_gradient};
pub use pool::{pool_backward, pool_forward, Pooling};
pub use relu_mask::ReluMask;
pub use scalar::{release_scratch, Scalar};
pub use tensor::FeatureMap;
pub use winograd::WinogradTile;

/// Rows of work handed to one thread at a time: big enough to amortise the GEMM's packing of the
/// right-hand matrix, small enough that a task's output stays in L2 for the fused post-pass.
pub(crate) fn rows_per_task(padded_width: usize, channels: usize, total_rows: usize) -> usize {
    const TARGET_BYTES: usize = 256 * 1024;
    const MIN_GEMM_ROWS: usize = 512;
    let row_elems = (padded_width * channels).max(1);
    let by_cache = TARGET_BYTES / (4 * row_elems);
    let by_gemm = MIN_GEMM_ROWS.div_ceil(padded_width.max(1));
    let threads = rayon::current_num_threads().max(1);
    // Never fewer tasks than threads when there is enough work to share.
    let fair = total_rows.div_ceil(threads);
    by_cache.max(by_gemm).min(fair).max(1)
}
