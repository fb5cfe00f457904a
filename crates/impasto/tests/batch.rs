//! Batches through the library, offline (random weights, tiny images): the network and style
//! targets built once, skipping finished outputs, a bad input failing alone, the report, a
//! stopped batch keeping its partial image, and shards covering the list exactly once.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use impasto::batch::{
    expand_contents, partial_path, run_batch, work_list, BatchOptions, Event, ItemOutcome,
    NameTemplate, Shard,
};
use impasto::image_io::{self, BitDepth, Image};
use impasto::model::Architecture;
use impasto::transfer::{Init, PreparedStyles, Schedule, Transfer, TransferSettings};
use impasto::weights::VggWeights;

fn settings() -> TransferSettings {
    TransferSettings {
        size: 24,
        architecture: Architecture::Vgg16,
        style_layers: vec!["relu1_1".into(), "relu2_1".into()],
        content_layers: vec!["relu2_1".into()],
        ..TransferSettings::default()
    }
}

fn picture(w: usize, h: usize, seed: usize) -> Image {
    let rgb = (0..w * h * 3)
        .map(|i| ((i * (7 + seed) + seed * 31) % 256) as f32)
        .collect();
    Image::new(w, h, rgb, None).unwrap()
}

/// `n` photos in `dir` (PNG, a few sizes) and a file that is not an image.
fn photos(dir: &Path, n: usize) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for i in 0..n {
        let p = dir.join(format!("p{i}.png"));
        image_io::save(&picture(30 + i, 20 + 2 * i, i), &p).unwrap();
        paths.push(p);
    }
    paths
}

fn options(overwrite: bool) -> BatchOptions {
    BatchOptions {
        schedule: Schedule::single(24, 3),
        overwrite,
        bit_depth: BitDepth::Eight,
    }
}

fn no_events(_: Event<'_>) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

fn content_start(_: &Image) -> impasto::Result<Init> {
    Ok(Init::Content)
}

#[test]
fn style_targets_are_computed_once_and_equal_a_plain_transfers() {
    let weights = VggWeights::random(Architecture::Vgg16, 1);
    let style = picture(40, 36, 9);
    let prepared = PreparedStyles::new(&weights, vec![style.clone()], &settings()).unwrap();
    for seed in 0..3 {
        let content = picture(30 + seed, 22, seed);
        let mut shared = prepared.transfer(&content, 24, Init::Content).unwrap();
        let mut plain = Transfer::new(
            &weights,
            &content,
            std::slice::from_ref(&style),
            &settings(),
        )
        .unwrap();
        let a = shared.run(2, |_, _| ControlFlow::Continue(())).unwrap();
        let b = plain.run(2, |_, _| ControlFlow::Continue(())).unwrap();
        // The same targets, so the same run, bit for bit.
        assert_eq!(a.best.total, b.best.total, "photo {seed}");
        assert_eq!(shared.best_image().rgb, plain.best_image().rgb);
    }
    assert_eq!(prepared.style_target_computations(), 1);
    // Another working size needs its own targets, once.
    let content = picture(30, 22, 0);
    prepared.transfer(&content, 20, Init::Content).unwrap();
    prepared.transfer(&content, 20, Init::Content).unwrap();
    assert_eq!(prepared.style_target_computations(), 2);
}

#[test]
fn colour_preservation_recomputes_targets_per_photo() {
    let weights = VggWeights::random(Architecture::Vgg16, 1);
    let settings = TransferSettings {
        preserve_color: impasto::color::PreserveColor::Histogram,
        ..settings()
    };
    let style = picture(40, 36, 9);
    let prepared = PreparedStyles::new(&weights, vec![style.clone()], &settings).unwrap();
    for seed in 0..2 {
        let content = picture(30, 22, seed);
        let mut shared = prepared.transfer(&content, 24, Init::Content).unwrap();
        let mut plain =
            Transfer::new(&weights, &content, std::slice::from_ref(&style), &settings).unwrap();
        let a = shared.run(1, |_, _| ControlFlow::Continue(())).unwrap();
        let b = plain.run(1, |_, _| ControlFlow::Continue(())).unwrap();
        assert_eq!(a.best.total, b.best.total);
    }
    assert_eq!(prepared.style_target_computations(), 2);
}

#[test]
fn a_batch_skips_what_is_done_and_a_bad_input_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    photos(&input, 3);
    std::fs::write(input.join("p1b.png"), b"not a png").unwrap();
    let contents = expand_contents(std::slice::from_ref(&input)).unwrap();
    assert_eq!(contents.len(), 4);
    let items = work_list(&contents, &out, &NameTemplate::default(), "s", &[]).unwrap();
    let weights = VggWeights::random(Architecture::Vgg16, 1);
    let prepared = PreparedStyles::new(&weights, vec![picture(40, 36, 9)], &settings()).unwrap();
    let run = |overwrite| {
        let shard = Shard::whole();
        let o = options(overwrite);
        run_batch(
            &prepared,
            &items,
            shard,
            items.len(),
            &o,
            content_start,
            no_events,
        )
    };

    let first = run(false);
    let outcomes: Vec<ItemOutcome> = first.items.iter().map(|i| i.outcome).collect();
    use ItemOutcome::*;
    assert_eq!(outcomes, [Succeeded, Succeeded, Failed, Succeeded]);
    assert_eq!(first.summary_line(), "3 succeeded, 0 skipped, 1 failed");
    let bad = &first.items[2];
    assert!(bad.content.ends_with("p1b.png"));
    assert!(bad.error.as_deref().unwrap().contains("p1b.png"), "{bad:?}");
    assert!(!bad.output.exists(), "a failed item writes nothing");
    for item in first.items.iter().filter(|i| i.outcome == Succeeded) {
        let written = image_io::load(&item.output).unwrap();
        assert_eq!(written.long_side(), 24);
        assert_eq!(item.iterations, 3);
        assert!(item.best_loss.unwrap().is_finite());
    }
    // The network and targets were built once for the whole batch.
    assert_eq!(prepared.style_target_computations(), 1);

    // The JSON report says the same.
    let json: serde_json::Value = serde_json::from_str(&first.to_json()).unwrap();
    assert_eq!(json["summary"]["succeeded"], 3);
    assert_eq!(json["summary"]["failed"], 1);
    assert_eq!(json["shard"]["count"], 1);
    assert_eq!(json["items"][2]["outcome"], "failed");
    assert!(json["items"][2]["error"]
        .as_str()
        .unwrap()
        .contains("p1b.png"));
    assert!(json["items"][0]["seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(json["items"].as_array().unwrap().len(), 4);

    // A rerun does only what is missing, leaving finished outputs untouched.
    let before = std::fs::read(&first.items[0].output).unwrap();
    std::fs::remove_file(&first.items[3].output).unwrap();
    let again = run(false);
    let outcomes: Vec<ItemOutcome> = again.items.iter().map(|i| i.outcome).collect();
    assert_eq!(outcomes, [Skipped, Skipped, Failed, Succeeded]);
    assert_eq!(std::fs::read(&first.items[0].output).unwrap(), before);
    // --overwrite redoes them.
    let redo = run(true);
    assert_eq!(redo.count(Succeeded), 3);
}

#[test]
fn a_stopped_batch_keeps_the_partial_image_and_a_rerun_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let paths = photos(dir.path(), 3);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let template = NameTemplate::parse("{stem}.png").unwrap();
    let items = work_list(&paths, &out, &template, "s", &[]).unwrap();
    let weights = VggWeights::random(Architecture::Vgg16, 1);
    let prepared = PreparedStyles::new(&weights, vec![picture(40, 36, 9)], &settings()).unwrap();
    let o = options(false);
    // Stop during the second photo's second iteration.
    let mut seen = 0;
    let report = run_batch(
        &prepared,
        &items,
        Shard::whole(),
        3,
        &o,
        content_start,
        |e| match e {
            Event::Started { index, .. } => {
                seen = index;
                ControlFlow::Continue(())
            }
            Event::Iteration { record, .. } if seen == 1 && record.iteration == 2 => {
                ControlFlow::Break(())
            }
            _ => ControlFlow::Continue(()),
        },
    );
    let outcomes: Vec<ItemOutcome> = report.items.iter().map(|i| i.outcome).collect();
    assert_eq!(outcomes, [ItemOutcome::Succeeded, ItemOutcome::Interrupted]);
    assert_eq!(report.not_reached, 1);
    assert!(report.interrupted());
    assert!(
        !items[1].output.exists(),
        "an interrupted result is not a finished one"
    );
    assert!(partial_path(&items[1].output).exists());
    assert!(!items[2].output.exists());

    let rerun = run_batch(
        &prepared,
        &items,
        Shard::whole(),
        3,
        &o,
        content_start,
        no_events,
    );
    let outcomes: Vec<ItemOutcome> = rerun.items.iter().map(|i| i.outcome).collect();
    use ItemOutcome::*;
    assert_eq!(outcomes, [Skipped, Succeeded, Succeeded]);
    assert!(items[1].output.exists());
    assert!(
        !partial_path(&items[1].output).exists(),
        "the partial image is superseded"
    );
}

#[test]
fn shards_run_every_photo_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let paths = photos(dir.path(), 5);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let contents = expand_contents(&[dir.path().join("*.png")]).unwrap();
    assert_eq!(contents, paths);
    let items = work_list(&contents, &out, &NameTemplate::default(), "s", &[]).unwrap();
    let weights = VggWeights::random(Architecture::Vgg16, 1);
    let prepared = PreparedStyles::new(&weights, vec![picture(40, 36, 9)], &settings()).unwrap();
    let mut done = Vec::new();
    for index in 0..3 {
        let shard = Shard::new(index, 3).unwrap();
        let report = run_batch(
            &prepared,
            shard.take(&items),
            shard,
            items.len(),
            &options(false),
            content_start,
            no_events,
        );
        assert_eq!(
            report.count(ItemOutcome::Skipped),
            0,
            "shard {index} redid work"
        );
        done.extend(report.items.iter().map(|i| i.output.clone()));
    }
    let expected: Vec<PathBuf> = items.iter().map(|i| i.output.clone()).collect();
    assert_eq!(done, expected);
}
