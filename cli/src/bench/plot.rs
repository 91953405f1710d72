//! `sessionrepl bench --plot FILE.svg`: each scenario's figures side by
//! side — the raw-socket floor, sessionrepl and the Tribes peer of the same
//! run — one panel per scenario, drawn with `plotters` (SVG backend).
//!
//! Each panel plots the figure that scenario is about: messages per second
//! (S1, S3, S5), median latency (S2, lower is better), megabytes per second
//! (S4), commits per second (S6), seconds until the joiner is ready (S7,
//! lower is better). Panels have their own scale: compare bars within a
//! panel, as ratios, never across panels.

use super::BenchLine;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use std::path::Path;

/// What a panel plots for a scenario: axis label and the value of a line.
fn figure(id: &str) -> (&'static str, fn(&BenchLine) -> f64) {
    match id {
        "S2" => ("p50 latency, µs (lower is better)", |l| l.p50_us),
        "S4" => ("MB/s", |l| l.mb_per_s),
        "S6" => ("commits/s", |l| l.msgs_per_s),
        "S7" => ("seconds until ready (lower is better)", |l| l.secs),
        _ => ("messages/s", |l| l.msgs_per_s),
    }
}

fn colour(impl_name: &str) -> RGBColor {
    match impl_name {
        "floor" => RGBColor(150, 150, 150),
        "sessionrepl" => RGBColor(31, 119, 180),
        "tribes" => RGBColor(255, 127, 14),
        _ => RGBColor(44, 160, 44),
    }
}

/// A short human figure: 2.94M, 117k, 7.3.
fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 || v == 0.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The scenarios in `lines`, in order of first appearance, each with its
/// lines (floor first, then sessionrepl, then the peer).
fn panels(lines: &[BenchLine]) -> Vec<(String, String, Vec<&BenchLine>)> {
    let mut out: Vec<(String, String, Vec<&BenchLine>)> = Vec::new();
    for l in lines {
        match out.iter_mut().find(|p| p.0 == l.id) {
            Some(p) => p.2.push(l),
            None => out.push((l.id.clone(), l.name.clone(), vec![l])),
        }
    }
    let rank = |i: &str| match i {
        "floor" => 0,
        "sessionrepl" => 1,
        "tribes" => 2,
        _ => 3,
    };
    for p in &mut out {
        p.2.sort_by_key(|l| rank(&l.impl_name));
    }
    out
}

/// The label of a bar: the implementation, or, when a scenario has several
/// lines of one implementation (S6's workloads, two io backends), what
/// tells them apart.
fn bar_label(l: &BenchLine, same_impl: usize) -> String {
    if same_impl < 2 {
        return l.impl_name.clone();
    }
    match (l.extra("workload"), l.extra("window"), l.extra("io")) {
        (Some(w), Some("1"), _) => format!("{w} w=1"),
        (Some(w), _, _) => w.to_string(),
        (None, _, Some(io)) => format!("{} ({io})", l.impl_name),
        _ => l.impl_name.clone(),
    }
}

/// Draws `lines` to an SVG file at `path`.
///
/// # Errors
/// No lines, or the file cannot be written.
pub fn plot_svg(lines: &[BenchLine], path: &Path) -> Result<(), String> {
    let panels = panels(lines);
    if panels.is_empty() {
        return Err("nothing to plot: no bench lines".into());
    }
    let cols = panels.len().min(3);
    let rows = panels.len().div_ceil(cols);
    let size = (440 * cols as u32, 300 * rows as u32);
    let root = SVGBackend::new(path, size).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let areas = root.split_evenly((rows, cols));
    for ((id, name, ls), area) in panels.iter().zip(areas.iter()) {
        let (unit, value) = figure(id);
        let n = ls.len() as i32;
        let max = ls.iter().map(|l| value(l)).fold(0.0, f64::max);
        let top = if max > 0.0 { max * 1.2 } else { 1.0 };
        let labels: Vec<String> = ls
            .iter()
            .map(|l| {
                let same = ls.iter().filter(|o| o.impl_name == l.impl_name).count();
                bar_label(l, same)
            })
            .collect();
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{id} {name}"), ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(56)
            // An integer range includes its end: 0..n-1 gives n segments
            // (a lone bar gets an empty second one: 0..0 has no width).
            .build_cartesian_2d((0..(n - 1).max(1)).into_segmented(), 0f64..top)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc(unit)
            .y_label_formatter(&|v| human(*v))
            .x_labels(ls.len())
            .x_label_style(("sans-serif", 11))
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                    labels.get(*i as usize).cloned().unwrap_or_default()
                }
                SegmentValue::Last => String::new(),
            })
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .draw_series(ls.iter().enumerate().map(|(i, l)| {
                let i = i as i32;
                let mut r = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), value(l)),
                    ],
                    colour(&l.impl_name).filled(),
                );
                r.set_margin(0, 0, 12, 12);
                r
            }))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(ls.iter().enumerate().map(|(i, l)| {
                Text::new(
                    human(value(l)),
                    (SegmentValue::CenterOf(i as i32), value(l) + top * 0.07),
                    ("sans-serif", 13).into_font().color(&BLACK).pos(
                        plotters::style::text_anchor::Pos::new(
                            plotters::style::text_anchor::HPos::Center,
                            plotters::style::text_anchor::VPos::Bottom,
                        ),
                    ),
                )
            }))
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Reads bench lines from text (`sessionrepl bench` output; lines that are
/// not bench lines are skipped).
pub fn read_lines(text: &str) -> Vec<BenchLine> {
    text.lines()
        .filter_map(|l| BenchLine::parse(l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = "\
S1 fastasync-1k impl=floor count=1000 size=1024 secs=0.001 msgs_per_s=1370000 MB_per_s=1402.9 p50_us=0 p99_us=0
S1 fastasync-1k impl=sessionrepl count=1000 size=1024 secs=0.001 msgs_per_s=2940000 MB_per_s=3010.6 p50_us=0 p99_us=0 io=mio
S1 fastasync-1k impl=tribes count=200 size=1024 secs=0.002 msgs_per_s=111000 MB_per_s=113.7 p50_us=0 p99_us=0
S2 sync-ack-1k impl=sessionrepl count=1000 size=1024 secs=0.01 msgs_per_s=100000 MB_per_s=102.4 p50_us=7.3 p99_us=13.6 io=mio
S2 sync-ack-1k impl=floor count=1000 size=1024 secs=0.08 msgs_per_s=12000 MB_per_s=12.3 p50_us=81.6 p99_us=120.0
not a bench line
";

    #[test]
    fn panels_group_by_scenario_floor_first() {
        let lines = read_lines(RUN);
        assert_eq!(lines.len(), 5);
        let p = panels(&lines);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].0, "S1");
        let order: Vec<&str> = p[0].2.iter().map(|l| l.impl_name.as_str()).collect();
        assert_eq!(order, ["floor", "sessionrepl", "tribes"]);
        assert_eq!(p[1].2[0].impl_name, "floor");
        assert_eq!((figure("S2").1)(p[1].2[1]), 7.3);
    }

    #[test]
    fn svg_has_a_panel_and_a_bar_value_per_line() {
        let dir = std::env::temp_dir().join(format!("sr-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bench.svg");
        plot_svg(&read_lines(RUN), &f).unwrap();
        let svg = std::fs::read_to_string(&f).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        for text in [
            "S1 fastasync-1k",
            "S2 sync-ack-1k",
            "2.94M",
            "1.37M",
            "111k",
            "7.3",
            "81.6",
            "tribes",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        // sessionrepl's colour is used for its bars.
        assert!(svg.contains("#1F77B4") || svg.contains("#1f77b4"));
        assert!(plot_svg(&[], &f).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
