//! The report's charts, drawn as vectors: horizontal bars, stacked columns and a line, each with
//! a title, axis labels, ticks and (where colours carry meaning) a legend.

use super::canvas::{Align, Page, Rgb8, GRID, INK, MUTED, RULE};

/// Round tick steps covering 0..=`max` in at most five steps.
pub fn ticks(max: f64) -> Vec<f64> {
    if max <= 0.0 || !max.is_finite() {
        return vec![0.0, 1.0];
    }
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| max / s <= 5.0).unwrap_or(10.0 * magnitude);
    let count = (max / step).ceil() as usize;
    (0..=count).map(|i| i as f64 * step).collect()
}

/// `12.5k`, `1.2M`: axis labels, where the exact figure is in the tables.
pub fn compact(value: f64) -> String {
    let a = value.abs();
    let (v, suffix) = if a >= 1e6 {
        (value / 1e6, "M")
    } else if a >= 1e3 {
        (value / 1e3, "k")
    } else {
        (value, "")
    };
    let text = if v.fract().abs() < 1e-9 { format!("{v:.0}") } else { format!("{v:.1}") };
    format!("{text}{suffix}")
}

/// One bar: label, value, colour, and the figure printed at its end.
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub color: Rgb8,
    pub figure: String,
}

/// A titled horizontal bar chart at (`x`, `y`), `width` wide; returns the height used.
pub fn bars(page: &mut Page, x: f32, y: f32, width: f32, title: &str, axis: &str, items: &[Bar]) -> f32 {
    let row = 15.0;
    page.text(x, y + 10.0, 10.5, true, INK, Align::Left, title);
    let label_width = 118.0;
    let figure_width = 70.0;
    let plot_x = x + label_width;
    let plot_width = width - label_width - figure_width;
    let top = y + 22.0;
    // Bars grow right from zero, and left of it for a negative value (a team whose credits
    // outweigh its spend): never clamped away.
    let max = items.iter().map(|b| b.value).fold(0.0, f64::max);
    let min = items.iter().map(|b| b.value).fold(0.0, f64::min);
    let right = if max > 0.0 || min >= 0.0 { ticks(max) } else { vec![0.0] };
    let left = if min < 0.0 { ticks(-min) } else { vec![0.0] };
    let (hi, lo) = (*right.last().unwrap_or(&1.0), *left.last().unwrap_or(&0.0));
    let span = if hi + lo > 0.0 { hi + lo } else { 1.0 };
    let at = |v: f64| plot_x + ((v + lo) / span) as f32 * plot_width;
    let plot_height = row * items.len().max(1) as f32;
    for t in right.iter().copied().chain(left.iter().filter(|t| **t > 0.0).map(|t| -t)) {
        let tx = at(t);
        page.line(&[(tx, top), (tx, top + plot_height)], 0.4, GRID);
        page.text(tx, top + plot_height + 9.0, 7.0, false, MUTED, Align::Center, &compact(t));
    }
    for (i, bar) in items.iter().enumerate() {
        let by = top + i as f32 * row;
        let label = page.fonts.fit(&bar.label, 8.0, false, label_width - 6.0);
        page.text(x, by + 10.5, 8.0, false, INK, Align::Left, &label);
        let (from, to) = (at(bar.value.min(0.0)), at(bar.value.max(0.0)));
        page.rect(from, by + 3.0, to - from, row - 5.0, bar.color);
        page.text(x + width, by + 10.5, 8.0, false, INK, Align::Right, &bar.figure);
    }
    page.line(&[(at(0.0), top), (at(0.0), top + plot_height)], 0.6, RULE);
    page.text(plot_x + plot_width / 2.0, top + plot_height + 19.0, 7.5, false, MUTED, Align::Center, axis);
    22.0 + plot_height + 26.0
}

/// One stacked series: name, colour, a value per column.
pub struct Series {
    pub name: String,
    pub color: Rgb8,
    pub values: Vec<f64>,
}

/// A titled stacked column chart (one column per label) with a legend underneath; returns the
/// height used.
pub fn stacked_columns(page: &mut Page, x: f32, y: f32, width: f32, height: f32, title: &str, axis: &str, labels: &[String], series: &[Series]) -> f32 {
    page.text(x, y + 10.0, 10.5, true, INK, Align::Left, title);
    let axis_width = 38.0;
    let (plot_x, plot_y) = (x + axis_width, y + 32.0);
    let plot_width = width - axis_width;
    // Positive parts stack up from zero and negative ones (a team whose credits outweigh its
    // spend) down from it: a negative total is drawn below the axis, never clamped away.
    let value = |s: &Series, i: usize| s.values.get(i).copied().unwrap_or(0.0);
    let ups: Vec<f64> = (0..labels.len()).map(|i| series.iter().map(|s| value(s, i).max(0.0)).sum()).collect();
    let downs: Vec<f64> = (0..labels.len()).map(|i| series.iter().map(|s| (-value(s, i)).max(0.0)).sum()).collect();
    let (up, down) = (ups.iter().copied().fold(0.0, f64::max), downs.iter().copied().fold(0.0, f64::max));
    let scale = ticks(up.max(down));
    let step = scale.get(1).copied().unwrap_or(1.0);
    let top = scale.iter().copied().find(|t| *t >= up).unwrap_or(step);
    let bottom = if down > 0.0 { scale.iter().copied().find(|t| *t >= down).unwrap_or(step) } else { 0.0 };
    let span = (top + bottom).max(f64::MIN_POSITIVE);
    let zero = plot_y + (top / span) as f32 * height;
    let at = |v: f64| zero - (v / span) as f32 * height;
    for t in scale.iter().copied().filter(|t| *t <= top).chain(scale.iter().copied().filter(|t| *t > 0.0 && *t <= bottom).map(|t| -t)) {
        let ty = at(t);
        page.line(&[(plot_x, ty), (plot_x + plot_width, ty)], 0.4, GRID);
        page.text(plot_x - 4.0, ty + 2.5, 7.0, false, MUTED, Align::Right, &compact(t));
    }
    let slot = plot_width / labels.len().max(1) as f32;
    let column = (slot * 0.62).min(34.0);
    for (i, label) in labels.iter().enumerate() {
        let cx = plot_x + slot * i as f32 + (slot - column) / 2.0;
        let (mut above, mut below) = (0.0f64, 0.0f64);
        for s in series {
            let v = value(s, i);
            if v > 0.0 {
                page.rect(cx, at(above + v), column, at(above) - at(above + v), s.color);
                above += v;
            } else if v < 0.0 {
                page.rect(cx, at(-below), column, at(-below + v) - at(-below), s.color);
                below -= v;
            }
        }
        page.text(cx + column / 2.0, plot_y + height + 10.0, 7.0, false, MUTED, Align::Center, label);
    }
    page.line(&[(plot_x, zero), (plot_x + plot_width, zero)], 0.6, RULE);
    page.text(x, plot_y - 9.0, 7.0, false, MUTED, Align::Left, axis);
    32.0 + height + 18.0 + legend(page, x, plot_y + height + 26.0, width, series.iter().map(|s| (s.name.as_str(), s.color)))
}

/// Swatches and names in rows across `width`; returns the height used.
pub fn legend<'a>(page: &mut Page, x: f32, y: f32, width: f32, entries: impl Iterator<Item = (&'a str, Rgb8)>) -> f32 {
    let (mut cx, mut cy) = (x, y);
    for (name, color) in entries {
        let name = page.fonts.fit(name, 7.5, false, 150.0);
        let w = 12.0 + page.fonts.width(&name, 7.5, false) + 12.0;
        if cx + w > x + width && cx > x {
            cx = x;
            cy += 12.0;
        }
        page.rect(cx, cy - 6.5, 7.0, 7.0, color);
        page.text(cx + 10.0, cy, 7.5, false, INK, Align::Left, &name);
        cx += w;
    }
    cy - y + 12.0
}

/// A titled line chart of percentages (0–100) over `labels`; a missing value breaks the line.
/// Returns the height used.
pub fn percent_line(page: &mut Page, x: f32, y: f32, width: f32, height: f32, title: &str, axis: &str, labels: &[String], values: &[Option<f64>], color: Rgb8) -> f32 {
    page.text(x, y + 10.0, 10.5, true, INK, Align::Left, title);
    let axis_width = 38.0;
    let (plot_x, plot_y) = (x + axis_width, y + 32.0);
    let plot_width = width - axis_width;
    for t in [0.0, 25.0, 50.0, 75.0, 100.0] {
        let ty = plot_y + height - (t / 100.0) as f32 * height;
        page.line(&[(plot_x, ty), (plot_x + plot_width, ty)], 0.4, GRID);
        page.text(plot_x - 4.0, ty + 2.5, 7.0, false, MUTED, Align::Right, &format!("{t:.0}%"));
    }
    let slot = plot_width / labels.len().max(1) as f32;
    let at = |i: usize, v: f64| (plot_x + slot * (i as f32 + 0.5), plot_y + height - (v.clamp(0.0, 100.0) / 100.0) as f32 * height);
    let mut run: Vec<(f32, f32)> = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        page.text(plot_x + slot * (i as f32 + 0.5), plot_y + height + 10.0, 7.0, false, MUTED, Align::Center, label);
        match values.get(i).copied().flatten() {
            Some(v) => {
                let p = at(i, v);
                run.push(p);
                page.text(p.0, p.1 - 5.0, 7.0, false, INK, Align::Center, &format!("{v:.1}%"));
            }
            None => {
                page.line(&run, 1.4, color);
                run.clear();
            }
        }
    }
    page.line(&run, 1.4, color);
    for (i, v) in values.iter().enumerate() {
        if let Some(v) = v {
            let p = at(i, *v);
            page.dot(p.0, p.1, 4.0, color);
        }
    }
    page.line(&[(plot_x, plot_y + height), (plot_x + plot_width, plot_y + height)], 0.6, RULE);
    page.text(x, plot_y - 9.0, 7.0, false, MUTED, Align::Left, axis);
    32.0 + height + 16.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(ticks(64871.91), vec![0.0, 20000.0, 40000.0, 60000.0, 80000.0]);
        assert_eq!(ticks(9.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(0.0), vec![0.0, 1.0]);
        assert_eq!(compact(20000.0), "20k");
        assert_eq!(compact(2500000.0), "2.5M");
    }
}
