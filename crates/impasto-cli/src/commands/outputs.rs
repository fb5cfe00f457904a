//! What a run may write, checked before it starts: a typo found after an hour of optimising
//! costs the hour, and an output that lands on an input destroys it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use impasto::cli_support::atomic;
use impasto::image_io;

use super::optimize::intermediate_path;
use super::run_settings::RunSettings;
use crate::plot;

/// Checks every file the run will write: right extensions; each one a regular file, a link to
/// one (written through) or free, in a directory where a file can be created; none of them an
/// input or the weights (also through links); no two of them the same file; and no
/// `--save-every` intermediate (`OUT-iterN.EXT`) able to land on an input or another output.
pub fn check_outputs(output: &Path, run: &RunSettings, inputs: &[&Path]) -> anyhow::Result<()> {
    image_io::check_output_path_with_depth(output, run.bit_depth)
        .with_context(|| format!("--output {}", output.display()))?;
    if let Some(p) = &run.plot {
        plot::check_plot_path(p)?;
        atomic::check_writable(p).with_context(|| format!("--plot {}", p.display()))?;
    }
    if let Some(p) = &run.loss_log {
        atomic::check_writable(p).with_context(|| format!("--loss-log {}", p.display()))?;
    }
    let mut outputs: Vec<(&str, &Path)> = vec![("--output", output)];
    outputs.extend(run.loss_log.as_deref().map(|p| ("--loss-log", p)));
    outputs.extend(run.plot.as_deref().map(|p| ("--plot", p)));
    let mut protected: Vec<PathBuf> = inputs.iter().map(|p| p.to_path_buf()).collect();
    match &run.weights {
        Some(w) => protected.push(w.clone()),
        // The installed weights, which the run will read (or fetch to).
        None => {
            protected.extend(impasto::weights::default_weights_path(run.base.architecture).ok())
        }
    }
    let input_files: Vec<(PathBuf, &Path)> = protected
        .iter()
        .filter_map(|p| Some((resolve(p)?, p.as_path())))
        .collect();

    let resolved: Vec<Option<PathBuf>> = outputs.iter().map(|(_, p)| resolve(p)).collect();
    for ((flag, out), r) in outputs.iter().zip(&resolved) {
        if let Some((_, input)) = input_files.iter().find(|(c, _)| Some(c) == r.as_ref()) {
            bail!(
                "{flag} {} is the input {}: refusing to overwrite it (choose another path)",
                out.display(),
                input.display()
            );
        }
    }
    for i in 0..outputs.len() {
        for j in i + 1..outputs.len() {
            if resolved[i].is_some() && resolved[i] == resolved[j] {
                bail!(
                    "{} and {} are the same file {}: one would overwrite the other",
                    outputs[i].0,
                    outputs[j].0,
                    outputs[i].1.display()
                );
            }
        }
    }
    if run.save_every.is_some() {
        let others = input_files
            .iter()
            .map(|(c, p)| (c.clone(), p.to_path_buf()))
            .chain(
                resolved[1..]
                    .iter()
                    .zip(&outputs[1..])
                    .filter_map(|(r, (_, p))| Some((r.clone()?, p.to_path_buf()))),
            );
        let others: Vec<(PathBuf, PathBuf)> = others.collect();
        for (canonical, shown) in &others {
            if is_intermediate_name(output, canonical) {
                bail!(
                    "--save-every writes {} and others like it, and {} has such a name: \
                     choose another --output name",
                    intermediate_path(output, 1, 1).display(),
                    shown.display()
                );
            }
        }
        check_intermediates(output, run, &others)?;
    }
    Ok(())
}

/// The `--save-every` images that already exist next to the output: each must be a regular
/// file or a link to one, and a link must not lead onto an input or another output (`others`:
/// their resolved paths, and as the user wrote them). The first one's directory must take new
/// files.
fn check_intermediates(
    output: &Path,
    run: &RunSettings,
    others: &[(PathBuf, PathBuf)],
) -> anyhow::Result<()> {
    let Some(every) = run.save_every else {
        return Ok(());
    };
    let total = run.schedule.total_iterations();
    if every <= total {
        let first = intermediate_path(output, every, total);
        atomic::check_writable(&first)
            .with_context(|| format!("--save-every {}", first.display()))?;
    }
    let dir = atomic::parent_dir(output);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(iteration) = intermediate_iteration(output, &name.to_string_lossy(), total) else {
            continue;
        };
        if iteration == 0 || iteration % every != 0 {
            continue;
        }
        let path = output.with_file_name(&name);
        atomic::destination(&path).with_context(|| format!("--save-every {}", path.display()))?;
        let Some(resolved) = resolve(&path) else {
            continue;
        };
        if let Some((_, shown)) = others.iter().find(|(c, _)| *c == resolved) {
            bail!(
                "--save-every would write {} through its link onto {}: refusing to overwrite it \
                 (remove the link or choose another --output name)",
                path.display(),
                shown.display()
            );
        }
    }
    Ok(())
}

/// The iteration whose intermediate of `output` is named `name`, if `name` is exactly such a
/// name for a run of `total` iterations.
fn intermediate_iteration(output: &Path, name: &str, total: usize) -> Option<usize> {
    let stem = output.file_stem()?.to_string_lossy();
    let rest = name.strip_prefix(&format!("{stem}-iter"))?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let iteration: usize = digits.parse().ok()?;
    let expected = intermediate_path(output, iteration, total);
    (iteration <= total && expected.file_name()? == name).then_some(iteration)
}

/// The file a path names, resolved through links as a write follows them: canonical if it
/// exists, else (a new file, or a dangling link's target) its directory's canonical path joined
/// with its name. `None` when the directory does not exist either.
fn resolve(p: &Path) -> Option<PathBuf> {
    if let Ok(c) = p.canonicalize() {
        return Some(c);
    }
    let target = atomic::follow_links(p).ok()?;
    Some(
        atomic::parent_dir(&target)
            .canonicalize()
            .ok()?
            .join(target.file_name()?),
    )
}

/// Whether `candidate` could be an intermediate image of `output`: in the same directory, named
/// `STEM-iter…` with the same extension.
fn is_intermediate_name(output: &Path, candidate: &Path) -> bool {
    let Some(out) = resolve(output) else {
        return false;
    };
    let (Some(stem), Some(name)) = (out.file_stem(), candidate.file_name()) else {
        return false;
    };
    let ext = out
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let name = name.to_string_lossy();
    candidate.parent() == out.parent()
        && name.starts_with(&format!("{}-iter", stem.to_string_lossy()))
        && name.ends_with(&ext)
}
