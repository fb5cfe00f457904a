//! `impasto video` end to end on a clip ffmpeg makes, with random VGG16 weights: a video with
//! audio in and out, shards into one folder joined afterwards, and clear errors. These tests need
//! ffmpeg and fail without it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{impasto, shared, stderr};

fn clip(dir: &Path) -> PathBuf {
    let path = dir.join("clip.mp4");
    let o = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x48:rate=10",
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440", "-t", "0.6"])
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"])
        .arg(&path)
        .output()
        .expect("these tests need ffmpeg (Debian: apt-get install ffmpeg)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    path
}

fn probe(path: &Path) -> String {
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,width,height,nb_frames",
        ])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn base(input: &Path, output: &Path) -> Vec<String> {
    let weights = shared().join("reference/vgg16_torchvision_format_random.pth");
    let style = shared().join("images/starry_night.jpg");
    [
        "video",
        "--input",
        input.to_str().unwrap(),
        "--style",
        style.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--size",
        "32",
        "--iterations",
        "4",
        "--model",
        "vgg16",
        "--weights",
        weights.to_str().unwrap(),
        "--style-layers",
        "relu1_1,relu2_1",
        "--content-layers",
        "relu2_1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run(home: &Path, args: &[String]) -> std::process::Output {
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    impasto(home, &args)
}

#[test]
fn a_clip_keeps_its_size_frames_and_audio() {
    let dir = tempfile::tempdir().unwrap();
    let src = clip(dir.path());
    let out = dir.path().join("out.mp4");
    let o = run(dir.path(), &base(&src, &out));
    assert!(o.status.success(), "{}", stderr(&o));
    let streams = probe(&out);
    assert!(streams.contains("video,64,48,6"), "{streams}");
    assert!(streams.contains("audio"), "{streams}");
    assert!(stderr(&o).contains("temporal loss on"), "{}", stderr(&o));
}

#[test]
fn shards_fill_one_folder_once_and_join_into_a_video() {
    let dir = tempfile::tempdir().unwrap();
    let src = clip(dir.path());
    let frames = dir.path().join("frames/");
    for index in ["1", "0"] {
        let mut args = base(&src, &frames);
        args.extend(
            [
                "--shard-index",
                index,
                "--shard-count",
                "2",
                "--warmup-frames",
                "2",
            ]
            .map(String::from),
        );
        let o = run(dir.path(), &args);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let names: Vec<String> = std::fs::read_dir(&frames)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 6, "{names:?}");
    // A retried shard finds its frames there and writes nothing.
    let mut args = base(&src, &frames);
    args.extend(["--shard-index", "0", "--shard-count", "2"].map(String::from));
    let o = run(dir.path(), &args);
    assert!(
        stderr(&o).contains("wrote 0 frame(s) (3 already there kept)"),
        "{}",
        stderr(&o)
    );
    let joined = dir.path().join("joined.mp4");
    let o = impasto(
        dir.path(),
        &[
            "video",
            "--join",
            "--input",
            frames.to_str().unwrap(),
            "--output",
            joined.to_str().unwrap(),
            "--fps",
            "10",
            "--audio-from",
            src.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let streams = probe(&joined);
    assert!(
        streams.contains("video,64,48,6") && streams.contains("audio"),
        "{streams}"
    );
}

#[test]
fn bad_inputs_and_a_missing_ffmpeg_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, "not a video").unwrap();
    let o = run(dir.path(), &base(&text, &dir.path().join("o.mp4")));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("is not a video ffmpeg can read"),
        "{}",
        stderr(&o)
    );
    let src = clip(dir.path());
    let o = Command::new(env!("CARGO_BIN_EXE_impasto"))
        .args(base(&src, &dir.path().join("o.mp4")))
        .env("IMPASTO_HOME", dir.path())
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("apt-get install ffmpeg"),
        "{}",
        stderr(&o)
    );
    // The output may not be the input.
    let o = run(dir.path(), &base(&src, &src));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("refusing to overwrite"),
        "{}",
        stderr(&o)
    );
}
