//! Development bench on random weights: `cargo run --release --example quickbench -- 512`.
use impasto::bench::{random_weights, run, BenchConfig};
use impasto::core::Pooling;
use impasto::model::{Architecture, Vgg};

fn main() {
    let size: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let net: Vgg = Vgg::new(&random_weights(Architecture::Vgg19, 0), Pooling::Avg).unwrap();
    let r = run(
        &net,
        &BenchConfig {
            size,
            iterations: 5,
            warmup: 1,
        },
    )
    .unwrap();
    println!(
        "size {} threads {}: forward {:.3} s ({:.1} GFLOP/s), fwd+bwd {:.3} s ({:.1} GFLOP/s), workspace {:.0} MB, peak RSS {:.0} MB",
        r.size, r.threads, r.forward_s.min, r.forward_gflops(), r.iteration_s.min, r.iteration_gflops(),
        r.workspace_bytes as f64 / 1e6, r.peak_rss_bytes.unwrap_or(0) as f64 / 1e6
    );
}
