//! Per-layer f32 error of each convolution algorithm on the real weights and a real image:
//! every layer gets the same input (the f64 direct network's activations of the previous layer),
//! and its f32 output and input gradient (for a random output gradient) are compared with f64
//! direct ones, relative in L2. The numbers in the README's engine section come from
//! `cargo run --release -p impasto --example winograd_error -- WEIGHTS.safetensors IMAGE [SIZE]`.
use std::path::Path;

use impasto::core::{pool_forward, Conv3x3, ConvAlgorithm, FeatureMap, Pooling, WinogradTile};
use impasto::image_io;

fn relative(want: &FeatureMap<f64>, got: &FeatureMap<f32>) -> f64 {
    let err: f64 = (want.interior().zip(got.interior()))
        .map(|(a, b)| (a - b as f64).powi(2))
        .sum();
    let norm: f64 = want.interior().map(|a| a * a).sum();
    (err / norm).sqrt()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (weights, image) = match (args.get(1), args.get(2)) {
        (Some(w), Some(i)) => (w, i),
        _ => return Err("usage: winograd_error WEIGHTS IMAGE [SIZE]".into()),
    };
    let size: usize = args.get(3).map_or(Ok(256), |s| s.parse())?;
    let weights = impasto::weights::load(Path::new(weights))?;
    let img = image_io::load(Path::new(image))?;
    let (w, h) = image_io::fit_long_side(img.width, img.height, size);
    let img = image_io::resize(&img, w, h)?;
    let rgb: Vec<f64> = img.rgb.iter().map(|&v| v as f64).collect();
    let mut x = FeatureMap::<f64>::zeros(h, w, 3);
    weights.convention.to_network(&rgb, &mut x);

    let algorithms = [
        ("direct", ConvAlgorithm::Direct),
        ("F(2x2)", ConvAlgorithm::Winograd(WinogradTile::F2)),
        ("F(4x4)", ConvAlgorithm::Winograd(WinogradTile::F4)),
    ];
    println!("{w}x{h}, relative L2 error against f64 direct: forward / input gradient");
    let mut seed = 1u64;
    for (spec, p) in weights
        .architecture
        .conv_specs()
        .iter()
        .zip(&weights.convs)
        .take(13)
    {
        if spec.index == 1 && spec.block > 1 {
            let mut pooled = FeatureMap::zeros(x.height() / 2, x.width() / 2, x.channels());
            pool_forward(Pooling::Avg, &x, &mut pooled);
            x = pooled;
        }
        let (cin, cout) = (spec.in_channels, spec.out_channels);
        let exact = Conv3x3::<f64>::new(cin, cout, &p.weight, &p.bias);
        let (hh, ww) = (x.height(), x.width());
        let mut want = FeatureMap::zeros(hh, ww, cout);
        exact.forward(&x, &mut want, false, None);
        // A random output gradient, the same for every algorithm.
        let mut g = FeatureMap::<f64>::zeros(hh, ww, cout);
        for y in 0..hh {
            for v in g.pixel_row_mut(y) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *v = (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            }
        }
        let mut want_back = FeatureMap::zeros(hh, ww, cin);
        exact.backward_input(&g, &mut want_back, false, None);
        let mut line = format!("{:8} {:4}x{:<4} {cin:3}->{cout:3}", spec.name(), ww, hh);
        let (x32, g32) = (x.convert::<f32>(), g.convert::<f32>());
        for (name, alg) in algorithms {
            let conv = Conv3x3::<f32>::with_algorithm(cin, cout, &p.weight, &p.bias, alg);
            let mut got = FeatureMap::zeros(hh, ww, cout);
            conv.forward(&x32, &mut got, false, None);
            let mut back = FeatureMap::zeros(hh, ww, cin);
            conv.backward_input(&g32, &mut back, false, None);
            line += &format!(
                "  {name} {:.1e} / {:.1e}",
                relative(&want, &got),
                relative(&want_back, &back)
            );
        }
        println!("{line}");
        // The next layer's input: this one's ReLU output, exact.
        let mut next = FeatureMap::zeros(hh, ww, cout);
        exact.forward(&x, &mut next, true, None);
        x = next;
    }
    Ok(())
}
