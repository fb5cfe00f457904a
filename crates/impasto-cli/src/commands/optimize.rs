//! The run shared by `transfer` and `reconstruct`: prepare, optimise with a progress bar, and
//! write the image, the loss log and the plot. Ctrl-C (SIGINT) or SIGTERM — what `timeout`,
//! `docker stop` and CI send — stops after the current iteration and still writes everything,
//! with the best image so far.

use std::io::Write as _;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use anyhow::Context;
use impasto::image_io::{self, Image};
use impasto::model::Architecture;
use impasto::transfer::{run_schedule, LossRecord, Schedule, Stop, Transfer, TransferSettings};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::loss_log;
use super::progress::{self, PlainProgress};
use super::run_settings::RunSettings;
use crate::plot;

/// The first stopping signal received (0: none); the run stops at the end of the iteration in
/// progress.
pub(super) static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// Set while the results are written: a second signal then waits instead of quitting, so no
/// half-written temporary file is left behind.
pub(super) static SAVING: AtomicBool = AtomicBool::new(false);

/// Returned when a signal stopped the run; `main` exits with 128 + the signal's number, as shells
/// expect (130 for Ctrl-C, 143 for SIGTERM).
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {}: wrote the best image so far to {}", signal_name(*.signal), .output.display())]
pub struct Interrupted {
    pub output: PathBuf,
    pub signal: i32,
}

impl Interrupted {
    /// 128 + the signal's number.
    pub fn exit_code(&self) -> u8 {
        (128 + self.signal).clamp(0, 255) as u8
    }
}

/// One optimisation job as the commands describe it.
pub struct Job<'a> {
    /// The canvas: its size and alpha, and the content target when there are content layers.
    pub content: Image,
    pub styles: Vec<Image>,
    pub settings: TransferSettings,
    pub output: &'a Path,
    /// The run flags, resolved.
    pub run: RunSettings,
    /// What the plot's title says the run was.
    pub title: String,
}

pub fn execute(job: Job<'_>) -> anyhow::Result<()> {
    super::options::on_threads(job.run.threads, || execute_on_pool(job))
}

fn execute_on_pool(job: Job<'_>) -> anyhow::Result<()> {
    let run = &job.run;
    let arch = job.settings.architecture;
    let schedule = &run.schedule;
    let (weights, weights_path) = super::options::load_weights(arch, run.weights.as_deref())?;
    tracing::info!("weights: {}", weights_path.display());
    let total = schedule.total_iterations();
    let last_iterations = *schedule.iterations.last().unwrap_or(&0);
    install_interrupt_handler();

    if !run.quiet {
        eprintln!("device: {}", run.device);
    }
    let bar = progress_bar(total as u64, run.quiet);
    let save_every = run.save_every;
    let depth = run.bit_depth;
    let mut save_error = None;
    let mut announced = None;
    let mut plain = PlainProgress::new(run.quiet);
    let outcome = run_schedule(
        &weights,
        &job.content,
        &job.styles,
        &job.settings,
        schedule,
        |t, record| {
            if announced != Some(t.scale()) {
                announced = Some(t.scale());
                if !run.quiet {
                    // Printed even when stderr is not a terminal (the bar is then hidden).
                    bar.suspend(|| eprintln!("{}", scale_line(arch, schedule, t, run)));
                }
            }
            bar.set_position(record.iteration as u64);
            plain.tick(|| iteration_line(record, total));
            bar.set_message(format!(
                "loss {:.4e} (content {:.3e}, style {:.3e})",
                record.parts.total, record.parts.content, record.parts.style
            ));
            let starts_scale = t.records().len() == 1;
            if let Some(n) = save_every {
                if !starts_scale && record.iteration % n == 0 {
                    let path = intermediate_path(job.output, record.iteration, total);
                    if let Err(e) = image_io::save_with_depth(&t.image(), &path, depth) {
                        save_error = Some(e);
                        return ControlFlow::Break(());
                    }
                }
            }
            if SIGNAL.load(Ordering::SeqCst) != 0 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )?;
    drop(weights);
    bar.finish_and_clear();
    SAVING.store(true, Ordering::SeqCst);
    let best = outcome.best_image()?;
    if let Some(e) = save_error {
        // Keep what was reached, then report the failure.
        let _ = image_io::save_with_depth(&best, job.output, depth);
        return Err(e).context("writing an intermediate image");
    }

    image_io::save_with_depth(&best, job.output, depth)?;
    write_reports(&outcome.records, run, &job.title)?;
    if let Some(e) = outcome.failed {
        return Err(anyhow::Error::new(e).context(format!(
            "the run failed at scale {}; wrote the best image of scale {} (upsampled) to {}",
            outcome.transfer.scale() + 2,
            outcome.transfer.scale() + 1,
            job.output.display()
        )));
    }
    let summary = outcome.summary;
    if !run.quiet {
        let per_iter = summary.elapsed_s / summary.iterations.max(1) as f64;
        let (bw, bh) = outcome.transfer.size();
        eprintln!(
            "{} iterations ({} evaluations) in {:.1} s ({:.3} s/iteration); best loss {:.4e} at iteration {} ({bw}×{bh}); wrote {}",
            summary.iterations,
            summary.evaluations,
            summary.elapsed_s,
            per_iter,
            summary.best.total,
            summary.best_iteration,
            job.output.display()
        );
        if summary.stop == Stop::Converged {
            eprintln!("stopped early: the optimiser could make no further progress");
        }
        if last_iterations == 0 && schedule.sizes.len() > 1 {
            eprintln!("note: --iterations 0 leaves the last scale as the upsampled previous one");
        }
    }
    match summary.stop {
        Stop::Interrupted if SIGNAL.load(Ordering::SeqCst) != 0 => Err(Interrupted {
            output: job.output.to_path_buf(),
            signal: SIGNAL.load(Ordering::SeqCst),
        }
        .into()),
        Stop::Diverged => anyhow::bail!(
            "the loss stopped being finite after iteration {} (try a smaller --lr); wrote the \
             best image so far (iteration {}) to {}",
            outcome.records.last().map_or(0, |r| r.iteration),
            summary.best_iteration,
            job.output.display()
        ),
        _ => Ok(()),
    }
}

/// `iteration 120/500 (24%), loss 1.2345e10, 0.52 s/iteration, ETA 3 min 17 s`: the plain
/// progress line for logs.
pub(super) fn iteration_line(record: &LossRecord, total: usize) -> String {
    let done = record.iteration;
    let elapsed = Duration::from_secs_f64(record.elapsed_s);
    let eta = progress::eta(elapsed, done as f64, total.saturating_sub(done) as f64)
        .map_or("–".to_string(), progress::duration);
    // Iteration 0 is the start image's evaluation, not an iteration: no rate yet.
    let rate = match done {
        0 => String::new(),
        _ => format!(", {:.2} s/iteration", record.elapsed_s / done as f64),
    };
    format!(
        "iteration {done}/{total} ({:.0}%), loss {:.4e}{rate}, ETA {eta}",
        100.0 * done as f64 / total.max(1) as f64,
        record.parts.total,
    )
}

/// `VGG19, scale 2/5: 181×136, 100 iterations of lbfgs`.
pub(super) fn scale_line(
    arch: Architecture,
    schedule: &Schedule,
    t: &Transfer,
    run: &RunSettings,
) -> String {
    let (w, h) = t.size();
    let n = schedule.sizes.len();
    let iterations = schedule.iterations[t.scale()];
    let which = if n > 1 {
        format!("scale {}/{n}: ", t.scale() + 1)
    } else {
        String::new()
    };
    format!(
        "{arch}, {which}{w}×{h}, {iterations} iterations of {}",
        run.optimizer_name()
    )
}

fn write_reports(records: &[LossRecord], run: &RunSettings, title: &str) -> anyhow::Result<()> {
    if let Some(p) = &run.loss_log {
        loss_log::write(p, records)?;
    }
    if let Some(p) = &run.plot {
        plot::write_loss_plot(p, records, title)
            .with_context(|| format!("writing the plot {}", p.display()))?;
    }
    Ok(())
}

/// `out.png` → `out-iter0100.png`, padded so the files sort in order.
pub fn intermediate_path(output: &Path, iteration: usize, total: usize) -> PathBuf {
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = output
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let width = total.to_string().len().max(4);
    output.with_file_name(format!("{stem}-iter{iteration:0width$}{ext}"))
}

/// Catches SIGINT and SIGTERM on a thread of their own (signal-hook's iterator, so nothing
/// runs inside the signal handler itself). A second signal while the last iteration finishes
/// quits at once, unless the results are being written.
pub(super) fn install_interrupt_handler() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("Ctrl-C and SIGTERM will not save the image: {e}");
                return;
            }
        };
        std::thread::spawn(move || {
            for signal in signals.forever() {
                let first = SIGNAL
                    .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok();
                if !first && !SAVING.load(Ordering::SeqCst) {
                    std::process::exit(128 + signal);
                }
                // `let _`: stderr may be closed; that must not kill this thread.
                let _ = writeln!(
                    std::io::stderr(),
                    "\n{}: finishing this iteration, then writing the best image so far \
                     (a second signal quits now)",
                    signal_name(signal)
                );
            }
        });
    });
}

/// The stopping signal received so far (0: none), for commands that run many transfers.
pub(super) fn stop_signal() -> i32 {
    SIGNAL.load(Ordering::SeqCst)
}

/// `SIGINT (Ctrl-C)`, `SIGTERM`.
fn signal_name(signal: i32) -> String {
    match signal {
        signal_hook::consts::SIGINT => "SIGINT (Ctrl-C)".to_string(),
        signal_hook::consts::SIGTERM => "SIGTERM".to_string(),
        other => format!("signal {other}"),
    }
}

fn progress_bar(len: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    let style =
        ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} {msg}  {per_sec} ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(500));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intermediate_names_sort_and_keep_the_extension() {
        let p = intermediate_path(Path::new("/tmp/a/out.png"), 50, 500);
        assert_eq!(p, Path::new("/tmp/a/out-iter0050.png"));
        let p = intermediate_path(Path::new("pic.jpg"), 7, 20000);
        assert_eq!(p, Path::new("pic-iter00007.jpg"));
    }
}
