//! `impasto bench --instant`: milliseconds per image of the instant networks at 512 and
//! 1024 px, and what loading costs. `bench/instant_ort.py` times onnxruntime on the
//! same synthetic inputs for comparison.

use std::time::{Duration, Instant};

use impasto::image_io::Image;
use impasto::instant::{PresetBlend, StyleSpec};

use super::{options, stylize};
use crate::cli::BenchArgs;

/// The sizes the issue asks for.
const SIZES: [usize; 2] = [512, 1024];

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    options::on_threads(args.threads, || run_on_pool(args))
}

/// A fixed smooth pattern (timing does not depend on the pixels).
fn pattern(w: usize, h: usize) -> Image {
    let rgb = (0..h)
        .flat_map(|y| {
            (0..w).flat_map(move |x| {
                [
                    255.0 * x as f32 / w as f32,
                    255.0 * y as f32 / h as f32,
                    127.5 + 127.5 * ((x + y) as f32 / 7.0).sin(),
                ]
            })
        })
        .collect();
    Image::new(w, h, rgb, None).expect("valid pattern")
}

fn best(repeats: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    f()?; // warm-up
    let mut best = Duration::MAX;
    for _ in 0..repeats {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed());
    }
    Ok(best)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn run_on_pool(args: &BenchArgs) -> anyhow::Result<()> {
    let repeats = args.iterations as usize;
    let t = Instant::now();
    let models = stylize::load_models()?;
    let load = t.elapsed();
    println!(
        "impasto bench --instant: the three networks on impasto's own runner; {} threads, best \
         of {repeats} after a warm-up",
        rayon::current_num_threads()
    );
    println!("load (parse the three ONNX files) {:8.0} ms", ms(load));
    let painting = pattern(256, 256);
    let vector = models.style_vector(&painting)?;
    let predict = best(repeats, || {
        models.style_vector(&painting)?;
        Ok(())
    })?;
    println!("style predictor (256 px)          {:8.0} ms", ms(predict));
    let presets = StyleSpec::presets(PresetBlend::single(7)?, 1.0)?;
    for size in SIZES {
        let photo = pattern(size, size);
        let transform = best(repeats, || {
            models.transform(&photo, &vector)?;
            Ok(())
        })?;
        let preset = best(repeats, || {
            models.stylize(&photo, &presets, size)?;
            Ok(())
        })?;
        println!(
            "{size}×{size}: transform {:6.0} ms (arbitrary style total {:6.0} ms with the \
             predictor), presets {:6.0} ms",
            ms(transform),
            ms(transform + predict),
            ms(preset)
        );
    }
    Ok(())
}
