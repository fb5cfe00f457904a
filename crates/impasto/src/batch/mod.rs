//! Many images in one run, and one run split across machines.
//!
//! A batch applies one set of styles and settings to many photos: [`expand_contents`] turns
//! directories, glob patterns and files into a sorted work list, [`work_list`] names each output
//! ([`NameTemplate`]), a [`Shard`] takes this worker's part of it (from flags or the scheduler's
//! environment: Slurm, Kubernetes Indexed Jobs, AWS Batch), and [`run_batch`] runs that part
//! through one [`PreparedStyles`](crate::transfer::PreparedStyles), so the network and the style
//! targets are built once.
//!
//! Resuming: every output is written atomically and an interrupted item's best image goes to
//! its [`partial_path`], so a file at an output's path is always a finished result
//! ([`is_complete`]); a rerun skips those and does only what is missing (unless
//! [`BatchOptions::overwrite`]). A failed item writes nothing and does not stop the batch.

mod run;
mod shard;
mod worklist;

pub use run::{run_batch, BatchOptions, BatchReport, Event, ItemOutcome, ItemReport};
pub use shard::{Origin, Shard, COUNT_VAR, INDEX_VAR};
pub use worklist::{
    check_output_dir, expand_contents, is_complete, partial_path, style_label, work_list,
    NameTemplate, WorkItem, IMAGE_EXTENSIONS,
};
