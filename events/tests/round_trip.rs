//! One test body, run against both stores: every `EventStore` query is checked
//! against a reference computed in Rust from the events themselves, so the two
//! stores give the same answers for the same data, and the right ones.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use schoolgate_classifier::config::store::Retention;
use schoolgate_classifier::{Action, Category, Severity};
use schoolgate_events::store::csv;
use schoolgate_events::{
    AccessEvent, Batch, BypassAttempts, ClickhouseStore, Count, Delivery, EventSearch, EventStore,
    ExportFilter, FlaggedQuery, GroupBy, HostCount, Period, Pipeline, PipelineTuning, Purpose,
    SqliteStore, StoreError, Subject, Totals,
};
use tokio_util::sync::CancellationToken;

use crate::harness::clickhouse::ClickHouse;
use crate::harness::events::{self, BASE_MS, ts};

/// 1 500 events, 83 s apart: about 34.6 hours, across a UTC midnight.
const N: u64 = 1_500;
const SPACING: i64 = 83_000;

fn purpose() -> Purpose {
    Purpose::new("dsl@school", "round-trip test")
}

fn sev_rank(e: &AccessEvent) -> u8 {
    e.severity.map(|s| s as u8).unwrap_or(1)
}

fn in_period(e: &AccessEvent, p: &Period) -> bool {
    let t = e.time_ms();
    t >= p.from.as_millisecond() && t < p.to.as_millisecond()
}

/// In the period and, with a school filter, of that school.
fn in_scope(e: &AccessEvent, p: &Period, school: Option<&str>) -> bool {
    in_period(e, p) && school.is_none_or(|s| e.school == s)
}

/// The aggregates' school filters: none, each school the events have (`""` is
/// the events of no school), and one that has none.
const SCHOOLS: [Option<&str>; 5] = [
    None,
    Some("north"),
    Some("south"),
    Some(""),
    Some("nowhere"),
];

fn ref_flagged(all: &[AccessEvent], q: &FlaggedQuery) -> Vec<AccessEvent> {
    let mut out: Vec<AccessEvent> = all
        .iter()
        .filter(|e| e.is_flagged() && in_period(e, &q.period))
        .filter(|e| sev_rank(e) >= q.min_severity as u8)
        .filter(|e| q.school.as_ref().is_none_or(|s| &e.school == s))
        .filter(|e| q.user.as_ref().is_none_or(|u| e.user.as_ref() == Some(u)))
        .cloned()
        .collect();
    out.sort_by(|a, b| {
        sev_rank(b)
            .cmp(&sev_rank(a))
            .then(b.time_ms().cmp(&a.time_ms()))
            .then(b.id.to_string().cmp(&a.id.to_string()))
    });
    out.truncate(q.limit);
    out
}

fn subject_matches(e: &AccessEvent, s: &Subject) -> bool {
    match s {
        Subject::User(u) => e.user.as_ref() == Some(u),
        Subject::Client(ip) => e.client_ip == *ip,
    }
}

fn ref_timeline(
    all: &[AccessEvent],
    s: &Subject,
    around_ms: i64,
    minutes: i64,
) -> Vec<AccessEvent> {
    let (lo, hi) = (around_ms - minutes * 60_000, around_ms + minutes * 60_000);
    let mut out: Vec<AccessEvent> = all
        .iter()
        .filter(|e| subject_matches(e, s) && e.time_ms() >= lo && e.time_ms() <= hi)
        .cloned()
        .collect();
    out.sort_by(|a, b| {
        a.time_ms()
            .cmp(&b.time_ms())
            .then(a.id.to_string().cmp(&b.id.to_string()))
    });
    out
}

fn ref_counts(all: &[AccessEvent], p: &Period, g: GroupBy, school: Option<&str>) -> Vec<Count> {
    let mut map: BTreeMap<String, Count> = BTreeMap::new();
    for e in all.iter().filter(|e| in_scope(e, p, school)) {
        let keys: Vec<String> = match g {
            GroupBy::Category => e.categories.iter().map(|c| c.name().to_owned()).collect(),
            GroupBy::Action => vec![e.action.name().to_owned()],
            GroupBy::Role => vec![e.role.clone()],
            GroupBy::School => vec![e.school.clone()],
            GroupBy::Day => vec![e.time.strftime("%Y-%m-%d").to_string()],
            _ => unreachable!("a new GroupBy needs a reference"),
        };
        for key in keys {
            let c = map.entry(key.clone()).or_insert(Count {
                key,
                events: 0,
                blocked: 0,
                flagged: 0,
            });
            c.events += 1;
            c.blocked += u64::from(e.action == Action::Block);
            c.flagged += u64::from(e.is_flagged());
        }
    }
    map.into_values().collect()
}

fn ref_top_blocked(
    all: &[AccessEvent],
    p: &Period,
    n: usize,
    school: Option<&str>,
) -> Vec<HostCount> {
    let mut map: BTreeMap<String, u64> = BTreeMap::new();
    for e in all
        .iter()
        .filter(|e| in_scope(e, p, school) && e.action == Action::Block)
    {
        *map.entry(e.host.clone()).or_default() += 1;
    }
    let mut out: Vec<HostCount> = map
        .into_iter()
        .map(|(host, blocked)| HostCount { host, blocked })
        .collect();
    out.sort_by(|a, b| b.blocked.cmp(&a.blocked).then(a.host.cmp(&b.host)));
    out.truncate(n);
    out
}

fn ref_bypass(all: &[AccessEvent], p: &Period, school: Option<&str>) -> Vec<BypassAttempts> {
    let mut out = Vec::new();
    for &c in Category::ALL.iter().filter(|c| c.is_bypass()) {
        let hits: Vec<&AccessEvent> = all
            .iter()
            .filter(|e| in_scope(e, p, school) && e.is_bypass_attempt() && e.categories.contains(c))
            .collect();
        if hits.is_empty() {
            continue;
        }
        out.push(BypassAttempts {
            category: c,
            attempts: hits.len() as u64,
            distinct_users: hits
                .iter()
                .filter_map(|e| e.user.clone())
                .collect::<BTreeSet<_>>()
                .len() as u64,
            distinct_clients: hits
                .iter()
                .map(|e| e.client_ip)
                .collect::<BTreeSet<IpAddr>>()
                .len() as u64,
        });
    }
    out
}

fn ref_search(all: &[AccessEvent], q: &EventSearch) -> Vec<AccessEvent> {
    let mut out: Vec<AccessEvent> = all
        .iter()
        .filter(|e| in_scope(e, &q.period, q.school.as_deref()))
        .filter(|e| q.host.as_deref().is_none_or(|h| e.host.contains(h)))
        .filter(|e| q.category.is_none_or(|c| e.categories.contains(c)))
        .cloned()
        .collect();
    out.sort_by_key(|e| std::cmp::Reverse((e.time_ms(), e.id)));
    out.truncate(q.limit);
    out
}

fn ref_totals(all: &[AccessEvent], p: &Period, school: Option<&str>) -> Totals {
    let es: Vec<&AccessEvent> = all.iter().filter(|e| in_scope(e, p, school)).collect();
    Totals {
        requests: es.len() as u64,
        distinct_users: es
            .iter()
            .filter_map(|e| e.user.clone())
            .collect::<BTreeSet<_>>()
            .len() as u64,
        distinct_clients: es
            .iter()
            .map(|e| e.client_ip)
            .collect::<BTreeSet<_>>()
            .len() as u64,
        blocked: es.iter().filter(|e| e.action == Action::Block).count() as u64,
        flagged: es.iter().filter(|e| e.is_flagged()).count() as u64,
    }
}

fn ref_csv(all: &[AccessEvent], p: &Period, f: &ExportFilter) -> (String, u64) {
    let mut rows: Vec<&AccessEvent> = all
        .iter()
        .filter(|e| in_period(e, p))
        .filter(|e| f.school.as_ref().is_none_or(|s| &e.school == s))
        .filter(|e| f.subject.as_ref().is_none_or(|s| subject_matches(e, s)))
        .filter(|e| f.action.is_none_or(|a| e.action == a))
        .filter(|e| !f.flagged_only || e.is_flagged())
        .collect();
    rows.sort_by(|a, b| {
        a.time_ms()
            .cmp(&b.time_ms())
            .then(a.id.to_string().cmp(&b.id.to_string()))
    });
    let mut out = Vec::new();
    csv::write_header(&mut out).expect("header");
    for e in &rows {
        csv::write_event(&mut out, e).expect("row");
    }
    (String::from_utf8(out).expect("utf8"), rows.len() as u64)
}

/// Periods: the whole range, one that starts and ends mid-hour, one inside a
/// single hour, and an empty one.
fn periods() -> Vec<Period> {
    let end = BASE_MS + N as i64 * SPACING;
    vec![
        Period::new(ts(BASE_MS - 1), ts(end + 1)),
        Period::new(
            ts(BASE_MS + 3 * 3_600_000 + 1_234),
            ts(BASE_MS + 29 * 3_600_000 + 777),
        ),
        Period::new(ts(BASE_MS + 600_000), ts(BASE_MS + 2_400_000)),
        Period::new(ts(BASE_MS - 10_000_000), ts(BASE_MS - 5_000_000)),
    ]
}

/// The shared body: insert, then ask every query and compare with the reference.
async fn check_store(store: &dyn EventStore) {
    let all = events::events(0..N, SPACING);
    // Inserted in uneven batches, one of them twice (as a replay would).
    for chunk in all.chunks(400) {
        store
            .insert(&Batch::new(chunk.to_vec()))
            .await
            .expect("insert");
    }
    store
        .insert(&Batch::new(all[100..300].to_vec()).replayed())
        .await
        .expect("replayed insert");
    check_answers(store, &all).await;
}

/// Every query against the reference, once `all` is stored.
async fn check_answers(store: &dyn EventStore, all: &[AccessEvent]) {
    let all = all.to_vec();
    for p in periods() {
        for min in [Severity::Low, Severity::High] {
            let mut q = FlaggedQuery::new(p);
            q.min_severity = min;
            q.limit = 50;
            assert_eq!(
                store.flagged(&q, &purpose()).await.expect("flagged"),
                ref_flagged(&all, &q),
                "flagged {p:?} {min:?} on {}",
                store.name()
            );
            q.school = Some("north".into());
            q.user = Some("user7".into());
            assert_eq!(
                store.flagged(&q, &purpose()).await.expect("flagged"),
                ref_flagged(&all, &q),
                "flagged filtered on {}",
                store.name()
            );
        }
        for school in SCHOOLS {
            for g in [
                GroupBy::Category,
                GroupBy::Action,
                GroupBy::Role,
                GroupBy::School,
                GroupBy::Day,
            ] {
                assert_eq!(
                    store.counts(&p, g, school).await.expect("counts"),
                    ref_counts(&all, &p, g, school),
                    "counts {g:?} {p:?} {school:?} on {}",
                    store.name()
                );
            }
            assert_eq!(
                store.top_blocked_hosts(&p, 5, school).await.expect("top"),
                ref_top_blocked(&all, &p, 5, school),
                "top blocked {school:?} on {}",
                store.name()
            );
            assert_eq!(
                store.bypass_attempts(&p, school).await.expect("bypass"),
                ref_bypass(&all, &p, school),
                "bypass {school:?} on {}",
                store.name()
            );
            assert_eq!(
                store.totals(&p, school).await.expect("totals"),
                ref_totals(&all, &p, school),
                "totals {school:?} on {}",
                store.name()
            );
        }
        for (host, category, school, limit) in [
            (Some("host1"), None, None, 40),
            (Some("host12.exam"), None, Some("north"), 500),
            (None, Some(Category::Gambling), None, 25),
            (Some("host3"), Some(Category::Proxy), None, 500),
            (Some("nowhere"), None, None, 500),
        ] {
            let mut q = EventSearch::new(p);
            q.host = host.map(str::to_owned);
            q.category = category;
            q.school = school.map(str::to_owned);
            q.limit = limit;
            let want = ref_search(&all, &q);
            if p == periods()[0] {
                // Over the whole range every search but the last finds some,
                // and the first finds more than its limit.
                assert_eq!(want.is_empty(), host == Some("nowhere"), "{q:?}");
                if host == Some("host1") {
                    assert_eq!(want.len(), limit, "{q:?}");
                }
            }
            assert_eq!(
                store.search(&q, &purpose()).await.expect("search"),
                want,
                "search {q:?} on {}",
                store.name()
            );
        }
    }
    // A school's figures are its own: the schools add up to the whole, and no
    // school alone has them all (so a filter that did nothing would show).
    let whole = periods()[0];
    let per_school: u64 = [Some("north"), Some("south"), Some("")]
        .into_iter()
        .map(|s| ref_totals(&all, &whole, s).blocked)
        .sum();
    assert_eq!(per_school, ref_totals(&all, &whole, None).blocked);
    assert!(ref_totals(&all, &whole, Some("north")).blocked < per_school);
    assert!(ref_totals(&all, &whole, Some("north")).blocked > 0);

    // One event by its id, whole; an id never stored is `None`.
    for e in [&all[0], &all[777], &all[N as usize - 1]] {
        assert_eq!(
            store.event(e.id, &purpose()).await.expect("event").as_ref(),
            Some(e),
            "event by id on {}",
            store.name()
        );
    }
    assert_eq!(
        store
            .event(schoolgate_events::Ulid::new(), &purpose())
            .await
            .expect("unknown event"),
        None
    );

    let around = all[700].time_ms();
    for subject in [
        Subject::User("user3".into()),
        Subject::Client(all[700].client_ip),
        Subject::Client(all[22].client_ip),
    ] {
        let got = store
            .timeline(&subject, ts(around), 90, &purpose())
            .await
            .expect("timeline");
        assert_eq!(
            got,
            ref_timeline(&all, &subject, around, 90),
            "timeline {subject} on {}",
            store.name()
        );
    }

    for filter in [
        ExportFilter::default(),
        ExportFilter {
            flagged_only: true,
            ..ExportFilter::default()
        },
        ExportFilter {
            school: Some("south".into()),
            action: Some(Action::Block),
            ..ExportFilter::default()
        },
        ExportFilter {
            subject: Some(Subject::User("user5".into())),
            ..ExportFilter::default()
        },
    ] {
        let mut out = Vec::new();
        let rows = store
            .export_csv(&whole, &filter, &mut out, &purpose())
            .await
            .expect("export");
        let text = String::from_utf8(out).expect("utf8");
        let (want, want_rows) = ref_csv(&all, &whole, &filter);
        assert_eq!(text, want, "export {filter:?} on {}", store.name());
        assert_eq!(rows, want_rows);
    }

    // Personal data needs a purpose; aggregates do not.
    let none = Purpose::new("", "");
    assert!(matches!(
        store.flagged(&FlaggedQuery::new(whole), &none).await,
        Err(StoreError::NoPurpose)
    ));
    assert!(matches!(
        store
            .timeline(&Subject::User("user1".into()), ts(around), 5, &none)
            .await,
        Err(StoreError::NoPurpose)
    ));
    assert!(matches!(
        store
            .export_csv(&whole, &ExportFilter::default(), &mut Vec::new(), &none)
            .await,
        Err(StoreError::NoPurpose)
    ));
    assert!(matches!(
        store.event(all[0].id, &none).await,
        Err(StoreError::NoPurpose)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_answers_every_query_like_the_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        SqliteStore::open(dir.path().join("events.sqlite"), Retention::default()).expect("open");
    check_store(&store).await;
}

/// As the filter stores them: sent one by one through the pipeline, journal
/// on, so the SQLite store keeps the journal's bytes of each event rather
/// than encoding it again; what it answers must not change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_fed_by_the_journalled_pipeline_answers_like_the_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = crate::harness::store_config(dir.path());
    // Room for every event: none spooled.
    cfg.queue_capacity = 2 * N as usize;
    let store = Arc::new(SqliteStore::open(&cfg.path, Retention::default()).expect("open"));
    let shutdown = CancellationToken::new();
    let tuning = PipelineTuning {
        journal: true,
        ..PipelineTuning::default()
    };
    let (tx, handle) =
        Pipeline::start_with(&cfg, store.clone(), shutdown.clone(), tuning).expect("start");
    let all = events::events(0..N, SPACING);
    for e in &all {
        assert_eq!(tx.send(e.clone()).expect("send"), Delivery::Queued);
    }
    crate::harness::wait_until("every event inserted", Duration::from_secs(30), || {
        let inserted = handle.counters().inserted;
        async move { inserted == N }
    })
    .await;
    // Stored by batches of the running pipeline, not by the shutdown drain.
    assert_eq!(handle.counters().spooled, 0);
    check_answers(&*store, &all).await;
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_answers_every_query_like_the_reference() {
    let ch = ClickHouse::start();
    let store = ClickhouseStore::new(&ch.config("round_trip"), Retention::default());
    let report = store.migrate().await.expect("migrate");
    assert_eq!(report.applied, vec![1]);
    check_store(&store).await;
    // The replayed batch was probed, so no row is stored twice.
    assert_eq!(ch.number("SELECT count() FROM round_trip.events"), N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_duplicate_rows_are_invisible_to_queries() {
    let ch = ClickHouse::start();
    let store = ClickhouseStore::new(&ch.config("dups"), Retention::default());
    store.migrate().await.expect("migrate");
    let all = events::events(0..200, SPACING);
    store
        .insert(&Batch::new(all.clone()))
        .await
        .expect("insert");
    // Not marked as a replay: the server stores the copies...
    store
        .insert(&Batch::new(all[..50].to_vec()))
        .await
        .expect("insert again");
    assert_eq!(ch.number("SELECT count() FROM dups.events"), 250);
    // ...but every answer counts each event once.
    let whole = Period::new(ts(BASE_MS - 1), ts(BASE_MS + 200 * SPACING));
    assert_eq!(
        store.totals(&whole, None).await.expect("totals"),
        ref_totals(&all, &whole, None)
    );
    assert_eq!(
        store
            .counts(&whole, GroupBy::Action, None)
            .await
            .expect("counts"),
        ref_counts(&all, &whole, GroupBy::Action, None)
    );
    assert_eq!(
        store.event(all[10].id, &purpose()).await.expect("event"),
        Some(all[10].clone()),
        "a stored copy is one event"
    );
    let q = FlaggedQuery::new(whole);
    assert_eq!(
        store.flagged(&q, &purpose()).await.expect("flagged"),
        ref_flagged(&all, &q)
    );
    // And a merge collapses them (ReplacingMergeTree keyed on the event id).
    ch.sql("OPTIMIZE TABLE dups.events FINAL");
    assert_eq!(ch.number("SELECT count() FROM dups.events"), 200);
}
