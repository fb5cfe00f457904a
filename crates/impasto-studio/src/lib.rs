//! The impasto studio: a local web app over the same engine API as the `impasto` command.
//! A person uploads a photo and paintings, sets the parameters (with the CLI's defaults),
//! watches the image form live with its loss chart, cancels, downloads, and finds every result
//! again in a gallery; `impasto serve` calls [`serve`].
//!
//! - [`store`]: the data folder (uploads, jobs and results as files with JSON beside them).
//! - [`hub`]: the queue (one job at a time) and the events pushed to watching pages.
//! - [`worker`]: the thread that runs jobs through `impasto::transfer::run_schedule`.
//! - [`routes`]: the HTTP interface; [`guard`]: Host and Origin checks.
//! - [`params`]: a job's parameters, their defaults and the equivalent command line.
//!
//! Security model: the server binds 127.0.0.1 unless told otherwise; it answers only requests
//! whose `Host` is its own (against DNS rebinding) and refuses state-changing requests from
//! other origins; uploads are bounded in bytes and pixels and typed from their content; files
//! are named only by random 128-bit ids.

pub mod api_error;
mod assets;
pub mod guard;
pub mod hub;
pub mod id;
pub mod params;
pub mod routes;
pub mod store;
pub mod uploads;
pub mod worker;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use impasto::image_io::{self, BitDepth, Limits};

use crate::hub::Hub;
use crate::store::{JobFile, Status, Store};

/// Where a job's VGG weights come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WeightsSource {
    /// The installed weights, as `impasto transfer` finds them (VGG19's fetched on first use).
    Installed,
    /// Random weights (`VggWeights::random`): for tests, which need no download.
    Random,
}

/// How to run the studio.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to bind (default 127.0.0.1).
    pub host: String,
    /// Port (default 8080; 0: any free port).
    pub port: u16,
    /// The data folder.
    pub data_dir: PathBuf,
    /// Where the weights come from.
    pub weights: WeightsSource,
    /// Show the instant stylisation while a job starts (fetching its models on first use).
    pub instant: bool,
    /// Open the page in the default browser once listening.
    pub open: bool,
    /// Largest upload in bytes (default 50 MiB).
    pub max_upload_bytes: usize,
    /// Largest upload in pixels (default 50 megapixels) and per side (default 16384).
    pub upload_limits: Limits,
    /// Largest working size a job may ask for (default 4096 px).
    pub max_size: u32,
    /// Write a preview every this many iterations (default 5).
    pub preview_every: usize,
}

impl Config {
    /// The defaults, with data in `data_dir`.
    pub fn new(data_dir: PathBuf) -> Config {
        Config {
            host: "127.0.0.1".into(),
            port: 8080,
            data_dir,
            weights: WeightsSource::Installed,
            instant: true,
            open: false,
            max_upload_bytes: 50 << 20,
            upload_limits: Limits {
                max_pixels: 50_000_000,
                max_side: 16_384,
            },
            max_size: 4096,
            preview_every: 5,
        }
    }

    /// The platform's data directory + `impasto` (e.g. `~/.local/share/impasto`).
    pub fn default_data_dir() -> Option<PathBuf> {
        dirs::data_dir().map(|d| d.join("impasto"))
    }
}

/// A studio with its data folder open and its worker running; [`Studio::router`] serves it.
pub struct Studio {
    hub: Arc<Hub>,
    config: Config,
    worker: Option<JoinHandle<()>>,
}

impl Studio {
    /// Opens the data folder (jobs that were running when the server stopped become
    /// interrupted, keeping the best image they wrote; queued ones queue again) and starts the
    /// worker.
    pub fn open(config: Config) -> io::Result<Studio> {
        let store = Store::open(&config.data_dir)?;
        let mut jobs = store.jobs();
        for job in &mut jobs {
            if job.status == Status::Running {
                settle_interrupted(&store, job);
            }
        }
        let hub = Arc::new(Hub::new(store, jobs));
        let worker = worker::Worker::new(
            hub.clone(),
            config.weights.clone(),
            config.instant,
            config.preview_every,
            config.max_size,
        );
        let worker = std::thread::Builder::new()
            .name("impasto-studio-worker".into())
            .spawn(move || worker.run())?;
        Ok(Studio {
            hub,
            config,
            worker: Some(worker),
        })
    }

    /// The jobs.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The application for a server listening on `port`.
    pub fn router(&self, port: u16) -> axum::Router {
        let state = Arc::new(routes::AppState {
            hub: self.hub.clone(),
            max_upload_bytes: self.config.max_upload_bytes,
            limits: self.config.upload_limits,
            max_size: self.config.max_size,
        });
        let allowed = guard::Allowed {
            host: self.config.host.to_ascii_lowercase(),
            port,
        };
        routes::router(state, allowed)
    }

    /// Stops the worker: the running job stops after its iteration and is kept as interrupted,
    /// with its best image.
    pub fn shut_down(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.hub.shut_down();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl Drop for Studio {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A job the store shows running (the server stopped without finishing it): interrupted, with
/// the last preview (its best image then) as its result.
fn settle_interrupted(store: &Store, job: &mut store::JobRecord) {
    job.status = Status::Interrupted;
    job.position = None;
    job.error = Some("the server stopped while this job ran".into());
    if let Ok(image) = image_io::load(&store.job_file(job.id, JobFile::Preview)) {
        let depth = if job.params.bit_depth == 16 {
            BitDepth::Sixteen
        } else {
            BitDepth::Eight
        };
        if worker::save_result(store, job.id, &image, depth).is_ok() {
            job.has_result = true;
            job.result_size = Some((image.width, image.height));
        }
    }
    if let Err(e) = store.save_job(job) {
        tracing::warn!("saving job {}: {e}", job.id);
    }
}

/// Whether binding this host exposes the server beyond this machine.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The warning printed for a non-loopback `--host`.
pub fn exposure_warning(host: &str) -> Option<String> {
    (!is_loopback(host)).then(|| {
        format!(
            "warning: listening on {host}, not 127.0.0.1: anyone who can reach this port can use \
             this machine's CPU, upload images and see every result"
        )
    })
}

/// Runs the studio until Ctrl-C or SIGTERM: binds, prints the address (and opens it with
/// `config.open`), serves, then stops the running job keeping its best image.
pub fn serve(config: Config) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve_async(config))
}

async fn serve_async(config: Config) -> io::Result<()> {
    let host = config.host.clone();
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::from([127, 0, 0, 1])
    } else {
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("--host {host}: not an IP address (or localhost)"),
                )
            })?
    };
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, config.port))
        .await
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("listening on {host}:{}: {e}", config.port),
            )
        })?;
    let port = listener.local_addr()?.port();
    if let Some(w) = exposure_warning(&host) {
        eprintln!("{w}");
    }
    let data = config.data_dir.display().to_string();
    let open = config.open;
    let studio = Studio::open(config)?;
    let shown = if ip.is_unspecified() {
        "127.0.0.1".to_string()
    } else if ip.is_ipv6() {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    let url = format!("http://{shown}:{port}/");
    println!("impasto studio: {url}  (data: {data}; Ctrl-C stops)");
    if open {
        open_browser(&url);
    }
    let app = studio.router(port);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop_signal())
        .await?;
    eprintln!("stopping: the running job keeps its best image");
    tokio::task::spawn_blocking(move || studio.shut_down())
        .await
        .map_err(io::Error::other)?;
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await,
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}

/// The platform's opener; a failure is only a warning (the address is printed anyway).
fn open_browser(url: &str) {
    let result = if cfg!(target_os = "macos") {
        std::process::Command::new("open").arg(url).spawn()
    } else if cfg!(windows) {
        std::process::Command::new("cmd")
            .args(["/C", "start", "", url])
            .spawn()
    } else {
        std::process::Command::new("xdg-open").arg(url).spawn()
    };
    if let Err(e) = result {
        eprintln!("warning: could not open a browser ({e}); open {url} yourself");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_are_quiet() {
        for h in ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"] {
            assert!(exposure_warning(h).is_none(), "{h}");
        }
        for h in ["0.0.0.0", "192.168.1.4", "::"] {
            assert!(
                exposure_warning(h)
                    .unwrap()
                    .contains("anyone who can reach"),
                "{h}"
            );
        }
    }
}
