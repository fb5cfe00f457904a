use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use crate::color;
use crate::image_io::{self, Image};
use crate::loss::{LossParts, Objective, StyleLoss, Tiling};
use crate::model::{Layer, Vgg, VggOptions, Workspace};
use crate::optim::Optimizer;
use crate::weights::VggWeights;
use crate::{memory, Error, ErrorKind, Result};

use super::noise::gaussian_image;
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

/// One style transfer (or reconstruction) in progress: the network, the objective with its
/// targets, the image being optimised and the best image so far.
pub struct Transfer {
    /// Shared with the other transfers of a batch ([`super::PreparedStyles`]).
    net: Arc<Vgg>,
    pub(super) objective: Objective,
    ws: Workspace,
    /// Set when the image runs tile by tile; `ws` is then sized for one window.
    tiling: Option<Tiling>,
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
}

impl Transfer {
    /// Prepares a transfer of `styles` onto `content` (both at any size; they are resized per
    /// `settings`). With no content layers `content` only sets the canvas (size, alpha); with no
    /// style layers `styles` may be empty. Refuses, before allocating, a size whose memory
    /// estimate exceeds what the system has available.
    pub fn new(
        weights: &VggWeights,
        content: &Image,
        styles: &[Image],
        settings: &TransferSettings,
    ) -> Result<Self> {
        Transfer::build(weights, content, styles, settings, Shared::default())
    }

    /// [`Transfer::new`] with what a batch shares: a network built before, and the style
    /// losses at this size computed by an earlier transfer with the same settings.
    pub(super) fn build(
        weights: &VggWeights,
        content: &Image,
        styles: &[Image],
        settings: &TransferSettings,
        shared: Shared<'_>,
    ) -> Result<Self> {
        let Prepared {
            net,
            plan,
            width,
            height,
            style_sizes,
            tiling,
            optimizer,
        } = prepare(weights, content, styles, settings, shared.net)?;
        let content = image_io::resize(content, width, height)?;
        let recolor = Recolor::new(settings.preserve_color, &content);
        // Targets given: the styles need not be resized (nor recoloured: sharing is only offered
        // without colour preservation and masks, where nothing about them depends on the content).
        let to_resize = if shared.style_losses.is_some() {
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
        // Whole: the targets use workspaces of their own, freed before this one exists (the
        // memory estimate counts the larger, not both). Tiled: one window's workspace serves all.
        let (objective, ws) = match &tiling {
            None => {
                let objective = plan.objective(
                    &net,
                    &seen_content,
                    &resized_styles,
                    settings,
                    None,
                    shared.style_losses,
                )?;
                (objective, net.workspace(height, width, &plan.taps())?)
            }
            Some(t) => {
                let side = t.max_window();
                let mut ws = net.workspace(side.min(height), side.min(width), &plan.taps())?;
                let tiled = Some((t, &mut ws));
                let objective = plan.objective(
                    &net,
                    &seen_content,
                    &resized_styles,
                    settings,
                    tiled,
                    shared.style_losses,
                )?;
                (objective, ws)
            }
        };
        drop(resized_styles);
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
        Ok(Transfer {
            net,
            objective,
            ws,
            tiling,
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
        })
    }

    /// Makes this transfer one scale of a coarse-to-fine run: records carry `scale`, number
    /// iterations on from `first_iteration` and time from `clock`. Only before [`Transfer::start`].
    pub(crate) fn continue_run(&mut self, scale: usize, first_iteration: usize, clock: Instant) {
        debug_assert!(self.records.is_empty(), "continue_run after start");
        self.scale = scale;
        self.first_iteration = first_iteration;
        self.started = Some(clock);
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
        self.objective.layers()
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
        self.parts = evaluate(
            &self.net,
            &mut self.objective,
            &mut self.ws,
            self.tiling.as_ref(),
            (self.height, self.width),
            &self.x,
            &mut self.grad,
        )?;
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
        // New cuts each iteration (the same within one, so the line search sees one function).
        if let Some(t) = self.tiling.as_mut() {
            t.advance();
        }
        let size = (self.height, self.width);
        let Transfer {
            net,
            objective,
            ws,
            tiling,
            optimizer,
            x,
            grad,
            parts,
            ..
        } = self;
        // The optimiser's last evaluation is at the point it returns, so `parts` ends up
        // describing the new image.
        let mut fx = parts.total;
        let mut eval = |at: &[f32], g: &mut [f32]| -> Result<f64> {
            *parts = evaluate(net, objective, ws, tiling.as_ref(), size, at, g)?;
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

/// One evaluation of the objective at `x`, whole or tile by tile.
fn evaluate(
    net: &Vgg,
    objective: &mut Objective,
    ws: &mut Workspace,
    tiling: Option<&Tiling>,
    (h, w): (usize, usize),
    x: &[f32],
    grad: &mut [f32],
) -> Result<LossParts> {
    match tiling {
        None => objective.evaluate(net, ws, x, grad),
        Some(t) => objective.evaluate_tiled(net, ws, t, x, h, w, grad),
    }
}

/// What a transfer may take from the batch it belongs to instead of building it.
#[derive(Clone, Copy, Default)]
pub(super) struct Shared<'a> {
    /// The network, built for these settings' layers, pooling and algorithm.
    pub net: Option<&'a Arc<Vgg>>,
    /// The style losses (targets and weights) at this working size.
    pub style_losses: Option<&'a [StyleLoss]>,
}

/// What [`Transfer::new`] settles before touching the images: the checked settings, the network,
/// the sizes and whether to tile, after making sure it all fits in memory.
struct Prepared {
    net: Arc<Vgg>,
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
    net: &Vgg,
    plan: &LayerPlan,
    sizes: ((usize, usize), &[(usize, usize)]),
    settings: &TransferSettings,
    whole: u64,
) -> Result<(Option<Tiling>, OptimizerSettings, u64)> {
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
        TileSize::Auto if settings.masks.is_some() || memory::fits(whole) => {
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
            let others = estimate(&tiling)? - state(full);
            if !memory::fits(others + state(floor)) {
                continue;
            }
            let mut history = full;
            while history > floor && !memory::fits(others + state(history)) {
                history = (history * 3 / 4).max(floor);
            }
            if history < full {
                tracing::warn!(
                    "L-BFGS keeps {history} correction pairs instead of {full}: more do not fit \
                     in memory"
                );
            }
            let needed = others + state(history);
            return Ok((tiling, with_history(&requested, history), needed));
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

fn prepare(
    weights: &VggWeights,
    content: &Image,
    styles: &[Image],
    settings: &TransferSettings,
    shared_net: Option<&Arc<Vgg>>,
) -> Result<Prepared> {
    if settings.size == 0 {
        return Err(Error::parameter("size must be at least 1 pixel"));
    }
    if !(settings.style_scale.is_finite() && settings.style_scale > 0.0) {
        return Err(Error::parameter(format!(
            "style scale must be a positive number, got {}",
            settings.style_scale
        )));
    }
    if weights.architecture != settings.architecture {
        return Err(Error::parameter(format!(
            "the weights are {} but {} was asked for",
            weights.architecture, settings.architecture
        )));
    }
    if settings.size > MAX_WORKING_SIDE {
        return Err(Error::limits(format!(
            "size {} px is more than the {MAX_WORKING_SIDE} px a working image may have",
            settings.size
        )));
    }
    // In f64 and checked before the cast: `size × style scale` can be any positive number.
    let style_long = (settings.size as f64 * settings.style_scale)
        .round()
        .max(1.0);
    if !styles.is_empty() && style_long > MAX_WORKING_SIDE as f64 {
        return Err(Error::limits(format!(
            "--style-scale {}: the style images would be resized to a long side of \
             {style_long:.0} px (size {} × style scale), more than the {MAX_WORKING_SIDE} px a \
             working image may have; use a smaller --style-scale",
            settings.style_scale, settings.size
        )));
    }
    let style_long = style_long as usize;
    let plan = LayerPlan::new(settings, styles.len())?;
    let (width, height) = image_io::fit_long_side(content.width, content.height, settings.size);
    let style_sizes: Vec<(usize, usize)> = styles
        .iter()
        .map(|s| image_io::fit_long_side(s.width, s.height, style_long))
        .collect();

    let options = VggOptions {
        pooling: settings.pooling,
        algorithm: settings.algorithm,
        deepest: Some(plan.deepest(settings.architecture)?),
    };
    let net = match shared_net {
        Some(net) => Arc::clone(net),
        None => Arc::new(Vgg::with_options(weights, &options)?),
    };
    let sizes = ((width, height), style_sizes.as_slice());
    let whole = memory_estimate(&net, &plan, sizes, settings, None)?;
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
    let (tiling, optimizer, needed) = fit_to_memory(&net, &plan, sizes, settings, whole)?;
    match &tiling {
        None => memory::ensure_available(needed, &what)?,
        Some(t) => memory::ensure_available(
            needed,
            &format!("{what} in tiles of {} px (halo {} px)", t.core(), t.halo()),
        )?,
    }
    tracing::info!(
        "working size {width}×{height}, memory estimate {:.0} MiB{}",
        needed as f64 / (1 << 20) as f64,
        tiling.as_ref().map_or(String::new(), |t| format!(
            ", in tiles of {} px with a {} px halo",
            t.core(),
            t.halo()
        ))
    );
    Ok(Prepared {
        net,
        plan,
        width,
        height,
        style_sizes,
        tiling,
        optimizer,
    })
}

/// Checks everything [`Transfer::new`] checks before reading pixels (settings, layer names,
/// memory at that size) without building the transfer: a coarse-to-fine run asks this of its
/// last, largest scale before spending minutes on the small ones.
pub(crate) fn preflight(
    weights: &VggWeights,
    content: &Image,
    styles: &[Image],
    settings: &TransferSettings,
    shared_net: Option<&Arc<Vgg>>,
) -> Result<()> {
    prepare(weights, content, styles, settings, shared_net).map(|_| ())
}

/// Prefixes a parameter error's message with what it is about.
fn in_context(what: String) -> impl FnOnce(Error) -> Error {
    move |e| match e.kind() {
        ErrorKind::Parameter => e.context(what),
        _ => e,
    }
}

/// Bytes a transfer will hold at its peak: kernels, the network's buffers at the working size
/// (or the largest style image's, while targets are computed; or one tile's window for all of
/// them), the content targets, the optimiser's state, the images being optimised and the style
/// images at their working size.
pub(super) fn memory_estimate(
    net: &Vgg,
    plan: &LayerPlan,
    ((width, height), style_sizes): ((usize, usize), &[(usize, usize)]),
    settings: &TransferSettings,
    tiling: Option<&Tiling>,
) -> Result<u64> {
    let taps = plan.taps();
    let f32s = std::mem::size_of::<f32>() as u64;
    let buffers = match tiling {
        Some(t) => {
            let side = t.max_window();
            let largest = style_sizes
                .iter()
                .fold((width, height), |(w, h), &(sw, sh)| (w.max(sw), h.max(sh)));
            let (wh, ww) = (side.min(largest.1) as u64, side.min(largest.0) as u64);
            // Besides the workspace: one style layer's features restricted to a core (the
            // largest such layer) and the window's pixels and gradient.
            let restricted = (plan.style.iter())
                .map(|l| {
                    let p = l.pools_before();
                    ((wh >> p) + 2) * ((ww >> p) + 2) * l.channels() as u64 * f32s
                })
                .max()
                .unwrap_or(0);
            net.workspace_bytes(wh as usize, ww as usize, &taps)? as u64
                + restricted
                + 2 * wh * ww * 3 * f32s
        }
        None => {
            let mut buffers = net
                .workspace_bytes(height, width, &taps)
                .map_err(in_context(format!("the working image ({width}×{height})")))?
                as u64;
            if !plan.style.is_empty() {
                for (i, &(w, h)) in style_sizes.iter().enumerate() {
                    let bytes =
                        net.workspace_bytes(h, w, &plan.style)
                            .map_err(in_context(format!(
                                "style image {} resized to {w}×{h} (size × style scale)",
                                i + 1
                            )))?;
                    buffers = buffers.max(bytes as u64);
                }
            }
            buffers
        }
    };
    // Content targets: the content layers' outputs at the working size.
    let content_targets: u64 = (plan.content.iter())
        .map(|l| {
            let p = l.pools_before();
            ((height >> p) + 2) as u64 * ((width >> p) + 2) as u64 * l.channels() as u64 * f32s
        })
        .sum();
    let len = width as u64 * height as u64 * 3;
    // x, its gradient, the best image, and the resized content, style and start images.
    let images = 6 * len * f32s;
    let optimizer = settings.optimizer.state_bytes(len as usize) as u64;
    let masks = plan.mask_bytes(settings.architecture, (width, height), style_sizes);
    Ok(net.kernel_bytes() as u64
        + buffers
        + content_targets
        + images
        + optimizer
        + masks
        + style_image_bytes(style_sizes))
}

/// The style images at their working size, all held while the targets are computed (RGB and
/// alpha as f32), and the resampler's output buffer for the largest while it is made.
fn style_image_bytes(style_sizes: &[(usize, usize)]) -> u64 {
    let pixels = |&(w, h): &(usize, usize)| w as u64 * h as u64;
    let all: u64 = style_sizes.iter().map(pixels).sum();
    let largest = style_sizes.iter().map(pixels).max().unwrap_or(0);
    (4 * all + 3 * largest) * std::mem::size_of::<f32>() as u64
}
