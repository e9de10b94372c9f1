//! A scenario's results as a matrix for the terminal, CSV and SVG.

use super::*;

/// The matrix of modes by metrics (the terminal report).
pub fn matrix(s: &Scenario, results: &[ModeResult]) -> String {
    let mut out = format!("scenario {}", s.name);
    if !s.description.is_empty() {
        let _ = write!(out, ": {}", s.description);
    }
    out.push_str("\n\n");
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let pred = |v: Option<f64>, p: usize| v.map_or("-".into(), |v| format!("{v:.p$}"));
            vec![
                r.mode.name().to_owned(),
                r.total.requests.to_string(),
                format!("{:.3}", r.total.in_zone_fraction),
                pred(r.predicted_in_zone_fraction, 3),
                format!("{:.3}", r.total.peak_to_mean),
                pred(r.predicted_peak_to_mean, 3),
                format!("{:+.0}%", r.total.overload * 100.0),
                if r.hints { "yes" } else { "no" }.into(),
                r.total.errors.to_string(),
                format!("{:.6}", r.total.cost),
            ]
        })
        .collect();
    out.push_str(&crate::table::render(
        &[
            "MODE",
            "REQUESTS",
            "IN-ZONE",
            "PREDICTED",
            "PEAK/MEAN",
            "PREDICTED",
            "OVERLOAD",
            "HINTS",
            "ERRORS",
            "COST",
        ],
        &rows,
    ));
    let checks: Vec<Vec<String>> = results
        .iter()
        .flat_map(|r| {
            r.checks.iter().map(|c| {
                vec![
                    r.mode.name().to_owned(),
                    c.metric.name().to_owned(),
                    format!("{:.3} ± {:.3}", c.expected, c.tolerance),
                    format!("{:.3}", c.measured),
                    if c.pass { "ok" } else { "FAIL" }.into(),
                ]
            })
        })
        .collect();
    if !checks.is_empty() {
        out.push('\n');
        out.push_str(&crate::table::render(
            &["MODE", "METRIC", "EXPECTED", "MEASURED", "RESULT"],
            &checks,
        ));
    }
    let failed = results
        .iter()
        .flat_map(|r| &r.checks)
        .filter(|c| !c.pass)
        .count();
    let _ = writeln!(
        out,
        "\n{} expectation(s), {failed} failed",
        results.iter().map(|r| r.checks.len()).sum::<usize>()
    );
    out
}

/// The time series as CSV: one row per mode and window.
pub fn csv(results: &[ModeResult]) -> String {
    let mut out = String::from(
        "mode,window_start,window_end,requests,errors,in_zone_fraction,peak_to_mean,overload,cross_zone_bytes\n",
    );
    for r in results {
        for w in &r.windows {
            let s = &w.summary;
            let _ = writeln!(
                out,
                "{},{:.3},{:.3},{},{},{:.4},{:.4},{:.4},{}",
                r.mode.name(),
                w.start,
                w.end,
                s.requests,
                s.errors,
                s.in_zone_fraction,
                s.peak_to_mean,
                s.overload,
                s.cross_zone_bytes
            );
        }
    }
    out
}

const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// An SVG plot: in-zone fraction (top) and peak-to-mean (bottom) over time, a line per mode.
pub fn svg(s: &Scenario, results: &[ModeResult]) -> String {
    let (w, h, pad) = (720.0, 520.0, 50.0);
    let panel = (h - 3.0 * pad) / 2.0;
    let t_max = s.traffic.duration.as_secs_f64().max(0.001);
    let pmr_max = results
        .iter()
        .flat_map(|r| r.windows.iter().map(|w| w.summary.peak_to_mean))
        .fold(2.0_f64, f64::max)
        .ceil();
    let x = |t: f64| pad + (w - 2.0 * pad) * (t / t_max);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{pad}\" y=\"20\" font-size=\"14\">{}</text>\n",
        xml(&s.name)
    );
    for (i, (title, top, max)) in [
        ("in-zone fraction", pad, 1.0),
        ("peak-to-mean", 2.0 * pad + panel, pmr_max),
    ]
    .into_iter()
    .enumerate()
    {
        let _ = writeln!(
            out,
            "<rect x=\"{pad}\" y=\"{top}\" width=\"{}\" height=\"{panel}\" fill=\"none\" stroke=\"#999\"/>\n\
             <text x=\"{pad}\" y=\"{}\">{title} (0 to {max})</text>\n\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{t_max:.0}s</text>",
            w - 2.0 * pad,
            top - 6.0,
            w - pad,
            top + panel + 14.0
        );
        for (k, r) in results.iter().enumerate() {
            let y = |v: f64| top + panel - panel * (v / max).clamp(0.0, 1.0);
            let points: Vec<String> = r
                .windows
                .iter()
                .map(|win| {
                    let v = if i == 0 {
                        win.summary.in_zone_fraction
                    } else {
                        win.summary.peak_to_mean
                    };
                    format!("{:.1},{:.1}", x((win.start + win.end) / 2.0), y(v))
                })
                .collect();
            let colour = COLOURS[k % COLOURS.len()];
            let _ = writeln!(
                out,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
                points.join(" ")
            );
        }
    }
    for (k, r) in results.iter().enumerate() {
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" fill=\"{}\">{}</text>",
            pad + 130.0 * k as f64,
            h - 12.0,
            COLOURS[k % COLOURS.len()],
            r.mode.name()
        );
    }
    out.push_str("</svg>\n");
    out
}

pub(super) fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
