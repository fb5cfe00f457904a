//! `impasto video`: every frame of a video (or a folder of frames) stylised in order, each
//! started from and held to the previous result warped by the optical flow; and `--join`, which
//! encodes a folder of frames (the shards' common output) into a video.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use impasto::batch::Shard;
use impasto::image_io::{self, BitDepth, Image};
use impasto::loss::LossWeights;
use impasto::optim::{AdamConfig, LbfgsConfig};
use impasto::transfer::{OptimizerSettings, Stop, TransferSettings};
use impasto::video::{
    frame_name, shard_frames, Ffmpeg, FrameReader, FrameStylizer, FrameWriter, HornSchunck,
    VideoSettings, DEFAULT_FOLDER_FPS,
};

use super::optimize::{install_interrupt_handler, stop_signal, Interrupted};
use super::options;
use crate::cli::{OptimizerArg, VideoArgs};

pub fn run(args: &VideoArgs) -> anyhow::Result<()> {
    if args.join {
        return join(args);
    }
    let shard = Shard::resolve(args.shard_index, args.shard_count)?;
    options::on_threads(args.threads, || stylize(args, shard))
}

/// An output is a folder of frames when it is one already, ends in `/` or has no extension.
fn is_folder(path: &Path) -> bool {
    path.is_dir() || path.as_os_str().to_string_lossy().ends_with('/') || path.extension().is_none()
}

/// Refuses an output that is one of the inputs (or the input folder itself).
fn check_not_input(output: &Path, inputs: &[&Path]) -> anyhow::Result<()> {
    let Ok(out) = output.canonicalize() else {
        return Ok(());
    };
    for input in inputs {
        if input.canonicalize().ok().as_deref() == Some(out.as_path()) {
            bail!(
                "--output {} is the input {}: refusing to overwrite it (choose another path)",
                output.display(),
                input.display()
            );
        }
    }
    Ok(())
}

fn settings(args: &VideoArgs) -> TransferSettings {
    let lr = args.lr.unwrap_or(1.0);
    TransferSettings {
        size: args.size as usize,
        style_scale: args.style_scale,
        architecture: options::architecture(args.model),
        pooling: options::pooling(args.pooling),
        content_layers: args.content_layers.clone(),
        style_layers: args.style_layers.clone(),
        style_blend_weights: args.style_blend_weights.clone(),
        weights: LossWeights {
            content: args.content_weight,
            style: args.style_weight,
            tv: args.tv_weight,
        },
        optimizer: match args.optimizer {
            OptimizerArg::Lbfgs => OptimizerSettings::Lbfgs(LbfgsConfig {
                learning_rate: lr,
                ..LbfgsConfig::default()
            }),
            OptimizerArg::Adam => OptimizerSettings::Adam(AdamConfig {
                learning_rate: lr,
                ..AdamConfig::default()
            }),
        },
        seed: args.seed,
        ..TransferSettings::default()
    }
}

fn stylize(args: &VideoArgs, shard: Shard) -> anyhow::Result<()> {
    let mut inputs: Vec<&Path> = vec![args.input.as_path()];
    inputs.extend(args.styles.iter().map(|p| p.as_path()));
    check_not_input(&args.output, &inputs)?;
    let to_folder = is_folder(&args.output);
    if !shard.is_whole() && !to_folder {
        bail!(
            "shard {} of {}: shards write frames into one folder (--output DIR/), which \
             `impasto video --join --input DIR --output VIDEO` then encodes",
            shard.index(),
            shard.count()
        );
    }
    let ffmpeg = Ffmpeg::default();
    let mut reader = FrameReader::open(&args.input, &ffmpeg)
        .with_context(|| format!("--input {}", args.input.display()))?;
    let info = reader.info().clone();
    let frame_rate = match (args.fps, args.input.is_dir()) {
        (Some(rate), true) => rate,
        (Some(_), false) => bail!("--fps is for folder inputs; a video keeps its own frame rate"),
        (None, _) => info.frame_rate,
    };
    let total = info.frames;
    let (processed, written) = match total {
        Some(n) => shard_frames(shard.range(n), args.warmup_frames),
        None if shard.is_whole() => (0..usize::MAX, 0..usize::MAX),
        None => bail!(
            "{} does not say how many frames it has, which a shard needs",
            args.input.display()
        ),
    };
    let styles = args
        .styles
        .iter()
        .map(|p| image_io::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    let settings = settings(args);
    let (weights, weights_path) =
        options::load_weights(settings.architecture, args.weights.as_deref())?;
    tracing::info!("weights: {}", weights_path.display());
    // γ = 0 is the per-frame baseline: no temporal loss and no warm start either.
    let video = if args.temporal_weight == 0.0 {
        VideoSettings::per_frame(args.iterations as usize)
    } else {
        let mut video = VideoSettings::with_iterations(args.iterations as usize);
        if let Some(n) = args.later_iterations {
            video.later_iterations = n as usize;
        }
        video.temporal_weight = args.temporal_weight;
        video
    };
    let flow = HornSchunck::default();
    let mut stylizer = FrameStylizer::new(&weights, &styles, settings, video, &flow);
    let mut writer = if to_folder {
        FrameWriter::folder(&args.output, BitDepth::Eight)?
    } else {
        let audio = info.has_audio.then_some(args.input.as_path());
        FrameWriter::video(
            &ffmpeg,
            &args.output,
            (info.width, info.height),
            frame_rate,
            audio,
        )?
    };
    install_interrupt_handler();
    let (ww, wh) = stylizer.working_size(info.width, info.height);
    let count = total.map_or("?".to_string(), |n| n.to_string());
    if !args.quiet {
        let part = if shard.is_whole() {
            String::new()
        } else {
            format!(
                ", shard {} of {}: frames {}–{} ({} warm-up)",
                shard.index(),
                shard.count(),
                written.start + 1,
                written.end,
                written.start - processed.start
            )
        };
        eprintln!(
            "{} frames {}×{} at {} fps, stylised at {ww}×{wh}{part}",
            count,
            info.width,
            info.height,
            frame_rate.fps()
        );
    }
    let mut index = 0;
    let mut kept = 0;
    let mut interrupted = false;
    while index < processed.end {
        let Some(frame) = reader.next_frame()? else {
            break;
        };
        let current = index;
        index += 1;
        if current < processed.start {
            continue;
        }
        let writes = written.contains(&current);
        let existing = args.output.join(frame_name(current));
        if to_folder && writes && existing.is_file() {
            // Done by an earlier (interrupted or retried) run: kept, and the next frame follows it.
            let done = image_io::load(&existing)?;
            stylizer.set_previous(&frame, &done)?;
            kept += 1;
            continue;
        }
        let started = Instant::now();
        let outcome = stylizer.next(&frame, |_, _| {
            if stop_signal() != 0 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        if outcome.summary.stop == Stop::Interrupted {
            interrupted = true;
            break;
        }
        if writes {
            let image = image_io::resize(&outcome.image, info.width, info.height)?;
            writer.write(current, &opaque(image))?;
        }
        if !args.quiet {
            let role = if writes {
                ""
            } else {
                " (warm-up, not written)"
            };
            let temporal = outcome.coverage.map_or(String::new(), |c| {
                format!(", temporal loss on {:.0}% of pixels", 100.0 * c)
            });
            eprintln!(
                "frame {}/{count}{role}: {} iterations, loss {:.4e}{temporal}, {:.1} s",
                current + 1,
                outcome.summary.iterations,
                outcome.summary.best.total,
                started.elapsed().as_secs_f64()
            );
        }
        if stop_signal() != 0 {
            interrupted = true;
            break;
        }
    }
    let new = writer.written();
    writer.finish()?;
    if !args.quiet {
        let skipped = if kept > 0 {
            format!(" ({kept} already there kept)")
        } else {
            String::new()
        };
        eprintln!("wrote {new} frame(s){skipped} to {}", args.output.display());
    }
    if interrupted {
        return Err(Interrupted {
            output: args.output.clone(),
            signal: stop_signal(),
        }
        .into());
    }
    Ok(())
}

/// Videos have no alpha: a frame is written as RGB.
fn opaque(mut image: Image) -> Image {
    image.alpha = None;
    image
}

/// `--join`: the frames of a folder encoded into a video, with another video's audio.
fn join(args: &VideoArgs) -> anyhow::Result<()> {
    if !args.input.is_dir() {
        bail!(
            "--join encodes a folder of frames, and {} is not a folder",
            args.input.display()
        );
    }
    if is_folder(&args.output) {
        bail!(
            "--join writes a video file (like out.mp4), and {} is a folder",
            args.output.display()
        );
    }
    let mut inputs: Vec<&Path> = vec![args.input.as_path()];
    inputs.extend(args.audio_from.as_deref());
    check_not_input(&args.output, &inputs)?;
    let ffmpeg = Ffmpeg::default();
    let mut reader = FrameReader::open(&args.input, &ffmpeg)?;
    let info = reader.info().clone();
    let rate = args.fps.unwrap_or(DEFAULT_FOLDER_FPS);
    let mut writer = FrameWriter::video(
        &ffmpeg,
        &args.output,
        (info.width, info.height),
        rate,
        args.audio_from.as_deref(),
    )?;
    let mut index = 0;
    while let Some(frame) = reader.next_frame()? {
        writer.write(index, &frame)?;
        index += 1;
    }
    writer.finish()?;
    if !args.quiet {
        eprintln!(
            "joined {index} frames at {} fps into {}",
            rate.fps(),
            args.output.display()
        );
    }
    Ok(())
}
