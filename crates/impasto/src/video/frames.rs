//! Frames in and out: videos through Debian's `ffmpeg` and `ffprobe` programs over pipes (raw
//! `rgb24`), and folders of numbered images.
//!
//! Running the programs rather than linking libav keeps the library free of system libraries;
//! `ffmpeg` decodes anything it knows, and the output keeps the input's frame rate and audio.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

use crate::image_io::{self, BitDepth, Image};
use crate::{Error, ErrorKind, Result};

/// The frame rate of image-sequence folders, which carry none: 25 fps (PAL), ffmpeg's own
/// default for image sequences.
pub const DEFAULT_FOLDER_FPS: FrameRate = FrameRate { num: 25, den: 1 };

/// Where the `ffmpeg` and `ffprobe` programs are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ffmpeg {
    /// The `ffmpeg` program.
    pub ffmpeg: PathBuf,
    /// The `ffprobe` program.
    pub ffprobe: PathBuf,
}

impl Default for Ffmpeg {
    /// `ffmpeg` and `ffprobe` from `PATH`, or `IMPASTO_FFMPEG` and `IMPASTO_FFPROBE`.
    fn default() -> Self {
        let program = |var: &str, name: &str| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from(name), PathBuf::from)
        };
        Ffmpeg {
            ffmpeg: program("IMPASTO_FFMPEG", "ffmpeg"),
            ffprobe: program("IMPASTO_FFPROBE", "ffprobe"),
        }
    }
}

impl Ffmpeg {
    fn spawn(&self, program: &Path, args: &[OsString], stdin: Stdio) -> Result<Child> {
        Command::new(program)
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| missing_program(program, e))
    }
}

fn missing_program(program: &Path, e: std::io::Error) -> Error {
    let message = if e.kind() == std::io::ErrorKind::NotFound {
        format!(
            "{} was not found: videos are read and written with FFmpeg's programs \
             (Debian/Ubuntu: `apt-get install ffmpeg`); folders of images need neither",
            program.display()
        )
    } else {
        format!("cannot run {}", program.display())
    };
    Error::new(ErrorKind::Io, message).with_source(e)
}

/// A frame rate as a fraction (NTSC's is 30000/1001).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRate {
    /// Numerator.
    pub num: u32,
    /// Denominator.
    pub den: u32,
}

impl FrameRate {
    /// Frames per second.
    pub fn fps(self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// Parses `30000/1001`, `25` or `29.97`; refuses zero, negative and non-finite rates.
    pub fn parse(text: &str) -> Result<FrameRate> {
        let bad = || {
            Error::parameter(format!(
                "`{text}` is not a frame rate (like 25 or 30000/1001)"
            ))
        };
        let rate = match text.trim().split_once('/') {
            Some((n, d)) => FrameRate {
                num: n.trim().parse().map_err(|_| bad())?,
                den: d.trim().parse().map_err(|_| bad())?,
            },
            None => {
                let fps: f64 = text.trim().parse().map_err(|_| bad())?;
                if !(fps.is_finite() && fps > 0.0 && fps <= 10_000.0) {
                    return Err(bad());
                }
                FrameRate {
                    num: (fps * 1000.0).round() as u32,
                    den: 1000,
                }
            }
        };
        if rate.num == 0 || rate.den == 0 {
            return Err(bad());
        }
        Ok(rate)
    }
}

impl std::fmt::Display for FrameRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.num, self.den)
    }
}

/// What a video (or a folder of frames) holds.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoInfo {
    /// Frame width in pixels.
    pub width: usize,
    /// Frame height in pixels.
    pub height: usize,
    /// Frames per second; folders get [`DEFAULT_FOLDER_FPS`].
    pub frame_rate: FrameRate,
    /// How many frames, where the container says (folders always do).
    pub frames: Option<usize>,
    /// Whether there is an audio stream to copy.
    pub has_audio: bool,
}

/// Asks `ffprobe` about a video file's first video stream and whether it has audio.
pub fn probe(ffmpeg: &Ffmpeg, path: &Path) -> Result<VideoInfo> {
    if let Err(e) = std::fs::metadata(path) {
        return Err(Error::io(path, e));
    }
    let args: Vec<OsString> = [
        "-v",
        "error",
        "-show_entries",
        "stream=codec_type,width,height,r_frame_rate,nb_frames",
        "-of",
        "json",
    ]
    .iter()
    .map(OsString::from)
    .chain([path.as_os_str().to_owned()])
    .collect();
    let out = ffmpeg.spawn(&ffmpeg.ffprobe, &args, Stdio::null())?;
    let out = out
        .wait_with_output()
        .map_err(|e| missing_program(&ffmpeg.ffprobe, e))?;
    let not_video = |why: String| {
        Error::new(
            ErrorKind::Image,
            format!("{} is not a video ffmpeg can read: {why}", path.display()),
        )
    };
    if !out.status.success() {
        return Err(not_video(last_line(&String::from_utf8_lossy(&out.stderr))));
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| not_video(format!("ffprobe's answer is not JSON ({e})")))?;
    let streams = json["streams"].as_array().cloned().unwrap_or_default();
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .ok_or_else(|| not_video("it has no video stream".into()))?;
    let dim = |k: &str| video[k].as_u64().filter(|&d| d > 0).map(|d| d as usize);
    let (Some(width), Some(height)) = (dim("width"), dim("height")) else {
        return Err(not_video("its video stream has no size".into()));
    };
    let frame_rate = video["r_frame_rate"]
        .as_str()
        .and_then(|r| FrameRate::parse(r).ok())
        .ok_or_else(|| not_video("its video stream has no frame rate".into()))?;
    let frames = match video["nb_frames"].as_str().and_then(|n| n.parse().ok()) {
        Some(n) => Some(n),
        // Containers like Matroska keep no count: count the packets (no decoding).
        None => count_packets(ffmpeg, path),
    };
    let has_audio = streams.iter().any(|s| s["codec_type"] == "audio");
    Ok(VideoInfo {
        width,
        height,
        frame_rate,
        frames,
        has_audio,
    })
}

/// The video stream's packets counted by `ffprobe` (one per frame), if it can.
fn count_packets(ffmpeg: &Ffmpeg, path: &Path) -> Option<usize> {
    let args: Vec<OsString> = [
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-count_packets",
        "-show_entries",
        "stream=nb_read_packets",
        "-of",
        "csv=p=0",
    ]
    .iter()
    .map(OsString::from)
    .chain([path.as_os_str().to_owned()])
    .collect();
    let out = ffmpeg
        .spawn(&ffmpeg.ffprobe, &args, Stdio::null())
        .ok()?
        .wait_with_output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The last non-empty line of a program's error output: usually the reason.
fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no message)")
        .trim()
        .to_string()
}

/// Image files a folder of frames may hold, by extension.
const FRAME_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "tif", "tiff"];

/// The image files in `dir`, sorted by name (frames numbered with leading zeros sort in order).
pub fn frame_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let is_frame = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| FRAME_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if is_frame && !hidden && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The frames of a video or of a folder of images, in order.
pub struct FrameReader {
    info: VideoInfo,
    source: Source,
    read: usize,
}

enum Source {
    Pipe {
        child: Child,
        stdout: ChildStdout,
        stderr: Option<JoinHandle<String>>,
        path: PathBuf,
        program: PathBuf,
    },
    Folder(Vec<PathBuf>),
}

impl FrameReader {
    /// Opens a video file (through `ffmpeg`) or a folder of images (every frame must have the
    /// first one's size).
    pub fn open(path: &Path, ffmpeg: &Ffmpeg) -> Result<FrameReader> {
        if path.is_dir() {
            let files = frame_files(path)?;
            let Some(first) = files.first() else {
                return Err(Error::new(
                    ErrorKind::Image,
                    format!(
                        "{} holds no frames (.png, .jpg or .tif images)",
                        path.display()
                    ),
                ));
            };
            let first = image_io::load(first)?;
            let info = VideoInfo {
                width: first.width,
                height: first.height,
                frame_rate: DEFAULT_FOLDER_FPS,
                frames: Some(files.len()),
                has_audio: false,
            };
            return Ok(FrameReader {
                info,
                source: Source::Folder(files),
                read: 0,
            });
        }
        let info = probe(ffmpeg, path)?;
        let mut args: Vec<OsString> = ["-v", "error", "-nostdin", "-i"]
            .iter()
            .map(OsString::from)
            .collect();
        args.push(path.as_os_str().to_owned());
        // Every decoded frame once, in its stored size (no rate conversion).
        args.extend(
            [
                "-map",
                "0:v:0",
                "-vsync",
                "passthrough",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "rgb24",
                "-",
            ]
            .iter()
            .map(OsString::from),
        );
        let mut child = ffmpeg.spawn(&ffmpeg.ffmpeg, &args, Stdio::null())?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().map(collect);
        Ok(FrameReader {
            info,
            source: Source::Pipe {
                child,
                stdout,
                stderr,
                path: path.to_path_buf(),
                program: ffmpeg.ffmpeg.clone(),
            },
            read: 0,
        })
    }

    /// What the input holds.
    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// The next frame (RGB, 0–255, the input's size), or `None` after the last.
    pub fn next_frame(&mut self) -> Result<Option<Image>> {
        let (w, h) = (self.info.width, self.info.height);
        let frame = match &mut self.source {
            Source::Folder(files) => match files.get(self.read) {
                None => None,
                Some(path) => {
                    let mut frame = image_io::load(path)?;
                    if (frame.width, frame.height) != (w, h) {
                        return Err(Error::image(
                            path,
                            format!(
                                "is {}×{} but the first frame is {w}×{h}; every frame of a \
                                 folder must have one size",
                                frame.width, frame.height
                            ),
                        ));
                    }
                    frame.alpha = None;
                    Some(frame)
                }
            },
            Source::Pipe {
                child,
                stdout,
                stderr,
                path,
                program,
            } => {
                let mut bytes = vec![0u8; w * h * 3];
                let got = read_full(stdout, &mut bytes).map_err(|e| Error::io(&*path, e))?;
                if got == bytes.len() {
                    let rgb = bytes.iter().map(|&b| b as f32).collect();
                    Some(Image::new(w, h, rgb, None)?)
                } else {
                    let status = child.wait().map_err(|e| missing_program(program, e))?;
                    let message = stderr.take().map(|t| t.join().unwrap_or_default());
                    if !status.success() {
                        return Err(Error::new(
                            ErrorKind::Image,
                            format!(
                                "{} could not be decoded after {} frame(s): {}",
                                path.display(),
                                self.read,
                                last_line(&message.unwrap_or_default())
                            ),
                        ));
                    }
                    if got != 0 {
                        return Err(Error::new(
                            ErrorKind::Image,
                            format!("{} ends inside frame {}", path.display(), self.read + 1),
                        ));
                    }
                    None
                }
            }
        };
        if frame.is_some() {
            self.read += 1;
        }
        Ok(frame)
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        if let Source::Pipe { child, .. } = &mut self.source {
            // Stopped early (an error, an interrupt, a shard's end): no need to decode the rest.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads until `buf` is full or the stream ends; how many bytes were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// A thread keeping the last few KiB a program writes to stderr, so that it never blocks on a
/// full pipe and its reason can be shown.
fn collect(mut stderr: std::process::ChildStderr) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut chunk) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&chunk[..n]);
            if all.len() > 16 * 1024 {
                all.drain(..all.len() - 8 * 1024);
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    })
}

/// The name of frame `index` (0-based) in an output folder: `frame_000001.png` for the first,
/// as `ffmpeg -i DIR/frame_%06d.png` reads them back.
pub fn frame_name(index: usize) -> String {
    format!("frame_{:06}.png", index + 1)
}

/// Where stylised frames go: a video file (through `ffmpeg`, written to a temporary file and
/// renamed into place by [`FrameWriter::finish`]) or a folder of PNG images (each written
/// atomically as it comes).
pub struct FrameWriter {
    sink: Sink,
    written: usize,
}

enum Sink {
    Pipe {
        child: Child,
        stdin: Option<ChildStdin>,
        stderr: Option<JoinHandle<String>>,
        tmp: tempfile::TempPath,
        target: PathBuf,
        program: PathBuf,
        size: (usize, usize),
    },
    Folder(PathBuf, BitDepth),
}

impl FrameWriter {
    /// Frames into a folder (created if missing) as `frame_NNNNNN.png`, numbered by their
    /// index in the input.
    pub fn folder(dir: &Path, depth: BitDepth) -> Result<FrameWriter> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(FrameWriter {
            sink: Sink::Folder(dir.to_path_buf(), depth),
            written: 0,
        })
    }

    /// A video at `path` of `width × height` frames at `frame_rate`, encoded by `ffmpeg` in the
    /// format the extension names (H.264 in yuv420p for .mp4, .mkv and .mov), with the audio of
    /// `audio_from` copied (if it has any). Nothing appears at `path` until
    /// [`FrameWriter::finish`].
    pub fn video(
        ffmpeg: &Ffmpeg,
        path: &Path,
        (width, height): (usize, usize),
        frame_rate: FrameRate,
        audio_from: Option<&Path>,
    ) -> Result<FrameWriter> {
        let target = crate::atomic::destination(path)?;
        let dir = crate::atomic::parent_dir(&target);
        crate::atomic::check_parent_dir(&target)?;
        let ext = target
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if ext.is_empty() {
            return Err(Error::parameter(format!(
                "{} has no extension to choose a video format by (e.g. .mp4, .mkv, .webm)",
                path.display()
            )));
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // The same extension, so that ffmpeg picks the same container.
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(&format!(".tmp.{ext}"))
            .tempfile_in(dir)
            .map_err(|e| Error::io(path, e))?
            .into_temp_path();
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
        push(&["-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24"]);
        push(&["-s", &format!("{width}x{height}")]);
        push(&["-r", &frame_rate.to_string(), "-i", "-"]);
        if let Some(source) = audio_from {
            args.push("-i".into());
            args.push(source.as_os_str().to_owned());
        }
        let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
        push(&["-map", "0:v"]);
        if audio_from.is_some() {
            // `?`: no error when the source has no audio.
            push(&["-map", "1:a?", "-c:a", "copy", "-shortest"]);
        }
        if ["mp4", "mkv", "mov", "m4v"].contains(&ext.as_str()) {
            // yuv420p is what players expect, and needs even sides: pad odd ones by a pixel.
            push(&["-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p"]);
            push(&["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]);
        }
        args.push(tmp.as_os_str().to_owned());
        let mut child = ffmpeg.spawn(&ffmpeg.ffmpeg, &args, Stdio::piped())?;
        let stdin = child.stdin.take();
        let stderr = child.stderr.take().map(collect);
        Ok(FrameWriter {
            sink: Sink::Pipe {
                child,
                stdin,
                stderr,
                tmp,
                target,
                program: ffmpeg.ffmpeg.clone(),
                size: (width, height),
            },
            written: 0,
        })
    }

    /// Frames written so far.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Writes frame `index` (its number in the input, which names it in a folder; a video
    /// takes frames in the order they come).
    pub fn write(&mut self, index: usize, frame: &Image) -> Result<()> {
        match &mut self.sink {
            Sink::Folder(dir, depth) => {
                image_io::save_with_depth(frame, &dir.join(frame_name(index)), *depth)?
            }
            Sink::Pipe {
                stdin,
                size,
                target,
                ..
            } => {
                if (frame.width, frame.height) != *size {
                    return Err(Error::parameter(format!(
                        "frame {} is {}×{} but the video is {}×{}",
                        index + 1,
                        frame.width,
                        frame.height,
                        size.0,
                        size.1
                    )));
                }
                let bytes: Vec<u8> = frame
                    .rgb
                    .iter()
                    .map(|v| v.round().clamp(0.0, 255.0) as u8)
                    .collect();
                let pipe = stdin.as_mut().expect("open until finish");
                if let Err(e) = pipe.write_all(&bytes) {
                    let target = target.clone();
                    // ffmpeg stopped reading: its own message says why.
                    return Err(self.failure().unwrap_or_else(|| Error::io(&target, e)));
                }
            }
        }
        self.written += 1;
        Ok(())
    }

    /// Waits for ffmpeg after a broken pipe and turns its reason into an error.
    fn failure(&mut self) -> Option<Error> {
        if let Sink::Pipe {
            child,
            stdin,
            stderr,
            target,
            ..
        } = &mut self.sink
        {
            drop(stdin.take());
            let _ = child.wait();
            let message = stderr.take().map(|t| t.join().unwrap_or_default());
            return Some(Error::new(
                ErrorKind::Io,
                format!(
                    "ffmpeg could not write {}: {}",
                    target.display(),
                    last_line(&message.unwrap_or_default())
                ),
            ));
        }
        None
    }

    /// Ends the output: a video is finished by ffmpeg and renamed into place (with no frame
    /// written, nothing is). Frames already in a folder stay there whatever happens.
    pub fn finish(mut self) -> Result<()> {
        let written = self.written;
        // Taken out, so that `Drop` finds nothing left to stop.
        let sink = std::mem::replace(
            &mut self.sink,
            Sink::Folder(PathBuf::new(), BitDepth::Eight),
        );
        let Sink::Pipe {
            mut child,
            stdin,
            stderr,
            tmp,
            target,
            program,
            ..
        } = sink
        else {
            return Ok(());
        };
        drop(stdin);
        let status = child.wait().map_err(|e| missing_program(&program, e))?;
        let message = stderr.map(|t| t.join().unwrap_or_default());
        if written == 0 {
            return Ok(());
        }
        if !status.success() {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "ffmpeg could not write {}: {}",
                    target.display(),
                    last_line(&message.unwrap_or_default())
                ),
            ));
        }
        tmp.persist(&target)
            .map_err(|e| Error::io(&target, e.error))
    }
}

impl Drop for FrameWriter {
    fn drop(&mut self) {
        // Dropped without `finish` (an error): stop ffmpeg; the temporary file goes with `tmp`.
        if let Sink::Pipe { child, stdin, .. } = &mut self.sink {
            drop(stdin.take());
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
