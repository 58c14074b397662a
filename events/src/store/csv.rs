//! CSV export of events (RFC 4180), safe to open in a spreadsheet.

use std::io::{self, Write};

use crate::event::AccessEvent;

pub const HEADER: &[&str] = &[
    "id",
    "time",
    "source",
    "school",
    "node",
    "client_ip",
    "user",
    "device",
    "role",
    "method",
    "host",
    "path",
    "search_terms",
    "action",
    "categories",
    "severity",
    "rule",
    "reason",
    "status",
    "bytes_up",
    "bytes_down",
    "duration_us",
    "cached",
];

pub fn write_header(out: &mut dyn Write) -> io::Result<()> {
    write_row(out, HEADER.iter().map(|s| (*s).to_owned()))
}

pub fn write_event(out: &mut dyn Write, e: &AccessEvent) -> io::Result<()> {
    write_row(
        out,
        [
            e.id.to_string(),
            e.time.to_string(),
            e.source.name().to_owned(),
            e.school.clone(),
            e.node.clone(),
            e.client_ip.to_string(),
            e.user.clone().unwrap_or_default(),
            e.device.clone().unwrap_or_default(),
            e.role.clone(),
            e.method.clone(),
            e.host.clone(),
            e.path.clone(),
            e.search_terms.clone(),
            e.action.name().to_owned(),
            e.categories.names().join(","),
            e.severity.map(|s| s.name().to_owned()).unwrap_or_default(),
            e.rule.clone(),
            e.reason.clone(),
            e.status.to_string(),
            e.bytes_up.to_string(),
            e.bytes_down.to_string(),
            e.duration_us.to_string(),
            e.cached.to_string(),
        ],
    )
}

fn write_row(out: &mut dyn Write, fields: impl IntoIterator<Item = String>) -> io::Result<()> {
    let mut line = String::new();
    for (i, f) in fields.into_iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        field(&mut line, &f);
    }
    line.push_str("\r\n");
    out.write_all(line.as_bytes())
}

/// Quotes when needed, and defuses spreadsheet formulas: search terms and paths
/// are typed by pupils, and `=HYPERLINK(...)` in an export opened by the DSL in
/// Excel would run.
fn field(line: &mut String, value: &str) {
    let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = formula || value.contains([',', '"', '\n', '\r']);
    if !quote {
        line.push_str(value);
        return;
    }
    line.push('"');
    if formula {
        line.push('\'');
    }
    for c in value.chars() {
        if c == '"' {
            line.push('"');
        }
        line.push(c);
    }
    line.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &str) -> String {
        let mut s = String::new();
        field(&mut s, v);
        s
    }

    #[test]
    fn quoting_and_formula_defusing() {
        assert_eq!(one("plain"), "plain");
        assert_eq!(one("a,b"), "\"a,b\"");
        assert_eq!(one("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(one("=1+1"), "\"'=1+1\"");
        assert_eq!(one("line\nbreak"), "\"line\nbreak\"");
    }
}
