//! Instructions per `decide()`, for a figure that does not depend on what else the
//! machine is doing: run under callgrind, counting only the hot loop.
//!
//!     cargo build --release -p schoolgate-benches --bin decide_cost
//!     valgrind --tool=callgrind --toggle-collect=decide_cost::hot_loop \
//!         target/release/decide_cost
//!
//! Instructions per decision = the `Ir` total / the count it prints.

use std::hint::black_box;

use anyhow::Result;
use schoolgate_benches::{compile, config_with_all_lists, popular_domains};
use schoolgate_classifier::{Policy, Request};

/// Decides every request; the requests are built beforehand, as the proxy and the
/// DNS filter hand over parts they have already parsed.
#[inline(never)]
fn hot_loop(policy: &Policy, requests: &[Request<'_>]) -> usize {
    let mut blocked = 0;
    for req in requests {
        blocked += usize::from(black_box(policy.decide(req)).is_blocked());
    }
    blocked
}

fn main() -> Result<()> {
    let host_only = std::env::args().any(|a| a == "--host");
    let policy = compile(config_with_all_lists(&[])?)?;
    let role = policy.role_id("pupil").expect("pupil role");
    let inputs: Vec<String> = popular_domains()?
        .iter()
        .take(20_000)
        .enumerate()
        .map(|(i, d)| {
            if host_only {
                format!("www.{d}")
            } else {
                format!("https://www.{d}/articles/2026/{i}/some-page-title?ref=home&page=2")
            }
        })
        .collect();
    let at = jiff::Timestamp::UNIX_EPOCH;
    let requests: Vec<Request<'_>> = inputs
        .iter()
        .map(|input| {
            if host_only {
                Request::host(role, input, at)
            } else {
                Request::url(role, input, at)
            }
        })
        .collect();
    let blocked = hot_loop(&policy, &requests);
    println!("{} decisions ({} blocked)", inputs.len(), blocked);
    Ok(())
}
