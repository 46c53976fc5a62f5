//! The one renderer of a [`Figure`], generic over plotters' backends so that SVG and PNG
//! are the same drawing.
//!
//! Layout is measured, not guessed: the left label area is as wide as the widest tick label
//! plus the rotated axis title, long titles shrink or are cut to fit, and the legend goes to
//! the corner with the fewest data points, with headroom added above the data when every
//! corner is taken, so the legend never hides a curve.

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{BOUND_GREY, Figure, Layer, Mark, PALETTE, Panel, Rgb};

const FONT: &str = "sans-serif";
// plotters font sizes; the text is about 0.8 of this tall (16 → about 13 px capitals).
const TITLE_SIZE: f64 = 24.0;
const PANEL_TITLE_SIZE: f64 = 19.0;
const TICK_SIZE: f64 = 17.0;
const DESC_SIZE: f64 = 18.0;
const LEGEND_SIZE: f64 = 16.0;
const CAPTION_SIZE: f64 = 15.0;
const MARGIN: u32 = 10;
const LEGEND_MARGIN: u32 = 8;
const X_TICKS: usize = 8;
const Y_TICKS: usize = 6;

type Chart<'a, DB, Y> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>;

fn err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the picture: {e}")
}

fn rgb(c: Rgb) -> RGBColor {
    RGBColor(c.0, c.1, c.2)
}

fn style(size: f64) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).color(&BLACK)
}

/// Draws the whole figure on `root` and presents it.
pub(super) fn figure<DB: DrawingBackend>(
    fig: &Figure,
    root: DrawingArea<DB, Shift>,
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let (w, h) = root.dim_in_pixel();
    let title_h = 44;
    let (top, rest) = root.split_vertically(title_h);
    let title_style = fitted(&top, &fig.title, TITLE_SIZE, w.saturating_sub(2 * MARGIN));
    top.draw(&Text::new(
        title_style.1,
        (w as i32 / 2, title_h as i32 / 2 + 2),
        title_style.0.pos(Pos::new(HPos::Center, VPos::Center)),
    ))
    .map_err(err)?;
    let body = match &fig.caption {
        Some(caption) => {
            let cap_h = 30;
            let (body, foot) = rest.split_vertically(h - title_h - cap_h);
            let (s, text) = fitted(&foot, caption, CAPTION_SIZE, w.saturating_sub(2 * MARGIN));
            foot.draw(&Text::new(
                text,
                (MARGIN as i32, cap_h as i32 / 2),
                s.color(&RGBColor(70, 70, 70))
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(err)?;
            body
        }
        None => rest,
    };
    let rows: Vec<&Vec<Panel>> = fig.rows.iter().filter(|r| !r.is_empty()).collect();
    for (area, row) in body.split_evenly((rows.len(), 1)).iter().zip(&rows) {
        for (cell, p) in area.split_evenly((1, row.len())).iter().zip(row.iter()) {
            panel(cell, p)?;
        }
    }
    root.present().map_err(err)?;
    Ok(())
}

/// A text style of at most `size` (down to 12) and the text, cut with an ellipsis if needed,
/// that fit in `max_w` pixels.
fn fitted<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    size: f64,
    max_w: u32,
) -> (TextStyle<'static>, String) {
    let width = |s: &TextStyle, t: &str| area.estimate_text_size(t, s).map_or(0, |d| d.0);
    let mut size = size;
    while size > 12.0 && width(&style(size), text) > max_w {
        size -= 1.0;
    }
    let s = style(size);
    let mut t: String = text.to_string();
    while width(&s, &t) > max_w && t.chars().count() > 1 {
        let keep = t.chars().count() - 2;
        t = t.chars().take(keep).collect::<String>() + "…";
    }
    (s, t)
}

/// Finite (x, y) extent of a panel's layers; stems include zero.
fn extent(p: &Panel) -> Option<((f64, f64), (f64, f64))> {
    let mut x = (f64::INFINITY, f64::NEG_INFINITY);
    let mut y = x;
    let grow = |r: &mut (f64, f64), v: f64| {
        if v.is_finite() {
            r.0 = r.0.min(v);
            r.1 = r.1.max(v);
        }
    };
    for l in &p.layers {
        for (i, (&xi, &yi)) in l.x.iter().zip(&l.y).enumerate() {
            let hi = match &l.mark {
                Mark::Band(hi) | Mark::Whiskers(hi) => hi.get(i).copied().unwrap_or(f64::NAN),
                _ => yi,
            };
            if !xi.is_finite() || !yi.is_finite() && !hi.is_finite() {
                continue;
            }
            grow(&mut x, xi);
            grow(&mut y, yi);
            grow(&mut y, hi);
            if l.mark == Mark::Stems {
                grow(&mut y, 0.0);
            }
        }
    }
    (x.0 <= x.1 && y.0 <= y.1).then_some((x, y))
}

/// Widens a range by `frac` of its span on each side (a flat range gets a span of its own).
fn pad((lo, hi): (f64, f64), frac: f64) -> (f64, f64) {
    let span = if hi > lo {
        hi - lo
    } else {
        (lo.abs() * 0.2).max(1.0)
    };
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - span / 2.0, hi + span / 2.0)
    };
    (lo - frac * span, hi + frac * span)
}

/// The tick step plotters picks for `lo..hi` with at most `n` ticks: the smallest of 1, 2, 5
/// times a power of ten that gives no more than `n` ticks.
fn tick_step(lo: f64, hi: f64, n: usize) -> f64 {
    let span = (hi - lo).abs();
    if span <= 0.0 || !span.is_finite() {
        return 0.0;
    }
    let raw = span / n.saturating_sub(1).max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * mag)
}

/// Tick label text for an axis over `lo..hi` with at most `n` ticks: the decimals the tick
/// step needs (the same for every tick), and the exponent form for very large or very small
/// magnitudes, so that labels stay short (a byte counter would otherwise print ten digits).
pub(super) fn tick_formatter(lo: f64, hi: f64, n: usize) -> impl Fn(&f64) -> String {
    let step = tick_step(lo, hi, n);
    let mag = lo.abs().max(hi.abs());
    let sci = mag >= 1e6 || (mag > 0.0 && mag < 1e-3);
    let decimals = if step > 0.0 {
        (-step.log10()).ceil().clamp(0.0, 9.0) as usize
    } else {
        0
    };
    let digits = if step > 0.0 && mag > 0.0 {
        (mag.log10().floor() - step.log10().floor() + 1.0).clamp(1.0, 6.0) as usize
    } else {
        2
    };
    move |v: &f64| {
        // A tick at zero computed as 1e-17 must not print as -0.00 or 1e-17.
        let v = if v.abs() < step * 1e-6 { 0.0 } else { *v };
        if sci && v != 0.0 {
            let s = format!("{:.*e}", digits.saturating_sub(1), v);
            // 2.50e6 → 2.5e6: the exponent form is already long.
            match s.split_once('e') {
                Some((m, e)) if m.contains('.') => {
                    format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.'))
                }
                _ => s,
            }
        } else {
            format!("{v:.decimals$}")
        }
    }
}

/// Pixel size of `text` in `s`.
fn text_size<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    s: &TextStyle,
) -> (u32, u32) {
    area.estimate_text_size(text, s).unwrap_or((0, 0))
}

/// Points of a layer sampled along what it draws, in pixels, for placing the legend.
fn footprint<DB: DrawingBackend, Y: Ranged<ValueType = f64>>(
    chart: &Chart<DB, Y>,
    l: &Layer,
) -> Vec<(i32, i32)> {
    let mut out = Vec::new();
    let mut prev: Option<(f64, f64)> = None;
    for (&x, &y) in l.x.iter().zip(&l.y) {
        if !(x.is_finite() && y.is_finite()) {
            prev = None;
            continue;
        }
        match l.mark {
            Mark::Line => {
                if let Some((px, py)) = prev {
                    for k in 1..8 {
                        let f = k as f64 / 8.0;
                        out.push(chart.backend_coord(&(px + f * (x - px), py + f * (y - py))));
                    }
                }
                prev = Some((x, y));
            }
            Mark::Stems => {
                for k in 0..=8 {
                    out.push(chart.backend_coord(&(x, y * k as f64 / 8.0)));
                }
            }
            Mark::Band(_) | Mark::Whiskers(_) => {}
            Mark::Points | Mark::Highlight => {}
        }
        out.push(chart.backend_coord(&(x, y)));
    }
    out
}

/// Keeps, of each run of points that share a pixel column, the first, lowest, highest and
/// last (in order): the drawn line is the same, and a 10⁵-point trace stays a small SVG.
fn decimate(run: &[(f64, f64)], x0: f64, x1: f64, columns: u32) -> Vec<(f64, f64)> {
    if run.len() <= 4 * columns as usize || x1 <= x0 {
        return run.to_vec();
    }
    let col = |x: f64| (((x - x0) / (x1 - x0)) * columns as f64).floor() as i64;
    let mut out = Vec::with_capacity(4 * columns as usize + 4);
    let mut i = 0;
    while i < run.len() {
        let c = col(run[i].0);
        let mut j = i;
        let (mut lo, mut hi) = (i, i);
        while j < run.len() && col(run[j].0) == c {
            if run[j].1 < run[lo].1 {
                lo = j;
            }
            if run[j].1 > run[hi].1 {
                hi = j;
            }
            j += 1;
        }
        let mut keep = vec![i, lo, hi, j - 1];
        keep.sort_unstable();
        keep.dedup();
        out.extend(keep.into_iter().map(|k| run[k]));
        i = j;
    }
    out
}

/// Runs of consecutive finite points (a NaN ends a run: gaps are drawn as gaps).
fn runs(x: &[f64], y: &[f64]) -> Vec<Vec<(f64, f64)>> {
    let mut out = vec![Vec::new()];
    for (&a, &b) in x.iter().zip(y) {
        if a.is_finite() && b.is_finite() {
            out.last_mut().expect("one run").push((a, b));
        } else if !out.last().expect("one run").is_empty() {
            out.push(Vec::new());
        }
    }
    out.retain(|r| !r.is_empty());
    out
}

/// Draws one panel in `area`.
fn panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &Panel) -> anyhow::Result<()> {
    let (w, _) = area.dim_in_pixel();
    let area = match &p.title {
        Some(t) => {
            let th = 30;
            let (top, below) = area.split_vertically(th);
            let (s, text) = fitted(&top, t, PANEL_TITLE_SIZE, w.saturating_sub(2 * MARGIN));
            top.draw(&Text::new(
                text,
                (w as i32 / 2, th / 2 + 4),
                s.pos(Pos::new(HPos::Center, VPos::Center)),
            ))
            .map_err(err)?;
            below
        }
        None => area.clone(),
    };
    let Some((xr, yr)) = extent(p) else {
        let (w, h) = area.dim_in_pixel();
        area.draw(&Text::new(
            "(no values to draw)",
            (w as i32 / 2, h as i32 / 2),
            style(DESC_SIZE).pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(err)?;
        return Ok(());
    };
    let raw = (xr, yr);
    let discrete = p
        .layers
        .iter()
        .any(|l| matches!(l.mark, Mark::Stems | Mark::Points | Mark::Highlight));
    let xr = pad(xr, if discrete { 0.03 } else { 0.0 });
    // A log axis only for positive data that spans a decade or more (order-search losses).
    let log = p.y_log && yr.0 > 0.0 && yr.1 / yr.0 >= 10.0;
    let mut yr = if log {
        let (a, b) = pad((yr.0.log10(), yr.1.log10()), 0.06);
        (10f64.powf(a), 10f64.powf(b))
    } else {
        pad(yr, 0.06)
    };
    // An axis must span a finite width (with room for the legend's headroom and the tick
    // arithmetic): values near the largest f64 would make plotters loop for ever.
    for (axis, (lo, hi), (a, b)) in [("x", xr, raw.0), ("y", yr, raw.1)] {
        if !((hi - lo) * 4.0).is_finite() {
            anyhow::bail!(
                "cannot draw: the {axis} values run from {a:e} to {b:e}, too close to the \
                 largest number for an axis to span; give the data in other units"
            );
        }
    }
    // Two passes at most: the second adds headroom for the legend.
    for first in [true, false] {
        let again = if log {
            attempt(&area, p, xr, yr, (yr.0..yr.1).log_scale(), log, first)?
        } else {
            attempt(&area, p, xr, yr, yr.0..yr.1, log, first)?
        };
        match again {
            Some(top) => yr.1 = top,
            None => break,
        }
    }
    Ok(())
}

/// Builds the chart of a panel over `xr` × `y`, and draws it unless the legend needs
/// headroom: then returns the new top of the y range, for a second attempt. `log` says
/// whether `y` is the log axis (decided once, on the data, by the caller: the padded range
/// may span a decade where the data did not).
#[allow(clippy::too_many_arguments)]
fn attempt<DB: DrawingBackend, Y: AsRangedCoord<Value = f64>>(
    area: &DrawingArea<DB, Shift>,
    p: &Panel,
    xr: (f64, f64),
    yr: (f64, f64),
    y: Y,
    log: bool,
    may_retry: bool,
) -> anyhow::Result<Option<f64>>
where
    Y::CoordDescType: ValueFormatter<f64>,
{
    let tick = style(TICK_SIZE);
    let desc = style(DESC_SIZE);
    let legend = style(LEGEND_SIZE);
    let (_, area_h) = area.dim_in_pixel();
    let yfmt: Box<dyn Fn(&f64) -> String> = if log {
        Box::new(significant)
    } else {
        Box::new(tick_formatter(yr.0, yr.1, Y_TICKS))
    };
    let samples = if log {
        vec![yr.0, yr.1, (yr.0 * yr.1).sqrt()]
    } else {
        vec![yr.0, yr.1, (yr.0 + yr.1) / 2.0, yr.0 / 3.0, yr.1 / 3.0]
    };
    let y_label_w = samples
        .iter()
        .map(|v| text_size(area, &yfmt(v), &tick).0)
        .max()
        .unwrap_or(0);
    let desc_h = text_size(area, "Ag", &desc).1;
    let tick_h = text_size(area, "0", &tick).1;
    let mut chart = ChartBuilder::on(area)
        .margin(MARGIN)
        .margin_right(MARGIN + 10)
        .x_label_area_size(tick_h + desc_h + 14)
        .y_label_area_size(y_label_w + desc_h + 20)
        .build_cartesian_2d(xr.0..xr.1, y)
        .map_err(err)?;
    let plot = chart.plotting_area().dim_in_pixel();
    let labelled: Vec<&Layer> = p.layers.iter().filter(|l| l.label.is_some()).collect();
    let line_h = text_size(area, "Ag", &legend).1.max(12) + 6;
    let legend_box = (
        labelled
            .iter()
            .map(|l| text_size(area, l.label.as_deref().unwrap_or(""), &legend).0)
            .max()
            .unwrap_or(0)
            + 50,
        labelled.len() as u32 * line_h + 10,
    );
    let mut corner = SeriesLabelPosition::UpperRight;
    if !labelled.is_empty() {
        let r = chart.plotting_area().get_pixel_range();
        let ((px0, py0), (px1, py1)) = ((r.0.start, r.1.start), (r.0.end, r.1.end));
        let (bw, bh) = (
            legend_box.0 as i32 + LEGEND_MARGIN as i32,
            legend_box.1 as i32 + LEGEND_MARGIN as i32,
        );
        let corners = [
            (
                SeriesLabelPosition::UpperRight,
                (px1 - bw, py0, px1, py0 + bh),
            ),
            (
                SeriesLabelPosition::UpperLeft,
                (px0, py0, px0 + bw, py0 + bh),
            ),
            (
                SeriesLabelPosition::LowerRight,
                (px1 - bw, py1 - bh, px1, py1),
            ),
            (
                SeriesLabelPosition::LowerLeft,
                (px0, py1 - bh, px0 + bw, py1),
            ),
        ];
        let mut counts = [0usize; 4];
        for l in &p.layers {
            for (x, y) in footprint(&chart, l) {
                for (k, (_, (a, b, c, d))) in corners.iter().enumerate() {
                    if x >= *a && x <= *c && y >= *b && y <= *d {
                        counts[k] += 1;
                    }
                }
            }
        }
        let best = (0..4).min_by_key(|&k| counts[k]).unwrap_or(0);
        corner = corners[best].0.clone();
        if may_retry && counts[best] > 0 && (bh as u32) < plot.1 / 2 {
            // Every corner holds data: raise the top so the legend sits above it.
            let grow = plot.1 as f64 / (plot.1 as f64 - bh as f64 - 4.0).max(1.0);
            return Ok(Some(if log {
                yr.0 * (yr.1 / yr.0).powf(grow)
            } else {
                yr.0 + (yr.1 - yr.0) * grow
            }));
        }
    }
    let xfmt = tick_formatter(xr.0, xr.1, X_TICKS);
    let x_desc = fitted(area, &p.x_label, DESC_SIZE, plot.0).1;
    let y_desc = fitted(area, &p.y_label, DESC_SIZE, area_h.saturating_sub(20)).1;
    chart
        .configure_mesh()
        .x_labels(X_TICKS)
        .y_labels(Y_TICKS)
        .x_label_formatter(&xfmt)
        .y_label_formatter(&yfmt)
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(tick.clone())
        .axis_desc_style(desc.clone())
        .bold_line_style(RGBColor(225, 225, 225))
        .light_line_style(TRANSPARENT)
        .axis_style(RGBColor(60, 60, 60))
        .draw()
        .map_err(err)?;
    layers(&mut chart, p, xr, plot.0)?;
    if !labelled.is_empty() {
        chart
            .configure_series_labels()
            .position(corner)
            .margin(LEGEND_MARGIN)
            .label_font(legend.clone())
            .background_style(WHITE.mix(0.88))
            .border_style(RGBColor(150, 150, 150))
            .draw()
            .map_err(err)?;
    }
    Ok(None)
}

/// Three significant digits, for the uneven ticks of a log axis.
fn significant(v: &f64) -> String {
    let v = *v;
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let mag = v.abs();
    if !(1e-3..1e6).contains(&mag) {
        let s = format!("{v:.2e}");
        return match s.split_once('e') {
            Some((m, e)) => format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.')),
            None => s,
        };
    }
    let decimals = (2 - mag.log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Draws the layers in order, each with its legend entry.
fn layers<'a, DB: DrawingBackend + 'a, Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'a, DB, Y>,
    p: &Panel,
    xr: (f64, f64),
    columns: u32,
) -> anyhow::Result<()> {
    let mut next = 0usize;
    for l in &p.layers {
        let c = match l.color {
            Some(c) => rgb(c),
            None => {
                let c = rgb(PALETTE[next % PALETTE.len()]);
                next += 1;
                c
            }
        };
        let anno = match &l.mark {
            Mark::Line => {
                let paths = runs(&l.x, &l.y).into_iter().map(|r| {
                    PathElement::new(decimate(&r, xr.0, xr.1, columns), c.stroke_width(2))
                });
                let a = chart.draw_series(paths).map_err(err)?;
                a.legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3))
                })
            }
            Mark::Stems => {
                let pts: Vec<(f64, f64)> = runs(&l.x, &l.y).concat();
                chart
                    .draw_series(
                        pts.iter().map(|&(x, y)| {
                            PathElement::new(vec![(x, 0.0), (x, y)], c.stroke_width(2))
                        }),
                    )
                    .map_err(err)?;
                let a = chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
                    .map_err(err)?;
                a.legend(move |(x, y)| {
                    EmptyElement::at((x + 12, y))
                        + PathElement::new(vec![(0, 7), (0, -5)], c.stroke_width(2))
                        + Circle::new((0, -5), 3, c.filled())
                })
            }
            Mark::Points => {
                let pts: Vec<(f64, f64)> = runs(&l.x, &l.y).concat();
                let a = chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))
                    .map_err(err)?;
                a.legend(move |(x, y)| Circle::new((x + 12, y), 4, c.filled()))
            }
            Mark::Highlight => {
                let pts: Vec<(f64, f64)> = runs(&l.x, &l.y).concat();
                let a = chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 9, c.stroke_width(3))))
                    .map_err(err)?;
                a.legend(move |(x, y)| Circle::new((x + 12, y), 7, c.stroke_width(3)))
            }
            Mark::Whiskers(hi) => {
                let bar = c.mix(0.45).stroke_width(6);
                // Responses of different lengths share the longest lag axis: the common part.
                let bars: Vec<PathElement<(f64, f64)>> = (0..l.x.len().min(l.y.len()))
                    .filter_map(|i| {
                        let (x, lo, h) = (l.x[i], l.y[i], hi.get(i).copied()?);
                        (x.is_finite() && lo.is_finite() && h.is_finite())
                            .then(|| PathElement::new(vec![(x, lo), (x, h)], bar))
                    })
                    .collect();
                let a = chart.draw_series(bars).map_err(err)?;
                a.legend(move |(x, y)| {
                    PathElement::new(vec![(x + 12, y - 8), (x + 12, y + 8)], bar)
                })
            }
            Mark::Band(hi) => {
                let alpha = if l.color == Some(BOUND_GREY) {
                    0.3
                } else {
                    0.22
                };
                let fill = c.mix(alpha);
                let mut polys = Vec::new();
                // A band breaks where either edge is missing.
                let mut cur: Vec<(f64, f64, f64)> = Vec::new();
                let mut flush = |cur: &mut Vec<(f64, f64, f64)>| {
                    if cur.len() >= 2 {
                        let mut pts: Vec<(f64, f64)> =
                            cur.iter().map(|&(x, lo, _)| (x, lo)).collect();
                        pts.extend(cur.iter().rev().map(|&(x, _, h)| (x, h)));
                        polys.push(Polygon::new(pts, fill.filled()));
                    }
                    cur.clear();
                };
                for i in 0..l.x.len().min(l.y.len()) {
                    let (x, lo, h) = (l.x[i], l.y[i], hi.get(i).copied().unwrap_or(f64::NAN));
                    if x.is_finite() && lo.is_finite() && h.is_finite() {
                        cur.push((x, lo, h));
                    } else {
                        flush(&mut cur);
                    }
                }
                flush(&mut cur);
                let a = chart.draw_series(polys).map_err(err)?;
                a.legend(move |(x, y)| Rectangle::new([(x, y - 7), (x + 24, y + 7)], fill.filled()))
            }
        };
        if let Some(label) = &l.label {
            anno.label(label.clone());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_stay_short() {
        let f = tick_formatter(0.0, 1.0, 6);
        assert_eq!((f(&0.0), f(&0.5)), ("0.0".into(), "0.5".into()));
        let f = tick_formatter(0.0, 3.2e9, 6);
        assert_eq!((f(&0.0), f(&2e9)), ("0".into(), "2e9".into()));
        let f = tick_formatter(0.0, 2.2e9, 6);
        assert_eq!(f(&2.5e9), "2.5e9");
        let f = tick_formatter(0.0, 2.2e-4, 6);
        assert_eq!(f(&1.5e-4), "1.5e-4");
        let f = tick_formatter(-0.06, 0.06, 6);
        assert_eq!(f(&-0.04), "-0.04");
        assert_eq!(f(&-1e-18), "0.00");
        let f = tick_formatter(0.0, 600.0, 8);
        assert_eq!(f(&300.0), "300");
        // Step 1 over 0..4: integers, as plotters places them.
        let f = tick_formatter(-0.2, 3.9, 6);
        assert_eq!(f(&3.0), "3");
    }

    #[test]
    fn log_ticks_keep_three_digits() {
        assert_eq!(significant(&15.848931924611136), "15.8");
        assert_eq!(significant(&200.0), "200");
        assert_eq!(significant(&0.012345), "0.0123");
        assert_eq!(significant(&2.5e9), "2.5e9");
    }

    #[test]
    fn decimation_keeps_the_envelope() {
        let run: Vec<(f64, f64)> = (0..10_000)
            .map(|i| (i as f64, if i % 2 == 0 { 1.0 } else { -1.0 }))
            .collect();
        let d = decimate(&run, 0.0, 10_000.0, 100);
        assert!(d.len() <= 400, "{}", d.len());
        assert_eq!(d.first(), run.first());
        assert_eq!(d.last(), run.last());
        assert!(d.iter().any(|p| p.1 == 1.0) && d.iter().any(|p| p.1 == -1.0));
        assert!(d.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn gaps_break_lines() {
        let r = runs(
            &[0.0, 1.0, 2.0, 3.0, 4.0],
            &[1.0, f64::NAN, 2.0, 3.0, f64::NAN],
        );
        assert_eq!(r, vec![vec![(0.0, 1.0)], vec![(2.0, 2.0), (3.0, 3.0)]]);
    }
}
