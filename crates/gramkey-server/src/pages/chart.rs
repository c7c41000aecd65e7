//! The usage chart, drawn on the server as inline SVG: no script, no remote asset, styled by
//! the site's stylesheet. Each bar carries its hour and count (`data-hour`, `data-calls`, and
//! a `<title>` tooltip), and a table of the same numbers follows for screen readers and for
//! anyone who wants the figures. SVG elements are always closed (`{}`): in HTML, a foreign
//! element written `<line>` without a closing tag would swallow what follows.

use gramkey_domain::chart::HourlyChart;
use maud::{Markup, html};

const W: f64 = 720.0;
const H: f64 = 240.0;
/// Room for the y labels on the left and the hour labels below.
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 22.0;

fn hour_label(hour: i64) -> String {
    format!("{:02}:00", hour.rem_euclid(86_400) / 3600)
}

/// The chart of calls per hour, with the ceiling drawn as a dashed line when there is one.
pub fn usage(chart: &HourlyChart, ceiling_shown: bool) -> Markup {
    let plot_w = W - LEFT - 8.0;
    let plot_h = H - TOP - BOTTOM;
    let slot = plot_w / chart.bars.len().max(1) as f64;
    let y = |v: u64| TOP + plot_h - chart.scale(v, plot_h);
    let summary = format!(
        "{} calls in the last 24 hours; the most in one hour was {}{}.",
        chart.total(),
        chart.bars.iter().map(|b| b.calls).max().unwrap_or(0),
        if ceiling_shown {
            format!("; the limit is {} calls per hour", chart.ceiling)
        } else {
            String::new()
        }
    );
    html! {
        figure class="chart" {
            svg viewBox=(format!("0 0 {W} {H}")) role="img" aria-labelledby="chart-title chart-desc" id="usage-chart" data-ceiling=(chart.ceiling) {
                title id="chart-title" { "Calls per hour, last 24 hours" }
                desc id="chart-desc" { (summary) }
                @for t in &chart.ticks {
                    line class="grid" x1=(LEFT) x2=(W - 8.0) y1=(y(*t)) y2=(y(*t)) {}
                    text class="axis" x=(LEFT - 6.0) y=(y(*t) + 4.0) text-anchor="end" { (t) }
                }
                @for (i, bar) in chart.bars.iter().enumerate() {
                    @let x = LEFT + slot * i as f64;
                    @let top = y(bar.calls);
                    rect class="bar" x=(format!("{:.1}", x + slot * 0.15)) y=(format!("{top:.1}")) width=(format!("{:.1}", slot * 0.7)) height=(format!("{:.1}", TOP + plot_h - top)) data-hour=(bar.hour) data-calls=(bar.calls) {
                        title { (hour_label(bar.hour)) " UTC: " (bar.calls) " calls" }
                    }
                    @if i % 3 == 0 {
                        text class="axis" x=(format!("{:.1}", x + slot / 2.0)) y=(H - 6.0) text-anchor="middle" { (hour_label(bar.hour)) }
                    }
                }
                @if ceiling_shown {
                    line class="ceiling" x1=(LEFT) x2=(W - 8.0) y1=(y(chart.ceiling)) y2=(y(chart.ceiling)) {}
                    text class="ceiling-label" x=(W - 10.0) y=(y(chart.ceiling) - 4.0) text-anchor="end" { "limit " (chart.ceiling) "/h" }
                }
            }
            figcaption { (summary) }
        }
        details {
            summary { "The numbers" }
            div class="scroll" tabindex="0" role="region" aria-label="Calls per hour" {
                table id="usage-table" {
                    thead { tr { th scope="col" { "Hour (UTC)" } th scope="col" { "Calls" } } }
                    tbody {
                        @for bar in &chart.bars {
                            tr { td { (super::when(bar.hour)) } td { (bar.calls) } }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_svg_element_is_closed() {
        let c = gramkey_domain::chart::last_24_hours(36_000, &[(36_000, 5)], 200);
        let svg = super::usage(&c, true).into_string();
        for tag in ["line", "rect", "text", "title", "desc"] {
            assert_eq!(
                svg.matches(&format!("<{tag} ")).count() + svg.matches(&format!("<{tag}>")).count(),
                svg.matches(&format!("</{tag}>")).count(),
                "<{tag}> opened and closed alike"
            );
        }
        assert_eq!(svg.matches("class=\"bar\"").count(), 24);
    }
}
