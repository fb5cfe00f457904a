//! Frames through the real `ffmpeg` and `ffprobe` (these tests fail, not skip, without them).

use std::path::Path;
use std::process::Command;

use super::*;
use crate::image_io::{self, BitDepth, Image};
use crate::ErrorKind;

fn gradient_frame(w: usize, h: usize, t: usize) -> Image {
    let rgb = (0..w * h)
        .flat_map(|p| {
            let (x, y) = (p % w, p / w);
            [
                (x * 255 / w) as f32,
                (y * 255 / h) as f32,
                ((t * 40) % 256) as f32,
            ]
        })
        .collect();
    Image::new(w, h, rgb, None).unwrap()
}

/// A 1 s test clip with a sine tone, made by ffmpeg itself.
fn clip_with_audio(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("src.mp4");
    let o = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x48:rate=10",
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=22050"])
        .args([
            "-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
        ])
        .arg(&path)
        .output()
        .expect("these tests need ffmpeg (Debian: apt-get install ffmpeg)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    path
}

#[test]
fn a_video_written_reads_back_with_its_size_rate_and_frames() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.mp4");
    let ffmpeg = Ffmpeg::default();
    let rate = FrameRate { num: 12, den: 1 };
    let mut w = FrameWriter::video(&ffmpeg, &path, (48, 32), rate, None).unwrap();
    for t in 0..5 {
        w.write(t, &gradient_frame(48, 32, t)).unwrap();
    }
    assert!(!path.exists(), "nothing at the output before finish");
    w.finish().unwrap();
    let mut r = FrameReader::open(&path, &ffmpeg).unwrap();
    let info = r.info().clone();
    assert_eq!((info.width, info.height, info.frame_rate), (48, 32, rate));
    assert_eq!(info.frames, Some(5));
    assert!(!info.has_audio);
    let mut n = 0;
    while let Some(f) = r.next_frame().unwrap() {
        let want = gradient_frame(48, 32, n);
        let err: f32 = f
            .rgb
            .iter()
            .zip(&want.rgb)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / f.rgb.len() as f32;
        assert!(err < 4.0, "frame {n}: mean error {err} (H.264 at CRF 18)");
        n += 1;
    }
    assert_eq!(n, 5);
    // No temporary file left behind.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

#[test]
fn audio_is_copied_and_an_unfinished_video_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = clip_with_audio(dir.path());
    let ffmpeg = Ffmpeg::default();
    let info = probe(&ffmpeg, &src).unwrap();
    assert!(info.has_audio);
    assert_eq!((info.width, info.height, info.frames), (64, 48, Some(10)));
    let out = dir.path().join("styled.mkv");
    let mut w = FrameWriter::video(&ffmpeg, &out, (64, 48), info.frame_rate, Some(&src)).unwrap();
    let mut r = FrameReader::open(&src, &ffmpeg).unwrap();
    let mut i = 0;
    while let Some(f) = r.next_frame().unwrap() {
        w.write(i, &f).unwrap();
        i += 1;
    }
    assert_eq!(i, 10);
    w.finish().unwrap();
    let got = probe(&ffmpeg, &out).unwrap();
    assert!(got.has_audio, "audio copied");
    assert_eq!((got.width, got.height, got.frames), (64, 48, Some(10)));

    // Dropped without finish (an error half-way): no output, no temporary.
    let lost = dir.path().join("lost.mp4");
    let mut w = FrameWriter::video(&ffmpeg, &lost, (64, 48), info.frame_rate, None).unwrap();
    w.write(0, &gradient_frame(64, 48, 0)).unwrap();
    drop(w);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains("lost")), "{names:?}");
}

#[test]
fn bad_inputs_and_a_missing_ffmpeg_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("clip.mp4");
    std::fs::write(&text, "not a video\n").unwrap();
    let ffmpeg = Ffmpeg::default();
    let err = FrameReader::open(&text, &ffmpeg).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Image);
    assert!(
        format!("{err:#}").contains("is not a video ffmpeg can read"),
        "{err:#}"
    );

    let err = FrameReader::open(&dir.path().join("missing.mp4"), &ffmpeg)
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Io);

    let absent = Ffmpeg {
        ffmpeg: "/nonexistent/ffmpeg".into(),
        ffprobe: "/nonexistent/ffprobe".into(),
    };
    let err = FrameReader::open(&text, &absent).err().unwrap();
    assert!(
        format!("{err:#}").contains("apt-get install ffmpeg"),
        "{err:#}"
    );
    let out = dir.path().join("o.mp4");
    let err = FrameWriter::video(&absent, &out, (8, 8), DEFAULT_FOLDER_FPS, None)
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("/nonexistent/ffmpeg was not found"),
        "{err:#}"
    );

    let empty = tempfile::tempdir().unwrap();
    let err = FrameReader::open(empty.path(), &ffmpeg).err().unwrap();
    assert!(err.to_string().contains("holds no frames"), "{err}");
    assert!(FrameRate::parse("0/1").is_err() && FrameRate::parse("abc").is_err());
    assert_eq!(
        FrameRate::parse("30000/1001").unwrap().to_string(),
        "30000/1001"
    );
    assert_eq!(FrameRate::parse("25").unwrap().fps(), 25.0);
}

#[test]
fn folders_of_frames_are_read_in_name_order_and_written_numbered() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for t in [2usize, 0, 1] {
        image_io::save(
            &gradient_frame(20, 10, t),
            &input.join(format!("f{t:03}.png")),
        )
        .unwrap();
    }
    std::fs::write(input.join("notes.txt"), "ignored").unwrap();
    let mut r = FrameReader::open(&input, &Ffmpeg::default()).unwrap();
    assert_eq!(r.info().frames, Some(3));
    let out = dir.path().join("out");
    let mut w = FrameWriter::folder(&out, BitDepth::Eight).unwrap();
    let mut t = 0;
    while let Some(f) = r.next_frame().unwrap() {
        assert_eq!(f, gradient_frame(20, 10, t), "frame {t} in name order");
        w.write(t + 4, &f).unwrap();
        t += 1;
    }
    w.finish().unwrap();
    let names: Vec<_> = frame_files(&out).unwrap();
    let names: Vec<_> = names
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        ["frame_000005.png", "frame_000006.png", "frame_000007.png"]
    );

    // A frame of another size is refused by name.
    image_io::save(&gradient_frame(12, 10, 0), &input.join("f003.png")).unwrap();
    let mut r = FrameReader::open(&input, &Ffmpeg::default()).unwrap();
    for _ in 0..3 {
        r.next_frame().unwrap();
    }
    let err = r.next_frame().unwrap_err();
    assert!(format!("{err:#}").contains("f003.png"), "{err:#}");
}
