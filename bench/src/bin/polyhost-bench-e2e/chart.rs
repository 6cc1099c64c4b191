//! The end-to-end chart: one row per setup (baselines, then language x
//! engine), with its p50, p99 and p99.9 latency on a log axis; one panel
//! per connection count at one worker.
//!
//! Drawn with plotters' SVG backend as the in-process chart is
//! (`bench/src/chart.rs`), so labels are SVG text and no fonts are needed.

use crate::report::order;
use crate::results::{Config, Row, Setup};
use plotters::prelude::*;
use std::collections::BTreeMap;

const ENGINE_COLORS: [(&str, RGBColor); 5] = [
    ("wasmtime", RGBColor(31, 119, 180)),
    ("wasmtime-winch", RGBColor(255, 127, 14)),
    ("wasmer", RGBColor(44, 160, 44)),
    ("wasmi", RGBColor(214, 39, 40)),
    ("wasmtime-pulley", RGBColor(148, 103, 189)),
];
const BASELINE: RGBColor = RGBColor(70, 70, 70);

fn color(c: &Config) -> RGBColor {
    c.engine
        .as_deref()
        .and_then(|e| ENGINE_COLORS.iter().find(|(n, _)| *n == e))
        .map_or(BASELINE, |(_, c)| *c)
}

/// Renders the chart for the rows measured at the fewest workers.
///
/// # Errors
/// A drawing error, as text.
pub fn svg(rows: &[Row], meta: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    draw(rows, meta, &mut out).map_err(|e| format!("drawing the chart: {e}"))?;
    Ok(out)
}

fn draw(
    rows: &[Row],
    meta: &BTreeMap<String, String>,
    out: &mut String,
) -> Result<(), Box<dyn std::error::Error>> {
    let workers = rows.iter().map(|r| r.workers).min().unwrap_or(1);
    let mut connections: Vec<u32> = rows
        .iter()
        .filter(|r| r.workers == workers)
        .map(|r| r.connections)
        .collect();
    connections.sort_unstable();
    connections.dedup();
    let mut configs: Vec<Config> = rows.iter().map(|r| r.config.clone()).collect();
    configs.sort_by_key(order);
    configs.dedup();
    let n = configs.len().max(1);

    let height = 150 + 26 * n as u32;
    let root = SVGBackend::with_string(out, (1400, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(84);
    let m = |k: &str| meta.get(k).map(String::as_str).unwrap_or("unknown");
    title.draw(&Text::new(
        format!(
            "Polyhost end to end: request latency through `polyhost run` ({workers} worker{}), \
             nginx + Lua and direct",
            if workers == 1 { "" } else { "s" }
        ),
        (20, 8),
        ("sans-serif", 22).into_font(),
    ))?;
    title.draw(&Text::new(
        format!(
            "µs per request, log scale: ● p50  ▲ p99  ✕ p99.9 (wrk, loopback); {}, {}, commit {}",
            m("date"),
            m("machine"),
            m("commit")
        ),
        (20, 38),
        ("sans-serif", 14).into_font().color(&RGBColor(90, 90, 90)),
    ))?;

    // The legend sits under the title, where it cannot cover a row.
    let mut x = 20;
    for (name, c) in ENGINE_COLORS
        .iter()
        .filter(|(name, _)| configs.iter().any(|x| x.engine.as_deref() == Some(name)))
        .map(|(n, c)| (n.to_string(), *c))
        .chain([("baselines (no plugin)".to_string(), BASELINE)])
    {
        title.draw(&Circle::new((x + 5, 70), 5, c.filled()))?;
        title.draw(&Text::new(
            name.clone(),
            (x + 15, 62),
            ("sans-serif", 14).into_font(),
        ))?;
        x += 30 + 8 * name.len() as i32;
    }

    let panels = body.split_evenly((1, connections.len().max(1)));
    for (i, (panel, conns)) in panels.iter().zip(&connections).enumerate() {
        let here: Vec<&Row> = rows
            .iter()
            .filter(|r| r.workers == workers && r.connections == *conns)
            .collect();
        let (lo, hi) = here.iter().fold((f64::MAX, f64::MIN), |(lo, hi), r| {
            (lo.min(r.p50), hi.max(r.p999))
        });
        let (lo, hi) = if lo <= hi && lo > 0.0 {
            (
                10f64.powf(lo.log10().floor()),
                10f64.powf(hi.log10().ceil()),
            )
        } else {
            (10.0, 1000.0)
        };
        // Row 0 at the top.
        let y_of = |c: &Config| {
            configs
                .iter()
                .position(|x| x == c)
                .map(|p| (n - 1 - p) as f64)
        };
        let labels: Vec<String> = configs.iter().map(|c| c.to_string()).collect();
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("{conns} connection{}", if *conns == 1 { "" } else { "s" }),
                ("sans-serif", 18),
            )
            .margin(12)
            // Room for the last x label, centred on the panel's edge.
            .margin_right(30)
            .x_label_area_size(35)
            .y_label_area_size(if i == 0 { 230 } else { 10 })
            .build_cartesian_2d((lo..hi).log_scale(), -0.5f64..(n as f64 - 0.5))?;
        let show_labels = i == 0;
        chart
            .configure_mesh()
            .y_labels(n + 1)
            .y_label_formatter(&|y| {
                let i = y.round();
                if !show_labels || (y - i).abs() > 1e-6 || i < 0.0 {
                    return String::new();
                }
                labels.get(n - 1 - i as usize).cloned().unwrap_or_default()
            })
            .x_desc("µs per request")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .label_style(("sans-serif", 13))
            .draw()?;
        for r in &here {
            let Some(y) = y_of(&r.config) else {
                continue;
            };
            let c = color(&r.config);
            chart.draw_series([PathElement::new(
                vec![(r.p50, y), (r.p999, y)],
                c.stroke_width(1),
            )])?;
            chart.draw_series([Circle::new((r.p50, y), 5, c.filled())])?;
            chart.draw_series([TriangleMarker::new((r.p99, y), 6, c.filled())])?;
            chart.draw_series([Cross::new((r.p999, y), 5, c.stroke_width(2))])?;
        }
        // A guide at the direct p50, where every proxy starts.
        if let Some(d) = here.iter().find(|r| r.config.setup == Setup::Direct) {
            chart.draw_series([PathElement::new(
                vec![(d.p50, -0.5), (d.p50, n as f64 - 0.5)],
                RGBColor(180, 180, 180).stroke_width(1),
            )])?;
        }
    }
    root.present()?;
    Ok(())
}
