//! `schoolgate check`: the verdict for URLs or hosts, for one role or every role.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use jiff::Timestamp;
use schoolgate_classifier::{Policy, Request, RoleId, Verdict};
use serde_json::json;

use crate::load;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[arg(long, short, env = "SCHOOLGATE_CONFIG", default_value = load::DEFAULT_CONFIG)]
    config: PathBuf,
    /// The role to decide for; every role when omitted.
    #[arg(long)]
    role: Option<String>,
    /// When the request is made: RFC 3339 (`2026-11-24T12:30:00Z`) or school-local
    /// time (`2026-11-24 12:30`). Default: now.
    #[arg(long)]
    at: Option<String>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// Read URLs or hosts from standard input, one per line.
    #[arg(long)]
    stdin: bool,
    /// URLs (`https://host/path?q`) or hosts.
    urls: Vec<String>,
}

pub fn run(args: &CheckArgs) -> Result<ExitCode> {
    if args.urls.is_empty() && !args.stdin {
        bail!("give URLs or hosts to check, or --stdin");
    }
    let (policy, report) = load::policy(&args.config)?;
    for failure in report.failures() {
        eprintln!("warning: list {failure}");
    }
    let roles: Vec<RoleId> = match &args.role {
        Some(name) => vec![policy.role_id(name).with_context(|| {
            let known: Vec<_> = policy.roles().map(|(_, r)| r.name.to_string()).collect();
            format!(
                "no role `{name}` in the configuration (roles: {})",
                known.join(", ")
            )
        })?],
        None => policy.roles().map(|(id, _)| id).collect(),
    };
    let at = parse_time(args.at.as_deref(), &policy)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let decide = |url: &str, out: &mut dyn Write| -> Result<()> {
        let url = url.trim();
        if url.is_empty() || url.starts_with('#') {
            return Ok(());
        }
        for role in &roles {
            let verdict = policy.decide(&Request::url(*role, url, at));
            print_verdict(out, url, &verdict, args.json)?;
        }
        Ok(())
    };
    for url in &args.urls {
        decide(url, &mut out)?;
    }
    if args.stdin {
        let stdin = std::io::stdin();
        let mut line = String::new();
        let mut input = stdin.lock();
        loop {
            line.clear();
            if input.read_line(&mut line)? == 0 {
                break;
            }
            decide(&line, &mut out)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn print_verdict(out: &mut dyn Write, input: &str, v: &Verdict, json: bool) -> Result<()> {
    if json {
        let line = json!({
            "input": input,
            "role": &*v.role,
            "action": v.action.name(),
            "categories": v.categories.names(),
            "category": v.category.map(|c| c.name()),
            "severity": v.severity.map(|s| s.name()),
            "rule": v.rule.to_string(),
            "reason": v.reason(),
            "search_terms": v.search_terms,
            "rewrite": v.rewrite.map(|r| r.cname),
        });
        writeln!(out, "{line}")?;
    } else {
        writeln!(
            out,
            "{:<8} {:<12} {input}\n         {}",
            v.action.name().to_uppercase(),
            v.role,
            v.reason()
        )?;
    }
    Ok(())
}

fn parse_time(at: Option<&str>, policy: &Policy) -> Result<Timestamp> {
    let Some(at) = at else {
        return Ok(Timestamp::now());
    };
    if let Ok(ts) = at.parse::<Timestamp>() {
        return Ok(ts);
    }
    let civil: jiff::civil::DateTime = at
        .replacen(' ', "T", 1)
        .parse()
        .with_context(|| format!("--at `{at}`: give RFC 3339 or `YYYY-MM-DD HH:MM` school time"))?;
    Ok(civil.to_zoned(policy.time_zone().clone())?.timestamp())
}
