//! The instant networks (style predictor, transform, 26-style network) run by impasto itself, from
//! the ONNX file's graph and weights: the graph's nodes are executed in order with ONNX's semantics
//! (so the int8 QuantizeLinear/DequantizeLinear steps round exactly where tract and onnxruntime
//! round), with three liberties that change no value (tested bit for bit against running the nodes
//! one by one): the convolutions are direct kernels written for these few-channel layers
//! ([`conv`]); the upsampling, padding and quantisation before a convolution happen while it copies
//! its input ([`gather`]); and runs of elementwise nodes are one pass over memory ([`chain`]).
//! Measured against onnxruntime in the same run on a CPU with AVX-512 (see the README's *Instant
//! stylisation*), the transform is faster and the 26-style network as fast or faster; the style
//! predictor, 53 small layers, is several times slower. tract still parses the files.
//!
//! Only the operators these networks use are supported; another graph fails to load with a
//! message naming the operator. Nothing depends on the input size: no plan per size.

mod chain;
mod conv;
mod gather;
mod ops;
mod pool;
mod shapes;
mod value;

use std::collections::HashMap;
use std::path::Path;

use tract_onnx::pb::{AttributeProto, NodeProto};
use tract_onnx::prelude::*;

use self::chain::Chain;
use self::conv::Conv;
use self::ops::{Binary, PadMode, Unary};
use self::pool::Pool;
use self::value::{Data, Value, R};
use crate::{Error, Result};

/// Where a node input comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// A constant (initializer or folded node), by index.
    Const(usize),
    /// A value computed during the run, by slot.
    Slot(usize),
    /// An optional input left empty.
    Absent,
}

enum Op {
    Conv(Conv),
    Quantize {
        axis: i64,
    },
    Dequantize {
        axis: i64,
    },
    /// A QuantizeLinear → DequantizeLinear pair, in place.
    FakeQuantize {
        axis: i64,
    },
    Unary(Unary),
    /// Clamped to its optional min and max inputs (opset ≥ 11).
    Clip,
    Binary(Binary),
    GlobalAveragePool,
    Pad(PadMode),
    Upsample,
    Reshape,
    Transpose(Vec<usize>),
    /// Elementwise steps run as one pass ([`chain`]).
    Chain(Chain),
    /// The value to fill with (ONNX's default: f32 zero).
    ConstantOfShape(Option<Value>),
    Concat(i64),
    Slice,
    Cast(i64),
    Unsqueeze(Vec<i64>),
    /// ReduceSum or ReduceMean: axes from the attribute (or the second input), keepdims.
    Reduce {
        mean: bool,
        axes: Vec<i64>,
        keepdims: bool,
    },
    Pow,
}

struct Step {
    op: Op,
    inputs: Vec<Source>,
    output: usize,
    /// For error messages.
    name: String,
}

/// A parsed graph, ready to run at any input size.
pub(crate) struct NativeGraph {
    consts: Vec<Value>,
    steps: Vec<Step>,
    /// The graph inputs' slots, in the graph's order.
    inputs: Vec<usize>,
    output: Source,
    /// After which step each slot is read for the last time (its value is then dropped).
    last_use: Vec<usize>,
    slots: usize,
    name: String,
    /// The last run's idle buffers, for the next run (see [`Pool`]).
    spare: std::sync::Mutex<Option<Pool>>,
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn attr_ints(node: &NodeProto, name: &str) -> Vec<i64> {
    attr(node, name).map(|a| a.ints.clone()).unwrap_or_default()
}

fn attr_int(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map_or(default, |a| a.i)
}

fn attr_str<'a>(node: &'a NodeProto, name: &str, default: &'a str) -> &'a str {
    attr(node, name)
        .and_then(|a| std::str::from_utf8(&a.s).ok())
        .unwrap_or(default)
}

fn value_of(tensor: &Tensor) -> R<Value> {
    fn plain<T: Datum + Copy>(tensor: &Tensor) -> R<Vec<T>> {
        let view = tensor
            .to_plain_array_view::<T>()
            .map_err(|e| format!("reading a constant: {e}"))?;
        Ok(view.iter().copied().collect())
    }
    let data = match tensor.datum_type() {
        DatumType::F32 => Data::F32(plain(tensor)?),
        DatumType::I8 => Data::I8(plain(tensor)?),
        DatumType::I32 => Data::I32(plain(tensor)?),
        DatumType::I64 => Data::I64(plain(tensor)?),
        other => return Err(format!("constants of type {other:?} are not supported")),
    };
    Ok(Value::new(tensor.shape().to_vec(), data))
}

impl NativeGraph {
    /// Parses an ONNX file and folds its constant subgraphs (the weights' dequantisation).
    pub(crate) fn load(path: &Path) -> Result<NativeGraph> {
        Self::load_with(path, true)
    }

    /// [`NativeGraph::load`], with the convolutions' inputs and the elementwise chains fused
    /// or (for tests) not.
    fn load_with(path: &Path, fuse: bool) -> Result<NativeGraph> {
        let name = path.display().to_string();
        let fail = |e: String| Error::weights(path, format!("cannot run this graph natively: {e}"));
        let proto = tract_onnx::onnx()
            .proto_model_for_path(path)
            .map_err(|e| Error::weights(path, format!("not an ONNX file: {e:#}")))?;
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| Error::weights(path, "the ONNX file has no graph"))?;
        let mut consts = Vec::new();
        let mut names: HashMap<String, Source> = HashMap::new();
        for init in &graph.initializer {
            let t = tract_onnx::tensor::load_tensor(
                &tract_onnx::data_resolver::FopenDataResolver,
                init,
                None,
            )
            .map_err(|e| fail(format!("initializer {}: {e:#}", init.name)))?;
            names.insert(init.name.clone(), Source::Const(consts.len()));
            consts.push(value_of(&t).map_err(fail)?);
        }
        let mut slots = 0;
        let mut inputs = Vec::new();
        for input in &graph.input {
            if !names.contains_key(&input.name) {
                names.insert(input.name.clone(), Source::Slot(slots));
                inputs.push(slots);
                slots += 1;
            }
        }
        let mut steps = Vec::new();
        for node in &graph.node {
            let sources = node
                .input
                .iter()
                .map(|i| match i.as_str() {
                    "" => Ok(Source::Absent),
                    i => names
                        .get(i)
                        .copied()
                        .ok_or(format!("{} reads unknown {i}", node.name)),
                })
                .collect::<R<Vec<_>>>()
                .map_err(fail)?;
            let [output] = node.output.as_slice() else {
                return Err(fail(format!(
                    "{} has {} outputs",
                    node.name,
                    node.output.len()
                )));
            };
            if node.op_type == "Constant" {
                let t = attr(node, "value")
                    .and_then(|a| a.t.as_ref())
                    .ok_or_else(|| fail(format!("{}: a Constant without a tensor", node.name)))?;
                let t = tract_onnx::tensor::load_tensor(
                    &tract_onnx::data_resolver::FopenDataResolver,
                    t,
                    None,
                )
                .map_err(|e| fail(format!("{}: {e:#}", node.name)))?;
                names.insert(output.clone(), Source::Const(consts.len()));
                consts.push(value_of(&t).map_err(fail)?);
                continue;
            }
            let konst = |i: usize| match sources.get(i) {
                Some(Source::Const(c)) => Some(&consts[*c]),
                _ => None,
            };
            let op = parse_op(node, &konst)
                .map_err(|e| fail(format!("{} ({}): {e}", node.name, node.op_type)))?;
            let step = Step {
                op,
                inputs: sources.clone(),
                output: slots,
                name: node.name.clone(),
            };
            if sources.iter().all(|s| !matches!(s, Source::Slot(_))) {
                // Every input is known now: fold (the weights' DequantizeLinear, constants).
                let value = run_step(&step, &mut [], &consts, (usize::MAX, &[]), &Pool::default())
                    .map_err(|e| fail(format!("folding {}: {e}", node.name)))?;
                names.insert(output.clone(), Source::Const(consts.len()));
                consts.push(value);
            } else {
                names.insert(output.clone(), Source::Slot(slots));
                slots += 1;
                steps.push(step);
            }
        }
        let [out] = graph.output.as_slice() else {
            return Err(fail(format!(
                "{} outputs, expected one",
                graph.output.len()
            )));
        };
        let output = *names
            .get(&out.name)
            .ok_or_else(|| fail(format!("the output {} is never computed", out.name)))?;
        let mut steps = fuse_quantize_pairs(steps, &consts);
        if fuse {
            steps = chain::fuse(gather::fuse(steps, &consts, output), output);
        }
        let mut last_use = vec![usize::MAX; slots];
        for (i, step) in steps.iter().enumerate() {
            for s in &step.inputs {
                if let Source::Slot(slot) = s {
                    last_use[*slot] = i;
                }
            }
        }
        if let Source::Slot(slot) = output {
            last_use[slot] = usize::MAX;
        }
        Ok(NativeGraph {
            consts,
            steps,
            inputs,
            output,
            last_use,
            slots,
            name,
            spare: Default::default(),
        })
    }

    /// Runs the graph on f32 inputs of the given (logical) shapes and returns the output's shape
    /// and values, in logical order. Work is spread over the current rayon pool.
    pub(crate) fn run(&self, inputs: &[(Vec<usize>, &[f32])]) -> Result<(Vec<usize>, Vec<f32>)> {
        // On one of the pool's threads (where it is called from one, as the CLI does: right
        // here): each step's parallel work then starts from a thread of the pool, instead of
        // being handed to it and waited for by a thread outside (two thread wake-ups a step).
        // The style predictor (about 110 small steps) took about a tenth longer from outside.
        rayon::scope(|_| self.run_on_pool(inputs))
    }

    fn run_on_pool(&self, inputs: &[(Vec<usize>, &[f32])]) -> Result<(Vec<usize>, Vec<f32>)> {
        let fail = |e: String| Error::weights(&self.name, format!("running the graph: {e}"));
        if inputs.len() != self.inputs.len() {
            return Err(fail(format!(
                "{} inputs given, the graph has {}",
                inputs.len(),
                self.inputs.len()
            )));
        }
        let mut slots: Vec<Option<Value>> = (0..self.slots).map(|_| None).collect();
        for (&slot, (shape, data)) in self.inputs.iter().zip(inputs) {
            if shape.iter().product::<usize>() != data.len() {
                return Err(fail(format!(
                    "input of shape {shape:?} with {} values",
                    data.len()
                )));
            }
            slots[slot] = Some(Value::new(shape.clone(), Data::F32(data.to_vec())));
        }
        let pool = (self.spare.lock())
            .map(|mut s| s.take())
            .unwrap_or_default()
            .unwrap_or_default();
        // Each step's time at trace level (`IMPASTO_LOG=impasto::instant=trace`), to profile.
        let timed = tracing::enabled!(tracing::Level::TRACE);
        for (i, step) in self.steps.iter().enumerate() {
            let start = timed.then(std::time::Instant::now);
            let value = run_step(step, &mut slots, &self.consts, (i, &self.last_use), &pool)
                .map_err(|e| fail(format!("{}: {e}", step.name)))?;
            if let Some(start) = start {
                let ms = start.elapsed().as_secs_f64() * 1e3;
                tracing::trace!("{ms:8.3} ms {:?} {}", value.shape, step.name);
            }
            // Inputs read for the last time and still in their slot go back to the pool.
            for s in &step.inputs {
                if let Source::Slot(slot) = *s {
                    if self.last_use[slot] == i {
                        if let Some(v) = slots[slot].take() {
                            pool.give(v);
                        }
                    }
                }
            }
            slots[step.output] = Some(value);
        }
        let out = match self.output {
            Source::Slot(s) => slots[s].take(),
            Source::Const(c) => Some(self.consts[c].clone()),
            Source::Absent => None,
        }
        .ok_or_else(|| fail("no output".into()))?
        .into_logical();
        if let Ok(mut spare) = self.spare.lock() {
            *spare = Some(pool);
        }
        let shape = out.shape.clone();
        match out.data {
            Data::F32(v) => Ok((shape, v)),
            _ => Err(fail("the output is not f32".into())),
        }
    }
}

/// The operator of a node, with what it needs of its constant inputs.
fn parse_op<'a>(node: &NodeProto, konst: &dyn Fn(usize) -> Option<&'a Value>) -> R<Op> {
    Ok(match node.op_type.as_str() {
        "Conv" => {
            if attr_ints(node, "dilations").iter().any(|&d| d != 1) {
                return Err("dilated convolutions are not supported".into());
            }
            if !matches!(attr_str(node, "auto_pad", "NOTSET"), "NOTSET" | "VALID") {
                return Err("auto_pad SAME is not supported".into());
            }
            let weights = konst(1).ok_or("the weights are not constant")?;
            let groups = attr_int(node, "group", 1);
            if groups < 1 {
                return Err(format!("group {groups}"));
            }
            Op::Conv(Conv::new(
                weights,
                konst(2),
                groups as usize,
                &attr_ints(node, "strides"),
                &attr_ints(node, "pads"),
            )?)
        }
        "QuantizeLinear" => Op::Quantize {
            axis: attr_int(node, "axis", 1),
        },
        "DequantizeLinear" => Op::Dequantize {
            axis: attr_int(node, "axis", 1),
        },
        "Relu" => Op::Unary(Unary::Relu),
        "Clip" => Op::Clip,
        "Sigmoid" => Op::Unary(Unary::Sigmoid),
        "Sqrt" => Op::Unary(Unary::Sqrt),
        "Reciprocal" => Op::Unary(Unary::Reciprocal),
        "Add" => Op::Binary(Binary::Add),
        "Sub" => Op::Binary(Binary::Sub),
        "Mul" => Op::Binary(Binary::Mul),
        "Div" => Op::Binary(Binary::Div),
        "Pow" => Op::Pow,
        "ConstantOfShape" => {
            Op::ConstantOfShape(match attr(node, "value").and_then(|a| a.t.as_ref()) {
                Some(t) => {
                    let t = tract_onnx::tensor::load_tensor(
                        &tract_onnx::data_resolver::FopenDataResolver,
                        t,
                        None,
                    )
                    .map_err(|e| format!("its value: {e:#}"))?;
                    Some(value_of(&t)?)
                }
                None => None,
            })
        }
        "Concat" => Op::Concat(attr_int(node, "axis", 0)),
        "Slice" => Op::Slice,
        "Cast" => Op::Cast(attr_int(node, "to", 1)),
        "Unsqueeze" => Op::Unsqueeze(attr_ints(node, "axes")),
        op @ ("ReduceSum" | "ReduceMean") => Op::Reduce {
            mean: op == "ReduceMean",
            axes: attr_ints(node, "axes"),
            keepdims: attr_int(node, "keepdims", 1) != 0,
        },
        "GlobalAveragePool" => Op::GlobalAveragePool,
        "Pad" => Op::Pad(match attr_str(node, "mode", "constant") {
            "constant" => PadMode::Constant,
            "reflect" => PadMode::Reflect,
            m => return Err(format!("pad mode {m} is not supported")),
        }),
        "Resize" => {
            let supported = attr_str(node, "mode", "nearest") == "nearest"
                && attr_str(node, "coordinate_transformation_mode", "half_pixel") == "asymmetric"
                && attr_str(node, "nearest_mode", "round_prefer_floor") == "floor";
            if !supported {
                return Err("only nearest, asymmetric, floor resizing is supported".into());
            }
            Op::Upsample
        }
        "Reshape" => Op::Reshape,
        "Transpose" => Op::Transpose(
            attr_ints(node, "perm")
                .iter()
                .map(|&p| p as usize)
                .collect(),
        ),
        other => return Err(format!("operator {other} is not supported")),
    })
}

/// An input of a step: moved out of its slot when this step is its last reader (so
/// elementwise ops can work in place), borrowed otherwise.
enum Arg<'a> {
    Owned(Value),
    Borrowed(&'a Value),
}

impl Arg<'_> {
    fn get(&self) -> &Value {
        match self {
            Arg::Owned(v) => v,
            Arg::Borrowed(v) => v,
        }
    }

    /// The value itself, or a copy in a pooled buffer.
    fn into_owned(self, pool: &Pool) -> Value {
        match self {
            Arg::Owned(v) => v,
            Arg::Borrowed(v) => match &v.data {
                Data::F32(f) => Value {
                    data: Data::F32(pool.copy(f)),
                    ..v.clone_shape()
                },
                _ => v.clone(),
            },
        }
    }

    /// Gives an owned value's buffer back once the op has read it.
    fn recycle(self, pool: &Pool) {
        if let Arg::Owned(v) = self {
            pool.give(v);
        }
    }
}

/// Runs one step.
fn run_step(
    step: &Step,
    slots: &mut [Option<Value>],
    consts: &[Value],
    (index, last_use): (usize, &[usize]),
    pool: &Pool,
) -> R<Value> {
    // An op of a value with itself (the graph squares as `Mul(x, x)`) is a unary op.
    if let (Op::Binary(op), [a, b]) = (&step.op, step.inputs.as_slice()) {
        if a == b {
            let x = match *a {
                Source::Slot(s) if last_use[s] == index => slots[s].take().map(Arg::Owned),
                Source::Slot(s) => slots[s].as_ref().map(Arg::Borrowed),
                Source::Const(c) => Some(Arg::Borrowed(&consts[c])),
                Source::Absent => None,
            };
            let x = x.ok_or("an input was not computed")?.into_owned(pool);
            return match op {
                Binary::Add => ops::unary(x, |v| v + v),
                // As ONNX computes it: NaN for an infinite or NaN input, else 0.
                #[allow(clippy::eq_op)]
                Binary::Sub => ops::unary(x, |v| v - v),
                Binary::Mul => ops::unary(x, |v| v * v),
                // As ONNX computes it: NaN for 0, infinite or NaN, else 1.
                #[allow(clippy::eq_op)]
                Binary::Div => ops::unary(x, |v| v / v),
            };
        }
    }
    // First move out the inputs read for the last time (unless read twice here), then borrow
    // the rest.
    let mut owned: Vec<Option<Value>> = step
        .inputs
        .iter()
        .map(|src| match src {
            Source::Slot(s)
                if last_use[*s] == index
                    && step.inputs.iter().filter(|&i| i == src).count() == 1 =>
            {
                slots[*s].take()
            }
            _ => None,
        })
        .collect();
    let slots: &[Option<Value>] = slots;
    let mut args = step.inputs.iter().enumerate().map(|(i, src)| {
        if let Some(v) = owned[i].take() {
            return Some(Arg::Owned(v));
        }
        match src {
            Source::Const(c) => Some(Arg::Borrowed(&consts[*c])),
            Source::Slot(s) => slots[*s].as_ref().map(Arg::Borrowed),
            Source::Absent => None,
        }
    });
    let first = args.next().flatten().ok_or("the first input is missing")?;
    let rest: Vec<Option<Arg>> = args.collect();
    let arg = |i: usize, what: &str| -> R<&Value> {
        rest.get(i - 1)
            .and_then(|a| a.as_ref())
            .map(Arg::get)
            .ok_or_else(|| format!("no {what}"))
    };
    let optional = |i: usize| rest.get(i - 1).and_then(|a| a.as_ref()).map(Arg::get);
    Ok(match &step.op {
        Op::Conv(conv) => {
            let out = conv.run(first.get(), pool)?;
            first.recycle(pool);
            out
        }
        Op::Quantize { axis } => {
            let out = ops::quantize(first.get(), arg(1, "scale")?, optional(2), *axis)?;
            first.recycle(pool);
            out
        }
        Op::Dequantize { axis } => {
            ops::dequantize(first.get(), arg(1, "scale")?, optional(2), *axis, pool)?
        }
        Op::FakeQuantize { axis } => {
            ops::fake_quantize(first.into_owned(pool), arg(1, "scale")?, optional(2), *axis)?
        }
        Op::Unary(op) => ops::unary_op(first.into_owned(pool), *op)?,
        Op::Clip => {
            let bound = |i: usize, default: f32| {
                optional(i).map_or(default, |v| {
                    v.as_f32_vec().first().copied().unwrap_or(default)
                })
            };
            let (lo, hi) = (bound(1, f32::NEG_INFINITY), bound(2, f32::INFINITY));
            // max/min rather than clamp: no panic on NaN or crossed bounds.
            ops::unary(first.into_owned(pool), move |x| x.max(lo).min(hi))?
        }
        Op::Binary(op) => {
            let mut rest = rest;
            let second = rest
                .get_mut(0)
                .and_then(Option::take)
                .ok_or("no second operand")?;
            // The bigger operand is modified in place: own it, borrow the other.
            if first.get().len() >= second.get().len() {
                ops::binary(*op, first.into_owned(pool), second.get(), false)?
            } else {
                ops::binary(*op, second.into_owned(pool), first.get(), true)?
            }
        }
        Op::GlobalAveragePool => {
            let out = ops::global_average_pool(first.get())?;
            first.recycle(pool);
            out
        }
        Op::Pad(mode) => {
            let fill = optional(2).map_or(0.0, |v| v.as_f32_vec().first().copied().unwrap_or(0.0));
            let out = ops::pad(first.get(), arg(1, "pads")?.i64s()?, *mode, fill, pool)?;
            first.recycle(pool);
            out
        }
        Op::Upsample => {
            let scales = arg(2, "scales")?.as_f32_vec();
            let factors: Vec<usize> = scales.iter().map(|&s| s as usize).collect();
            let whole = scales
                .iter()
                .zip(&factors)
                .all(|(&s, &f)| f >= 1 && s == f as f32);
            match <[usize; 4]>::try_from(factors) {
                Ok([1, 1, 1, 1]) => first.into_owned(pool),
                Ok(factors) if whole => {
                    let out = ops::upsample(first.get(), factors, pool)?;
                    first.recycle(pool);
                    out
                }
                _ => {
                    return Err(format!(
                        "Resize scales {scales:?}: four whole factors needed"
                    ))
                }
            }
        }
        Op::Reshape => ops::reshape(first.into_owned(pool), arg(1, "shape")?.i64s()?)?,
        Op::ConstantOfShape(value) => shapes::constant_of_shape(first.get(), value.as_ref())?,
        Op::Concat(axis) => {
            let mut parts = vec![first.get()];
            for (i, a) in rest.iter().enumerate() {
                parts.push(
                    a.as_ref()
                        .map(Arg::get)
                        .ok_or(format!("Concat input {} missing", i + 1))?,
                );
            }
            shapes::concat(&parts, *axis)?
        }
        Op::Slice => {
            let ints = |i: usize| optional(i).map(Value::i64s).transpose();
            shapes::slice(
                first.get(),
                arg(1, "starts")?.i64s()?,
                arg(2, "ends")?.i64s()?,
                ints(3)?,
                ints(4)?,
            )?
        }
        Op::Cast(to) => shapes::cast(first.into_owned(pool), *to)?,
        Op::Unsqueeze(axes) => {
            let axes = match optional(1) {
                Some(v) => v.i64s()?.to_vec(),
                None => axes.clone(),
            };
            shapes::unsqueeze(first.into_owned(pool), &axes)?
        }
        Op::Reduce {
            mean,
            axes,
            keepdims,
        } => {
            let axes = match optional(1) {
                Some(v) => v.i64s()?.to_vec(),
                None => axes.clone(),
            };
            let out = shapes::reduce(first.get(), &axes, *keepdims, *mean)?;
            first.recycle(pool);
            out
        }
        Op::Pow => shapes::pow(first.into_owned(pool), arg(1, "exponent")?)?,
        Op::Chain(chain) => {
            let operands: Vec<Option<&Value>> =
                rest.iter().map(|a| a.as_ref().map(Arg::get)).collect();
            chain.run(first, &operands, pool)?
        }
        Op::Transpose(perm) => ops::transpose(first.into_owned(pool), perm)?,
    })
}

/// How many steps read each slot (a step reading it twice, as `Mul(x, x)`, counts once).
fn readers(steps: &[Step]) -> HashMap<usize, usize> {
    let mut readers: HashMap<usize, usize> = HashMap::new();
    for step in steps {
        let mut read: Vec<usize> = (step.inputs.iter())
            .filter_map(|s| match s {
                Source::Slot(slot) => Some(*slot),
                _ => None,
            })
            .collect();
        read.sort_unstable();
        read.dedup();
        for slot in read {
            *readers.entry(slot).or_default() += 1;
        }
    }
    readers
}

/// Replaces each QuantizeLinear whose int8 result only feeds one DequantizeLinear with the same
/// scale and zero point by one in-place "fake quantisation" (`dequantize(quantize(x))`, the
/// same values), which saves a pass and an int8 buffer per pair.
fn fuse_quantize_pairs(steps: Vec<Step>, consts: &[Value]) -> Vec<Step> {
    let mut readers: HashMap<usize, usize> = HashMap::new();
    for step in &steps {
        for s in &step.inputs {
            if let Source::Slot(slot) = s {
                *readers.entry(*slot).or_default() += 1;
            }
        }
    }
    let producer: HashMap<usize, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.output, i))
        .collect();
    let same = |a: Source, b: Source| match (a, b) {
        (Source::Const(x), Source::Const(y)) => {
            let (x, y) = (&consts[x], &consts[y]);
            x.shape == y.shape && x.as_f32_vec() == y.as_f32_vec()
        }
        (Source::Absent, Source::Absent) => true,
        _ => false,
    };
    let mut steps: Vec<Option<Step>> = steps.into_iter().map(Some).collect();
    for j in 0..steps.len() {
        let Some(dq) = &steps[j] else { continue };
        let (&Op::Dequantize { axis }, Some(&Source::Slot(q_out))) = (&dq.op, dq.inputs.first())
        else {
            continue;
        };
        let Some(&i) = producer.get(&q_out) else {
            continue;
        };
        let Some(q) = &steps[i] else { continue };
        let get = |st: &Step, k: usize| st.inputs.get(k).copied().unwrap_or(Source::Absent);
        let fusable = matches!(q.op, Op::Quantize { axis: qa } if qa == axis)
            && readers.get(&q_out) == Some(&1)
            && same(get(q, 1), get(dq, 1))
            && same(get(q, 2), get(dq, 2));
        if fusable {
            let q = steps[i].take().expect("checked above");
            let dq = steps[j].as_mut().expect("checked above");
            dq.op = Op::FakeQuantize { axis };
            dq.inputs = q.inputs;
        }
    }
    steps.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instant::graph::Graph;
    use crate::instant::{fetch, fetch_models, MULTISTYLE, PREDICTOR, TRANSFORM};

    fn model(file: fetch::ModelFile) -> std::path::PathBuf {
        fetch::model_path(&fetch_models(false).unwrap(), file).unwrap()
    }

    /// A smooth colour field with some texture, in 0–1, channels last.
    fn picture(h: usize, w: usize, seed: usize) -> Vec<f32> {
        (0..h * w * 3)
            .map(|i| {
                let (y, x, c) = ((i / 3) / w, (i / 3) % w, i % 3);
                let wave = ((x * (c + 1) + y * (3 - c) + seed) as f32 * 0.05).sin();
                let grain = ((i * 7919 + seed) % 17) as f32 / 17.0;
                (0.5 + 0.35 * wave + 0.15 * (grain - 0.5)).clamp(0.0, 1.0)
            })
            .collect()
    }

    /// The native transform against tract's on the same file, at a size whose rows span many
    /// tasks and whose width is not a multiple of the kernel's eight lanes (the onnxruntime
    /// fixtures of `tests/instant_golden.rs` are 122×90).
    #[test]
    fn the_transform_matches_tract_at_a_size_spanning_many_tasks() {
        let style = Graph::load(&model(PREDICTOR))
            .unwrap()
            .run(&[(vec![1, 256, 256, 3], &picture(256, 256, 5))])
            .unwrap()
            .1;
        let (h, w) = (4 * 43, 4 * 61);
        let photo = picture(h, w, 0);
        let inputs = [
            (vec![1, h, w, 3], &photo[..]),
            (vec![1, 1, 1, 100], &style[..]),
        ];
        let path = model(TRANSFORM);
        let (shape, ours) = NativeGraph::load(&path).unwrap().run(&inputs).unwrap();
        let (tract_shape, theirs) = Graph::load(&path).unwrap().run(&inputs).unwrap();
        assert_eq!(shape, tract_shape);
        assert_eq!(shape, [1, h, w, 3]);
        let levels: Vec<f32> = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs() * 255.0)
            .collect();
        let mut sorted = levels.clone();
        sorted.sort_by(f32::total_cmp);
        let mean = levels.iter().sum::<f32>() / levels.len() as f32;
        let p99 = sorted[sorted.len() * 99 / 100];
        eprintln!("native against tract: mean {mean:.2}, p99 {p99:.1} levels");
        // Measured: mean 5.3, p99 26 levels. Not zero: tract sums each convolution in another
        // order than this runner, so a few int8 activations land one step apart, and the
        // instance normalisations amplify that (onnxruntime's two modes differ as much, see
        // the README). The bounds are the for unmatched rounding; a wrong tap, bias or
        // scale moves the picture by far more.
        assert!(
            mean <= 8.0 && p99 <= 40.0,
            "mean {mean:.2}, p99 {p99:.1} levels"
        );
    }

    /// Fusing changes no value: the transform and the predictor give bit-identical results
    /// with and without, and the fusion did find the instance normalisations' chains (some of
    /// them ending in their mean) and the pads and upsamplings before the convolutions.
    #[test]
    fn fused_steps_give_the_same_bits_as_the_nodes_one_by_one() {
        let style = picture(256, 256, 5);
        let predictor = model(PREDICTOR);
        let run = |path: &Path, fuse: bool, inputs: &[(Vec<usize>, &[f32])]| {
            let graph = NativeGraph::load_with(path, fuse).unwrap();
            let chains: Vec<(usize, bool)> = (graph.steps.iter())
                .filter_map(|s| match &s.op {
                    Op::Chain(c) => Some((c.links.len(), c.reduce)),
                    // A gathered convolution as a chain of no links.
                    Op::Conv(c) if c.gathers() => Some((0, false)),
                    _ => None,
                })
                .collect();
            (graph.run(inputs).unwrap(), chains)
        };
        let input = [(vec![1, 256, 256, 3], &style[..])];
        let ((_, vector), _) = run(&predictor, true, &input);
        let ((_, unfused), none) = run(&predictor, false, &input);
        assert!(none.is_empty());
        assert_eq!(vector, unfused, "the predictor");

        let (h, w) = (2 * 43, 2 * 61);
        let photo = picture(h, w, 0);
        let inputs = [
            (vec![1, h, w, 3], &photo[..]),
            (vec![1, 1, 1, 100], &vector[..]),
        ];
        let transform = model(TRANSFORM);
        let ((_, fused), chains) = run(&transform, true, &inputs);
        let ((_, unfused), _) = run(&transform, false, &inputs);
        eprintln!("chains (links, reduced): {chains:?}");
        assert!(chains.iter().filter(|c| c.1).count() >= 10, "{chains:?}");
        assert!(chains.iter().any(|c| c.0 >= 6), "{chains:?}");
        // The mirror pads before the residual convolutions and the upsampling ones.
        assert!(
            chains.iter().filter(|c| c.0 == 0).count() >= 14,
            "{chains:?}"
        );
        let differ = fused.iter().zip(&unfused).filter(|(a, b)| a != b).count();
        assert_eq!(differ, 0, "{differ} of {} values differ", fused.len());

        let nchw = picture(h, w, 2); // 3·h·w values, read as channels first
        let mut weights = [0f32; 26];
        weights[3] = 1.0;
        let inputs = [(vec![1, 3, h, w], &nchw[..]), (vec![26], &weights[..])];
        let multistyle = model(MULTISTYLE);
        let ((_, fused), chains) = run(&multistyle, true, &inputs);
        let ((_, unfused), _) = run(&multistyle, false, &inputs);
        eprintln!("26 styles: chains (links, reduced): {chains:?}");
        assert!(chains.iter().filter(|c| c.1).count() >= 10, "{chains:?}");
        assert!(fused == unfused, "the 26-style network fused differs");
    }

    /// The 26-style network (float; its pads computed by shape arithmetic that folds when it
    /// loads, conditional instance normalisation) against tract's, on a blend of two styles.
    #[test]
    fn the_26_style_network_matches_tract() {
        let (h, w) = (4 * 23, 4 * 37);
        let photo = picture(h, w, 3);
        // Channels first, as the network takes it.
        let nchw: Vec<f32> = (0..3 * h * w)
            .map(|i| photo[(i % (h * w)) * 3 + i / (h * w)])
            .collect();
        let mut weights = [0f32; 26];
        weights[7] = 0.7;
        weights[19] = 0.3;
        let inputs = [(vec![1, 3, h, w], &nchw[..]), (vec![26], &weights[..])];
        let path = model(MULTISTYLE);
        let (shape, ours) = NativeGraph::load(&path).unwrap().run(&inputs).unwrap();
        let (tract_shape, theirs) = Graph::load(&path).unwrap().run(&inputs).unwrap();
        assert_eq!(shape, tract_shape);
        let (num, den) = ours
            .iter()
            .zip(&theirs)
            .fold((0f64, 0f64), |(n, d), (a, b)| {
                (n + ((a - b) as f64).powi(2), d + (*b as f64).powi(2))
            });
        let rel = (num / den).sqrt();
        eprintln!("26 styles, native against tract: relative L2 {rel:.2e}");
        assert!(rel < 1e-4, "relative L2 {rel:.2e}");
    }

    /// The style predictor (depthwise and strided convolutions with TF's asymmetric pads, Clip)
    /// against tract's: an int8 MobileNet, so a few outputs may land a step (0.0199) apart.
    #[test]
    fn the_predictor_matches_tract_within_a_quantisation_step() {
        let painting = picture(256, 256, 5);
        let input = [(vec![1, 256, 256, 3], &painting[..])];
        let path = model(PREDICTOR);
        let t = std::time::Instant::now();
        let (shape, ours) = NativeGraph::load(&path).unwrap().run(&input).unwrap();
        let native_time = t.elapsed();
        let t = std::time::Instant::now();
        let (_, theirs) = Graph::load(&path).unwrap().run(&input).unwrap();
        eprintln!("predictor: native {native_time:?}, tract {:?}", t.elapsed());
        assert_eq!(shape, [1, 1, 1, 100]);
        let steps: Vec<f32> = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs() / 0.0199)
            .collect();
        let differing = steps.iter().filter(|&&s| s > 0.01).count();
        let worst = steps.iter().copied().fold(0.0, f32::max);
        eprintln!("predictor: {differing} of 100 entries differ, at most {worst:.2} steps");
        assert!(
            worst <= 2.01 && differing <= 50,
            "{differing} differ, at most {worst} steps"
        );
    }

    /// The tract < 0.23.8 bug (one scale read for every channel), for this runner.
    #[test]
    fn per_channel_scales_are_all_read() {
        crate::instant::graph::tests::check_per_channel_fixture(|path, x| {
            NativeGraph::load(path)
                .unwrap()
                .run(&[(vec![1, 4, 2, 2], x)])
                .unwrap()
        });
    }

    #[test]
    fn a_graph_with_unsupported_operators_is_refused_with_a_message() {
        // A one-node graph, `y = Softmax(x)`, as protobuf bytes: ModelProto { ir_version 8,
        // graph { node { input "x", output "y", op_type "Softmax" }, input "x", output "y" } }.
        let node = [&b"\x0a\x01x\x12\x01y\x22\x07"[..], b"Softmax"].concat();
        let graph = [
            &[0x0a, node.len() as u8][..],
            &node,
            b"\x5a\x03\x0a\x01x",
            b"\x62\x03\x0a\x01y",
        ]
        .concat();
        let model = [&[0x08, 0x08, 0x3a, graph.len() as u8][..], &graph].concat();
        let dir = std::env::temp_dir().join(format!("impasto-softmax-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("softmax.onnx");
        std::fs::write(&path, model).unwrap();
        let err = NativeGraph::load(&path).err().expect("refused");
        let _ = std::fs::remove_dir_all(&dir);
        let msg = err.to_string();
        assert!(msg.contains("operator Softmax is not supported"), "{msg}");
    }

    #[test]
    fn wrong_inputs_are_errors_not_panics() {
        let graph = NativeGraph::load(&model(TRANSFORM)).unwrap();
        let style = vec![0.0; 100];
        // A photo too small for the 9×9 kernels after the reflect padding.
        let tiny = vec![0.5; 4 * 4 * 3];
        assert!(graph
            .run(&[(vec![1, 4, 4, 3], &tiny), (vec![1, 1, 1, 100], &style)])
            .is_err());
        // Shapes that do not match the data, and a missing input.
        assert!(graph
            .run(&[(vec![1, 8, 8, 3], &tiny), (vec![1, 1, 1, 100], &style)])
            .is_err());
        assert!(graph.run(&[(vec![1, 4, 4, 3], &tiny)]).is_err());
    }
}
