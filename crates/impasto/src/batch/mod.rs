//! Many images in one run, and one run split across machines: each worker's [`Shard`] of a
//! sorted work list (from flags or the scheduler's environment: Slurm, Kubernetes Indexed Jobs,
//! AWS Batch).

mod shard;

pub use shard::{Origin, Shard, COUNT_VAR, INDEX_VAR};
