//! The figures: the sweep's grid ([`draw_grid`]) and the per-layer figure ([`draw_layers`]),
//! and what they share: the file format from the name, an embedded font, and one way to render
//! a figure to SVG or PNG.

mod grid;
mod layers;

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use plotters::style::text_anchor::{HPos, Pos, VPos};

pub use grid::draw_grid;
pub use layers::draw_layers;

use crate::error::LabError;

/// A figure's file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlotFormat {
    /// Scalable vector graphics.
    Svg,
    /// A bitmap.
    Png,
}

/// The format a file name asks for; `flag` names the flag in the error.
pub fn plot_format(path: &Path, flag: &str) -> Result<PlotFormat, LabError> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("svg") => Ok(PlotFormat::Svg),
        Some("png") => Ok(PlotFormat::Png),
        _ => Err(LabError::Config {
            name: "figure file",
            reason: format!(
                "{flag} {}: the file name must end in .svg or .png",
                path.display()
            ),
        }),
    }
}

/// A figure that draws itself on any plotters backend.
pub(crate) trait Figure {
    /// Draws the whole figure on `root`.
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>;
}

/// Renders `figure` to `path` at `size` pixels, in `format`.
pub(crate) fn render(
    path: &Path,
    format: PlotFormat,
    size: (u32, u32),
    figure: &impl Figure,
) -> Result<(), LabError> {
    let failed = |reason: String| LabError::Plot {
        path: path.display().to_string(),
        reason,
    };
    if !register_font() {
        return Err(failed("the embedded font could not be loaded".into()));
    }
    match format {
        PlotFormat::Svg => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            figure.draw(&root).map_err(|e| failed(e.to_string()))?;
            root.present().map_err(|e| failed(e.to_string()))
        }
        PlotFormat::Png => {
            let root = BitMapBackend::new(path, size).into_drawing_area();
            figure.draw(&root).map_err(|e| failed(e.to_string()))?;
            root.present().map_err(|e| failed(e.to_string()))
        }
    }
}

/// Writes `labels` under a bar chart's x axis, the i-th at x = i, rotated to run down the page
/// and thinned to every k-th where they would overlap (about 14 px each). `pixel` maps a point
/// of the axis (x, 0) to the figure's pixels, as the chart's `backend_coord` does; `area` is the
/// area the chart was built on.
pub(crate) fn draw_x_labels<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    labels: &[&str],
    pixel: impl Fn(f64) -> (i32, i32),
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let n = labels.len();
    // The chart speaks in the whole figure's pixels, the area in its own.
    let (ox, oy) = area.get_base_pixel();
    let (left, _) = pixel(-0.5);
    let (right, bottom) = pixel(n as f64 - 0.5);
    let stride = (n * 14).div_ceil((right - left).max(1) as usize).max(1);
    let style = ("sans-serif", 11)
        .into_font()
        .transform(FontTransform::Rotate90)
        .into_text_style(area)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (i, label) in labels.iter().enumerate().step_by(stride) {
        let (x, _) = pixel(i as f64);
        area.draw(&Text::new(*label, (x - ox, bottom + 6 - oy), &style))?;
    }
    Ok(())
}

/// Registers an embedded font once, so that text renders the same everywhere and no system font
/// library is needed. False when it could not be loaded.
fn register_font() -> bool {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plot_format_follows_the_extension() {
        assert_eq!(
            plot_format(Path::new("a.SVG"), "--plot").expect("svg"),
            PlotFormat::Svg
        );
        assert_eq!(
            plot_format(Path::new("a.png"), "--plot").expect("png"),
            PlotFormat::Png
        );
        let err = plot_format(Path::new("a.pdf"), "--plot").expect_err("pdf");
        assert!(err.to_string().contains("--plot a.pdf"), "{err}");
        assert!(err.to_string().contains(".svg or .png"), "{err}");
    }
}
