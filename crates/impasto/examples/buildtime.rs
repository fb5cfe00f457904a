use std::time::Instant;
fn main() {
    let t = Instant::now();
    let p = impasto::weights::default_weights_path(impasto::model::Architecture::Vgg19).unwrap();
    let w = impasto::weights::load(&p).unwrap();
    println!("load {:.2}s", t.elapsed().as_secs_f64());
    for alg in [
        impasto::model::AlgorithmPolicy::Direct,
        impasto::model::AlgorithmPolicy::Auto,
    ] {
        let t = Instant::now();
        let o = impasto::model::VggOptions {
            algorithm: alg,
            ..Default::default()
        };
        let net: impasto::model::Vgg = impasto::model::Vgg::with_options(&w, &o).unwrap();
        println!(
            "{alg:?} build {:.2}s, kernels {} MB",
            t.elapsed().as_secs_f64(),
            net.kernel_bytes() / 1_000_000
        );
    }
}
