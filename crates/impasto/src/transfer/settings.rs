use std::sync::Arc;

use crate::backend::{Backend, CpuBackend};
use crate::color::PreserveColor;
use crate::core::Pooling;
use crate::image_io::Image;
use crate::loss::LossWeights;
use crate::model::{AlgorithmPolicy, Architecture};
use crate::optim::{Adam, AdamConfig, Lbfgs, LbfgsConfig, Optimizer};

/// The paper's content layer.
pub const PAPER_CONTENT_LAYERS: &[&str] = &["relu4_2"];
/// The paper's style layers, each weighted 1/5.
pub const PAPER_STYLE_LAYERS: &[&str] = &["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"];

/// Where the optimisation starts.
#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    /// The content photo: converges fastest and looks best (Gatys et al., fig. 6).
    Content,
    /// The (first) style image, resized to the working size.
    Style,
    /// Gaussian noise around mid-grey, from the run's seed.
    Noise,
    /// A given image, resized to the working size.
    Image(Image),
}

/// Everything that defines a transfer besides the images and the optimiser.
#[derive(Clone, Debug)]
pub struct TransferSettings {
    /// Long side of the working image; the content keeps its aspect ratio.
    pub size: usize,
    /// Each style image is resized so its long side is `size × style_scale`.
    pub style_scale: f64,
    /// VGG16 or VGG19; must match the weights.
    pub architecture: Architecture,
    /// Average (the paper's) or max pooling.
    pub pooling: Pooling,
    /// Which convolution algorithm the network runs.
    pub algorithm: AlgorithmPolicy,
    /// Content layers (names like `relu4_2`); empty: no content loss.
    pub content_layers: Vec<String>,
    /// Style layers; empty: no style loss.
    pub style_layers: Vec<String>,
    /// w_l per style layer; `None`: 1/L each, as in the paper.
    pub style_layer_weights: Option<Vec<f64>>,
    /// Share of each style image in the blended target; `None`: equal shares.
    pub style_blend_weights: Option<Vec<f64>>,
    /// Where on the image each style applies (spatial control); `None`: every style everywhere,
    /// blended. With masks the styles are not blended, so blend weights must be `None`.
    pub masks: Option<SpatialControl>,
    /// α, β and the TV weight.
    pub weights: LossWeights,
    /// Keep the content's colours: transfer luminance only, or recolour the styles first.
    pub preserve_color: PreserveColor,
    /// Where the optimisation starts.
    pub init: Init,
    /// L-BFGS (the paper's) or Adam, with its settings.
    pub optimizer: OptimizerSettings,
    /// Seeds the noise start; the same seed and settings give the same image on the same
    /// machine and thread count (CPUs with and without FMA round differently).
    pub seed: u64,
    /// When to run the image in tiles (see [`crate::loss::Tiling`]).
    pub tiles: TileSize,
    /// The device that evaluates the objective: [`CpuBackend`] by default; front ends plug
    /// others (a GPU from `impasto-gpu`) by value. Its network is built once per run.
    pub backend: Arc<dyn Backend>,
}

/// When a transfer runs its image tile by tile, which needs less memory and gives the same
/// losses and gradient (each evaluation then runs the network forward twice).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TileSize {
    /// Only when the whole image does not fit in the available memory, then with the largest
    /// tiles that do.
    #[default]
    Auto,
    /// Always, with cores of about this many pixels a side.
    Core(usize),
}

impl Default for TransferSettings {
    /// The paper's setting: VGG19 with average pooling, content relu4_2, style relu1_1…relu5_1,
    /// α/β = 1e-3, starting from the content image, at 512 px.
    fn default() -> Self {
        TransferSettings {
            size: 512,
            style_scale: 1.0,
            architecture: Architecture::Vgg19,
            pooling: Pooling::Avg,
            algorithm: AlgorithmPolicy::Auto,
            content_layers: names(PAPER_CONTENT_LAYERS),
            style_layers: names(PAPER_STYLE_LAYERS),
            style_layer_weights: None,
            style_blend_weights: None,
            masks: None,
            weights: LossWeights::default(),
            preserve_color: PreserveColor::None,
            init: Init::Content,
            optimizer: OptimizerSettings::default(),
            seed: 0,
            tiles: TileSize::Auto,
            backend: CpuBackend::shared(),
        }
    }
}

/// Spatial control of style (Gatys et al. 2017, "Controlling Perceptual Factors in Neural Style
/// Transfer"): each style is matched only inside its region of the image, using only the
/// statistics of its own chosen part of the style image. Pixels outside every region get no
/// style loss (only content and TV).
///
/// Masks are images whose brightness is the weight: the mean of the three channels / 255, so
/// white is 1, black 0 and greys weight softly; alpha is ignored. A mask is resized to the image
/// it describes (the working image, or its style image at its working size), whatever its own
/// size or aspect ratio.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpatialControl {
    /// One mask per style image (white = that style's region), or a single mask with two styles:
    /// style 1 where white, style 2 where black (its complement).
    pub content: Vec<Image>,
    /// Per style image, the part of it whose statistics are used (None: all of it). May also be
    /// empty: every style image is used whole.
    pub style: Vec<Option<Image>>,
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The optimiser and its settings.
#[derive(Clone, Debug)]
pub enum OptimizerSettings {
    /// The paper's choice, and the default.
    Lbfgs(LbfgsConfig),
    /// Adam, which needs less memory.
    Adam(AdamConfig),
}

impl Default for OptimizerSettings {
    fn default() -> Self {
        OptimizerSettings::Lbfgs(LbfgsConfig::default())
    }
}

impl OptimizerSettings {
    /// A fresh optimiser over `len` values.
    pub fn build(&self, len: usize) -> crate::Result<Box<dyn Optimizer>> {
        Ok(match self {
            OptimizerSettings::Lbfgs(c) => Box::new(Lbfgs::new(len, c.clone())?),
            OptimizerSettings::Adam(c) => Box::new(Adam::new(len, c.clone())?),
        })
    }

    /// What the optimiser's state takes at most, for the memory estimate.
    pub fn state_bytes(&self, len: usize) -> usize {
        match self {
            OptimizerSettings::Lbfgs(c) => Lbfgs::history_bytes(len, c.history) + 2 * len * 4,
            // The two moment estimates.
            OptimizerSettings::Adam(_) => 2 * len * 4,
        }
    }
}
