//! `decide()` latency with every real list loaded, and with 5 M synthetic domains.
//! The URL cases parse the URL too (`Request::url`), except "parts given".
//!
//!     cargo bench -p schoolgate-benches --bench classifier

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use schoolgate_benches::{
    compile, config_with_all_lists, popular_domains, synthetic_list, synthetic_source,
};
use schoolgate_classifier::{Policy, Request};

fn requests(policy: &Policy, c: &mut Criterion, label: &str) {
    let role = policy.role_id("pupil").expect("pupil role");
    let at = jiff::Timestamp::now();
    let popular = popular_domains().expect("popular domains");
    let hosts: Vec<String> = popular
        .iter()
        .take(10_000)
        .map(|d| format!("www.{d}"))
        .collect();
    let urls: Vec<String> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| format!("https://{h}/articles/2026/{i}/some-page-title?ref=home&page=2"))
        .collect();
    let mut i = 0usize;
    c.bench_function(&format!("{label}/decide host only"), |b| {
        b.iter(|| {
            i = (i + 1) % hosts.len();
            black_box(policy.decide(&Request::host(role, &hosts[i], at)))
        })
    });
    c.bench_function(&format!("{label}/decide full URL"), |b| {
        b.iter(|| {
            i = (i + 1) % urls.len();
            black_box(policy.decide(&Request::url(role, &urls[i], at)))
        })
    });
    // As the proxy asks: it builds the request from the parts hyper has parsed.
    let parts: Vec<Request<'_>> = urls.iter().map(|u| Request::url(role, u, at)).collect();
    c.bench_function(&format!("{label}/decide full URL, parts given"), |b| {
        b.iter(|| {
            i = (i + 1) % parts.len();
            black_box(policy.decide(&parts[i]))
        })
    });
    let blocked = "https://www.bet365.com/sports/football?x=1";
    c.bench_function(&format!("{label}/decide blocked URL"), |b| {
        b.iter(|| black_box(policy.decide(&Request::url(role, blocked, at))))
    });
    let search = "https://www.google.co.uk/search?q=how+do+volcanoes+form&hl=en";
    c.bench_function(&format!("{label}/decide search URL"), |b| {
        b.iter(|| black_box(policy.decide(&Request::url(role, search, at))))
    });
}

fn real_lists(c: &mut Criterion) {
    let policy = compile(config_with_all_lists(&[]).expect("config")).expect("policy");
    requests(&policy, c, "all real lists");
}

fn synthetic_5m(c: &mut Criterion) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = synthetic_list(&dir, 5_000_000).expect("synthetic list");
    let extra = synthetic_source(path);
    let policy = compile(config_with_all_lists(&[extra]).expect("config")).expect("policy");
    requests(&policy, c, "real + 5M synthetic");
}

criterion_group!(benches, real_lists, synthetic_5m);
criterion_main!(benches);
