//! One SVG chart per variant: throughput (and handshakes) as a ratio to the
//! direct connection per workload, and the p99 round-trip latency of the
//! 64-byte workload, per contender.

use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use super::peers::{Peer, Placement};
use super::report::Results;

/// Workloads on the throughput panel.
const THROUGHPUT: [&str; 5] = ["a", "b", "c", "d", "d0"];
/// One colour per contender, in [`Peer::ALL`] order.
const COLOURS: [RGBColor; 7] = [
    RGBColor(120, 120, 120),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(152, 223, 138),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(214, 39, 40),
];

fn colour(peer: Peer) -> RGBColor {
    let i = Peer::ALL.iter().position(|p| *p == peer).unwrap_or(0);
    COLOURS[i]
}

/// Writes `chart-<variant>.svg` into `dir`.
pub fn write(results: &Results, place: Placement, dir: &Path) -> anyhow::Result<()> {
    let name = format!(
        "chart-{}-{}w.svg",
        if place.tls { "wss" } else { "ws" },
        place.workers
    );
    let path = dir.join(name);
    let root = SVGBackend::new(&path, (1100, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error)?;
    let (left, right) = root.split_horizontally(700);
    throughput(results, place, &left)?;
    latency(results, place, &right)?;
    root.present().map_err(draw_error)?;
    Ok(())
}

fn draw_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {e:?}")
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn throughput(results: &Results, place: Placement, area: &Area<'_>) -> anyhow::Result<()> {
    let peers = results.peers();
    let groups: Vec<&str> = THROUGHPUT
        .into_iter()
        .filter(|w| peers.iter().any(|&p| results.row(place, p, w).is_some()))
        .collect();
    let value = |p: Peer, w: &str| {
        results
            .row(place, p, w)
            .and_then(|r| results.ratio(r, Peer::Direct))
            .unwrap_or(0.0)
    };
    let top = groups
        .iter()
        .flat_map(|w| peers.iter().map(move |&p| value(p, w)))
        .fold(1.0f64, f64::max)
        // Room above the bars for the legend.
        * 1.45;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("throughput / direct ({})", variant(place)),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(45)
        .build_cartesian_2d(segments(groups.len()), 0.0..top)
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => groups.get(*i).copied().unwrap_or("").to_owned(),
            _ => String::new(),
        })
        .y_desc("ratio to direct")
        .draw()
        .map_err(draw_error)?;
    let (width, _) = chart.plotting_area().dim_in_pixel();
    let slot = width / groups.len().max(1) as u32;
    let pad = slot / 10;
    let bar = (slot - 2 * pad) / peers.len().max(1) as u32;
    for (k, &peer) in peers.iter().enumerate() {
        let k = k as u32;
        let c = colour(peer);
        chart
            .draw_series(groups.iter().enumerate().map(|(g, w)| {
                let mut r = Rectangle::new(
                    [
                        (SegmentValue::Exact(g), 0.0),
                        (SegmentValue::Exact(g + 1), value(peer, w)),
                    ],
                    c.filled(),
                );
                r.set_margin(
                    0,
                    0,
                    pad + k * bar,
                    slot.saturating_sub(pad + (k + 1) * bar),
                );
                r
            }))
            .map_err(draw_error)?
            .label(peer.name())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], c.filled()));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.85))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(draw_error)?;
    Ok(())
}

fn latency(results: &Results, place: Placement, area: &Area<'_>) -> anyhow::Result<()> {
    let bars: Vec<(Peer, f64)> = results
        .peers()
        .into_iter()
        .filter_map(|p| Some((p, results.row(place, p, "a")?.load.p99_us?)))
        .collect();
    let top = bars.iter().map(|b| b.1).fold(1.0f64, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption("p99 round trip, workload a", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(55)
        .build_cartesian_2d(segments(bars.len()), 0.0..top)
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => bars.get(*i).map_or("", |b| b.0.name()).to_owned(),
            _ => String::new(),
        })
        .y_desc("µs")
        .draw()
        .map_err(draw_error)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (p, v))| {
            let mut r = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), *v),
                ],
                colour(*p).filled(),
            );
            r.set_margin(0, 0, 8, 8);
            r
        }))
        .map_err(draw_error)?;
    Ok(())
}

/// `n` segments, one per bar or group: plotters' segmented ranges include
/// their end, so `0..n` would give one empty segment more.
fn segments(
    n: usize,
) -> plotters::coord::ranged1d::SegmentedCoord<plotters::coord::types::RangedCoordusize> {
    (0..n.saturating_sub(1)).into_segmented()
}

fn variant(place: Placement) -> String {
    format!(
        "{}, {} worker{}",
        if place.tls { "wss" } else { "ws" },
        place.workers,
        if place.workers == 1 { "" } else { "s" }
    )
}
