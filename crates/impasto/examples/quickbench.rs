//! Development bench on random weights: `cargo run --release --example quickbench -- 512`.
use impasto::bench::{run, BenchConfig};
use impasto::core::{Conv3x3, Pooling};
use impasto::model::{Architecture, InputConvention, Vgg};

fn main() {
    let size: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let arch = Architecture::Vgg19;
    let convs = arch
        .conv_specs()
        .iter()
        .map(|s| {
            let w: Vec<f32> = (0..s.weight_len())
                .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-4)
                .collect();
            Conv3x3::new(
                s.in_channels,
                s.out_channels,
                &w,
                &vec![0.01; s.out_channels],
            )
        })
        .collect();
    let net = Vgg::from_convs(arch, InputConvention::CaffeBgr, Pooling::Avg, convs).unwrap();
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
