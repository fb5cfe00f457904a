//! The data folder: uploads and jobs as plain files with JSON metadata beside them, so that
//! everything survives a restart and can be read without the server.
//!
//! ```text
//! DATA/uploads/ID.json        name, size, format
//! DATA/uploads/ID.jpg|png|tif the file as uploaded (its type found from its content)
//! DATA/uploads/ID.thumb.png   a thumbnail for the page
//! DATA/jobs/ID/job.json       parameters, status, progress (see JobRecord)
//! DATA/jobs/ID/preview.png    the best image so far, rewritten every few iterations
//! DATA/jobs/ID/instant.png    the instant stylisation shown while the job starts
//! DATA/jobs/ID/result.png     the result (8 or 16 bits)
//! DATA/jobs/ID/losses.csv     every iteration's losses
//! ```
//!
//! Paths are only ever built from an [`Id`] and fixed names. Every file is written atomically.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::params::JobParams;

/// An uploaded image.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Upload {
    /// Its id.
    pub id: Id,
    /// The file name it was uploaded under (shown only; never used as a path).
    pub name: String,
    /// Pixels.
    pub width: usize,
    /// Pixels.
    pub height: usize,
    /// `jpeg`, `png` or `tiff`, from the content.
    pub format: String,
    /// Size of the file.
    pub bytes: u64,
    /// Seconds since the Unix epoch.
    pub created: u64,
}

impl Upload {
    /// The file's extension for its format.
    pub fn extension(&self) -> &'static str {
        extension(&self.format)
    }
}

/// The extension for a format name.
pub fn extension(format: &str) -> &'static str {
    match format {
        "jpeg" => "jpg",
        "png" => "png",
        _ => "tif",
    }
}

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting its turn.
    Queued,
    /// Being optimised.
    Running,
    /// Finished all its iterations (or converged).
    Done,
    /// Stopped by a person; its best image is kept.
    Cancelled,
    /// Stopped by an error; its best image (if any) is kept.
    Failed,
    /// The server stopped while it ran; its best image is kept.
    Interrupted,
}

impl Status {
    /// No more changes will come.
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Queued | Status::Running)
    }
}

/// A job as stored and as the page sees it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JobRecord {
    /// Its id.
    pub id: Id,
    /// Seconds since the Unix epoch.
    pub created: u64,
    /// Where it is.
    pub status: Status,
    /// 1 for the next to run, 2 after it…; 0 while running; `None` when not queued.
    #[serde(default)]
    pub position: Option<usize>,
    /// What the person asked for.
    pub params: JobParams,
    /// "photo.jpg in the style of painting.jpg".
    pub title: String,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<String>,
    /// Seconds since the Unix epoch.
    #[serde(default)]
    pub started: Option<u64>,
    /// Seconds since the Unix epoch.
    #[serde(default)]
    pub finished: Option<u64>,
    /// Iterations over all scales.
    pub total_iterations: usize,
    /// Iterations done so far.
    #[serde(default)]
    pub iterations_done: usize,
    /// Seconds of optimisation so far.
    #[serde(default)]
    pub elapsed_s: f64,
    /// The lowest total loss reached, and at which iteration.
    #[serde(default)]
    pub best_loss: Option<f64>,
    /// Of `best_loss`.
    #[serde(default)]
    pub best_iteration: Option<usize>,
    /// Bumped at every new preview image (the page adds it to the image's URL).
    #[serde(default)]
    pub preview_version: u64,
    /// `result.png` exists.
    #[serde(default)]
    pub has_result: bool,
    /// `instant.png` exists.
    #[serde(default)]
    pub has_instant: bool,
    /// The result's size.
    #[serde(default)]
    pub result_size: Option<(usize, usize)>,
    /// The `impasto transfer …` command that reproduces the job.
    pub command: String,
}

/// The data folder.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Store {
    /// Opens (creating) the data folder.
    pub fn open(root: &Path) -> io::Result<Store> {
        for sub in ["uploads", "jobs"] {
            std::fs::create_dir_all(root.join(sub)).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("creating the data folder {}: {e}", root.join(sub).display()),
                )
            })?;
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A fresh temporary file name for an upload being checked.
    pub fn upload_temp(&self) -> PathBuf {
        self.root
            .join("uploads")
            .join(format!(".incoming-{}", Id::random()))
    }

    /// An upload's metadata file.
    fn upload_meta(&self, id: Id) -> PathBuf {
        self.root.join("uploads").join(format!("{id}.json"))
    }

    /// An upload's image file.
    pub fn upload_file(&self, upload: &Upload) -> PathBuf {
        self.root
            .join("uploads")
            .join(format!("{}.{}", upload.id, upload.extension()))
    }

    /// An upload's thumbnail.
    pub fn upload_thumb(&self, id: Id) -> PathBuf {
        self.root.join("uploads").join(format!("{id}.thumb.png"))
    }

    /// Records an upload whose file and thumbnail are already in place.
    pub fn save_upload(&self, upload: &Upload) -> io::Result<()> {
        write_json(&self.upload_meta(upload.id), upload)
    }

    /// One upload, `None` if there is none with that id.
    pub fn upload(&self, id: Id) -> Option<Upload> {
        read_json(&self.upload_meta(id))
    }

    /// Every upload, newest first.
    pub fn uploads(&self) -> Vec<Upload> {
        let mut all: Vec<Upload> = self
            .ids_in(&self.root.join("uploads"), ".json")
            .into_iter()
            .filter_map(|id| self.upload(id))
            .collect();
        all.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        all
    }

    /// A job's folder.
    pub fn job_dir(&self, id: Id) -> PathBuf {
        self.root.join("jobs").join(id.to_string())
    }

    /// A file in a job's folder: one of the fixed names above.
    pub fn job_file(&self, id: Id, name: JobFile) -> PathBuf {
        self.job_dir(id).join(name.name())
    }

    /// Writes a job's metadata (creating its folder).
    pub fn save_job(&self, job: &JobRecord) -> io::Result<()> {
        std::fs::create_dir_all(self.job_dir(job.id))?;
        write_json(&self.job_file(job.id, JobFile::Meta), job)
    }

    /// Every job on disk, oldest first.
    pub fn jobs(&self) -> Vec<JobRecord> {
        let dir = self.root.join("jobs");
        let mut all: Vec<JobRecord> = self
            .ids_in(&dir, "")
            .into_iter()
            .filter_map(|id| read_json(&self.job_file(id, JobFile::Meta)))
            .collect();
        all.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        all
    }

    /// The ids of the entries `ID + suffix` in a folder.
    fn ids_in(&self, dir: &Path, suffix: &str) -> Vec<Id> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                Id::parse(name.strip_suffix(suffix)?)
            })
            .collect()
    }
}

/// The files of a job's folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobFile {
    /// `job.json`.
    Meta,
    /// `preview.png`.
    Preview,
    /// `instant.png`.
    Instant,
    /// `result.png`.
    Result,
    /// `losses.csv`.
    Losses,
}

impl JobFile {
    /// The file's name.
    pub fn name(self) -> &'static str {
        match self {
            JobFile::Meta => "job.json",
            JobFile::Preview => "preview.png",
            JobFile::Instant => "instant.png",
            JobFile::Result => "result.png",
            JobFile::Losses => "losses.csv",
        }
    }
}

/// Writes JSON atomically (a reader never sees half a file).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    write_atomic(path, &bytes)
}

/// Writes bytes atomically with the library's writer.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    impasto::cli_support::atomic::write_bytes_atomic(path, bytes)
        .map_err(|e| io::Error::other(format!("{e:#}")))
}

/// Reads JSON; a missing or unreadable file is `None` (logged when it exists but is bad).
fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!("ignoring {}: {e}", path.display());
            None
        }
    }
}
