//! What a run may write, checked before it starts: a typo found after an hour of optimising
//! costs the hour, and an output that lands on an input destroys it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use impasto::cli_support::atomic;
use impasto::image_io;

use super::optimize::intermediate_path;
use super::run_settings::RunSettings;
use crate::plot;

/// Checks every file the run will write: right extensions, existing directories, none of them
/// an input (the weights included), no two of them the same file, and no `--save-every`
/// intermediate (`OUT-iterN.EXT`) able to land on an input or another output.
pub fn check_outputs(output: &Path, run: &RunSettings, inputs: &[&Path]) -> anyhow::Result<()> {
    image_io::check_output_path_with_depth(output, run.bit_depth)?;
    if let Some(p) = &run.plot {
        plot::check_plot_path(p)?;
        atomic::check_parent_dir(p).with_context(|| format!("--plot {}", p.display()))?;
    }
    if let Some(p) = &run.loss_log {
        atomic::check_parent_dir(p).with_context(|| format!("--loss-log {}", p.display()))?;
    }
    let mut outputs: Vec<(&str, &Path)> = vec![("--output", output)];
    outputs.extend(run.loss_log.as_deref().map(|p| ("--loss-log", p)));
    outputs.extend(run.plot.as_deref().map(|p| ("--plot", p)));
    let mut protected: Vec<&Path> = inputs.to_vec();
    protected.extend(run.weights.as_deref());
    let input_files: Vec<(PathBuf, &Path)> = protected
        .iter()
        .filter_map(|p| Some((p.canonicalize().ok()?, *p)))
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
        for (canonical, shown) in others {
            if is_intermediate_name(output, &canonical) {
                bail!(
                    "--save-every writes {} and others like it, and {} has such a name: \
                     choose another --output name",
                    intermediate_path(output, 1, 1).display(),
                    shown.display()
                );
            }
        }
    }
    Ok(())
}

/// The file a path names, resolved through links: canonical if it exists, else its directory's
/// canonical path joined with its name. `None` when the directory does not exist either.
fn resolve(p: &Path) -> Option<PathBuf> {
    if let Ok(c) = p.canonicalize() {
        return Some(c);
    }
    Some(
        atomic::parent_dir(p)
            .canonicalize()
            .ok()?
            .join(p.file_name()?),
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
