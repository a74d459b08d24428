//! `--plot`: PNG and SVG files are written (PNG checked by its signature and IHDR header), other
//! extensions are refused without creating a file, an axis goes logarithmic exactly when its
//! data spans orders of magnitude, the legend sits right of the plotting area, and a PNG request
//! without a font fails up front naming the paths tried while SVG needs none. Tests that draw a
//! PNG skip with a message when no font file is found.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sched_sim::plot::{
    check_extension, find_font, font_candidates, line_chart, AxisScale, Drawn, Format, Scales,
    Series, FONT_ENV, SIZE,
};
use sched_sim::SimError;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh, empty directory for one test (removed by the test when it passes).
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sched-sim-plot-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn series(name: &str, points: &[(f64, f64)]) -> Series {
    Series {
        name: name.to_owned(),
        points: points.to_vec(),
    }
}

/// Two series over workers 10..40, the larger one highest at the right end (where a legend in
/// the upper right of the plotting area would cover it).
fn sweep_like() -> Vec<Series> {
    vec![
        series(
            "naive p50",
            &[(10.0, 3.0), (20.0, 6.0), (30.0, 9.0), (40.0, 14.0)],
        ),
        series(
            "sched p50",
            &[(10.0, 1.0), (20.0, 1.5), (30.0, 2.0), (40.0, 2.5)],
        ),
    ]
}

fn chart(path: &Path, s: &[Series], scales: Scales) -> Result<Drawn, SimError> {
    line_chart(path, "test chart", "workers", "burst time (ms)", s, scales)
}

/// Whether a font for PNG text is available; prints why the calling test is skipped if not.
fn have_font(test: &str) -> bool {
    match find_font(&font_candidates()) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipping {test}: {e}");
            false
        }
    }
}

/// The `x` attribute of the SVG `<text>` element whose content is `content`.
fn text_x(svg: &str, content: &str) -> Option<f64> {
    svg.split("<text ").skip(1).find_map(|el| {
        let (attrs, rest) = el.split_once('>')?;
        let (inner, _) = rest.split_once("</text>")?;
        if inner.trim() != content {
            return None;
        }
        let x = attrs.split("x=\"").nth(1)?.split('"').next()?;
        x.parse().ok()
    })
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[test]
fn png_is_written_with_the_expected_size() {
    if !have_font("png_is_written_with_the_expected_size") {
        return;
    }
    let dir = scratch("png");
    let path = dir.join("sweep.png");
    let drawn = chart(&path, &sweep_like(), Scales::default()).unwrap();
    assert_eq!(drawn.format, Format::Png);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(be_u32(&bytes[8..12]), 13, "IHDR length");
    assert_eq!(&bytes[12..16], b"IHDR");
    assert_eq!((be_u32(&bytes[16..20]), be_u32(&bytes[20..24])), SIZE);
    assert!(bytes.windows(4).any(|w| w == b"IEND"), "complete PNG");
    // A blank white image of this size deflates to 3-10 KB; this chart to about 55 KB.
    assert!(
        bytes.len() > 20_000,
        "only {} bytes: nothing drawn?",
        bytes.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn uppercase_png_extension_is_accepted() {
    assert_eq!(check_extension(Path::new("a/B.PNG")).unwrap(), Format::Png);
    assert_eq!(check_extension(Path::new("b.Svg")).unwrap(), Format::Svg);
}

#[test]
fn svg_is_still_written_with_title_labels_and_legend() {
    let dir = scratch("svg");
    let path = dir.join("sweep.svg");
    let drawn = chart(&path, &sweep_like(), Scales::default()).unwrap();
    assert_eq!(drawn.format, Format::Svg);
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    for text in [
        "test chart",
        "workers",
        "burst time (ms)",
        "naive p50",
        "sched p50",
    ] {
        assert!(text_x(&svg, text).is_some(), "no <text> {text:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn legend_sits_right_of_the_plotting_area() {
    let dir = scratch("legend");
    let path = dir.join("legend.svg");
    chart(&path, &sweep_like(), Scales::default()).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    // The tick label "40" is centred under the rightmost points; the legend starts past it.
    let last_tick = text_x(&svg, "40").expect("tick label 40");
    for name in ["naive p50", "sched p50"] {
        let x = text_x(&svg, name).expect("legend entry");
        assert!(
            x > last_tick + 30.0,
            "legend {name:?} at x={x}, rightmost data at x={last_tick}"
        );
        assert!(
            x < f64::from(SIZE.0),
            "legend {name:?} off the image at x={x}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn other_extensions_are_refused_and_create_nothing() {
    let dir = scratch("ext");
    for name in ["plot.jpg", "plot.pdf", "plot", "plot.svg.txt"] {
        let path = dir.join(name);
        let err = chart(&path, &sweep_like(), Scales::default()).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, SimError::Plot(_)) && msg.contains(".svg or .png"),
            "{name}: {msg}"
        );
        assert!(
            msg.contains(name),
            "{name}: message should name the file: {msg}"
        );
        assert!(!path.exists(), "{name} was created");
    }
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn auto_scale_goes_log_beyond_one_and_a_half_decades_only() {
    assert!(!AxisScale::Auto.is_log([10.0, 20.0, 40.0]));
    assert!(!AxisScale::Auto.is_log([1.0, 31.0]));
    assert!(AxisScale::Auto.is_log([1.0, 32.0]));
    assert!(AxisScale::Auto.is_log([0.5, 3.0, 800.0]));
    // A log axis cannot show zero or negative values.
    assert!(!AxisScale::Auto.is_log([0.0, 1.0, 1000.0]));
    assert!(!AxisScale::Log.is_log([0.0, 1000.0]));
    assert!(AxisScale::Log.is_log([10.0, 20.0]));
    assert!(!AxisScale::Linear.is_log([1.0, 1e6]));
    // Non-finite values are ignored.
    assert!(AxisScale::Auto.is_log([1.0, f64::NAN, 100.0, f64::INFINITY]));
}

#[test]
fn chart_picks_each_axis_scale_from_its_data() {
    let dir = scratch("scales");
    let path = dir.join("scales.svg");
    // x spans four decades, y less than one.
    let wide_x = vec![series(
        "s",
        &[(1.0, 2.0), (10.0, 3.0), (100.0, 4.0), (10_000.0, 5.0)],
    )];
    let drawn = chart(&path, &wide_x, Scales::default()).unwrap();
    assert!(drawn.log_x && !drawn.log_y, "{drawn:?}");
    let svg = std::fs::read_to_string(&path).unwrap();
    // Decade ticks, which a linear 1..10 000 axis would not have.
    for t in ["1", "10", "100", "1000", "10k"] {
        assert!(text_x(&svg, t).is_some(), "no tick {t:?} on the log x axis");
    }
    // y spans three decades, x is a short linear range.
    let wide_y = vec![series("s", &[(10.0, 0.5), (20.0, 5.0), (40.0, 500.0)])];
    let drawn = chart(&path, &wide_y, Scales::default()).unwrap();
    assert!(!drawn.log_x && drawn.log_y, "{drawn:?}");
    let drawn = chart(&path, &sweep_like(), Scales::default()).unwrap();
    assert!(!drawn.log_x && !drawn.log_y, "{drawn:?}");
    // Forced scales are kept.
    let forced = Scales {
        x: AxisScale::Log,
        y: AxisScale::Linear,
    };
    let drawn = chart(&path, &wide_y, forced).unwrap();
    assert!(drawn.log_x && !drawn.log_y, "{drawn:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn empty_series_are_an_error_not_a_file() {
    let dir = scratch("empty");
    let path = dir.join("empty.svg");
    let err = chart(&path, &[series("s", &[])], Scales::default()).unwrap_err();
    assert!(matches!(err, SimError::Plot(_)), "{err}");
    assert!(!path.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_font_error_names_every_path_tried() {
    let tried = [
        PathBuf::from("/nonexistent/a/Font.ttf"),
        PathBuf::from("/nonexistent/b/Other.otf"),
    ];
    let msg = find_font(&tried).unwrap_err().to_string();
    for p in &tried {
        assert!(msg.contains(&p.display().to_string()), "{msg}");
    }
    assert!(msg.contains(FONT_ENV), "{msg}");
}

/// The binary with `$SCHED_SIM_FONT` pointing nowhere: a PNG request fails before the sweep,
/// naming the path and creating nothing; an SVG sweep still works.
#[test]
fn without_a_font_png_is_refused_up_front_and_svg_works() {
    let dir = scratch("nofont");
    let missing = dir.join("no-such-font.ttf");
    let run = |plot: &Path| {
        Command::new(env!("CARGO_BIN_EXE_sched-sim"))
            .env(FONT_ENV, &missing)
            .args(["--backend", "memory", "--sweep", "--sweep-min", "2"])
            .args(["--sweep-max", "4", "--sweep-step", "2", "--containers", "4"])
            .args(["--repeat", "1", "--plot"])
            .arg(plot)
            .output()
            .unwrap()
    };
    let png = dir.join("sweep.png");
    let out = run(&png);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "PNG without a font succeeded");
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
    assert!(!png.exists());
    let svg = dir.join("sweep.svg");
    let out = run(&svg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg"));
    std::fs::remove_dir_all(&dir).unwrap();
}
