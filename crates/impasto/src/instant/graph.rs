//! The three ONNX networks under tract's executor, for the tests: the native runner is checked
//! against it (tract in turn matches onnxruntime, see `tests/instant_golden.rs`). Parsing once,
//! planning per input size, running on plain `f32` buffers.
//!
//! The arbitrary transform declares a 384×384 input, but nothing in it depends on that size:
//! re-declaring the input fact (here, per call, with the padded working size) makes tract
//! re-infer every shape, so it runs at any size that is a multiple of 4. A plan is compiled for
//! one size and kept until a different size is asked for.

use std::path::Path;
use std::sync::{Arc, Mutex};

use tract_onnx::prelude::tract_linalg::multithread::{multithread_tract_scope, Executor};
use tract_onnx::prelude::*;

use crate::{Error, Result};

type Plan = Arc<TypedRunnableModel>;

/// A parsed ONNX graph whose first input's shape is set per call.
pub(crate) struct Graph {
    /// Parsed but not analysed: cheap to clone and re-declare.
    model: InferenceModel,
    /// The plan of the last shape run, reused while the shape stays the same.
    plan: Mutex<Option<(Vec<usize>, Plan)>>,
    /// For error messages.
    name: String,
}

fn tract_error(name: &str, what: &str, e: impl std::fmt::Display) -> Error {
    // `{:#}`-style chains from anyhow: tract's context says which node failed.
    Error::weights(name, format!("{what}: {e}"))
}

impl Graph {
    /// Parses an ONNX file; no shape analysis yet (that needs the input size).
    pub(crate) fn load(path: &Path) -> Result<Graph> {
        let name = path.display().to_string();
        let model = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(|e| tract_error(&name, "not a usable ONNX graph", format!("{e:#}")))?;
        Ok(Graph {
            model,
            plan: Mutex::new(None),
            name,
        })
    }

    /// Compiles the plan for these input shapes (every input's fact is declared, so tract can
    /// analyse the graph without reading the file's fixed sizes).
    fn plan_for(&self, shapes: &[Vec<usize>]) -> Result<Plan> {
        let key: Vec<usize> = shapes.concat();
        let mut cached = self.plan.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((k, plan)) = cached.as_ref() {
            if *k == key {
                return Ok(plan.clone());
            }
        }
        let mut model = self.model.clone();
        for (i, shape) in shapes.iter().enumerate() {
            model = model
                .with_input_fact(i, f32::fact(shape).into())
                .map_err(|e| tract_error(&self.name, "declaring the input", format!("{e:#}")))?;
        }
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| {
                tract_error(
                    &self.name,
                    &format!("cannot plan for input shapes {shapes:?}"),
                    format!("{e:#}"),
                )
            })?;
        *cached = Some((key, plan.clone()));
        Ok(plan)
    }

    /// Runs the graph on `f32` inputs of the given shapes and returns the first output's shape
    /// and values. The work is spread over the current rayon pool (the caller's `--threads`).
    pub(crate) fn run(&self, inputs: &[(Vec<usize>, &[f32])]) -> Result<(Vec<usize>, Vec<f32>)> {
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|(s, _)| s.clone()).collect();
        let plan = self.plan_for(&shapes)?;
        let mut values: TVec<TValue> = tvec!();
        for (shape, data) in inputs {
            let tensor = Tensor::from_shape(shape, data)
                .map_err(|e| tract_error(&self.name, "building the input", e))?;
            values.push(tensor.into_tvalue());
        }
        let outputs = multithread_tract_scope(Executor::RayonGlobal, || plan.run(values))
            .map_err(|e| tract_error(&self.name, "running the graph", format!("{e:#}")))?;
        let out = outputs
            .first()
            .ok_or_else(|| tract_error(&self.name, "running the graph", "no output"))?;
        let shape = out.shape().to_vec();
        let data = out
            .to_plain_array_view::<f32>()
            .map_err(|e| tract_error(&self.name, "reading the output", e))?
            .iter()
            .copied()
            .collect();
        Ok((shape, data))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `tests/fixtures/instant/per_channel_qdq.onnx` (from `tools/instant_fixtures.py`): a
    /// QuantizeLinear/DequantizeLinear pair with per-channel scales 0.001…1 and a convolution whose
    /// int8 weights are dequantised with per-output-channel scales 1…0.001. Tract before 0.23.8
    /// used the first scale for every channel, which is off here by up to 1000×. `run` runs the
    /// file on its input (`[1, 4, 2, 2]`); its output must be onnxruntime's (in
    /// `golden.safetensors`). Shared by every runner's test.
    pub(crate) fn check_per_channel_fixture(run: impl Fn(&Path, &[f32]) -> (Vec<usize>, Vec<f32>)) {
        let dir =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/instant");
        let st_bytes = std::fs::read(dir.join("golden.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&st_bytes).unwrap();
        let f32s = |name: &str| -> Vec<f32> {
            st.tensor(name)
                .unwrap()
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        };
        let (x, want) = (f32s("per_channel_x"), f32s("per_channel_y"));
        let (shape, got) = run(&dir.join("per_channel_qdq.onnx"), &x);
        assert_eq!(shape, [1, 4, 2, 2]);
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                "{got:?} vs {want:?}"
            );
        }
    }

    #[test]
    fn per_channel_scales_are_all_read() {
        check_per_channel_fixture(|path, x| {
            Graph::load(path)
                .unwrap()
                .run(&[(vec![1, 4, 2, 2], x)])
                .unwrap()
        });
    }
}
