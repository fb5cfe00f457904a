//! Running a work list: every item through one [`PreparedStyles`] (the network and style
//! targets built once), each item's outcome and timing kept for the report, a bad item reported
//! and passed over, finished outputs skipped so that a rerun does only what is missing.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::image_io::{self, BitDepth, Image};
use crate::transfer::{Init, LossRecord, PreparedStyles, Schedule, Stop, Transfer};
use crate::{Error, Result};

use super::worklist::{is_complete, partial_path, WorkItem};
use super::Shard;

/// How a batch runs, besides its styles and settings (in the [`PreparedStyles`]).
#[derive(Clone, Debug)]
pub struct BatchOptions {
    /// The sizes and iterations of each item's run.
    pub schedule: Schedule,
    /// Redo items whose output exists (default: skip them as done).
    pub overwrite: bool,
    /// Bits per channel of the images written.
    pub bit_depth: BitDepth,
}

/// What became of one item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ItemOutcome {
    /// Its output was written.
    Succeeded,
    /// Its output existed already (see [`is_complete`]) and was left alone.
    Skipped,
    /// It could not be done (unreadable image, a run that failed or diverged); nothing was
    /// written at its output.
    Failed,
    /// A stop request (a signal) ended its run: its best image so far went to its
    /// [`partial_path`], and the batch stopped.
    Interrupted,
}

impl ItemOutcome {
    /// `succeeded`, `skipped`, `failed`, `interrupted`.
    pub fn name(self) -> &'static str {
        match self {
            ItemOutcome::Succeeded => "succeeded",
            ItemOutcome::Skipped => "skipped",
            ItemOutcome::Failed => "failed",
            ItemOutcome::Interrupted => "interrupted",
        }
    }
}

/// One item's outcome and timing.
#[derive(Clone, Debug)]
pub struct ItemReport {
    /// The content image.
    pub content: PathBuf,
    /// Its output.
    pub output: PathBuf,
    /// What became of it.
    pub outcome: ItemOutcome,
    /// Why it failed (the whole error chain), for a failed item.
    pub error: Option<String>,
    /// Seconds spent on it, loading and saving included.
    pub seconds: f64,
    /// Optimiser iterations run (over all scales).
    pub iterations: usize,
    /// The best total loss reached, where a run happened.
    pub best_loss: Option<f64>,
}

/// What a batch (or one shard of it) did.
#[derive(Clone, Debug)]
pub struct BatchReport {
    /// The shard this process ran.
    pub shard: Shard,
    /// Items in the whole work list, all shards together.
    pub total_items: usize,
    /// This shard's items, in order, as far as the batch got.
    pub items: Vec<ItemReport>,
    /// Items of this shard not reached because the batch was stopped.
    pub not_reached: usize,
    /// Seconds from the first item's start to the end.
    pub seconds: f64,
}

impl BatchReport {
    /// How many items had `outcome`.
    pub fn count(&self, outcome: ItemOutcome) -> usize {
        self.items.iter().filter(|i| i.outcome == outcome).count()
    }

    /// Whether a stop request ended the batch.
    pub fn interrupted(&self) -> bool {
        self.count(ItemOutcome::Interrupted) > 0
    }

    /// `3 succeeded, 1 skipped, 1 failed` (and the interrupted and unreached, if any).
    pub fn summary_line(&self) -> String {
        let mut line = format!(
            "{} succeeded, {} skipped, {} failed",
            self.count(ItemOutcome::Succeeded),
            self.count(ItemOutcome::Skipped),
            self.count(ItemOutcome::Failed)
        );
        if self.interrupted() {
            line += &format!(
                ", {} interrupted, {} not reached",
                self.count(ItemOutcome::Interrupted),
                self.not_reached
            );
        }
        line
    }

    /// The report as JSON: the shard, counts, and each item's paths, outcome, error, seconds,
    /// iterations and best loss.
    pub fn to_json(&self) -> String {
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let items: Vec<serde_json::Value> = self
            .items
            .iter()
            .map(|i| {
                serde_json::json!({
                    "content": path(&i.content),
                    "output": path(&i.output),
                    "outcome": i.outcome.name(),
                    "error": i.error,
                    "seconds": i.seconds,
                    "iterations": i.iterations,
                    "best_loss": i.best_loss.filter(|l| l.is_finite()),
                })
            })
            .collect();
        let report = serde_json::json!({
            "shard": {
                "index": self.shard.index(),
                "count": self.shard.count(),
                "origin": self.shard.origin().name(),
            },
            "total_items": self.total_items,
            "summary": {
                "succeeded": self.count(ItemOutcome::Succeeded),
                "skipped": self.count(ItemOutcome::Skipped),
                "failed": self.count(ItemOutcome::Failed),
                "interrupted": self.count(ItemOutcome::Interrupted),
                "not_reached": self.not_reached,
                "seconds": self.seconds,
            },
            "items": items,
        });
        let mut text = serde_json::to_string_pretty(&report).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// What the observer of a batch is shown.
pub enum Event<'a> {
    /// Item `index` (0-based, of `of` in this shard) starts.
    Started {
        /// Its position in this shard's list.
        index: usize,
        /// Items in this shard.
        of: usize,
        /// The item.
        item: &'a WorkItem,
    },
    /// One iteration of the item in progress.
    Iteration {
        /// Its transfer (scale, size).
        transfer: &'a Transfer,
        /// The iteration's losses.
        record: &'a LossRecord,
    },
    /// Item `index` is done, whatever its outcome.
    Finished {
        /// Its position in this shard's list.
        index: usize,
        /// Items in this shard.
        of: usize,
        /// What became of it.
        report: &'a ItemReport,
    },
}

/// Runs `items` (this shard's part of a work list of `total_items`) in order. `start` gives each
/// content image its start ([`Init`]; an error fails that item alone). `observer` sees each
/// item start and finish and every iteration; a `Break` from it stops the batch: the item in
/// progress keeps its best image in its [`partial_path`] and is reported interrupted.
pub fn run_batch(
    prepared: &PreparedStyles<'_>,
    items: &[WorkItem],
    shard: Shard,
    total_items: usize,
    options: &BatchOptions,
    mut start: impl FnMut(&Image) -> Result<Init>,
    mut observer: impl FnMut(Event<'_>) -> ControlFlow<()>,
) -> BatchReport {
    let clock = Instant::now();
    let mut reports = Vec::with_capacity(items.len());
    let of = items.len();
    for (index, item) in items.iter().enumerate() {
        if observer(Event::Started { index, of, item }).is_break() {
            break;
        }
        let report = run_item(prepared, item, options, &mut start, &mut observer);
        let stop = report.outcome == ItemOutcome::Interrupted;
        let told = observer(Event::Finished {
            index,
            of,
            report: &report,
        });
        reports.push(report);
        if stop || told.is_break() {
            break;
        }
    }
    BatchReport {
        shard,
        total_items,
        not_reached: items.len() - reports.len(),
        items: reports,
        seconds: clock.elapsed().as_secs_f64(),
    }
}

fn run_item(
    prepared: &PreparedStyles<'_>,
    item: &WorkItem,
    options: &BatchOptions,
    start: &mut impl FnMut(&Image) -> Result<Init>,
    observer: &mut impl FnMut(Event<'_>) -> ControlFlow<()>,
) -> ItemReport {
    let clock = Instant::now();
    let mut report = ItemReport {
        content: item.content.clone(),
        output: item.output.clone(),
        outcome: ItemOutcome::Skipped,
        error: None,
        seconds: 0.0,
        iterations: 0,
        best_loss: None,
    };
    if !options.overwrite && is_complete(&item.output) {
        tracing::info!("{} exists: skipped", item.output.display());
        return report;
    }
    let result = transfer_item(prepared, item, options, start, observer, &mut report);
    report.seconds = clock.elapsed().as_secs_f64();
    match result {
        Ok(outcome) => report.outcome = outcome,
        Err(e) => {
            report.outcome = ItemOutcome::Failed;
            report.error = Some(format!("{e:#}"));
        }
    }
    report
}

fn transfer_item(
    prepared: &PreparedStyles<'_>,
    item: &WorkItem,
    options: &BatchOptions,
    start: &mut impl FnMut(&Image) -> Result<Init>,
    observer: &mut impl FnMut(Event<'_>) -> ControlFlow<()>,
    report: &mut ItemReport,
) -> Result<ItemOutcome> {
    let content = image_io::load(&item.content)?;
    let init = start(&content)?;
    let outcome = prepared.run(&content, init, &options.schedule, |transfer, record| {
        observer(Event::Iteration { transfer, record })
    })?;
    report.iterations = outcome.summary.iterations;
    report.best_loss = Some(outcome.summary.best.total);
    let partial = partial_path(&item.output);
    if let Some(e) = outcome.failed {
        return Err(e.context(format!(
            "the run failed at scale {}",
            outcome.transfer.scale() + 2
        )));
    }
    match outcome.summary.stop {
        Stop::Interrupted => {
            image_io::save_with_depth(&outcome.best_image()?, &partial, options.bit_depth)?;
            Ok(ItemOutcome::Interrupted)
        }
        Stop::Diverged => Err(Error::new(
            crate::ErrorKind::Diverged,
            format!(
                "the loss stopped being finite (best loss {:.4e} at iteration {}); nothing \
                 written (try a smaller --lr)",
                outcome.summary.best.total, outcome.summary.best_iteration
            ),
        )),
        Stop::Completed | Stop::Converged => {
            image_io::save_with_depth(&outcome.best_image()?, &item.output, options.bit_depth)?;
            // A previous run's interrupted result is superseded.
            match std::fs::remove_file(&partial) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!("could not remove {}: {e}", partial.display())
                }
                _ => {}
            }
            Ok(ItemOutcome::Succeeded)
        }
    }
}
