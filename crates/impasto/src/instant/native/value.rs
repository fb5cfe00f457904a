//! The values flowing through the native runner: an ONNX (logical) shape and its data.
//!
//! The graphs are channel-first (NCHW) but impasto's convolution wants channels last, so a 4-D
//! value may be *stored* channels last while its shape stays the logical NCHW one
//! ([`Layout::ChannelsLast`]). The graph's own transposes between the photo's NHWC and NCHW then
//! cost nothing: they only relabel ([`super::ops::transpose`]).

/// Element storage. The graphs use f32 activations, int8 quantised ones, int32 biases and int64
/// shapes and paddings.
#[derive(Clone, Debug)]
pub(super) enum Data {
    F32(Vec<f32>),
    I8(Vec<i8>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

/// How a value's elements are ordered in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Layout {
    /// Row-major in the logical shape.
    Logical,
    /// A logical `[N, C, H, W]` stored as `[N, H, W, C]`.
    ChannelsLast,
}

#[derive(Clone, Debug)]
pub(super) struct Value {
    pub shape: Vec<usize>,
    pub data: Data,
    pub layout: Layout,
}

pub(super) type R<T> = std::result::Result<T, String>;

impl Data {
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::I8(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Data::F32(_) => "f32",
            Data::I8(_) => "i8",
            Data::I32(_) => "i32",
            Data::I64(_) => "i64",
        }
    }

    /// The elements at `indices`, in that order, whatever their type.
    pub fn select(&self, indices: &[usize]) -> Data {
        fn pick<T: Copy>(v: &[T], indices: &[usize]) -> Vec<T> {
            indices.iter().map(|&i| v[i]).collect()
        }
        match self {
            Data::F32(v) => Data::F32(pick(v, indices)),
            Data::I8(v) => Data::I8(pick(v, indices)),
            Data::I32(v) => Data::I32(pick(v, indices)),
            Data::I64(v) => Data::I64(pick(v, indices)),
        }
    }

    /// Reorders the elements by `source` (`new[i] = old[source(i)]`), whatever their type.
    fn gather(&self, source: impl Fn(usize) -> usize) -> Data {
        fn pick<T: Copy>(v: &[T], source: impl Fn(usize) -> usize) -> Vec<T> {
            (0..v.len()).map(|i| v[source(i)]).collect()
        }
        match self {
            Data::F32(v) => Data::F32(pick(v, source)),
            Data::I8(v) => Data::I8(pick(v, source)),
            Data::I32(v) => Data::I32(pick(v, source)),
            Data::I64(v) => Data::I64(pick(v, source)),
        }
    }
}

impl Value {
    pub fn new(shape: Vec<usize>, data: Data) -> Value {
        Value {
            shape,
            data,
            layout: Layout::Logical,
        }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// An empty value with this one's shape and storage (for `..` updates with new data).
    pub fn clone_shape(&self) -> Value {
        Value {
            shape: self.shape.clone(),
            data: Data::F32(Vec::new()),
            layout: self.layout,
        }
    }

    pub fn f32s(&self) -> R<&[f32]> {
        match &self.data {
            Data::F32(v) => Ok(v),
            other => Err(format!("expected f32 values, got {}", other.type_name())),
        }
    }

    pub fn i64s(&self) -> R<&[i64]> {
        match &self.data {
            Data::I64(v) => Ok(v),
            other => Err(format!("expected i64 values, got {}", other.type_name())),
        }
    }

    /// The values of a scale or zero point as f32 (any numeric type).
    pub fn as_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            Data::I8(v) => v.iter().map(|&x| x as f32).collect(),
            Data::I32(v) => v.iter().map(|&x| x as f32).collect(),
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// Whether the stored order is the logical row-major order (true for channels-last storage
    /// too when one of C and H·W is 1).
    pub fn in_logical_order(&self) -> bool {
        self.layout == Layout::Logical || self.shape[1] == 1 || self.shape[2] * self.shape[3] == 1
    }

    /// The stored dimensions: the logical shape, or `[N, H, W, C]` for channels-last storage.
    pub fn stored_dims(&self) -> Vec<usize> {
        match self.layout {
            Layout::Logical => self.shape.clone(),
            Layout::ChannelsLast => {
                let s = &self.shape;
                vec![s[0], s[2], s[3], s[1]]
            }
        }
    }

    /// Which stored axis holds logical axis `axis`.
    pub fn stored_axis(&self, axis: usize) -> usize {
        match self.layout {
            Layout::Logical => axis,
            Layout::ChannelsLast => [0, 3, 1, 2][axis],
        }
    }

    /// The same value stored channels last (a logical `[1, C, H, W]`), reordered if needed.
    pub fn into_channels_last(self) -> R<Value> {
        if self.shape.len() != 4 || self.shape[0] != 1 {
            return Err(format!(
                "expected a 4-D tensor of batch 1, got shape {:?}",
                self.shape
            ));
        }
        if self.layout == Layout::ChannelsLast {
            return Ok(self);
        }
        let (c, hw) = (self.shape[1], self.shape[2] * self.shape[3]);
        let data = if c == 1 || hw == 1 {
            self.data
        } else {
            // new[p·C + ch] = old[ch·HW + p]
            self.data.gather(|i| (i % c) * hw + i / c)
        };
        Ok(Value {
            shape: self.shape,
            data,
            layout: Layout::ChannelsLast,
        })
    }

    /// This value stored channels last: itself, or a reordered copy.
    pub fn channels_last(&self) -> R<std::borrow::Cow<'_, Value>> {
        if self.layout == Layout::ChannelsLast {
            Ok(std::borrow::Cow::Borrowed(self))
        } else {
            Ok(std::borrow::Cow::Owned(self.clone().into_channels_last()?))
        }
    }

    /// The same value stored in logical order, reordered if needed.
    pub fn into_logical(self) -> Value {
        if self.layout == Layout::Logical {
            return self;
        }
        let (c, hw) = (self.shape[1], self.shape[2] * self.shape[3]);
        let data = if c == 1 || hw == 1 {
            self.data
        } else {
            // new[ch·HW + p] = old[p·C + ch]
            self.data.gather(|i| (i % hw) * c + i / hw)
        };
        Value {
            shape: self.shape,
            data,
            layout: Layout::Logical,
        }
    }

    /// The same elements in logical order under a permutation of the axes.
    pub fn permuted(self, perm: &[usize]) -> R<Value> {
        let v = self.into_logical();
        let rank = v.shape.len();
        let mut sorted = perm.to_vec();
        sorted.sort_unstable();
        if perm.len() != rank || sorted.iter().enumerate().any(|(i, &p)| i != p) {
            return Err(format!(
                "transpose perm {perm:?} does not fit shape {:?}",
                v.shape
            ));
        }
        let mut strides = vec![1; rank];
        for a in (0..rank.saturating_sub(1)).rev() {
            strides[a] = strides[a + 1] * v.shape[a + 1];
        }
        let shape: Vec<usize> = perm.iter().map(|&p| v.shape[p]).collect();
        let data = v.data.gather(|mut i| {
            let mut src = 0;
            for a in (0..rank).rev() {
                src += (i % shape[a]) * strides[perm[a]];
                i /= shape[a];
            }
            src
        });
        Ok(Value::new(shape, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_last_round_trips_and_permutes_like_the_logical_transpose() {
        // [1, 2, 2, 3]: element (c, y, x) = 100c + 10y + x
        let mut data = vec![];
        for c in 0..2 {
            for y in 0..2 {
                for x in 0..3 {
                    data.push((100 * c + 10 * y + x) as f32);
                }
            }
        }
        let v = Value::new(vec![1, 2, 2, 3], Data::F32(data.clone()));
        let cl = v.clone().into_channels_last().unwrap();
        assert_eq!(&cl.f32s().unwrap()[..4], &[0.0, 100.0, 1.0, 101.0]);
        let nhwc = v.clone().permuted(&[0, 2, 3, 1]).unwrap();
        assert_eq!(nhwc.shape, [1, 2, 3, 2]);
        assert_eq!(nhwc.f32s().unwrap(), cl.f32s().unwrap());
        assert_eq!(cl.into_logical().f32s().unwrap(), &data[..]);
    }
}
