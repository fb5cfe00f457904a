use impasto::backend::NetworkSpec;
use impasto::cli_support::bench::{self, BenchConfig};
use impasto::weights;

use super::options;
use crate::cli::BenchArgs;

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if args.instant {
        return super::bench_instant::run(args);
    }
    options::on_threads(args.threads, || run_on_pool(args))
}

fn run_on_pool(args: &BenchArgs) -> anyhow::Result<()> {
    let arch = options::architecture(args.model);
    let pooling = options::pooling(args.pooling);
    let (weights, origin) = match &args.weights {
        Some(path) => (weights::load(path)?, path.display().to_string()),
        None => {
            let path = weights::default_weights_path(arch)?;
            if path.exists() {
                (weights::load(&path)?, path.display().to_string())
            } else {
                (
                    bench::random_weights(arch, 0),
                    "random (none installed)".to_string(),
                )
            }
        }
    };
    if weights.architecture != arch {
        anyhow::bail!(
            "--model {arch} but the weights are {} (pass --model {})",
            weights.architecture,
            weights.architecture
        );
    }
    let device = crate::device::resolve(args.device)?;
    let spec = NetworkSpec {
        pooling,
        algorithm: options::algorithm(args.algorithm),
        deepest: arch.parse_layer("relu5_1")?,
    };
    let net = device.backend.load(&weights, &spec)?;
    drop(weights);
    let config = BenchConfig {
        size: args.size as usize,
        iterations: args.iterations as usize,
        warmup: 1,
    };
    let r = bench::run(&*net, &config)?;
    let gf = r.forward_flops / 1e9;
    println!("impasto bench: {arch} to relu5_1, {pooling} pooling, content relu4_2, style relu1_1..relu5_1");
    println!(
        "convolutions: {:?} (GFLOP/s counts direct-convolution work, so fewer multiplies show as more)",
        spec.algorithm
    );
    println!("device: {}", device.description);
    println!("weights: {origin}");
    println!(
        "size {0}x{0}, {1} threads, {2} timed iterations; conv work {3:.1} GFLOP forward, {4:.1} GFLOP forward+backward",
        r.size,
        r.threads,
        config.iterations,
        gf,
        2.0 * gf
    );
    if let (Some(f), Some(gflops)) = (r.forward_s, r.forward_gflops()) {
        println!(
            "forward          {:8.3} s/iter (median {:.3})  {gflops:7.1} GFLOP/s",
            f.min, f.median,
        );
    }
    println!(
        "forward+backward {:8.3} s/iter (median {:.3})  {:7.1} GFLOP/s",
        r.iteration_s.min,
        r.iteration_s.median,
        r.iteration_gflops()
    );
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("kernels          {:8.1} MiB", mb(r.kernel_bytes));
    println!("workspace        {:8.1} MiB", mb(r.workspace_bytes as u64));
    match r.peak_rss_bytes {
        Some(p) => println!("peak memory      {:8.1} MiB (process peak RSS)", mb(p)),
        None => println!("peak memory      unknown on this OS"),
    }
    Ok(())
}
