//! Finite-difference checks of every gradient, in f64, on tiny random VGG networks: the analytic
//! gradient of the whole objective (network, content, style, TV, input convention) must match
//! central differences of the objective itself. Odd image sizes make every pooling drop a row or
//! a column.

mod common;

use common::{random_vgg, RandomImage, Rng};
use impasto::core::Pooling;
use impasto::loss::{ContentLoss, LossWeights, Objective, StyleLoss};
use impasto::model::{AlgorithmPolicy, Architecture, Layer, Vgg};

fn layers(arch: Architecture, names: &[&str]) -> Vec<Layer> {
    names.iter().map(|n| arch.parse_layer(n).unwrap()).collect()
}

struct Case {
    arch: Architecture,
    pooling: Pooling,
    h: usize,
    w: usize,
    content: &'static [&'static str],
    style: &'static [&'static str],
    weights: LossWeights,
    algorithm: AlgorithmPolicy,
}

/// Builds the objective with targets from other random images (the style one of another size),
/// then compares the gradient with central differences at sampled pixels and along a random
/// direction. Returns the worst relative error.
fn check(case: &Case, seed: u64) -> f64 {
    // 16+ channels from block 2 on, so the default policy runs those layers as Winograd.
    let net = random_vgg::<f64>(
        case.arch,
        [4, 16, 16, 17, 16],
        case.pooling,
        case.algorithm,
        seed,
    );
    let mut rng = Rng::new(seed + 100);
    let (h, w) = (case.h, case.w);
    let content_layers = layers(case.arch, case.content);
    let style_layers = layers(case.arch, case.style);
    let content_img = rng.image::<f64>(h, w);
    let (sh, sw) = (h + 3, w + 6);
    let style_img = rng.image::<f64>(sh, sw);
    let content: Vec<ContentLoss<f64>> = if content_layers.is_empty() {
        vec![]
    } else {
        net.features_of_image(&content_img, h, w, &content_layers)
            .unwrap()
            .into_iter()
            .zip(&content_layers)
            .map(|(f, &l)| ContentLoss::new(l, f, 1.0))
            .collect()
    };
    let style: Vec<StyleLoss<f64>> = if style_layers.is_empty() {
        vec![]
    } else {
        let n = style_layers.len() as f64;
        net.features_of_image(&style_img, sh, sw, &style_layers)
            .unwrap()
            .iter()
            .zip(&style_layers)
            .map(|(f, &l)| StyleLoss::new(l, f, 1.0 / n))
            .collect()
    };
    let mut obj = Objective::new(content, style, case.weights).unwrap();
    let mut ws = net.workspace(h, w, &obj.layers()).unwrap();
    let mut x = rng.image::<f64>(h, w);
    let mut grad = vec![0.0; x.len()];
    let mut scratch = vec![0.0; x.len()];
    let base = obj.evaluate(&net, &mut ws, &x, &mut grad).unwrap();
    assert!(base.total > 0.0 && base.total.is_finite());
    let mut loss = |x: &[f64]| obj.evaluate(&net, &mut ws, x, &mut scratch).unwrap().total;
    let gmax = grad.iter().fold(0.0f64, |m, g| m.max(g.abs()));
    assert!(gmax > 0.0, "gradient is identically zero");
    let eps = 1e-3;
    let mut worst = 0.0f64;
    let mut picks: Vec<usize> = (0..24).map(|_| rng.below(x.len())).collect();
    picks.extend([0, x.len() - 1, 3 * (w - 1), 3 * w * (h - 1)]); // corners
    for &i in &picks {
        let keep = x[i];
        x[i] = keep + eps;
        let lp = loss(&x);
        x[i] = keep - eps;
        let lm = loss(&x);
        x[i] = keep;
        let fd = (lp - lm) / (2.0 * eps);
        // Rounding of the two loss values (~1e8) limits what differences can resolve: discount
        // that much absolute error, so small entries are not failed on noise.
        let noise = 64.0 * base.total.abs() * f64::EPSILON / eps;
        let err =
            ((fd - grad[i]).abs() - noise).max(0.0) / (fd.abs().max(grad[i].abs()) + 1e-9 * gmax);
        if err > 1e-6 {
            eprintln!(
                "pick {i}: fd {fd:.6e} grad {:.6e} err {err:.2e} gmax {gmax:.2e}",
                grad[i]
            );
        }
        worst = worst.max(err);
    }
    // Along a random direction: catches errors spread thinly over many pixels.
    let dir: Vec<f64> = (0..x.len()).map(|_| rng.uniform()).collect();
    let along = |t: f64| -> Vec<f64> { x.iter().zip(&dir).map(|(a, d)| a + t * d).collect() };
    let fd = (loss(&along(eps)) - loss(&along(-eps))) / (2.0 * eps);
    let an: f64 = grad.iter().zip(&dir).map(|(g, d)| g * d).sum();
    let worst = worst.max((fd - an).abs() / fd.abs().max(an.abs()));
    eprintln!("worst relative error {worst:.2e} (loss {:.3e})", base.total);
    worst
}

// Central differences with eps = 1e-3 on the 0–255 scale, beyond the rounding noise of the
// losses, agree to ~1e-7 here; a wrong factor anywhere shows up as ≥1e-4.
const TOL: f64 = 1e-5;

fn paper(tv: f64) -> LossWeights {
    LossWeights {
        content: 1.0,
        style: 1e3,
        tv,
    }
}

#[test]
fn gatys_objective_with_average_pooling_at_odd_size() {
    let case = Case {
        arch: Architecture::Vgg19,
        pooling: Pooling::Avg,
        h: 37,
        w: 35,
        content: &["relu4_2"],
        style: &["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"],
        weights: paper(0.0),
        algorithm: AlgorithmPolicy::Auto,
    };
    let e = check(&case, 1);
    assert!(e < TOL, "relative error {e}");
}

#[test]
fn gatys_objective_on_the_direct_path() {
    let case = Case {
        arch: Architecture::Vgg19,
        pooling: Pooling::Avg,
        h: 33,
        w: 36,
        content: &["relu4_2"],
        style: &["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"],
        weights: paper(0.0),
        algorithm: AlgorithmPolicy::Direct,
    };
    let e = check(&case, 6);
    assert!(e < TOL, "relative error {e}");
}

#[test]
fn gatys_objective_with_max_pooling_at_odd_size() {
    let case = Case {
        arch: Architecture::Vgg19,
        pooling: Pooling::Max,
        h: 35,
        w: 37,
        content: &["relu4_2"],
        style: &["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"],
        weights: paper(0.0),
        algorithm: AlgorithmPolicy::Auto,
    };
    let e = check(&case, 2);
    assert!(e < TOL, "relative error {e}");
}

#[test]
fn content_only_on_conv_layers_and_pools() {
    // Pre-ReLU taps, a pool tap, and two losses on one stage (conv3_1 and relu3_1).
    for pooling in [Pooling::Avg, Pooling::Max] {
        let case = Case {
            arch: Architecture::Vgg16,
            pooling,
            h: 19,
            w: 23,
            content: &["conv1_2", "pool2", "conv3_1", "relu3_1"],
            style: &[],
            weights: LossWeights {
                content: 1.0,
                style: 0.0,
                tv: 0.0,
            },
            algorithm: AlgorithmPolicy::Auto,
        };
        let e = check(&case, 3);
        assert!(e < TOL, "{pooling}: relative error {e}");
    }
}

#[test]
fn style_only_on_mixed_layers() {
    let case = Case {
        arch: Architecture::Vgg16,
        pooling: Pooling::Max,
        h: 21,
        w: 18,
        content: &[],
        style: &["conv1_1", "relu1_2", "pool1", "relu3_3", "pool3"],
        weights: LossWeights {
            content: 0.0,
            style: 1.0,
            tv: 0.0,
        },
        algorithm: AlgorithmPolicy::Winograd(impasto::core::WinogradTile::F2),
    };
    let e = check(&case, 4);
    assert!(e < TOL, "relative error {e}");
}

#[test]
fn total_variation_joins_the_gradient() {
    let case = Case {
        arch: Architecture::Vgg16,
        pooling: Pooling::Avg,
        h: 9,
        w: 11,
        content: &["relu2_1"],
        style: &["relu1_1"],
        weights: paper(5.0),
        algorithm: AlgorithmPolicy::Auto,
    };
    let e = check(&case, 5);
    assert!(e < TOL, "relative error {e}");
}

#[test]
fn evaluations_repeat_exactly_on_a_reused_workspace() {
    // Backward reuses activation buffers for gradients; the next forward must not notice.
    let arch = Architecture::Vgg19;
    let net = random_vgg::<f32>(
        arch,
        [8, 16, 16, 16, 16],
        Pooling::Max,
        AlgorithmPolicy::Auto,
        7,
    );
    let mut rng = Rng::new(70);
    let (h, w) = (34, 41);
    let target = rng.image::<f32>(h, w);
    let layers_all = layers(arch, &["relu1_1", "relu3_1", "relu4_2", "pool4"]);
    let mut ws = net.workspace(h, w, &layers_all).unwrap();
    net.convention().to_network(&target, ws.input_mut());
    net.forward(&mut ws);
    let content = layers_all
        .iter()
        .map(|&l| ContentLoss::new(l, net.features(&ws, l).unwrap().clone(), 1.0))
        .collect();
    let style = vec![StyleLoss::new(
        layers_all[0],
        net.features(&ws, layers_all[0]).unwrap(),
        1.0,
    )];
    let mut obj = Objective::new(content, style, paper(1.0)).unwrap();
    let x = rng.image::<f32>(h, w);
    let (mut g1, mut g2) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    let a = obj.evaluate(&net, &mut ws, &x, &mut g1).unwrap();
    let b = obj.evaluate(&net, &mut ws, &x, &mut g2).unwrap();
    assert_eq!(a, b);
    assert_eq!(g1, g2);
    assert!(g1.iter().any(|&v| v != 0.0));
}

#[test]
fn weights_that_do_not_fit_their_network_are_an_error_not_a_panic() {
    let mut w = impasto::bench::random_weights(Architecture::Vgg16, 1);
    w.convs[3].weight.pop();
    let err = Vgg::<f32>::new(&w, Pooling::Avg).unwrap_err().to_string();
    assert!(err.contains("conv2_2"), "{err}");
    w.convs.pop();
    assert!(Vgg::<f32>::new(&w, Pooling::Avg).is_err());
}
