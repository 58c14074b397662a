//! The summary's charts, drawn as SVG here (no browser, no JavaScript: they must
//! show in a mail client) and rasterised to PNG with `resvg` for the clients that
//! do not display SVG, which is most of them.
//!
//! The charts are simple on purpose: bars with their numbers written on them, the
//! current week picked out, holidays in grey. The tables beside them carry every
//! figure, so a chart that a client fails to show loses nothing.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use jiff::civil::Date;
use resvg::{tiny_skia, usvg};

use crate::summary::WeeklySummary;

const FONT: &str = "DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif";
pub(crate) const INK: &str = "#1f2937";
pub(crate) const MUTED: &str = "#6b7280";
const GRID: &str = "#e5e7eb";
pub(crate) const BLOCKED: &str = "#2f5d8a";
const BLOCKED_LIGHT: &str = "#a9bfd8";
pub(crate) const FLAGGED: &str = "#b45309";
const HOLIDAY: &str = "#d1d5db";

/// Chart width in CSS pixels (the email is 640 wide with padding).
pub const WIDTH: u32 = 600;
/// PNGs are drawn at twice the size, so they stay sharp on high-DPI screens.
const PNG_SCALE: f32 = 2.0;

/// One chart, as SVG and (for mail) PNG.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chart {
    /// The `Content-ID` in mail (`cid:trend`) and the element id on the page.
    pub cid: &'static str,
    /// Alternative text: what the chart shows, in words.
    pub alt: String,
    pub width: u32,
    pub height: u32,
    pub svg: String,
}

/// Why a chart could not be rasterised.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ChartError(String);

impl Chart {
    /// The chart as PNG at twice its size.
    pub fn png(&self) -> Result<Vec<u8>, ChartError> {
        let options = usvg::Options {
            fontdb: fonts(),
            ..usvg::Options::default()
        };
        let tree = usvg::Tree::from_str(&self.svg, &options)
            .map_err(|e| ChartError(format!("{}: {e}", self.cid)))?;
        let w = (self.width as f32 * PNG_SCALE).round() as u32;
        let h = (self.height as f32 * PNG_SCALE).round() as u32;
        let mut pixmap = tiny_skia::Pixmap::new(w, h)
            .ok_or_else(|| ChartError(format!("{}: empty chart {w}x{h}", self.cid)))?;
        pixmap.fill(tiny_skia::Color::WHITE);
        resvg::render(
            &tree,
            tiny_skia::Transform::from_scale(PNG_SCALE, PNG_SCALE),
            &mut pixmap.as_mut(),
        );
        pixmap
            .encode_png()
            .map_err(|e| ChartError(format!("{}: {e}", self.cid)))
    }
}

/// The system's fonts, loaded once (a few milliseconds; the charts need a sans
/// face for their labels, and a server without fonts still draws the bars).
fn fonts() -> Arc<usvg::fontdb::Database> {
    static FONTS: OnceLock<Arc<usvg::fontdb::Database>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            let mut db = usvg::fontdb::Database::new();
            db.load_system_fonts();
            for family in ["DejaVu Sans", "Liberation Sans", "Arial"] {
                if db
                    .faces()
                    .any(|f| f.families.iter().any(|(n, _)| n == family))
                {
                    db.set_sans_serif_family(family);
                    break;
                }
            }
            Arc::new(db)
        })
        .clone()
}

/// The charts of a summary, in the order the email shows them.
pub fn charts(s: &WeeklySummary) -> Vec<Chart> {
    let mut out = vec![trend(s), daily(s)];
    if !s.categories.is_empty() {
        out.push(categories(s));
    }
    out
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// A round axis maximum at or above `v`: 1, 2 or 5 times a power of ten.
fn nice_max(v: u64) -> u64 {
    let v = v.max(1);
    let mut p = 1u64;
    while p.saturating_mul(10) <= v {
        p = p.saturating_mul(10);
    }
    for m in [1u64, 2, 5, 10] {
        if p.saturating_mul(m) >= v {
            return p.saturating_mul(m);
        }
    }
    p.saturating_mul(10)
}

/// `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn open(w: u32, h: u32, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" font-family=\"{FONT}\" role=\"img\" aria-label=\"{}\">\
         <rect width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>",
        esc(title)
    )
}

fn short_date(d: Date) -> String {
    d.strftime("%-d %b").to_string()
}

/// Blocked requests in this week and the four before, with flags beneath.
fn trend(s: &WeeklySummary) -> Chart {
    let (w, h) = (WIDTH, 230u32);
    let top = 28.0;
    let base = 160.0;
    let max = nice_max(s.trend.iter().map(|p| p.blocked).max().unwrap_or(0));
    let mut svg = open(w, h, "Blocked requests by week");
    let _ = write!(
        svg,
        "<text x=\"0\" y=\"16\" font-size=\"13\" font-weight=\"bold\" fill=\"{INK}\">Blocked requests, this week and the four before</text>"
    );
    grid(&mut svg, w, top, base, max);
    let n = s.trend.len().max(1) as f64;
    let slot = (w as f64 - 50.0) / n;
    let last = s.trend.len().saturating_sub(1);
    for (i, p) in s.trend.iter().enumerate() {
        let x = 50.0 + slot * i as f64 + slot * 0.2;
        let bw = slot * 0.6;
        let bh = (base - top) * p.blocked as f64 / max as f64;
        let fill = if p.school_days == 0 {
            HOLIDAY
        } else if i == last {
            BLOCKED
        } else {
            BLOCKED_LIGHT
        };
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{bh:.1}\" rx=\"3\" fill=\"{fill}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\" fill=\"{INK}\"{}>{}</text>",
            base - bh,
            x + bw / 2.0,
            base - bh - 5.0,
            if i == last {
                " font-weight=\"bold\""
            } else {
                ""
            },
            thousands(p.blocked)
        );
        let label = if i == last {
            "This week".to_owned()
        } else {
            format!("w/c {}", short_date(p.week.monday()))
        };
        let _ = write!(
            svg,
            "<text x=\"{cx:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"{INK}\">{}</text>\
             <text x=\"{cx:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"{FLAGGED}\">{} flagged</text>",
            base + 16.0,
            esc(&label),
            base + 31.0,
            thousands(p.flagged),
            cx = x + bw / 2.0,
        );
        if p.school_days == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\" fill=\"{MUTED}\">holiday</text>",
                x + bw / 2.0,
                base + 45.0
            );
        }
    }
    svg.push_str("</svg>");
    let alt = s
        .trend
        .iter()
        .map(|p| format!("{}: {} blocked", p.week, thousands(p.blocked)))
        .collect::<Vec<_>>()
        .join("; ");
    Chart {
        cid: "trend",
        alt: format!("Blocked requests by week: {alt}"),
        width: w,
        height: h,
        svg,
    }
}

/// Blocked requests on each day of the week; days without school in grey.
fn daily(s: &WeeklySummary) -> Chart {
    let (w, h) = (WIDTH, 200u32);
    let top = 28.0;
    let base = 160.0;
    let max = nice_max(s.days.iter().map(|d| d.blocked).max().unwrap_or(0));
    let mut svg = open(w, h, "Blocked requests by day");
    let _ = write!(
        svg,
        "<text x=\"0\" y=\"16\" font-size=\"13\" font-weight=\"bold\" fill=\"{INK}\">Blocked requests by day</text>"
    );
    grid(&mut svg, w, top, base, max);
    let slot = (w as f64 - 50.0) / 7.0;
    for (i, d) in s.days.iter().enumerate() {
        let x = 50.0 + slot * i as f64 + slot * 0.2;
        let bw = slot * 0.6;
        let bh = (base - top) * d.blocked as f64 / max as f64;
        let fill = if d.school_day { BLOCKED } else { HOLIDAY };
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{bh:.1}\" rx=\"3\" fill=\"{fill}\"/>\
             <text x=\"{cx:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"{INK}\">{}</text>\
             <text x=\"{cx:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"{}\">{}</text>",
            base - bh,
            base - bh - 5.0,
            thousands(d.blocked),
            base + 16.0,
            if d.school_day { INK } else { MUTED },
            esc(&d.date.strftime("%a %-d").to_string()),
            cx = x + bw / 2.0,
        );
        if !d.school_day {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\" fill=\"{MUTED}\">no school</text>",
                x + bw / 2.0,
                base + 30.0
            );
        }
    }
    svg.push_str("</svg>");
    let alt = s
        .days
        .iter()
        .map(|d| format!("{} {}", d.date.strftime("%a"), thousands(d.blocked)))
        .collect::<Vec<_>>()
        .join(", ");
    Chart {
        cid: "daily",
        alt: format!("Blocked requests by day: {alt}"),
        width: w,
        height: h,
        svg,
    }
}

/// The categories with the most blocked requests, flags written beside.
fn categories(s: &WeeklySummary) -> Chart {
    // Bars by what they measure (blocked), so they read as a ranking.
    let mut rows: Vec<_> = s.categories.iter().collect();
    rows.sort_by(|a, b| b.blocked.cmp(&a.blocked).then(b.flagged.cmp(&a.flagged)));
    rows.truncate(8);
    let row_h = 26.0;
    let top = 30.0;
    let h = (top + row_h * rows.len() as f64 + 8.0).round() as u32;
    let w = WIDTH;
    let label_w = 236.0;
    let bar_max = w as f64 - label_w - 120.0;
    let max = rows.iter().map(|c| c.blocked).max().unwrap_or(0).max(1);
    let mut svg = open(w, h, "Blocked and flagged by category");
    let _ = write!(
        svg,
        "<text x=\"0\" y=\"16\" font-size=\"13\" font-weight=\"bold\" fill=\"{INK}\">Blocked and flagged by category</text>"
    );
    for (i, c) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let bw =
            (bar_max * c.blocked as f64 / max as f64).max(if c.blocked > 0 { 2.0 } else { 0.0 });
        let mut label = c.category.label().to_owned();
        if label.chars().count() > 34 {
            label = label.chars().take(33).collect::<String>() + "…";
        }
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"end\" fill=\"{INK}\">{}</text>\
             <rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"16\" rx=\"3\" fill=\"{BLOCKED}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" fill=\"{INK}\">{}</text>",
            label_w - 8.0,
            y + 12.5,
            esc(&label),
            label_w,
            y,
            label_w + bw + 6.0,
            y + 12.5,
            thousands(c.blocked),
        );
        if c.flagged > 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"{FLAGGED}\">{} flagged</text>",
                label_w + bw + 12.0 + 8.0 * thousands(c.blocked).len() as f64,
                y + 12.5,
                thousands(c.flagged)
            );
        }
    }
    svg.push_str("</svg>");
    let alt = rows
        .iter()
        .map(|c| format!("{} {}", c.category.label(), thousands(c.blocked)))
        .collect::<Vec<_>>()
        .join(", ");
    Chart {
        cid: "categories",
        alt: format!("Blocked by category: {alt}"),
        width: w,
        height: h,
        svg,
    }
}

/// Horizontal grid lines at 0, half and the maximum, labelled on the left.
fn grid(svg: &mut String, w: u32, top: f64, base: f64, max: u64) {
    for (frac, v) in [(0.0, 0), (0.5, max / 2), (1.0, max)] {
        let y = base - (base - top) * frac;
        let _ = write!(
            svg,
            "<line x1=\"44\" y1=\"{y:.1}\" x2=\"{w}\" y2=\"{y:.1}\" stroke=\"{GRID}\" stroke-width=\"1\"/>\
             <text x=\"38\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\" fill=\"{MUTED}\">{}</text>",
            y + 3.5,
            thousands(v)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_max(0), 1);
        assert_eq!(nice_max(7), 10);
        assert_eq!(nice_max(312), 500);
        assert_eq!(nice_max(1_800), 2_000);
        assert_eq!(nice_max(100), 100);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }
}
