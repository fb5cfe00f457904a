//! `impasto transfer` over many photos: the work list, this process's shard of it, one network
//! and one set of style targets for all, a line per photo, progress with an ETA, a summary and
//! the JSON report. Exit status 0 only when no photo failed; 130/143 after a signal, with the
//! photo in progress kept as `NAME.partial.EXT`.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use impasto::batch::{
    self, is_complete, partial_path, run_batch, BatchOptions, BatchReport, Event, ItemOutcome,
    NameTemplate, Shard, IMAGE_EXTENSIONS,
};
use impasto::cli_support::atomic;
use impasto::image_io::{self, Image};
use impasto::transfer::{Init, PreparedStyles};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::optimize::{install_interrupt_handler, Interrupted, SAVING, SIGNAL};
use super::progress::{self, PlainProgress};
use super::run_settings::RunSettings;
use super::transfer::{file_name, init, transfer_settings};
use crate::cli::TransferArgs;

/// Whether the command asks for a batch: several contents, a directory or pattern of them, an
/// output directory, or a flag only a batch takes. One photo into one file stays the plain run.
pub fn is_batch(args: &TransferArgs) -> bool {
    let one = &args.contents[0];
    args.contents.len() > 1
        || one.is_dir()
        || (!one.exists() && one.to_string_lossy().contains(['*', '?', '[']))
        || args.output.is_dir()
        || args.output.as_os_str().to_string_lossy().ends_with('/')
        || args.batch.any_given()
}

pub fn run(args: &TransferArgs, run: RunSettings) -> anyhow::Result<()> {
    super::options::on_threads(run.threads, || run_on_pool(args, &run))
}

fn run_on_pool(args: &TransferArgs, run: &RunSettings) -> anyhow::Result<()> {
    for (given, flag) in [
        (!args.content_masks.is_empty(), "--content-mask"),
        (run.loss_log.is_some(), "--loss-log"),
        (run.plot.is_some(), "--plot"),
        (run.save_every.is_some(), "--save-every"),
    ] {
        if given {
            bail!(
                "{flag} is for one photo; a batch (several contents, or --output a directory) \
                 reports through --report"
            );
        }
    }
    let shard = Shard::resolve(args.batch.shard_index, args.batch.shard_count)?;
    let template = NameTemplate::parse(&args.batch.name)?;
    let contents = batch::expand_contents(&args.contents)?;
    let out_dir = output_dir(&args.output)?;
    batch::check_output_dir(&args.contents, &out_dir)?;
    let mut inputs: Vec<PathBuf> = args.styles.clone();
    inputs.extend(args.init.file().map(Path::to_path_buf));
    match &run.weights {
        Some(w) => inputs.push(w.clone()),
        None => inputs.extend(impasto::weights::default_weights_path(run.base.architecture).ok()),
    }
    let style = batch::style_label(&args.styles);
    let items = batch::work_list(&contents, &out_dir, &template, &style, &inputs)?;
    let mine = shard.take(&items);
    if let Some(first) = items.first() {
        image_io::check_output_path_with_depth(&first.output, run.bit_depth)
            .with_context(|| format!("--name {}", template.as_str()))?;
    }
    if let Some(report) = &args.batch.report {
        check_report_path(report, &items, &inputs, &contents)?;
    }

    let styles = args
        .styles
        .iter()
        .map(|p| image_io::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    // The start shared by every photo.
    let shared_init = init(&args.init)?;
    let settings = transfer_settings(args, run, shared_init.clone(), None);
    let (weights, weights_path) =
        super::options::load_weights(settings.architecture, run.weights.as_deref())?;
    tracing::info!("weights: {}", weights_path.display());
    let prepared = PreparedStyles::new(&weights, styles, &settings)?;
    install_interrupt_handler();

    let options = BatchOptions {
        schedule: run.schedule.clone(),
        overwrite: args.batch.overwrite,
        bit_depth: run.bit_depth,
    };
    if !run.quiet {
        let part = match shard.is_whole() {
            true => String::new(),
            false => format!(" ({shard}: {} of {} photos)", mine.len(), items.len()),
        };
        eprintln!(
            "{} photos in the style of {style}{part} into {}",
            mine.len(),
            out_dir.display()
        );
    }
    let to_run = mine
        .iter()
        .filter(|i| options.overwrite || !is_complete(&i.output))
        .count();
    let mut progress = BatchProgress::new(run, to_run, mine.len());
    let start = |_: &Image| -> impasto::Result<Init> { Ok(shared_init.clone()) };
    let report = run_batch(
        &prepared,
        mine,
        shard,
        items.len(),
        &options,
        start,
        |event| {
            progress.event(&event);
            if SIGNAL.load(Ordering::SeqCst) != 0 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    );
    progress.finish();
    SAVING.store(true, Ordering::SeqCst);
    if let Some(path) = &args.batch.report {
        atomic::write_bytes_atomic(path, report.to_json().as_bytes())
            .with_context(|| format!("writing the report {}", path.display()))?;
    }
    if !run.quiet {
        eprintln!(
            "{}: {} in {}",
            shard_label(&report),
            report.summary_line(),
            progress::duration(Duration::from_secs_f64(report.seconds))
        );
    }
    let signal = SIGNAL.load(Ordering::SeqCst);
    if signal != 0 {
        let output = report
            .items
            .iter()
            .find(|i| i.outcome == ItemOutcome::Interrupted)
            .map_or(out_dir.clone(), |i| partial_path(&i.output));
        return Err(Interrupted { output, signal }.into());
    }
    let failed = report.count(ItemOutcome::Failed);
    if failed > 0 {
        bail!("{failed} of {} photos failed", report.items.len());
    }
    Ok(())
}

/// `--output` as a batch's directory, created if missing; a file there is refused.
fn output_dir(output: &Path) -> anyhow::Result<PathBuf> {
    if output.exists() && !output.is_dir() {
        bail!(
            "--output {} is a file, but a batch writes into a directory: name a directory",
            output.display()
        );
    }
    let image_name = output
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)));
    if !output.exists() && image_name {
        bail!(
            "--output {} looks like an image file, but a batch writes into a directory \
             (the photos' results are named by --name)",
            output.display()
        );
    }
    std::fs::create_dir_all(output)
        .with_context(|| format!("creating the output directory {}", output.display()))?;
    Ok(output.to_path_buf())
}

/// The report may not land on an input or on one of the batch's outputs.
fn check_report_path(
    report: &Path,
    items: &[batch::WorkItem],
    inputs: &[PathBuf],
    contents: &[PathBuf],
) -> anyhow::Result<()> {
    atomic::check_writable(report).with_context(|| format!("--report {}", report.display()))?;
    let same = |a: &Path, b: &Path| {
        let parent = |p: &Path| atomic::parent_dir(p).canonicalize().ok();
        parent(a).is_some() && parent(a) == parent(b) && a.file_name() == b.file_name()
    };
    let clash = inputs
        .iter()
        .chain(contents)
        .chain(items.iter().map(|i| &i.output))
        .find(|p| same(report, p));
    if let Some(p) = clash {
        bail!(
            "--report {} is {}, which this batch reads or writes: choose another name",
            report.display(),
            p.display()
        );
    }
    Ok(())
}

fn shard_label(report: &BatchReport) -> String {
    match report.shard.is_whole() {
        true => format!("{} photos", report.items.len() + report.not_reached),
        false => format!(
            "{} photos of {} ({})",
            report.items.len() + report.not_reached,
            report.total_items,
            report.shard
        ),
    }
}

/// Batch progress: a bar over all the iterations to run on a terminal, plain lines in a log,
/// and one line per photo either way.
struct BatchProgress {
    bar: ProgressBar,
    plain: PlainProgress,
    quiet: bool,
    /// Iterations per photo, the unit of work.
    per_photo: u64,
    /// Photos to run (not skipped) and photos in this shard.
    to_run: usize,
    photos: usize,
    /// Work of photos finished, and the time spent running photos.
    finished: u64,
    started: Instant,
    current: Option<(usize, String)>,
    announced_scale: Option<usize>,
}

impl BatchProgress {
    fn new(run: &RunSettings, to_run: usize, photos: usize) -> Self {
        let per_photo = run.schedule.total_iterations().max(1) as u64;
        let bar = if run.quiet {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::with_draw_target(
                Some(per_photo * to_run as u64),
                ProgressDrawTarget::stderr(),
            );
            let style = ProgressStyle::with_template("{bar:30.cyan/blue} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(500));
            bar
        };
        BatchProgress {
            bar,
            plain: PlainProgress::new(run.quiet),
            quiet: run.quiet,
            per_photo,
            to_run,
            photos,
            finished: 0,
            started: Instant::now(),
            current: None,
            announced_scale: None,
        }
    }

    fn event(&mut self, event: &Event<'_>) {
        match event {
            Event::Started { index, item, .. } => {
                self.current = Some((*index, file_name(&item.content)));
                self.announced_scale = None;
            }
            Event::Iteration { transfer, record } => {
                if self.announced_scale != Some(transfer.scale()) {
                    self.announced_scale = Some(transfer.scale());
                    let (w, h) = transfer.size();
                    tracing::info!("scale {}: {w}×{h}", transfer.scale() + 1);
                }
                let done = self.finished + record.iteration as u64;
                self.bar.set_position(done);
                let line = self.line(done, Some(record.iteration), record.parts.total);
                self.bar.set_message(line.clone());
                self.plain.tick(|| line);
            }
            Event::Finished { index, of, report } => {
                if report.outcome != ItemOutcome::Skipped {
                    self.finished += self.per_photo;
                    self.bar.set_position(self.finished);
                }
                if self.quiet {
                    return;
                }
                let name = file_name(&report.content);
                let what = match report.outcome {
                    ItemOutcome::Succeeded => format!(
                        "wrote {} in {:.1} s (best loss {:.4e})",
                        report.output.display(),
                        report.seconds,
                        report.best_loss.unwrap_or(f64::NAN)
                    ),
                    ItemOutcome::Skipped => {
                        format!("skipped: {} exists", report.output.display())
                    }
                    ItemOutcome::Interrupted => format!(
                        "interrupted: kept the best image so far in {}",
                        partial_path(&report.output).display()
                    ),
                    _ => format!(
                        "FAILED: {}",
                        report.error.as_deref().unwrap_or("unknown error")
                    ),
                };
                self.bar
                    .suspend(|| eprintln!("[{}/{of}] {name}: {what}", index + 1));
            }
        }
    }

    /// `photo 3/8 (a.jpg): iteration 120/500, loss 1.2e10; batch 40%, ETA 12 min 5 s`.
    fn line(&self, done: u64, iteration: Option<usize>, loss: f64) -> String {
        let total = self.per_photo * self.to_run as u64;
        let eta = progress::eta(
            self.started.elapsed(),
            done as f64,
            total.saturating_sub(done) as f64,
        )
        .map_or("–".to_string(), progress::duration);
        let (index, name) = self.current.clone().unwrap_or((0, String::new()));
        let iteration = iteration.map_or(String::new(), |i| {
            format!(": iteration {i}/{}, loss {loss:.4e}", self.per_photo)
        });
        format!(
            "photo {}/{} ({name}){iteration}; batch {:.0}%, ETA {eta}",
            index + 1,
            self.photos,
            100.0 * done as f64 / total.max(1) as f64
        )
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
