use impasto::image_io;
use impasto::loss::LossWeights;
use impasto::transfer::{Init, SpatialControl, TransferSettings};

use super::optimize::{self, Job};
use super::options;
use super::outputs;
use super::run_settings::RunSettings;
use crate::cli::{InitArg, TransferArgs};

pub fn run(args: &TransferArgs) -> anyhow::Result<()> {
    let run = RunSettings::from_args(&args.run)?;
    if super::batch::is_batch(args) {
        return super::batch::run(args, run);
    }
    let content_path = &args.contents[0];
    let mut inputs: Vec<&std::path::Path> = vec![content_path.as_path()];
    inputs.extend(args.styles.iter().map(|p| p.as_path()));
    inputs.extend(args.init.file());
    inputs.extend(args.content_masks.iter().map(|p| p.as_path()));
    inputs.extend(args.style_masks.iter().map(|p| p.as_path()));
    outputs::check_outputs(&args.output, &run, &inputs)?;
    let content = image_io::load(content_path)?;
    let styles = load_all(&args.styles)?;
    let masks = if args.content_masks.is_empty() {
        None
    } else {
        Some(SpatialControl {
            content: load_all(&args.content_masks)?,
            style: load_all(&args.style_masks)?.into_iter().map(Some).collect(),
        })
    };
    let init = init(&args.init)?;
    let settings = transfer_settings(args, &run, init, masks);
    optimize::execute(Job {
        content,
        styles,
        settings,
        output: &args.output,
        run,
        title: format!(
            "{} in the style of {}",
            file_name(content_path),
            args.styles
                .iter()
                .map(|p| file_name(p))
                .collect::<Vec<_>>()
                .join(" + ")
        ),
    })
}

/// The library's settings for a transfer from the flags, with its start and masks.
pub fn transfer_settings(
    args: &TransferArgs,
    run: &RunSettings,
    init: Init,
    masks: Option<SpatialControl>,
) -> TransferSettings {
    TransferSettings {
        masks,
        ..settings(args, run, init)
    }
}

/// The library settings the flags ask for, given the start image (no masks): what the studio's
/// job parameters must resolve to as well (see the tests).
pub fn settings(args: &TransferArgs, run: &RunSettings, init: Init) -> TransferSettings {
    TransferSettings {
        style_scale: args.style_scale,
        content_layers: args.content_layers.clone(),
        style_layers: args.style_layers.clone(),
        style_layer_weights: args.style_layer_weights.clone(),
        style_blend_weights: args.style_blend_weights.clone(),
        weights: LossWeights {
            content: args.content_weight,
            style: args.style_weight,
            tv: args.tv_weight,
        },
        init,
        preserve_color: options::preserve_color(args.preserve_color),
        masks: None,
        ..run.base.clone()
    }
}

fn load_all(paths: &[std::path::PathBuf]) -> anyhow::Result<Vec<image_io::Image>> {
    Ok(paths
        .iter()
        .map(|p| image_io::load(p))
        .collect::<Result<Vec<_>, _>>()?)
}

pub fn init(arg: &InitArg) -> anyhow::Result<Init> {
    Ok(match arg {
        InitArg::Content => Init::Content,
        InitArg::Style => Init::Style,
        InitArg::Noise => Init::Noise,
        InitArg::File(p) => Init::Image(image_io::load(p)?),
    })
}

pub fn file_name(p: &std::path::Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}
