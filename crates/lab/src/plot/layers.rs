//! Neurosurgeon's per-layer figure: latency bars and output sizes, layers in execution order.

use std::path::Path;

use models::LayerTiming;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{Figure, PlotFormat, draw_x_labels, render};
use crate::error::LabError;

/// Draws Neurosurgeon's layer figure for `timings` (one per node, the input first) to `path`.
pub fn draw_layers(
    path: &Path,
    format: PlotFormat,
    title: &str,
    timings: &[LayerTiming],
) -> Result<(), LabError> {
    // The input node has no latency; plot the layers.
    let layers = timings.get(1..).unwrap_or_default();
    if layers.is_empty() {
        return Err(LabError::Plot {
            path: path.display().to_string(),
            reason: "the model has no layers to plot".into(),
        });
    }
    let width = (160 + 16 * layers.len() as u32).clamp(800, 4000);
    render(path, format, (width, 600), &LayerFigure { title, layers })
}

/// Neurosurgeon's layer figure: a latency bar per layer (left axis, ms) and the output size of
/// each layer as a line (right axis, KB), layers in execution order along the x axis.
struct LayerFigure<'a> {
    title: &'a str,
    layers: &'a [LayerTiming],
}

impl Figure for LayerFigure<'_> {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        figure(root, self.title, self.layers)
    }
}

fn figure<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    layers: &[LayerTiming],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let n = layers.len();
    let max_ms = layers
        .iter()
        .map(|t| t.median_ms)
        .fold(0.0, f64::max)
        .max(1e-3);
    let max_kb = layers
        .iter()
        .map(|t| t.out_bytes as f64 / 1e3)
        .fold(0.0, f64::max)
        .max(1e-3);
    let x_range = -0.5..(n as f64 - 0.5);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(110)
        .y_label_area_size(70)
        .right_y_label_area_size(80)
        .build_cartesian_2d(x_range.clone(), 0.0..max_ms * 1.1)?
        .set_secondary_coord(x_range, 0.0..max_kb * 1.1);

    chart
        .configure_mesh()
        .disable_x_mesh()
        // The layer ids are drawn below, each starting at its bar and running down the page.
        .x_labels(0)
        .y_desc("latency (ms)")
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("output size (KB)")
        .draw()?;

    let bar = RGBColor(70, 110, 180);
    chart
        .draw_series(layers.iter().enumerate().map(|(i, t)| {
            let x = i as f64;
            Rectangle::new([(x - 0.35, 0.0), (x + 0.35, t.median_ms)], bar.filled())
        }))?
        .label("latency (ms)")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], bar.filled()));
    let line = RGBColor(200, 80, 40);
    chart
        .draw_secondary_series(LineSeries::new(
            layers
                .iter()
                .enumerate()
                .map(|(i, t)| (i as f64, t.out_bytes as f64 / 1e3)),
            line.stroke_width(2),
        ))?
        .label("output size (KB)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], line.stroke_width(2)));
    let ids: Vec<&str> = layers.iter().map(|t| t.id.as_str()).collect();
    draw_x_labels(root, &ids, |x| chart.backend_coord(&(x, 0.0)))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
