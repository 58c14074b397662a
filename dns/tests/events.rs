use schoolgate_classifier::{Action, Category};
use schoolgate_events::AccessEvent;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_lands_in_the_store_with_who_what_and_how() {
    let mut school = School::start().await;
    school.dig(PUPIL, &["www.school.test", "A"]).await;
    school.dig(PUPIL, &["www.school.test", "A"]).await;
    school.dig(PUPIL, &["bet365.com", "AAAA"]).await;
    school.dig(PUPIL, &["www.google.com", "A"]).await;
    school.dig(PUPIL, &["nothing-here.school.test", "MX"]).await;
    let events = school.events_of(PUPIL).await;
    assert_eq!(events.len(), 5, "{events:#?}");
    for e in &events {
        assert_eq!(e.role, "pupil");
        assert_eq!(e.school, "hillside");
        assert_eq!(e.node, "test-node");
        assert_eq!(e.source, schoolgate_events::Source::Dns);
    }
    let find = |host: &str| events.iter().filter(|e| e.host == host).collect::<Vec<_>>();
    let www = find("www.school.test");
    assert_eq!(
        (www[0].action, www[0].method.as_str(), www[0].status),
        (Action::Allow, "A", 0)
    );
    assert_eq!((www[0].cached, www[1].cached), (false, true));
    let bet = find("bet365.com")[0];
    assert_eq!((bet.action, bet.method.as_str()), (Action::Block, "AAAA"));
    assert!(bet.categories.contains(Category::Gambling));
    assert!(bet.rule.contains("test/gambling"), "{}", bet.rule);
    assert!(bet.reason.contains("gambling"), "{}", bet.reason);
    let google = find("www.google.com")[0];
    assert_eq!(google.action, Action::Rewrite);
    let missing = find("nothing-here.school.test")[0];
    assert_eq!(
        (missing.method.as_str(), missing.status),
        ("MX", 3),
        "NXDOMAIN is rcode 3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_queries_are_sampled_but_blocked_ones_never_are() {
    let mut school = School::start_with(Setup {
        allowed_sample: 1000,
        ..Setup::default()
    })
    .await;
    for _ in 0..10 {
        school.dig(STAFF, &["www.school.test", "A"]).await;
    }
    for _ in 0..3 {
        school.dig(STAFF, &["x.malware.test", "A"]).await;
    }
    let sampled_out = school.filter.stats().events_sampled_out;
    let events = school.events_of(STAFF).await;
    let blocked = events.iter().filter(|e| e.action == Action::Block).count();
    let allowed = events.iter().filter(|e| e.action == Action::Allow).count();
    assert_eq!(blocked, 3, "{events:#?}");
    // Sampling counts per thread (one UDP loop per core, plus the runtime's
    // workers for answers from upstream): each logs the first of every 1000.
    assert!((1..=4).contains(&allowed), "{events:#?}");
    assert_eq!(allowed as u64 + sampled_out, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_name_asked_again_within_the_window_is_logged_once_per_device() {
    let mut school = School::start_with(Setup {
        allowed_repeat_secs: 60,
        ..Setup::default()
    })
    .await;
    for _ in 0..10 {
        school.dig(STAFF, &["www.school.test", "A"]).await;
        school.dig(PUPIL, &["www.school.test", "A"]).await;
    }
    school.dig(STAFF, &["other.school.test", "A"]).await;
    for _ in 0..3 {
        school.dig(STAFF, &["x.malware.test", "A"]).await;
    }
    let skipped = school.filter.stats().events_repeats_skipped;
    let staff = school.events_of(STAFF).await;
    let count =
        |events: &[AccessEvent], host: &str| events.iter().filter(|e| e.host == host).count();
    // One UDP loop per core and the runtime's workers each remember on their
    // own, so a repeat may be logged once per thread (2 cores here).
    let school_test = count(&staff, "www.school.test");
    assert!((1..=4).contains(&school_test), "{staff:#?}");
    assert_eq!(count(&staff, "other.school.test"), 1);
    assert_eq!(
        count(&staff, "x.malware.test"),
        3,
        "blocked queries are never skipped"
    );
    let pupil = school.events_of(PUPIL).await;
    let pupil_school_test = count(&pupil, "www.school.test");
    assert!((1..=4).contains(&pupil_school_test), "{pupil:#?}");
    assert_eq!(
        (school_test + pupil_school_test) as u64 + skipped,
        20,
        "every allowed query is logged or counted as a repeat"
    );
}
