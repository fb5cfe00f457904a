//! Recycled f32 buffers. A 1024 px activation is 32 to 100 MB: the system allocator maps each
//! such buffer fresh and the kernel zeroes it page by page, which took about a sixth of a run.
//! Giving the buffers of values no longer needed back here and taking new ones from here avoids
//! that. A graph keeps its last run's idle buffers (at most [`MAX_FREE`]) for its next run, as
//! onnxruntime keeps its arena: a loaded model holds that memory until it is dropped. Fresh big
//! buffers are asked for 2 MB pages ([`fresh`]).

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
        let mut v = self.idle(len);
        v.clear();
        v.resize(len, fill);
        v
    }

    /// A buffer of `len` values for a caller that writes every one of them: a reused buffer
    /// keeps its old values (any f32), saving a pass over memory that the caller's own writes
    /// make useless.
    pub fn take_overwritten(&self, len: usize) -> Vec<f32> {
        let mut v = self.idle(len);
        if v.len() >= len {
            v.truncate(len);
        } else {
            v.resize(len, 0.0);
        }
        v
    }

    /// The smallest idle buffer of at least `len` values, or an empty one.
    fn idle(&self, len: usize) -> Vec<f32> {
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
        reused.unwrap_or_else(|| fresh(len))
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

/// An empty buffer with room for `len` values. A big one is asked to be backed by 2 MB pages
/// (Linux, where transparent huge pages are enabled for `madvise`, as by default on many
/// distributions): writing a fresh 100 MB buffer otherwise takes 25,000 page faults, which cost
/// 40–50 ms of a 1024 px run on a 2-core virtual machine.
fn fresh(len: usize) -> Vec<f32> {
    let v: Vec<f32> = Vec::with_capacity(len);
    #[cfg(target_os = "linux")]
    if len * 4 >= HUGE_BYTES {
        const PAGE: usize = 4096;
        let (start, end) = (v.as_ptr() as usize, v.as_ptr() as usize + len * 4);
        let (start, end) = (start.next_multiple_of(PAGE), end / PAGE * PAGE);
        // SAFETY: the range lies inside the buffer just allocated; the advice changes how its
        // pages are backed, never their contents. A refusal (no THP) changes nothing.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
    v
}

/// Buffers of at least this many bytes are put on huge pages.
#[cfg(target_os = "linux")]
const HUGE_BYTES: usize = 8 << 20;

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
        // One to be overwritten keeps its old values, at the length asked for.
        pool.give(Value::new(vec![b.len()], Data::F32(b)));
        let d = pool.take_overwritten(MIN_LEN);
        assert_eq!((d.as_ptr(), d.len()), (ptr, MIN_LEN));
        assert!(d.iter().all(|&v| v == 3.0));
        pool.give(Value::new(vec![d.len()], Data::F32(d)));
        // Longer than its last use: the new values are zeros.
        let e = pool.take_overwritten(MIN_LEN + 5);
        assert_eq!((e.as_ptr(), e.len()), (ptr, MIN_LEN + 5));
        assert!(e[..MIN_LEN].iter().all(|&v| v == 3.0));
        assert!(e[MIN_LEN..].iter().all(|&v| v == 0.0));
    }
}
