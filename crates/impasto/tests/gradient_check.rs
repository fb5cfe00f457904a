//! Finite-difference checks of every gradient, in f64, on tiny random VGG networks: the analytic
//! gradient of the whole objective (network, content, style with and without masks, TV, input
//! convention) must match central differences of the objective itself. Odd image sizes make
//! every pooling drop a row or a column.

mod common;

use common::{random_vgg, RandomImage, Rng};
use impasto::core::Pooling;
use impasto::loss::{
    masked_normalized_gram, ContentLoss, LossWeights, Objective, SpatialMask, StyleLoss,
};
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
    masks: Masks,
}

/// Spatial control of the style losses.
#[derive(Clone, Copy, PartialEq)]
enum Masks {
    None,
    /// One region with smoothly varying weights, its target from a softly masked style image.
    Soft,
    /// Left and right parts (split at an odd column, so pooled masks turn fractional there),
    /// each with its own style image.
    Halves,
}

/// A smooth mask in [0.05, 0.95], nowhere binary.
fn soft_mask(h: usize, w: usize, phase: f64) -> SpatialMask {
    let values = (0..h * w)
        .map(|i| {
            let (y, x) = ((i / w) as f64, (i % w) as f64);
            (0.5 + 0.45 * (0.7 * x + 0.3 * y + phase).sin()) as f32
        })
        .collect();
    SpatialMask::new(h, w, values).unwrap()
}

/// 1 left of column `split`, 0 from it on.
fn left_of(h: usize, w: usize, split: usize) -> SpatialMask {
    let values = (0..h * w)
        .map(|i| if i % w < split { 1.0 } else { 0.0 })
        .collect();
    SpatialMask::new(h, w, values).unwrap()
}

/// Masked style losses at `layers`, one per region: region k matches the statistics of style
/// image k (inside its style mask, if given), weighted by `1/L` times its area share.
fn masked_style_losses(
    net: &Vgg<f64>,
    layers: &[Layer],
    regions: &[SpatialMask],
    styles: &[(Vec<f64>, usize, usize, Option<SpatialMask>)],
) -> Vec<StyleLoss<f64>> {
    let arch = net.architecture();
    let n = layers.len() as f64;
    let mut losses = Vec::new();
    for (region, (img, sh, sw, style_mask)) in regions.iter().zip(styles) {
        let features = net.features_of_image(img, *sh, *sw, layers).unwrap();
        for (f, &l) in features.iter().zip(layers) {
            let all = SpatialMask::ones(*sh, *sw);
            let sm = style_mask
                .as_ref()
                .unwrap_or(&all)
                .at_layer(arch, l)
                .unwrap();
            let target = masked_normalized_gram(f, &sm).unwrap();
            let mask = region.at_layer(arch, l).unwrap();
            let weight = mask.area_share() / n;
            losses.push(StyleLoss::from_target(l, target, f.channels(), weight).with_mask(mask));
        }
    }
    losses
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
    } else if case.masks == Masks::Soft {
        let style_mask = Some(soft_mask(sh, sw, 1.0));
        let styles = [(style_img, sh, sw, style_mask)];
        masked_style_losses(&net, &style_layers, &[soft_mask(h, w, 0.0)], &styles)
    } else if case.masks == Masks::Halves {
        let (sh2, sw2) = (h + 5, w - 2);
        let other = rng.image::<f64>(sh2, sw2);
        let left = left_of(h, w, (w / 2) | 1);
        let regions = [left.complement(), left];
        let styles = [(style_img, sh, sw, None), (other, sh2, sw2, None)];
        masked_style_losses(&net, &style_layers, &regions, &styles)
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
        masks: Masks::None,
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
        masks: Masks::None,
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
        masks: Masks::None,
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
            masks: Masks::None,
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
        masks: Masks::None,
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
        masks: Masks::None,
    };
    let e = check(&case, 5);
    assert!(e < TOL, "relative error {e}");
}

#[test]
fn soft_masked_style_through_every_pooling() {
    let case = Case {
        arch: Architecture::Vgg19,
        pooling: Pooling::Avg,
        h: 37,
        w: 35,
        content: &["relu4_2"],
        style: &["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"],
        weights: paper(0.0),
        algorithm: AlgorithmPolicy::Auto,
        masks: Masks::Soft,
    };
    let e = check(&case, 8);
    assert!(e < TOL, "relative error {e}");
}

#[test]
fn two_masked_regions_with_their_own_styles() {
    let case = Case {
        arch: Architecture::Vgg16,
        pooling: Pooling::Max,
        h: 35,
        w: 38,
        content: &["relu3_2"],
        style: &["relu1_1", "relu2_1", "pool2", "relu3_1", "relu4_1"],
        weights: paper(0.0),
        algorithm: AlgorithmPolicy::Auto,
        masks: Masks::Halves,
    };
    let e = check(&case, 9);
    assert!(e < TOL, "relative error {e}");
}

/// The pixel gradient of a style-only objective over `regions`, region k styled by image k.
fn region_gradient(
    net: &Vgg<f64>,
    layers: &[Layer],
    regions: &[SpatialMask],
    styles: &[(Vec<f64>, usize, usize, Option<SpatialMask>)],
    x: &[f64],
) -> (f64, Vec<f64>) {
    let style = masked_style_losses(net, layers, regions, styles);
    let weights = LossWeights {
        content: 0.0,
        style: 1.0,
        tv: 0.0,
    };
    let mut obj = Objective::new(vec![], style, weights).unwrap();
    let (h, w) = (regions[0].height, regions[0].width);
    let mut ws = net.workspace(h, w, &obj.layers()).unwrap();
    let mut grad = vec![0.0; x.len()];
    let parts = obj.evaluate(net, &mut ws, x, &mut grad).unwrap();
    (parts.style, grad)
}

#[test]
fn every_region_receives_its_own_gradient() {
    // A known failure of masked style transfer is that only the last region's loss reaches the
    // image. Two halves, two styles: both halves must be pushed, and removing one region's
    // loss must leave the other half's gradient as it was and silence its own half, beyond the
    // layers' receptive field around the split.
    let arch = Architecture::Vgg16;
    let net = random_vgg::<f64>(
        arch,
        [4, 8, 8, 8, 8],
        Pooling::Avg,
        AlgorithmPolicy::Auto,
        10,
    );
    let mut rng = Rng::new(110);
    let (h, w, split) = (12, 40, 20);
    let layers = layers(arch, &["relu1_1", "relu2_1"]);
    let left = left_of(h, w, split);
    let regions = [left.clone(), left.complement()];
    let styles = [
        (rng.image::<f64>(14, 16), 14, 16, None),
        (rng.image::<f64>(18, 12), 18, 12, None),
    ];
    let x = rng.image::<f64>(h, w);
    // relu2_1 sees 10 × 10 pixels; 6 columns clear any reach across the split.
    let margin = 6;
    let energy = |g: &[f64], cols: std::ops::Range<usize>| -> f64 {
        (0..h)
            .flat_map(|y| cols.clone().map(move |x| (y, x)))
            .flat_map(|(y, x)| (0..3).map(move |ch| g[(y * w + x) * 3 + ch].powi(2)))
            .sum()
    };
    let (far_left, far_right) = (0..split - margin, split + margin..w);
    let (both_loss, both) = region_gradient(&net, &layers, &regions, &styles, &x);
    let gmax = both.iter().fold(0.0f64, |m, g| m.max(g.abs()));
    assert!(both_loss > 0.0);
    assert!(
        energy(&both, far_left.clone()) > 0.0,
        "left half gets no gradient"
    );
    assert!(
        energy(&both, far_right.clone()) > 0.0,
        "right half gets no gradient"
    );
    for (keep, own, other) in [
        (0, far_left.clone(), far_right.clone()),
        (1, far_right.clone(), far_left.clone()),
    ] {
        let (_, only) = region_gradient(
            &net,
            &layers,
            &regions[keep..keep + 1],
            &styles[keep..keep + 1],
            &x,
        );
        let tiny = 1e-12 * gmax;
        for y in 0..h {
            for c in own.clone() {
                for ch in 0..3 {
                    let i = (y * w + c) * 3 + ch;
                    assert!(
                        (only[i] - both[i]).abs() <= tiny,
                        "region {keep} alone changes its own half at ({y}, {c})"
                    );
                }
            }
        }
        assert!(
            energy(&only, other.clone()).sqrt() <= tiny,
            "region {keep} alone still pushes the other half"
        );
        assert!(energy(&only, own).sqrt() > 1e-3 * gmax);
    }
}

#[test]
fn an_all_ones_mask_leaves_the_objective_as_it_was() {
    let arch = Architecture::Vgg19;
    let net = random_vgg::<f64>(
        arch,
        [4, 8, 8, 8, 8],
        Pooling::Avg,
        AlgorithmPolicy::Auto,
        11,
    );
    let mut rng = Rng::new(111);
    let (h, w) = (19, 21);
    let layers = layers(
        arch,
        &["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"],
    );
    let style = rng.image::<f64>(22, 17);
    let features = net.features_of_image(&style, 22, 17, &layers).unwrap();
    let build = |masked: bool| {
        let losses = features
            .iter()
            .zip(&layers)
            .map(|(f, &l)| {
                let loss = StyleLoss::new(l, f, 0.2);
                if masked {
                    let ones = SpatialMask::ones(h, w).at_layer(arch, l).unwrap();
                    loss.with_mask(ones)
                } else {
                    loss
                }
            })
            .collect();
        Objective::new(vec![], losses, paper(0.0)).unwrap()
    };
    let x = rng.image::<f64>(h, w);
    let run = |mut obj: Objective<f64>| {
        let mut ws = net.workspace(h, w, &obj.layers()).unwrap();
        let mut grad = vec![0.0; x.len()];
        let parts = obj.evaluate(&net, &mut ws, &x, &mut grad).unwrap();
        (parts.style, grad)
    };
    let (plain, g0) = run(build(false));
    let (masked, g1) = run(build(true));
    assert!(plain > 0.0);
    assert!(
        (plain - masked).abs() <= 1e-13 * plain,
        "{plain} vs {masked}"
    );
    let gmax = g0.iter().fold(0.0f64, |m, g| m.max(g.abs()));
    for (a, b) in g0.iter().zip(&g1) {
        assert!((a - b).abs() <= 1e-12 * gmax, "{a} vs {b}");
    }
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
    let mut w = impasto::weights::VggWeights::random(Architecture::Vgg16, 1);
    w.convs[3].weight.pop();
    let err = Vgg::<f32>::new(&w, Pooling::Avg).unwrap_err().to_string();
    assert!(err.contains("conv2_2"), "{err}");
    w.convs.pop();
    assert!(Vgg::<f32>::new(&w, Pooling::Avg).is_err());
}

// The shared directional finite-difference case, on every backend of this crate, in f32 through
// the backend boundary (impasto-gpu runs the same case on its adapters).
common::backends::for_each_backend! { common::backends::backends();
    every_backend_matches_central_differences => |backend| {
        impasto::testing::gradient_matches_finite_differences(
            backend, impasto::testing::Tolerance::F32,
        )
    };
}
