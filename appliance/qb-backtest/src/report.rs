//! The HTML report of a run: one self-contained file (inline SVG charts
//! and CSS, no scripts, nothing fetched), so it can be downloaded, mailed
//! and opened offline.

use std::fmt::Write as _;

use crate::analytics::{Metrics, RoundTrip};
use crate::ledger::Fill;

/// What a report shows.
pub struct ReportInput<'a> {
    pub title: &'a str,
    /// Plugin, parameters, symbols, range: label and value.
    pub settings: &'a [(String, String)],
    pub metrics: &'a Metrics,
    pub equity: &'a [(i64, f64)],
    pub fills: &'a [Fill],
    pub trips: &'a [RoundTrip],
    pub result_hash: &'a str,
}

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn time(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

/// At most `max` points of a series, keeping each bucket's extremes so
/// spikes and drawdown troughs stay visible.
fn thin(points: &[(i64, f64)], max: usize) -> Vec<(i64, f64)> {
    if points.len() <= max {
        return points.to_vec();
    }
    let per = points.len().div_ceil(max / 2);
    let mut out = Vec::with_capacity(max + 2);
    for chunk in points.chunks(per) {
        let lo = chunk.iter().min_by(|a, b| a.1.total_cmp(&b.1)).copied();
        let hi = chunk.iter().max_by(|a, b| a.1.total_cmp(&b.1)).copied();
        let (Some(lo), Some(hi)) = (lo, hi) else {
            continue;
        };
        if lo.0 <= hi.0 {
            out.extend([lo, hi]);
        } else {
            out.extend([hi, lo]);
        }
    }
    out
}

/// An SVG line chart of `points`.
fn chart(points: &[(i64, f64)], color: &str, label: &str) -> String {
    let (w, h, pad) = (900.0, 220.0, 40.0);
    let pts = thin(points, 1200);
    if pts.len() < 2 {
        return format!("<p>{}: not enough points to draw</p>", esc(label));
    }
    let (t0, t1) = (pts[0].0 as f64, pts[pts.len() - 1].0 as f64);
    let lo = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let x = |t: i64| pad + (t as f64 - t0) / (t1 - t0).max(1.0) * (w - 2.0 * pad);
    let y = |v: f64| h - pad - (v - lo) / span * (h - 2.0 * pad);
    let mut d = String::new();
    for (i, &(t, v)) in pts.iter().enumerate() {
        let _ = write!(
            d,
            "{}{:.1},{:.1}",
            if i == 0 { "M" } else { " L" },
            x(t),
            y(v)
        );
    }
    format!(
        r#"<figure><figcaption>{label}</figcaption><svg viewBox="0 0 {w} {h}" role="img" aria-label="{label}">
<line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" class="axis"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{b}" class="axis"/>
<text x="{tx}" y="{ty_hi}">{hi:.2}</text><text x="{tx}" y="{ty_lo}">{lo:.2}</text>
<text x="{pad}" y="{tb}">{start}</text><text x="{r}" y="{tb}" text-anchor="end">{end}</text>
<path d="{d}" fill="none" stroke="{color}" stroke-width="1.2"/></svg></figure>"#,
        label = esc(label),
        b = h - pad,
        r = w - pad,
        tx = 2.0,
        ty_hi = pad + 4.0,
        ty_lo = h - pad,
        tb = h - pad + 16.0,
        start = time(pts[0].0),
        end = time(pts[pts.len() - 1].0),
    )
}

/// The report as one HTML document.
pub fn html(r: &ReportInput<'_>) -> String {
    let m = r.metrics;
    let mut peak = f64::NEG_INFINITY;
    let drawdown: Vec<(i64, f64)> = r
        .equity
        .iter()
        .map(|&(t, e)| {
            peak = peak.max(e);
            (
                t,
                if peak > 0.0 {
                    (e / peak - 1.0) * 100.0
                } else {
                    0.0
                },
            )
        })
        .collect();
    let pct = |v: f64| format!("{:.2}%", v * 100.0);
    let rows: Vec<(&str, String)> = vec![
        ("Total return", pct(m.total_return)),
        ("CAGR", pct(m.cagr)),
        ("Volatility (annualized)", pct(m.volatility)),
        ("Sharpe", format!("{:.3}", m.sharpe)),
        ("Sortino", format!("{:.3}", m.sortino)),
        ("Max drawdown", pct(m.max_drawdown)),
        (
            "Max drawdown duration",
            format!("{:.1} days", m.max_drawdown_duration / 86_400.0),
        ),
        ("Calmar", format!("{:.3}", m.calmar)),
        ("Round trips", m.round_trips.to_string()),
        ("Win rate", pct(m.win_rate)),
        ("Profit factor", format!("{:.3}", m.profit_factor)),
        (
            "Average win / loss",
            format!("{:.2} / {:.2}", m.avg_win, m.avg_loss),
        ),
        ("Exposure", pct(m.exposure)),
        ("Turnover", format!("{:.2}x", m.turnover)),
        ("Fees", format!("{:.2}", m.total_fees)),
    ];
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{background:#f4f4f4}}td:first-child,th:first-child{{text-align:left}}
svg{{width:100%;max-width:900px;height:auto}}svg text{{font-size:11px;fill:#555}}.axis{{stroke:#999}}code{{font-size:12px}}</style></head><body>
<h1>{title}</h1><table>"#,
        title = esc(r.title)
    );
    for (k, v) in r.settings {
        let _ = write!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    }
    let _ = write!(
        out,
        "<tr><th>Result hash</th><td><code>{}</code></td></tr></table><h2>Metrics</h2><table>",
        esc(r.result_hash)
    );
    for (k, v) in rows {
        let _ = write!(out, "<tr><th>{k}</th><td>{}</td></tr>", esc(&v));
    }
    out.push_str("</table>");
    out.push_str(&chart(r.equity, "#1f6feb", "Equity"));
    out.push_str(&chart(&drawdown, "#d1242f", "Drawdown (%)"));
    out.push_str("<h2>Round trips</h2><table><tr><th>Symbol</th><th>Side</th><th>Entry</th><th>Exit</th><th>PnL</th></tr>");
    for t in r.trips {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&t.symbol),
            if t.direction > 0 { "long" } else { "short" },
            time(t.entry_ts),
            time(t.exit_ts),
            t.pnl
        );
    }
    out.push_str("</table><h2>Fills</h2><table><tr><th>Time</th><th>Symbol</th><th>Side</th><th>Qty</th><th>Price</th><th>Commission</th></tr>");
    for f in r.fills {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            time(f.ts),
            esc(&f.symbol),
            if f.qty.is_sign_positive() {
                "buy"
            } else {
                "sell"
            },
            f.qty.abs(),
            f.price,
            f.commission
        );
    }
    out.push_str("</table></body></html>\n");
    out
}
