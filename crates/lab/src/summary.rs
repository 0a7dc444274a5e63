//! A grid's report: every row and cell, and the summary a reader wants first — regret, the
//! chosen plan's speed-up over the best baseline, and where a split or a compressed boundary
//! beats every baseline.

use std::path::Path;

use runtime::tasks::percentile;
use serde::Serialize;

use crate::error::{LabError, create_dir, write_file};
use crate::grid::{GridCell, GridConfig, GridRow, grid_csv};

/// The baselines a plan is measured against: edge-only, cloud-only sending the image file,
/// and cloud-only sending raw f32.
const BASELINES: [&str; 3] = ["edge-only", "cloud-only (file)", "cloud-only"];

/// A grid's figures as `sweep` writes them to grid.json.
#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    /// The network.
    pub model: String,
    /// Round-trip time added between edge and cloud, ms.
    pub rtt_ms: f64,
    /// Measured requests per cut and cell (the median is kept).
    pub repeats: usize,
    /// The loss allowed on the tensors that cross (`exact`, `f16`, `int8`).
    pub max_loss: String,
    /// How the link and the edge CPU were shaped, in words.
    pub shaping: String,
    /// The figures over all cells.
    pub summary: SweepSummary,
    /// One per cell: the chosen and the best cut, regret, speed-ups.
    pub cells: Vec<GridCell>,
    /// One per cut and cell: the measured components.
    pub rows: Vec<GridRow>,
}

/// The figures over all cells of a grid. `None` (JSON `null`) where there is nothing to take
/// a statistic of.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepSummary {
    /// Cells measured.
    pub cells: usize,
    /// Median regret: the chosen plan's time over the best measured plan's.
    pub regret_median: Option<f64>,
    /// 95th-percentile regret.
    pub regret_p95: Option<f64>,
    /// Median over cells of the chosen plan's speed-up over the best baseline.
    pub speedup_over_best_baseline_median: Option<f64>,
    /// Cells whose best measured plan is a split or a compressed boundary that beats every
    /// baseline.
    pub cells_where_a_split_or_codec_beats_every_baseline: usize,
    /// In those cells, the median of the best baseline's time over that plan's.
    pub gain_over_best_baseline_where_it_does_median: Option<f64>,
    /// In those cells, the largest such gain.
    pub gain_over_best_baseline_where_it_does_max: Option<f64>,
}

impl SweepReport {
    /// Writes the report to `dir`, creating it: every row as `grid.csv`, the report as
    /// `grid.json` and, with the `plot` feature, the figure `grid.png` (a panel per cell).
    pub fn write(&self, dir: &Path) -> Result<(), LabError> {
        create_dir(dir)?;
        let json = serde_json::to_string_pretty(self).map_err(|e| LabError::File {
            action: "write",
            path: dir.join("grid.json").display().to_string(),
            reason: e.to_string(),
        })?;
        write_file(&dir.join("grid.csv"), &grid_csv(&self.rows))?;
        write_file(&dir.join("grid.json"), &format!("{json}\n"))?;
        #[cfg(feature = "plot")]
        {
            // The shaping's short name: what its description says before the colon.
            let shaping = self.shaping.split(':').next().unwrap_or_default();
            let title = format!(
                "{}: measured time per cut ({shaping}, RTT {} ms, median of {})",
                self.model, self.rtt_ms, self.repeats
            );
            let png = dir.join("grid.png");
            crate::plot::draw_grid(
                &png,
                crate::plot::PlotFormat::Png,
                &title,
                &self.rows,
                &self.cells,
            )?;
        }
        Ok(())
    }

    /// The report of a grid run with `config`, shaped as `shaping` says.
    pub fn new(
        config: &GridConfig,
        shaping: &str,
        rows: Vec<GridRow>,
        cells: Vec<GridCell>,
    ) -> SweepReport {
        SweepReport {
            model: config.net.name().to_string(),
            rtt_ms: config.rtt_ms,
            repeats: config.repeats,
            max_loss: config.max_loss.to_string(),
            shaping: shaping.to_string(),
            summary: SweepSummary::new(&rows, &cells),
            cells,
            rows,
        }
    }
}

impl SweepSummary {
    /// The figures in two lines, after a blank one.
    pub fn render(&self) -> String {
        let s = self;
        let f = |v: Option<f64>| v.unwrap_or(f64::NAN);
        let mut out = format!(
            "\nregret over {} cells: median {:.3}, p95 {:.3}; the chosen plan's median speed-up over the best baseline {:.2}x",
            s.cells,
            f(s.regret_median),
            f(s.regret_p95),
            f(s.speedup_over_best_baseline_median)
        );
        out.push('\n');
        let wins = s.cells_where_a_split_or_codec_beats_every_baseline;
        let by = match s.gain_over_best_baseline_where_it_does_median {
            Some(gain) => format!(", by {gain:.2}x at the median"),
            None => String::new(),
        };
        out += &format!(
            "a split or a compressed boundary beat every baseline (edge-only, cloud-only with the file, cloud-only raw) in {wins} of {} cells{by}\n",
            s.cells
        );
        out
    }

    /// The summary of `rows` and `cells`.
    pub fn new(rows: &[GridRow], cells: &[GridCell]) -> SweepSummary {
        let regrets = sorted(cells.iter().map(|c| c.regret));
        let over_best_baseline = sorted(cells.iter().filter_map(|c| {
            [
                c.speedup_over_edge,
                c.speedup_over_cloud,
                c.speedup_over_cloud_file,
            ]
            .into_iter()
            .flatten()
            .reduce(f64::min)
        }));
        // Per cell: the best baseline's time over the best other plan's, when the latter wins.
        let wins = sorted(cells.iter().filter_map(|c| {
            let in_cell = rows
                .iter()
                .filter(|r| r.edge_cpu == c.edge_cpu && r.uplink_mbps == c.uplink_mbps);
            let (base, other): (Vec<&GridRow>, Vec<&GridRow>) =
                in_cell.partition(|r| BASELINES.contains(&r.cut.as_str()));
            let best = |rs: &[&GridRow]| rs.iter().map(|r| r.e2e_ms).reduce(f64::min);
            let gain = best(&base)? / best(&other)?;
            (gain > 1.0).then_some(gain)
        }));
        SweepSummary {
            cells: cells.len(),
            regret_median: percentile(&regrets, 50.0),
            regret_p95: percentile(&regrets, 95.0),
            speedup_over_best_baseline_median: percentile(&over_best_baseline, 50.0),
            cells_where_a_split_or_codec_beats_every_baseline: wins.len(),
            gain_over_best_baseline_where_it_does_median: percentile(&wins, 50.0),
            gain_over_best_baseline_where_it_does_max: wins.last().copied(),
        }
    }
}

/// `values` without NaNs, sorted.
fn sorted(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.filter(|v| !v.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_reads_in_two_lines() {
        let summary = SweepSummary {
            cells: 4,
            regret_median: Some(1.0),
            regret_p95: Some(1.5),
            speedup_over_best_baseline_median: None,
            cells_where_a_split_or_codec_beats_every_baseline: 1,
            gain_over_best_baseline_where_it_does_median: Some(1.25),
            gain_over_best_baseline_where_it_does_max: Some(1.25),
        };
        let text = summary.render();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.contains("regret over 4 cells: median 1.000, p95 1.500; the chosen plan's median speed-up over the best baseline NaNx"), "{text}");
        assert!(
            text.contains("in 1 of 4 cells, by 1.25x at the median"),
            "{text}"
        );
    }
}
