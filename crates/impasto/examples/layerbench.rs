//! Per-layer timings of the convolution kernels: `cargo run --release --example layerbench -- 512`.
use std::time::Instant;

use impasto::core::{Conv3x3, FeatureMap};
use impasto::model::Architecture;

fn best<F: FnMut()>(mut f: F, n: usize) -> f64 {
    f();
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    let size: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let (mut tf, mut tb, mut fl) = (0.0, 0.0, 0.0);
    for s in Architecture::Vgg19.conv_specs().iter().take(13) {
        let hw = size >> (s.block - 1);
        let w: Vec<f32> = (0..s.weight_len())
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-4)
            .collect();
        let conv = Conv3x3::<f32>::new(
            s.in_channels,
            s.out_channels,
            &w,
            &vec![0.01; s.out_channels],
        );
        let mut x = FeatureMap::zeros(hw, hw, s.in_channels);
        x.fill(1.0);
        let mut y = FeatureMap::zeros(hw, hw, s.out_channels);
        let f = best(|| conv.forward(&x, &mut y, true, None), 3);
        let mut gx = FeatureMap::zeros(hw, hw, s.in_channels);
        let b = best(|| conv.backward_input(&y, &mut gx, false, Some(&x)), 3);
        let flops = conv.flops(hw, hw);
        println!("conv{}_{} {:4}x{:<4} {:3}->{:3}: fwd {:7.2} ms {:6.1} GF/s   bwd {:7.2} ms {:6.1} GF/s",
            s.block, s.index, hw, hw, s.in_channels, s.out_channels, f * 1e3, flops / f / 1e9, b * 1e3, flops / b / 1e9);
        tf += f;
        tb += b;
        fl += flops;
    }
    println!(
        "total (13 convs to conv5_1): fwd {:.1} ms {:.1} GF/s, bwd {:.1} ms {:.1} GF/s",
        tf * 1e3,
        fl / tf / 1e9,
        tb * 1e3,
        fl / tb / 1e9
    );
    // Ceiling: a large square GEMM through the same crate.
    let n = 2048;
    let a = vec![1.0f32; n * n];
    let mut c = vec![0.0f32; n * n];
    let t = best(
        || unsafe {
            gemm::gemm(
                n,
                n,
                n,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                n as isize,
                a.as_ptr(),
                1,
                n as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(0),
            )
        },
        3,
    );
    println!("gemm {n}^3: {:.1} GF/s", 2.0 * (n as f64).powi(3) / t / 1e9);
}
