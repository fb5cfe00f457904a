use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use crate::backend::{DeviceMemory, Evaluator, Network, NetworkSpec, Problem};
use crate::color;
use crate::image_io::{self, Image};
use crate::loss::{LossParts, StyleLoss, Tiling};
use crate::model::Layer;
use crate::optim::Optimizer;
use crate::weights::VggWeights;
use crate::{memory, Error, Result};

use super::noise::gaussian_image;
use super::pixel_term::{self, PixelTerm};
use super::recolor::Recolor;
use super::targets::LayerPlan;
use super::{Init, LossRecord, OptimizerSettings, TileSize, TransferSettings};

/// Why [`Transfer::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// All requested iterations ran.
    Completed,
    /// The optimiser could make no further progress (zero gradient or vanishing step).
    Converged,
    /// The observer asked to stop (e.g. Ctrl-C).
    Interrupted,
    /// The loss became NaN or infinite (a learning rate too large for the problem). The image
    /// is reset to the best one so far; the optimiser's state is spoilt, so do not run on.
    Diverged,
}

/// The outcome of a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunSummary {
    /// Why the run returned.
    pub stop: Stop,
    /// Iterations done in this run.
    pub iterations: usize,
    /// Evaluations of the loss and its gradient in this run (the line search may make more
    /// than one per iteration), the start image's included when this run made it.
    pub evaluations: usize,
    /// The iteration whose image had the lowest total loss, and its losses.
    pub best_iteration: usize,
    /// The losses of that iteration's image.
    pub best: LossParts,
    /// Seconds from the first iteration's start to the end.
    pub elapsed_s: f64,
}

/// One style transfer (or reconstruction) in progress: the backend's evaluator of the objective
/// (network, targets, buffers), the image being optimised and the best image so far.
pub struct Transfer {
    /// The objective and its gradient, on the settings' backend (whole or tile by tile).
    evaluator: Box<dyn Evaluator>,
    /// The layers the losses read.
    layers: Vec<Layer>,
    optimizer: Box<dyn Optimizer>,
    width: usize,
    height: usize,
    /// The content image's alpha at the working size, given back with every output image.
    alpha: Option<Vec<f32>>,
    /// With `--preserve-color luminance`: the content at the working size, whose chroma every
    /// output image takes (the optimised image is luminance only).
    chroma_source: Option<Vec<f32>>,
    x: Vec<f32>,
    grad: Vec<f32>,
    /// The losses at `x` (the optimiser's last evaluation is always at the point it returns).
    parts: LossParts,
    best: Vec<f32>,
    best_parts: LossParts,
    best_iteration: usize,
    records: Vec<LossRecord>,
    started: Option<Instant>,
    evaluations: usize,
    /// Where this transfer sits in a coarse-to-fine run: its scale and the iteration number its
    /// start image gets (0 and 0 on its own).
    scale: usize,
    first_iteration: usize,
    /// Terms on the pixels themselves, evaluated after the network's objective.
    pixel_terms: Vec<Box<dyn PixelTerm>>,
}

impl Transfer {
    /// Prepares a transfer of `styles` onto `content` (both at any size; they are resized per
    /// `settings`). With no content layers `content` only sets the canvas (size, alpha); with no
    /// style layers `styles` may be empty. Refuses, before allocating, a size whose memory
    /// estimate exceeds what the system (or the backend's device) has available.
    ///
    /// Builds the network on `settings.backend`; to run several transfers on one network (the
    /// scales of a coarse-to-fine run), build it once with [`load_network`] and use
    /// [`Transfer::with_network`].
    pub fn new(
        weights: &VggWeights,
        content: &Image,
        styles: &[Image],
        settings: &TransferSettings,
    ) -> Result<Self> {
        let network = load_network(weights, settings, styles.len())?;
        Self::with_network(&*network, content, styles, settings)
    }

    /// [`Transfer::new`] on a network already built by [`load_network`] with the same
    /// architecture, pooling and layers (it must reach the deepest layer a loss reads).
    pub fn with_network(
        network: &dyn Network,
        content: &Image,
        styles: &[Image],
        settings: &TransferSettings,
    ) -> Result<Self> {
        Self::build(network, content, styles, settings, None, false).map(|(t, _)| t)
    }

    /// [`Transfer::with_network`] with what a batch shares: the style losses at this size
    /// computed by an earlier transfer with the same settings (then the styles are not looked
    /// at). With `keep_styles` it also hands back this transfer's style losses for the next.
    pub(super) fn build(
        network: &dyn Network,
        content: &Image,
        styles: &[Image],
        settings: &TransferSettings,
        shared_styles: Option<&[StyleLoss]>,
        keep_styles: bool,
    ) -> Result<(Self, Option<Vec<StyleLoss>>)> {
        let Prepared {
            plan,
            width,
            height,
            style_sizes,
            tiling,
            optimizer,
        } = prepare(network, content, styles, settings)?;
        let content = image_io::resize(content, width, height)?;
        let recolor = Recolor::new(settings.preserve_color, &content);
        // Targets given: the styles need not be resized (nor recoloured: sharing is only offered
        // without colour preservation and masks, where nothing about them depends on the content).
        let to_resize = if shared_styles.is_some() {
            &[][..]
        } else {
            styles
        };
        let resized_styles = to_resize
            .iter()
            .zip(&style_sizes)
            .map(|(s, &(w, h))| recolor.style(image_io::resize(s, w, h)?))
            .collect::<Result<Vec<_>>>()?;
        let seen_content = recolor.content();
        // The targets use buffers of their own, freed before the evaluator's exist (the memory
        // estimate counts the larger, not both).
        let objective = plan.objective(
            network,
            &seen_content,
            &resized_styles,
            settings,
            tiling.as_ref(),
            shared_styles,
        )?;
        drop(resized_styles);
        let kept_styles = keep_styles.then(|| objective.style_losses().to_vec());
        let layers = objective.layers();
        let evaluator = network.evaluator(objective, (width, height), tiling)?;
        let x = match &settings.init {
            Init::Content => seen_content.rgb,
            // From the original, not the style-sized copy: one resampling, not two.
            Init::Style => match styles.first() {
                Some(s) => recolor.style(image_io::resize(s, width, height)?)?.rgb,
                None => return Err(Error::parameter("a style start needs a style image")),
            },
            Init::Noise => recolor.start(
                gaussian_image(width * height * 3, settings.seed),
                width,
                height,
            )?,
            Init::Image(i) => {
                recolor.start(image_io::resize(i, width, height)?.rgb, width, height)?
            }
        };
        let chroma_source = recolor.chroma_source();
        let optimizer = optimizer.build(x.len())?;
        let transfer = Transfer {
            evaluator,
            layers,
            optimizer,
            width,
            height,
            alpha: content.alpha,
            chroma_source,
            grad: vec![0.0; x.len()],
            best: x.clone(),
            x,
            parts: LossParts::default(),
            best_parts: LossParts::default(),
            best_iteration: 0,
            records: Vec::new(),
            started: None,
            evaluations: 0,
            scale: 0,
            first_iteration: 0,
            pixel_terms: Vec::new(),
        };
        Ok((transfer, kept_styles))
    }

    /// Makes this transfer one scale of a coarse-to-fine run: records carry `scale`, number
    /// iterations on from `first_iteration` and time from `clock`. Only before [`Transfer::start`].
    pub(crate) fn continue_run(&mut self, scale: usize, first_iteration: usize, clock: Instant) {
        debug_assert!(self.records.is_empty(), "continue_run after start");
        self.scale = scale;
        self.first_iteration = first_iteration;
        self.started = Some(clock);
    }

    /// Adds a term on the pixels to the objective (e.g. video's temporal loss); its value joins
    /// each record's total. Only before the first evaluation ([`Transfer::start`] or
    /// [`Transfer::run`]): every record of a run describes one objective.
    pub fn add_pixel_term(&mut self, term: Box<dyn PixelTerm>) -> Result<()> {
        if !self.records.is_empty() {
            return Err(Error::parameter(
                "a pixel term can only be added before the transfer's first evaluation",
            ));
        }
        self.pixel_terms.push(term);
        Ok(())
    }

    /// Which scale of a coarse-to-fine run this is (0: the first, or the only one).
    pub fn scale(&self) -> usize {
        self.scale
    }

    /// Width and height of the working image.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// The layers the losses read.
    pub fn layers(&self) -> Vec<Layer> {
        self.layers.clone()
    }

    /// The targets the transfer built, where its backend keeps them on the host.
    #[cfg(test)]
    pub(super) fn objective(&self) -> &crate::loss::Objective {
        (self.evaluator.host_objective()).expect("the CPU backend keeps its targets on the host")
    }

    /// One record per iteration so far, starting with iteration 0 (the start image).
    pub fn records(&self) -> &[LossRecord] {
        &self.records
    }

    /// The image as it is now (with the content's alpha).
    pub fn image(&self) -> Image {
        self.to_image(&self.x)
    }

    /// The image with the lowest total loss so far.
    pub fn best_image(&self) -> Image {
        self.to_image(&self.best)
    }

    /// The iteration that produced [`Transfer::best_image`], and its losses.
    pub fn best(&self) -> (usize, LossParts) {
        (self.best_iteration, self.best_parts)
    }

    /// The best image as optimised, before [`Transfer::best_image`] gives it the content's
    /// chroma (the same image unless colours are preserved by luminance): what a next, larger
    /// scale starts from, since recombined colours may leave 0–255 and be clipped by resizing.
    pub(crate) fn best_optimised(&self) -> Image {
        Image {
            width: self.width,
            height: self.height,
            rgb: self.best.clone(),
            alpha: self.alpha.clone(),
        }
    }

    fn to_image(&self, rgb: &[f32]) -> Image {
        let rgb = match &self.chroma_source {
            Some(content) => color::recombine_with_chroma(rgb, content),
            None => rgb.to_vec(),
        };
        Image {
            width: self.width,
            height: self.height,
            rgb,
            alpha: self.alpha.clone(),
        }
    }

    /// Evaluates the start image: iteration 0's record. [`Transfer::run`] calls it if needed.
    pub fn start(&mut self) -> Result<LossRecord> {
        if let Some(first) = self.records.first() {
            return Ok(*first);
        }
        self.parts = self.evaluator.evaluate(&self.x, &mut self.grad)?;
        self.parts.total += pixel_term::evaluate_all(&self.pixel_terms, &self.x, &mut self.grad);
        self.evaluations += 1;
        if !self.parts.total.is_finite() {
            return Err(Error::diverged(format!(
                "the loss of the start image is {} (are the weights too large?)",
                self.parts.total
            )));
        }
        self.best_parts = self.parts;
        self.best_iteration = self.first_iteration;
        let started = *self.started.get_or_insert_with(Instant::now);
        let record = LossRecord {
            scale: self.scale,
            iteration: self.first_iteration,
            elapsed_s: started.elapsed().as_secs_f64(),
            parts: self.parts,
        };
        self.records.push(record);
        Ok(record)
    }

    /// Runs up to `iterations` optimiser steps. After each one `observer` sees the transfer and
    /// the iteration's record (iteration 0 included) and may stop the run.
    pub fn run(
        &mut self,
        iterations: usize,
        mut observer: impl FnMut(&Transfer, &LossRecord) -> ControlFlow<()>,
    ) -> Result<RunSummary> {
        let first = self.records.is_empty();
        let evaluations_before = if first { 0 } else { self.evaluations };
        let record = self.start()?;
        let begun = self.records.len() - 1;
        let started = self.started.unwrap_or_else(Instant::now);
        let summary = |t: &Transfer, stop| RunSummary {
            stop,
            iterations: t.records.len() - 1 - begun,
            evaluations: t.evaluations - evaluations_before,
            best_iteration: t.best_iteration,
            best: t.best_parts,
            elapsed_s: started.elapsed().as_secs_f64(),
        };
        if first && observer(self, &record).is_break() {
            return Ok(summary(self, Stop::Interrupted));
        }
        for _ in 0..iterations {
            let Some((step, record)) = self.step()? else {
                return Ok(summary(self, Stop::Diverged));
            };
            if observer(self, &record).is_break() {
                return Ok(summary(self, Stop::Interrupted));
            }
            if step.converged {
                return Ok(summary(self, Stop::Converged));
            }
        }
        Ok(summary(self, Stop::Completed))
    }

    /// One optimiser step and its record; `None` if the loss stopped being finite.
    fn step(&mut self) -> Result<Option<(crate::optim::Step, LossRecord)>> {
        // New tile cuts each iteration (the same within one: the line search sees one function).
        self.evaluator.next_iteration();
        let Transfer {
            evaluator,
            optimizer,
            x,
            grad,
            parts,
            pixel_terms,
            ..
        } = self;
        // The optimiser's last evaluation is at the point it returns, so `parts` ends up
        // describing the new image.
        let mut fx = parts.total;
        let mut eval = |at: &[f32], g: &mut [f32]| -> Result<f64> {
            *parts = evaluator.evaluate(at, g)?;
            parts.total += pixel_term::evaluate_all(pixel_terms, at, g);
            Ok(parts.total)
        };
        let step = optimizer.step(x, &mut fx, grad, &mut eval)?;
        self.evaluations += step.evaluations;
        let iteration = self.first_iteration + self.records.len();
        tracing::debug!(
            "iteration {iteration}: loss {:.6e}, {} evaluation(s)",
            self.parts.total,
            step.evaluations
        );
        if !self.parts.total.is_finite() {
            tracing::warn!(
                "the loss became {} at iteration {iteration}",
                self.parts.total
            );
            self.x.copy_from_slice(&self.best);
            return Ok(None);
        }
        if self.parts.total < self.best_parts.total {
            self.best.copy_from_slice(&self.x);
            self.best_parts = self.parts;
            self.best_iteration = iteration;
        }
        let record = LossRecord {
            scale: self.scale,
            iteration,
            elapsed_s: self.started.map_or(0.0, |s| s.elapsed().as_secs_f64()),
            parts: self.parts,
        };
        self.records.push(record);
        Ok(Some((step, record)))
    }
}

/// What [`Transfer::new`] settles before touching the images: the checked settings, the network,
/// the sizes and whether to tile, after making sure it all fits in memory.
struct Prepared {
    plan: LayerPlan,
    width: usize,
    height: usize,
    style_sizes: Vec<(usize, usize)>,
    tiling: Option<Tiling>,
    /// The settings' optimiser, with a shorter L-BFGS history if only that makes the run fit.
    optimizer: OptimizerSettings,
}

/// The longest side a working image (the content at `size`, or a style image at `size × style
/// scale`) may have: the CLI's bound on `--size`. Far beyond any memory today, and small enough
/// that no size computation (pixels × channels × bytes, summed over layers) can overflow.
pub(crate) const MAX_WORKING_SIDE: usize = 1 << 20;

/// Core sizes tried, largest first, when the whole image does not fit: larger cores waste less
/// on halos (a halo is 96 px for relu5_1).
const TILE_CORES: [usize; 7] = [1024, 768, 512, 384, 256, 192, 128];

/// The shortest L-BFGS histories a run is given automatically to make it fit, tried in turn:
/// tile size matters more for speed than the last pairs of history do for convergence (history
/// 10 against 100: 1.45e10 against 1.43e10 after 150 iterations at 256 px).
const AUTO_HISTORY_FLOORS: [usize; 2] = [20, 5];

/// Whether and how to tile, and the optimiser's settings, so that the run fits in memory: the
/// whole image if it fits; else the largest tiles that fit with the full L-BFGS history; else
/// the largest that fit with a history of at least 20, then 5 pairs, keeping as many pairs as
/// fit. If nothing fits, the smallest tiles, and the caller's memory check refuses the run.
/// Returns the choice with its memory estimate.
fn fit_to_memory(
    net: &dyn Network,
    plan: &LayerPlan,
    sizes: ((usize, usize), &[(usize, usize)]),
    settings: &TransferSettings,
    whole: Need,
) -> Result<(Option<Tiling>, OptimizerSettings, Need)> {
    let tiling_for = |core| Tiling::new(settings.architecture, &plan.taps(), core);
    let requested = settings.optimizer.clone();
    let estimate =
        |tiling: &Option<Tiling>| memory_estimate(net, plan, sizes, settings, tiling.as_ref());
    match settings.tiles {
        TileSize::Core(core) => {
            let tiling = Some(tiling_for(core)?);
            let needed = estimate(&tiling)?;
            return Ok((tiling, requested, needed));
        }
        // Spatial masks have no tiled form; such a run gets the plain memory error.
        TileSize::Auto if settings.masks.is_some() || whole.fits() => {
            return Ok((None, requested, whole))
        }
        TileSize::Auto => {}
    }
    let ((width, height), _) = sizes;
    let len = width * height * 3;
    let full = match &requested {
        OptimizerSettings::Lbfgs(c) => c.history,
        OptimizerSettings::Adam(_) => 0,
    };
    let state = |history| with_history(&requested, history).state_bytes(len) as u64;
    for floor in [full, AUTO_HISTORY_FLOORS[0], AUTO_HISTORY_FLOORS[1]] {
        let floor = floor.min(full);
        // The whole image with a shorter history beats tiles, which cost a second forward pass
        // (at the full history it is already known not to fit).
        let whole_first = (floor < full).then_some(None);
        for core in whole_first.into_iter().chain(TILE_CORES.map(Some)) {
            let tiling = core.map(tiling_for).transpose()?;
            // The optimiser's state is the host's: the estimate with `history` pairs.
            let estimate = estimate(&tiling)?;
            let with = |history| Need {
                host: estimate.host - state(full) + state(history),
                ..estimate
            };
            if !with(floor).fits() {
                continue;
            }
            let mut history = full;
            while history > floor && !with(history).fits() {
                history = (history * 3 / 4).max(floor);
            }
            if history < full {
                tracing::warn!(
                    "L-BFGS keeps {history} correction pairs instead of {full}: more do not fit \
                     in memory"
                );
            }
            return Ok((tiling, with_history(&requested, history), with(history)));
        }
    }
    let smallest = Some(tiling_for(TILE_CORES[TILE_CORES.len() - 1])?);
    let needed = estimate(&smallest)?;
    Ok((smallest, requested, needed))
}

/// `optimizer` with an L-BFGS history of `history` pairs (other optimisers unchanged).
fn with_history(optimizer: &OptimizerSettings, history: usize) -> OptimizerSettings {
    match optimizer {
        OptimizerSettings::Lbfgs(c) => OptimizerSettings::Lbfgs(crate::optim::LbfgsConfig {
            history,
            ..c.clone()
        }),
        other => other.clone(),
    }
}

/// Checks the settings that need no network and no pixels, and plans the layers.
fn check_settings(settings: &TransferSettings, styles: usize) -> Result<LayerPlan> {
    if settings.size == 0 {
        return Err(Error::parameter("size must be at least 1 pixel"));
    }
    if !(settings.style_scale.is_finite() && settings.style_scale > 0.0) {
        return Err(Error::parameter(format!(
            "style scale must be a positive number, got {}",
            settings.style_scale
        )));
    }
    if settings.size > MAX_WORKING_SIDE {
        return Err(Error::limits(format!(
            "size {} px is more than the {MAX_WORKING_SIDE} px a working image may have",
            settings.size
        )));
    }
    // In f64 and checked before the cast: `size × style scale` can be any positive number.
    let style_long = style_long_side(settings);
    if styles > 0 && style_long > MAX_WORKING_SIDE as f64 {
        return Err(Error::limits(format!(
            "--style-scale {}: the style images would be resized to a long side of \
             {style_long:.0} px (size {} × style scale), more than the {MAX_WORKING_SIDE} px a \
             working image may have; use a smaller --style-scale",
            settings.style_scale, settings.size
        )));
    }
    LayerPlan::new(settings, styles)
}

/// The style images' long side, `size × style scale` rounded, at least 1.
fn style_long_side(settings: &TransferSettings) -> f64 {
    (settings.size as f64 * settings.style_scale)
        .round()
        .max(1.0)
}

/// Builds the network of a run on `settings.backend` (its kernels: about 200 MB for VGG19 on the
/// CPU), to the deepest layer the settings' losses read, after checking the settings for a
/// transfer with `styles` style images. One network serves every transfer with these settings'
/// architecture, pooling, algorithm and layers, at any size: build it once per run.
pub fn load_network(
    weights: &VggWeights,
    settings: &TransferSettings,
    styles: usize,
) -> Result<Arc<dyn Network>> {
    if weights.architecture != settings.architecture {
        return Err(Error::parameter(format!(
            "the weights are {} but {} was asked for",
            weights.architecture, settings.architecture
        )));
    }
    let plan = check_settings(settings, styles)?;
    let spec = NetworkSpec {
        pooling: settings.pooling,
        algorithm: settings.algorithm,
        deepest: plan.deepest(settings.architecture)?,
    };
    settings.backend.load(weights, &spec)
}

/// Whether `network` can serve a transfer planned as `plan` with `settings`.
fn check_network(
    network: &dyn Network,
    plan: &LayerPlan,
    settings: &TransferSettings,
) -> Result<()> {
    let arch = settings.architecture;
    if network.architecture() != arch || network.pooling() != settings.pooling {
        return Err(Error::parameter(format!(
            "the network is {} with {} pooling but {arch} with {} pooling was asked for",
            network.architecture(),
            network.pooling(),
            settings.pooling
        )));
    }
    let deepest = plan.deepest(arch)?;
    if arch.layer_position(deepest)? > arch.layer_position(network.deepest())? {
        return Err(Error::parameter(format!(
            "the network was built to {} but a loss reads {deepest}",
            network.deepest()
        )));
    }
    Ok(())
}

fn prepare(
    network: &dyn Network,
    content: &Image,
    styles: &[Image],
    settings: &TransferSettings,
) -> Result<Prepared> {
    let plan = check_settings(settings, styles.len())?;
    check_network(network, &plan, settings)?;
    let style_long = style_long_side(settings) as usize;
    let (width, height) = image_io::fit_long_side(content.width, content.height, settings.size);
    let style_sizes: Vec<(usize, usize)> = styles
        .iter()
        .map(|s| image_io::fit_long_side(s.width, s.height, style_long))
        .collect();

    let sizes = ((width, height), style_sizes.as_slice());
    let whole = memory_estimate(network, &plan, sizes, settings, None)?;
    let mut what = format!("a {width}×{height} transfer");
    // Name the style scale when it makes the styles larger than the image: that is then what a
    // user can change.
    if let Some(&(sw, sh)) = style_sizes.iter().max_by_key(|(w, h)| w * h) {
        if sw * sh > width * height && settings.style_scale != 1.0 {
            what += &format!(
                " with style images of up to {sw}×{sh} (--style-scale {})",
                settings.style_scale
            );
        }
    }
    let (tiling, optimizer, needed) = fit_to_memory(network, &plan, sizes, settings, whole)?;
    match &tiling {
        None => needed.ensure(&what, network)?,
        Some(t) => needed.ensure(
            &format!("{what} in tiles of {} px (halo {} px)", t.core(), t.halo()),
            network,
        )?,
    }
    tracing::info!(
        "working size {width}×{height} on {}, memory estimate {:.0} MiB{}",
        network.info(),
        needed.total() as f64 / (1 << 20) as f64,
        tiling.as_ref().map_or(String::new(), |t| format!(
            ", in tiles of {} px with a {} px halo",
            t.core(),
            t.halo()
        ))
    );
    Ok(Prepared {
        plan,
        width,
        height,
        style_sizes,
        tiling,
        optimizer,
    })
}

/// Checks everything [`Transfer::with_network`] checks before reading pixels (settings, layer
/// names, memory at that size) without building the transfer: a coarse-to-fine run asks this of
/// its last, largest scale before spending minutes on the small ones.
pub(crate) fn preflight(
    network: &dyn Network,
    content: &Image,
    styles: &[Image],
    settings: &TransferSettings,
) -> Result<()> {
    prepare(network, content, styles, settings).map(|_| ())
}

/// A run's memory estimate: the host's part and the backend's device's.
#[derive(Clone, Copy, Debug)]
pub(super) struct Need {
    /// On the host whatever the backend: the optimiser's state, the images, the masks.
    pub host: u64,
    /// The backend's: kernels, the network's buffers, the targets.
    pub device: DeviceMemory,
}

impl Need {
    /// All bytes, device and host (for the CPU: the whole run's).
    pub fn total(&self) -> u64 {
        self.host + self.device.needed
    }

    /// The bytes that come from the host's memory.
    fn on_host(&self) -> u64 {
        match self.device.shared_with_host {
            true => self.total(),
            false => self.host,
        }
    }

    fn device_fits(&self) -> bool {
        self.device.shared_with_host
            || (self.device.available).is_none_or(|avail| self.device.needed <= avail)
    }

    fn fits(&self) -> bool {
        memory::fits(self.on_host()) && self.device_fits()
    }

    /// `Err(Limits)` naming `what` if the host or the device lacks the memory.
    fn ensure(&self, what: &str, network: &dyn Network) -> Result<()> {
        memory::ensure_available(self.on_host(), what)?;
        if self.device_fits() {
            return Ok(());
        }
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        Err(Error::limits(format!(
            "{what} needs about {:.1} GiB of memory on {}, but it has only {:.1} GiB; use a \
             smaller --size, tiles (--tile-size) or --device cpu",
            gib(self.device.needed),
            network.info(),
            gib(self.device.available.unwrap_or(0))
        )))
    }
}

/// Bytes a transfer will hold at its peak: the backend's (kernels, the network's buffers at the
/// working size or the largest style image's or one tile's window, the content targets: see
/// [`Network::memory`]) and the host's: the optimiser's state, the images being optimised, the
/// style images at their working size and the masks.
pub(super) fn memory_estimate(
    net: &dyn Network,
    plan: &LayerPlan,
    ((width, height), style_sizes): ((usize, usize), &[(usize, usize)]),
    settings: &TransferSettings,
    tiling: Option<&Tiling>,
) -> Result<Need> {
    let device = net.memory(&Problem {
        size: (width, height),
        style_sizes,
        content_layers: &plan.content,
        style_layers: &plan.style,
        tiling,
    })?;
    let f32s = std::mem::size_of::<f32>() as u64;
    let len = width as u64 * height as u64 * 3;
    // x, its gradient, the best image, and the resized content, style and start images.
    let images = 6 * len * f32s;
    let optimizer = settings.optimizer.state_bytes(len as usize) as u64;
    let masks = plan.mask_bytes(settings.architecture, (width, height), style_sizes);
    Ok(Need {
        host: images + optimizer + masks + style_image_bytes(style_sizes),
        device,
    })
}

/// The style images at their working size, all held while the targets are computed (RGB and
/// alpha as f32), and the resampler's output buffer for the largest while it is made.
fn style_image_bytes(style_sizes: &[(usize, usize)]) -> u64 {
    let pixels = |&(w, h): &(usize, usize)| w as u64 * h as u64;
    let all: u64 = style_sizes.iter().map(pixels).sum();
    let largest = style_sizes.iter().map(pixels).max().unwrap_or(0);
    (4 * all + 3 * largest) * std::mem::size_of::<f32>() as u64
}
