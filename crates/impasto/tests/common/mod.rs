//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use impasto::core::{Conv3x3, Pooling, Scalar};
use impasto::model::{Architecture, InputConvention, Vgg};

/// SplitMix64: tiny, deterministic, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// An `h × w` RGB image with values in 0–255.
    pub fn image<T: Scalar>(&mut self, h: usize, w: usize) -> Vec<T> {
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
            convs.push(Conv3x3::new(cin, cout, &w, &bias));
            cin = cout;
        }
    }
    Vgg::from_convs(arch, InputConvention::CaffeBgr, pooling, convs).expect("valid random VGG")
}

/// `../shared/` beside the repository (read-only test data).
pub fn shared_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}
