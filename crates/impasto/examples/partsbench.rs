//! Timings of the non-convolution parts at 512 px: `cargo run --release --example partsbench`.
use std::time::Instant;

use impasto::core::{gram, gram_gradient, pool_backward, pool_forward, FeatureMap, Pooling};

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
        let t4 = best(
            || pool_backward(Pooling::Avg, &f, &p, &mut grad, false, Some(&f)),
            3,
        );
        let t5 = best(
            || pool_backward(Pooling::Max, &f, &p, &mut grad, false, Some(&f)),
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
