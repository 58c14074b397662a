//! What people see: the block page, error pages, and the PAC file.
//!
//! Pages are small, self-contained HTML (no external assets: the page must render
//! when everything else is blocked), escaped throughout, never cached, and carry
//! the event id so a pupil's "report a wrong block" lands on the right event.

use std::fmt::Write as _;

use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use ipnet::IpNet;

use crate::body::ProxyBody;

/// The reason header on refusals a browser will not render (CONNECT), for tools
/// and people reading `curl -v`.
pub const REASON_HEADER: &str = "x-schoolgate-reason";
/// The event id of a refusal.
pub const REF_HEADER: &str = "x-schoolgate-ref";

/// Everything a block page shows.
#[derive(Clone, Debug)]
pub struct BlockPage<'a> {
    pub school: &'a str,
    pub contact: &'a str,
    /// What was blocked: `host/path` as requested.
    pub what: &'a str,
    pub category: &'a str,
    pub rule: &'a str,
    pub reason: &'a str,
    pub role: &'a str,
    /// Local time, e.g. `2026-11-24 10:03:12 GMT`.
    pub time: &'a str,
    /// The event id.
    pub reference: &'a str,
    /// `{dashboard.url}/report?ref={id}`.
    pub report_url: &'a str,
    pub status: StatusCode,
}

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
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

/// A header value from text that may hold anything: control characters and
/// non-ASCII are replaced, so building it never fails.
pub fn header_text(s: &str) -> HeaderValue {
    let clean: String = s
        .chars()
        .take(300)
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect();
    HeaderValue::from_str(&clean).unwrap_or(HeaderValue::from_static("blocked"))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:40em;margin:3em auto;\
padding:0 1em;color:#222}h1{font-size:1.6em}dl{display:grid;grid-template-columns:auto 1fr;\
gap:.3em 1em}dt{font-weight:bold}.ref{font-family:monospace}";

fn page(status: StatusCode, title: &str, school: &str, body: &str) -> String {
    let mut s = String::with_capacity(1024 + body.len());
    let _ = writeln!(
        s,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width\"><title>{} - {}</title>\
<style>{STYLE}</style></head><body><p>{}</p><h1>{}</h1>{body}</body></html>",
        escape(title),
        status.as_u16(),
        escape(if school.is_empty() {
            "schoolgate"
        } else {
            school
        }),
        escape(title),
    );
    s
}

/// The default block page (HTML, 403).
pub fn block_page(p: &BlockPage<'_>) -> Response<ProxyBody> {
    let mut body = String::with_capacity(1024);
    let _ = write!(
        body,
        "<p>This page has been blocked by the school's web filter.</p><dl>\
<dt>Address</dt><dd>{}</dd><dt>Category</dt><dd>{}</dd><dt>Rule</dt><dd>{}</dd>\
<dt>Why</dt><dd>{}</dd><dt>Time</dt><dd>{}</dd><dt>Reference</dt><dd class=\"ref\">{}</dd></dl>\
<p>If you think this is wrong, <a href=\"{}\">report a wrong block</a>{}.</p>",
        escape(p.what),
        escape(p.category),
        escape(p.rule),
        escape(p.reason),
        escape(p.time),
        escape(p.reference),
        escape(p.report_url),
        if p.contact.is_empty() {
            String::new()
        } else {
            format!(" or contact {}", escape(p.contact))
        },
    );
    let html = page(p.status, "Blocked", p.school, &body);
    let mut resp = html_response(p.status, html);
    let h = resp.headers_mut();
    h.insert(REASON_HEADER, header_text(p.reason));
    h.insert(REF_HEADER, header_text(p.reference));
    resp
}

/// An error page: what went wrong, whose fault, and the reference.
pub fn error_page(
    status: StatusCode,
    title: &str,
    detail: &str,
    school: &str,
    reference: &str,
) -> Response<ProxyBody> {
    let body = format!(
        "<p>{}</p><p>Reference: <span class=\"ref\">{}</span></p>",
        escape(detail),
        escape(reference)
    );
    let mut resp = html_response(status, page(status, title, school, &body));
    let h = resp.headers_mut();
    h.insert(REASON_HEADER, header_text(detail));
    h.insert(REF_HEADER, header_text(reference));
    resp
}

fn html_response(status: StatusCode, html: String) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(html));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A refusal with no readable body (CONNECT: browsers do not render it), with
/// the reason in a header and a one-line text body for tools.
pub fn refusal(status: StatusCode, reason: &str, reference: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(format!(
        "{reason}\nreference: {reference}\n"
    )));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(REASON_HEADER, header_text(reason));
    h.insert(REF_HEADER, header_text(reference));
    resp
}

/// The PAC file: the school's own hosts and internal IPv4 ranges go direct,
/// everything else through the proxy. No `DIRECT` fallback: if the proxy is
/// down, browsing stops rather than going round the filter.
pub fn pac(proxy: &str, direct: &[String], internal: &[IpNet]) -> String {
    let mut s = String::with_capacity(512);
    s.push_str("// Generated by schoolgate from the school configuration.\n");
    s.push_str("function FindProxyForURL(url, host) {\n");
    s.push_str("  host = host.toLowerCase();\n");
    s.push_str("  if (isPlainHostName(host)) return \"DIRECT\";\n");
    for d in direct {
        let d = js_string(&d.to_ascii_lowercase());
        let _ = writeln!(
            s,
            "  if (host == \"{d}\" || dnsDomainIs(host, \".{d}\")) return \"DIRECT\";"
        );
    }
    let v4: Vec<_> = internal
        .iter()
        .filter_map(|n| match n {
            IpNet::V4(n) if !n.addr().is_loopback() => Some(*n),
            _ => None,
        })
        .collect();
    if !v4.is_empty() {
        s.push_str("  if (/^\\d+\\.\\d+\\.\\d+\\.\\d+$/.test(host)) {\n");
        for n in v4 {
            let _ = writeln!(
                s,
                "    if (isInNet(host, \"{}\", \"{}\")) return \"DIRECT\";",
                n.network(),
                n.netmask()
            );
        }
        s.push_str("  }\n");
    }
    let _ = writeln!(s, "  return \"PROXY {}\";", js_string(proxy));
    s.push_str("}\n");
    s
}

fn js_string(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'))
        .collect()
}

pub fn pac_response(text: String) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(text));
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ns-proxy-autoconfig"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<a href='x'>&"), "&lt;a href=&#39;x&#39;&gt;&amp;");
    }

    #[test]
    fn pac_lists_direct_hosts_and_internal_ranges() {
        let nets: Vec<IpNet> = vec![
            "10.0.0.0/8".parse().expect("net"),
            "127.0.0.0/8".parse().expect("net"),
        ];
        let text = pac("proxy.school:3128", &["intranet.school\"".into()], &nets);
        assert!(text.contains("dnsDomainIs(host, \".intranet.school\")"));
        assert!(text.contains("isInNet(host, \"10.0.0.0\", \"255.0.0.0\")"));
        assert!(!text.contains("127.0.0.0"));
        assert!(text.contains("return \"PROXY proxy.school:3128\";"));
    }
}
