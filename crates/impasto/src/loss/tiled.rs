//! The objective evaluated tile by tile, for images whose whole-image buffers do not fit in
//! memory.
//!
//! The image is cut into cores; each core is run through the network inside a window that adds
//! a halo on every side. The halo covers the receptive field of the deepest layer a loss reads,
//! and window edges fall on multiples of that layer's pooling stride, so each core's features are
//! exactly the whole image's: the tiled losses and gradient are the whole-image ones, up to
//! rounding. Style statistics stay global: a first pass sums every core's Gram matrix, the
//! losses come from the sums, and a second pass back-propagates each core's share of the
//! gradient (features are recomputed rather than kept, which is the point). The cuts move
//! between iterations ([`Tiling::advance`]), so not even rounding lines up into a seam.

use crate::core::{gram, FeatureMap, Scalar};
use crate::model::{Architecture, Layer, Vgg, Workspace};
use crate::{Error, Result};

use super::{total_variation, LossParts, Objective};

/// How an image is cut into tiles: core size, halo, pooling alignment and the current shift.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tiling {
    core: usize,
    halo: usize,
    align: usize,
    /// Where the first cut falls (rows, columns), a multiple of `align` below `core`.
    shift: (usize, usize),
}

/// One tile: its core and its window, in image pixels (`[y0, y1) × [x0, x1)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    /// The pixels this tile is responsible for; the cores cover the image once.
    pub core: Rect,
    /// The core with its halo: what the network runs on.
    pub window: Rect,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// A rectangle of pixels, `[y0, y1) × [x0, x1)`.
pub struct Rect {
    /// First row.
    pub y0: usize,
    /// One past the last row.
    pub y1: usize,
    /// First column.
    pub x0: usize,
    /// One past the last column.
    pub x1: usize,
}

impl Rect {
    fn height(&self) -> usize {
        self.y1 - self.y0
    }
    fn width(&self) -> usize {
        self.x1 - self.x0
    }
}

impl Tiling {
    /// Tiles of about `core` pixels a side for losses at `layers` of `architecture`. The halo
    /// and the cuts are derived from the layers; `core` is rounded up to the alignment.
    pub fn new(architecture: Architecture, layers: &[Layer], core: usize) -> Result<Self> {
        let deepest_pools = layers.iter().map(|l| l.pools_before()).max().unwrap_or(0);
        let align = 1 << deepest_pools;
        let mut halo = 0;
        for &l in layers {
            let (left, right) = receptive_extent(architecture, l)?;
            halo = halo.max(left).max(right);
        }
        let round = |v: usize| v.div_ceil(align) * align;
        if core == 0 {
            return Err(Error::parameter("a tile needs at least one pixel"));
        }
        Ok(Tiling {
            core: round(core),
            halo: round(halo),
            align,
            shift: (0, 0),
        })
    }

    /// A tile's core side, in pixels.
    pub fn core(&self) -> usize {
        self.core
    }
    /// The halo around each core, in pixels.
    pub fn halo(&self) -> usize {
        self.halo
    }

    /// The largest window side a tile can have: pieces are at most 1.5 cores (see `cuts`).
    pub fn max_window(&self) -> usize {
        (self.core * 3 / 2).div_ceil(self.align) * self.align + 2 * self.halo
    }

    /// Moves the cuts for the next iteration: by a fixed fraction of a core that is not a
    /// simple ratio of it (so the cuts do not cycle quickly), on the alignment grid.
    pub fn advance(&mut self) {
        let units = (self.core / self.align).max(1);
        let step = ((units as f64 * 0.618).round() as usize).max(1);
        let next = |s: usize| ((s / self.align + step) % units) * self.align;
        self.shift = (next(self.shift.0), next(self.shift.1 + self.align));
    }

    /// The tiles covering an `h × w` image with the current cuts, row by row.
    pub fn tiles(&self, h: usize, w: usize) -> Vec<Tile> {
        let rows = self.cuts(h, self.shift.0);
        let cols = self.cuts(w, self.shift.1);
        let mut tiles = Vec::with_capacity((rows.len() - 1) * (cols.len() - 1));
        for r in rows.windows(2) {
            for c in cols.windows(2) {
                let core = Rect {
                    y0: r[0],
                    y1: r[1],
                    x0: c[0],
                    x1: c[1],
                };
                let window = Rect {
                    y0: core.y0.saturating_sub(self.halo),
                    y1: (core.y1 + self.halo).min(h),
                    x0: core.x0.saturating_sub(self.halo),
                    x1: (core.x1 + self.halo).min(w),
                };
                tiles.push(Tile { core, window });
            }
        }
        tiles
    }

    /// Cut positions along a side of `n` pixels, from 0 to `n`: every `core` from `shift`, with
    /// pieces under half a core merged into their neighbour.
    fn cuts(&self, n: usize, shift: usize) -> Vec<usize> {
        let mut cuts = vec![0];
        let mut at = if shift == 0 { self.core } else { shift };
        while at < n {
            cuts.push(at);
            at += self.core;
        }
        cuts.push(n);
        // Merging a short first piece leaves one under 1.5 cores; a short last piece is merged
        // only if that holds too (after the first merge it may not: [0, n) nearly 2 cores).
        let half = self.core / 2;
        if cuts.len() > 2 && cuts[1] - cuts[0] < half {
            cuts.remove(1);
        }
        let k = cuts.len();
        if k > 2
            && cuts[k - 1] - cuts[k - 2] < half
            && cuts[k - 1] - cuts[k - 3] <= self.core * 3 / 2
        {
            cuts.remove(k - 2);
        }
        cuts
    }
}

/// How far left (up) and right (down) of its own pixels a layer's output looks in the input:
/// each 3×3 convolution adds its stride on both sides, each 2×2 pooling its stride on the right.
fn receptive_extent(architecture: Architecture, layer: Layer) -> Result<(usize, usize)> {
    let pos = architecture.layer_position(layer)?;
    let (mut left, mut right, mut stride) = (0, 0, 1);
    for l in &architecture.layers()[..=pos] {
        match l {
            Layer::Conv { .. } => {
                left += stride;
                right += stride;
            }
            Layer::Pool { .. } => {
                right += stride;
                stride *= 2;
            }
            Layer::Relu { .. } => {}
        }
    }
    Ok((left, right))
}

/// A tile's core at one layer: rows and columns in the window's feature map, and where the
/// window's feature map starts in the whole image's.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CoreAt {
    pub rows: (usize, usize),
    pub cols: (usize, usize),
    pub origin: (usize, usize),
}

impl Tile {
    /// The core at a layer `pools` poolings deep, for an `h × w` image. Window and core edges
    /// inside the image are multiples of the alignment, so they divide exactly; edges at the
    /// image's border round down as the network's floor-mode pooling does.
    pub(crate) fn core_at(&self, pools: usize, h: usize, w: usize) -> CoreAt {
        let at = |v: usize, end: usize, full: usize| {
            if v == full {
                end
            } else {
                v >> pools
            }
        };
        let (hl, wl) = (h >> pools, w >> pools);
        let origin = (self.window.y0 >> pools, self.window.x0 >> pools);
        CoreAt {
            rows: (
                at(self.core.y0, hl, h) - origin.0,
                at(self.core.y1, hl, h) - origin.0,
            ),
            cols: (
                at(self.core.x0, wl, w) - origin.1,
                at(self.core.x1, wl, w) - origin.1,
            ),
            origin,
        }
    }
}

/// `out` = `f` with everything outside the core zeroed.
fn restrict<T: Scalar>(f: &FeatureMap<T>, core: &CoreAt, out: &mut FeatureMap<T>) {
    out.reshape(f.height(), f.width(), f.channels());
    out.zero();
    let c = f.channels();
    for y in core.rows.0..core.rows.1 {
        let (a, b) = (core.cols.0 * c, core.cols.1 * c);
        out.pixel_row_mut(y)[a..b].copy_from_slice(&f.pixel_row(y)[a..b]);
    }
}

impl<T: Scalar> Objective<T> {
    /// [`Objective::evaluate`] of an `h × w` image, tile by tile with `tiling`'s current cuts,
    /// in a workspace of any size for the same layers (it is reshaped per tile). Spatial masks
    /// are not supported here.
    #[allow(clippy::too_many_arguments)]
    pub fn evaluate_tiled(
        &mut self,
        net: &Vgg<T>,
        ws: &mut Workspace<T>,
        tiling: &Tiling,
        image: &[T],
        h: usize,
        w: usize,
        grad: &mut [T],
    ) -> Result<LossParts> {
        if image.len() != h * w * 3 || grad.len() != image.len() {
            return Err(Error::parameter(format!(
                "image of {} values and gradient of {} for a {w}×{h} image",
                image.len(),
                grad.len()
            )));
        }
        if self.style.iter().any(|s| s.mask().is_some()) {
            return Err(Error::parameter(
                "spatial masks cannot be combined with tiling",
            ));
        }
        let tiles = tiling.tiles(h, w);
        let mut part = FeatureMap::default();
        let mut rgb = Vec::new();
        let convention = net.convention();

        // Pass 1: every core's Gram matrices and content losses.
        let mut grams: Vec<Vec<T>> = (self.style.iter())
            .map(|s| vec![T::ZERO; s.channels() * s.channels()])
            .collect();
        let mut one = Vec::new();
        let mut parts = LossParts::default();
        forward_tiles(net, ws, &tiles, image, w, |tile, ws| {
            for c in &self.content {
                let core = tile.core_at(c.layer().pools_before(), h, w);
                parts.content += c.weight() * c.value_of_part(net.features(ws, c.layer())?, &core);
            }
            for (s, sum) in self.style.iter().zip(&mut grams) {
                let core = tile.core_at(s.layer().pools_before(), h, w);
                let f = net.features(ws, s.layer())?;
                add_core_gram(f, &core, (&mut part, &mut one), sum);
            }
            Ok(())
        })?;
        for (s, sum) in self.style.iter_mut().zip(&grams) {
            let pools = s.layer().pools_before();
            let pixels = (h >> pools) * (w >> pools);
            parts.style += s.weight() * s.evaluate_summed(sum, pixels);
        }
        parts.total = self.weights.content * parts.content + self.weights.style * parts.style;

        // Pass 2: each core's share of the gradient, through its window.
        grad.fill(T::ZERO);
        let (alpha, beta) = (self.weights.content, self.weights.style);
        let mut window_grad = Vec::new();
        for tile in &tiles {
            load(net, ws, image, w, &tile.window, &mut rgb)?;
            net.forward(ws);
            let (content, style) = (&self.content, &self.style);
            let grad_input = net.backward(ws, &mut |layer, f, g| {
                let core = tile.core_at(layer.pools_before(), h, w);
                for c in content.iter().filter(|c| c.layer() == layer) {
                    c.add_gradient_of_part(f, &core, g, T::from_f64(alpha * c.weight()));
                }
                for s in style.iter().filter(|s| s.layer() == layer) {
                    restrict(f, &core, &mut part);
                    s.add_gradient_of_part(&part, g, T::from_f64(beta * s.weight()));
                }
            });
            let win = &tile.window;
            window_grad.clear();
            window_grad.resize(win.height() * win.width() * 3, T::ZERO);
            convention.gradient_to_rgb(grad_input, &mut window_grad);
            for (y, row) in window_grad.chunks_exact(win.width() * 3).enumerate() {
                let o = ((win.y0 + y) * w + win.x0) * 3;
                for (d, &v) in grad[o..o + row.len()].iter_mut().zip(row) {
                    *d += v;
                }
            }
        }
        if self.weights.tv > 0.0 {
            parts.tv = total_variation(image, h, w, 3, grad, T::from_f64(self.weights.tv));
            parts.total += self.weights.tv * parts.tv;
        }
        Ok(parts)
    }
}

/// The outputs at `layers` of an `h × w` RGB image, computed tile by tile in `ws` and put
/// together: the content targets of an image too large to run whole.
pub fn tiled_features<T: Scalar>(
    net: &Vgg<T>,
    ws: &mut Workspace<T>,
    tiling: &Tiling,
    image: &[T],
    (h, w): (usize, usize),
    layers: &[Layer],
) -> Result<Vec<FeatureMap<T>>> {
    let mut out: Vec<Option<FeatureMap<T>>> = vec![None; layers.len()];
    forward_tiles(net, ws, &tiling.tiles(h, w), image, w, |tile, ws| {
        for (slot, &l) in out.iter_mut().zip(layers) {
            let f = net.features(ws, l)?;
            let pools = l.pools_before();
            let whole =
                slot.get_or_insert_with(|| FeatureMap::zeros(h >> pools, w >> pools, f.channels()));
            let core = tile.core_at(pools, h, w);
            let c = f.channels();
            for y in core.rows.0..core.rows.1 {
                let (a, b) = (core.cols.0 * c, core.cols.1 * c);
                let o = core.origin.1 * c;
                whole.pixel_row_mut(y + core.origin.0)[o + a..o + b]
                    .copy_from_slice(&f.pixel_row(y)[a..b]);
            }
        }
        Ok(())
    })?;
    out.into_iter()
        .map(|f| f.ok_or_else(|| Error::parameter("an image with no tiles")))
        .collect()
}

/// The normalised Gram matrices `G / M` at `layers` of an `h × w` RGB image, summed over tiles
/// in `ws`: the style targets of an image too large to run whole.
pub fn tiled_normalized_grams<T: Scalar>(
    net: &Vgg<T>,
    ws: &mut Workspace<T>,
    tiling: &Tiling,
    image: &[T],
    (h, w): (usize, usize),
    layers: &[Layer],
) -> Result<Vec<(Vec<T>, usize)>> {
    let mut sums: Vec<Option<(Vec<T>, usize)>> = vec![None; layers.len()];
    let (mut part, mut one) = (FeatureMap::default(), Vec::new());
    forward_tiles(net, ws, &tiling.tiles(h, w), image, w, |tile, ws| {
        for (slot, &l) in sums.iter_mut().zip(layers) {
            let f = net.features(ws, l)?;
            let c = f.channels();
            let (sum, _) = slot.get_or_insert_with(|| (vec![T::ZERO; c * c], c));
            let core = tile.core_at(l.pools_before(), h, w);
            add_core_gram(f, &core, (&mut part, &mut one), sum);
        }
        Ok(())
    })?;
    (sums.into_iter().zip(layers))
        .map(|(s, l)| {
            let (mut g, c) = s.ok_or_else(|| Error::parameter("an image with no tiles"))?;
            let pools = l.pools_before();
            let inv = T::from_f64(1.0 / ((h >> pools) * (w >> pools)) as f64);
            g.iter_mut().for_each(|v| *v *= inv);
            Ok((g, c))
        })
        .collect()
}

/// Runs the network forward on each tile's window of `image` (`w` pixels wide) in turn and hands
/// `visit` the tile and the workspace holding its outputs.
fn forward_tiles<T: Scalar>(
    net: &Vgg<T>,
    ws: &mut Workspace<T>,
    tiles: &[Tile],
    image: &[T],
    w: usize,
    mut visit: impl FnMut(&Tile, &Workspace<T>) -> Result<()>,
) -> Result<()> {
    let mut rgb = Vec::new();
    for tile in tiles {
        load(net, ws, image, w, &tile.window, &mut rgb)?;
        net.forward(ws);
        visit(tile, ws)?;
    }
    Ok(())
}

/// `sum += ` the Gram matrix of the core's part of `f`, through the scratch buffers `(part, one)`.
fn add_core_gram<T: Scalar>(
    f: &FeatureMap<T>,
    core: &CoreAt,
    (part, one): (&mut FeatureMap<T>, &mut Vec<T>),
    sum: &mut [T],
) {
    restrict(f, core, part);
    one.resize(sum.len(), T::ZERO);
    gram(part, one);
    for (a, &b) in sum.iter_mut().zip(one.iter()) {
        *a += b;
    }
}

/// Shapes `ws` for the window and puts the window's pixels into its input.
fn load<T: Scalar>(
    net: &Vgg<T>,
    ws: &mut Workspace<T>,
    image: &[T],
    w: usize,
    win: &Rect,
    rgb: &mut Vec<T>,
) -> Result<()> {
    net.reshape_workspace(ws, win.height(), win.width())?;
    rgb.clear();
    for y in win.y0..win.y1 {
        let o = (y * w + win.x0) * 3;
        rgb.extend_from_slice(&image[o..o + win.width() * 3]);
    }
    net.convention().to_network(rgb, ws.input_mut());
    Ok(())
}
