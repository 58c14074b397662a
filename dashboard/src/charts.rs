//! Server-rendered SVG charts: no JavaScript library, nothing to download, and
//! they print.

use maud::{Markup, html};

pub const BLOCKED: &str = "#c0392b";
pub const FLAGGED: &str = "#d68910";
pub const TOTAL: &str = "#1f5fbf";

/// Grouped vertical bars: one group per label, one bar per series.
pub fn grouped_bars(labels: &[String], series: &[(&str, &str, Vec<u64>)]) -> Markup {
    let (w, h, left, bottom, top) = (640.0, 220.0, 48.0, 28.0, 10.0);
    let max = series
        .iter()
        .flat_map(|(_, _, v)| v.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let max = nice_ceiling(max);
    let plot_w = w - left - 8.0;
    let plot_h = h - bottom - top;
    let n = labels.len().max(1) as f64;
    let group_w = plot_w / n;
    let bar_w = (group_w * 0.7 / series.len().max(1) as f64).min(28.0);
    html! {
        svg.chart viewBox={ "0 0 " (w) " " (h) } role="img" aria-label="bar chart" {
            @for i in 0..=4 {
                @let v = max as f64 * f64::from(i) / 4.0;
                @let y = top + plot_h - plot_h * f64::from(i) / 4.0;
                line x1=(left) x2=(w - 8.0) y1=(y) y2=(y) stroke="#e3e7ee" {}
                text x=(left - 6.0) y=(y + 4.0) text-anchor="end" { (short(v as u64)) }
            }
            @for (gi, label) in labels.iter().enumerate() {
                @let gx = left + group_w * gi as f64 + (group_w - bar_w * series.len() as f64) / 2.0;
                @for (si, (name, color, values)) in series.iter().enumerate() {
                    @let v = values.get(gi).copied().unwrap_or(0);
                    @let bh = plot_h * v as f64 / max as f64;
                    rect x=(gx + bar_w * si as f64) y=(top + plot_h - bh) width=(bar_w - 2.0) height=(bh) fill=(color) rx="2" {
                        title { (name) " " (label) ": " (v) }
                    }
                }
                text x=(left + group_w * gi as f64 + group_w / 2.0) y=(h - 10.0) text-anchor="middle" { (label) }
            }
        }
        div.legend {
            @for (name, color, _) in series { span { i class=(legend_class(color)) {} (name) } }
        }
    }
}

/// Horizontal bars with labels, for "by category".
pub fn horizontal_bars(items: &[(String, u64)], color: &str) -> Markup {
    let max = items.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let row = 24.0;
    let (w, label_w) = (480.0, 150.0);
    let h = row * items.len().max(1) as f64 + 4.0;
    html! {
        svg.chart viewBox={ "0 0 " (w) " " (h) } role="img" aria-label="bar chart" {
            @for (i, (label, v)) in items.iter().enumerate() {
                @let y = row * i as f64 + 2.0;
                @let bw = (w - label_w - 70.0) * *v as f64 / max as f64;
                text x=(label_w - 8.0) y=(y + 15.0) text-anchor="end" { (label) }
                rect x=(label_w) y=(y + 3.0) width=(bw.max(1.0)) height=(row - 8.0) fill=(color) rx="3" {}
                text x=(label_w + bw + 6.0) y=(y + 15.0) { (crate::ui::thousands(*v)) }
            }
        }
    }
}

/// Legend swatches are classes: the CSP allows no inline styles.
fn legend_class(color: &str) -> &'static str {
    match color {
        BLOCKED => "lg-blocked",
        FLAGGED => "lg-flagged",
        _ => "lg-total",
    }
}

fn nice_ceiling(v: u64) -> u64 {
    let mut step = 1u64;
    while step.saturating_mul(10) <= v {
        step = step.saturating_mul(10);
    }
    for m in [1, 2, 5, 10] {
        if step.saturating_mul(m) >= v {
            return step.saturating_mul(m);
        }
    }
    v
}

fn short(v: u64) -> String {
    match v {
        0..1_000 => v.to_string(),
        1_000..1_000_000 => format!("{}k", v / 1_000),
        _ => format!("{:.1}M", v as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_are_round() {
        assert_eq!(nice_ceiling(1), 1);
        assert_eq!(nice_ceiling(7), 10);
        assert_eq!(nice_ceiling(13), 20);
        assert_eq!(nice_ceiling(480), 500);
        assert_eq!(nice_ceiling(5_001), 10_000);
    }
}
