//! Stylising a sequence of frames one after another, each started from and held to the previous
//! stylised frame warped by the optical flow (Ruder, Dosovitskiy & Brox 2016, sections 3.1–3.2).

use std::ops::ControlFlow;

use super::{reliability, warp, OpticalFlow, TemporalLoss};
use crate::image_io::{self, Image};
use crate::transfer::{Init, LossRecord, RunSummary, Stop, Transfer, TransferSettings};
use crate::weights::VggWeights;
use crate::Result;

/// What a video's frames are stylised with besides the transfer's own settings.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoSettings {
    /// Optimiser iterations for the first frame (started from its content).
    pub first_iterations: usize,
    /// Optimiser iterations for each later frame when it starts from the previous result warped
    /// onto it, so much closer to its optimum (without the warm start later frames get
    /// `first_iterations`). Ruder et al. give the first frame 2000 and later
    /// frames 1000; [`VideoSettings::with_iterations`] keeps that ratio.
    pub later_iterations: usize,
    /// γ, the weight of the short-term [`TemporalLoss`]; 0 leaves it out.
    pub temporal_weight: f64,
    /// Start each later frame from the previous result warped onto it (Ruder et al.'s
    /// "prevWarped"); off: from its own content, as an image would be.
    pub warm_start: bool,
}

/// The temporal weight the CLI uses by default, chosen by measurement (the README's flicker
/// table, `examples/flicker.rs`: 8 frames of a pan at 128 px with the transfer's default weights).
/// The content and style terms are sums, of order 1e10 there, while the temporal term is a mean
/// of squared grey levels: at 1e6 it changed nothing, at 1e7 it cut the flicker of the warm start
/// alone by a quarter, at 1e8 by three quarters (73 → 18) for a total loss 37% higher, part of
/// which is the temporal term itself.
pub const DEFAULT_TEMPORAL_WEIGHT: f64 = 1e8;

impl VideoSettings {
    /// `iterations` for the first frame and half of them (rounded up) for later ones, the
    /// ratio of Ruder et al.'s 2000 and 1000, with the warm start and the default temporal
    /// weight.
    pub fn with_iterations(iterations: usize) -> VideoSettings {
        VideoSettings {
            first_iterations: iterations,
            later_iterations: iterations.div_ceil(2),
            temporal_weight: DEFAULT_TEMPORAL_WEIGHT,
            warm_start: true,
        }
    }
}

/// How one frame went.
#[derive(Clone, Debug)]
pub struct FrameOutcome {
    /// The stylised frame at the working size (the best image of its transfer).
    pub image: Image,
    /// Its transfer's summary.
    pub summary: RunSummary,
    /// The share of pixels the temporal loss acted on (the reliable ones); `None` for a first
    /// frame or with the temporal loss off.
    pub coverage: Option<f64>,
}

/// Stylises frames in order, remembering the previous frame and its result.
pub struct FrameStylizer<'a> {
    weights: &'a VggWeights,
    styles: &'a [Image],
    transfer: TransferSettings,
    video: VideoSettings,
    flow: &'a dyn OpticalFlow,
    /// The previous frame's content and stylised result, at the working size.
    previous: Option<(Image, Image)>,
}

impl<'a> FrameStylizer<'a> {
    /// A stylizer for frames of any one size; `transfer.init` is ignored (the first frame starts
    /// from its content, later ones as `video` says).
    pub fn new(
        weights: &'a VggWeights,
        styles: &'a [Image],
        transfer: TransferSettings,
        video: VideoSettings,
        flow: &'a dyn OpticalFlow,
    ) -> Self {
        FrameStylizer {
            weights,
            styles,
            transfer,
            video,
            flow,
            previous: None,
        }
    }

    /// The size frames are stylised at (the transfer's `size` as the long side).
    pub fn working_size(&self, width: usize, height: usize) -> (usize, usize) {
        image_io::fit_long_side(width, height, self.transfer.size)
    }

    /// Takes `content` and its already stylised `result` (any size) as the previous frame, as
    /// when resuming after frames that were written before.
    pub fn set_previous(&mut self, content: &Image, result: &Image) -> Result<()> {
        let (w, h) = self.working_size(content.width, content.height);
        self.previous = Some((
            image_io::resize(content, w, h)?,
            image_io::resize(result, w, h)?,
        ));
        Ok(())
    }

    /// Forgets the previous frame: the next one is stylised as a first frame.
    pub fn reset(&mut self) {
        self.previous = None;
    }

    /// Stylises the next frame; `observer` sees each iteration and may stop (the frame is then
    /// still returned, as far as it got, with the summary's `stop` saying so).
    pub fn next(
        &mut self,
        frame: &Image,
        observer: impl FnMut(&Transfer, &LossRecord) -> ControlFlow<()>,
    ) -> Result<FrameOutcome> {
        let (w, h) = self.working_size(frame.width, frame.height);
        let content = image_io::resize(frame, w, h)?;
        let mut settings = self.transfer.clone();
        settings.init = Init::Content;
        let mut temporal = None;
        let iterations = match &self.previous {
            Some((prev_content, prev_result))
                if prev_content.width == w && prev_content.height == h =>
            {
                // ŵ: current → previous warps the previous result onto this frame; w the other
                // way, for the consistency check.
                let (backward, forward) = rayon::join(
                    || self.flow.flow(&content, prev_content),
                    || self.flow.flow(prev_content, &content),
                );
                let (backward, forward) = (backward?, forward?);
                let warped = warp(prev_result, &backward)?;
                if self.video.temporal_weight > 0.0 {
                    let c = reliability(&forward, &backward)?;
                    temporal = Some(TemporalLoss::new(&warped, c, self.video.temporal_weight)?);
                }
                if self.video.warm_start {
                    settings.init = Init::Image(warped);
                    self.video.later_iterations
                } else {
                    // From its own content, a frame needs a first frame's iterations.
                    self.video.first_iterations
                }
            }
            _ => self.video.first_iterations,
        };
        let mut transfer = Transfer::new(self.weights, &content, self.styles, &settings)?;
        let coverage = temporal.as_ref().map(TemporalLoss::coverage);
        if let Some(t) = temporal {
            transfer.add_pixel_term(Box::new(t))?;
        }
        let summary = transfer.run(iterations, observer)?;
        let image = transfer.best_image();
        if summary.stop != Stop::Interrupted {
            self.previous = Some((content, image.clone()));
        }
        Ok(FrameOutcome {
            image,
            summary,
            coverage,
        })
    }
}

impl VideoSettings {
    /// Every frame stylised on its own, from its own content, with `iterations` each: the
    /// flickering baseline (what `--temporal-weight 0` runs).
    pub fn per_frame(iterations: usize) -> VideoSettings {
        VideoSettings {
            first_iterations: iterations,
            later_iterations: iterations,
            temporal_weight: 0.0,
            warm_start: false,
        }
    }
}
