//! Bar charts as inline SVG, drawn here (no script, no fetch): every label escaped.

use std::fmt::Write;

use super::html::escape;
use crate::report::summary::{BUCKETS, Summary, bucket_label};

const PALETTE: &[&str] = &[
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f",
];

/// The colour of the `i`th model.
pub fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// One bar: its label, its length (any unit) and the text shown beside it.
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub shown: String,
}

/// A horizontal bar chart, a bar per item, scaled to `full` (or to the largest value).
pub fn horizontal(id: &str, title: &str, bars: &[Bar], full: Option<f64>) -> String {
    let (label_w, bar_w, row_h, top) = (200.0, 360.0, 26.0, 30.0);
    let height = top + row_h * bars.len() as f64 + 10.0;
    let max = full.unwrap_or_else(|| bars.iter().map(|b| b.value).fold(0.0, f64::max));
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg id="{id}" xmlns="http://www.w3.org/2000/svg" role="img" width="{w}" height="{height}" viewBox="0 0 {w} {height}"><title>{t}</title><text x="0" y="18" class="title">{t}</text>"#,
        w = label_w + bar_w + 140.0,
        t = escape(title),
    );
    for (i, bar) in bars.iter().enumerate() {
        let y = top + row_h * i as f64;
        let len = if max > 0.0 {
            (bar.value / max * bar_w).max(1.0)
        } else {
            1.0
        };
        let _ = write!(
            svg,
            r#"<text x="{lx}" y="{ty}" text-anchor="end">{label}</text><rect x="{label_w}" y="{y}" width="{len:.1}" height="{h}" fill="{fill}"><title>{label}: {shown}</title></rect><text x="{vx:.1}" y="{ty}">{shown}</text>"#,
            lx = label_w - 8.0,
            ty = y + 15.0,
            label = escape(&bar.label),
            h = row_h - 8.0,
            fill = colour(i),
            vx = label_w + len + 6.0,
            shown = escape(&bar.shown),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Answers by total tokens per answer: a group of bars per bucket, a bar per model.
pub fn token_distribution(summary: &Summary) -> String {
    let used: Vec<usize> = (0..BUCKETS)
        .filter(|b| summary.models.iter().any(|m| m.histogram[*b] > 0))
        .collect();
    let (first, last) = match (used.first(), used.last()) {
        (Some(f), Some(l)) => (*f, *l),
        _ => (0, 0),
    };
    let buckets: Vec<usize> = (first..=last).collect();
    let models = summary.models.len().max(1);
    let (left, top, plot_h, bar_w, gap) = (60.0, 40.0, 200.0, 14.0, 12.0);
    let group_w = bar_w * models as f64 + gap;
    let width = (left + group_w * buckets.len() as f64 + 20.0).max(360.0);
    let legend_h = 20.0 * summary.models.len() as f64;
    let height = top + plot_h + 50.0 + legend_h;
    let max = summary
        .models
        .iter()
        .flat_map(|m| buckets.iter().map(|b| m.histogram[*b]))
        .max()
        .unwrap_or(0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg id="chart-tokens" xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}"><title>Answers by total tokens</title><text x="0" y="18" class="title">Answers by total tokens (per answer)</text><text x="{left}" y="{axis_y}" text-anchor="end" dx="-6">{max}</text><line x1="{left}" y1="{top}" x2="{left}" y2="{base}" stroke="#888"/><line x1="{left}" y1="{base}" x2="{right}" y2="{base}" stroke="#888"/>"##,
        axis_y = top + 10.0,
        base = top + plot_h,
        right = width - 10.0,
    );
    for (g, bucket) in buckets.iter().enumerate() {
        let x0 = left + gap / 2.0 + group_w * g as f64;
        for (i, model) in summary.models.iter().enumerate() {
            let count = model.histogram[*bucket];
            let h = if max > 0 {
                count as f64 / max as f64 * plot_h
            } else {
                0.0
            };
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bar_w}" height="{h:.1}" fill="{fill}"><title>{model}, {label} tokens: {count}</title></rect>"#,
                x = x0 + bar_w * i as f64,
                y = top + plot_h - h,
                fill = colour(i),
                model = escape(&model.model),
                label = bucket_label(*bucket),
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{x:.1}" y="{y}" text-anchor="middle" class="small">{label}</text>"#,
            x = x0 + bar_w * models as f64 / 2.0,
            y = top + plot_h + 16.0,
            label = bucket_label(*bucket),
        );
    }
    for (i, model) in summary.models.iter().enumerate() {
        let y = top + plot_h + 36.0 + 20.0 * i as f64;
        let _ = write!(
            svg,
            r#"<rect x="{left}" y="{y}" width="12" height="12" fill="{fill}"/><text x="{tx}" y="{ty}">{model}</text>"#,
            fill = colour(i),
            tx = left + 18.0,
            ty = y + 11.0,
            model = escape(&model.model),
        );
    }
    svg.push_str("</svg>");
    svg
}
