//! Recycled f32 buffers for one run. A 1024 px activation is 32 MB: the system allocator maps
//! each such buffer fresh and the kernel zeroes it page by page, which took about a sixth of a
//! run. Giving the buffers of values no longer needed back here and taking new ones from here
//! avoids that; the pool is dropped with the run, so nothing is held afterwards.

use std::sync::Mutex;

use super::value::{Data, Value};

/// Buffers smaller than this are left to the allocator (they come from its heap anyway).
const MIN_LEN: usize = 1 << 16;
/// At most this many idle buffers are kept.
const MAX_FREE: usize = 8;

#[derive(Default)]
pub(super) struct Pool {
    free: Mutex<Vec<Vec<f32>>>,
}

impl Pool {
    /// A buffer of `len` values, all `fill`: the smallest idle one that is big enough, or a new one.
    pub fn take(&self, len: usize, fill: f32) -> Vec<f32> {
        let reused = if len >= MIN_LEN {
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            free.iter()
                .enumerate()
                .filter(|(_, v)| v.capacity() >= len)
                .min_by_key(|(_, v)| v.capacity())
                .map(|(i, _)| i)
                .map(|i| free.swap_remove(i))
        } else {
            None
        };
        let mut v = reused.unwrap_or_default();
        v.clear();
        v.resize(len, fill);
        v
    }

    /// A copy of `values` in a pooled buffer.
    pub fn copy(&self, values: &[f32]) -> Vec<f32> {
        let mut v = self.take(values.len(), 0.0);
        v.copy_from_slice(values);
        v
    }

    /// Takes back the buffer of a value that is no longer needed.
    pub fn give(&self, value: Value) {
        let Data::F32(buf) = value.data else { return };
        if buf.capacity() < MIN_LEN {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        free.push(buf);
        if free.len() > MAX_FREE {
            // Drop the smallest: big buffers are the ones worth keeping.
            let smallest = (0..free.len()).min_by_key(|&i| free[i].capacity());
            if let Some(i) = smallest {
                free.swap_remove(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_buffer_is_reused_and_filled_as_asked() {
        let pool = Pool::default();
        let a = pool.take(MIN_LEN * 2, 1.0);
        let ptr = a.as_ptr();
        pool.give(Value::new(vec![a.len()], Data::F32(a)));
        let b = pool.take(MIN_LEN, 3.0);
        assert_eq!(b.as_ptr(), ptr);
        assert_eq!(b.len(), MIN_LEN);
        assert!(b.iter().all(|&v| v == 3.0));
        // Nothing idle is big enough now: a fresh buffer.
        let c = pool.take(MIN_LEN, 0.0);
        assert_ne!(c.as_ptr(), ptr);
    }
}
