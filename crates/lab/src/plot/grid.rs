//! The sweep's figure: a panel per cell (edge CPUs down, uplinks across), each with grouped
//! bars of the measured time components per cut, the end-to-end time beside them, and the
//! planner's choice and the measured best marked.

use std::path::Path;

use crate::error::LabError;
use crate::grid::{GridCell, GridRow};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::plot::{Figure, PlotFormat, draw_x_labels, render};

/// Height of one panel, px.
const PANEL_HEIGHT: u32 = 380;
/// Room for the figure's title and, below it, the legend, px.
const TITLE_HEIGHT: u32 = 64;

/// One bar of a group: its label, its colour and the row's value it shows.
type Component = (&'static str, RGBColor, fn(&GridRow) -> f64);

/// The bars of a group.
const COMPONENTS: [Component; 4] = [
    ("local", RGBColor(70, 110, 180), |r| r.local_ms),
    ("transfer", RGBColor(230, 140, 40), |r| r.transfer_ms),
    ("cloud", RGBColor(80, 160, 90), |r| r.cloud_ms),
    ("end-to-end", RGBColor(120, 120, 120), |r| r.e2e_ms),
];
/// The chosen cut's mark.
const CHOSEN: RGBColor = RGBColor(200, 30, 30);
/// The best cut's mark.
const BEST: RGBColor = RGBColor(20, 20, 20);

/// Draws the figure for `rows` and `cells` to `path` (PNG or SVG by `format`).
pub fn draw_grid(
    path: &Path,
    format: PlotFormat,
    title: &str,
    rows: &[GridRow],
    cells: &[GridCell],
) -> Result<(), LabError> {
    let figure = GridFigure::new(title, rows, cells);
    let cuts = figure
        .panels
        .iter()
        .map(|p| p.rows.len())
        .max()
        .unwrap_or(1) as u32;
    let panel_width = (120 + 30 * cuts).clamp(420, 1600);
    let size = (
        panel_width * figure.columns as u32,
        TITLE_HEIGHT + PANEL_HEIGHT * figure.panel_rows as u32,
    );
    render(path, format, size, &figure)
}

/// One cell's panel.
struct Panel<'a> {
    cell: &'a GridCell,
    rows: Vec<&'a GridRow>,
}

struct GridFigure<'a> {
    title: &'a str,
    panels: Vec<Panel<'a>>,
    panel_rows: usize,
    columns: usize,
}

impl<'a> GridFigure<'a> {
    /// Panels laid out with one row per edge CPU and one column per uplink, in the grid's order.
    fn new(title: &'a str, rows: &'a [GridRow], cells: &'a [GridCell]) -> GridFigure<'a> {
        let mut cpus: Vec<f64> = Vec::new();
        let mut uplinks: Vec<f64> = Vec::new();
        for c in cells {
            if !cpus.contains(&c.edge_cpu) {
                cpus.push(c.edge_cpu);
            }
            if !uplinks.contains(&c.uplink_mbps) {
                uplinks.push(c.uplink_mbps);
            }
        }
        let panels = cells
            .iter()
            .map(|cell| Panel {
                cell,
                rows: rows
                    .iter()
                    .filter(|r| r.edge_cpu == cell.edge_cpu && r.uplink_mbps == cell.uplink_mbps)
                    .collect(),
            })
            .collect();
        GridFigure {
            title,
            panels,
            panel_rows: cpus.len().max(1),
            columns: uplinks.len().max(1),
        }
    }
}

impl Figure for GridFigure<'_> {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        let (_, height) = root.dim_in_pixel();
        let (top, body) = root.split_vertically(TITLE_HEIGHT.min(height));
        top.draw(&Text::new(self.title, (12, 10), ("sans-serif", 20)))?;
        draw_legend(&top)?;
        let areas = body.split_evenly((self.panel_rows, self.columns));
        for (panel, area) in self.panels.iter().zip(areas.iter()) {
            draw_panel(area, panel)?;
        }
        Ok(())
    }
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel<'_>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let cell = panel.cell;
    let n = panel.rows.len().max(1);
    let max_ms = panel
        .rows
        .iter()
        .map(|r| r.e2e_ms)
        .fold(0.0, f64::max)
        .max(1e-3);
    let caption = format!(
        "cpu {} x {} Mbit/s: regret {:.3}",
        cell.edge_cpu, cell.uplink_mbps, cell.regret
    );
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(120)
        .y_label_area_size(56)
        .build_cartesian_2d(-0.5..(n as f64 - 0.5), 0.0..max_ms * 1.18)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("ms")
        .label_style(("sans-serif", 11))
        .draw()?;
    let width = 0.8 / COMPONENTS.len() as f64;
    for (k, (_, colour, value)) in COMPONENTS.iter().enumerate() {
        let offset = -0.4 + width * k as f64;
        chart.draw_series(panel.rows.iter().enumerate().map(|(i, r)| {
            let x = i as f64 + offset;
            Rectangle::new([(x, 0.0), (x + width, value(r))], colour.filled())
        }))?;
    }
    // Marks above each group: a triangle for the planner's choice, a circle for the best.
    let above = |r: &GridRow| r.e2e_ms + max_ms * 0.06;
    chart.draw_series(
        panel
            .rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.chosen)
            .map(|(i, r)| TriangleMarker::new((i as f64 - 0.12, above(r)), 7, CHOSEN.filled())),
    )?;
    chart.draw_series(
        panel
            .rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.best)
            .map(|(i, r)| Circle::new((i as f64 + 0.12, above(r)), 5, BEST.filled())),
    )?;
    let cuts: Vec<&str> = panel.rows.iter().map(|r| r.cut.as_str()).collect();
    draw_x_labels(area, &cuts, |x| chart.backend_coord(&(x, 0.0)))?;
    Ok(())
}

/// One legend for every panel, on a line of its own under the title.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    const ENTRY: i32 = 104;
    let mut x = 12;
    let (y, font) = (46, ("sans-serif", 14));
    for (label, colour, _) in COMPONENTS {
        area.draw(&Rectangle::new(
            [(x, y - 6), (x + 14, y + 6)],
            colour.filled(),
        ))?;
        area.draw(&Text::new(label, (x + 20, y - 8), font))?;
        x += ENTRY;
    }
    area.draw(&TriangleMarker::new((x + 7, y), 7, CHOSEN.filled()))?;
    area.draw(&Text::new("chosen", (x + 20, y - 8), font))?;
    x += ENTRY;
    area.draw(&Circle::new((x + 7, y), 5, BEST.filled()))?;
    area.draw(&Text::new("best", (x + 20, y - 8), font))?;
    Ok(())
}
