//! Every verdict for a fixed, varied set of requests, one line each, so that a
//! change meant only to make `decide()` faster can be checked to change nothing:
//!
//!     cargo run --release -p schoolgate-benches --bin verdict_digest > before.txt
//!     (change the classifier)
//!     cargo run --release -p schoolgate-benches --bin verdict_digest > after.txt
//!     diff before.txt after.txt
//!
//! The requests: popular hosts and listed hosts (every UT1 file, sampled) as host
//! only and as URLs with plain, keyword-laden, leetspeak, upper-case and
//! percent-encoded paths and queries; listed URL entries; search URLs; odd hosts.

use std::io::{BufRead, BufReader, Write};

use anyhow::Result;
use schoolgate_benches::{compile, config_with_all_lists, popular_domains, shared_data};
use schoolgate_classifier::{Policy, Request};

/// Paths and queries that exercise the keyword scan and the URL entries.
const TAILS: &[&str] = &[
    "/articles/2026/7/some-page-title?ref=home&page=2",
    "/",
    "?q=x",
    "/free-porn-videos",
    "/Casino/Bonus?utm=1",
    "/p0rn/4ll",
    "/essex/sussex-analysis",
    "/unblock%20proxy/vpn",
    "/%70orn%ZZ",
    "/bet365/odds?sex=1",
    "/games/chess#frag",
    "/search?q=poker+casino&page=2",
    "/cb/cats.html?porn=casino",
];

const SEARCHES: &[&str] = &[
    "https://www.google.co.uk/search?q=how+do+volcanoes+form&hl=en",
    "https://www.google.com/search?q=how+to+kill+myself",
    "https://www.google.com/search?q=Self+Harming+tips",
    "https://www.bing.com/search?q=free+porn",
    "https://duckduckgo.com/?q=online+casino&t=h_",
    "https://www.youtube.com/results?search_query=sex+videos",
    "https://search.yahoo.com/search?p=suicide+methods",
    "https://www.google.com/maps?q=essex",
    "https://www.google.com/search?q=caf%C3%A9+p0rn",
    "http://www.google.fr/?q=bet365",
    "https://www.ecosia.org/search?q=drugs+buy",
];

const ODD: &[&str] = &[
    "WWW.Example.COM.",
    "10.1.2.3",
    "[::1]",
    "::ffff:10.0.0.1",
    "a..b",
    "bad host",
    "",
    ".",
    "xn--80ak6aa92e.com",
    "p0rnhub.com",
    "BET365.COM",
    "www.essex.ac.uk",
    "analytics.google.com",
];

fn list_sample(every: usize) -> Result<Vec<String>> {
    let dir = shared_data()?.join("lists/ut1");
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gz"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let reader = BufReader::new(flate2::read::GzDecoder::new(std::fs::File::open(&path)?));
        for (i, line) in reader.lines().enumerate() {
            let line = line?;
            let line = line.trim();
            if i % every == 0 && !line.is_empty() && !line.starts_with('#') {
                out.push(line.to_owned());
            }
        }
    }
    Ok(out)
}

fn main() -> Result<()> {
    let policy = compile(config_with_all_lists(&[])?)?;
    let role = policy.role_id("pupil").expect("pupil role");
    let at = jiff::Timestamp::UNIX_EPOCH;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut emit = |policy: &Policy, kind: &str, input: &str| -> std::io::Result<()> {
        let req = match kind {
            "host" => Request::host(role, input, at),
            _ => Request::url(role, input, at),
        };
        writeln!(out, "{kind}\t{input}\t{:?}", policy.decide(&req))
    };
    let mut hosts: Vec<String> = popular_domains()?.into_iter().take(5_000).collect();
    hosts.extend(list_sample(200)?);
    for (i, h) in hosts.iter().enumerate() {
        emit(&policy, "host", h)?;
        emit(&policy, "host", &format!("www.{h}"))?;
        let tail = TAILS[i % TAILS.len()];
        emit(&policy, "url", &format!("https://www.{h}{tail}"))?;
        emit(
            &policy,
            "url",
            &format!("http://{h}{}", TAILS[(i + 3) % TAILS.len()]),
        )?;
    }
    for s in SEARCHES {
        emit(&policy, "url", s)?;
    }
    for h in ODD {
        emit(&policy, "host", h)?;
        for t in TAILS {
            emit(&policy, "url", &format!("http://{h}{t}"))?;
        }
    }
    Ok(())
}
