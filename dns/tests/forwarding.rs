use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_cached_and_their_ttls_count_down() {
    let school = School::start().await;
    let first = school.dig(PUPIL, &["www.school.test", "A"]).await;
    assert_eq!(first.answers[0].1, 3600);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = school.dig(STAFF, &["www.school.test", "A"]).await;
    assert_eq!(second.data("A"), ["192.0.2.10"]);
    assert!(
        second.answers[0].1 < 3600,
        "the cached TTL counts down: {}",
        second.output
    );
    assert_eq!(
        school.upstream.udp_queries(),
        1,
        "the second answer came from the cache"
    );
    let stats = school.filter.stats();
    assert_eq!((stats.forwarded, stats.cached), (1, 1), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_answers_are_cached_by_the_soa_minimum() {
    let school = School::start().await;
    let first = school.dig(PUPIL, &["nothing-here.school.test", "A"]).await;
    assert_eq!(first.status, "NXDOMAIN");
    let again = school.dig(PUPIL, &["nothing-here.school.test", "A"]).await;
    assert_eq!(again.status, "NXDOMAIN");
    assert_eq!(school.upstream.udp_queries(), 1);
    // The SOA's TTL is capped by its MINIMUM (120), not its own 3600.
    let soa_ttl: u32 = again
        .output
        .lines()
        .find(|l| l.contains("\tSOA\t"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .expect("SOA in the authority section");
    assert!(soa_ttl <= 120, "{}", again.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_fall_back_to_tcp() {
    let school = School::start().await;
    let d = school.dig(PUPIL, &["big.school.test", "A"]).await;
    assert!(
        d.output.contains("Truncated, retrying in TCP mode"),
        "{}",
        d.output
    );
    assert_eq!(d.data("A").len(), usize::from(BIG_RRSET), "{}", d.output);
    assert!(
        school.upstream.tcp_queries() >= 1,
        "we fetched it over TCP from upstream"
    );
    let txt = school
        .dig(PUPIL, &["+tcp", "bigtxt.school.test", "TXT"])
        .await;
    assert_eq!(txt.status, "NOERROR");
    assert!(txt.output.contains("\"11xxxx"), "{}", txt.output);
    assert_eq!(school.filter.stats().tcp_fallbacks, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_means_servfail_within_the_timeout() {
    let school = School::start().await;
    school.upstream.go_silent(true);
    let d = school.dig(PUPIL, &["www.school.test", "A"]).await;
    assert_eq!(d.status, "SERVFAIL", "{}", d.output);
    assert!(d.ede().is_some_and(|e| e.contains("22")), "{}", d.output);
    // Marked down now: the next ones fail at once instead of waiting again.
    let d = school.dig(PUPIL, &["other.school.test", "A"]).await;
    assert_eq!(d.status, "SERVFAIL");
    let stats = school.filter.stats();
    assert!(
        stats.servfail >= 2 && stats.upstream_timeouts >= 1,
        "{stats:?}"
    );
    // The health page says which upstream and why.
    let up = &stats.upstreams[0];
    assert_eq!(up.upstream, school.upstream.addr.to_string());
    assert!(!up.up && up.failures >= 2, "{up:?}");
    assert_eq!(
        up.last_error.as_deref(),
        Some("upstream did not answer in time")
    );
    // Back up: a probe notices.
    school.upstream.go_silent(false);
    let mut answered = false;
    for _ in 0..100 {
        if school.dig(PUPIL, &["www.school.test", "A"]).await.status == "NOERROR" {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "recovered upstream is used again");
    let up = &school.filter.stats().upstreams[0];
    assert!(
        up.up && up.failures == 0 && up.last_error.is_none(),
        "{up:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_answers_are_served_while_upstream_is_down() {
    let school = School::start().await;
    let fresh = school.dig(PUPIL, &["short.school.test", "A"]).await;
    assert_eq!(fresh.data("A"), ["192.0.2.11"]);
    school.upstream.go_silent(true);
    tokio::time::sleep(Duration::from_millis(1500)).await; // past the 1 s TTL
    let stale = school.dig(PUPIL, &["short.school.test", "A"]).await;
    assert_eq!(stale.status, "NOERROR", "{}", stale.output);
    assert_eq!(stale.data("A"), ["192.0.2.11"]);
    assert!(
        stale.ede().is_some_and(|e| e.contains("3 (Stale Answer)")),
        "{}",
        stale.output
    );
    assert!(school.filter.stats().stale >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_fails_over_to_the_next() {
    // A socket that takes queries and never answers.
    let dead = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let school = School::start_with(Setup {
        upstreams_before: vec![dead.local_addr().expect("addr")],
        upstream_timeout_ms: 1000,
        ..Setup::default()
    })
    .await;
    let d = school.dig(PUPIL, &["www.school.test", "A"]).await;
    assert_eq!(d.data("A"), ["192.0.2.10"], "{}", d.output);
    assert_eq!(school.filter.stats().upstream_timeouts, 1);
    let status = school.filter.stats().upstreams;
    assert_eq!(status.len(), 2);
    assert_eq!(status[0].failures, 1, "{status:?}");
    assert_eq!((status[1].failures, status[1].up), (0, true), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_question_at_once_goes_upstream_once() {
    let school = School::start().await;
    let mut clients = Vec::new();
    for i in 0..20u16 {
        let addr = school.addr;
        clients.push(tokio::spawn(async move {
            raw_udp(
                addr,
                PUPIL,
                &query(i, "www.school.test.", RecordType::AAAA, true),
                Duration::from_secs(3),
            )
            .await
        }));
    }
    for c in clients {
        let answer = c.await.expect("task").expect("answered");
        let m = Message::from_vec(&answer).expect("parse");
        assert_eq!(m.answers.len(), 1);
    }
    assert_eq!(school.upstream.udp_queries(), 1);
}
