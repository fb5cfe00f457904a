//! Each GPU kernel against the CPU library's own function on small random inputs whose sizes
//! cross the kernels' tile edges (64 pixels, 64 channels, 16-deep K steps, split-K chunks).

mod common;

use common::{assert_close, from_nhwc, gpu, nhwc, Rng};
use impasto::core::{gram, gram_gradient, pool_backward, pool_forward, Conv3x3, Pooling, ReluMask};
use impasto::loss::{ContentLoss, SpatialMask, StyleLoss};
use impasto::model::{InputConvention, Layer};
use impasto_gpu::kernels::{GpuConv, Kernels, PARTIALS_PER_SLOT};

/// f32 sums in another order: relative to the largest value.
const TOL: f32 = 2e-5;

#[test]
fn conv_forward_matches_the_cpu_with_and_without_relu() {
    let (g, k) = gpu();
    let mut rng = Rng::new(1);
    for &(h, w, cin, cout) in &[(9, 11, 5, 70), (7, 3, 3, 8), (1, 1, 2, 1), (12, 6, 17, 64)] {
        let weight = rng.vec(cout * cin * 9, 0.5);
        let bias = rng.vec(cout, 0.5);
        let cpu = Conv3x3::<f32>::new(cin, cout, &weight, &bias);
        let x = rng.map(h, w, cin);
        let conv = GpuConv::new(g, cin, cout, &weight, &bias);
        let input = g.upload(&nhwc(&x), "x");
        let out = g.zeros(h * w * cout, "out");
        for relu in [false, true] {
            let mut want = impasto::core::FeatureMap::zeros(h, w, cout);
            cpu.forward(&x, &mut want, relu, None);
            g.run(&[k.conv_forward(&conv, &input, &out, (h, w), relu)]);
            let got = g.read(&out).unwrap();
            assert_close(
                &format!("conv {h}x{w} {cin}->{cout} relu {relu}"),
                &got,
                &nhwc(&want),
                TOL,
            );
        }
    }
}

#[test]
fn conv_input_gradient_matches_the_cpu_with_mask_and_accumulation() {
    let (g, k) = gpu();
    let mut rng = Rng::new(2);
    for &(h, w, cin, cout) in &[(9, 11, 70, 5), (5, 4, 3, 16), (8, 8, 64, 65)] {
        let weight = rng.vec(cout * cin * 9, 0.5);
        let bias = rng.vec(cout, 0.5);
        let cpu = Conv3x3::<f32>::new(cin, cout, &weight, &bias);
        let conv = GpuConv::new(g, cin, cout, &weight, &bias);
        let grad_out = rng.map(h, w, cout);
        let act = rng.map(h, w, cin);
        let before = rng.map(h, w, cin);
        let go = g.upload(&nhwc(&grad_out), "grad out");
        let mask_act = g.upload(&nhwc(&act), "act");
        for (accumulate, masked) in [(false, false), (true, false), (false, true), (true, true)] {
            let mask = ReluMask::of(&act);
            let mut want = before.clone();
            cpu.backward_input(&grad_out, &mut want, accumulate, masked.then_some(&mask));
            let gi = g.upload(&nhwc(&before), "grad in");
            let m = masked.then_some(&mask_act);
            g.run(&[k.conv_backward(&conv, &go, &gi, (h, w), accumulate, m)]);
            assert_close(
                &format!("conv backward {h}x{w} {cin}<-{cout} acc {accumulate} mask {masked}"),
                &g.read(&gi).unwrap(),
                &nhwc(&want),
                TOL,
            );
        }
    }
}

#[test]
fn pooling_both_ways_matches_the_cpu_in_floor_mode() {
    let (g, k) = gpu();
    let mut rng = Rng::new(3);
    for kind in [Pooling::Avg, Pooling::Max] {
        for &(h, w, c) in &[(7, 9, 3), (2, 2, 1), (8, 5, 64), (3, 3, 2)] {
            let x = rng.map(h, w, c);
            let mut want = impasto::core::FeatureMap::zeros(h / 2, w / 2, c);
            pool_forward(kind, &x, &mut want);
            let input = g.upload(&nhwc(&x), "x");
            let out = g.zeros((h / 2) * (w / 2) * c, "out");
            g.run(&[k.pool_forward(kind, &input, &out, (h, w, c))]);
            assert_close(
                &format!("{kind} pool {h}x{w}x{c}"),
                &g.read(&out).unwrap(),
                &nhwc(&want),
                0.0,
            );

            let grad_out = rng.map(h / 2, w / 2, c);
            let act = rng.map(h, w, c);
            let before = rng.map(h, w, c);
            let go = g.upload(&nhwc(&grad_out), "grad out");
            let mask_act = g.upload(&nhwc(&act), "act");
            for (accumulate, masked) in [(false, false), (true, true)] {
                let mask = ReluMask::of(&act);
                let mut want = before.clone();
                pool_backward(
                    kind,
                    Some(&x),
                    &grad_out,
                    &mut want,
                    accumulate,
                    masked.then_some(&mask),
                );
                let gi = g.upload(&nhwc(&before), "grad in");
                let m = masked.then_some(&mask_act);
                g.run(&[k.pool_backward(kind, &input, &go, &gi, (h, w, c), accumulate, m)]);
                assert_close(
                    &format!("{kind} pool backward {h}x{w}x{c} acc {accumulate}"),
                    &g.read(&gi).unwrap(),
                    &nhwc(&want),
                    0.0,
                );
            }
        }
    }
}

/// The Gram matrix through the GPU's split-K partials and finishing pass (target 0, mass 1).
fn gpu_gram(f: &impasto::core::FeatureMap<f32>, weight: Option<&[f32]>) -> Vec<f32> {
    let (g, k) = gpu();
    let (pixels, c) = (f.pixels(), f.channels());
    let splits = Kernels::gram_splits(pixels, c);
    let fb = g.upload(&nhwc(f), "f");
    let wb = weight.map(|w| g.upload(w, "weight"));
    let partial = g.zeros(splits * c * c, "partial");
    let zero = g.zeros(c * c, "target");
    let diff = g.zeros(c * c, "diff");
    g.run(&[
        k.gram(&fb, wb.as_ref(), &partial, (pixels, c)),
        k.style_finish(&partial, &zero, &diff, (c, splits), 1.0),
    ]);
    g.read(&diff).unwrap()
}

#[test]
fn gram_and_its_gradient_match_the_cpu_across_split_k_chunks() {
    let (g, k) = gpu();
    let mut rng = Rng::new(4);
    for &(h, w, c) in &[(23, 17, 5), (50, 41, 70), (3, 2, 64)] {
        let f = rng.map(h, w, c);
        let mut want = vec![0.0; c * c];
        gram(&f, &mut want);
        assert_close(
            &format!("gram {h}x{w}x{c}"),
            &gpu_gram(&f, None),
            &want,
            TOL,
        );

        let d = rng.vec(c * c, 1.0);
        let before = rng.map(h, w, c);
        let mut want = before.clone();
        gram_gradient(&f, &d, 0.5, &mut want);
        let (fb, db) = (g.upload(&nhwc(&f), "f"), g.upload(&d, "d"));
        let grad = g.upload(&nhwc(&before), "grad");
        g.run(&[k.gram_gradient(&fb, &db, None, &grad, (h * w, c), 0.5)]);
        assert_close(
            &format!("gram gradient {h}x{w}x{c}"),
            &g.read(&grad).unwrap(),
            &nhwc(&want),
            TOL,
        );
    }
}

fn relu1_1() -> Layer {
    Layer::Relu { block: 1, index: 1 }
}

/// A style loss's value and gradient on the GPU, as the evaluator chains the kernels.
fn gpu_style(
    loss: &StyleLoss<f32>,
    f: &impasto::core::FeatureMap<f32>,
    mask: Option<&SpatialMask>,
) -> (f64, Vec<f32>) {
    let (g, k) = gpu();
    let (pixels, c) = (f.pixels(), f.channels());
    let splits = Kernels::gram_splits(pixels, c);
    let mass = mask.map_or(pixels as f64, |m| m.mass());
    let fb = g.upload(&nhwc(f), "f");
    let wb = mask.map(|m| g.upload(&m.values, "mask"));
    let partial = g.zeros(splits * c * c, "partial");
    let target = g.upload(loss.target(), "target");
    let diff = g.zeros(c * c, "diff");
    let sums = g.zeros(PARTIALS_PER_SLOT, "sums");
    let grad = g.zeros(pixels * c, "grad");
    let scale = 1.0 / ((c * c) as f64 * mass);
    g.run(&[
        k.gram(&fb, wb.as_ref(), &partial, (pixels, c)),
        k.style_finish(&partial, &target, &diff, (c, splits), (1.0 / mass) as f32),
        k.squared_distance(&diff, None, &sums, c * c, 0),
        k.gram_gradient(&fb, &diff, wb.as_ref(), &grad, (pixels, c), scale as f32),
    ]);
    let sum: f64 = g.read(&sums).unwrap().iter().map(|&v| v as f64).sum();
    (sum / (4.0 * (c * c) as f64), g.read(&grad).unwrap())
}

#[test]
fn style_loss_and_gradient_match_the_cpu_plain_and_masked() {
    let mut rng = Rng::new(5);
    let (h, w, c) = (19, 13, 70);
    let f = rng.map(h, w, c);
    let style = rng.map(11, 17, c);
    let plain = StyleLoss::new(relu1_1(), &style, 1.0);
    let values: Vec<f32> = (0..h * w).map(|i| ((i * 7) % 11) as f32 / 10.0).collect();
    let mask = SpatialMask::new(h, w, values).unwrap();
    for m in [None, Some(&mask)] {
        let mut cpu = match m {
            None => plain.clone(),
            Some(m) => plain.clone().with_mask(m.clone()),
        };
        let want = cpu.evaluate(&f);
        let mut want_grad = impasto::core::FeatureMap::zeros(h, w, c);
        cpu.add_gradient(&f, &mut want_grad, 1.0);
        let (got, got_grad) = gpu_style(&plain, &f, m);
        assert!(
            (got - want).abs() <= 1e-5 * want,
            "style loss (mask {}): {got} on the GPU, {want} on the CPU",
            m.is_some()
        );
        assert_close("style gradient", &got_grad, &nhwc(&want_grad), 1e-4);
    }
}

#[test]
fn content_loss_and_gradient_match_the_cpu() {
    let (g, k) = gpu();
    let mut rng = Rng::new(6);
    let (h, w, c) = (31, 29, 67);
    let (f, target) = (rng.map(h, w, c), rng.map(h, w, c));
    let cpu = ContentLoss::new(relu1_1(), target.clone(), 1.0);
    let want = cpu.value(&f);
    let before = rng.map(h, w, c);
    let mut want_grad = before.clone();
    cpu.add_gradient(&f, &mut want_grad, 0.75);
    let n = h * w * c;
    let (fb, tb) = (g.upload(&nhwc(&f), "f"), g.upload(&nhwc(&target), "t"));
    let sums = g.zeros(2 * PARTIALS_PER_SLOT, "sums");
    let grad = g.upload(&nhwc(&before), "grad");
    g.run(&[
        k.squared_distance(&fb, Some(&tb), &sums, n, 1),
        k.content_gradient(&fb, &tb, &grad, n, 0.75),
    ]);
    let sums = g.read(&sums).unwrap();
    assert!(
        sums[..PARTIALS_PER_SLOT].iter().all(|&v| v == 0.0),
        "slot 0 untouched"
    );
    let got = 0.5 * sums.iter().map(|&v| v as f64).sum::<f64>();
    assert!((got - want).abs() <= 1e-5 * want, "content {got} vs {want}");
    assert_close(
        "content gradient",
        &g.read(&grad).unwrap(),
        &nhwc(&want_grad),
        TOL,
    );
}

#[test]
fn input_convention_both_ways_matches_the_cpu() {
    let (g, k) = gpu();
    let mut rng = Rng::new(7);
    let (h, w) = (13, 21);
    let rgb: Vec<f32> = rng
        .vec(h * w * 3, 127.5)
        .iter()
        .map(|v| v + 127.5)
        .collect();
    let grad_net = rng.map(h, w, 3);
    for convention in [InputConvention::CaffeBgr, InputConvention::TorchvisionRgb] {
        let mut want = impasto::core::FeatureMap::zeros(h, w, 3);
        convention.to_network(&rgb, &mut want);
        let (src, dst) = (g.upload(&rgb, "rgb"), g.zeros(h * w * 3, "net"));
        g.run(&[k.convention(convention, &src, &dst, h * w, false)]);
        assert_close(
            &format!("{convention} forward"),
            &g.read(&dst).unwrap(),
            &nhwc(&want),
            1e-6,
        );
        let mut want = vec![0.0; h * w * 3];
        convention.gradient_to_rgb(&grad_net, &mut want);
        let gn = g.upload(&nhwc(&grad_net), "grad net");
        let out = g.upload(&rng.vec(h * w * 3, 9.0), "grad rgb");
        g.run(&[k.convention(convention, &gn, &out, h * w, true)]);
        assert_close(
            &format!("{convention} backward"),
            &g.read(&out).unwrap(),
            &want,
            1e-6,
        );
    }
    let _ = from_nhwc;
}
