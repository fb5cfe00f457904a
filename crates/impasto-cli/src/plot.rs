//! Loss curves of a run as a PNG or SVG file: iteration on x, loss on a log-scale y.
//!
//! Text is drawn with an embedded font (Hack Regular, from `epaint_default_fonts`) through
//! plotters' `ab_glyph` renderer, so no system font libraries are needed. PNGs are drawn into a
//! pixel buffer and encoded with `image`.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{bail, Context};
use impasto::transfer::LossRecord;
use plotters::chart::SeriesAnno;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::register_font;

const WIDTH: u32 = 800;
const HEIGHT: u32 = 500;
const SUPPORTED: &str = ".png or .svg";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Png,
    Svg,
}

fn format_of(path: &Path) -> anyhow::Result<Format> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("png") => Ok(Format::Png),
        Some("svg") => Ok(Format::Svg),
        _ => bail!(
            "cannot write a loss plot to {}: the file name must end in {SUPPORTED}",
            path.display()
        ),
    }
}

/// Checks the path's extension before a long run starts.
pub fn check_plot_path(path: &Path) -> anyhow::Result<()> {
    format_of(path).map(|_| ())
}

/// Writes loss curves (log-scale y, iteration on x): total (weighted), and the unweighted
/// content, style and tv parts that are non-zero; a legend; title. Format from the extension
/// (.png or .svg, case-insensitive); anything else is an error naming the supported extensions.
/// Written atomically (temp file in the same directory, then rename; remove the temp on error).
pub fn write_loss_plot(path: &Path, records: &[LossRecord], title: &str) -> anyhow::Result<()> {
    let format = format_of(path)?;
    ensure_font()?;
    let plot = PlotData::new(records);
    let bytes = match format {
        Format::Svg => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
                draw(&root, &plot, title).map_err(|e| anyhow::anyhow!("drawing the plot: {e}"))?;
                root.present()
                    .map_err(|e| anyhow::anyhow!("drawing the plot: {e}"))?;
            }
            svg.into_bytes()
        }
        Format::Png => {
            let mut pixels = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
            {
                let root =
                    BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
                draw(&root, &plot, title).map_err(|e| anyhow::anyhow!("drawing the plot: {e}"))?;
                root.present()
                    .map_err(|e| anyhow::anyhow!("drawing the plot: {e}"))?;
            }
            let image = image::RgbImage::from_raw(WIDTH, HEIGHT, pixels)
                .context("plot buffer has the wrong size")?;
            let mut png = Vec::new();
            image
                .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .context("encoding the plot as PNG")?;
            png
        }
    };
    impasto::cli_support::atomic::write_bytes_atomic(path, &bytes)
        .with_context(|| format!("writing the loss plot {}", path.display()))
}

/// Registers the embedded font under plotters' default family name, once per process.
fn ensure_font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        register_font(
            "sans-serif",
            FontStyle::Normal,
            epaint_default_fonts::HACK_REGULAR,
        )
        .is_ok()
    });
    if ok {
        Ok(())
    } else {
        bail!("the embedded plot font could not be loaded")
    }
}

struct Series {
    label: &'static str,
    color: RGBColor,
    /// Runs of consecutive plottable points; a point that cannot be drawn on a log axis (≤ 0,
    /// NaN, infinite) breaks the line rather than being bridged.
    segments: Vec<Vec<(u64, f64)>>,
}

struct PlotData {
    series: Vec<Series>,
    x: Range<u64>,
    y: Range<f64>,
}

fn plottable(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

impl PlotData {
    fn new(records: &[LossRecord]) -> Self {
        type Part = (&'static str, RGBColor, fn(&LossRecord) -> f64);
        let parts: [Part; 4] = [
            ("total (weighted)", RGBColor(20, 20, 20), |r| r.parts.total),
            ("content", RGBColor(31, 119, 180), |r| r.parts.content),
            ("style", RGBColor(214, 39, 40), |r| r.parts.style),
            ("tv", RGBColor(44, 160, 44), |r| r.parts.tv),
        ];
        let mut series = Vec::new();
        for (i, (label, color, get)) in parts.into_iter().enumerate() {
            // Runs of plottable points; an unplottable value ends a run, and so does a new
            // scale of a coarse-to-fine run (losses at different sizes are not one curve).
            let mut segments: Vec<Vec<(u64, f64)>> = Vec::new();
            let mut current = Vec::new();
            let mut scale = records.first().map_or(0, |r| r.scale);
            for r in records {
                if r.scale != scale && !current.is_empty() {
                    segments.push(std::mem::take(&mut current));
                }
                scale = r.scale;
                let v = get(r);
                if plottable(v) {
                    current.push((r.iteration as u64, v));
                } else if !current.is_empty() {
                    segments.push(std::mem::take(&mut current));
                }
            }
            if !current.is_empty() {
                segments.push(current);
            }
            // The total is always listed; a part only when it has something to show.
            if i == 0 || !segments.is_empty() {
                series.push(Series {
                    label,
                    color,
                    segments,
                });
            }
        }

        let iterations = records.iter().map(|r| r.iteration as u64);
        let x = match (iterations.clone().min(), iterations.max()) {
            (Some(lo), Some(hi)) if hi > lo => lo..hi,
            (Some(lo), _) => lo..lo + 1,
            _ => 0..1,
        };

        let values = series
            .iter()
            .flat_map(|s| s.segments.iter().flatten().map(|&(_, v)| v));
        let (lo, hi) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let y = if hi > 0.0 {
            log_range(lo, hi)
        } else {
            0.1..10.0
        };
        Self { series, x, y }
    }
}

/// A log-axis range holding `lo..=hi` (both positive and finite) with a margin, and always
/// holding at least one power of ten so the axis gets a labelled tick.
fn log_range(lo: f64, hi: f64) -> Range<f64> {
    let (llo, lhi) = (lo.log10(), hi.log10());
    let margin = ((lhi - llo) * 0.05).max(0.08);
    let (mut a, mut b) = (llo - margin, lhi + margin);
    if a.ceil() > b {
        // Less than a decade with no power of ten inside: widen to the enclosing decades.
        a = a.floor();
        b = b.ceil();
    }
    10f64.powf(a)..10f64.powf(b)
}

/// `1e9`, `2.5e-3`, `1.23e4`: three significant digits at most, trailing zeros dropped.
fn sci(v: f64) -> String {
    let s = format!("{v:.2e}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let mantissa = if mantissa.contains('.') {
                mantissa.trim_end_matches('0').trim_end_matches('.')
            } else {
                mantissa
            };
            format!("{mantissa}e{exp}")
        }
        None => s,
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    plot: &PlotData,
    title: &str,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(plot.x.clone(), plot.y.clone().log_scale())?;

    chart
        .configure_mesh()
        .x_desc("iteration")
        .y_desc("loss (log scale)")
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .y_label_formatter(&|v| sci(*v))
        .light_line_style(RGBColor(244, 244, 244))
        .bold_line_style(RGBColor(210, 210, 210))
        .draw()?;

    for s in &plot.series {
        let style = s.color.stroke_width(2);
        let mut labelled = false;
        for seg in &s.segments {
            let drawn = if seg.len() == 1 {
                // A lone point makes no line: mark it.
                chart.draw_series(std::iter::once(Circle::new(seg[0], 3, style.filled())))?
            } else {
                chart.draw_series(LineSeries::new(seg.iter().copied(), style))?
            };
            if !labelled {
                label(drawn, s);
                labelled = true;
            }
        }
        if !labelled {
            // Nothing to draw, but the legend still names the series.
            let drawn = chart.draw_series(LineSeries::new(std::iter::empty(), style))?;
            label(drawn, s);
        }
    }

    chart
        .configure_series_labels()
        .position(legend_corner(plot))
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .draw()?;
    Ok(())
}

/// The corner of the plot whose legend-sized box covers the fewest curve samples (upper right
/// on ties), so the legend hides as little data as it can.
fn legend_corner(plot: &PlotData) -> SeriesLabelPosition {
    let (x0, x1) = (plot.x.start as f64, plot.x.end as f64);
    let (y0, y1) = (plot.y.start.log10(), plot.y.end.log10());
    let unit = |(x, v): (u64, f64)| ((x as f64 - x0) / (x1 - x0), (v.log10() - y0) / (y1 - y0));
    // The legend's size as a fraction of the plotting area (measured on renders).
    let (w, h) = (0.3, 0.06 + 0.045 * plot.series.len() as f64);
    let corners = [
        (SeriesLabelPosition::UpperRight, 1.0 - w, 1.0 - h),
        (SeriesLabelPosition::UpperLeft, 0.0, 1.0 - h),
        (SeriesLabelPosition::LowerRight, 1.0 - w, 0.0),
        (SeriesLabelPosition::LowerLeft, 0.0, 0.0),
    ];
    let mut counts = [0usize; 4];
    for seg in plot.series.iter().flat_map(|s| &s.segments) {
        // Sample between points too: two far-apart points still draw a line across a corner.
        let samples = seg.windows(2).flat_map(|p| {
            let (a, b) = (unit(p[0]), unit(p[1]));
            (0..8).map(move |i| {
                let t = f64::from(i) / 8.0;
                (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t)
            })
        });
        let last = seg.last().map(|&p| unit(p));
        for (x, y) in samples.chain(last) {
            for (count, &(_, cx, cy)) in counts.iter_mut().zip(&corners) {
                if (cx..=cx + w).contains(&x) && (cy..=cy + h).contains(&y) {
                    *count += 1;
                }
            }
        }
    }
    let best = (0..4).min_by_key(|&i| counts[i]).unwrap_or(0);
    corners[best].0.clone()
}

fn label<DB: DrawingBackend>(anno: &mut SeriesAnno<'_, DB>, s: &Series) {
    let color = s.color;
    anno.label(s.label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use impasto::loss::LossParts;

    fn record(iteration: usize, content: f64, style: f64, tv: f64, total: f64) -> LossRecord {
        LossRecord {
            scale: 0,
            iteration,
            elapsed_s: iteration as f64 * 0.1,
            parts: LossParts {
                content,
                style,
                tv,
                total,
            },
        }
    }

    /// 500 iterations of a plausible run: total falling 1e9 → 1e6, content rising from 0.
    fn synthetic_run() -> Vec<LossRecord> {
        (0..500)
            .map(|i| {
                let t = i as f64 / 499.0;
                let style = 1e6 * 10f64.powf(3.0 * (1.0 - t).powi(2)) / 1e3;
                let content = if i == 0 {
                    0.0
                } else {
                    2e4 * (1.0 - (-5.0 * t).exp())
                };
                let tv = 5e3 * (1.0 + 2.0 * t);
                let total = 1e3 * style + content + 1e-2 * tv;
                let total = total.max(1e6);
                record(i, content, style, tv, total)
            })
            .collect()
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn png_size(bytes: &[u8]) -> (u32, u32) {
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
        assert_eq!(&bytes[12..16], b"IHDR");
        let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        (w, h)
    }

    #[test]
    fn png_is_800_by_500_and_decodes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.PNG");
        write_loss_plot(&path, &synthetic_run(), "a run").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(png_size(&bytes), (800, 500));
        let img = image::load_from_memory(&bytes).unwrap();
        assert_eq!((img.width(), img.height()), (800, 500));
        assert_eq!(files_in(dir.path()), ["loss.PNG"]);
    }

    #[test]
    fn svg_names_the_series_that_are_non_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.svg");
        let records: Vec<_> = (0..10)
            .map(|i| record(i, 1.0 + i as f64, 100.0 / (1.0 + i as f64), 0.0, 1e5))
            .collect();
        write_loss_plot(&path, &records, "title here").unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..60.min(svg.len())]);
        assert!(svg.contains("width=\"800\"") && svg.contains("height=\"500\""));
        for name in ["total (weighted)", "content", "style", "title here"] {
            assert!(svg.contains(name), "missing {name}");
        }
        assert!(
            !svg.contains(">tv<"),
            "tv is zero throughout and should be left out"
        );
        assert_eq!(files_in(dir.path()), ["loss.svg"]);
    }

    #[test]
    fn unknown_extension_is_an_error_naming_the_supported_ones() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["loss.jpg", "loss", "loss.svg.txt"] {
            let path = dir.path().join(name);
            let err = check_plot_path(&path).unwrap_err().to_string();
            assert!(err.contains(".png") && err.contains(".svg"), "{err}");
            let err = write_loss_plot(&path, &synthetic_run(), "t").unwrap_err();
            assert!(err.to_string().contains(".png"), "{err}");
        }
        assert!(files_in(dir.path()).is_empty());
        check_plot_path(Path::new("out/Loss.Svg")).unwrap();
        check_plot_path(Path::new("loss.png")).unwrap();
    }

    #[test]
    fn failed_write_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should go: the final rename fails.
        let path = dir.path().join("taken.png");
        std::fs::create_dir(&path).unwrap();
        assert!(write_loss_plot(&path, &synthetic_run(), "t").is_err());
        assert_eq!(files_in(dir.path()), ["taken.png"]);
        // A directory that does not exist: nothing is created.
        let missing = dir.path().join("no/such/dir/loss.svg");
        assert!(write_loss_plot(&missing, &synthetic_run(), "t").is_err());
        assert_eq!(files_in(dir.path()), ["taken.png"]);
    }

    #[test]
    fn overwrites_an_existing_plot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.svg");
        std::fs::write(&path, "old").unwrap();
        write_loss_plot(&path, &synthetic_run(), "t").unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().starts_with("<svg"));
        assert_eq!(files_in(dir.path()), ["loss.svg"]);
    }

    #[test]
    fn empty_single_and_unplottable_records_still_write() {
        let dir = tempfile::tempdir().unwrap();
        let cases: Vec<(&str, Vec<LossRecord>)> = vec![
            ("empty", vec![]),
            ("one", vec![record(0, 0.0, 3e4, 0.0, 3e7)]),
            (
                "bad",
                vec![
                    record(0, 0.0, f64::NAN, -1.0, 0.0),
                    record(1, f64::INFINITY, 2.0, 0.0, f64::NAN),
                    record(2, 1.0, 0.0, 0.0, 5.0),
                    record(3, 2.0, 1.0, f64::NEG_INFINITY, 4.0),
                ],
            ),
            (
                "nothing-positive",
                vec![
                    record(5, 0.0, 0.0, 0.0, 0.0),
                    record(5, f64::NAN, -3.0, 0.0, 0.0),
                ],
            ),
            (
                "wide",
                vec![
                    record(0, 1e-3, 1e12, 1.0, 1e12),
                    record(9, 2e-3, 1e11, 1.0, 1e11),
                ],
            ),
        ];
        for (name, records) in cases {
            for ext in ["png", "svg"] {
                let path = dir.path().join(format!("{name}.{ext}"));
                write_loss_plot(&path, &records, name)
                    .unwrap_or_else(|e| panic!("{name}.{ext}: {e:#}"));
                let bytes = std::fs::read(&path).unwrap();
                if ext == "png" {
                    assert_eq!(png_size(&bytes), (800, 500));
                } else {
                    assert!(String::from_utf8(bytes)
                        .unwrap()
                        .contains("total (weighted)"));
                }
            }
        }
        assert_eq!(files_in(dir.path()).len(), 10);
    }

    #[test]
    fn log_range_always_holds_a_power_of_ten_and_the_data() {
        for (lo, hi) in [
            (1e-3, 1e12),
            (150.0, 900.0),
            (5.0, 5.0),
            (1e6, 1e9),
            (0.5, 0.6),
        ] {
            let r = log_range(lo, hi);
            assert!(r.start < lo && r.end > hi, "{r:?} for {lo}..{hi}");
            let k = r.start.log10().ceil();
            assert!(10f64.powf(k) <= r.end, "{r:?} has no power of ten");
        }
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(sci(1e9), "1e9");
        assert_eq!(sci(2.5e-3), "2.5e-3");
        assert_eq!(sci(1234.5), "1.23e3");
        assert_eq!(sci(999_999_999.999_9), "1e9");
    }
}
