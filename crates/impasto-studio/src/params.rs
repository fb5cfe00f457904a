//! A job's parameters as the page sends them, with the same defaults as `impasto transfer`, and
//! their resolution into the library's settings. [`JobParams::command_line`] writes the
//! `impasto transfer …` command that reproduces a job; the CLI's tests parse it back with the
//! CLI's own parser and check it resolves to the same settings, and that the defaults agree.

use std::path::Path;

use serde::{Deserialize, Serialize};

use impasto::color::PreserveColor;
use impasto::core::Pooling;
use impasto::image_io::BitDepth;
use impasto::loss::LossWeights;
use impasto::model::{AlgorithmPolicy, Architecture};
use impasto::optim::{AdamConfig, LbfgsConfig, LineSearch};
use impasto::transfer::{
    Init, OptimizerSettings, Schedule, TileSize, TransferSettings, PAPER_CONTENT_LAYERS,
    PAPER_STYLE_LAYERS,
};

use crate::api_error::ApiError;
use crate::id::Id;

/// Most style paintings one job may blend.
pub const MAX_STYLES: usize = 8;
/// Most iterations one job may ask for (per scale).
pub const MAX_ITERATIONS: u32 = 100_000;

/// `--preserve-color`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorChoice {
    /// The paintings' colours.
    None,
    /// Transfer brightness only; the photo's chroma is restored.
    Luminance,
    /// Recolour the paintings to the photo's colours first.
    Histogram,
}

/// `--optimizer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerChoice {
    /// The paper's.
    Lbfgs,
    /// Less memory.
    Adam,
}

/// `--model`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelChoice {
    /// The paper's network.
    Vgg19,
    /// Needs imported weights.
    Vgg16,
}

/// `--pooling`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolingChoice {
    /// The paper's.
    Avg,
    /// VGG's own.
    Max,
}

/// `--init` (a file start is what "start from this result" gives: see [`JobParams::start_from`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitChoice {
    /// The photo.
    // Jobs saved when "fast" (the instant stylisation) was a start still load: measured not to
    // help, it was removed, and such a job starts from the photo.
    #[serde(alias = "fast")]
    Content,
    /// The first painting.
    Style,
    /// Noise from the seed.
    Noise,
}

/// What the page sends to start a job. Every field has the CLI's default, so `{"content": …,
/// "styles": [...]}` is a complete request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobParams {
    /// The photo: an upload's id.
    pub content: String,
    /// The paintings: upload ids.
    pub styles: Vec<String>,
    /// Shares of the paintings in the blend (`None`: equal).
    pub style_blend_weights: Option<Vec<f64>>,
    /// `--size`.
    pub size: u32,
    /// `--iterations`.
    pub iterations: u32,
    /// `--content-weight`.
    pub content_weight: f64,
    /// `--style-weight`.
    pub style_weight: f64,
    /// `--tv-weight`.
    pub tv_weight: f64,
    /// `--preserve-color`.
    pub preserve_color: ColorChoice,
    /// `--scales`: "auto" or a count.
    pub scales: String,
    /// `--start-size`.
    pub start_size: u32,
    /// `--scale-iterations`.
    pub scale_iterations: u32,
    /// `--style-scale`.
    pub style_scale: f64,
    /// `--optimizer`.
    pub optimizer: OptimizerChoice,
    /// `--lr` (`None`: the optimiser's default, 1).
    pub lr: Option<f64>,
    /// `--model`.
    pub model: ModelChoice,
    /// `--pooling`.
    pub pooling: PoolingChoice,
    /// `--content-layers`.
    pub content_layers: Vec<String>,
    /// `--style-layers`.
    pub style_layers: Vec<String>,
    /// `--style-layer-weights`.
    pub style_layer_weights: Option<Vec<f64>>,
    /// `--init`.
    pub init: InitChoice,
    /// Start from this earlier job's result instead (`--init FILE`).
    pub start_from: Option<String>,
    /// `--seed`.
    pub seed: u64,
    /// `--bit-depth`: 8 or 16.
    pub bit_depth: u8,
}

impl Default for JobParams {
    /// `impasto transfer`'s defaults (the CLI's tests hold them equal).
    fn default() -> Self {
        JobParams {
            content: String::new(),
            styles: Vec::new(),
            style_blend_weights: None,
            size: 512,
            iterations: 500,
            content_weight: 1.0,
            style_weight: 1e3,
            tv_weight: 10.0,
            preserve_color: ColorChoice::None,
            scales: "1".into(),
            start_size: 128,
            scale_iterations: 100,
            style_scale: 1.0,
            optimizer: OptimizerChoice::Lbfgs,
            lr: None,
            model: ModelChoice::Vgg19,
            pooling: PoolingChoice::Avg,
            content_layers: names(PAPER_CONTENT_LAYERS),
            style_layers: names(PAPER_STYLE_LAYERS),
            style_layer_weights: None,
            init: InitChoice::Content,
            start_from: None,
            seed: 0,
            bit_depth: 8,
        }
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A job's parameters checked and resolved into library settings.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The photo's upload.
    pub content: Id,
    /// The paintings' uploads.
    pub styles: Vec<Id>,
    /// An earlier job whose result is the start image.
    pub start_from: Option<Id>,
    /// Everything but the start image when it is an image (instant or an earlier result),
    /// which the worker fills in.
    pub settings: TransferSettings,
    /// Sizes and iterations.
    pub schedule: Schedule,
    /// Of the result PNG.
    pub bit_depth: BitDepth,
}

impl JobParams {
    /// Parses a request body, naming the field of any error (`size: invalid type: string…`).
    pub fn from_json(body: &[u8]) -> Result<JobParams, ApiError> {
        let de = &mut serde_json::Deserializer::from_slice(body);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let field = field.split(['.', '[']).next().unwrap_or("").to_string();
            let message = e.inner().to_string();
            if field.is_empty() || field == "?" {
                ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    format!("bad job request: {message}"),
                )
            } else {
                ApiError::field(&field, format!("{field}: {message}"))
            }
        })
    }

    /// Checks every field and resolves them as `impasto transfer` resolves its flags; `max_size`
    /// is the server's limit on `size`.
    pub fn resolve(&self, max_size: u32) -> Result<Resolved, ApiError> {
        let content = parse_id("content", &self.content)?;
        if self.styles.is_empty() {
            return Err(ApiError::field("styles", "choose at least one painting"));
        }
        if self.styles.len() > MAX_STYLES {
            return Err(ApiError::field(
                "styles",
                format!("at most {MAX_STYLES} paintings"),
            ));
        }
        let styles = self
            .styles
            .iter()
            .map(|s| parse_id("styles", s))
            .collect::<Result<Vec<_>, _>>()?;
        let start_from = match &self.start_from {
            Some(s) => Some(parse_id("start_from", s)?),
            None => None,
        };
        if !(1..=max_size).contains(&self.size) {
            return Err(ApiError::field(
                "size",
                format!("size must be 1 to {max_size} pixels"),
            ));
        }
        for (name, n) in [
            ("iterations", self.iterations),
            ("scale_iterations", self.scale_iterations),
        ] {
            if n > MAX_ITERATIONS {
                return Err(ApiError::field(
                    name,
                    format!("at most {MAX_ITERATIONS} iterations"),
                ));
            }
        }
        if !(1..=max_size).contains(&self.start_size) {
            return Err(ApiError::field(
                "start_size",
                format!("start size must be 1 to {max_size} pixels"),
            ));
        }
        for (name, v) in [
            ("content_weight", self.content_weight),
            ("style_weight", self.style_weight),
            ("tv_weight", self.tv_weight),
        ] {
            non_negative(name, v)?;
        }
        if !(self.style_scale.is_finite() && self.style_scale > 0.0) {
            return Err(ApiError::field("style_scale", "style scale must be > 0"));
        }
        if let Some(lr) = self.lr {
            if !(lr.is_finite() && lr > 0.0) {
                return Err(ApiError::field("lr", "the step size must be > 0"));
            }
        }
        let bit_depth = match self.bit_depth {
            8 => BitDepth::Eight,
            16 => BitDepth::Sixteen,
            _ => return Err(ApiError::field("bit_depth", "bit depth is 8 or 16")),
        };
        if let Some(w) = &self.style_blend_weights {
            if w.len() != styles.len() {
                return Err(ApiError::field(
                    "style_blend_weights",
                    format!("{} blend weights for {} paintings", w.len(), styles.len()),
                ));
            }
            w.iter()
                .try_for_each(|v| non_negative("style_blend_weights", *v))?;
            if w.iter().all(|v| *v == 0.0) {
                return Err(ApiError::field(
                    "style_blend_weights",
                    "blend weights are all zero",
                ));
            }
        }
        let architecture = match self.model {
            ModelChoice::Vgg19 => Architecture::Vgg19,
            ModelChoice::Vgg16 => Architecture::Vgg16,
        };
        for (name, layers) in [
            ("content_layers", &self.content_layers),
            ("style_layers", &self.style_layers),
        ] {
            for layer in layers {
                architecture
                    .parse_layer(layer)
                    .map_err(|e| ApiError::field(name, e.to_string()))?;
            }
        }
        if let Some(w) = &self.style_layer_weights {
            if w.len() != self.style_layers.len() {
                return Err(ApiError::field(
                    "style_layer_weights",
                    format!(
                        "{} layer weights for {} style layers",
                        w.len(),
                        self.style_layers.len()
                    ),
                ));
            }
            w.iter()
                .try_for_each(|v| non_negative("style_layer_weights", *v))?;
        }
        let scales = match self.scales.as_str() {
            "auto" => None,
            n => match n.parse::<usize>() {
                Ok(n) if (1..=32).contains(&n) => Some(n),
                _ => {
                    return Err(ApiError::field(
                        "scales",
                        format!("`{n}` is not auto or a number of scales from 1 to 32"),
                    ))
                }
            },
        };
        let schedule = Schedule::geometric(
            self.size as usize,
            self.start_size as usize,
            scales,
            self.iterations as usize,
            self.scale_iterations as usize,
        )
        .map_err(|e| ApiError::field("scales", e.to_string()))?;
        let lr = self.lr.unwrap_or(1.0);
        let settings = TransferSettings {
            backend: TransferSettings::default().backend,
            size: self.size as usize,
            style_scale: self.style_scale,
            architecture,
            pooling: match self.pooling {
                PoolingChoice::Avg => Pooling::Avg,
                PoolingChoice::Max => Pooling::Max,
            },
            algorithm: AlgorithmPolicy::Auto,
            content_layers: self.content_layers.clone(),
            style_layers: self.style_layers.clone(),
            style_layer_weights: self.style_layer_weights.clone(),
            style_blend_weights: self.style_blend_weights.clone(),
            masks: None,
            weights: LossWeights {
                content: self.content_weight,
                style: self.style_weight,
                tv: self.tv_weight,
            },
            preserve_color: match self.preserve_color {
                ColorChoice::None => PreserveColor::None,
                ColorChoice::Luminance => PreserveColor::Luminance,
                ColorChoice::Histogram => PreserveColor::Histogram,
            },
            init: match self.init {
                InitChoice::Content => Init::Content,
                InitChoice::Style => Init::Style,
                InitChoice::Noise => Init::Noise,
            },
            optimizer: match self.optimizer {
                OptimizerChoice::Lbfgs => OptimizerSettings::Lbfgs(LbfgsConfig {
                    history: 100,
                    line_search: LineSearch::StrongWolfe,
                    learning_rate: lr,
                }),
                OptimizerChoice::Adam => OptimizerSettings::Adam(AdamConfig {
                    learning_rate: lr,
                    ..AdamConfig::default()
                }),
            },
            seed: self.seed,
            tiles: TileSize::Auto,
        };
        Ok(Resolved {
            content,
            styles,
            start_from,
            settings,
            schedule,
            bit_depth,
        })
    }

    /// The arguments after `impasto` of the `impasto transfer` command that runs this job:
    /// the inputs as files, and every setting that differs from the default, besides size and
    /// iterations, which are always written. `init_file` is the start image when the job starts
    /// from an earlier result.
    pub fn command_args(
        &self,
        content: &Path,
        styles: &[&Path],
        output: &Path,
        init_file: Option<&Path>,
    ) -> Vec<String> {
        let d = JobParams::default();
        let mut a: Vec<String> = vec!["transfer".into(), "--content".into(), path(content)];
        for s in styles {
            a.extend(["--style".into(), path(s)]);
        }
        a.extend(["--output".into(), path(output)]);
        a.extend(["--size".into(), self.size.to_string()]);
        a.extend(["--iterations".into(), self.iterations.to_string()]);
        let mut flag = |name: &str, value: String, default: String| {
            if value != default {
                a.extend([format!("--{name}"), value]);
            }
        };
        let list = |v: &[f64]| v.iter().map(f64::to_string).collect::<Vec<_>>().join(",");
        let opt_list = |v: &Option<Vec<f64>>| v.as_deref().map(list).unwrap_or_default();
        flag(
            "style-blend-weights",
            opt_list(&self.style_blend_weights),
            opt_list(&d.style_blend_weights),
        );
        flag(
            "content-weight",
            self.content_weight.to_string(),
            d.content_weight.to_string(),
        );
        flag(
            "style-weight",
            self.style_weight.to_string(),
            d.style_weight.to_string(),
        );
        flag(
            "tv-weight",
            self.tv_weight.to_string(),
            d.tv_weight.to_string(),
        );
        flag(
            "preserve-color",
            keyword(&self.preserve_color),
            keyword(&d.preserve_color),
        );
        flag("scales", self.scales.clone(), d.scales.clone());
        flag(
            "start-size",
            self.start_size.to_string(),
            d.start_size.to_string(),
        );
        flag(
            "scale-iterations",
            self.scale_iterations.to_string(),
            d.scale_iterations.to_string(),
        );
        flag(
            "style-scale",
            self.style_scale.to_string(),
            d.style_scale.to_string(),
        );
        flag("optimizer", keyword(&self.optimizer), keyword(&d.optimizer));
        flag(
            "lr",
            self.lr.map(|v| v.to_string()).unwrap_or_default(),
            String::new(),
        );
        flag("model", keyword(&self.model), keyword(&d.model));
        flag("pooling", keyword(&self.pooling), keyword(&d.pooling));
        flag(
            "content-layers",
            self.content_layers.join(","),
            d.content_layers.join(","),
        );
        flag(
            "style-layers",
            self.style_layers.join(","),
            d.style_layers.join(","),
        );
        flag(
            "style-layer-weights",
            opt_list(&self.style_layer_weights),
            opt_list(&d.style_layer_weights),
        );
        let init = match init_file {
            Some(p) => path(p),
            None => keyword(&self.init),
        };
        flag("init", init, keyword(&d.init));
        flag("seed", self.seed.to_string(), d.seed.to_string());
        flag(
            "bit-depth",
            self.bit_depth.to_string(),
            d.bit_depth.to_string(),
        );
        a
    }

    /// [`JobParams::command_args`] as one line for a POSIX shell.
    pub fn command_line(
        &self,
        content: &Path,
        styles: &[&Path],
        output: &Path,
        init_file: Option<&Path>,
    ) -> String {
        let mut line = String::from("impasto");
        for arg in self.command_args(content, styles, output, init_file) {
            line.push(' ');
            line.push_str(&shell_quote(&arg));
        }
        line
    }
}

fn parse_id(field: &str, text: &str) -> Result<Id, ApiError> {
    if text.is_empty() {
        let what = if field == "content" {
            "choose a photo"
        } else {
            "missing image"
        };
        return Err(ApiError::field(field, what));
    }
    Id::parse(text).ok_or_else(|| ApiError::field(field, format!("`{text}` is not an upload id")))
}

fn non_negative(field: &str, v: f64) -> Result<(), ApiError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(ApiError::field(field, format!("{v} must be a number ≥ 0")))
    }
}

/// The serde name of a choice (`lbfgs`, `luminance`), which is also its CLI keyword.
fn keyword<T: Serialize>(choice: &T) -> String {
    match serde_json::to_value(choice) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Quotes an argument for a POSIX shell where it needs it.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./,=:+@%".contains(&b));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> JobParams {
        JobParams {
            content: Id::random().to_string(),
            styles: vec![Id::random().to_string()],
            ..JobParams::default()
        }
    }

    #[test]
    fn a_request_of_only_the_images_takes_every_default() {
        let body = format!(
            r#"{{"content": "{}", "styles": ["{}"]}}"#,
            Id::random(),
            Id::random()
        );
        let p = JobParams::from_json(body.as_bytes()).unwrap();
        assert_eq!(
            JobParams {
                content: p.content.clone(),
                styles: p.styles.clone(),
                ..JobParams::default()
            },
            p
        );
        let r = p.resolve(4096).unwrap();
        assert_eq!(r.schedule, Schedule::single(512, 500));
        assert_eq!(r.bit_depth, BitDepth::Eight);
    }

    #[test]
    fn bad_fields_are_named() {
        let e = JobParams::from_json(br#"{"size": "big"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("size"), "{e:?}");
        let e = JobParams::from_json(br#"{"colour": 1}"#).unwrap_err();
        assert!(e.message.contains("unknown field"), "{e:?}");
        let e = JobParams::from_json(br#"{"optimizer": "sgd"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("optimizer"));
        let e = JobParams::from_json(b"{").unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);

        let field = |p: JobParams| p.resolve(1024).unwrap_err().field.unwrap();
        assert_eq!(
            field(JobParams {
                size: 5000,
                ..job()
            }),
            "size"
        );
        assert_eq!(field(JobParams { size: 0, ..job() }), "size");
        assert_eq!(
            field(JobParams {
                tv_weight: -1.0,
                ..job()
            }),
            "tv_weight"
        );
        assert_eq!(
            field(JobParams {
                bit_depth: 12,
                ..job()
            }),
            "bit_depth"
        );
        assert_eq!(
            field(JobParams {
                scales: "x".into(),
                ..job()
            }),
            "scales"
        );
        assert_eq!(
            field(JobParams {
                scales: "3".into(),
                size: 100,
                ..job()
            }),
            "scales"
        );
        assert_eq!(
            field(JobParams {
                style_layers: vec!["relu9_9".into()],
                ..job()
            }),
            "style_layers"
        );
        assert_eq!(
            field(JobParams {
                style_blend_weights: Some(vec![1.0, 2.0]),
                ..job()
            }),
            "style_blend_weights"
        );
        assert_eq!(
            field(JobParams {
                lr: Some(0.0),
                ..job()
            }),
            "lr"
        );
        assert_eq!(
            field(JobParams {
                styles: vec![],
                ..job()
            }),
            "styles"
        );
    }

    #[test]
    fn paths_in_id_fields_are_refused() {
        for bad in ["../../etc/passwd", "/etc/passwd", "..", "a/b"] {
            let p = JobParams {
                content: bad.into(),
                ..job()
            };
            assert_eq!(
                p.resolve(512).unwrap_err().field.as_deref(),
                Some("content")
            );
            let p = JobParams {
                styles: vec![bad.into()],
                ..job()
            };
            assert_eq!(p.resolve(512).unwrap_err().field.as_deref(), Some("styles"));
            let p = JobParams {
                start_from: Some(bad.into()),
                ..job()
            };
            assert_eq!(
                p.resolve(512).unwrap_err().field.as_deref(),
                Some("start_from")
            );
        }
    }

    #[test]
    fn the_command_names_only_what_differs() {
        let p = JobParams {
            size: 96,
            iterations: 30,
            optimizer: OptimizerChoice::Adam,
            preserve_color: ColorChoice::Luminance,
            ..job()
        };
        let line = p.command_line(
            Path::new("/data/up loads/a.jpg"),
            &[Path::new("b.png")],
            Path::new("out.png"),
            None,
        );
        assert_eq!(
            line,
            "impasto transfer --content '/data/up loads/a.jpg' --style b.png --output out.png \
             --size 96 --iterations 30 --preserve-color luminance --optimizer adam"
        );
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("relu1_1,relu2_1"), "relu1_1,relu2_1");
    }
}
