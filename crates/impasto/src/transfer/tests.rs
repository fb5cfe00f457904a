//! The engine on small random networks: settings are checked, losses fall, the best image is
//! kept, observers can stop a run, and sizes that cannot fit are refused before allocating.

use std::ops::ControlFlow;

use super::*;
use crate::bench::random_weights;
use crate::image_io::Image;
use crate::loss::LossWeights;
use crate::model::Architecture;
use crate::optim::{AdamConfig, LbfgsConfig};
use crate::weights::VggWeights;

fn weights() -> &'static VggWeights {
    static W: std::sync::OnceLock<VggWeights> = std::sync::OnceLock::new();
    W.get_or_init(|| random_weights(Architecture::Vgg16, 3))
}

/// A smooth colourful test image.
fn picture(width: usize, height: usize, phase: f32, alpha: bool) -> Image {
    let mut rgb = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            let (fx, fy) = (x as f32 + phase, y as f32);
            rgb.push(128.0 + 100.0 * (0.3 * fx).sin());
            rgb.push(128.0 + 100.0 * (0.2 * fy + phase).cos());
            rgb.push(128.0 + 80.0 * (0.1 * (fx + fy)).sin());
        }
    }
    let alpha = alpha.then(|| {
        (0..width * height)
            .map(|i| if i % width < width / 2 { 255.0 } else { 0.0 })
            .collect()
    });
    Image::new(width, height, rgb, alpha).unwrap()
}

/// VGG16 to relu3_1 at 32 px: small enough for many runs.
fn settings() -> TransferSettings {
    TransferSettings {
        size: 32,
        architecture: Architecture::Vgg16,
        content_layers: vec!["relu2_2".into()],
        style_layers: vec!["relu1_1".into(), "relu2_1".into(), "relu3_1".into()],
        weights: LossWeights {
            content: 1.0,
            style: 1e3,
            tv: 0.0,
        },
        ..TransferSettings::default()
    }
}

fn transfer(settings: &TransferSettings) -> crate::Result<Transfer> {
    let content = picture(40, 30, 0.0, false);
    let style = picture(50, 50, 2.0, false);
    Transfer::new(weights(), &content, &[style], settings)
}

#[test]
fn lbfgs_lowers_the_loss_and_keeps_the_best_image() {
    let mut t = transfer(&settings()).unwrap();
    assert_eq!(t.size(), (32, 24));
    let summary = t.run(30, |_, _| ControlFlow::Continue(())).unwrap();
    assert_eq!(summary.stop, Stop::Completed);
    assert_eq!(summary.iterations, 30);
    assert!(
        summary.evaluations > 30,
        "the start and at least one per iteration"
    );
    let records = t.records();
    assert_eq!(records.len(), 31);
    assert!(records.iter().enumerate().all(|(i, r)| r.iteration == i));
    let (first, last) = (records[0].parts, records[30].parts);
    assert_eq!(first.content, 0.0, "starts from the content image");
    assert!(
        last.style < first.style / 5.0,
        "style {:e} → {:e}",
        first.style,
        last.style
    );
    let (best_iteration, best) = t.best();
    let lowest = records
        .iter()
        .map(|r| r.parts.total)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(best.total, lowest);
    assert_eq!(records[best_iteration].parts.total, lowest);
}

#[test]
fn adam_with_step_decay_lowers_the_loss() {
    let s = TransferSettings {
        optimizer: OptimizerSettings::Adam(AdamConfig {
            learning_rate: 4.0,
            decay_every: Some(10),
            decay_factor: 0.5,
            ..AdamConfig::default()
        }),
        ..settings()
    };
    let mut t = transfer(&s).unwrap();
    t.run(30, |_, _| ControlFlow::Continue(())).unwrap();
    let r = t.records();
    assert!(r[30].parts.total < 0.5 * r[0].parts.total, "{r:?}");
}

#[test]
fn reconstructions_use_one_loss_only() {
    let content_only = TransferSettings {
        style_layers: vec![],
        init: Init::Noise,
        ..settings()
    };
    let content = picture(40, 30, 0.0, false);
    let mut t = Transfer::new(weights(), &content, &[], &content_only).unwrap();
    t.run(20, |_, _| ControlFlow::Continue(())).unwrap();
    let r = t.records();
    assert!(r.iter().all(|r| r.parts.style == 0.0));
    assert!(r[20].parts.content < r[0].parts.content / 10.0);

    let style_only = TransferSettings {
        content_layers: vec![],
        init: Init::Noise,
        ..settings()
    };
    let mut t = Transfer::new(
        weights(),
        &content,
        std::slice::from_ref(&content),
        &style_only,
    )
    .unwrap();
    t.run(20, |_, _| ControlFlow::Continue(())).unwrap();
    let r = t.records();
    assert!(r.iter().all(|r| r.parts.content == 0.0));
    assert!(r[20].parts.style < r[0].parts.style / 10.0);
}

#[test]
fn an_observer_can_stop_the_run_and_it_can_go_on_later() {
    let mut t = transfer(&settings()).unwrap();
    let mut seen = Vec::new();
    let summary = t
        .run(10, |_, r| {
            seen.push(r.iteration);
            if r.iteration == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(summary.stop, Stop::Interrupted);
    assert_eq!(seen, [0, 1, 2, 3]);
    assert_eq!(summary.iterations, 3);
    let summary = t.run(2, |_, _| ControlFlow::Continue(())).unwrap();
    assert_eq!((summary.stop, summary.iterations), (Stop::Completed, 2));
    assert_eq!(t.records().len(), 6);
}

#[test]
fn zero_iterations_evaluate_the_start_only() {
    let mut t = transfer(&settings()).unwrap();
    let summary = t.run(0, |_, _| ControlFlow::Continue(())).unwrap();
    assert_eq!((summary.stop, summary.iterations), (Stop::Completed, 0));
    assert_eq!(t.records().len(), 1);
    assert_eq!(t.best_image(), t.image());
}

#[test]
fn start_images_follow_the_init_setting() {
    let content = picture(40, 30, 0.0, true);
    let style = picture(50, 50, 2.0, false);
    let build = |init: Init, seed: u64| {
        let s = TransferSettings {
            init,
            seed,
            ..settings()
        };
        Transfer::new(weights(), &content, std::slice::from_ref(&style), &s).unwrap()
    };
    let resized = |i: &Image| crate::image_io::resize(i, 32, 24).unwrap();
    let from_content = build(Init::Content, 0).image();
    assert!(from_content.rgb == resized(&content).rgb, "content start");
    // The content's alpha comes back with every image, at the working size.
    assert!(from_content.alpha == resized(&content).alpha, "alpha");
    assert!(
        build(Init::Style, 0).image().rgb == resized(&style).rgb,
        "style start"
    );
    let noise = build(Init::Noise, 5).image();
    assert!(
        noise == build(Init::Noise, 5).image(),
        "same seed, same start"
    );
    assert!(
        noise.rgb != build(Init::Noise, 6).image().rgb,
        "seeds differ"
    );
    let given = picture(10, 10, 1.0, false);
    assert!(
        build(Init::Image(given.clone()), 0).image().rgb == resized(&given).rgb,
        "image start"
    );
}

#[test]
fn blended_styles_target_the_weighted_mean_of_their_grams() {
    let content = picture(40, 30, 0.0, false);
    let a = picture(40, 40, 1.0, false);
    let b = picture(20, 36, 3.0, false);
    let target = |styles: &[Image], blend: Option<Vec<f64>>| {
        let s = TransferSettings {
            style_blend_weights: blend,
            ..settings()
        };
        let t = Transfer::new(weights(), &content, styles, &s).unwrap();
        t.objective().style_losses()[1].target().to_vec()
    };
    let (ga, gb) = (
        target(std::slice::from_ref(&a), None),
        target(std::slice::from_ref(&b), None),
    );
    let blended = target(&[a, b], Some(vec![3.0, 1.0]));
    for ((m, x), y) in blended.iter().zip(&ga).zip(&gb) {
        let want = 0.75 * x + 0.25 * y;
        assert!(
            (m - want).abs() <= 1e-4 * want.abs().max(1.0),
            "{m} vs {want}"
        );
    }
}

#[test]
fn blend_weights_whose_sum_overflows_keep_their_proportions() {
    let content = picture(40, 30, 0.0, false);
    let styles = [picture(40, 40, 1.0, false), picture(20, 36, 3.0, false)];
    let target = |blend: Vec<f64>| {
        let s = TransferSettings {
            style_blend_weights: Some(blend),
            ..settings()
        };
        let t = Transfer::new(weights(), &content, &styles, &s).unwrap();
        t.objective().style_losses()[1].target().to_vec()
    };
    let same = |a: &[f32], b: &[f32], what: &str| {
        assert!(b.iter().any(|v| *v != 0.0), "{what}: a zero reference");
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x - y).abs() <= 1e-6 * y.abs().max(1.0),
                "{what}: {x} vs {y}"
            );
        }
    };
    // 1e308 + 1e308 overflows to infinity; so does f64::MAX + f64::MAX / 3.
    let halves = target(vec![1.0, 1.0]);
    same(&target(vec![1e308, 1e308]), &halves, "1e308, 1e308");
    same(
        &target(vec![f64::MAX, f64::MAX / 3.0]),
        &target(vec![3.0, 1.0]),
        "f64::MAX, f64::MAX / 3",
    );
    // Tiny (subnormal) weights too.
    same(&target(vec![1e-320, 1e-320]), &halves, "1e-320, 1e-320");
}

#[test]
fn bad_settings_are_refused_with_a_clear_message() {
    let message = |s: TransferSettings| transfer(&s).err().expect("refused").to_string();
    let unknown = transfer(&TransferSettings {
        style_layers: vec!["relu1_1".into(), "relu9_9".into()],
        ..settings()
    })
    .err()
    .unwrap();
    assert!(
        unknown.kind() == crate::ErrorKind::UnknownLayer
            && unknown.to_string().contains("`relu9_9`"),
        "{unknown}"
    );
    // VGG16 has no relu5_4.
    assert!(message(TransferSettings {
        content_layers: vec!["relu5_4".into()],
        ..settings()
    })
    .contains("relu5_4"));
    assert!(message(TransferSettings {
        style_layer_weights: Some(vec![1.0]),
        ..settings()
    })
    .contains("1 style layer weights for 3 style layers"));
    assert!(message(TransferSettings {
        style_blend_weights: Some(vec![1.0, 1.0]),
        ..settings()
    })
    .contains("2 style blend weights for 1 style images"));
    assert!(message(TransferSettings {
        content_layers: vec!["relu1_1".into(), "relu1_1".into()],
        ..settings()
    })
    .contains("twice"));
    assert!(message(TransferSettings {
        size: 0,
        ..settings()
    })
    .contains("size"));
    assert!(message(TransferSettings {
        architecture: Architecture::Vgg19,
        ..settings()
    })
    .contains("vgg16"));
    let content = picture(40, 30, 0.0, false);
    let err = Transfer::new(weights(), &content, &[], &settings())
        .err()
        .unwrap();
    assert!(err.to_string().contains("no style image"), "{err}");
    // Too small to reach the deepest layer.
    let small = message(TransferSettings {
        size: 3,
        ..settings()
    });
    assert!(
        small.contains("working image (3×2)") && small.contains("too small"),
        "{small}"
    );
    let small = message(TransferSettings {
        style_scale: 0.05,
        ..settings()
    });
    assert!(
        small.contains("style image 1 resized to 2×2") && small.contains("too small"),
        "{small}"
    );
}

#[test]
fn sizes_beyond_memory_are_refused_before_allocating() {
    let s = TransferSettings {
        size: 400_000,
        ..settings()
    };
    let err = transfer(&s).err().expect("refused");
    assert!(err.kind() == crate::ErrorKind::Limits, "{err}");
    assert!(err.to_string().contains("needs about"), "{err}");
}

#[test]
fn an_absurd_style_scale_is_refused_naming_it() {
    // 32 px × 1e6: once an abort ("memory allocation of 30720000000000000 bytes failed") after
    // the size arithmetic had overflowed. Also through the coarse-to-fine preflight.
    for scale in [1e6, 1e300, f64::MAX] {
        let s = TransferSettings {
            style_scale: scale,
            ..settings()
        };
        let err = transfer(&s).err().expect("refused");
        assert!(err.kind() == crate::ErrorKind::Limits, "{err}");
        let text = err.to_string();
        assert!(
            text.contains("--style-scale") && text.contains("1048576 px"),
            "{text}"
        );
        assert!(!text.contains("  "), "{text}");
    }
    let s = TransferSettings {
        size: (1 << 20) + 1,
        ..settings()
    };
    assert_eq!(
        transfer(&s).err().map(|e| e.kind()),
        Some(crate::ErrorKind::Limits)
    );
}

#[test]
fn style_images_larger_than_memory_are_refused_before_resizing() {
    // A scale whose resized style image alone (12 bytes a pixel) is more than the memory there
    // is: refused from the estimate, whole or in tiles (the tiled estimate once left the style
    // images out, and the resize then ran for minutes or aborted).
    let Some(avail) = crate::memory::available_bytes() else {
        return;
    };
    let long = ((avail as f64 / 12.0).sqrt() * 1.2).min((1 << 20) as f64);
    for tiles in [TileSize::Auto, TileSize::Core(128)] {
        let s = TransferSettings {
            style_scale: long / 32.0,
            tiles,
            ..settings()
        };
        let started = std::time::Instant::now();
        let err = transfer(&s).err().expect("refused");
        assert!(err.kind() == crate::ErrorKind::Limits, "{err}");
        let text = err.to_string();
        assert!(
            text.contains("needs about") && text.contains("--style-scale"),
            "{text}"
        );
        assert!(started.elapsed().as_secs_f64() < 5.0);
    }
}

#[test]
fn style_images_count_in_the_memory_estimate_whole_and_tiled() {
    use super::engine::memory_estimate;
    use super::targets::LayerPlan;
    let s = settings();
    let plan = LayerPlan::new(&s, 1).unwrap();
    let spec = crate::backend::NetworkSpec {
        pooling: s.pooling,
        algorithm: s.algorithm,
        deepest: Architecture::Vgg16.parse_layer("relu5_1").unwrap(),
    };
    let net = crate::backend::CpuNetwork::load(weights(), &spec).unwrap();
    let tiling = crate::loss::Tiling::new(s.architecture, &plan.taps(), 16).unwrap();
    let style = (3000, 2000);
    let estimate = |styles: &[(usize, usize)], tiling| {
        (memory_estimate(&net, &plan, ((32, 24), styles), &s, tiling).unwrap()).total()
    };
    let small = estimate(&[(32, 32)], Some(&tiling));
    let large = estimate(&[style], Some(&tiling));
    let rgb = 3000 * 2000 * 3 * 4;
    assert!(large >= small + rgb, "{large} < {small} + {rgb}");
    let whole = estimate(&[style], None);
    let features = net.vgg().workspace_bytes(2000, 3000, &plan.style).unwrap() as u64;
    assert!(whole >= features + rgb, "{whole} < {features} + {rgb}");
}

#[test]
fn the_lbfgs_history_counts_in_the_memory_estimate() {
    let lbfgs = |history| {
        OptimizerSettings::Lbfgs(LbfgsConfig {
            history,
            ..LbfgsConfig::default()
        })
    };
    let n = 512 * 384 * 3;
    assert!(lbfgs(100).state_bytes(n) > 100 * 2 * n * 4);
    assert!(lbfgs(5).state_bytes(n) < lbfgs(100).state_bytes(n));
}

#[test]
fn a_diverging_run_stops_and_keeps_the_best_image() {
    let s = TransferSettings {
        optimizer: OptimizerSettings::Adam(AdamConfig {
            learning_rate: 1e30,
            ..AdamConfig::default()
        }),
        ..settings()
    };
    let mut t = transfer(&s).unwrap();
    let start = t.image();
    let summary = t.run(10, |_, _| ControlFlow::Continue(())).unwrap();
    assert_eq!(summary.stop, Stop::Diverged);
    assert!(t.records().iter().all(|r| r.parts.total.is_finite()));
    assert_eq!(t.best_image(), t.image(), "the image is reset to the best");
    assert!(t.best_image().rgb.iter().all(|v| v.is_finite()));
    if summary.best_iteration == 0 {
        assert_eq!(t.best_image(), start);
    }
}

#[test]
fn coarse_to_fine_hands_each_scale_its_predecessor_and_numbers_iterations_on() {
    let content = picture(40, 30, 0.0, true);
    let style = picture(50, 50, 2.0, false);
    let settings = TransferSettings {
        init: Init::Noise,
        ..settings()
    };
    let schedule = Schedule::geometric(32, 16, Some(3), 6, 4).unwrap();
    assert_eq!(schedule.sizes, [16, 23, 32]);
    let mut seen = Vec::new();
    let out = run_schedule(
        weights(),
        &content,
        &[style],
        &settings,
        &schedule,
        |t, r| {
            seen.push((t.scale(), t.size(), r.iteration));
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    assert_eq!(out.summary.stop, Stop::Completed);
    assert_eq!(out.summary.iterations, 14);
    assert_eq!(out.final_size, (32, 24));
    assert_eq!(out.transfer.size(), (32, 24));
    // Each scale starts with a record for its start image, repeating the last iteration number.
    let numbering: Vec<(usize, usize)> =
        out.records.iter().map(|r| (r.scale, r.iteration)).collect();
    let mut want = vec![];
    want.extend((0..=4).map(|i| (0, i)));
    want.extend((4..=8).map(|i| (1, i)));
    want.extend((8..=14).map(|i| (2, i)));
    assert_eq!(numbering, want);
    assert_eq!(seen.len(), out.records.len());
    assert_eq!(seen[5].1, (23, 17), "scale 1 works at 23 px");
    assert!(out
        .records
        .windows(2)
        .all(|w| w[1].elapsed_s >= w[0].elapsed_s));
    // The later scales start from the upsampled result, not from fresh noise: their start images
    // already carry most of the style, so their style loss starts far below scale 0's.
    let start = |scale| {
        out.records
            .iter()
            .find(|r| r.scale == scale)
            .unwrap()
            .parts
            .style
    };
    assert!(
        start(2) < start(0) / 3.0,
        "{:e} vs {:e}",
        start(2),
        start(0)
    );
    let best = out.best_image().unwrap();
    assert_eq!((best.width, best.height), (32, 24));
    assert!(best.alpha.is_some(), "the content's alpha is kept");
}

#[test]
fn a_stop_at_a_coarse_scale_gives_its_best_image_at_the_final_size() {
    let schedule = Schedule::geometric(32, 16, Some(2), 5, 5).unwrap();
    let content = picture(40, 30, 0.0, false);
    let style = picture(50, 50, 2.0, false);
    let out = run_schedule(
        weights(),
        &content,
        &[style],
        &settings(),
        &schedule,
        |_, r| {
            if r.iteration == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .unwrap();
    assert_eq!(out.summary.stop, Stop::Interrupted);
    assert_eq!((out.transfer.scale(), out.transfer.size()), (0, (16, 12)));
    let best = out.best_image().unwrap();
    assert_eq!((best.width, best.height), (32, 24));
}

#[test]
fn the_last_scale_is_checked_before_the_first_runs() {
    let schedule = Schedule {
        sizes: vec![16, 1 << 19],
        iterations: vec![1, 1],
    };
    let content = picture(40, 30, 0.0, false);
    let mut ran = false;
    let err = run_schedule(
        weights(),
        &content,
        &[picture(8, 8, 1.0, false)],
        &settings(),
        &schedule,
        |_, _| {
            ran = true;
            ControlFlow::Continue(())
        },
    )
    .err()
    .expect("too large");
    assert!(!ran, "no scale ran");
    assert!(
        matches!(
            err.kind(),
            crate::ErrorKind::Limits | crate::ErrorKind::Parameter
        ),
        "{err}"
    );
}

#[test]
fn luminance_mode_changes_luminance_and_keeps_the_content_chroma() {
    use crate::color::{rgb_to_yiq, PreserveColor};
    let settings = TransferSettings {
        preserve_color: PreserveColor::Luminance,
        ..settings()
    };
    let content = picture(32, 24, 0.0, false);
    let style = picture(50, 50, 2.0, false);
    let mut t = Transfer::new(weights(), &content, &[style], &settings).unwrap();
    t.run(10, |_, _| ControlFlow::Continue(())).unwrap();
    let (out, want) = (rgb_to_yiq(&t.best_image().rgb), rgb_to_yiq(&content.rgb));
    let mut luminance_change = 0.0f32;
    for (o, w) in out.chunks_exact(3).zip(want.chunks_exact(3)) {
        assert!(
            (o[1] - w[1]).abs() < 1e-2 && (o[2] - w[2]).abs() < 1e-2,
            "{o:?} vs {w:?}"
        );
        luminance_change = luminance_change.max((o[0] - w[0]).abs());
    }
    assert!(
        luminance_change > 5.0,
        "the style changed the luminance by {luminance_change}"
    );
    // Without the mode the same run changes the chroma too.
    let mut plain = Transfer::new(
        weights(),
        &content,
        &[picture(50, 50, 2.0, false)],
        &super::tests::settings(),
    )
    .unwrap();
    plain.run(10, |_, _| ControlFlow::Continue(())).unwrap();
    let plain_out = rgb_to_yiq(&plain.best_image().rgb);
    let chroma_change = plain_out
        .chunks_exact(3)
        .zip(want.chunks_exact(3))
        .map(|(o, w)| (o[1] - w[1]).abs().max((o[2] - w[2]).abs()))
        .fold(0.0f32, f32::max);
    assert!(
        chroma_change > 1.0,
        "plain transfer kept the chroma ({chroma_change})"
    );
}

#[test]
fn histogram_mode_gives_the_style_the_content_colour_statistics() {
    use crate::color::{color_stats, PreserveColor};
    let content = picture(32, 24, 0.0, false);
    // A style with clearly other colours: the test picture's channels swapped and darkened.
    let mut style = picture(48, 48, 2.0, false);
    for px in style.rgb.chunks_exact_mut(3) {
        px.swap(0, 2);
        px[1] *= 0.5;
    }
    let start = |mode| {
        let settings = TransferSettings {
            preserve_color: mode,
            init: Init::Style,
            size: 48,
            ..settings()
        };
        let mut t = Transfer::new(weights(), &content, &[style.clone()], &settings).unwrap();
        t.run(0, |_, _| ControlFlow::Continue(())).unwrap();
        color_stats(&t.image().rgb)
    };
    let resized = crate::image_io::resize(&content, 48, 36).unwrap();
    let want = color_stats(&resized.rgb);
    let distance = |s: crate::color::ColorStats| {
        let mut d = 0.0f64;
        for c in 0..3 {
            d = d.max((s.mean[c] - want.mean[c]).abs());
            for k in 0..3 {
                d = d.max((s.covariance[c][k] - want.covariance[c][k]).abs().sqrt());
            }
        }
        d
    };
    // The style-started image is the recoloured style: content statistics up to resampling.
    assert!(
        distance(start(PreserveColor::Histogram)) < 2.0,
        "{}",
        distance(start(PreserveColor::Histogram))
    );
    assert!(distance(start(PreserveColor::None)) > 20.0);
}

// Spatial control: masks give each style its own region.

/// Stripes of period 4 between two colours, running across (`horizontal`) or down the image.
fn stripes(width: usize, height: usize, horizontal: bool, a: [f32; 3], b: [f32; 3]) -> Image {
    let rgb = (0..width * height)
        .flat_map(|i| {
            let t = if horizontal { i / width } else { i % width };
            if t % 4 < 2 {
                a
            } else {
                b
            }
        })
        .collect();
    Image::new(width, height, rgb, None).unwrap()
}

/// White where `white(x, y)`, black elsewhere.
fn mask_image(width: usize, height: usize, white: impl Fn(usize, usize) -> bool) -> Image {
    let rgb = (0..width * height)
        .flat_map(|i| {
            [if white(i % width, i / width) {
                255.0
            } else {
                0.0
            }; 3]
        })
        .collect();
    Image::new(width, height, rgb, None).unwrap()
}

const RED: [f32; 3] = [220.0, 40.0, 30.0];
const DARK: [f32; 3] = [40.0, 20.0, 20.0];
const BLUE: [f32; 3] = [30.0, 60.0, 230.0];
const LIGHT: [f32; 3] = [220.0, 230.0, 240.0];

fn two_styles() -> [Image; 2] {
    [
        stripes(32, 32, true, RED, DARK),
        stripes(32, 32, false, BLUE, LIGHT),
    ]
}

fn masked(content: Vec<Image>, style: Vec<Option<Image>>) -> TransferSettings {
    TransferSettings {
        masks: Some(SpatialControl { content, style }),
        ..settings()
    }
}

/// The network the engine builds for `settings()`, to measure its results independently.
fn measuring_net() -> crate::model::Vgg {
    let options = crate::model::VggOptions {
        deepest: Some(Architecture::Vgg16.parse_layer("relu3_1").unwrap()),
        ..Default::default()
    };
    crate::model::Vgg::with_options(weights(), &options).unwrap()
}

fn style_layers() -> Vec<crate::model::Layer> {
    settings()
        .style_layers
        .iter()
        .map(|n| Architecture::Vgg16.parse_layer(n).unwrap())
        .collect()
}

/// `Σ_l (G − A)² / 4N²` over the style layers, the style loss's own distance.
fn gram_distance(g: &[Vec<f32>], a: &[Vec<f32>]) -> f64 {
    g.iter()
        .zip(a)
        .map(|(g, a)| {
            let sum: f64 = g.iter().zip(a).map(|(x, y)| (x - y).powi(2) as f64).sum();
            sum / (4.0 * g.len() as f64)
        })
        .sum()
}

/// For the left and the right half of `image` (32 × 24): the distance of its masked Gram
/// matrices to the style it should have (left: the first) over the distance to the other.
fn own_style_ratios(image: &Image) -> [f64; 2] {
    use crate::loss::{masked_normalized_gram, normalized_gram, SpatialMask};
    let net = measuring_net();
    let layers = style_layers();
    let grams_of = |img: &Image| -> Vec<Vec<f32>> {
        net.features_of_image(&img.rgb, img.height, img.width, &layers)
            .unwrap()
            .iter()
            .map(normalized_gram)
            .collect()
    };
    let targets = two_styles().map(|s| grams_of(&s));
    let (w, h) = (image.width, image.height);
    assert_eq!((w, h), (32, 24));
    let features = net.features_of_image(&image.rgb, h, w, &layers).unwrap();
    let left_values = (0..w * h)
        .map(|i| if i % w < w / 2 { 1.0 } else { 0.0 })
        .collect();
    let left = SpatialMask::new(h, w, left_values).unwrap();
    let halves = [left.clone(), left.complement()];
    let mut ratios = [0.0; 2];
    for (k, half) in halves.iter().enumerate() {
        let grams: Vec<Vec<f32>> = features
            .iter()
            .zip(&layers)
            .map(|(f, &l)| {
                masked_normalized_gram(f, &half.at_layer(Architecture::Vgg16, l).unwrap()).unwrap()
            })
            .collect();
        let own = gram_distance(&grams, &targets[k]);
        let other = gram_distance(&grams, &targets[1 - k]);
        ratios[k] = own / other;
    }
    ratios
}

fn run_two_regions(settings: &TransferSettings) -> Image {
    let content = picture(40, 30, 0.0, false);
    let mut t = Transfer::new(weights(), &content, &two_styles(), settings).unwrap();
    t.run(30, |_, _| ControlFlow::Continue(())).unwrap();
    t.best_image()
}

#[test]
fn each_half_takes_the_style_of_its_own_mask() {
    let left = mask_image(40, 30, |x, _| x < 20);
    let right = mask_image(40, 30, |x, _| x >= 20);
    let ratios = own_style_ratios(&run_two_regions(&masked(
        vec![left.clone(), right.clone()],
        vec![],
    )));
    eprintln!("masked: own/other distance ratios {ratios:?}");
    assert!(ratios.iter().all(|&r| r < 0.5), "{ratios:?}");

    // The same measure tells a wrong wiring apart: swapped masks give each half the other's
    // style, and ignoring the masks blends both styles everywhere.
    let swapped = own_style_ratios(&run_two_regions(&masked(vec![right, left], vec![])));
    eprintln!("swapped: {swapped:?}");
    assert!(swapped.iter().all(|&r| r > 1.0), "{swapped:?}");
    let ignored = own_style_ratios(&run_two_regions(&settings()));
    eprintln!("ignored: {ignored:?}");
    assert!(ignored.iter().any(|&r| r > 0.5), "{ignored:?}");
}

#[test]
fn one_mask_for_two_styles_is_two_complementary_masks() {
    // At the working size (32 × 24) and split on a multiple of 4, the masks stay binary at every
    // style layer, so the two regions' shares sum exactly to 1.
    let left = mask_image(32, 24, |x, _| x < 12);
    let right = mask_image(32, 24, |x, _| x >= 12);
    let content = picture(40, 30, 0.0, false);
    let build = |s: TransferSettings| Transfer::new(weights(), &content, &two_styles(), &s);
    let one = build(masked(vec![left.clone()], vec![])).unwrap();
    let two = build(masked(vec![left, right], vec![None, None])).unwrap();
    let (a, b) = (
        one.objective().style_losses(),
        two.objective().style_losses(),
    );
    assert_eq!(
        a.len(),
        2 * style_layers().len(),
        "one loss per region and layer"
    );
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.layer(), y.layer());
        assert_eq!(x.target(), y.target());
        assert_eq!(x.mask(), y.mask());
        assert_eq!(x.weight(), y.weight());
    }
    for l in style_layers() {
        let at_l: Vec<_> = a.iter().filter(|s| s.layer() == l).collect();
        let total: f64 = at_l.iter().map(|s| s.weight()).sum();
        assert!((total - 1.0 / 3.0).abs() < 1e-12, "{l}: {total}");
        // Area shares 12/32 and 20/32 of w_l = 1/3.
        assert!((at_l[0].weight() - 12.0 / 32.0 / 3.0).abs() < 1e-12, "{l}");
    }
}

#[test]
fn a_style_mask_picks_the_statistics_of_its_part_of_the_style_image() {
    use crate::loss::normalized_gram;
    // A style image whose left half is one pattern and right half another: masking its left
    // half must target the first pattern's statistics, its right half the second's.
    let [a, b] = two_styles();
    let mut both = a.clone();
    for y in 0..32 {
        for x in 16..32 {
            let i = (y * 32 + x) * 3;
            both.rgb[i..i + 3].copy_from_slice(&b.rgb[i..i + 3]);
        }
    }
    let net = measuring_net();
    let layers = style_layers();
    let pure = [&a, &b].map(|img| {
        net.features_of_image(&img.rgb, 32, 32, &layers)
            .unwrap()
            .iter()
            .map(normalized_gram)
            .collect::<Vec<_>>()
    });
    let content = picture(40, 30, 0.0, false);
    let everywhere = mask_image(32, 24, |_, _| true);
    for (k, part) in [
        mask_image(32, 32, |x, _| x < 16),
        mask_image(32, 32, |x, _| x >= 16),
    ]
    .into_iter()
    .enumerate()
    {
        let s = masked(vec![everywhere.clone()], vec![Some(part)]);
        let t = Transfer::new(weights(), &content, std::slice::from_ref(&both), &s).unwrap();
        let targets: Vec<Vec<f32>> = t
            .objective()
            .style_losses()
            .iter()
            .map(|l| l.target().to_vec())
            .collect();
        let (own, other) = (
            gram_distance(&targets, &pure[k]),
            gram_distance(&targets, &pure[1 - k]),
        );
        assert!(own < 0.2 * other, "part {k}: {own:e} vs {other:e}");
    }
}

#[test]
fn masks_are_checked_against_the_styles() {
    let content = picture(40, 30, 0.0, false);
    let white = mask_image(8, 6, |_, _| true);
    let black = mask_image(8, 6, |_, _| false);
    let left = mask_image(8, 6, |x, _| x < 4);
    let message = |styles: &[Image], s: TransferSettings| {
        Transfer::new(weights(), &content, styles, &s)
            .err()
            .expect("refused")
            .to_string()
    };
    let [a, b] = two_styles();
    let one = std::slice::from_ref(&a);
    let two = [a.clone(), b.clone()];
    let three = [a.clone(), b, a.clone()];

    let m = message(one, masked(vec![left.clone(), left.clone()], vec![]));
    assert!(m.contains("2 content masks for 1 style images"), "{m}");
    let m = message(&three, masked(vec![left.clone()], vec![]));
    assert!(m.contains("1 content masks for 3 style images"), "{m}");
    let m = message(one, masked(vec![left.clone()], vec![None, None]));
    assert!(m.contains("2 style masks for 1 style images"), "{m}");
    let m = message(&two, masked(vec![left.clone(), black.clone()], vec![]));
    assert!(m.contains("content mask 2 is entirely black"), "{m}");
    let m = message(&two, masked(vec![white.clone()], vec![]));
    assert!(
        m.contains("content mask 1 is entirely white") && m.contains("style image 2"),
        "{m}"
    );
    let m = message(one, masked(vec![left.clone()], vec![Some(black)]));
    assert!(m.contains("style mask 1 is entirely black"), "{m}");
    let m = message(
        &two,
        TransferSettings {
            style_blend_weights: Some(vec![1.0, 1.0]),
            ..masked(vec![left.clone()], vec![])
        },
    );
    assert!(m.contains("blend weights do not apply with masks"), "{m}");
    let m = message(
        one,
        TransferSettings {
            style_layers: vec![],
            ..masked(vec![left.clone()], vec![])
        },
    );
    assert!(m.contains("no style layers"), "{m}");
    // A grey mask is a soft region, not an empty one.
    let grey = Image::new(8, 6, vec![100.0; 8 * 6 * 3], None).unwrap();
    assert!(Transfer::new(weights(), &content, one, &masked(vec![grey], vec![])).is_ok());
}

#[test]
fn masks_count_in_the_memory_estimate() {
    use super::targets::LayerPlan;
    let arch = Architecture::Vgg16;
    let plain = LayerPlan::new(&settings(), 2).unwrap();
    assert_eq!(plain.mask_bytes(arch, (32, 24), &[(32, 32)]), 0);
    let s = masked(vec![mask_image(8, 6, |x, _| x < 4)], vec![]);
    let plan = LayerPlan::new(&s, 2).unwrap();
    // Two regions' masks at relu1_1, relu2_1 and relu3_1, and a masked copy of the largest
    // style-layer features: relu1_1's 64 channels of the 32 × 32 style image, with its border.
    let masks = 2 * (32 * 24 + 16 * 12 + 8 * 6);
    let copy = 34 * 34 * 64;
    assert_eq!(
        plan.mask_bytes(arch, (32, 24), &[(32, 32), (20, 32)]),
        4 * (masks + copy) as u64
    );
}

#[test]
fn luminance_mode_keeps_the_photo_chroma_through_scales_and_early_stops() {
    use crate::color::{rgb_to_yiq, PreserveColor};
    let content = picture(40, 30, 0.0, false);
    let settings = TransferSettings {
        preserve_color: PreserveColor::Luminance,
        ..settings()
    };
    let schedule = Schedule::geometric(32, 16, Some(2), 4, 4).unwrap();
    let want = rgb_to_yiq(&crate::image_io::resize(&content, 32, 24).unwrap().rgb);
    for stop_at in [2, usize::MAX] {
        let out = run_schedule(
            weights(),
            &content,
            &[picture(50, 50, 2.0, false)],
            &settings,
            &schedule,
            |_, r| {
                if r.iteration == stop_at {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
        .unwrap();
        let got = rgb_to_yiq(&out.best_image().unwrap().rgb);
        for (g, w) in got.chunks_exact(3).zip(want.chunks_exact(3)) {
            let off = (g[1] - w[1]).abs().max((g[2] - w[2]).abs());
            assert!(off < 1e-2, "stop at {stop_at}: chroma {g:?} vs {w:?}");
        }
    }
}

#[test]
fn a_tiled_transfer_follows_the_whole_image_one() {
    let whole = settings();
    let tiled = TransferSettings {
        tiles: TileSize::Core(16),
        ..settings()
    };
    let run = |s: &TransferSettings| {
        let mut t = transfer(s).unwrap();
        t.run(10, |_, _| ControlFlow::Continue(())).unwrap();
        t.records().to_vec()
    };
    let (a, b) = (run(&whole), run(&tiled));
    let rel = |x: f64, y: f64| (x - y).abs() / y.abs();
    assert!(rel(b[0].parts.total, a[0].parts.total) < 1e-5, "start");
    assert!(
        rel(b[0].parts.style, a[0].parts.style) < 1e-5,
        "start style"
    );
    assert!(
        b[10].parts.total < b[0].parts.total / 2.0,
        "the tiled run lowers the loss"
    );
    assert!(
        rel(b[10].parts.total, a[10].parts.total) < 0.02,
        "after 10 iterations: tiled {:e}, whole {:e}",
        b[10].parts.total,
        a[10].parts.total
    );
}

/// The CPU backend, counting the networks it builds.
#[derive(Debug, Default)]
struct CountingBackend(std::sync::atomic::AtomicUsize);

impl crate::backend::Backend for CountingBackend {
    fn info(&self) -> crate::backend::BackendInfo {
        crate::backend::CpuBackend.info()
    }
    fn load(
        &self,
        weights: &VggWeights,
        spec: &crate::backend::NetworkSpec,
    ) -> crate::Result<std::sync::Arc<dyn crate::backend::Network>> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        crate::backend::CpuBackend.load(weights, spec)
    }
}

#[test]
fn a_coarse_to_fine_run_builds_the_network_once_for_every_scale_and_the_preflight() {
    let counting = std::sync::Arc::new(CountingBackend::default());
    let s = TransferSettings {
        backend: counting.clone(),
        ..settings()
    };
    let schedule = Schedule {
        sizes: vec![16, 24, 32],
        iterations: vec![1, 1, 2],
    };
    let content = picture(40, 30, 0.0, false);
    let style = picture(50, 50, 2.0, false);
    let out = run_schedule(weights(), &content, &[style], &s, &schedule, |_, _| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(
        out.transfer.size(),
        (32, 24),
        "the run reached the last scale"
    );
    assert_eq!(
        counting.0.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "kernels built more than once"
    );
}

#[test]
fn a_transfer_runs_on_the_backend_its_settings_name() {
    let counting = std::sync::Arc::new(CountingBackend::default());
    let s = TransferSettings {
        backend: counting.clone(),
        ..settings()
    };
    let mut t = transfer(&s).unwrap();
    t.run(2, |_, _| ControlFlow::Continue(())).unwrap();
    assert_eq!(counting.0.load(std::sync::atomic::Ordering::SeqCst), 1);
}
