//! `--plot FILE`: line charts of sweeps, as SVG (`*.svg`) or PNG (`*.png`).
//!
//! - **SVG** needs no font: plotters' SVG backend writes text as `<text>` elements that the
//!   viewer lays out; the few sizes this module needs (the legend's width) are estimated.
//! - **PNG** is rasterised in pure Rust (plotters' bitmap backend, the `image` crate's PNG
//!   encoder, `ab_glyph` for text): no fontconfig, no freetype. Text needs a TrueType/OpenType
//!   font file read at run time: the file named by `$SCHED_SIM_FONT` ([`FONT_ENV`]) if set,
//!   else the first of the well-known [`FONT_PATHS`] that exists. Without one, a PNG request
//!   fails up front ([`check`]) naming the paths tried; SVG is unaffected.
//! - Any other extension is refused before anything is written.
//!
//! Readability: each axis goes logarithmic by itself when its values are all positive and span
//! more than [`LOG_SPAN`] (1.5 orders of magnitude), see [`AxisScale`]; the legend sits in its
//! own column right of the plotting area, so it never covers data; axis titles are printed as
//! given (they carry the units).

use crate::SimError;
use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One named series of (x, y) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Points, x ascending.
    pub points: Vec<(f64, f64)>,
}

/// The image formats `--plot` writes, chosen by the file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `*.svg`: vector, text left to the viewer.
    Svg,
    /// `*.png`: bitmap of [`SIZE`], text drawn with a font file found at run time.
    Png,
}

/// How one axis is scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AxisScale {
    /// Logarithmic when the values are all positive and span more than [`LOG_SPAN`].
    #[default]
    Auto,
    /// Always linear.
    Linear,
    /// Logarithmic when the values are all positive (a log axis cannot show zero), else linear.
    Log,
}

/// The scales of both axes (default: both [`AxisScale::Auto`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scales {
    /// Horizontal axis.
    pub x: AxisScale,
    /// Vertical axis.
    pub y: AxisScale,
}

/// What [`line_chart`] drew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drawn {
    /// The file's format.
    pub format: Format,
    /// Whether the horizontal axis is logarithmic.
    pub log_x: bool,
    /// Whether the vertical axis is logarithmic.
    pub log_y: bool,
}

/// Image size in pixels (width, height), for both formats.
pub const SIZE: (u32, u32) = (1100, 620);
/// Ratio max/min above which [`AxisScale::Auto`] goes logarithmic: 10^1.5.
pub const LOG_SPAN: f64 = 31.622_776_601_683_793;
/// Environment variable naming the font file for PNG text (overrides [`FONT_PATHS`]).
pub const FONT_ENV: &str = "SCHED_SIM_FONT";
/// Well-known font files tried in order for PNG text when [`FONT_ENV`] is unset.
pub const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", // Debian, Ubuntu (fonts-dejavu-core)
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf", // Fedora, RHEL
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",          // older Fedora, Alpine
    "/usr/share/fonts/TTF/DejaVuSans.ttf",             // Arch
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf", // macOS
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// The font family every text of the chart uses (the name the PNG font is registered under).
const FAMILY: &str = "sans-serif";

/// Okabe-Ito colours (blue, vermillion, bluish green, reddish purple, orange, sky blue, black):
/// distinguishable with the common colour-vision deficiencies.
#[rustfmt::skip]
const COLORS: [RGBColor; 7] = [
    RGBColor(0, 114, 178), RGBColor(213, 94, 0), RGBColor(0, 158, 115), RGBColor(204, 121, 167),
    RGBColor(230, 159, 0), RGBColor(86, 180, 233), RGBColor(0, 0, 0),
];

/// The format `path` asks for; anything but `*.svg` / `*.png` (any case) is refused.
pub fn check_extension(path: &Path) -> Result<Format, SimError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("svg") => Ok(Format::Svg),
        Some(e) if e.eq_ignore_ascii_case("png") => Ok(Format::Png),
        other => Err(SimError::Plot(format!(
            "--plot {}: the file name must end in .svg or .png (got {})",
            path.display(),
            other.map_or_else(|| "no extension".to_owned(), |e| format!(".{e}"))
        ))),
    }
}

/// Everything [`line_chart`] will need for `path`, checked before a run: the extension and,
/// for PNG, a usable font. Writes nothing.
pub fn check(path: &Path) -> Result<Format, SimError> {
    let format = check_extension(path)?;
    if format == Format::Png {
        ensure_font()?;
    }
    Ok(format)
}

/// The font files tried for PNG text: `$SCHED_SIM_FONT` alone if set (and not empty), else
/// [`FONT_PATHS`].
pub fn font_candidates() -> Vec<PathBuf> {
    match std::env::var_os(FONT_ENV) {
        Some(p) if !p.is_empty() => vec![PathBuf::from(p)],
        _ => FONT_PATHS.iter().map(PathBuf::from).collect(),
    }
}

/// The first of `candidates` that can be read, with its bytes; the error names every path tried.
pub fn find_font(candidates: &[PathBuf]) -> Result<(PathBuf, Vec<u8>), SimError> {
    for p in candidates {
        if let Ok(bytes) = std::fs::read(p) {
            return Ok((p.clone(), bytes));
        }
    }
    let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    Err(SimError::Plot(format!(
        "PNG output needs a TrueType/OpenType font file and none was found (tried: {}); \
         install one (e.g. the fonts-dejavu-core package), set {FONT_ENV}=/path/to/font.ttf, \
         or write .svg instead",
        tried.join(", ")
    )))
}

/// Loads and registers the PNG font once per process (plotters keeps fonts in a global table
/// that wants `'static` bytes: the file is read once and kept for the process's lifetime).
fn ensure_font() -> Result<(), SimError> {
    static FONT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let loaded = FONT.get_or_init(|| {
        let (path, bytes) = find_font(&font_candidates()).map_err(|e| match e {
            SimError::Plot(msg) => msg,
            e => e.to_string(),
        })?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).map_err(|_| {
            format!(
                "{} is not a usable TrueType/OpenType font (set {FONT_ENV} to another)",
                path.display()
            )
        })?;
        Ok(path)
    });
    match loaded {
        Ok(_) => Ok(()),
        Err(msg) => Err(SimError::Plot(msg.clone())),
    }
}

impl AxisScale {
    /// Whether an axis showing `values` is drawn logarithmically (non-finite values ignored).
    pub fn is_log(self, values: impl IntoIterator<Item = f64>) -> bool {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values.into_iter().filter(|v| v.is_finite()) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        let positive = lo > 0.0 && lo <= hi;
        match self {
            AxisScale::Linear => false,
            AxisScale::Log => positive,
            AxisScale::Auto => positive && hi / lo > LOG_SPAN,
        }
    }
}

/// Draws `series` as lines with markers into `path` (format from the extension, see
/// [`check_extension`]), with a legend column on the right. Returns the scales it chose.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    scales: Scales,
) -> Result<Drawn, SimError> {
    let format = check(path)?;
    let finite = |&&(x, y): &&(f64, f64)| x.is_finite() && y.is_finite();
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().filter(finite).copied())
        .collect();
    if pts.is_empty() {
        return Err(SimError::Plot("nothing to plot".into()));
    }
    let log_x = scales.x.is_log(pts.iter().map(|p| p.0));
    let log_y = scales.y.is_log(pts.iter().map(|p| p.1));
    let spec = Spec {
        title,
        x_label,
        y_label,
        series,
        x: bounds(pts.iter().map(|p| p.0), log_x, false),
        y: bounds(pts.iter().map(|p| p.1), log_y, true),
        log_x,
        log_y,
    };
    match format {
        Format::Svg => draw(SVGBackend::new(path, SIZE).into_drawing_area(), &spec)?,
        Format::Png => draw(BitMapBackend::new(path, SIZE).into_drawing_area(), &spec)?,
    }
    Ok(Drawn {
        format,
        log_x,
        log_y,
    })
}

/// What to draw, backend-independent.
struct Spec<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    series: &'a [Series],
    x: (f64, f64),
    y: (f64, f64),
    log_x: bool,
    log_y: bool,
}

/// Axis range for `values` (not empty, finite): a small margin so that the end markers are not
/// cut, multiplicative on a log axis; a linear `from_zero` axis starts at 0 for non-negative data.
fn bounds(values: impl Iterator<Item = f64>, log: bool, from_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if log {
        let f = 10f64.powf((hi / lo).log10().max(0.5) * 0.04);
        return (lo / f, hi * f);
    }
    if from_zero {
        lo = lo.min(0.0);
    }
    if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
        return (lo - 1.0, hi + 1.0);
    }
    let pad = (hi - lo) * 0.04;
    let start = if from_zero && lo == 0.0 {
        0.0
    } else {
        lo - pad
    };
    (start, hi + pad)
}

/// Grid of a log axis over `lo..hi` (both > 0): labelled (bold) ticks at 1, 2 and 5 times the
/// powers of ten when the axis spans at most 2.5 decades, at the powers of ten up to 7 decades,
/// at every n-th power beyond; light lines at every integer multiple of a power of ten while the
/// axis spans at most 7 decades.
fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let decades = (hi / lo).log10();
    let first = lo.log10().floor() as i32;
    let last = hi.log10().ceil() as i32;
    let step = ((decades / 7.0).ceil() as i32).max(1);
    let (mut bold, mut light) = (Vec::new(), Vec::new());
    for k in first..=last {
        let p = 10f64.powi(k);
        for m in 1..=9 {
            let v = f64::from(m) * p;
            if v < lo || v > hi {
                continue;
            }
            let labelled = if decades <= 2.5 {
                matches!(m, 1 | 2 | 5)
            } else {
                m == 1 && k.rem_euclid(step) == 0
            };
            if labelled {
                bold.push(v);
            }
            if decades <= 7.0 {
                light.push(v);
            }
        }
    }
    (bold, light)
}

/// A tick label: integers as such (10k, 1M above 10 000), others to three significant digits.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a >= 1e4 && (v / 1e3).fract() == 0.0 {
        return if a >= 1e6 && (v / 1e6).fract() == 0.0 {
            format!("{}M", v / 1e6)
        } else {
            format!("{}k", v / 1e3)
        };
    }
    if v.fract() == 0.0 || a >= 100.0 {
        return format!("{v:.0}");
    }
    let decimals = (2 - a.log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.decimals$}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A log axis over `r` with the grid of [`log_ticks`].
fn log_axis(r: (f64, f64)) -> WithKeyPoints<LogCoord<f64>> {
    let (bold, light) = log_ticks(r.0, r.1);
    (r.0..r.1)
        .log_scale()
        .with_key_points(bold)
        .with_light_points(light)
}

fn plot_err(e: impl std::fmt::Display) -> SimError {
    SimError::Plot(e.to_string())
}

/// Width of `text` in pixels: the backend's measure when it has one (PNG, with the font
/// registered), else an estimate for the SVG viewer's sans-serif at plotters' SVG scale
/// (font-size = size / 1.24), generous rather than short.
fn text_width<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, text: &str, size: f64) -> i32 {
    let style = TextStyle::from((FAMILY, size));
    match area.estimate_text_size(text, &style) {
        Ok((w, _)) => w as i32,
        Err(_) => (size / 1.24 * 0.62 * text.chars().count() as f64).ceil() as i32,
    }
}

const TITLE_PX: f64 = 24.0;
const LABEL_PX: f64 = 16.0;
const DESC_PX: f64 = 18.0;
const LEGEND_PX: f64 = 16.0;
const MARGIN: i32 = 16;

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, spec: &Spec<'_>) -> Result<(), SimError> {
    root.fill(&WHITE).map_err(plot_err)?;
    let (w, _) = root.dim_in_pixel();
    let title_style = TextStyle::from((FAMILY, TITLE_PX)).pos(Pos::new(HPos::Center, VPos::Top));
    root.draw_text(spec.title, &title_style, (w as i32 / 2, 10))
        .map_err(plot_err)?;
    let (_, body) = root.split_vertically(TITLE_PX as i32 + 22);

    // Legend column: sample line (36 px), gap, the longest label, margins.
    let widest = spec
        .series
        .iter()
        .map(|s| text_width(&body, &s.name, LEGEND_PX))
        .max()
        .unwrap_or(0);
    let legend_w = (widest + 36 + 12 + 2 * MARGIN).clamp(120, w as i32 * 2 / 5);
    let (plot_area, legend_area) = body.split_horizontally(w as i32 - legend_w);

    let mut builder = ChartBuilder::on(&plot_area);
    builder
        .margin(MARGIN)
        .margin_right(8)
        .x_label_area_size(56)
        .y_label_area_size(84);
    macro_rules! plot {
        ($x:expr, $y:expr) => {
            plot_series(builder.build_cartesian_2d($x, $y).map_err(plot_err)?, spec)?
        };
    }
    let (x, y) = (spec.x.0..spec.x.1, spec.y.0..spec.y.1);
    match (spec.log_x, spec.log_y) {
        (false, false) => plot!(x, y),
        (true, false) => plot!(log_axis(spec.x), y),
        (false, true) => plot!(x, log_axis(spec.y)),
        (true, true) => plot!(log_axis(spec.x), log_axis(spec.y)),
    }
    draw_legend(&legend_area, spec.series)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// Mesh, axis titles and the series on a built chart (any combination of linear/log axes).
fn plot_series<DB, X, Y>(
    mut chart: ChartContext<'_, DB, Cartesian2d<X, Y>>,
    spec: &Spec<'_>,
) -> Result<(), SimError>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let (log_x, log_y) = (spec.log_x, spec.log_y);
    let fmt = |v: &f64| tick(*v);
    chart
        .configure_mesh()
        .x_desc(spec.x_label)
        .y_desc(spec.y_label)
        .x_labels(12)
        .y_labels(10)
        .x_label_formatter(&fmt)
        .y_label_formatter(&fmt)
        .label_style((FAMILY, LABEL_PX))
        .axis_desc_style((FAMILY, DESC_PX))
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(BLACK.mix(0.05))
        .max_light_lines(4)
        .draw()
        .map_err(plot_err)?;
    for (i, s) in spec.series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let pts = s.points.iter().copied().filter(|(x, y)| {
            x.is_finite() && y.is_finite() && (!log_x || *x > 0.0) && (!log_y || *y > 0.0)
        });
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(3)))
            .map_err(plot_err)?;
        chart
            .draw_series(pts.map(|p| Circle::new(p, 4, c.filled())))
            .map_err(plot_err)?;
    }
    Ok(())
}

/// The legend, top-aligned with the plotting area, one row per series: a line sample with its
/// marker, then the name.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[Series],
) -> Result<(), SimError> {
    if series.is_empty() {
        return Ok(());
    }
    let (w, _) = area.dim_in_pixel();
    let row = LEGEND_PX as i32 + 10;
    let top = MARGIN + 4;
    let frame_bottom = top + row * series.len() as i32 + 4;
    area.draw(&Rectangle::new(
        [(4, top - 4), (w as i32 - MARGIN, frame_bottom)],
        BLACK.mix(0.35).stroke_width(1),
    ))
    .map_err(plot_err)?;
    let label = TextStyle::from((FAMILY, LEGEND_PX)).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, s) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let y = top + row * i as i32 + row / 2;
        area.draw(&PathElement::new(vec![(12, y), (44, y)], c.stroke_width(3)))
            .map_err(plot_err)?;
        area.draw(&Circle::new((28, y), 4, c.filled()))
            .map_err(plot_err)?;
        area.draw_text(&s.name, &label, (52, y)).map_err(plot_err)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "plot_test.rs"]
mod tests;
