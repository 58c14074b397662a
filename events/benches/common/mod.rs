//! What the events benches share: the hosts and the mix of events they store.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use jiff::Timestamp;
use schoolgate_classifier::{Action, Category, CategorySet, Severity};
use schoolgate_events::{AccessEvent, Source};

/// The real popular domains from `../shared/data/benign/top.txt.gz` when
/// present, made-up ones otherwise.
pub fn hosts() -> Vec<String> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/benign/top.txt.gz");
    let hosts: Vec<String> = std::fs::File::open(&path)
        .map(|f| {
            BufReader::new(flate2::read::GzDecoder::new(f))
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.split_once(',').map(|(_, h)| h.to_owned()))
                .take(20_000)
                .collect()
        })
        .unwrap_or_default();
    if hosts.is_empty() {
        (0..20_000).map(|i| format!("host{i}.example")).collect()
    } else {
        hosts
    }
}

/// A realistic mix: mostly allowed, some blocked, a few flagged, a user on most.
pub fn event(i: u64, hosts: &[String], start_ms: i64) -> AccessEvent {
    let host = &hosts[(i as usize * 7919) % hosts.len()];
    let (action, categories, severity) = match i % 50 {
        0..=44 => (Action::Allow, CategorySet::EMPTY, None),
        45..=47 => (Action::Block, CategorySet::of(Category::Games), None),
        48 => (
            Action::Block,
            CategorySet::of(Category::Proxy),
            Some(Severity::Medium),
        ),
        _ => (
            Action::Flag,
            CategorySet::of(Category::SelfHarm),
            Some(Severity::High),
        ),
    };
    AccessEvent::new(
        if i.is_multiple_of(3) {
            Source::Dns
        } else {
            Source::Proxy
        },
        IpAddr::V4(Ipv4Addr::new(
            10,
            (i % 8) as u8,
            (i / 250 % 250) as u8,
            (i % 250) as u8 + 1,
        )),
        host.clone(),
    )
    .at(Timestamp::from_millisecond(start_ms + (i / 10) as i64).unwrap())
    .with_school("north")
    .with_node("node-1")
    .with_role(["pupil-ks3", "pupil-ks4", "staff"][(i % 3) as usize])
    .with_user(format!("user{}", i % 1500))
    .with_method("GET")
    .with_path(format!("/articles/{}", i % 10_000))
    .with_action(action)
    .with_categories(categories)
    .with_severity(severity)
    .with_rule("default", "allowed for pupil-ks3: no restricted category")
    .with_status(200)
    .with_transfer(512, 20_000 + i % 4096, 1_500)
}
