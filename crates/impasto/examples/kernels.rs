//! Per-layer timings of the kernels, for tuning them (`impasto bench` times whole iterations):
//! `cargo run --release -p impasto --example kernels -- 512 [direct|f2|f4]`.
use std::time::Instant;

use impasto::core::{
    gram, gram_gradient, pool_backward, pool_forward, Conv3x3, ConvAlgorithm, FeatureMap, Pooling,
    ReluMask, WinogradTile,
};
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
    let args: Vec<String> = std::env::args().collect();
    let size: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(256);
    let alg = match args.get(2).map(String::as_str) {
        Some("f2") => ConvAlgorithm::Winograd(WinogradTile::F2),
        Some("f4") => ConvAlgorithm::Winograd(WinogradTile::F4),
        _ => ConvAlgorithm::Direct,
    };
    println!("{alg:?}");
    let (mut tf, mut tb, mut fl) = (0.0, 0.0, 0.0);
    for s in Architecture::Vgg19.conv_specs().iter().take(13) {
        let hw = size >> (s.block - 1);
        let w: Vec<f32> = (0..s.weight_len())
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-4)
            .collect();
        let bias = vec![0.01; s.out_channels];
        let conv = Conv3x3::<f32>::with_algorithm(s.in_channels, s.out_channels, &w, &bias, alg);
        let mut x = FeatureMap::zeros(hw, hw, s.in_channels);
        x.fill(1.0);
        let mut y = FeatureMap::zeros(hw, hw, s.out_channels);
        let f = best(|| conv.forward(&x, &mut y, true, None), 3);
        let mut gx = FeatureMap::zeros(hw, hw, s.in_channels);
        let mask = ReluMask::of(&x);
        let b = best(|| conv.backward_input(&y, &mut gx, false, Some(&mask)), 3);
        let flops = conv.flops(hw, hw);
        println!(
            "conv{}_{} {:4}x{:<4} {:3}->{:3}: fwd {:7.2} ms {:6.1} GF/s   bwd {:7.2} ms {:6.1} GF/s",
            s.block, s.index, hw, hw, s.in_channels, s.out_channels,
            f * 1e3, flops / f / 1e9, b * 1e3, flops / b / 1e9
        );
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
    parts(size);
}

/// Gram matrices, their gradient products and pooling, per block.
fn parts(size: usize) {
    let _ = size;
    let size: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(512);
    let (mut tg, mut tgg, mut tp) = (0.0, 0.0, 0.0);
    for (b, c) in [(1, 64), (2, 128), (3, 256), (4, 512), (5, 512)] {
        let hw = size >> (b - 1);
        let mut f = FeatureMap::<f32>::zeros(hw, hw, c);
        f.fill(0.5);
        let mut g = vec![0.0f32; c * c];
        let t1 = best(|| gram(&f, &mut g), 3);
        let mut grad = FeatureMap::zeros(hw, hw, c);
        let t2 = best(|| gram_gradient(&f, &g, 1e-6, &mut grad), 3);
        let fl = 2.0 * (hw * hw * c * c) as f64;
        let mut p = FeatureMap::zeros(hw / 2, hw / 2, c);
        let t3 = best(|| pool_forward(Pooling::Avg, &f, &mut p), 3);
        let mask = ReluMask::of(&f);
        let t4 = best(
            || pool_backward(Pooling::Avg, None, &p, &mut grad, false, Some(&mask)),
            3,
        );
        let t5 = best(
            || pool_backward(Pooling::Max, Some(&f), &p, &mut grad, false, Some(&mask)),
            3,
        );
        println!("block {b} {hw}x{hw}x{c}: gram {:.2} ms ({:.0} GF/s), gram grad {:.2} ms ({:.0} GF/s), avgpool fwd {:.2} bwd {:.2}, maxpool bwd {:.2} ms",
            t1 * 1e3, fl / t1 / 1e9, t2 * 1e3, fl / t2 / 1e9, t3 * 1e3, t4 * 1e3, t5 * 1e3);
        tg += t1;
        tgg += t2;
        tp += t3 + t4;
    }
    println!(
        "sum: gram {:.1} ms, gram grad {:.1} ms, avg pools {:.1} ms",
        tg * 1e3,
        tgg * 1e3,
        tp * 1e3
    );
}
