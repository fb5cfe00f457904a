//! The flow, warping and consistency check on synthetic motion whose answer is known.

use super::*;
use crate::image_io::Image;

/// A smooth texture defined everywhere (sums of sinusoids in several directions), so a frame
/// shifted by any sub-pixel amount is known exactly.
fn texture(x: f32, y: f32) -> [f32; 3] {
    const WAVES: [(f32, f32, f32, f32); 6] = [
        (0.071, 0.013, 0.0, 30.0),
        (-0.021, 0.083, 1.3, 25.0),
        (0.047, 0.051, 2.1, 20.0),
        (0.113, -0.061, 0.4, 12.0),
        (-0.091, -0.107, 2.9, 10.0),
        (0.017, -0.029, 0.7, 25.0),
    ];
    let tau = std::f32::consts::TAU;
    let mut v = [128.0f32; 3];
    for (k, &(fx, fy, phase, amp)) in WAVES.iter().enumerate() {
        let s = amp * (tau * (fx * x + fy * y) + phase).sin();
        v[k % 3] += s;
        v[(k + 1) % 3] += 0.5 * s;
    }
    v
}

/// The texture seen through a `w × h` window whose content has moved by `(dx, dy)`.
fn frame(w: usize, h: usize, dx: f32, dy: f32) -> Image {
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            rgb.extend(texture(x as f32 - dx, y as f32 - dy));
        }
    }
    Image::new(w, h, rgb, None).unwrap()
}

/// Mean and largest endpoint error against a constant flow, over pixels at least `margin`
/// from the border.
fn endpoint_error(flow: &Flow, u: f32, v: f32, margin: usize) -> (f32, f32) {
    let (mut sum, mut max, mut n) = (0.0f32, 0.0f32, 0);
    for y in margin..flow.height - margin {
        for x in margin..flow.width - margin {
            let i = y * flow.width + x;
            let e = ((flow.u[i] - u).powi(2) + (flow.v[i] - v).powi(2)).sqrt();
            sum += e;
            max = max.max(e);
            n += 1;
        }
    }
    (sum / n as f32, max)
}

fn check_shift(dx: f32, dy: f32, mean_bound: f32, max_bound: f32) {
    let (w, h) = (96, 72);
    let a = frame(w, h, 0.0, 0.0);
    let b = frame(w, h, dx, dy);
    let flow = HornSchunck::default().flow(&a, &b).unwrap();
    let margin = 4 + dx.abs().max(dy.abs()).ceil() as usize;
    let (mean, max) = endpoint_error(&flow, dx, dy, margin);
    eprintln!("shift ({dx}, {dy}): mean endpoint error {mean:.4}, max {max:.4}");
    assert!(
        mean < mean_bound && max < max_bound,
        "shift ({dx}, {dy}): mean endpoint error {mean}, max {max}"
    );
}

#[test]
fn flow_finds_an_integer_shift() {
    check_shift(3.0, -2.0, 0.05, 0.3);
}

#[test]
fn flow_finds_a_sub_pixel_shift() {
    check_shift(0.4, 0.7, 0.03, 0.2);
}

#[test]
fn flow_finds_a_large_shift_through_the_pyramid() {
    check_shift(-9.0, 6.5, 0.1, 0.5);
}

#[test]
fn flow_of_identical_frames_is_zero() {
    let a = frame(40, 30, 0.0, 0.0);
    let flow = HornSchunck::default().flow(&a, &a).unwrap();
    let (mean, max) = endpoint_error(&flow, 0.0, 0.0, 0);
    assert!(mean < 1e-4 && max < 1e-3, "{mean} {max}");
}

#[test]
fn flow_refuses_frames_of_different_sizes() {
    let err = HornSchunck::default()
        .flow(&frame(40, 30, 0.0, 0.0), &frame(30, 40, 0.0, 0.0))
        .unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::Parameter);
    assert!(err.to_string().contains("40×30 and 30×40"), "{err}");
}

#[test]
fn warping_by_a_constant_flow_shifts_the_image() {
    let img = frame(20, 10, 0.0, 0.0);
    // out(p) = img(p + (2, 1)): out at (x, y) is img at (x + 2, y + 1).
    let out = warp(&img, &Flow::constant(20, 10, 2.0, 1.0)).unwrap();
    for c in 0..3 {
        assert_eq!(out.rgb[(3 * 20 + 4) * 3 + c], img.rgb[(4 * 20 + 6) * 3 + c]);
    }
    // Half a pixel: the mean of the two neighbours.
    let out = warp(&img, &Flow::constant(20, 10, 0.5, 0.0)).unwrap();
    let mean = 0.5 * (img.rgb[(2 * 20 + 5) * 3] + img.rgb[(2 * 20 + 6) * 3]);
    assert!((out.rgb[(2 * 20 + 5) * 3] - mean).abs() < 1e-4);
    // Outside the image: the border's value.
    let out = warp(&img, &Flow::constant(20, 10, -5.0, 0.0)).unwrap();
    assert_eq!(out.rgb[(2 * 20) * 3], img.rgb[(2 * 20) * 3]);
    assert!(warp(&img, &Flow::zero(10, 20)).is_err());
}

#[test]
fn warping_the_next_frame_by_the_estimated_flow_gives_the_first() {
    let (w, h) = (80, 60);
    let a = frame(w, h, 0.0, 0.0);
    let b = frame(w, h, 2.3, -1.6);
    let flow = HornSchunck::default().flow(&a, &b).unwrap();
    let back = warp(&b, &flow).unwrap();
    let (mut diff, mut n) = (0.0, 0);
    for y in 6..h - 6 {
        for x in 6..w - 6 {
            for c in 0..3 {
                let i = (y * w + x) * 3 + c;
                diff += (back.rgb[i] - a.rgb[i]).abs();
                n += 1;
            }
        }
    }
    let mean = diff / n as f32;
    let unwarped: f32 = b
        .rgb
        .iter()
        .zip(&a.rgb)
        .map(|(x, y)| (x - y).abs())
        .sum::<f32>()
        / b.rgb.len() as f32;
    // What is left is bilinear interpolation's own error on the texture's finest waves.
    assert!(mean < 1.0, "mean absolute difference {mean} (of 0–255)");
    assert!(unwarped > 10.0 * mean, "{unwarped} without warping");
}

/// Content moving right by 4 px: the 4 columns that enter at the left edge have nothing in the
/// previous frame and must be marked unreliable; everything else is reliable.
#[test]
fn pixels_entering_at_a_border_are_unreliable() {
    let (w, h) = (64, 48);
    // Exact flows: the known answer for the check itself.
    let forward = Flow::constant(w, h, 4.0, 0.0);
    let backward = Flow::constant(w, h, -4.0, 0.0);
    let c = reliability(&forward, &backward).unwrap();
    for y in 0..h {
        for x in 0..w {
            assert_eq!(c[y * w + x], if x < 4 { 0.0 } else { 1.0 }, "({x}, {y})");
        }
    }
    // Estimated flows: the same mask, give or take a column at the edge.
    let prev = frame(w, h, 0.0, 0.0);
    let cur = frame(w, h, 4.0, 0.0);
    let method = HornSchunck::default();
    let forward = method.flow(&prev, &cur).unwrap();
    let backward = method.flow(&cur, &prev).unwrap();
    let c = reliability(&forward, &backward).unwrap();
    for y in 0..h {
        for x in 0..w {
            let got = c[y * w + x];
            if x < 3 {
                assert_eq!(got, 0.0, "({x}, {y}) entered the frame");
            } else if x > 5 && y > 2 && y < h - 3 && x < w - 3 {
                assert_eq!(got, 1.0, "({x}, {y}) is seen in both frames");
            }
        }
    }
}

/// A square moving right by 6 px over a still background: the background it uncovers, and its
/// edges (motion boundaries), are unreliable; the rest is not.
#[test]
fn disocclusions_and_motion_boundaries_are_unreliable() {
    let (w, h) = (48, 40);
    let (left, top, side, step) = (10usize, 12usize, 14usize, 6.0f32);
    let mut forward = Flow::zero(w, h);
    let mut backward = Flow::zero(w, h);
    for y in top..top + side {
        for x in left..left + side {
            // In the previous frame the square covers [left, left + side).
            forward.u[y * w + x] = step;
            // In the current frame it covers [left + step, left + step + side).
            backward.u[y * w + x + step as usize] = -step;
        }
    }
    let c = reliability(&forward, &backward).unwrap();
    let at = |x: usize, y: usize| c[y * w + x];
    let mid = top + side / 2;
    // Uncovered background, behind the square.
    for x in left..left + step as usize {
        assert_eq!(at(x, mid), 0.0, "disoccluded ({x}, {mid})");
    }
    // The square's own inside and far background: reliable.
    assert_eq!(at(left + 12, mid), 1.0);
    assert_eq!(at(40, 4), 1.0);
    assert_eq!(at(2, mid), 1.0);
    // The square's trailing and leading edges in the current frame: motion boundaries.
    let trailing = left + step as usize;
    assert_eq!(at(trailing, mid), 0.0);
    assert_eq!(at(left + step as usize + side - 1, mid), 0.0);
    assert_eq!(at(left + step as usize + side, mid), 0.0);
    assert!(reliability(&forward, &Flow::zero(w, h + 1)).is_err());
}

mod transfer {
    //! The temporal loss inside a transfer, and whole clips stylised with and without it.

    use std::ops::ControlFlow;

    use super::frame;
    use crate::image_io::Image;
    use crate::model::Architecture;
    use crate::transfer::{Transfer, TransferSettings};
    use crate::video::*;
    use crate::weights::VggWeights;

    fn settings(size: usize) -> TransferSettings {
        TransferSettings {
            size,
            architecture: Architecture::Vgg16,
            style_layers: vec!["relu1_1".into(), "relu2_1".into()],
            content_layers: vec!["relu2_1".into()],
            ..TransferSettings::default()
        }
    }

    fn painting() -> Image {
        // Stripes and blocks: a style quite unlike the content's smooth waves.
        let (w, h) = (40, 40);
        let rgb = (0..w * h)
            .flat_map(|p| {
                let (x, y) = (p % w, p / w);
                let v = if (x / 3 + y / 5) % 2 == 0 {
                    230.0
                } else {
                    20.0
                };
                [v, 255.0 - v, ((x * 7 + y * 13) % 255) as f32]
            })
            .collect();
        Image::new(w, h, rgb, None).unwrap()
    }

    #[test]
    fn the_pixel_term_joins_the_records_total_and_its_gradient_pulls_towards_the_target() {
        let weights = VggWeights::random(Architecture::Vgg16, 1);
        let content = frame(32, 24, 0.0, 0.0);
        let styles = [painting()];
        let target = frame(32, 24, 3.0, 1.0);
        let plain = Transfer::new(&weights, &content, &styles, &settings(32))
            .unwrap()
            .start()
            .unwrap();
        let mut t = Transfer::new(&weights, &content, &styles, &settings(32)).unwrap();
        let term = TemporalLoss::new(&target, vec![1.0; 32 * 24], 1e9).unwrap();
        let mut scratch = vec![0.0; content.rgb.len()];
        let expected = crate::transfer::PixelTerm::evaluate(&term, &content.rgb, &mut scratch);
        t.add_pixel_term(Box::new(term)).unwrap();
        let first = t.start().unwrap();
        let rel = (first.parts.total - plain.parts.total - expected).abs() / first.parts.total;
        assert!(
            rel < 1e-9,
            "{} vs {} + {expected}",
            first.parts.total,
            plain.parts.total
        );
        // Too late once evaluated: record 0 would describe another objective.
        let again = TemporalLoss::new(&target, vec![1.0; 32 * 24], 1.0).unwrap();
        assert!(t.add_pixel_term(Box::new(again)).is_err());
        // So heavy a term drags the image onto the target.
        t.run(20, |_, _| ControlFlow::Continue(())).unwrap();
        let distance = |a: &[f32]| {
            a.iter()
                .zip(&target.rgb)
                .map(|(x, y)| (x - y).abs())
                .sum::<f32>()
                / a.len() as f32
        };
        let before = distance(&content.rgb);
        let after = distance(&t.best_image().rgb);
        assert!(after < 0.2 * before, "{before} → {after}");
    }

    /// A camera pan over the texture: `n` frames, each `step` px further.
    fn pan(n: usize, step: f32) -> Vec<Image> {
        (0..n)
            .map(|t| frame(48, 32, -step * t as f32, 0.3 * t as f32))
            .collect()
    }

    fn stylise(frames: &[Image], video: VideoSettings) -> Vec<Image> {
        let weights = VggWeights::random(Architecture::Vgg16, 3);
        let styles = [painting()];
        let flow = HornSchunck::default();
        let mut s = FrameStylizer::new(&weights, &styles, settings(48), video, &flow);
        frames
            .iter()
            .map(|f| s.next(f, |_, _| ControlFlow::Continue(())).unwrap().image)
            .collect()
    }

    /// End to end: the same clip stylised frame by frame and with Ruder et al.'s warm start and
    /// temporal loss; the second must flicker much less by Ruder et al.'s own measure.
    #[test]
    fn the_temporal_loss_reduces_flicker_on_a_panning_clip() {
        let frames = pan(5, 1.5);
        let per_frame = stylise(&frames, VideoSettings::per_frame(20));
        let video = VideoSettings {
            temporal_weight: 1e6,
            ..VideoSettings::with_iterations(20)
        };
        let temporal = stylise(&frames, video);
        let flow = HornSchunck::default();
        let baseline = flicker(&frames, &per_frame, &flow).unwrap();
        let held = flicker(&frames, &temporal, &flow).unwrap();
        eprintln!("flicker per frame {baseline:.2}, with the temporal loss {held:.2}");
        assert!(
            baseline > 1.0,
            "the per-frame run should flicker: {baseline}"
        );
        assert!(held < 0.5 * baseline, "{held} vs {baseline}");
    }
}
