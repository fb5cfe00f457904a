//! The 26-style network's shape arithmetic (its pads are computed by ConstantOfShape, Concat,
//! Slice and Cast from constants, so they fold when the graph loads), its reductions (the
//! conditional instance normalisation: ReduceSum of the style weights times each style's scale
//! and shift, ReduceMean over H and W) and its Unsqueeze and Pow. All on small values or in
//! logical order; numpy's broadcasting rules where they apply.

use super::ops;
use super::value::{Data, Value, R};

/// Row-major strides of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for a in (0..shape.len().saturating_sub(1)).rev() {
        s[a] = s[a + 1] * shape[a + 1];
    }
    s
}

/// An axis attribute or input, negative ones counted from the end.
fn axis(a: i64, rank: usize) -> R<usize> {
    let r = rank as i64;
    let a = if a < 0 { a + r } else { a };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(format!("axis {a} of a rank-{rank} value"))
    }
}

/// ConstantOfShape: a value of shape `shape` filled with `value`'s one element (f32 0 by
/// default).
pub(super) fn constant_of_shape(shape: &Value, value: Option<&Value>) -> R<Value> {
    let dims: Vec<usize> = (shape.i64s()?.iter())
        .map(|&d| usize::try_from(d).map_err(|_| format!("ConstantOfShape of {d}")))
        .collect::<R<_>>()?;
    let n: usize = dims.iter().product();
    if n > 1 << 24 {
        return Err(format!(
            "ConstantOfShape of {dims:?}: too big for a constant"
        ));
    }
    let data = match value.map(|v| &v.data) {
        None => Data::F32(vec![0.0; n]),
        Some(Data::F32(v)) => Data::F32(vec![*v.first().ok_or("an empty value")?; n]),
        Some(Data::I64(v)) => Data::I64(vec![*v.first().ok_or("an empty value")?; n]),
        Some(Data::I32(v)) => Data::I32(vec![*v.first().ok_or("an empty value")?; n]),
        Some(Data::I8(v)) => Data::I8(vec![*v.first().ok_or("an empty value")?; n]),
    };
    Ok(Value::new(dims, data))
}

/// Concat along `axis` of values of one type.
pub(super) fn concat(parts: &[&Value], axis_attr: i64) -> R<Value> {
    let first = parts.first().ok_or("Concat of nothing")?;
    let rank = first.shape.len();
    let a = axis(axis_attr, rank)?;
    let parts: Vec<Value> = parts.iter().map(|v| (*v).clone().into_logical()).collect();
    for p in &parts {
        let same = p.shape.len() == rank
            && (0..rank).all(|i| i == a || p.shape[i] == first.shape[i])
            && std::mem::discriminant(&p.data) == std::mem::discriminant(&first.data);
        if !same {
            return Err(format!(
                "Concat of shapes {:?} and {:?}",
                first.shape, p.shape
            ));
        }
    }
    let outer: usize = first.shape[..a].iter().product();
    // Each part's value indices, in output order: for each outer index, its whole inner block.
    let mut shape = first.shape.clone();
    shape[a] = parts.iter().map(|p| p.shape[a]).sum();
    let mut out = Vec::new();
    for o in 0..outer {
        for p in &parts {
            let block: usize = p.shape[a..].iter().product();
            out.push(
                p.data
                    .select(&(o * block..(o + 1) * block).collect::<Vec<_>>()),
            );
        }
    }
    let data = match &first.data {
        Data::F32(_) => Data::F32(
            out.into_iter()
                .flat_map(|d| match d {
                    Data::F32(v) => v,
                    _ => unreachable!("one type, checked above"),
                })
                .collect(),
        ),
        Data::I64(_) => Data::I64(
            out.into_iter()
                .flat_map(|d| match d {
                    Data::I64(v) => v,
                    _ => unreachable!("one type, checked above"),
                })
                .collect(),
        ),
        _ => return Err("Concat of int8 or int32 values".into()),
    };
    Ok(Value::new(shape, data))
}

/// Slice (opset ≥ 10): `starts`, `ends`, optional `axes` and `steps`, clamped as ONNX says.
pub(super) fn slice(
    x: &Value,
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> R<Value> {
    let x = x.clone().into_logical();
    let rank = x.shape.len();
    let all: Vec<i64> = (0..rank as i64).collect();
    let axes = axes.unwrap_or(&all[..starts.len().min(rank)]);
    if starts.len() != ends.len() || axes.len() != starts.len() {
        return Err("Slice: starts, ends and axes differ in length".into());
    }
    // The kept indices along each axis.
    let mut kept: Vec<Vec<usize>> = x.shape.iter().map(|&d| (0..d).collect()).collect();
    for (k, &a) in axes.iter().enumerate() {
        let a = axis(a, rank)?;
        let d = x.shape[a] as i64;
        let step = steps.map_or(1, |s| s.get(k).copied().unwrap_or(1));
        if step == 0 {
            return Err("Slice: a step of 0".into());
        }
        let fix = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
        let (mut i, end) = if step > 0 {
            (fix(starts[k]).clamp(0, d), fix(ends[k]).clamp(0, d))
        } else {
            (
                fix(starts[k]).clamp(0, d - 1),
                fix(ends[k]).clamp(-1, d - 1),
            )
        };
        let mut idx = Vec::new();
        while (step > 0 && i < end) || (step < 0 && i > end) {
            idx.push(i as usize);
            i += step;
        }
        kept[a] = idx;
    }
    let st = strides(&x.shape);
    let mut indices = vec![0usize];
    for (a, idx) in kept.iter().enumerate() {
        let stride = st[a];
        indices = indices
            .iter()
            .flat_map(|&base| idx.iter().map(move |&i| base + i * stride))
            .collect();
    }
    let shape = kept.iter().map(Vec::len).collect();
    Ok(Value::new(shape, x.data.select(&indices)))
}

/// Cast to float (1), int32 (6) or int64 (7).
pub(super) fn cast(x: Value, to: i64) -> R<Value> {
    let x = x.into_logical();
    let data = match (to, &x.data) {
        (1, _) => Data::F32(x.as_f32_vec()),
        (7, Data::I64(v)) => Data::I64(v.clone()),
        (7, Data::I32(v)) => Data::I64(v.iter().map(|&e| e as i64).collect()),
        (7, Data::I8(v)) => Data::I64(v.iter().map(|&e| e as i64).collect()),
        (7, Data::F32(v)) => Data::I64(v.iter().map(|&e| e as i64).collect()),
        (6, Data::I64(v)) => Data::I32(v.iter().map(|&e| e as i32).collect()),
        (6, Data::F32(v)) => Data::I32(v.iter().map(|&e| e as i32).collect()),
        _ => return Err(format!("Cast to type {to}")),
    };
    Ok(Value::new(x.shape, data))
}

/// Unsqueeze: a 1 inserted at each of `axes` (of the output's rank).
pub(super) fn unsqueeze(x: Value, axes: &[i64]) -> R<Value> {
    let mut x = x.into_logical();
    let rank = x.shape.len() + axes.len();
    let mut at: Vec<usize> = axes.iter().map(|&a| axis(a, rank)).collect::<R<_>>()?;
    at.sort_unstable();
    for a in at {
        x.shape.insert(a, 1);
    }
    Ok(x)
}

/// ReduceSum or ReduceMean over `axes` (all when empty), in f64; `keepdims` keeps them as 1.
pub(super) fn reduce(x: &Value, axes: &[i64], keepdims: bool, mean: bool) -> R<Value> {
    let rank = x.shape.len();
    let mut reduced = vec![axes.is_empty(); rank];
    for &a in axes {
        reduced[axis(a, rank)?] = true;
    }
    if mean && keepdims && rank == 4 && reduced == [false, false, true, true] && x.shape[0] == 1 {
        // The instance normalisation's mean: GlobalAveragePool, which also reads channels last.
        return ops::global_average_pool(x);
    }
    let x = x.clone().into_logical();
    let v = x.f32s()?;
    let kept: Vec<usize> = (0..rank)
        .map(|a| if reduced[a] { 1 } else { x.shape[a] })
        .collect();
    let (xs, ks) = (strides(&x.shape), strides(&kept));
    let mut sums = vec![0f64; kept.iter().product()];
    for (i, &e) in v.iter().enumerate() {
        let o: usize = (0..rank)
            .filter(|&a| !reduced[a])
            .map(|a| (i / xs[a]) % x.shape[a] * ks[a])
            .sum();
        sums[o] += e as f64;
    }
    let n: usize = (0..rank)
        .filter(|&a| reduced[a])
        .map(|a| x.shape[a])
        .product();
    let out = sums
        .iter()
        .map(|&s| {
            if mean {
                (s / n.max(1) as f64) as f32
            } else {
                s as f32
            }
        })
        .collect();
    let shape = if keepdims {
        kept
    } else {
        (0..rank)
            .filter(|&a| !reduced[a])
            .map(|a| x.shape[a])
            .collect()
    };
    Ok(Value::new(shape, Data::F32(out)))
}

/// Pow with a single exponent; 2 is a multiplication, as exact as the square it is.
pub(super) fn pow(x: Value, exponent: &Value) -> R<Value> {
    match exponent.as_f32_vec().as_slice() {
        [e] if *e == 2.0 => ops::unary(x, |v| v * v),
        &[e] => ops::unary(x, move |v| v.powf(e)),
        _ => Err("Pow with more than one exponent".into()),
    }
}

/// `big op small` under numpy's broadcasting, where the result has `big`'s shape: in place, in
/// logical order (for the small values the other paths do not take).
pub(super) fn broadcast(f: impl Fn(f32, f32) -> f32, big: Value, small: &Value) -> R<Value> {
    let mut big = big.into_logical();
    let small = small.clone().into_logical();
    let (rank, sr) = (big.shape.len(), small.shape.len());
    if sr > rank {
        return Err(format!(
            "shapes {:?} and {:?} do not broadcast to the first",
            big.shape, small.shape
        ));
    }
    // The small value's shape aligned to the right, with stride 0 along its 1s.
    let mut dims = vec![1; rank - sr];
    dims.extend(&small.shape);
    if (0..rank).any(|a| dims[a] != 1 && dims[a] != big.shape[a]) {
        return Err(format!(
            "shapes {:?} and {:?} do not broadcast to the first",
            big.shape, small.shape
        ));
    }
    let ss = strides(&dims);
    let bs = strides(&big.shape);
    let s = small.f32s()?.to_vec();
    let shape = big.shape.clone();
    let Data::F32(v) = &mut big.data else {
        return Err("arithmetic on non-f32 values".into());
    };
    for (i, e) in v.iter_mut().enumerate() {
        let j: usize = (0..rank)
            .filter(|&a| dims[a] != 1)
            .map(|a| (i / bs[a]) % shape[a] * ss[a])
            .sum();
        *e = f(*e, s[j]);
    }
    Ok(big)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn i64s(shape: &[usize], v: &[i64]) -> Value {
        Value::new(shape.to_vec(), Data::I64(v.to_vec()))
    }

    fn f32s(shape: &[usize], v: &[f32]) -> Value {
        Value::new(shape.to_vec(), Data::F32(v.to_vec()))
    }

    /// The 26-style network's pads computation, as it folds: [4, 4, 4, 4] and four zeros,
    /// as (-1, 2), reversed, transposed, flattened: ONNX's begin-then-end order.
    #[test]
    fn the_pads_arithmetic_folds_as_onnx_computes_it() {
        let zeros = constant_of_shape(&i64s(&[1], &[4]), Some(&i64s(&[1], &[0]))).unwrap();
        let all = concat(&[&i64s(&[4], &[4, 4, 4, 4]), &zeros], 0).unwrap();
        assert_eq!(all.i64s().unwrap(), [4, 4, 4, 4, 0, 0, 0, 0]);
        let pairs = ops::reshape(all, &[-1, 2]).unwrap();
        let reversed = slice(&pairs, &[-1], &[i64::MIN + 1], Some(&[0]), Some(&[-1])).unwrap();
        assert_eq!(reversed.shape, [4, 2]);
        assert_eq!(reversed.i64s().unwrap(), [0, 0, 0, 0, 4, 4, 4, 4]);
        let t = ops::transpose(reversed, &[1, 0]).unwrap();
        let flat = cast(ops::reshape(t, &[-1]).unwrap(), 7).unwrap();
        assert_eq!(flat.i64s().unwrap(), [0, 0, 4, 4, 0, 0, 4, 4]);
        // A forward slice with a stride.
        let s = slice(
            &i64s(&[6], &[0, 1, 2, 3, 4, 5]),
            &[1],
            &[100],
            None,
            Some(&[2]),
        )
        .unwrap();
        assert_eq!(s.i64s().unwrap(), [1, 3, 5]);
    }

    /// The conditional instance normalisation's blend: weights [26] unsqueezed to [26, 1],
    /// times per-style values [26, C], summed over the styles; and means over H and W.
    #[test]
    fn blends_and_means_reduce_as_numpy() {
        let w = unsqueeze(f32s(&[3], &[0.5, 0.25, 0.25]), &[1]).unwrap();
        assert_eq!(w.shape, [3, 1]);
        let per_style = f32s(&[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let product = broadcast(|a, b| a * b, per_style, &w).unwrap();
        let blend = reduce(&product, &[0], false, false).unwrap();
        assert_eq!(blend.shape, [2]);
        assert_eq!(blend.f32s().unwrap(), [0.5 + 0.75 + 1.25, 1.0 + 1.0 + 1.5]);
        let x = f32s(&[1, 2, 1, 3], &[1.0, 2.0, 3.0, 4.0, 6.0, 8.0]);
        let m = reduce(&x, &[2, 3], true, true).unwrap();
        assert_eq!(m.shape, [1, 2, 1, 1]);
        assert_eq!(m.f32s().unwrap(), [2.0, 6.0]);
        let m = reduce(&x, &[1], true, true).unwrap();
        assert_eq!(m.f32s().unwrap(), [2.5, 4.0, 5.5]);
        assert!(broadcast(
            |a, b| a + b,
            f32s(&[2, 3], &[0.0; 6]),
            &f32s(&[2, 1, 1], &[1.0, 2.0])
        )
        .is_err());
        let sq = pow(f32s(&[2], &[3.0, -2.0]), &f32s(&[], &[2.0])).unwrap();
        assert_eq!(sq.f32s().unwrap(), [9.0, 4.0]);
    }
}
