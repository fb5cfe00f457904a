//! Tiled evaluation against the whole image, in f64 on tiny random VGG networks: the halo covers
//! the receptive field, so the tiled losses and gradient must be the whole-image ones up to
//! rounding, for any cuts. Odd image sizes make the last tiles end where pooling drops a row.

mod common;

use common::{random_vgg, RandomImage, Rng};
use impasto::core::Pooling;
use impasto::loss::{ContentLoss, LossParts, LossWeights, Objective, StyleLoss, Tiling};
use impasto::model::{AlgorithmPolicy, Architecture, Layer, Vgg};

fn layers(arch: Architecture, names: &[&str]) -> Vec<Layer> {
    names.iter().map(|n| arch.parse_layer(n).unwrap()).collect()
}

struct Setup {
    net: Vgg<f64>,
    objective: Objective<f64>,
    image: Vec<f64>,
    h: usize,
    w: usize,
}

fn setup(pooling: Pooling, content: &[&str], style: &[&str], h: usize, w: usize) -> Setup {
    let arch = Architecture::Vgg19;
    let net = random_vgg::<f64>(arch, [4, 8, 8, 8, 8], pooling, AlgorithmPolicy::Auto, 3);
    let mut rng = Rng::new(11);
    let (cl, sl) = (layers(arch, content), layers(arch, style));
    let photo = rng.image::<f64>(h, w);
    let painting = rng.image::<f64>(h - 5, w + 7);
    let content = net
        .features_of_image(&photo, h, w, &cl)
        .unwrap()
        .into_iter()
        .zip(&cl)
        .map(|(f, &l)| ContentLoss::new(l, f, 1.0))
        .collect();
    let style = net
        .features_of_image(&painting, h - 5, w + 7, &sl)
        .unwrap()
        .iter()
        .zip(&sl)
        .map(|(f, &l)| StyleLoss::new(l, f, 1.0 / sl.len() as f64))
        .collect();
    let weights = LossWeights {
        content: 1.0,
        style: 1e3,
        tv: 0.5,
    };
    Setup {
        objective: Objective::new(content, style, weights).unwrap(),
        net,
        image: rng.image::<f64>(h, w),
        h,
        w,
    }
}

fn whole(s: &mut Setup) -> (LossParts, Vec<f64>) {
    let mut ws = s.net.workspace(s.h, s.w, &s.objective.layers()).unwrap();
    let mut grad = vec![0.0; s.image.len()];
    let parts = s
        .objective
        .evaluate(&s.net, &mut ws, &s.image, &mut grad)
        .unwrap();
    (parts, grad)
}

fn tiled(s: &mut Setup, tiling: &Tiling) -> (LossParts, Vec<f64>) {
    let side = tiling.max_window();
    let mut ws = s.net.workspace(side, side, &s.objective.layers()).unwrap();
    let mut grad = vec![0.0; s.image.len()];
    let parts = s
        .objective
        .evaluate_tiled(&s.net, &mut ws, tiling, &s.image, s.h, s.w, &mut grad)
        .unwrap();
    (parts, grad)
}

fn relative(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

fn assert_same(s: &mut Setup, tiling: &Tiling) {
    let (want, want_grad) = whole(s);
    let (got, got_grad) = tiled(s, tiling);
    let tiles = tiling.tiles(s.h, s.w).len();
    assert!(tiles > 1, "the case must cut the image ({tiles} tile)");
    for (name, a, b) in [
        ("content", got.content, want.content),
        ("style", got.style, want.style),
        ("tv", got.tv, want.tv),
        ("total", got.total, want.total),
    ] {
        assert!(relative(a, b) < 1e-10, "{name}: tiled {a} vs whole {b}");
    }
    let norm: f64 = want_grad.iter().map(|v| v * v).sum::<f64>().sqrt();
    let err: f64 = (got_grad.iter().zip(&want_grad))
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        .sqrt();
    assert!(
        err / norm < 1e-10,
        "gradient: relative error {:.2e}",
        err / norm
    );
}

#[test]
fn tiles_give_the_whole_image_losses_and_gradient() {
    for pooling in [Pooling::Avg, Pooling::Max] {
        let mut s = setup(
            pooling,
            &["relu4_2"],
            &["relu1_1", "relu3_1", "relu5_1"],
            83,
            70,
        );
        let mut tiling = Tiling::new(Architecture::Vgg19, &s.objective.layers(), 16).unwrap();
        // Several cuts, as a run moves them between iterations.
        for _ in 0..3 {
            assert_same(&mut s, &tiling);
            tiling.advance();
        }
    }
}

#[test]
fn shallow_layers_need_a_small_halo_only() {
    let mut s = setup(Pooling::Avg, &["conv2_2"], &["relu1_2", "pool2"], 45, 52);
    let tiling = Tiling::new(Architecture::Vgg19, &s.objective.layers(), 8).unwrap();
    assert!(tiling.halo() <= 16, "halo {}", tiling.halo());
    assert_same(&mut s, &tiling);
}

#[test]
fn cuts_cover_the_image_once_and_move_between_iterations() {
    let layers = layers(Architecture::Vgg19, &["relu1_1", "relu5_1"]);
    let mut tiling = Tiling::new(Architecture::Vgg19, &layers, 100).unwrap();
    assert_eq!(tiling.core() % 16, 0);
    let (h, w) = (517, 300);
    let mut seen = Vec::new();
    for _ in 0..4 {
        let tiles = tiling.tiles(h, w);
        let mut covered = vec![0u8; h * w];
        for t in &tiles {
            assert!(t.window.y0 <= t.core.y0 && t.core.y1 <= t.window.y1);
            assert_eq!(t.window.y0 % 16, 0);
            let (ch, cw) = (t.core.y1 - t.core.y0, t.core.x1 - t.core.x0);
            assert!(ch * 2 >= tiling.core() || ch == h, "core of {ch} rows");
            assert!(ch < tiling.core() * 3 / 2 + 16 && cw < tiling.core() * 3 / 2 + 16);
            for y in t.core.y0..t.core.y1 {
                for x in t.core.x0..t.core.x1 {
                    covered[y * w + x] += 1;
                }
            }
        }
        assert!(
            covered.iter().all(|&c| c == 1),
            "cores must partition the image"
        );
        seen.push(tiles[0].core);
        tiling.advance();
    }
    seen.dedup();
    assert!(seen.len() > 1, "the cuts never moved");
}

#[test]
fn masks_are_refused() {
    use impasto::loss::SpatialMask;
    let mut s = setup(Pooling::Avg, &["relu1_1"], &["relu1_1"], 40, 40);
    let arch = Architecture::Vgg19;
    let l = layers(arch, &["relu1_1"])[0];
    let target = s.objective.style_losses()[0].target().to_vec();
    let masked = StyleLoss::from_target(l, target, 4, 1.0).with_mask(SpatialMask::ones(40, 40));
    s.objective = Objective::new(vec![], vec![masked], LossWeights::default()).unwrap();
    let tiling = Tiling::new(arch, &[l], 16).unwrap();
    let mut ws = s.net.workspace(64, 64, &[l]).unwrap();
    let mut grad = vec![0.0; s.image.len()];
    let err = s
        .objective
        .evaluate_tiled(&s.net, &mut ws, &tiling, &s.image, 40, 40, &mut grad)
        .unwrap_err();
    assert!(err.to_string().contains("masks"), "{err}");
}

/// The workspace and the memory estimate are sized by `max_window`: no cut position may exceed it.
#[test]
fn no_window_exceeds_the_maximum() {
    for (names, core) in [
        (&["relu5_1"][..], 1024),
        (&["relu1_1"][..], 512),
        (&["relu3_1"][..], 96),
    ] {
        let layers = layers(Architecture::Vgg19, names);
        let mut tiling = Tiling::new(Architecture::Vgg19, &layers, core).unwrap();
        let max = tiling.max_window();
        for n in (17..3 * core).step_by(37) {
            for _ in 0..9 {
                for t in tiling.tiles(n, 40) {
                    let side = t.window.y1 - t.window.y0;
                    assert!(
                        side <= max,
                        "core {core}, {n} rows: window of {side} > {max}"
                    );
                }
                tiling.advance();
            }
        }
    }
}

common::backends::for_each_backend! { common::backends::backends();
    every_backend_tiles_like_the_whole_image => |backend| {
        impasto::testing::tiled_equals_whole(backend, impasto::testing::Tolerance::F32)
    };
}
