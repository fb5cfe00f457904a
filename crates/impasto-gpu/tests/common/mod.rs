//! What the GPU tests share: one device for the whole test binary, random data, conversions
//! between the CPU's bordered feature maps and the device's plain NHWC buffers.

#![allow(dead_code)]

use std::sync::OnceLock;

use impasto::core::FeatureMap;
use impasto_gpu::kernels::Kernels;
use impasto_gpu::{AdapterChoice, Gpu};

/// The device and its kernels. A missing adapter fails the test with what to install: these
/// tests run on any Vulkan driver, in CI on Mesa's software one (lavapipe).
pub fn gpu() -> &'static (Gpu, Kernels) {
    static GPU: OnceLock<(Gpu, Kernels)> = OnceLock::new();
    GPU.get_or_init(|| {
        let gpu = Gpu::open(AdapterChoice::Any).unwrap_or_else(|e| {
            panic!(
                "the GPU tests need a GPU adapter (any Vulkan driver; in CI Mesa's lavapipe, \
                 `apt-get install mesa-vulkan-drivers`): {e:#}"
            )
        });
        eprintln!("GPU tests on {}", gpu.report());
        let kernels = Kernels::new(&gpu);
        (gpu, kernels)
    })
}

/// A small deterministic generator (xorshift), values uniform in [-scale, scale).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
    pub fn map(&mut self, h: usize, w: usize, c: usize) -> FeatureMap<f32> {
        from_nhwc(h, w, c, &self.vec(h * w * c, 1.0))
    }
}

/// The interior of a bordered map, NHWC.
pub fn nhwc(f: &FeatureMap<f32>) -> Vec<f32> {
    f.interior().collect()
}

/// A bordered map from plain NHWC values.
pub fn from_nhwc(h: usize, w: usize, c: usize, v: &[f32]) -> FeatureMap<f32> {
    assert_eq!(v.len(), h * w * c);
    let mut f = FeatureMap::zeros(h, w, c);
    for y in 0..h {
        f.pixel_row_mut(y)
            .copy_from_slice(&v[y * w * c..(y + 1) * w * c]);
    }
    f
}

/// Fails unless every `got[i]` is within `tol · max(1, max|want|)` of `want[i]`.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let (i, err) = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .enumerate()
        .fold(
            (0, 0.0f32),
            |best, (i, e)| if e > best.1 { (i, e) } else { best },
        );
    assert!(
        err <= tol * scale && got.iter().all(|v| v.is_finite()),
        "{what}: value {i} is {} on the GPU, {} on the CPU (error {err:e}, allowed {:e})",
        got[i],
        want[i],
        tol * scale
    );
}
