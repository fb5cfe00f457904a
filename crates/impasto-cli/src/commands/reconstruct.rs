//! The paper's reconstructions: noise optimised against the content loss alone (what a layer
//! keeps of the photo) or the style loss alone (the painting's texture without its layout).

use impasto::image_io;
use impasto::loss::LossWeights;
use impasto::transfer::TransferSettings;

use super::optimize::{self, Job};
use super::outputs;
use super::run_settings::RunSettings;
use super::transfer::{file_name, init};
use crate::cli::ReconstructCommand;

pub fn run(cmd: &ReconstructCommand) -> anyhow::Result<()> {
    let (image_path, layers, common, is_content) = match cmd {
        ReconstructCommand::Content {
            image,
            layer,
            common,
        } => (image, layer, common, true),
        ReconstructCommand::Style {
            image,
            layers,
            common,
        } => (image, layers, common, false),
    };
    let (output, init_arg) = (&common.output, &common.init);
    let run = RunSettings::from_args(&common.run)?;
    let mut inputs = vec![image_path.as_path()];
    inputs.extend(init_arg.file());
    outputs::check_outputs(output, &run, &inputs)?;
    let image = image_io::load(image_path)?;
    let (content_layers, style_layers, weights) = if is_content {
        (
            layers.clone(),
            Vec::new(),
            LossWeights {
                content: 1.0,
                style: 0.0,
                tv: 0.0,
            },
        )
    } else {
        (
            Vec::new(),
            layers.clone(),
            LossWeights {
                content: 0.0,
                style: 1.0,
                tv: 0.0,
            },
        )
    };
    let settings = TransferSettings {
        content_layers,
        style_layers,
        weights,
        init: init(init_arg)?,
        ..run.base.clone()
    };
    let styles = if is_content {
        Vec::new()
    } else {
        vec![image.clone()]
    };
    let title = format!(
        "{} reconstruction of {} from {}",
        if is_content { "content" } else { "style" },
        file_name(image_path),
        layers.join(",")
    );
    optimize::execute(Job {
        content: image,
        styles,
        settings,
        output,
        run,
        title,
    })
}
