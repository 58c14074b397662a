//! Health: is the filter working? DNS queries per second, proxy requests per
//! second, the event pipeline's backlog and spool, the store, the policy, uptime.
//! Every role may see it; it shows no personal data.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use maud::{Markup, html};
use schoolgate_events::Period;
use serde::Serialize;

use crate::app::App;
use crate::auth::CurrentUser;
use crate::error::Result;
use crate::ui;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/health", get(page))
        .route("/api/health", get(api))
}

/// Whether the event store answers, and how fast.
#[derive(Clone, Debug, Serialize)]
pub struct StoreStatus {
    pub backend: &'static str,
    pub ok: bool,
    pub millis: u64,
    pub error: Option<String>,
    /// Events in the last hour (from the store's rollups).
    pub last_hour_events: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PolicyStatus {
    pub roles: usize,
    pub domains: u64,
    pub urls: u64,
    pub keyword_rules: u64,
    pub lists: usize,
    pub last_reload: Option<jiff::Timestamp>,
    pub failed_sources: Vec<String>,
}

/// DNS queries and proxy requests so far, when Health was last looked at.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    at: Instant,
    dns_queries: f64,
    proxy_requests: f64,
}

/// Requests per second of the DNS filter and the proxy. The servers report
/// counters (`dns.queries`, `proxy.requests`); the rate is the change since the
/// previous view of Health (one second to ten minutes ago), else the average since
/// start. A source that reports `dns.qps` / `proxy.rps` itself is taken as is.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Rates {
    pub dns_qps: Option<f64>,
    pub proxy_rps: Option<f64>,
}

pub fn rates(
    services: &serde_json::Value,
    prev: Option<Sample>,
    now: Instant,
    uptime_secs: i64,
) -> (Rates, Option<Sample>) {
    let dns = metric(services, "dns.queries");
    let proxy = metric(services, "proxy.requests");
    let sample = match (dns, proxy) {
        (None, None) => None,
        (d, p) => Some(Sample {
            at: now,
            dns_queries: d.unwrap_or(0.0),
            proxy_requests: p.unwrap_or(0.0),
        }),
    };
    let window = prev.map(|p| (now.duration_since(p.at).as_secs_f64(), p));
    let rate = |total: Option<f64>, before: fn(&Sample) -> f64| -> Option<f64> {
        let total = total?;
        match window {
            Some((secs, p)) if (1.0..=600.0).contains(&secs) && total >= before(&p) => {
                Some((total - before(&p)) / secs)
            }
            _ if uptime_secs > 0 => Some(total / uptime_secs as f64),
            _ => None,
        }
    };
    let r = Rates {
        dns_qps: metric(services, "dns.qps").or_else(|| rate(dns, |p| p.dns_queries)),
        proxy_rps: metric(services, "proxy.rps").or_else(|| rate(proxy, |p| p.proxy_requests)),
    };
    // Keep the older sample while it is under a second old, so rapid reloads
    // still measure over a useful window.
    let keep = match window {
        Some((secs, p)) if secs < 1.0 => Some(p),
        _ => sample,
    };
    (r, keep)
}

#[derive(Clone, Debug, Serialize)]
pub struct Health {
    pub rates: Rates,
    pub uptime_secs: i64,
    pub started_at: jiff::Timestamp,
    pub store: StoreStatus,
    pub policy: PolicyStatus,
    /// What the binary reports (DNS, proxy, pipeline), as given.
    pub services: serde_json::Value,
}

/// The store is asked for the last hour's counts, with a short timeout: Health
/// must answer even when the store does not.
pub async fn collect(app: &App) -> Health {
    let now = app.clock.now();
    let hour = Period::new(now - jiff::SignedDuration::from_hours(1), now);
    let started = Instant::now();
    let probe = tokio::time::timeout(
        Duration::from_secs(3),
        app.store
            .counts(&hour, schoolgate_events::GroupBy::Action, None),
    )
    .await;
    let millis = started.elapsed().as_millis() as u64;
    let store = match probe {
        Ok(Ok(counts)) => StoreStatus {
            backend: app.store.name(),
            ok: true,
            millis,
            error: None,
            last_hour_events: counts.iter().map(|c| c.events).sum(),
        },
        Ok(Err(e)) => StoreStatus {
            backend: app.store.name(),
            ok: false,
            millis,
            error: Some(e.to_string()),
            last_hour_events: 0,
        },
        Err(_) => StoreStatus {
            backend: app.store.name(),
            ok: false,
            millis,
            error: Some("no answer within 3 s".into()),
            last_hour_events: 0,
        },
    };
    let p = app.policy.load();
    let stats = p.stats();
    let load = app.load_state();
    let policy = PolicyStatus {
        roles: p.roles().count(),
        domains: stats.domains,
        urls: stats.urls,
        keyword_rules: stats.keyword_rules,
        lists: stats.per_list.len(),
        last_reload: load.as_ref().map(|l| l.at),
        failed_sources: load.map(|l| l.report.failures()).unwrap_or_default(),
    };
    let services = (app.health)();
    let uptime_secs = now.as_second() - app.started_at.as_second();
    let rates = match app.health_sample.lock() {
        Ok(mut prev) => {
            let (r, keep) = rates(&services, *prev, Instant::now(), uptime_secs);
            *prev = keep;
            r
        }
        Err(_) => Rates::default(),
    };
    Health {
        rates,
        uptime_secs,
        started_at: app.started_at,
        store,
        policy,
        services,
    }
}

pub fn uptime(secs: i64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
    match (d, h) {
        (0, 0) => format!("{m} min"),
        (0, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h"),
    }
}

async fn api(State(app): State<App>, _user: CurrentUser) -> axum::Json<Health> {
    axum::Json(collect(&app).await)
}

/// A number from the binary's JSON, looked up by a dotted path.
fn metric(v: &serde_json::Value, path: &str) -> Option<f64> {
    path.split('.').try_fold(v, |v, k| v.get(k))?.as_f64()
}

fn fmt_metric(v: Option<f64>, unit: &str) -> String {
    match v {
        Some(x) if x >= 100.0 => format!("{}{unit}", ui::thousands(x.round() as u64)),
        Some(x) => format!("{x:.1}{unit}"),
        None => "—".to_owned(),
    }
}

fn scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(u) => ui::thousands(u),
            None => n.as_f64().map(|f| format!("{f:.2}")).unwrap_or_default(),
        },
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
        serde_json::Value::Null => "—".to_owned(),
        other => other.to_string(),
    }
}

/// A service's field: a figure, or a list of items (e.g. the DNS upstreams),
/// one line each.
fn value(v: &serde_json::Value) -> Markup {
    match v.as_array() {
        Some(items) => html! { @for it in items { div { (item(it)) } } },
        None => html! { (scalar(v)) },
    }
}

/// One item of a list: a green or red dot when it says whether it is `up`, its
/// `name` or `upstream`, then its other fields; empty or null ones left out.
fn item(v: &serde_json::Value) -> Markup {
    let Some(fields) = v.as_object() else {
        return html! { (scalar(v)) };
    };
    // The field that names the item comes first, bare; the rest as `key: value`.
    let name_key = ["name", "upstream"]
        .into_iter()
        .find(|k| fields.contains_key(*k));
    let shown: Vec<String> = name_key
        .and_then(|k| fields.get(k))
        .map(scalar)
        .into_iter()
        .chain(
            fields
                .iter()
                .filter(|(k, x)| {
                    *k != "up"
                        && Some(k.as_str()) != name_key
                        && !x.is_null()
                        && x.as_str() != Some("")
                })
                .map(|(k, x)| format!("{}: {}", k.replace('_', " "), scalar(x))),
        )
        .collect();
    html! {
        @match fields.get("up").and_then(|u| u.as_bool()) {
            Some(true) => { span.dot.ok {} }
            Some(false) => { span.dot.bad {} }
            None => {}
        }
        (shown.join(" · "))
    }
}

async fn page(State(app): State<App>, user: CurrentUser) -> Result<Markup> {
    let h = collect(&app).await;
    let tz = app.tz();
    let s = &h.services;
    let spool = metric(s, "pipeline.spool_bytes").map(|b| b / 1_048_576.0);
    Ok(ui::page(
        &app,
        &user,
        "Health",
        "/health",
        html! {
            (ui::page_head("Health", Some("Is the filter working? This page shows no personal data.")))
            div.stats {
                (ui::stat("Uptime", &uptime(h.uptime_secs), Some(&format!("since {}", ui::when(h.started_at, &tz)))))
                (ui::stat("DNS queries / s", &fmt_metric(h.rates.dns_qps, ""), None))
                (ui::stat("Proxy requests / s", &fmt_metric(h.rates.proxy_rps, ""), None))
                (ui::stat("Pipeline backlog", &metric(s, "pipeline.queue_depth").or_else(|| metric(s, "pipeline.queued")).map(|q| ui::thousands(q.max(0.0) as u64)).unwrap_or_else(|| "—".into()), Some(&format!("spool {}", fmt_metric(spool, " MB")))))
                (ui::stat("Events, last hour", &ui::thousands(h.store.last_hour_events), None))
            }
            div.grid.grid-2 {
                div.card {
                    h2 { "Event store" }
                    dl.kv {
                        dt { "Status" } dd {
                            @if h.store.ok { span.dot.ok {} "answering" } @else { span.dot.bad {} "not answering" }
                        }
                        dt { "Backend" } dd { (h.store.backend) }
                        dt { "Answer time" } dd { (h.store.millis) " ms" }
                        @if let Some(e) = &h.store.error { dt { "Error" } dd { (e) } }
                    }
                }
                div.card {
                    h2 { "Policy" }
                    dl.kv {
                        dt { "Roles" } dd { (h.policy.roles) }
                        dt { "Domains" } dd { (ui::thousands(h.policy.domains)) }
                        dt { "URLs" } dd { (ui::thousands(h.policy.urls)) }
                        dt { "Keyword rules" } dd { (ui::thousands(h.policy.keyword_rules)) }
                        dt { "List sources" } dd { (h.policy.lists) }
                        dt { "Last reload" } dd { @if let Some(t) = h.policy.last_reload { (ui::when(t, &tz)) } @else { "at start" } }
                        @if !h.policy.failed_sources.is_empty() {
                            dt { "Failed sources" } dd { @for f in &h.policy.failed_sources { div { span.dot.bad {} (f) } } }
                        }
                    }
                }
            }
            @if let Some(obj) = s.as_object().filter(|o| !o.is_empty()) {
                h2 { "Services" }
                div.grid.grid-2 {
                    @for (name, v) in obj {
                        div.card {
                            h3 { (name) }
                            @if let Some(fields) = v.as_object() {
                                dl.kv { @for (k, x) in fields { dt { (k.replace('_', " ")) } dd { (value(x)) } } }
                            } @else { p { (scalar(v)) } }
                        }
                    }
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_counters_between_views() {
        let t0 = Instant::now();
        let v = |q: u64, r: u64| serde_json::json!({ "dns": { "queries": q }, "proxy": { "requests": r } });
        let (first, s0) = rates(&v(1_000, 100), None, t0, 100);
        assert_eq!(
            first.dns_qps,
            Some(10.0),
            "the average since start at first"
        );
        let (r, _) = rates(&v(1_500, 300), s0, t0 + Duration::from_secs(10), 110);
        assert_eq!((r.dns_qps, r.proxy_rps), (Some(50.0), Some(20.0)));
        let (given, _) = rates(&serde_json::json!({ "dns": { "qps": 7.5 } }), None, t0, 1);
        assert_eq!(given.dns_qps, Some(7.5));
    }
}
