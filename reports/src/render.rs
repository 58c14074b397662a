//! The weekly summary as people read it: an HTML email (inline styles and tables,
//! which is what mail clients render reliably), the same page for the dashboard
//! with the charts as inline SVG, and a plain-text version.
//!
//! Every figure in a chart is also in a table or a sentence, so the summary reads
//! the same in a client that blocks images and in the plain-text part.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use schoolgate_classifier::Severity;

use crate::chart::{self, BLOCKED, Chart, FLAGGED, INK, MUTED, thousands};
use crate::summary::{BypassKind, Scope, WeeklySummary};

const BG: &str = "#f3f4f6";
const CARD: &str = "#ffffff";
const LINE: &str = "#e5e7eb";
const ACCENT: &str = "#1e3a5f";
const OK: &str = "#166534";
const WARN: &str = "#b45309";

/// A summary ready to send: subject, the two bodies and the charts the HTML
/// refers to by `cid:`.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub subject: String,
    /// Refers to the charts as `cid:<Chart::cid>`.
    pub html: String,
    pub text: String,
    pub charts: Vec<Chart>,
}

/// The email: HTML with `cid:` charts, plain text, and the charts.
pub fn render_email(s: &WeeklySummary) -> Rendered {
    let charts = chart::charts(s);
    Rendered {
        subject: subject(s),
        html: document(s, &charts, ChartMode::Cid),
        text: render_text(s),
        charts,
    }
}

/// The same summary as a stand-alone page with the charts inline
/// (`schoolgate report weekly --out FILE.html`).
pub fn render_page(s: &WeeklySummary) -> String {
    document(s, &chart::charts(s), ChartMode::Inline)
}

/// The page's content without the document around it, for the dashboard to
/// place inside its own page. It carries its styles in `style` attributes.
pub fn render_fragment(s: &WeeklySummary) -> Markup {
    sheet(s, &chart::charts(s), ChartMode::Inline)
}

/// `Weekly filtering summary: Hillside Academy, 16-22 Nov 2026 (2026-W47)`.
pub fn subject(s: &WeeklySummary) -> String {
    let holiday = if s.term.holiday { ", holiday week" } else { "" };
    format!(
        "Weekly filtering summary: {}, {} ({}{holiday})",
        s.title,
        week_span(s),
        s.week
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ChartMode {
    Cid,
    Inline,
}

fn tz(s: &WeeklySummary) -> TimeZone {
    TimeZone::get(&s.timezone).unwrap_or(TimeZone::UTC)
}

fn local(s: &WeeklySummary, t: Timestamp, fmt: &str) -> String {
    t.to_zoned(tz(s)).strftime(fmt).to_string()
}

/// `16-22 Nov 2026` (or `28 Dec 2026 - 3 Jan 2027` across a month or year).
fn week_span(s: &WeeklySummary) -> String {
    let (a, b) = (s.week.monday(), s.week.days()[6]);
    if a.month() == b.month() {
        format!("{}-{}", a.day(), b.strftime("%-d %b %Y"))
    } else if a.year() == b.year() {
        format!("{} - {}", a.strftime("%-d %b"), b.strftime("%-d %b %Y"))
    } else {
        format!("{} - {}", a.strftime("%-d %b %Y"), b.strftime("%-d %b %Y"))
    }
}

/// The week in the school calendar, in words.
pub fn term_line(s: &WeeklySummary) -> String {
    let t = &s.term;
    let closed = t
        .closed_days
        .iter()
        .map(|d| d.strftime("%a %-d %b").to_string())
        .collect::<Vec<_>>();
    match (&t.term, t.holiday) {
        (Some(term), true) => format!("Holiday week: no school days ({term} break or closure)"),
        (None, true) => "Holiday week: no school days".to_owned(),
        (term, false) => {
            let mut line = match term {
                Some(term) => format!("{term}, {} school day", t.school_days),
                None => format!("{} school day", t.school_days),
            };
            if t.school_days != 1 {
                line.push('s');
            }
            if !closed.is_empty() {
                line.push_str(&format!(" (closed {})", closed.join(", ")));
            }
            line
        }
    }
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "0%".to_owned();
    }
    let p = part as f64 * 100.0 / whole as f64;
    if p > 0.0 && p < 0.1 {
        "under 0.1%".to_owned()
    } else {
        format!("{p:.1}%")
    }
}

/// How this week compares with the previous four like weeks, in words.
fn change(this: u64, baseline: Option<f64>) -> Option<String> {
    let base = baseline?;
    if base < 1.0 {
        return None;
    }
    let d = (this as f64 - base) / base * 100.0;
    Some(if d.abs() < 5.0 {
        "about the same as the 4-week average".to_owned()
    } else if d > 0.0 {
        format!("up {d:.0}% on the 4-week average")
    } else {
        format!("down {:.0}% on the 4-week average", -d)
    })
}

/// People behind a figure: signed-in users and devices.
fn people(users: u64, devices: u64) -> String {
    let dev = format!("{} device{}", thousands(devices), plural(devices));
    if users == 0 {
        dev
    } else {
        format!(
            "{dev} ({} signed-in user{})",
            thousands(users),
            plural(users)
        )
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The sentences at the top: what a headteacher should take away.
pub fn at_a_glance(s: &WeeklySummary) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    let t = &s.totals;
    let mut traffic = format!(
        "{} requests; {} blocked ({}) and {} flagged for review.",
        thousands(t.requests),
        thousands(t.blocked),
        pct(t.blocked, t.requests),
        thousands(t.flagged)
    );
    if let Some(c) = change(t.blocked, s.baseline(|p| p.blocked)) {
        traffic.push_str(&format!(" Blocked requests were {c}."));
    }
    out.push((false, traffic));
    let g = &s.safeguarding;
    let sev = g.alert_severity.name();
    if g.episodes > 0 {
        out.push((
            true,
            format!(
                "{} safeguarding episode{} at {sev} severity or above, involving {} {}: \
                 each was alerted to the safeguarding lead and is in the review queue.",
                thousands(g.episodes),
                plural(g.episodes),
                thousands(g.people),
                if g.people == 1 { "person" } else { "people" },
            ),
        ));
    } else {
        out.push((
            false,
            format!("No flags at {sev} severity or above this week."),
        ));
    }
    let attempts = s.bypass_attempts();
    if attempts > 0 {
        let (users, devices) = s
            .bypass
            .iter()
            .filter(|b| b.kind != BypassKind::DomainFronting)
            .fold((0, 0), |(u, d), b| (u.max(b.users), d.max(b.devices)));
        out.push((
            true,
            format!(
                "{} attempt{} to get round the filter, from at least {}; all were stopped or flagged.",
                thousands(attempts),
                plural(attempts),
                people(users, devices)
            ),
        ));
    } else {
        out.push((false, "No attempts to get round the filter.".to_owned()));
    }
    match &s.health {
        Some(h) => {
            let ok = health_ok(s);
            out.push((
                !ok,
                format!(
                    "The filter was up {:.2}% of the week{}.",
                    h.uptime * 100.0,
                    if ok {
                        " and healthy"
                    } else {
                        "; see filter health below"
                    }
                ),
            ));
        }
        None => out.push((
            false,
            "Filter health was not reported for this week.".to_owned(),
        )),
    }
    out
}

/// Lists older than this at the time of the summary are stale.
const STALE_LIST_HOURS: i64 = 72;

fn list_age_hours(s: &WeeklySummary) -> Option<i64> {
    let updated = s.health.as_ref()?.list_updated?;
    Some((s.generated_at.as_second() - updated.as_second()) / 3600)
}

fn health_ok(s: &WeeklySummary) -> bool {
    s.health.as_ref().is_some_and(|h| {
        h.uptime >= 0.99
            && h.errors == 0
            && list_age_hours(s).is_some_and(|a| a <= STALE_LIST_HOURS)
    })
}

fn severity_label(sev: Severity) -> &'static str {
    match sev {
        Severity::Low => "Low",
        Severity::Medium => "Medium",
        Severity::High => "High",
        Severity::Critical => "Critical (illegal-content lists)",
    }
}

fn card(title: &str, body: Markup) -> Markup {
    html! {
        tr { td style={"padding:0 24px 24px 24px;"} {
            table role="presentation" width="100%" cellpadding="0" cellspacing="0" style={"border-collapse:collapse;"} {
                tr { td style={"font-size:16px;font-weight:bold;color:" (ACCENT) ";padding:0 0 8px 0;border-bottom:2px solid " (ACCENT) ";"} { (title) } }
                tr { td style="padding-top:10px;" { (body) } }
            }
        } }
    }
}

fn th(label: &str, right: bool) -> Markup {
    let align = if right { "right" } else { "left" };
    html! {
        th align=(align) style={"font-size:12px;color:" (MUTED) ";font-weight:normal;text-transform:uppercase;letter-spacing:0.04em;padding:4px 6px;border-bottom:1px solid " (LINE) ";"} { (label) }
    }
}

fn td(v: &str, right: bool) -> Markup {
    let align = if right { "right" } else { "left" };
    html! {
        td align=(align) style={"font-size:13px;color:" (INK) ";padding:5px 6px;border-bottom:1px solid " (LINE) ";"} { (v) }
    }
}

fn tile(label: &str, value: &str, sub: &str, colour: &str) -> Markup {
    html! {
        td width="25%" valign="top" style={"padding:12px 10px;background:#f9fafb;border:1px solid " (LINE) ";border-radius:6px;"} {
            div style={"font-size:12px;color:" (MUTED) ";text-transform:uppercase;letter-spacing:0.04em;"} { (label) }
            div style={"font-size:24px;font-weight:bold;color:" (colour) ";padding:4px 0;"} { (value) }
            div style={"font-size:12px;color:" (MUTED) ";"} { (sub) }
        }
    }
}

fn chart_markup(c: &Chart, mode: ChartMode) -> Markup {
    match mode {
        ChartMode::Cid => html! {
            img src={"cid:" (c.cid)} width=(c.width) height=(c.height) alt=(c.alt)
                style="display:block;border:0;max-width:100%;height:auto;";
        },
        ChartMode::Inline => html! {
            div id={"chart-" (c.cid)} { (PreEscaped(&c.svg)) }
        },
    }
}

fn document(s: &WeeklySummary, charts: &[Chart], mode: ChartMode) -> String {
    let page = html! {
        (DOCTYPE)
        html lang="en-GB" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (subject(s)) }
            }
            body style={"margin:0;padding:0;background:" (BG) ";font-family:Segoe UI,Helvetica,Arial,sans-serif;color:" (INK) ";"} {
                (sheet(s, charts, mode))
            }
        }
    };
    page.into_string()
}

/// Everything inside the document's `body`.
fn sheet(s: &WeeklySummary, charts: &[Chart], mode: ChartMode) -> Markup {
    let chart = |cid: &str| charts.iter().find(|c| c.cid == cid);
    let t = &s.totals;
    let review = format!("{}/review", s.dashboard_url);
    html! {
        table role="presentation" width="100%" cellpadding="0" cellspacing="0" style={"background:" (BG) ";"} { tr { td align="center" style="padding:24px 8px;" {
        table role="presentation" width="640" cellpadding="0" cellspacing="0" style={"width:640px;max-width:100%;background:" (CARD) ";border-radius:8px;border-collapse:separate;"} {
            // Header
            tr { td style={"background:" (ACCENT) ";color:#ffffff;padding:22px 24px;border-radius:8px 8px 0 0;"} {
                div style="font-size:13px;opacity:0.85;letter-spacing:0.05em;text-transform:uppercase;" { "Weekly filtering summary" }
                div style="font-size:24px;font-weight:bold;padding:4px 0;" { (s.title) }
                div style="font-size:14px;" { "Week " (s.week.week()) ", " (week_span(s)) }
                div style={"display:inline-block;margin-top:10px;padding:4px 10px;border-radius:12px;font-size:13px;background:" (if s.term.holiday { "#fef3c7" } else { "#dbeafe" }) ";color:" (INK) ";"} { (term_line(s)) }
            } }
            // Tiles
            tr { td style="padding:20px 24px 8px 24px;" {
                table role="presentation" width="100%" cellpadding="0" cellspacing="6" {
                    tr {
                        (tile("Requests", &thousands(t.requests), &t.devices.map(|d| format!("from {} devices", thousands(d))).unwrap_or_else(|| "this week".to_owned()), INK))
                        (tile("Blocked", &thousands(t.blocked), &format!("{} of requests", pct(t.blocked, t.requests)), BLOCKED))
                        (tile("Flagged", &thousands(t.flagged), "for the e-safety lead", FLAGGED))
                        (tile("Bypass attempts", &thousands(s.bypass_attempts()), "VPN, proxy, DoH, fronting", if s.bypass_attempts() > 0 { WARN } else { OK }))
                    }
                }
            } }
            // At a glance
            tr { td style="padding:8px 24px 20px 24px;" {
                table role="presentation" width="100%" cellpadding="0" cellspacing="0" {
                    @for (attention, line) in at_a_glance(s) {
                        tr {
                            td width="18" valign="top" style={"font-size:16px;line-height:22px;color:" (if attention { WARN } else { OK }) ";"} { (if attention { "●" } else { "✓" }) }
                            td style={"font-size:14px;line-height:22px;color:" (INK) ";padding-bottom:4px;"} { (line) }
                        }
                    }
                }
            } }
            // Safeguarding
            (card("Safeguarding", html! {
                table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="border-collapse:collapse;" {
                    tr { (th("Flags by severity", false)) (th("This week", true)) }
                    @for (sev, n) in [(Severity::Critical, s.safeguarding.critical), (Severity::High, s.safeguarding.high), (Severity::Medium, s.safeguarding.medium), (Severity::Low, s.safeguarding.low)] {
                        tr { (td(severity_label(sev), false)) (td(&thousands(n), true)) }
                    }
                }
                p style={"font-size:14px;color:" (INK) ";margin:10px 0 0 0;"} {
                    (thousands(s.safeguarding.episodes)) " episode" (plural(s.safeguarding.episodes)) " at " (s.safeguarding.alert_severity.name()) " severity or above, involving "
                    (thousands(s.safeguarding.people)) (if s.safeguarding.people == 1 { " person" } else { " people" }) "."
                    @if s.safeguarding.truncated { " (At least: the week had more flags than a summary reads.)" }
                }
                @if let Some(i) = &s.incidents {
                    table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="border-collapse:collapse;margin-top:12px;" {
                        tr { (th("E-safety incidents", false)) (th("Opened", true)) (th("In progress", true)) (th("Closed", true)) }
                        tr { (td("This week", false)) (td(&thousands(i.opened), true)) (td(&thousands(i.in_progress), true)) (td(&thousands(i.closed), true)) }
                    }
                } @else {
                    p style={"font-size:13px;color:" (MUTED) ";margin:8px 0 0 0;"} { "The incident log was not available to this summary." }
                }
                p style={"font-size:13px;color:" (MUTED) ";margin:10px 0 0 0;"} {
                    "Names are never included in this email. The details are in the dashboard, for the safeguarding lead: "
                    a href=(review) style={"color:" (ACCENT) ";"} { (review) }
                }
            }))
            // Trend
            (card("This week against the previous four", html! {
                @if let Some(c) = chart("trend") { (chart_markup(c, mode)) }
                @if let Some(c) = chart("daily") { div style="padding-top:12px;" { (chart_markup(c, mode)) } }
                table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="border-collapse:collapse;margin-top:10px;" {
                    tr { (th("Week", false)) (th("School days", true)) (th("Requests", true)) (th("Blocked", true)) (th("Flagged", true)) }
                    @for p in &s.trend {
                        tr {
                            (td(&format!("{} (w/c {})", p.week, p.week.monday().strftime("%-d %b")), false))
                            (td(&p.school_days.to_string(), true))
                            (td(&thousands(p.requests), true))
                            (td(&thousands(p.blocked), true))
                            (td(&thousands(p.flagged), true))
                        }
                    }
                }
            }))
            @if !s.schools.is_empty() {
                (card("Schools", html! {
                    table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="border-collapse:collapse;" {
                        tr { (th("School", false)) (th("Requests", true)) (th("Blocked", true)) (th("Flagged", true)) }
                        @for r in &s.schools {
                            tr { (td(&r.name, false)) (td(&thousands(r.requests), true)) (td(&thousands(r.blocked), true)) (td(&thousands(r.flagged), true)) }
                        }
                    }
                }))
            }
            // Categories
            (card("What was blocked and flagged", html! {
                @if s.categories.is_empty() {
                    p style={"font-size:14px;color:" (MUTED) ";"} { "Nothing was blocked or flagged this week." }
                } @else {
                    @if let Some(c) = chart("categories") { (chart_markup(c, mode)) }
                    // Two columns side by side: the whole list in half the height.
                    @let half = s.categories.len().div_ceil(2);
                    table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="border-collapse:collapse;margin-top:10px;" {
                        tr {
                            (th("Category", false)) (th("Blocked", true)) (th("Flagged", true))
                            th style="width:18px;" {}
                            (th("Category", false)) (th("Blocked", true)) (th("Flagged", true))
                        }
                        @for i in 0..half {
                            tr {
                                @if let Some(c) = s.categories.get(i) {
                                    (td(c.category.label(), false)) (td(&thousands(c.blocked), true)) (td(&thousands(c.flagged), true))
                                }
                                td {}
                                @if let Some(c) = s.categories.get(half + i) {
                                    (td(c.category.label(), false)) (td(&thousands(c.blocked), true)) (td(&thousands(c.flagged), true))
                                } @else {
                                    td {} td {} td {}
                                }
                            }
                        }
                    }
                }
            }))
            // Bypass
            (card("Attempts to get round the filter", html! {
                @if s.bypass.is_empty() {
                    p style={"font-size:14px;color:" (MUTED) ";margin:0;"} { "None this week." }
                } @else {
                    table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="border-collapse:collapse;" {
                        tr { (th("Kind", false)) (th("Attempts", true)) (th("Devices", true)) (th("Signed-in users", true)) }
                        @for b in &s.bypass {
                            tr { (td(b.kind.label(), false)) (td(&thousands(b.attempts), true)) (td(&thousands(b.devices), true)) (td(&thousands(b.users), true)) }
                        }
                    }
                    @if s.bypass.iter().any(|b| b.kind == BypassKind::DomainFronting) {
                        p style={"font-size:12px;color:" (MUTED) ";margin:8px 0 0 0;"} { "Domain fronting disguises a proxy as an ordinary site; those attempts are also counted under proxies." }
                    }
                }
            }))
            // Roles
            @if !s.roles.is_empty() {
                (card("By role", html! {
                    table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="border-collapse:collapse;" {
                        tr { (th("Role", false)) (th("Requests", true)) (th("Blocked", true)) (th("Flagged", true)) }
                        @for r in &s.roles {
                            tr {
                                td style={"font-size:13px;color:" (INK) ";padding:5px 6px;border-bottom:1px solid " (LINE) ";"} {
                                    (r.role)
                                    @if !r.description.is_empty() { br; span style={"font-size:12px;color:" (MUTED) ";"} { (r.description) } }
                                }
                                (td(&r.requests.map(thousands).unwrap_or_else(|| "–".to_owned()), true))
                                (td(&thousands(r.blocked), true))
                                (td(&thousands(r.flagged), true))
                            }
                        }
                    }
                }))
            }
            // Top sites
            @if !s.top_blocked.is_empty() {
                (card("Most blocked sites", html! {
                    table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="border-collapse:collapse;" {
                        tr { (th("Site", false)) (th("Blocked", true)) }
                        @for h in &s.top_blocked {
                            tr { (td(&h.host, false)) (td(&thousands(h.blocked), true)) }
                        }
                    }
                }))
            }
            // Health
            (card("Filter health", html! {
                @if let Some(h) = &s.health {
                    table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="border-collapse:collapse;" {
                        tr { (td("Up", false)) (td(&format!("{:.2}% of the week", h.uptime * 100.0), true)) }
                        tr { (td("Block lists last updated", false)) (td(&h.list_updated.map(|u| {
                            let age = list_age_hours(s).unwrap_or(0);
                            format!("{} ({})", local(s, u, "%a %-d %b %H:%M"), if age < 48 { format!("{age} h ago") } else { format!("{} days ago", age / 24) })
                        }).unwrap_or_else(|| "never".to_owned()), true)) }
                        tr { (td("Events waiting to be stored", false)) (td(&format!("{} in memory, {} on disk", thousands(h.backlog), bytes(h.spool_bytes)), true)) }
                        tr { (td("Storage errors", false)) (td(&thousands(h.errors), true)) }
                    }
                } @else {
                    p style={"font-size:14px;color:" (MUTED) ";margin:0;"} { "Not reported for this week." }
                }
            }))
            // Policy changes
            (card("What changed in the policy", html! {
                @if s.policy_changes.is_empty() {
                    p style={"font-size:14px;color:" (MUTED) ";margin:0;"} { "No changes this week." }
                } @else {
                    table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="border-collapse:collapse;" {
                        tr { (th("When", false)) (th("Who", false)) (th("What", false)) (th("Why", false)) }
                        @for c in &s.policy_changes {
                            tr { (td(&local(s, c.when, "%a %-d %b %H:%M"), false)) (td(&c.who, false)) (td(&c.what, false)) (td(&c.why, false)) }
                        }
                    }
                }
            }))
            // Footer
            tr { td style={"padding:16px 24px 22px 24px;border-top:1px solid " (LINE) ";font-size:12px;color:" (MUTED) ";"} {
                "Sent by schoolgate for " (scope_words(s)) " on " (local(s, s.generated_at, "%A %-d %B %Y at %H:%M")) ". "
                "Times are " (s.timezone) ". Figures are counts of requests seen by the filter; pupils and staff are never named in this summary. "
                a href=(s.dashboard_url) style={"color:" (ACCENT) ";"} { "Open the dashboard" }
            } }
        }
        } } }
    }
}

fn scope_words(s: &WeeklySummary) -> String {
    match &s.scope {
        Scope::Trust => format!("{} (all schools)", s.title),
        Scope::School { .. } => s.title.clone(),
    }
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.0} KB", n as f64 / 1024.0),
        n => format!("{n} bytes"),
    }
}

/// The plain-text part: the same content, for clients (and people) that prefer it.
pub fn render_text(s: &WeeklySummary) -> String {
    let mut o = String::new();
    let line = |o: &mut String, l: &str| {
        o.push_str(l);
        o.push('\n');
    };
    let heading = |o: &mut String, h: &str| {
        o.push('\n');
        o.push_str(h);
        o.push('\n');
        o.push_str(&"-".repeat(h.chars().count()));
        o.push('\n');
    };
    line(&mut o, &format!("WEEKLY FILTERING SUMMARY: {}", s.title));
    line(
        &mut o,
        &format!("Week {} ({}), {}", s.week.week(), s.week, week_span(s)),
    );
    line(&mut o, &term_line(s));
    heading(&mut o, "At a glance");
    for (attention, l) in at_a_glance(s) {
        line(
            &mut o,
            &format!("{} {l}", if attention { "!" } else { "-" }),
        );
    }
    let t = &s.totals;
    heading(&mut o, "This week");
    line(
        &mut o,
        &format!("{:<28}{:>12}", "Requests", thousands(t.requests)),
    );
    if let (Some(u), Some(d)) = (t.users, t.devices) {
        line(&mut o, &format!("{:<28}{:>12}", "Devices", thousands(d)));
        line(
            &mut o,
            &format!("{:<28}{:>12}", "Signed-in users", thousands(u)),
        );
    }
    line(
        &mut o,
        &format!("{:<28}{:>12}", "Blocked", thousands(t.blocked)),
    );
    line(
        &mut o,
        &format!("{:<28}{:>12}", "Flagged", thousands(t.flagged)),
    );
    line(
        &mut o,
        &format!(
            "{:<28}{:>12}",
            "Bypass attempts",
            thousands(s.bypass_attempts())
        ),
    );
    heading(&mut o, "Against the previous four weeks");
    line(
        &mut o,
        &format!(
            "{:<22}{:>6}{:>12}{:>10}{:>10}",
            "Week", "Days", "Requests", "Blocked", "Flagged"
        ),
    );
    for p in &s.trend {
        line(
            &mut o,
            &format!(
                "{:<22}{:>6}{:>12}{:>10}{:>10}",
                format!("{} (w/c {})", p.week, p.week.monday().strftime("%-d %b")),
                p.school_days,
                thousands(p.requests),
                thousands(p.blocked),
                thousands(p.flagged)
            ),
        );
    }
    heading(&mut o, "By day");
    for d in &s.days {
        line(
            &mut o,
            &format!(
                "{:<14}{:>10} blocked{:>8} flagged{}",
                d.date.strftime("%a %-d %b").to_string(),
                thousands(d.blocked),
                thousands(d.flagged),
                if d.school_day { "" } else { "  (no school)" }
            ),
        );
    }
    if !s.schools.is_empty() {
        heading(&mut o, "Schools");
        for r in &s.schools {
            line(
                &mut o,
                &format!(
                    "{:<32}{:>12} requests{:>10} blocked{:>8} flagged",
                    r.name,
                    thousands(r.requests),
                    thousands(r.blocked),
                    thousands(r.flagged)
                ),
            );
        }
    }
    heading(&mut o, "Blocked and flagged by category");
    if s.categories.is_empty() {
        line(&mut o, "Nothing was blocked or flagged this week.");
    }
    for c in &s.categories {
        line(
            &mut o,
            &format!(
                "{:<40}{:>10} blocked{:>8} flagged",
                c.category.label(),
                thousands(c.blocked),
                thousands(c.flagged)
            ),
        );
    }
    if !s.roles.is_empty() {
        heading(&mut o, "By role");
        for r in &s.roles {
            let req = r.requests.map(thousands).unwrap_or_else(|| "-".to_owned());
            line(
                &mut o,
                &format!(
                    "{:<20}{:>12} requests{:>10} blocked{:>8} flagged",
                    r.role,
                    req,
                    thousands(r.blocked),
                    thousands(r.flagged)
                ),
            );
        }
    }
    if !s.top_blocked.is_empty() {
        heading(&mut o, "Most blocked sites");
        for h in &s.top_blocked {
            line(
                &mut o,
                &format!("{:<44}{:>10}", h.host, thousands(h.blocked)),
            );
        }
    }
    heading(&mut o, "Attempts to get round the filter");
    if s.bypass.is_empty() {
        line(&mut o, "None this week.");
    }
    for b in &s.bypass {
        line(
            &mut o,
            &format!(
                "{:<28}{:>8} attempts by {}",
                b.kind.label(),
                thousands(b.attempts),
                people(b.users, b.devices)
            ),
        );
    }
    heading(&mut o, "Safeguarding");
    let g = &s.safeguarding;
    line(
        &mut o,
        &format!(
            "Flags: {} critical, {} high, {} medium, {} low",
            g.critical, g.high, g.medium, g.low
        ),
    );
    line(
        &mut o,
        &format!(
            "{} episode{} at {} severity or above, involving {} {}.",
            g.episodes,
            plural(g.episodes),
            g.alert_severity.name(),
            g.people,
            if g.people == 1 { "person" } else { "people" }
        ),
    );
    match &s.incidents {
        Some(i) => line(
            &mut o,
            &format!(
                "E-safety incidents: {} opened, {} in progress, {} closed",
                i.opened, i.in_progress, i.closed
            ),
        ),
        None => line(
            &mut o,
            "The incident log was not available to this summary.",
        ),
    }
    heading(&mut o, "Filter health");
    match &s.health {
        Some(h) => {
            line(&mut o, &format!("Up {:.2}% of the week", h.uptime * 100.0));
            line(
                &mut o,
                &format!(
                    "Block lists last updated: {}",
                    h.list_updated
                        .map(|u| local(s, u, "%a %-d %b %H:%M"))
                        .unwrap_or_else(|| "never".to_owned())
                ),
            );
            line(
                &mut o,
                &format!(
                    "Waiting to be stored: {} in memory, {} on disk; storage errors: {}",
                    h.backlog,
                    bytes(h.spool_bytes),
                    h.errors
                ),
            );
        }
        None => line(&mut o, "Not reported for this week."),
    }
    heading(&mut o, "What changed in the policy");
    if s.policy_changes.is_empty() {
        line(&mut o, "No changes this week.");
    }
    for c in &s.policy_changes {
        line(
            &mut o,
            &format!(
                "{}  {}: {} (why: {})",
                local(s, c.when, "%a %-d %b %H:%M"),
                c.who,
                c.what,
                c.why
            ),
        );
    }
    o.push('\n');
    line(
        &mut o,
        "Names are never included in this email. The details are in the dashboard, for the safeguarding lead:",
    );
    line(&mut o, &format!("{}/review", s.dashboard_url));
    o
}
