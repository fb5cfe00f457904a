//! The studio and the CLI are one tool with one set of defaults: a studio job with no settings
//! resolves to what `impasto transfer` with no flags does, and the command the studio shows for
//! a job parses (with this CLI's parser) back to the same settings.

use std::path::{Path, PathBuf};

use clap::Parser;
use impasto::transfer::Init;
use impasto_studio::id::Id;
use impasto_studio::params::{
    ColorChoice, InitChoice, JobParams, ModelChoice, OptimizerChoice, PoolingChoice,
};

use super::run_settings::RunSettings;
use super::transfer::settings;
use crate::cli::{Cli, Command, InitArg, TransferArgs};

fn parse(args: &[String]) -> TransferArgs {
    let argv = std::iter::once("impasto".to_string()).chain(args.iter().cloned());
    match Cli::try_parse_from(argv) {
        Ok(Cli {
            command: Command::Transfer(t),
            ..
        }) => t,
        Ok(other) => panic!("not a transfer: {other:?}"),
        Err(e) => panic!("the studio's command does not parse: {e}\n{args:?}"),
    }
}

fn job(params: JobParams) -> JobParams {
    JobParams {
        content: Id::random().to_string(),
        styles: vec![Id::random().to_string(), Id::random().to_string()],
        ..params
    }
}

/// The CLI's settings for parsed flags (the start image as the CLI would set it, for the
/// keyword starts).
fn cli_settings(args: &TransferArgs) -> (String, RunSettings) {
    let run = RunSettings::from_args(&args.run).unwrap();
    let init = match &args.init {
        InitArg::Content => Init::Content,
        InitArg::Style => Init::Style,
        InitArg::Noise => Init::Noise,
        other => panic!("{other:?} needs images"),
    };
    (format!("{:?}", settings(args, &run, init)), run)
}

#[test]
fn a_job_without_settings_is_a_transfer_without_flags() {
    let args = parse(&[
        "transfer".into(),
        "--content".into(),
        "c.jpg".into(),
        "--style".into(),
        "s.jpg".into(),
        "--output".into(),
        "o.png".into(),
    ]);
    let (cli, run) = cli_settings(&args);
    let studio = job(JobParams::default()).resolve(u32::MAX).unwrap();
    assert_eq!(format!("{:?}", studio.settings), cli);
    assert_eq!(studio.schedule, run.schedule);
    assert_eq!(studio.bit_depth, run.bit_depth);
}

#[test]
fn the_studios_command_reproduces_its_job() {
    let variants = [
        JobParams::default(),
        JobParams {
            size: 96,
            iterations: 30,
            style_weight: 5e4,
            tv_weight: 0.0,
            content_weight: 2.5,
            preserve_color: ColorChoice::Luminance,
            scales: "3".into(),
            start_size: 32,
            scale_iterations: 7,
            style_scale: 0.75,
            optimizer: OptimizerChoice::Adam,
            lr: Some(3.0),
            model: ModelChoice::Vgg16,
            pooling: PoolingChoice::Max,
            content_layers: vec!["relu3_2".into()],
            style_layers: vec!["relu1_1".into(), "relu2_1".into()],
            style_layer_weights: Some(vec![0.25, 0.75]),
            style_blend_weights: Some(vec![1.0, 3.0]),
            init: InitChoice::Noise,
            seed: 42,
            bit_depth: 16,
            ..JobParams::default()
        },
        JobParams {
            scales: "auto".into(),
            init: InitChoice::Style,
            preserve_color: ColorChoice::Histogram,
            lr: Some(0.5),
            ..JobParams::default()
        },
    ];
    let content = PathBuf::from("/data dir/uploads/photo's.jpg");
    let styles = [Path::new("/d/a.png"), Path::new("/d/b.tif")];
    for params in variants {
        let params = job(params);
        let studio = params.resolve(u32::MAX).unwrap();
        let line = params.command_args(&content, &styles, Path::new("out.png"), None);
        let args = parse(&line);
        assert_eq!(args.contents, vec![content.clone()]);
        assert_eq!(args.styles, styles);
        let (cli, run) = cli_settings(&args);
        assert_eq!(format!("{:?}", studio.settings), cli, "{line:?}");
        assert_eq!(studio.schedule, run.schedule, "{line:?}");
        assert_eq!(studio.bit_depth, run.bit_depth, "{line:?}");
    }
}

#[test]
fn a_start_from_an_earlier_result_is_an_init_file() {
    let params = job(JobParams {
        start_from: Some(Id::random().to_string()),
        ..JobParams::default()
    });
    let line = params.command_args(
        Path::new("c.jpg"),
        &[Path::new("s.jpg")],
        Path::new("o.png"),
        Some(Path::new("/data/jobs/x/result.png")),
    );
    assert_eq!(
        parse(&line).init,
        InitArg::File("/data/jobs/x/result.png".into())
    );
}
