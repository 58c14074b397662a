//! Page layout and the small components every page uses, with the stylesheet and
//! the little JavaScript there is. Server-rendered: a page works without
//! JavaScript, which only adds conveniences (highlighting changed cells,
//! confirmations).

use http::StatusCode;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use schoolgate_classifier::{Action, Severity};

use crate::app::App;
use crate::auth::{CurrentUser, Role};

/// One menu entry: path, label, and the roles that see it.
struct NavItem {
    href: &'static str,
    label: &'static str,
    roles: &'static [Role],
}

const NM: Role = Role::NetworkManager;
const DSL: Role = Role::EsafetyLead;
const HEAD: Role = Role::Headteacher;
const VIEW: Role = Role::Viewer;

const NAV: &[(&str, &[NavItem])] = &[
    (
        "Safeguarding",
        &[
            NavItem {
                href: "/review",
                label: "Flagged access",
                roles: &[DSL],
            },
            NavItem {
                href: "/search",
                label: "Search",
                roles: &[DSL],
            },
            NavItem {
                href: "/incidents",
                label: "Incident log",
                roles: &[DSL, HEAD],
            },
            NavItem {
                href: "/summary",
                label: "Weekly summary",
                roles: &[HEAD, DSL, NM],
            },
        ],
    ),
    (
        "Filtering",
        &[
            NavItem {
                href: "/policy",
                label: "Roles & categories",
                roles: &[NM],
            },
            NavItem {
                href: "/policy/test",
                label: "Test a URL",
                roles: &[NM],
            },
            NavItem {
                href: "/policy/schedules",
                label: "Schedules",
                roles: &[NM],
            },
            NavItem {
                href: "/policy/networks",
                label: "Networks & devices",
                roles: &[NM],
            },
            NavItem {
                href: "/lists",
                label: "Lists",
                roles: &[NM],
            },
            NavItem {
                href: "/wrong-blocks",
                label: "Wrong-block reports",
                roles: &[NM],
            },
            NavItem {
                href: "/policy/history",
                label: "Change history",
                roles: &[NM, HEAD],
            },
        ],
    ),
    (
        "System",
        &[
            NavItem {
                href: "/health",
                label: "Health",
                roles: &[NM, DSL, HEAD, VIEW],
            },
            NavItem {
                href: "/users",
                label: "Users",
                roles: &[NM],
            },
            NavItem {
                href: "/audit",
                label: "Audit log",
                roles: &[NM, DSL, HEAD],
            },
        ],
    ),
];

/// A full page for a logged-in user.
pub fn page(app: &App, user: &CurrentUser, title: &str, active: &str, body: Markup) -> Markup {
    let school = app.school_name();
    html! {
        (DOCTYPE)
        html lang="en-GB" {
            (head(title))
            body {
                header.topbar {
                    a.brand href="/" { (logo()) span { "schoolgate" } }
                    span.school { (school) }
                    div.who {
                        span.user { (user.name) }
                        span.role-tag { (user.role.label()) }
                        a href="/account" { "Account" }
                        form.inline method="post" action="/logout" {
                            (csrf(user))
                            button.linklike type="submit" { "Log out" }
                        }
                    }
                }
                div.shell {
                    nav.side aria-label="Main" {
                        @for (group, items) in NAV {
                            @let mine: Vec<&NavItem> = items.iter().filter(|i| i.roles.contains(&user.role)).collect();
                            @if !mine.is_empty() {
                                div.navgroup { (group) }
                                @for i in mine {
                                    a href=(i.href) class=[(i.href == active).then_some("active")] { (i.label) }
                                }
                            }
                        }
                    }
                    main {
                        (body)
                    }
                }
            }
        }
    }
}

/// A page without the menu (login, the pupils' report form, errors without a
/// session).
pub fn bare_page(app: &App, title: &str, body: Markup) -> Markup {
    let school = app.school_name();
    html! {
        (DOCTYPE)
        html lang="en-GB" {
            (head(title))
            body.bare {
                div.bare-card {
                    div.bare-brand { (logo()) span { "schoolgate" } }
                    div.bare-school { (school) }
                    (body)
                }
            }
        }
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="robots" content="noindex";
            title { (title) " · schoolgate" }
            link rel="stylesheet" href="/static/app.css";
            script src="/static/app.js" defer {}
        }
    }
}

fn logo() -> Markup {
    html! {
        svg.logo viewBox="0 0 24 24" width="22" height="22" aria-hidden="true" {
            path d="M12 2 4 5v6c0 5 3.4 9.3 8 11 4.6-1.7 8-6 8-11V5l-8-3z" fill="currentColor" opacity="0.9" {}
            path d="m8.5 12 2.5 2.5 4.5-5" fill="none" stroke="#fff" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" {}
        }
    }
}

pub fn error_page(
    app: &App,
    user: Option<&CurrentUser>,
    status: StatusCode,
    message: &str,
) -> Markup {
    let title = match status {
        StatusCode::FORBIDDEN => "Not available to your role",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::TOO_MANY_REQUESTS => "Too many requests",
        s if s.is_server_error() => "Something went wrong",
        _ => "That did not work",
    };
    let body = html! {
        div.page-head { h1 { (title) } }
        div.alert.alert-error { pre.msg { (message) } }
        p { a href="/" { "Back to the dashboard" } }
    };
    match user {
        Some(u) => page(app, u, title, "", body),
        None => bare_page(app, title, body),
    }
}

/// The hidden CSRF field every form carries.
pub fn csrf(user: &CurrentUser) -> Markup {
    html! { input type="hidden" name="csrf" value=(user.csrf); }
}

pub fn page_head(title: &str, sub: Option<&str>) -> Markup {
    html! {
        div.page-head {
            h1 { (title) }
            @if let Some(s) = sub { p.sub { (s) } }
        }
    }
}

pub fn alert(kind: &str, message: &str) -> Markup {
    html! { div class={ "alert alert-" (kind) } { pre.msg { (message) } } }
}

pub fn empty(message: &str) -> Markup {
    html! { div.empty { (message) } }
}

pub fn stat(label: &str, value: &str, sub: Option<&str>) -> Markup {
    html! {
        div.stat {
            div.stat-label { (label) }
            div.stat-value { (value) }
            @if let Some(s) = sub { div.stat-sub { (s) } }
        }
    }
}

pub fn severity_badge(s: Option<Severity>) -> Markup {
    match s {
        Some(s) => html! { span class={ "badge sev-" (s.name()) } { (s.name()) } },
        None => html! { span.badge.sev-none { "—" } },
    }
}

pub fn action_badge(a: Action) -> Markup {
    html! { span class={ "badge act-" (a.name()) } { (a.name()) } }
}

/// `Mon 12 Jan 14:05` in school time.
pub fn when(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned(tz.clone())
        .strftime("%a %-d %b %H:%M")
        .to_string()
}

/// `14:05:09` in school time.
pub fn clock_time(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned(tz.clone()).strftime("%H:%M:%S").to_string()
}

/// `2026-01-12 14:05` in school time.
pub fn date_time(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned(tz.clone())
        .strftime("%Y-%m-%d %H:%M")
        .to_string()
}

pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn url_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Only local paths are followed after login (no open redirect).
pub fn safe_next(next: Option<&str>) -> Option<String> {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\'))
        .map(str::to_owned)
}

pub fn raw(s: &'static str) -> PreEscaped<&'static str> {
    PreEscaped(s)
}

pub const CSS: &str = r#"
:root{--bg:#f4f6f9;--card:#fff;--ink:#1c2433;--muted:#5d6778;--line:#e3e7ee;--brand:#1f5fbf;--brand-dark:#174a96;
--ok:#1e8e5a;--warn:#b7791f;--err:#c0392b;--crit:#8e1b3a;--high:#d35400;--med:#c99a06;--low:#3a78c2;--side:#16233a;}
*{box-sizing:border-box}
html{font-size:15px}
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);background:var(--bg);line-height:1.45}
a{color:var(--brand);text-decoration:none}a:hover{text-decoration:underline}
.topbar{display:flex;align-items:center;gap:18px;background:#fff;border-bottom:1px solid var(--line);padding:0 22px;height:54px;position:sticky;top:0;z-index:5}
.brand{display:flex;align-items:center;gap:8px;font-weight:700;font-size:1.1rem;color:var(--brand)}
.brand:hover{text-decoration:none}.logo{color:var(--brand)}
.school{color:var(--muted);border-left:1px solid var(--line);padding-left:18px}
.who{margin-left:auto;display:flex;align-items:center;gap:12px;font-size:.93rem}
.user{font-weight:600}.role-tag{background:#eef3fb;color:var(--brand-dark);border-radius:20px;padding:2px 10px;font-size:.8rem}
form.inline{display:inline;margin:0}
.linklike{background:none;border:0;color:var(--brand);cursor:pointer;font:inherit;padding:0}
.shell{display:flex;min-height:calc(100vh - 54px)}
nav.side{width:220px;flex:none;background:var(--side);padding:14px 10px;color:#c7d1e0}
nav.side a{display:block;color:#dbe3ef;padding:7px 12px;border-radius:6px;margin:1px 0;font-size:.95rem}
nav.side a:hover{background:#22324f;text-decoration:none}
nav.side a.active{background:var(--brand);color:#fff}
.navgroup{text-transform:uppercase;font-size:.7rem;letter-spacing:.08em;color:#8595ad;margin:14px 12px 4px}
main{flex:1;padding:22px 28px 60px;min-width:0;max-width:1400px}
.page-head{display:flex;flex-wrap:wrap;align-items:baseline;gap:6px 16px;margin-bottom:14px}
.page-head h1{font-size:1.45rem;margin:0}.page-head .sub{margin:0;color:var(--muted)}
h2{font-size:1.1rem;margin:22px 0 10px}h3{font-size:1rem;margin:16px 0 8px}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:16px 18px;margin-bottom:16px;box-shadow:0 1px 2px rgba(20,30,50,.04)}
.card h2:first-child,.card h3:first-child{margin-top:0}
.grid{display:grid;gap:16px}.grid-2{grid-template-columns:repeat(auto-fit,minmax(320px,1fr))}
.stats{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:12px;margin-bottom:16px}
.stat{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:12px 16px}
.stat-label{color:var(--muted);font-size:.82rem;text-transform:uppercase;letter-spacing:.04em}
.stat-value{font-size:1.6rem;font-weight:700;margin-top:2px}.stat-sub{color:var(--muted);font-size:.85rem}
table{width:100%;border-collapse:collapse;background:var(--card)}
th,td{text-align:left;padding:7px 10px;border-bottom:1px solid var(--line);vertical-align:top;font-size:.93rem}
th{font-size:.78rem;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);font-weight:600;background:#fafbfd}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.table-wrap{overflow-x:auto;border:1px solid var(--line);border-radius:10px;background:var(--card);margin-bottom:16px}
.table-wrap table{border:0}.table-wrap tr:last-child td{border-bottom:0}
tr.flagged td{background:#fff7e8}tr.blocked td{background:#fdf0ef}tr.focus td:first-child{box-shadow:inset 4px 0 0 var(--high)}
.badge{display:inline-block;border-radius:4px;padding:1px 7px;font-size:.78rem;font-weight:600;color:#fff;white-space:nowrap}
.sev-critical{background:var(--crit)}.sev-high{background:var(--high)}.sev-medium{background:var(--med)}.sev-low{background:var(--low)}.sev-none{background:#b8c0cc}
.act-block{background:var(--err)}.act-flag{background:var(--warn)}.act-allow{background:var(--ok)}.act-rewrite{background:#6b5bd2}
.st-open{background:#c0392b}.st-investigating{background:#d35400}.st-closed{background:#5d6778}.st-new{background:var(--brand)}.st-acknowledged{background:#5d6778}.st-escalated{background:var(--crit)}.st-unblocked{background:var(--ok)}.st-kept{background:#5d6778}
.chip{display:inline-block;background:#eef1f6;border-radius:12px;padding:1px 9px;font-size:.8rem;margin:1px 2px 1px 0;color:#33405a}
.muted{color:var(--muted)}.small{font-size:.85rem}.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.86rem}
.alert{border-radius:8px;padding:10px 14px;margin:0 0 14px;border:1px solid}
.alert pre.msg{margin:0;white-space:pre-wrap;font-family:inherit}
.alert-error{background:#fdf0ef;border-color:#f1c4bf;color:#7d2318}.alert-ok{background:#eaf7f0;border-color:#b8e2cb;color:#145c3b}.alert-info{background:#eef4fd;border-color:#c6d8f3;color:#1d3f73}.alert-warn{background:#fff8e6;border-color:#f0dca8;color:#6b4e0c}
.empty{padding:26px;text-align:center;color:var(--muted);background:var(--card);border:1px dashed var(--line);border-radius:10px}
label{display:block;font-weight:600;font-size:.88rem;margin:10px 0 4px}
input[type=text],input[type=password],input[type=url],input[type=date],input[type=search],input[type=number],select,textarea{font:inherit;padding:7px 10px;border:1px solid #cbd3df;border-radius:7px;background:#fff;color:var(--ink);max-width:100%}
input[type=text],input[type=password],input[type=url],input[type=search],textarea{width:100%}
textarea{min-height:90px}
input:focus,select:focus,textarea:focus{outline:2px solid #9dbcf0;border-color:var(--brand)}
.btn,button.btn{display:inline-block;font:inherit;font-weight:600;border-radius:7px;padding:7px 16px;border:1px solid var(--brand);background:var(--brand);color:#fff;cursor:pointer}
.btn:hover{background:var(--brand-dark);text-decoration:none}
.btn.secondary{background:#fff;color:var(--brand)}.btn.secondary:hover{background:#eef3fb}
.btn.danger{background:var(--err);border-color:var(--err)}.btn.small{padding:3px 10px;font-size:.85rem}
.actions{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin-top:12px}
.filters{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-end;margin-bottom:14px}
.filters label{margin:0 0 3px}.filters>div{min-width:140px}
.form-grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:4px 16px}
.savebar{position:sticky;bottom:0;background:#fff;border-top:1px solid var(--line);padding:10px 14px;display:flex;gap:12px;align-items:center;z-index:3;border-radius:0 0 10px 10px;box-shadow:0 -2px 6px rgba(20,30,50,.06)}
.savebar input[type=text]{flex:1}
.matrix-wrap{overflow:auto;max-height:70vh;border:1px solid var(--line);border-radius:10px 10px 0 0;background:#fff}
table.matrix th,table.matrix td{padding:4px 6px;white-space:nowrap}
table.matrix thead th{position:sticky;top:0;z-index:2;text-align:center;background:#fafbfd}
table.matrix td.cat{position:sticky;left:0;background:#fff;z-index:1;font-weight:500}
table.matrix td.cat .muted{font-weight:400}
table.matrix select{padding:3px 4px;font-size:.83rem;border-radius:5px;width:9.5em}
select.st-block{background:#fbe3e0;border-color:#e8a79f}select.st-flag{background:#fff2d6;border-color:#e9cf8c}select.st-allow{background:#e6f5ec;border-color:#a9d9bd}select.st-blockflag{background:#f6d2cd;border-color:#d98b80}
select.changed{outline:2px solid var(--brand)}
td.locked{color:var(--crit);font-weight:600;text-align:center}
.inherit{font-size:.72rem;color:var(--muted);display:block;text-align:center}
.verdicts td{vertical-align:middle}
.episode{display:grid;grid-template-columns:auto 1fr auto;gap:4px 14px;align-items:start}
.episode .who{font-weight:700}
.chart{width:100%;height:auto;display:block}
.chart text{font-family:inherit;font-size:11px;fill:#5d6778}
.legend{display:flex;gap:14px;font-size:.85rem;color:var(--muted);margin-top:4px}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;vertical-align:-1px}.lg-blocked{background:#c0392b}.lg-flagged{background:#d68910}.lg-total{background:#1f5fbf}
main.print{max-width:1000px;margin:0 auto}.mt0{margin:0}.mb{margin:0 0 14px}.neg{margin:-4px 0 16px}.grow{flex:1;min-width:260px}.note{border-top:1px solid var(--line);padding-top:6px;margin-top:6px}
.checks{display:flex;flex-wrap:wrap;gap:4px 14px;margin:2px 0 8px}label.check{display:inline-flex;align-items:center;gap:4px;font-weight:400;margin:0}
span.label{display:block;font-weight:600;font-size:.88rem;margin:10px 0 4px}select[multiple]{width:100%}
.kv{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;font-size:.93rem}.kv dt{color:var(--muted)}.kv dd{margin:0}
.diff{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.82rem;white-space:pre-wrap;background:#fbfcfe;border:1px solid var(--line);border-radius:8px;padding:8px;overflow-x:auto}
.diff .add{background:#e6f5ec;display:block}.diff .del{background:#fbe3e0;display:block}.diff .ctx{color:#77808f;display:block}
.dot{display:inline-block;width:9px;height:9px;border-radius:50%;margin-right:6px}.dot.ok{background:var(--ok)}.dot.bad{background:var(--err)}.dot.warn{background:var(--warn)}
body.bare{min-height:100vh;display:flex;align-items:flex-start;justify-content:center;padding:8vh 16px;background:linear-gradient(160deg,#eaf0fa,#f6f7fb)}
.bare-card{background:#fff;border:1px solid var(--line);border-radius:14px;padding:28px 30px;width:100%;max-width:440px;box-shadow:0 6px 24px rgba(20,40,80,.08)}
.bare-brand{display:flex;align-items:center;gap:8px;font-weight:700;font-size:1.25rem;color:var(--brand)}
.bare-school{color:var(--muted);margin:2px 0 18px}
.bare-card h1{font-size:1.25rem;margin:0 0 10px}
.bare-card .btn{width:100%;margin-top:16px;padding:9px}
@media print{nav.side,.topbar,.noprint,.actions{display:none!important}main{padding:0}body{background:#fff}.card,.table-wrap{border:0;box-shadow:none}}
@media (max-width:900px){.shell{flex-direction:column}nav.side{width:auto;display:flex;flex-wrap:wrap;gap:2px;padding:8px}
nav.side .navgroup{display:none}nav.side a{padding:6px 10px;font-size:.9rem}main{padding:16px 14px 60px}.school{display:none}}
"#;

pub const JS: &str = r#"
document.addEventListener('change', function (e) {
  var s = e.target;
  if (s.matches && s.matches('select[data-initial]')) {
    s.classList.toggle('changed', s.value !== s.getAttribute('data-initial'));
    s.className = s.className.replace(/\bst-\w+/g, '');
    var v = s.value;
    s.classList.add(v === 'allow' ? 'st-allow' : v === 'block' ? 'st-block' : v.indexOf('block') === 0 ? 'st-blockflag' : 'st-flag');
    var n = document.querySelectorAll('select.changed').length, c = document.getElementById('changed-count');
    if (c) c.textContent = n ? n + (n === 1 ? ' change' : ' changes') + ' not saved' : '';
  }
});
document.addEventListener('submit', function (e) {
  var f = e.target, q = f.getAttribute('data-confirm');
  if (q && !window.confirm(q)) e.preventDefault();
});
"#;
