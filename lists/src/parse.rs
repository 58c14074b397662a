//! One line of each format into entries.
//!
//! A line yields entries (a hosts line may yield several), or is skipped (blank,
//! comment), or is unsupported (a well-formed rule that is not about a whole
//! domain or URL), or is malformed with a message. A hosts line can be both: its
//! good names are delivered and its bad one reported, so one typo does not hide
//! the rest of the line.

use std::net::IpAddr;

use crate::format::{Entry, Format};
use crate::name::{normalise_host, shown};

/// What became of one line.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct LineOutcome {
    pub entries: u64,
    pub problem: Option<Problem>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Problem {
    Unsupported,
    Malformed(String),
}

impl LineOutcome {
    fn entries(entries: u64) -> LineOutcome {
        LineOutcome {
            entries,
            problem: None,
        }
    }

    fn unsupported() -> LineOutcome {
        LineOutcome {
            entries: 0,
            problem: Some(Problem::Unsupported),
        }
    }

    fn malformed(message: String) -> LineOutcome {
        LineOutcome {
            entries: 0,
            problem: Some(Problem::Malformed(message)),
        }
    }

    fn from_result(result: Result<u64, String>) -> LineOutcome {
        match result {
            Ok(entries) => LineOutcome::entries(entries),
            Err(message) => LineOutcome::malformed(message),
        }
    }
}

/// Parses one line (without its line break) of `format`, handing entries to `sink`.
pub(crate) fn parse_line(
    format: Format,
    line: &str,
    scratch: &mut String,
    sink: &mut dyn FnMut(Entry<'_>),
) -> LineOutcome {
    let line = trim(line);
    if line.is_empty() {
        return LineOutcome::default();
    }
    match format {
        Format::Domains => parse_domain(line, scratch, sink),
        Format::Hosts => parse_hosts(line, scratch, sink),
        Format::Adblock => parse_adblock(line, scratch, sink),
        Format::Urls | Format::Ut1 => parse_url(line, scratch, sink),
    }
}

/// Trims blanks, Unicode ones too, at the cost of an ASCII trim for the common line.
fn trim(line: &str) -> &str {
    let line = line.trim_ascii();
    let bytes = line.as_bytes();
    if bytes.first().is_some_and(|b| !b.is_ascii()) || bytes.last().is_some_and(|b| !b.is_ascii()) {
        line.trim()
    } else {
        line
    }
}

/// A `#` starts a comment at the start of a line or after a blank; inside a word
/// it is data (a URL fragment).
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'#', &bytes[from..]) {
        let at = from + i;
        if at == 0 || bytes[at - 1].is_ascii_whitespace() {
            return line[..at].trim_end();
        }
        from = at + 1;
    }
    line
}

fn parse_domain(line: &str, scratch: &mut String, sink: &mut dyn FnMut(Entry<'_>)) -> LineOutcome {
    let text = strip_comment(line);
    if text.is_empty() {
        return LineOutcome::default();
    }
    if text.starts_with("||") || text.starts_with("@@") {
        return LineOutcome::malformed(
            "an Adblock rule in a domain list; use format = \"adblock\"".to_owned(),
        );
    }
    // One scan finds every byte that makes a line something other than a name, so
    // the common line pays for a single memchr.
    if memchr::memchr3(b'/', b' ', b'\t', text.as_bytes()).is_some() {
        return LineOutcome::malformed(misplaced_line(text));
    }
    LineOutcome::from_result(normalise_host(text, scratch).map(|name| {
        sink(Entry::Domain(name));
        1
    }))
}

/// Says which format a line that does not belong in a domain list looks like.
/// Called only for a line with a blank or a `/` in it.
fn misplaced_line(text: &str) -> String {
    let mut fields = text.split_ascii_whitespace();
    let first = fields.next().unwrap_or(text);
    if fields.next().is_none() {
        "a URL in a domain list; use format = \"urls\"".to_owned()
    } else if first.parse::<IpAddr>().is_ok() {
        "a hosts-file line in a domain list; use format = \"hosts\"".to_owned()
    } else {
        format!(
            "more than one field in `{}`; a domain list has one name per line",
            shown(text)
        )
    }
}

fn parse_hosts(line: &str, scratch: &mut String, sink: &mut dyn FnMut(Entry<'_>)) -> LineOutcome {
    let text = strip_comment(line);
    let mut fields = text.split_ascii_whitespace();
    let Some(address) = fields.next() else {
        return LineOutcome::default();
    };
    // A zone (`fe80::1%lo0`, seen in macOS hosts files) does not change what the
    // line says about its names.
    let bare_address = address.split_once('%').map_or(address, |(a, _)| a);
    let Ok(ip) = bare_address.parse::<IpAddr>() else {
        return LineOutcome::malformed(format!(
            "`{}` is not an IP address; a hosts line is `<address> <name>...`",
            shown(address)
        ));
    };

    let mut outcome = LineOutcome::default();
    let mut names = 0;
    for field in fields {
        names += 1;
        match normalise_host(field, scratch) {
            Ok(name) if is_local_name(name, ip) => {}
            Ok(name) => {
                sink(Entry::Domain(name));
                outcome.entries += 1;
            }
            Err(message) => {
                if outcome.problem.is_none() {
                    outcome.problem = Some(Problem::Malformed(message));
                }
            }
        }
    }
    if names == 0 {
        return LineOutcome::malformed(format!(
            "no host name after the address `{}`",
            shown(address)
        ));
    }
    outcome
}

/// Names every hosts file maps for the machine itself; they are not block entries.
fn is_local_name(name: &str, address: IpAddr) -> bool {
    matches!(
        name,
        "localhost" | "localhost.localdomain" | "broadcasthost" | "local"
    )
    // `ip6-localhost`, `ip6-allnodes`, ...: single labels only, so a real domain
    // that happens to start with `ip6-` is still an entry.
    || (name.starts_with("ip6-") && !name.contains('.'))
    // `0.0.0.0 0.0.0.0` heads some published hosts files.
    || name.parse::<IpAddr>().is_ok_and(|n| n == address)
}

/// Adblock options that do not narrow a `||name^` rule below "the whole domain",
/// or narrow it only in ways a domain list cannot express and which list authors
/// use on tracker and malware domains that are to be blocked outright. Any other
/// option (`domain=`, `denyallow=`, `badfilter`, `script`, `redirect=`, ...) makes
/// the rule about something other than the domain, so it is unsupported.
const WHOLE_DOMAIN_OPTIONS: &[&str] = &[
    "third-party",
    "3p",
    "~third-party",
    "first-party",
    "1p",
    "~first-party",
    "important",
    "all",
    "document",
    "doc",
    "match-case",
];

fn parse_adblock(line: &str, scratch: &mut String, sink: &mut dyn FnMut(Entry<'_>)) -> LineOutcome {
    // `[Adblock Plus 2.0]` headers and `!` comments.
    if line.starts_with('!') || line.starts_with('[') {
        return LineOutcome::default();
    }
    // Cosmetic rules (`example.com##.ad`, `##.banner`, exceptions `#@#`, ...) come
    // before the `#` comment check because a generic one starts with `##`.
    if ["##", "#@#", "#?#", "#$#", "#%#"]
        .iter()
        .any(|marker| line.contains(marker))
    {
        return LineOutcome::unsupported();
    }
    if line.starts_with('#') {
        return LineOutcome::default();
    }
    let Some(rule) = line.strip_prefix("||") else {
        // `@@` exceptions, `|https://...` anchors, `/regex/`, bare substrings.
        return LineOutcome::unsupported();
    };
    let rule = rule.strip_prefix("*.").unwrap_or(rule);
    let end = rule.find(['^', '$', '|', '/', '*']).unwrap_or(rule.len());
    let (name, tail) = rule.split_at(end);
    let Some(after_separator) = tail.strip_prefix('^') else {
        // No `^` (prefix match: `||ads` also hits `adsense.com`), a path, or a
        // wildcard in the middle.
        return LineOutcome::unsupported();
    };
    let options = match after_separator {
        "" | "|" => "",
        rest => match rest.strip_prefix('$') {
            Some(options) => options,
            None => return LineOutcome::unsupported(),
        },
    };
    if !options.is_empty()
        && !options
            .split(',')
            .all(|o| WHOLE_DOMAIN_OPTIONS.contains(&o.trim()))
    {
        return LineOutcome::unsupported();
    }
    if name.is_empty() {
        return LineOutcome::malformed(format!("no domain in `{}`", shown(line)));
    }
    LineOutcome::from_result(normalise_host(name, scratch).map(|name| {
        sink(Entry::Domain(name));
        1
    }))
}

fn parse_url(line: &str, scratch: &mut String, sink: &mut dyn FnMut(Entry<'_>)) -> LineOutcome {
    let text = strip_comment(line);
    if text.is_empty() {
        return LineOutcome::default();
    }
    if text.bytes().any(|b| b.is_ascii_whitespace()) {
        return LineOutcome::malformed(format!(
            "blank inside `{}`; a URL list has one URL per line",
            shown(text)
        ));
    }
    let rest = match text.split_once("://") {
        None => text,
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            rest
        }
        Some((scheme, _)) => {
            return LineOutcome::malformed(format!(
                "scheme `{}` in a URL list; only http and https URLs are understood",
                shown(scheme)
            ));
        }
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let host = match strip_port(authority) {
        Ok(host) => host,
        Err(message) => return LineOutcome::malformed(message),
    };
    LineOutcome::from_result(normalise_host(host, scratch).map(|host| {
        // `host/` says no more than `host`.
        if path.is_empty() || path == "/" {
            sink(Entry::Domain(host));
        } else {
            sink(Entry::Url { host, path });
        }
        1
    }))
}

/// Drops a `:port` from a URL's authority. An entry covers every port: for a block
/// list, broader is the safe side.
fn strip_port(authority: &str) -> Result<&str, String> {
    if let Some(bracketed) = authority.strip_prefix('[') {
        // `[2001:db8::1]:8080`
        return match bracketed.split_once(']') {
            Some((host, "")) => Ok(host),
            Some((host, port)) if is_port(port.strip_prefix(':').unwrap_or("")) => Ok(host),
            _ => Err(format!("`{}` is not a valid URL host", shown(authority))),
        };
    }
    // A bare IPv6 address (`2001:db8::1/x`) has colons but no port.
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && is_port(port) => Ok(host),
        _ => Ok(authority),
    }
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses one line and returns the entries as text plus the outcome.
    fn parse(format: Format, line: &str) -> (Vec<String>, LineOutcome) {
        let mut scratch = String::new();
        let mut got = Vec::new();
        let outcome = parse_line(format, line, &mut scratch, &mut |e| got.push(e.to_string()));
        (got, outcome)
    }

    fn entries(format: Format, line: &str) -> Vec<String> {
        let (got, outcome) = parse(format, line);
        assert_eq!(outcome.problem, None, "{line:?}");
        assert_eq!(outcome.entries, got.len() as u64);
        got
    }

    fn malformed(format: Format, line: &str) -> String {
        match parse(format, line) {
            (
                got,
                LineOutcome {
                    problem: Some(Problem::Malformed(m)),
                    ..
                },
            ) if got.is_empty() => m,
            other => panic!("{line:?} was not malformed: {other:?}"),
        }
    }

    fn unsupported(format: Format, line: &str) -> bool {
        parse(format, line) == (vec![], LineOutcome::unsupported())
    }

    #[test]
    fn domains() {
        assert_eq!(entries(Format::Domains, "Example.com."), ["example.com"]);
        assert_eq!(entries(Format::Domains, "a.example # note"), ["a.example"]);
        assert!(entries(Format::Domains, "# comment").is_empty());
        assert!(entries(Format::Domains, "   ").is_empty());
        assert_eq!(
            malformed(Format::Domains, "http://x.example/y"),
            "a URL in a domain list; use format = \"urls\""
        );
        assert_eq!(
            malformed(Format::Domains, "x.example/y"),
            "a URL in a domain list; use format = \"urls\""
        );
        assert_eq!(
            malformed(Format::Domains, "0.0.0.0 x.example"),
            "a hosts-file line in a domain list; use format = \"hosts\""
        );
        assert_eq!(
            malformed(Format::Domains, "||x.example^"),
            "an Adblock rule in a domain list; use format = \"adblock\""
        );
        assert_eq!(
            malformed(Format::Domains, "a.example b.example"),
            "more than one field in `a.example b.example`; a domain list has one name per line"
        );
    }

    #[test]
    fn hosts() {
        assert_eq!(
            entries(Format::Hosts, "0.0.0.0 a.example B.example # ads"),
            ["a.example", "b.example"]
        );
        assert_eq!(entries(Format::Hosts, "::1\tad.example"), ["ad.example"]);
        assert!(entries(Format::Hosts, "127.0.0.1 localhost localhost.localdomain").is_empty());
        assert!(entries(Format::Hosts, "::1 ip6-localhost ip6-loopback").is_empty());
        assert!(entries(Format::Hosts, "fe80::1%lo0 localhost").is_empty());
        assert!(entries(Format::Hosts, "255.255.255.255 broadcasthost").is_empty());
        assert!(entries(Format::Hosts, "0.0.0.0 0.0.0.0").is_empty());
        assert_eq!(
            entries(Format::Hosts, "0.0.0.0 ip6-ads.example"),
            ["ip6-ads.example"]
        );
        assert_eq!(
            malformed(Format::Hosts, "ads.example 0.0.0.0"),
            "`ads.example` is not an IP address; a hosts line is `<address> <name>...`"
        );
        assert_eq!(
            malformed(Format::Hosts, "0.0.0.0"),
            "no host name after the address `0.0.0.0`"
        );
    }

    #[test]
    fn a_bad_name_on_a_hosts_line_does_not_hide_the_good_ones() {
        let (got, outcome) = parse(Format::Hosts, "0.0.0.0 a.example b..example c.example");
        assert_eq!(got, ["a.example", "c.example"]);
        assert_eq!(outcome.entries, 2);
        assert_eq!(
            outcome.problem,
            Some(Problem::Malformed("empty label in `b..example`".into()))
        );
    }

    #[test]
    fn adblock() {
        assert_eq!(entries(Format::Adblock, "||ads.example^"), ["ads.example"]);
        assert_eq!(entries(Format::Adblock, "||ads.example^|"), ["ads.example"]);
        assert_eq!(
            entries(Format::Adblock, "||*.ads.example^"),
            ["ads.example"]
        );
        assert_eq!(
            entries(Format::Adblock, "||Track.example^$third-party"),
            ["track.example"]
        );
        assert_eq!(
            entries(Format::Adblock, "||t.example^$important,all"),
            ["t.example"]
        );
        for skipped in ["! Title: x", "[Adblock Plus 2.0]", "# comment", ""] {
            assert!(entries(Format::Adblock, skipped).is_empty(), "{skipped:?}");
        }
        for rule in [
            "@@||good.example^",
            "||ads.example/banner",
            "||ads.*.example^",
            "||ads",
            "||ads.example^$script",
            "||ads.example^$domain=a.example|b.example",
            "example.com##.ad",
            "##.banner",
            "/ads[0-9]+/",
            "|https://ads.example/",
            "ads.example",
        ] {
            assert!(unsupported(Format::Adblock, rule), "{rule:?}");
        }
        assert_eq!(malformed(Format::Adblock, "||^"), "no domain in `||^`");
        assert_eq!(
            malformed(Format::Adblock, "||ad!s.example^"),
            "character `!` in `ad!s.example` is not allowed in a host name (a-z, 0-9, `-`, `_`, `.`)"
        );
    }

    #[test]
    fn urls() {
        assert_eq!(
            entries(Format::Urls, "a.example/x/Y?z=1"),
            ["a.example/x/Y?z=1"]
        );
        assert_eq!(
            entries(Format::Urls, "HTTPS://A.example/x"),
            ["a.example/x"]
        );
        assert_eq!(entries(Format::Urls, "a.example:8080/x"), ["a.example/x"]);
        assert_eq!(
            entries(Format::Urls, "[2001:db8::1]:80/x"),
            ["2001:db8::1/x"]
        );
        assert_eq!(entries(Format::Urls, "2001:db8::1/x"), ["2001:db8::1/x"]);
        assert_eq!(
            entries(Format::Urls, "a.example/x#frag"),
            ["a.example/x#frag"]
        );
        let mut scratch = String::new();
        let mut got = Vec::new();
        parse_line(Format::Urls, "a.example/", &mut scratch, &mut |e| {
            got.push(format!("{e:?}"));
        });
        assert_eq!(got, ["Domain(\"a.example\")"]);
        assert_eq!(
            malformed(Format::Urls, "ftp://a.example/x"),
            "scheme `ftp` in a URL list; only http and https URLs are understood"
        );
        assert_eq!(
            malformed(Format::Urls, "a.example/x y"),
            "blank inside `a.example/x y`; a URL list has one URL per line"
        );
        assert_eq!(
            malformed(Format::Urls, "a..example/x"),
            "empty label in `a..example`"
        );
    }
}
