//! `--plot FILE.svg`: line charts of sweeps, SVG only (no system fonts needed: plotters'
//! SVG backend writes text as `<text>` elements and sizes it with its built-in estimator).

use crate::SimError;
use plotters::prelude::*;
use std::path::Path;

/// One named series of (x, y) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Points, x ascending.
    pub points: Vec<(f64, f64)>,
}

const COLORS: [RGBColor; 6] = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];

/// Refuses any file name but `*.svg`: this build draws SVG only (plotters' bitmap backend
/// would need the image crate and system fonts).
pub fn check_extension(path: &Path) -> Result<(), SimError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("svg") => Ok(()),
        other => Err(SimError::Plot(format!(
            "--plot {}: only .svg is supported (got {}); PNG would need plotters' bitmap \
             backend with the image crate and system fonts, not in this build",
            path.display(),
            other.map_or_else(|| "no extension".to_owned(), |e| format!(".{e}"))
        ))),
    }
}

/// Draws `series` as lines with a legend into an SVG file.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_x: bool,
) -> Result<(), SimError> {
    let err = |e: &dyn std::fmt::Display| SimError::Plot(e.to_string());
    check_extension(path)?;
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0.0f64);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return Err(SimError::Plot("nothing to plot".into()));
    }
    if x0 == x1 {
        x1 = x0 + 1.0;
    }
    let y1 = if y1 <= 0.0 { 1.0 } else { y1 * 1.1 };
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc(y_label)
                .draw()
                .map_err(|e| err(&e))?;
            for (i, s) in series.iter().enumerate() {
                let c = COLORS[i % COLORS.len()];
                chart
                    .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))
                    .map_err(|e| err(&e))?
                    .label(s.name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
                chart
                    .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, c.filled())))
                    .map_err(|e| err(&e))?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| err(&e))?;
        }};
    }
    if log_x {
        draw!(builder
            .build_cartesian_2d((x0..x1).log_scale(), 0.0..y1)
            .map_err(|e| err(&e))?);
    } else {
        draw!(builder
            .build_cartesian_2d(x0..x1, 0.0..y1)
            .map_err(|e| err(&e))?);
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
