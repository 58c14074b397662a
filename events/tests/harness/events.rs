//! Deterministic events: event `i` always has the same id and fields, so a test
//! (or a child process) can say which events must be stored.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use jiff::Timestamp;
use schoolgate_classifier::{Action, Category, CategorySet, Severity};
use schoolgate_events::{AccessEvent, Source};
use ulid::Ulid;

/// 2024-03-04T05:06:07.089Z: not aligned to an hour, so periods have edges.
pub const BASE_MS: i64 = 1_709_528_767_089;

pub fn base() -> Timestamp {
    Timestamp::from_millisecond(BASE_MS).expect("valid base time")
}

pub fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).expect("valid time")
}

/// The id of event `i` (time-ordered, unique).
pub fn id(i: u64, spacing_ms: i64) -> Ulid {
    Ulid::from_parts((BASE_MS + i as i64 * spacing_ms) as u64, u128::from(i) + 1)
}

/// Event `i`, `spacing_ms` after event `i - 1`.
pub fn event(i: u64, spacing_ms: i64) -> AccessEvent {
    let time = ts(BASE_MS + i as i64 * spacing_ms);
    let client = if i.is_multiple_of(11) {
        IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0,
            0,
            0,
            0,
            0,
            (i % 9) as u16 + 1,
        ))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 0, (i % 7) as u8, (i % 23) as u8 + 1))
    };
    let role = ["pupil-ks2", "pupil-ks4", "staff", "guest"][(i % 4) as usize];
    let (action, categories, severity) = match i % 10 {
        0..=4 => (Action::Allow, CategorySet::EMPTY, None),
        5 => (
            Action::Allow,
            CategorySet::of(Category::Education).union(CategorySet::of(Category::Search)),
            None,
        ),
        6 => (Action::Block, CategorySet::of(Category::Gambling), None),
        7 => (
            Action::Flag,
            CategorySet::of(Category::SelfHarm),
            Some(
                [
                    Severity::Low,
                    Severity::Medium,
                    Severity::High,
                    Severity::Critical,
                ][(i / 10 % 4) as usize],
            ),
        ),
        8 => (Action::Rewrite, CategorySet::of(Category::Search), None),
        _ => {
            let bypass = [Category::Proxy, Category::Vpn, Category::Doh][(i / 10 % 3) as usize];
            let sev = i.is_multiple_of(3).then_some(Severity::Medium);
            (
                Action::Block,
                CategorySet::of(bypass).union(CategorySet::of(Category::Games)),
                sev,
            )
        }
    };
    // Search terms that would break naive SQL quoting.
    let terms = match i % 13 {
        0 => "it's a \"test\"".to_owned(),
        1 => r"back\slash \' ?".to_owned(),
        2 => "ünïcødé 日本 ?x=1".to_owned(),
        3 => "=HYPERLINK(\"x\")".to_owned(),
        _ => String::new(),
    };
    let mut e = AccessEvent::new(
        Source::from_u8((i % 4) as u8).unwrap_or(Source::Dns),
        client,
        format!("host{}.example", i % 37),
    )
    .at(time)
    .with_school(["", "north", "south"][(i % 3) as usize])
    .with_node(format!("node-{}", i % 2))
    .with_role(role)
    .with_method(if i.is_multiple_of(4) { "A" } else { "GET" })
    .with_path(if i.is_multiple_of(5) {
        String::new()
    } else {
        format!("/p/{i}?q=a,b")
    })
    .with_search_terms(terms)
    .with_action(action)
    .with_categories(categories)
    .with_severity(severity)
    .with_rule(
        format!("list ut1/x: host{}.example", i % 37),
        format!("reason {i}"),
    )
    .with_status([200, 403, 0, 3][(i % 4) as usize])
    .with_transfer(i * 3, i * 1000 + 7, (i % 5000) as u32)
    .with_cached(i.is_multiple_of(2));
    if !i.is_multiple_of(5) {
        e = e.with_user(format!("user{}", i % 17));
    }
    if i.is_multiple_of(3) {
        e = e.with_device(format!("dev-{}", i % 5));
    }
    e.id = id(i, spacing_ms);
    e
}

pub fn events(range: std::ops::Range<u64>, spacing_ms: i64) -> Vec<AccessEvent> {
    range.map(|i| event(i, spacing_ms)).collect()
}
