//! The whole objective on the GPU against the CPU engine in f64 (whose gradient the CPU's own
//! suite checks by finite differences) on tiny random VGGs: every pooling crossed, odd sizes,
//! layers before and after their ReLU, poolings as taps, masked regions with their own styles,
//! a region pooling leaves empty, total variation, repeated evaluations.
//!
//! Tolerance: losses 1e-4 relative, gradient 1e-4 relative in norm (f32 against f64).

mod common;

use common::gpu;
use impasto::backend::Network;
use impasto::core::{Conv3x3, FeatureMap, Pooling};
use impasto::loss::{ContentLoss, LossParts, LossWeights, Objective, SpatialMask, StyleLoss};
use impasto::model::{Architecture, InputConvention, Layer, Vgg};
use impasto_gpu::{GpuBackend, GpuNetwork};

fn backend() -> &'static GpuBackend {
    static B: std::sync::OnceLock<GpuBackend> = std::sync::OnceLock::new();
    // Through the tests' shared device check, so a missing adapter fails with what to install.
    let _ = gpu();
    B.get_or_init(|| GpuBackend::open(impasto_gpu::AdapterChoice::Any).expect("GPU adapter"))
}

struct Tiny {
    cpu: Vgg<f64>,
    gpu: GpuNetwork,
}

/// A VGG19 with `channels[b]` channels in block b and random He-scaled weights, on both engines.
fn tiny(pooling: Pooling, channels: [usize; 5], deepest: &str, seed: u64) -> Tiny {
    let arch = Architecture::Vgg19;
    let mut rng = common::Rng::new(seed);
    let mut cin = 3;
    let mut params = Vec::new();
    for (b, &n) in arch.convs_per_block().iter().enumerate() {
        for _ in 0..n {
            let cout = channels[b];
            let std = (6.0 / (9.0 * cin as f32)).sqrt();
            params.push((cin, cout, rng.vec(cout * cin * 9, std), rng.vec(cout, 0.1)));
            cin = cout;
        }
    }
    let convs = params
        .iter()
        .map(|(ci, co, w, b)| Conv3x3::<f64>::new(*ci, *co, w, b))
        .collect();
    let cpu = Vgg::from_convs(arch, InputConvention::CaffeBgr, pooling, convs).unwrap();
    let refs: Vec<(usize, usize, &[f32], &[f32])> = params
        .iter()
        .map(|(ci, co, w, b)| (*ci, *co, &w[..], &b[..]))
        .collect();
    let deepest = arch.parse_layer(deepest).unwrap();
    let gpu = GpuNetwork::from_convs(
        backend(),
        arch,
        InputConvention::CaffeBgr,
        pooling,
        deepest,
        &refs,
    )
    .unwrap();
    Tiny { cpu, gpu }
}

fn layers(names: &[&str]) -> Vec<Layer> {
    names
        .iter()
        .map(|n| Architecture::Vgg19.parse_layer(n).unwrap())
        .collect()
}

fn image(rng: &mut common::Rng, h: usize, w: usize) -> Vec<f32> {
    rng.vec(h * w * 3, 127.5)
        .iter()
        .map(|v| v + 127.5)
        .collect()
}

struct Case {
    pooling: Pooling,
    size: (usize, usize),
    content: &'static [&'static str],
    style: &'static [&'static str],
    /// Style masks: each region (mask at the image's size) with its own style image.
    regions: Vec<SpatialMask>,
    tv: f64,
}

fn soft_mask(h: usize, w: usize, phase: f32) -> SpatialMask {
    let values = (0..h * w)
        .map(|i| {
            (0.5 + 0.5 * ((i % w) as f32 * 0.3 + (i / w) as f32 * 0.2 + phase).sin())
                .clamp(0.0, 1.0)
        })
        .collect();
    SpatialMask::new(h, w, values).unwrap()
}

/// The same objective on both engines; returns (CPU parts, GPU parts, relative gradient error).
fn run(case: &Case, seed: u64) -> (LossParts, LossParts, f64) {
    let all: Vec<&str> = case.content.iter().chain(case.style).copied().collect();
    let deepest = all
        .iter()
        .max_by_key(|n| Architecture::Vgg19.layer_position(layers(&[n])[0]).unwrap())
        .unwrap();
    let net = tiny(case.pooling, [4, 6, 8, 8, 5], deepest, seed);
    let (h, w) = case.size;
    let mut rng = common::Rng::new(seed + 1);
    let photo: Vec<f64> = image(&mut rng, h, w).iter().map(|&v| v as f64).collect();
    let content_layers = layers(case.content);
    let style_layers = layers(case.style);
    let targets = net
        .cpu
        .features_of_image(&photo, h, w, &content_layers)
        .unwrap();
    let mut content64 = Vec::new();
    let mut content32 = Vec::new();
    for (&l, t) in content_layers.iter().zip(targets) {
        content32.push(ContentLoss::new(l, t.convert::<f32>(), 0.7));
        content64.push(ContentLoss::new(l, t, 0.7));
    }
    let mut style64 = Vec::new();
    let mut style32 = Vec::new();
    let regions: Vec<Option<&SpatialMask>> = if case.regions.is_empty() {
        vec![None]
    } else {
        case.regions.iter().map(Some).collect()
    };
    for (r, region) in regions.iter().enumerate() {
        let (sh, sw) = (h + 3 * r, w - r);
        let painting: Vec<f64> = image(&mut rng, sh, sw).iter().map(|&v| v as f64).collect();
        let feats = net
            .cpu
            .features_of_image(&painting, sh, sw, &style_layers)
            .unwrap();
        for (&l, f) in style_layers.iter().zip(&feats) {
            let mut s = StyleLoss::new(l, f, 1.0 / style_layers.len() as f64);
            if let Some(m) = region {
                s = s.with_mask(m.at_layer(Architecture::Vgg19, l).unwrap());
            }
            let target: Vec<f32> = s.target().iter().map(|&v| v as f32).collect();
            let mut s32 = StyleLoss::from_target(l, target, f.channels(), s.weight());
            if let Some(m) = s.mask() {
                s32 = s32.with_mask(m.clone());
            }
            style32.push(s32);
            style64.push(s);
        }
    }
    let weights = LossWeights {
        content: 1.0,
        style: 1e3,
        tv: case.tv,
    };
    let mut cpu_objective = Objective::new(content64, style64, weights).unwrap();
    let gpu_objective = Objective::new(content32, style32, weights).unwrap();
    let x = image(&mut rng, h, w);
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let mut ws = net.cpu.workspace(h, w, &cpu_objective.layers()).unwrap();
    let mut want = vec![0.0f64; x.len()];
    let cpu = cpu_objective
        .evaluate(&net.cpu, &mut ws, &x64, &mut want)
        .unwrap();

    let mut ev = net.gpu.evaluator(gpu_objective, (w, h), None).unwrap();
    let mut got = vec![f32::NAN; x.len()];
    let first = ev.evaluate(&x, &mut got).unwrap();
    // A second evaluation on the same buffers gives the same answer.
    let mut again = vec![0.0f32; x.len()];
    let second = ev.evaluate(&x, &mut again).unwrap();
    assert_eq!(first, second, "a repeated evaluation differs");
    assert_eq!(got, again, "a repeated evaluation's gradient differs");
    let num: f64 = got
        .iter()
        .zip(&want)
        .map(|(&a, &b)| (a as f64 - b).powi(2))
        .sum();
    let den: f64 = want.iter().map(|b| b * b).sum();
    (cpu, first, (num / den).sqrt())
}

fn check(case: Case, seed: u64) {
    let (cpu, gpu, grad_err) = run(&case, seed);
    eprintln!("CPU {cpu:?}\nGPU {gpu:?}\ngradient error {grad_err:.2e}");
    let rel = |a: f64, b: f64| {
        if b == 0.0 {
            a.abs()
        } else {
            (a - b).abs() / b.abs()
        }
    };
    for (what, g, c) in [
        ("content", gpu.content, cpu.content),
        ("style", gpu.style, cpu.style),
        ("tv", gpu.tv, cpu.tv),
        ("total", gpu.total, cpu.total),
    ] {
        assert!(rel(g, c) < 1e-4, "{what}: GPU {g} vs CPU {c}");
    }
    assert!(grad_err < 1e-4, "gradient error {grad_err:.2e}");
}

#[test]
fn gatys_objective_with_average_pooling_at_odd_size() {
    check(
        Case {
            pooling: Pooling::Avg,
            size: (37, 29),
            content: &["relu4_2"],
            style: &["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"],
            regions: vec![],
            tv: 0.0,
        },
        1,
    );
}

#[test]
fn gatys_objective_with_max_pooling_and_total_variation() {
    check(
        Case {
            pooling: Pooling::Max,
            size: (35, 34),
            content: &["relu4_2"],
            style: &["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"],
            regions: vec![],
            tv: 1e-2,
        },
        2,
    );
}

#[test]
fn conv_layers_and_poolings_as_taps() {
    check(
        Case {
            pooling: Pooling::Avg,
            size: (27, 30),
            content: &["conv2_1", "pool1", "relu1_2"],
            style: &["conv1_1", "pool2", "conv3_2"],
            regions: vec![],
            tv: 0.0,
        },
        3,
    );
}

#[test]
fn two_masked_regions_with_their_own_styles() {
    let (h, w) = (33, 28);
    let soft = soft_mask(h, w, 0.4);
    let other = soft.complement();
    check(
        Case {
            pooling: Pooling::Avg,
            size: (h, w),
            content: &["relu3_1"],
            style: &["relu1_1", "relu2_1", "relu3_1"],
            regions: vec![soft, other],
            tv: 0.0,
        },
        4,
    );
}

#[test]
fn a_region_that_pooling_empties_has_no_loss_at_the_deep_layers() {
    // A region that is only the odd last column: relu1_1 sees it, floor-mode pooling drops it,
    // so from relu2_1 on its mass is zero (no loss, no gradient), while its complement goes on.
    let (h, w) = (24, 25);
    let values = (0..h * w)
        .map(|i| if i % w == w - 1 { 1.0 } else { 0.0 })
        .collect();
    let edge = SpatialMask::new(h, w, values).unwrap();
    check(
        Case {
            pooling: Pooling::Max,
            size: (h, w),
            content: &["relu2_1"],
            style: &["relu1_1", "relu2_1", "relu3_1"],
            regions: vec![edge.clone(), edge.complement()],
            tv: 0.0,
        },
        5,
    );
}

#[test]
fn tiling_is_refused_with_a_message_naming_it() {
    let net = tiny(Pooling::Avg, [4, 4, 4, 4, 4], "relu1_1", 6);
    let f: FeatureMap<f32> = FeatureMap::zeros(16, 16, 4);
    let l = layers(&["relu1_1"])[0];
    let objective = Objective::new(
        vec![ContentLoss::new(l, f, 1.0)],
        vec![],
        LossWeights::default(),
    )
    .unwrap();
    let tiling = impasto::loss::Tiling::new(Architecture::Vgg19, &[l], 32).unwrap();
    let err = net
        .gpu
        .evaluator(objective, (64, 64), Some(tiling))
        .err()
        .expect("tiling refused");
    assert!(format!("{err:#}").contains("CPU-only"), "{err:#}");
}
