use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub};
use std::sync::Mutex;

/// The floating-point types the core runs on: f32 in production, f64 in gradient checks.
pub trait Scalar:
    Copy
    + Send
    + Sync
    + Debug
    + Default
    + PartialOrd
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + MulAssign
{
    /// Zero.
    const ZERO: Self;
    /// One.
    const ONE: Self;
    /// The nearest value of this type.
    fn from_f64(v: f64) -> Self;
    /// The value as `f64` (exact for `f32` and `f64`).
    fn to_f64(self) -> f64;
    /// `self · a + b` in one rounding. One instruction where the code is compiled with FMA
    /// enabled; a slow library call elsewhere, so only for such code.
    fn mul_add(self, a: Self, b: Self) -> Self;

    /// Scratch buffers shared by every kernel in the process. Layers run one after another,
    /// so one pool sized for the largest layer serves them all and the hot path never allocates.
    fn scratch_pool() -> &'static Mutex<Vec<Vec<Self>>>;
}

impl Scalar for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn mul_add(self, a: Self, b: Self) -> Self {
        f32::mul_add(self, a, b)
    }
    fn scratch_pool() -> &'static Mutex<Vec<Vec<Self>>> {
        static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());
        &POOL
    }
}

impl Scalar for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn mul_add(self, a: Self, b: Self) -> Self {
        f64::mul_add(self, a, b)
    }
    fn scratch_pool() -> &'static Mutex<Vec<Vec<Self>>> {
        static POOL: Mutex<Vec<Vec<f64>>> = Mutex::new(Vec::new());
        &POOL
    }
}

/// A scratch buffer of at least `len` values from the shared pool (contents unspecified): the
/// smallest one that is large enough, else the largest one grown, so small requests do not
/// inflate buffers that large ones will want.
pub(crate) fn take_scratch<T: Scalar>(len: usize) -> Vec<T> {
    let pick = |pool: &mut Vec<Vec<T>>| {
        let fit = (0..pool.len())
            .filter(|&i| pool[i].len() >= len)
            .min_by_key(|&i| pool[i].len());
        let largest = (0..pool.len()).max_by_key(|&i| pool[i].len());
        fit.or(largest).map(|i| pool.swap_remove(i))
    };
    let mut s = T::scratch_pool()
        .lock()
        .map(|mut pool| pick(&mut pool))
        .unwrap_or(None)
        .unwrap_or_default();
    if s.len() < len {
        s.resize(len, T::ZERO);
    }
    s
}

/// Returns a buffer to the shared pool.
pub(crate) fn give_back_scratch<T: Scalar>(s: Vec<T>) {
    if let Ok(mut pool) = T::scratch_pool().lock() {
        pool.push(s);
    }
}

/// Frees the shared scratch buffers (they are otherwise kept for the next call).
pub fn release_scratch<T: Scalar>() {
    if let Ok(mut pool) = T::scratch_pool().lock() {
        pool.clear();
    }
}
