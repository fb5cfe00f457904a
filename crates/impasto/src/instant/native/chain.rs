//! Chains of elementwise operators run as one pass over memory.
//!
//! The transform's instance normalisations are written out as a dozen elementwise nodes, each
//! followed by a quantise–dequantise pair: `x − mean`, its square, quantised, averaged (the
//! variance); then `x · scale`, quantised, `+ shift`, quantised, `+ residual` or ReLU,
//! quantised. Run node by node, each is a pass over a tensor of up to 32 MB (1024 px), so the
//! runner was bound by memory traffic, not arithmetic. A [`Chain`] applies the whole sequence
//! to a block of the tensor while it is in the L1 cache, and a chain that ends in a
//! GlobalAveragePool never stores its result at all. Every value is computed by the same
//! expressions, in the same order, as the node-by-node ops, so the results are identical
//! (tested against them).
//!
//! [`fuse`] finds the chains in a graph's steps: a chainable step whose input is read by it
//! alone joins the chain producing that input.

use std::collections::HashMap;

use rayon::prelude::*;

use super::ops::{self, Binary, ChannelFakeQuantize, Sum, Unary};
use super::pool::Pool;
use super::value::{Data, Layout, Value, R};
use super::{Arg, Op, Source, Step};

/// Values per block: a block and the few operands it reads stay in the L1 cache while every
/// link runs over it. A multiple of eight (see [`Sum::add`]).
const BLOCK: usize = 2048;
/// Values per parallel task of a stored chain.
const TASK: usize = 1 << 15;

/// One elementwise operator of a chain. Operands are indices into the chain step's inputs;
/// the value flowing through the chain is implicit.
#[derive(Clone, Debug)]
pub(super) enum Link {
    FakeQuantize {
        axis: i64,
        scale: usize,
        zero: Option<usize>,
    },
    Unary(Unary),
    Clip {
        min: Option<usize>,
        max: Option<usize>,
    },
    /// `value op other`, or `other op value` when `reversed`.
    Binary {
        op: Binary,
        other: usize,
        reversed: bool,
    },
    /// `value op value` (the graph squares as `Mul(x, x)`).
    WithItself(Binary),
    /// `value ^ exponent` (an operand of one value; 2 squares).
    Pow {
        exponent: usize,
    },
}

/// Elementwise links applied in order to the chain's input (the step's first input), then,
/// if `reduce`, the mean of each channel (a GlobalAveragePool) instead of the values.
pub(super) struct Chain {
    pub links: Vec<Link>,
    pub reduce: bool,
    /// The step the chain started from, to run unchanged if nothing joins it.
    original: Option<Box<Step>>,
}

/// A link's operand as the fast path reads it.
enum Other<'a> {
    Scalar(f32),
    /// One value per channel of a channels-first `[1, C, H, W]` value.
    Channel(&'a [f32]),
    /// As many values as the chain's, in the same order.
    Same(&'a [f32]),
}

/// A link with its operands resolved for the fast path.
enum Ready<'a> {
    FakeQuantize(ChannelFakeQuantize),
    Unary(Unary),
    Clip(f32, f32),
    Binary {
        op: Binary,
        other: Other<'a>,
        reversed: bool,
    },
    WithItself(Binary),
    Pow(f32),
}

impl Ready<'_> {
    /// Runs over `v`, the values at `offset..` of the chain's value, all in channel `channel`.
    fn run(&self, v: &mut [f32], channel: usize, offset: usize) {
        match self {
            Ready::FakeQuantize(q) => q.over(v, channel),
            Ready::Unary(op) => op.over(v),
            Ready::Clip(lo, hi) => v.iter_mut().for_each(|e| *e = e.max(*lo).min(*hi)),
            Ready::WithItself(op) => v.iter_mut().for_each(|e| *e = op.apply(*e, *e)),
            Ready::Pow(p) if *p == 2.0 => v.iter_mut().for_each(|e| *e *= *e),
            Ready::Pow(p) => v.iter_mut().for_each(|e| *e = e.powf(*p)),
            Ready::Binary {
                op,
                other,
                reversed,
            } => {
                let (op, reversed) = (*op, *reversed);
                match other {
                    Other::Scalar(y) => broadcast(v, *y, op, reversed),
                    Other::Channel(c) => broadcast(v, c[channel], op, reversed),
                    Other::Same(o) => {
                        let o = &o[offset..offset + v.len()];
                        // One loop per case, so each vectorises.
                        match (op, reversed) {
                            (Binary::Add, _) => v.iter_mut().zip(o).for_each(|(e, y)| *e += y),
                            (Binary::Mul, _) => v.iter_mut().zip(o).for_each(|(e, y)| *e *= y),
                            (Binary::Sub, false) => v.iter_mut().zip(o).for_each(|(e, y)| *e -= y),
                            (Binary::Div, false) => v.iter_mut().zip(o).for_each(|(e, y)| *e /= y),
                            (Binary::Div, true) => {
                                v.iter_mut().zip(o).for_each(|(e, y)| *e = y / *e)
                            }
                            (Binary::Sub, true) => {
                                v.iter_mut().zip(o).for_each(|(e, y)| *e = y - *e)
                            }
                        }
                    }
                }
            }
        }
    }
}

fn broadcast(v: &mut [f32], y: f32, op: Binary, reversed: bool) {
    match (op, reversed) {
        (Binary::Add, _) => v.iter_mut().for_each(|e| *e += y),
        (Binary::Mul, _) => v.iter_mut().for_each(|e| *e *= y),
        (Binary::Sub, false) => v.iter_mut().for_each(|e| *e -= y),
        (Binary::Sub, true) => v.iter_mut().for_each(|e| *e = y - *e),
        (Binary::Div, false) => v.iter_mut().for_each(|e| *e /= y),
        (Binary::Div, true) => v.iter_mut().for_each(|e| *e = y / *e),
    }
}

impl Chain {
    /// The operator of `step` as a link, with its operands re-indexed from `base` (the chain's
    /// inputs so far), and the index of its input that carries the chain's value; `None` if
    /// the operator is not elementwise.
    fn link(step: &Step, stream: usize, base: usize) -> Option<(Link, Vec<Source>)> {
        // The step's inputs other than the stream, appended to the chain's.
        let others: Vec<Source> = (0..step.inputs.len())
            .filter(|&i| i != stream)
            .map(|i| step.inputs[i])
            .collect();
        let at = |i: usize| base + (0..i).filter(|&j| j != stream).count();
        let optional = |i: usize| match step.inputs.get(i) {
            Some(Source::Absent) | None => None,
            Some(_) => Some(at(i)),
        };
        let link = match &step.op {
            Op::FakeQuantize { axis } if stream == 0 => Link::FakeQuantize {
                axis: *axis,
                scale: optional(1)?,
                zero: optional(2),
            },
            Op::Unary(op) if stream == 0 => Link::Unary(*op),
            Op::Pow if stream == 0 && step.inputs.len() == 2 => Link::Pow { exponent: at(1) },
            Op::Clip if stream == 0 => Link::Clip {
                min: optional(1),
                max: optional(2),
            },
            Op::Binary(op) if step.inputs.len() == 2 => {
                if step.inputs[0] == step.inputs[1] {
                    return Some((Link::WithItself(*op), Vec::new()));
                }
                Link::Binary {
                    op: *op,
                    other: at(1 - stream),
                    reversed: stream == 1,
                }
            }
            _ => return None,
        };
        Some((link, others))
    }

    /// Runs the chain on `x` with its operands (the step's other inputs, in order).
    pub fn run(&self, x: Arg<'_>, operands: &[Option<&Value>], pool: &Pool) -> R<Value> {
        if let Some(k) = self.widening(x.get(), operands) {
            return self.run_widened(k, x, operands, pool);
        }
        match self.ready(x.get(), operands)? {
            Some(ready) if self.reduce => Ok(mean_of(x.get(), &ready)),
            Some(ready) => {
                // In place, or (the input is still read later) from the input into a new
                // buffer in the same pass.
                let (mut out, src) = match x {
                    Arg::Owned(v) => (v, None),
                    Arg::Borrowed(v) => (
                        Value {
                            data: Data::F32(pool.take_overwritten(v.len())),
                            ..v.clone_shape()
                        },
                        Some(v.f32s()?),
                    ),
                };
                let hw = out.shape[2] * out.shape[3];
                let Data::F32(v) = &mut out.data else {
                    unreachable!("ready() checked the values are f32")
                };
                v.par_chunks_mut(hw.max(1))
                    .enumerate()
                    .for_each(|(channel, plane)| {
                        plane
                            .par_chunks_mut(TASK)
                            .enumerate()
                            .for_each(|(t, part)| {
                                for (b, block) in part.chunks_mut(BLOCK).enumerate() {
                                    let offset = channel * hw + t * TASK + b * BLOCK;
                                    if let Some(src) = src {
                                        block.copy_from_slice(&src[offset..][..block.len()]);
                                    }
                                    for link in &ready {
                                        link.run(block, channel, offset);
                                    }
                                }
                            })
                    });
                Ok(out)
            }
            None => self.run_node_by_node(x.into_owned(pool), operands),
        }
    }

    /// The first link whose other operand has more values than the chain's input: the
    /// instance normalisations' chains carry a per-channel value (the variance, its square
    /// root) until it divides the full tensor (`x − mean`).
    fn widening(&self, x: &Value, operands: &[Option<&Value>]) -> Option<usize> {
        self.links.iter().position(|link| match link {
            Link::Binary { other, .. } => {
                operand(operands, *other).is_ok_and(|o| o.len() > x.len())
            }
            _ => false,
        })
    }

    /// Runs links `..k` node by node on the small input, then the rest as a chain whose
    /// value is link `k`'s big operand, with the small result as that link's operand (its
    /// sides swapped, so each element is computed by the same expression).
    fn run_widened(
        &self,
        k: usize,
        x: Arg<'_>,
        operands: &[Option<&Value>],
        pool: &Pool,
    ) -> R<Value> {
        let Link::Binary {
            op,
            other,
            reversed,
        } = self.links[k]
        else {
            unreachable!("widening() found a binary link")
        };
        let prefix = Chain {
            links: self.links[..k].to_vec(),
            reduce: false,
            original: None,
        };
        let small = prefix.run_node_by_node(x.into_owned(pool), operands)?;
        let big = operand(operands, other)?;
        let mut with_small = operands.to_vec();
        with_small.push(Some(&small));
        let mut links = vec![Link::Binary {
            op,
            // Operands are numbered from 1 (the chain's value is input 0).
            other: with_small.len(),
            reversed: !reversed,
        }];
        links.extend_from_slice(&self.links[k + 1..]);
        let rest = Chain {
            links,
            reduce: self.reduce,
            original: None,
        };
        rest.run(Arg::Borrowed(big), &with_small, pool)
    }

    /// The links' operands resolved for the fast path, or `None` where the values are not the
    /// simple case it handles (a channels-first `[1, C, H, W]` f32 value; operands of one
    /// value, one per channel or one per element): then the chain runs node by node.
    fn ready<'a>(&self, x: &Value, operands: &[Option<&'a Value>]) -> R<Option<Vec<Ready<'a>>>> {
        let get = |i: usize| operand(operands, i);
        let (Data::F32(_), Layout::Logical, &[1, c, _, _]) =
            (&x.data, x.layout, x.shape.as_slice())
        else {
            return Ok(None);
        };
        let per_channel = |v: &Value| v.shape.as_slice() == [1, c, 1, 1];
        let mut ready = Vec::with_capacity(self.links.len());
        for link in &self.links {
            ready.push(match link {
                Link::FakeQuantize { axis, scale, zero } => {
                    let scale = get(*scale)?.as_f32_vec();
                    let zero = match zero {
                        Some(z) => Some(get(*z)?.as_f32_vec()),
                        None => None,
                    };
                    let channel_axis = *axis == 1 || *axis == -3;
                    match ChannelFakeQuantize::new(scale, zero, c, channel_axis) {
                        Some(q) => Ready::FakeQuantize(q),
                        None => return Ok(None),
                    }
                }
                Link::Unary(op) => Ready::Unary(*op),
                Link::Clip { min, max } => {
                    let (lo, hi) = clip_bounds(operands, *min, *max)?;
                    Ready::Clip(lo, hi)
                }
                Link::WithItself(op) => Ready::WithItself(*op),
                Link::Pow { exponent } => match get(*exponent)?.as_f32_vec().as_slice() {
                    &[p] => Ready::Pow(p),
                    _ => return Ok(None),
                },
                Link::Binary {
                    op,
                    other,
                    reversed,
                } => {
                    let o = get(*other)?;
                    let Ok(values) = o.f32s() else {
                        return Ok(None);
                    };
                    let other = if values.len() == 1 {
                        Other::Scalar(values[0])
                    } else if per_channel(o) {
                        Other::Channel(values)
                    } else if o.shape == x.shape && o.layout == Layout::Logical {
                        Other::Same(values)
                    } else {
                        return Ok(None);
                    };
                    Ready::Binary {
                        op: *op,
                        other,
                        reversed: *reversed,
                    }
                }
            });
        }
        Ok(Some(ready))
    }

    /// The links one by one with the node-by-node ops (any shapes and layouts they accept).
    fn run_node_by_node(&self, mut x: Value, operands: &[Option<&Value>]) -> R<Value> {
        let get = |i: usize| operand(operands, i);
        for link in &self.links {
            x = match link {
                Link::FakeQuantize { axis, scale, zero } => {
                    let zero = match zero {
                        Some(z) => Some(get(*z)?),
                        None => None,
                    };
                    ops::fake_quantize(x, get(*scale)?, zero, *axis)?
                }
                Link::Unary(op) => ops::unary_op(x, *op)?,
                Link::Clip { min, max } => {
                    let (lo, hi) = clip_bounds(operands, *min, *max)?;
                    ops::unary(x, move |v| v.max(lo).min(hi))?
                }
                Link::WithItself(op) => {
                    let op = *op;
                    ops::unary(x, move |v| op.apply(v, v))?
                }
                Link::Pow { exponent } => super::shapes::pow(x, get(*exponent)?)?,
                Link::Binary {
                    op,
                    other,
                    reversed,
                } => {
                    let o = get(*other)?;
                    if o.len() > x.len() {
                        let big = Value {
                            data: Data::F32(o.f32s()?.to_vec()),
                            ..o.clone_shape()
                        };
                        ops::binary(*op, big, &x, !reversed)?
                    } else {
                        ops::binary(*op, x, o, *reversed)?
                    }
                }
            };
        }
        if self.reduce {
            x = ops::global_average_pool(&x)?;
        }
        Ok(x)
    }
}

/// Operand `i` of a chain step (its inputs after the first).
fn operand<'a>(operands: &[Option<&'a Value>], i: usize) -> R<&'a Value> {
    operands
        .get(i - 1)
        .copied()
        .flatten()
        .ok_or_else(|| "a chain operand was not computed".to_string())
}

/// A Clip's bounds: its optional operands' first values, unbounded without.
fn clip_bounds(
    operands: &[Option<&Value>],
    min: Option<usize>,
    max: Option<usize>,
) -> R<(f32, f32)> {
    let bound = |i: Option<usize>, default: f32| -> R<f32> {
        Ok(match i {
            Some(i) => (operand(operands, i)?.as_f32_vec().first().copied()).unwrap_or(default),
            None => default,
        })
    };
    Ok((bound(min, f32::NEG_INFINITY)?, bound(max, f32::INFINITY)?))
}

/// The chain's per-channel mean without storing its values: each channel's values summed in
/// f64 as [`ops::global_average_pool`] sums them ([`Sum`]).
fn mean_of(x: &Value, ready: &[Ready<'_>]) -> Value {
    let hw = x.shape[2] * x.shape[3];
    let v = x.f32s().expect("ready() checked the values are f32");
    let mean = v
        .par_chunks(hw.max(1))
        .enumerate()
        .map(|(channel, plane)| {
            let mut block = [0f32; BLOCK];
            // Summed as ops::global_average_pool sums (BLOCK is a multiple of eight).
            let mut sum = Sum::default();
            for (b, part) in plane.chunks(BLOCK).enumerate() {
                let block = &mut block[..part.len()];
                block.copy_from_slice(part);
                for link in ready {
                    link.run(block, channel, channel * hw + b * BLOCK);
                }
                sum.add(block);
            }
            (sum.total() / hw as f64) as f32
        })
        .collect();
    Value::new(vec![1, x.shape[1], 1, 1], Data::F32(mean))
}

/// Joins each chainable step to the chain producing its input when that input is read by it
/// alone (and is not the graph's output), and a GlobalAveragePool to the chain it averages
/// likewise. A chain runs where its last step ran: every operand is computed by then, and its
/// input stays alive until then (a value is dropped or reused after its last reader).
pub(super) fn fuse(steps: Vec<Step>, output: Source) -> Vec<Step> {
    let readers = super::readers(&steps);
    let joinable = |slot: usize| readers.get(&slot) == Some(&1) && output != Source::Slot(slot);
    let mut out: Vec<Option<Step>> = Vec::with_capacity(steps.len());
    // The open chains, by the slot holding their result: their place in `out`.
    let mut open: HashMap<usize, usize> = HashMap::new();
    for step in steps {
        let chained_input = step
            .inputs
            .iter()
            .position(|s| matches!(s, Source::Slot(x) if open.contains_key(x) && joinable(*x)));
        // A mean over H and W: GlobalAveragePool, or ReduceMean over axes 2 and 3 kept.
        let channel_mean = match &step.op {
            Op::GlobalAveragePool => true,
            Op::Reduce {
                mean: true,
                axes,
                keepdims: true,
            } => axes == &[2, 3] && step.inputs.len() == 1,
            _ => false,
        };
        if let (true, Some(0)) = (channel_mean, chained_input) {
            let Source::Slot(x) = step.inputs[0] else {
                unreachable!("position() matched a slot")
            };
            let mut chain = out[open.remove(&x).expect("open")].take().expect("placed");
            if let Op::Chain(c) = &mut chain.op {
                c.reduce = true;
                c.original = None;
            }
            chain.output = step.output;
            chain.name = format!("{} + {}", chain.name, step.name);
            out.push(Some(chain));
            continue;
        }
        if let Some(k) = chained_input {
            let Source::Slot(x) = step.inputs[k] else {
                unreachable!("position() matched a slot")
            };
            let at = open[&x];
            let base = out[at].as_ref().expect("placed").inputs.len();
            if let Some((link, others)) = Chain::link(&step, k, base) {
                open.remove(&x);
                let mut chain = out[at].take().expect("placed");
                if let Op::Chain(c) = &mut chain.op {
                    c.links.push(link);
                    c.original = None;
                }
                chain.inputs.extend(others);
                chain.output = step.output;
                chain.name = format!("{} + {}", chain.name, step.name);
                open.insert(step.output, out.len());
                out.push(Some(chain));
                continue;
            }
        }
        // A chain starts at an elementwise step whose value comes from a computed input.
        let stream = step
            .inputs
            .iter()
            .position(|s| matches!(s, Source::Slot(_)));
        if let Some((link, others)) = stream.and_then(|k| Chain::link(&step, k, 1)) {
            let k = stream.expect("and_then ran");
            let (inputs, output, name) = (
                std::iter::once(step.inputs[k]).chain(others).collect(),
                step.output,
                step.name.clone(),
            );
            let chain = Chain {
                links: vec![link],
                reduce: false,
                original: Some(Box::new(step)),
            };
            open.insert(output, out.len());
            out.push(Some(Step {
                op: Op::Chain(chain),
                inputs,
                output,
                name,
            }));
            continue;
        }
        out.push(Some(step));
    }
    // A chain nothing joined is its step again.
    out.into_iter()
        .flatten()
        .map(|step| match step.op {
            Op::Chain(Chain {
                original: Some(original),
                ..
            }) => *original,
            _ => step,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(shape: &[usize], seed: u32) -> Value {
        let n = shape.iter().product::<usize>();
        let data = (0..n)
            .map(|i| {
                let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                (h % 2001) as f32 / 100.0 - 10.0
            })
            .collect();
        Value::new(shape.to_vec(), Data::F32(data))
    }

    /// Every kind of link and operand, fast path against node by node, stored and reduced:
    /// the same bits. A plane of 3001 values spans blocks with a ragged end.
    #[test]
    fn a_chain_computes_what_its_nodes_compute() {
        let (c, h, w) = (3, 31, 97);
        let x = value(&[1, c, h, w], 1);
        let operands = [
            value(&[1], 2),                                         // 1: scalar
            value(&[1, c, 1, 1], 3),                                // 2: per channel
            value(&[1, c, h, w], 4),                                // 3: per element
            Value::new(vec![1], Data::F32(vec![0.07])),             // 4: a scale
            Value::new(vec![1], Data::I8(vec![3])),                 // 5: a zero point
            Value::new(vec![c], Data::F32(vec![0.05, 0.11, 0.02])), // 6: per-channel scales
            Value::new(vec![1], Data::F32(vec![-0.5])),             // 7: a bound
            Value::new(vec![], Data::F32(vec![2.0])),               // 8: an exponent
        ];
        let mut links = vec![
            Link::FakeQuantize {
                axis: 1,
                scale: 4,
                zero: Some(5),
            },
            Link::WithItself(Binary::Mul),
            Link::FakeQuantize {
                axis: 1,
                scale: 6,
                zero: None,
            },
            Link::Unary(Unary::Sigmoid),
            Link::Unary(Unary::Sqrt),
            Link::Unary(Unary::Reciprocal),
            Link::Clip {
                min: Some(7),
                max: None,
            },
            Link::Unary(Unary::Relu),
        ];
        for op in [Binary::Add, Binary::Sub, Binary::Mul, Binary::Div] {
            for other in 1..=3 {
                for reversed in [false, true] {
                    links.push(Link::Binary {
                        op,
                        other,
                        reversed,
                    });
                }
            }
        }
        links.push(Link::WithItself(Binary::Sub));
        links.push(Link::Pow { exponent: 8 });
        links.push(Link::Pow { exponent: 4 });
        let operands: Vec<Option<&Value>> = operands.iter().map(Some).collect();
        let pool = Pool::default();
        for reduce in [false, true] {
            // Each link alone, and all of them in a row.
            let mut cases: Vec<Vec<Link>> = links.iter().map(|l| vec![l.clone()]).collect();
            cases.push(links.clone());
            for case in cases {
                let chain = Chain {
                    links: case.clone(),
                    reduce,
                    original: None,
                };
                let fused = chain.run(Arg::Borrowed(&x), &operands, &pool).unwrap();
                let nodes = chain.run_node_by_node(x.clone(), &operands).unwrap();
                assert_eq!(fused.shape, nodes.shape);
                let (a, b) = (fused.as_f32_vec(), nodes.as_f32_vec());
                let same = a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits());
                assert!(same, "{case:?} (reduce {reduce}) differs from its nodes");
            }
        }
    }

    /// Values the fast path does not take (stored channels last) run node by node.
    #[test]
    fn other_layouts_run_node_by_node() {
        let x = value(&[1, 2, 3, 5], 9).into_channels_last().unwrap();
        let per_channel = value(&[1, 2, 1, 1], 4);
        let chain = Chain {
            links: vec![Link::Binary {
                op: Binary::Sub,
                other: 1,
                reversed: true,
            }],
            reduce: false,
            original: None,
        };
        let pool = Pool::default();
        let out = chain
            .run(Arg::Borrowed(&x), &[Some(&per_channel)], &pool)
            .unwrap()
            .into_logical();
        let (xs, p) = (
            x.clone().into_logical().as_f32_vec(),
            per_channel.as_f32_vec(),
        );
        for (i, v) in out.as_f32_vec().iter().enumerate() {
            assert_eq!(*v, p[i / 15] - xs[i]);
        }
    }
}
