//! The chart: per-request latency by workload, one panel per workload, one
//! bar per engine within each language, with the baselines alongside.
//!
//! Drawn with plotters' SVG backend, which writes labels as SVG `<text>`
//! elements, so no font files or font libraries are needed to build or run
//! it (layout uses plotters' built-in size estimate).

use crate::run::{Implementation, Results};
use crate::workload::{Language, Workload};
use plotters::prelude::*;

/// Engine colours, in the order engines are listed.
const ENGINE_COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];
const NATIVE_COLOR: RGBColor = RGBColor(60, 60, 60);
const LUA_COLOR: RGBColor = RGBColor(150, 150, 150);

/// One bar: where it goes, how tall, and its spread.
struct Bar {
    x0: f64,
    x1: f64,
    median: f64,
    min: f64,
    max: f64,
}

/// Renders the chart as an SVG document.
///
/// # Errors
/// A drawing error, as text.
pub fn svg(results: &Results) -> Result<String, String> {
    let mut svg = String::new();
    draw(results, &mut svg).map_err(|e| format!("drawing the chart: {e}"))?;
    Ok(svg)
}

fn draw(results: &Results, svg: &mut String) -> Result<(), Box<dyn std::error::Error>> {
    let engines: Vec<&str> = results.engines.iter().map(|e| e.name.as_str()).collect();
    let root = SVGBackend::with_string(svg, (1400, 1050)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(60);
    let subtitle = format!(
        "median µs per request (log scale), whiskers: fastest–slowest batch; {}, {}, {} cores, commit {}",
        results.meta.date, results.meta.cpu, results.meta.cores, results.meta.commit
    );
    title.draw(&Text::new(
        "Polyhost: added latency per request, by plugin language and engine",
        (20, 8),
        ("sans-serif", 24).into_font(),
    ))?;
    title.draw(&Text::new(
        subtitle,
        (20, 38),
        ("sans-serif", 14).into_font().color(&RGBColor(90, 90, 90)),
    ))?;

    // Groups along x: the two baselines, then one per language.
    let groups: Vec<String> = ["native", "LuaJIT"]
        .into_iter()
        .map(String::from)
        .chain(Language::ALL.iter().map(|l| l.label().to_string()))
        .collect();
    let panels = body.split_evenly((2, 2));
    for (i, (panel, workload)) in panels.iter().zip(Workload::ALL).enumerate() {
        let mut bars: Vec<(RGBColor, Option<String>, Vec<Bar>)> = Vec::new();
        let single = |x: f64, imp: &Implementation| {
            results.request(imp, workload).map(|s| Bar {
                x0: x - 0.3,
                x1: x + 0.3,
                median: s.median_ns / 1e3,
                min: s.min_ns / 1e3,
                max: s.max_ns / 1e3,
            })
        };
        bars.push((
            NATIVE_COLOR,
            None,
            single(0.0, &Implementation::Native).into_iter().collect(),
        ));
        bars.push((
            LUA_COLOR,
            None,
            single(1.0, &Implementation::Lua).into_iter().collect(),
        ));
        let width = 0.8 / engines.len().max(1) as f64;
        for (e, engine) in engines.iter().enumerate() {
            let mut series = Vec::new();
            for (g, language) in Language::ALL.iter().enumerate() {
                let imp = Implementation::Wasm {
                    language: *language,
                    engine: engine.to_string(),
                };
                if let Some(s) = results.request(&imp, workload) {
                    let x0 = (g + 2) as f64 - 0.4 + e as f64 * width;
                    series.push(Bar {
                        x0,
                        x1: x0 + width * 0.9,
                        median: s.median_ns / 1e3,
                        min: s.min_ns / 1e3,
                        max: s.max_ns / 1e3,
                    });
                }
            }
            bars.push((
                ENGINE_COLORS[e % ENGINE_COLORS.len()],
                Some(engine.to_string()),
                series,
            ));
        }
        let all = bars.iter().flat_map(|(_, _, b)| b);
        let (lo, hi) = all.fold((f64::MAX, f64::MIN), |(lo, hi), b| {
            (lo.min(b.min), hi.max(b.max))
        });
        // Whole decades, so the log axis labels are round numbers.
        let (lo, hi) = if lo <= hi {
            (
                10f64.powf(lo.log10().floor()),
                10f64.powf(hi.log10().ceil()),
            )
        } else {
            (0.1, 10.0)
        };
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("{}: {}", workload.id(), short(workload)),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5f64..(groups.len() as f64 - 0.5), (lo..hi).log_scale())?;
        let labels = groups.clone();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(groups.len() + 1)
            .x_label_formatter(&move |x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    labels.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc("µs per request")
            .y_label_formatter(&|y| {
                if *y >= 1.0 {
                    format!("{y:.0}")
                } else {
                    format!("{y}")
                }
            })
            .label_style(("sans-serif", 13))
            .draw()?;
        for (color, label, series) in &bars {
            let color = *color;
            let drawn = chart.draw_series(
                series
                    .iter()
                    .map(|b| Rectangle::new([(b.x0, lo), (b.x1, b.median)], color.filled())),
            )?;
            if i == 0
                && let Some(label) = label
            {
                drawn.label(label.as_str()).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled())
                });
            }
            chart.draw_series(series.iter().map(|b| {
                ErrorBar::new_vertical(
                    (b.x0 + b.x1) / 2.0,
                    b.min,
                    b.median,
                    b.max,
                    BLACK.stroke_width(1),
                    4,
                )
            }))?;
        }
        if i == 0 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 13))
                .draw()?;
        }
    }
    root.present()?;
    Ok(())
}

fn short(workload: Workload) -> &'static str {
    match workload {
        Workload::Noop => "no work (the floor)",
        Workload::Headers => "20 adds, 20 gets, 20 removes",
        Workload::Body => "16 KiB body, replace needle",
        Workload::Callout => "one HTTP callout, answered",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Stats;
    use crate::run::{EngineInfo, Outcome, RequestCell};

    #[test]
    fn draws_bars_and_labels_as_svg() {
        let stats = |us: f64| Stats {
            median_ns: us * 1e3,
            mean_ns: us * 1e3,
            min_ns: us * 0.9e3,
            max_ns: us * 1.1e3,
            batches: 3,
            iterations: 10,
        };
        let mut results = Results::default();
        results.engines.push(EngineInfo {
            name: "wasmtime".into(),
            fingerprint: "test".into(),
        });
        for w in Workload::ALL {
            for (imp, us) in [
                (Implementation::Native, 0.5),
                (Implementation::Lua, 2.0),
                (
                    Implementation::Wasm {
                        language: Language::Rust,
                        engine: "wasmtime".into(),
                    },
                    5.0,
                ),
            ] {
                results.requests.push(RequestCell {
                    implementation: imp,
                    workload: w,
                    outcome: Outcome::Measured(stats(us)),
                });
            }
        }
        let svg = svg(&results).unwrap();
        assert!(svg.starts_with("<svg"));
        // The SVG backend writes each label on its own line inside <text>.
        assert!(svg.contains("\nwasmtime\n"), "legend label missing");
        assert!(svg.contains("\nLuaJIT\n"), "group label missing");
        assert!(svg.contains("<rect"));
    }
}
