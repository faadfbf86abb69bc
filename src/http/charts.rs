//! Inline SVG charts drawn on the server: a line over time, with an
//! optional band (mean ± std) and a dashed level (the alert threshold).
//! No chart service, no JavaScript; every text that comes from data is
//! escaped here, since the markup goes into the page as it is.

use std::fmt::Write as _;

/// Sizes in the viewBox: large charts, and small ones shown several to a row
/// (smaller box, so the same text size reads the same on the page).
const LARGE: (f64, f64) = (640.0, 170.0);
const SMALL: (f64, f64) = (380.0, 150.0);
const LEFT: f64 = 56.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 22.0;

/// One chart: points in time order.
#[derive(Debug, Default)]
pub struct Chart<'a> {
    /// Accessible name of the chart.
    pub title: &'a str,
    /// Epoch milliseconds of each point.
    pub times: Vec<i64>,
    /// The line; `None` leaves a gap.
    pub values: Vec<Option<f64>>,
    /// (low, high) around each point, drawn as a shaded band.
    pub band: Option<Vec<Option<(f64, f64)>>>,
    /// A fixed y range (the probability's 0..1); otherwise from the data.
    pub y_range: Option<(f64, f64)>,
    /// A dashed horizontal line and its label.
    pub level: Option<(f64, &'a str)>,
    /// Drawn small (several to a row).
    pub small: bool,
}

/// Escapes text for XML content and attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Short label for a y value on an axis spanning `span`: enough decimals
/// to tell the three ticks apart.
fn num(v: f64, span: f64) -> String {
    let a = v.abs();
    if a >= 1e6 || (a != 0.0 && a < 1e-4 && span < 1e-4) {
        return format!("{v:.2e}");
    }
    let step = (span / 2.0).abs().max(f64::MIN_POSITIVE);
    let decimals = (-step.log10()).ceil().clamp(0.0, 8.0) as usize;
    format!("{v:.decimals$}")
}

/// `HH:MM` (UTC) of epoch milliseconds.
fn clock(ms: i64) -> String {
    let t = crate::time::format_rfc3339(ms);
    t.get(11..16).unwrap_or("").to_owned()
}

impl Chart<'_> {
    /// The chart as an `<svg>` element.
    pub fn svg(&self) -> String {
        let (w, h) = if self.small { SMALL } else { LARGE };
        let n = self.times.len().min(self.values.len());
        let mut out = String::new();
        let _ = write!(out, r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{}">"#, esc(self.title));
        let _ = write!(out, "<title>{}</title>", esc(self.title));
        let (x0, x1) = (LEFT, w - RIGHT);
        let (y0, y1) = (h - BOTTOM, TOP);
        let _ = write!(out, r#"<rect x="{x0}" y="{y1}" width="{}" height="{}" class="frame"/>"#, x1 - x0, y0 - y1);
        let finite: Vec<f64> = self.values[..n]
            .iter()
            .flatten()
            .copied()
            .chain(self.band.iter().flatten().flatten().flat_map(|(lo, hi)| [*lo, *hi]))
            .chain(self.level.map(|(v, _)| v))
            .filter(|v| v.is_finite())
            .collect();
        if n == 0 || finite.is_empty() {
            let _ =
                write!(out, r#"<text x="{}" y="{}" class="empty">no data yet</text></svg>"#, w / 2.0 - 30.0, h / 2.0);
            return out;
        }
        let (mut lo, mut hi) = self.y_range.unwrap_or_else(|| {
            let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let pad = ((hi - lo) * 0.08).max(hi.abs().max(1e-9) * 1e-6);
            (lo - pad, hi + pad)
        });
        if hi <= lo {
            (lo, hi) = (lo - 1.0, hi + 1.0);
        }
        let (t0, t1) = (self.times[0], self.times[n - 1]);
        let span = (t1 - t0).max(1) as f64;
        let x = |t: i64| if n == 1 { (x0 + x1) / 2.0 } else { x0 + (t - t0) as f64 / span * (x1 - x0) };
        let y = |v: f64| y0 - (v.clamp(lo, hi) - lo) / (hi - lo) * (y0 - y1);

        for v in [lo, (lo + hi) / 2.0, hi] {
            let _ = write!(
                out,
                r#"<line x1="{x0}" x2="{x1}" y1="{py:.1}" y2="{py:.1}" class="grid"/><text x="{tx}" y="{ty:.1}" class="tick" text-anchor="end">{}</text>"#,
                num(v, hi - lo),
                py = y(v),
                tx = x0 - 4.0,
                ty = y(v) + 4.0
            );
        }
        let _ = write!(
            out,
            r#"<text x="{x0}" y="{ty}" class="tick">{}</text><text x="{x1}" y="{ty}" class="tick" text-anchor="end">{} UTC</text>"#,
            clock(t0),
            clock(t1),
            ty = h - 6.0
        );
        if let Some(band) = &self.band {
            // One polygon per run of points that have a band.
            for run in runs(n, |i| band.get(i).copied().flatten()) {
                let mut pts = String::new();
                for &(i, (l, _)) in &run {
                    let _ = write!(pts, "{:.1},{:.1} ", x(self.times[i]), y(l));
                }
                for &(i, (_, h)) in run.iter().rev() {
                    let _ = write!(pts, "{:.1},{:.1} ", x(self.times[i]), y(h));
                }
                let _ = write!(out, r#"<polygon points="{}" class="band"/>"#, pts.trim_end());
            }
        }
        if let Some((v, label)) = self.level {
            let _ = write!(
                out,
                r#"<line x1="{x0}" x2="{x1}" y1="{py:.1}" y2="{py:.1}" class="level"/><text x="{tx}" y="{ty:.1}" class="tick level-label" text-anchor="end">{}</text>"#,
                esc(label),
                py = y(v),
                tx = x1 - 2.0,
                ty = y(v) - 3.0
            );
        }
        for run in runs(n, |i| self.values[i].filter(|v| v.is_finite())) {
            if let [(i, v)] = run[..] {
                let _ = write!(out, r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" class="dot"/>"#, x(self.times[i]), y(v));
                continue;
            }
            let pts: Vec<String> = run.iter().map(|&(i, v)| format!("{:.1},{:.1}", x(self.times[i]), y(v))).collect();
            let _ = write!(out, r#"<polyline points="{}" class="line"/>"#, pts.join(" "));
        }
        out.push_str("</svg>");
        out
    }
}

/// Runs of consecutive indices where `f` gives a value.
fn runs<T>(n: usize, f: impl Fn(usize) -> Option<T>) -> Vec<Vec<(usize, T)>> {
    let mut out: Vec<Vec<(usize, T)>> = Vec::new();
    let mut cur = Vec::new();
    for i in 0..n {
        match f(i) {
            Some(v) => cur.push((i, v)),
            None if !cur.is_empty() => out.push(std::mem::take(&mut cur)),
            None => {}
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_lines_with_gaps_bands_and_a_level() {
        let c = Chart {
            title: "<script>alert(1)</script> & more",
            times: vec![0, 60_000, 120_000, 180_000, 240_000],
            values: vec![Some(0.1), Some(0.2), None, Some(0.9), Some(f64::NAN)],
            band: Some(vec![Some((0.0, 0.2)), Some((0.1, 0.3)), None, Some((0.8, 1.0)), None]),
            y_range: Some((0.0, 1.0)),
            level: Some((0.7, "threshold 0.7")),
            small: false,
        };
        let svg = c.svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(!svg.contains("<script>"), "titles are escaped: {svg}");
        assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"));
        assert_eq!(svg.matches("<polyline").count(), 1, "0.1→0.2 is a line; the gap splits off 0.9");
        assert_eq!(svg.matches("<circle").count(), 1, "the lone 0.9 is a dot; NaN is not drawn");
        assert_eq!(svg.matches("<polygon").count(), 2);
        assert!(svg.contains("class=\"level\"") && svg.contains("threshold 0.7"));
        // 0.7 of 0..1 sits 70 % up the plot area.
        let want = (LARGE.1 - BOTTOM) - 0.7 * (LARGE.1 - BOTTOM - TOP);
        assert!(svg.contains(&format!("y1=\"{want:.1}\"")), "{svg}");
        assert!(svg.contains("00:00") && svg.contains("00:04 UTC"));
        assert!(svg.contains(">0.0<") && svg.contains(">0.5<") && svg.contains(">1.0<"), "{svg}");
    }

    #[test]
    fn empty_or_flat_data_still_draws() {
        let svg = Chart { title: "none", ..Chart::default() }.svg();
        assert!(svg.contains("no data yet"));
        let flat = Chart { title: "flat", times: vec![5, 6], values: vec![Some(3.0), Some(3.0)], ..Chart::default() };
        let svg = flat.svg();
        assert!(svg.contains("<polyline") && !svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        let narrow =
            Chart { title: "n", times: vec![1, 2], values: vec![Some(0.0301), Some(0.0309)], ..Chart::default() };
        let svg = narrow.svg();
        let ticks: Vec<&str> = svg
            .split("class=\"tick\" text-anchor=\"end\">")
            .skip(1)
            .map(|t| &t[..t.find('<').unwrap()])
            .take(3)
            .collect();
        assert!(ticks[0] != ticks[1] && ticks[1] != ticks[2], "ticks tell values apart: {ticks:?}");
        let one = Chart { title: "one", times: vec![5], values: vec![Some(1e-7)], ..Chart::default() };
        assert!(one.svg().contains("<circle"));
    }
}
