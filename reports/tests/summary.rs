use jiff::Timestamp;
use schoolgate_classifier::{Category, Severity};
use schoolgate_events::EventStore;
use schoolgate_reports::{
    BypassKind, Scope, WeekExtras, build_summary, recipients, render_email, render_page,
    render_text, scopes,
};

use crate::support::{self, Oracle, SECRET_TERMS, SECRET_USER};

fn now() -> Timestamp {
    "2026-11-23T07:00:00Z".parse().expect("ts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_school_figures_match_the_events() {
    let config = support::example("school.toml");
    let policy = support::policy(&config);
    let w = support::week("2026-W47");
    let mut events = support::traffic(&policy, w, "hillside", 5_000, 47);
    events.extend(support::episodes(&policy, w, "hillside"));
    let mut older = Vec::new();
    for (i, n) in [4_000usize, 600, 3_500, 4_200].into_iter().enumerate() {
        let mut wk = w;
        for _ in 0..(4 - i) {
            wk = wk.previous();
        }
        older.push((wk, n));
        events.extend(support::traffic(&policy, wk, "hillside", n, i as u64));
    }
    let s = support::store();
    support::insert(&s.store, &events).await;

    let scope = scopes(&config).remove(0);
    assert_eq!(scope, Scope::school("hillside"));
    let sum = build_summary(&s.store, &policy, w, &scope, WeekExtras::default(), now())
        .await
        .expect("summary");
    let period = w.period(policy.time_zone()).expect("period");
    let o = Oracle::new(&events, period, None);

    assert_eq!(sum.title, "Hillside Academy");
    assert_eq!(sum.totals.requests, o.requests());
    assert_eq!(sum.totals.blocked, o.blocked());
    assert_eq!(sum.totals.flagged, o.flagged());
    assert_eq!(sum.totals.users, Some(o.users()));
    assert_eq!(sum.totals.devices, Some(o.devices()));
    let cats: Vec<(Category, u64, u64)> = sum
        .categories
        .iter()
        .map(|c| (c.category, c.blocked, c.flagged))
        .collect();
    let mut want: Vec<(Category, u64, u64)> = o
        .categories()
        .into_iter()
        .map(|(c, (b, f))| (c, b, f))
        .collect();
    want.sort_by(|a, b| (b.1 + b.2).cmp(&(a.1 + a.2)).then(a.0.cmp(&b.0)));
    assert_eq!(cats, want);
    for r in &sum.roles {
        let (req, b, f) = o.roles()[&r.role];
        assert_eq!(
            (r.requests, r.blocked, r.flagged),
            (Some(req), b, f),
            "role {}",
            r.role
        );
    }
    assert_eq!(
        sum.roles
            .iter()
            .find(|r| r.role == "pupil")
            .map(|r| r.description.as_str()),
        Some("Years 7 to 11")
    );
    let top: Vec<(String, u64)> = sum
        .top_blocked
        .iter()
        .map(|h| (h.host.clone(), h.blocked))
        .collect();
    assert_eq!(top, o.top_blocked(10));
    for b in &sum.bypass {
        let got = (b.attempts, b.users, b.devices);
        match b.kind {
            BypassKind::Vpn => assert_eq!(got, o.bypass(Category::Vpn)),
            BypassKind::Proxy => assert_eq!(got, o.bypass(Category::Proxy)),
            BypassKind::Doh => assert_eq!(got, o.bypass(Category::Doh)),
            BypassKind::RemoteAccess => assert_eq!(got, o.bypass(Category::RemoteAccess)),
            BypassKind::DomainFronting => assert_eq!(got, (2, 0, 1)),
        }
    }
    assert!(
        sum.bypass
            .iter()
            .any(|b| b.kind == BypassKind::DomainFronting)
    );
    assert_eq!(sum.safeguarding.high, o.severity(Severity::High));
    assert_eq!(sum.safeguarding.medium, o.severity(Severity::Medium));
    assert_eq!(sum.safeguarding.low, o.severity(Severity::Low));
    assert_eq!(
        (sum.safeguarding.episodes, sum.safeguarding.people),
        (3, 3),
        "three scripted episodes"
    );

    // Trend: the four weeks before, oldest first, then this week.
    assert_eq!(sum.trend.len(), 5);
    for (p, (wk, _)) in sum.trend.iter().zip(&older) {
        assert_eq!(p.week, *wk);
        let po = Oracle::new(
            &events,
            wk.period(policy.time_zone()).expect("period"),
            None,
        );
        assert_eq!(
            (p.requests, p.blocked, p.flagged),
            (po.requests(), po.blocked(), po.flagged())
        );
    }
    assert_eq!(sum.trend[1].school_days, 0, "2026-W44 is half term");
    assert_eq!(sum.trend[4].blocked, o.blocked());
    // Days add up.
    assert_eq!(
        sum.days.iter().map(|d| d.requests).sum::<u64>(),
        o.requests()
    );
    assert_eq!(sum.days.iter().filter(|d| d.school_day).count(), 5);

    // Term: an ordinary autumn week.
    assert_eq!(sum.term.school_days, 5);
    assert_eq!(sum.term.term.as_deref(), Some("Autumn 2026"));
    assert!(!sum.term.holiday);

    // Serialisable for the dashboard's archive, and back.
    let json = serde_json::to_string(&sum).expect("json");
    let back: schoolgate_reports::WeeklySummary = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, sum);

    // Names and search terms never leave the store: not in the summary, nor in
    // anything rendered from it.
    let rendered = render_email(&sum);
    for text in [&json, &rendered.html, &rendered.text, &render_page(&sum)] {
        assert!(!text.contains(SECRET_USER), "a pupil's name leaked");
        assert!(!text.contains("j.okafor"), "a staff name leaked");
        for t in SECRET_TERMS {
            assert!(!text.contains(t), "a search term leaked");
        }
        assert!(!text.contains("10.20.3.77"), "a device address leaked");
    }
    assert_eq!(
        recipients(&config, &scope),
        ["head@hillside.sch.uk", "chair.lgb@hillside.sch.uk"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trust_gets_one_summary_per_school_and_one_for_the_trust() {
    let config = support::example("trust.toml");
    let policy = support::policy(&config);
    let w = support::week("2026-W47");
    let mut events = support::traffic(&policy, w, "fenland-high", 2_500, 1);
    events.extend(support::episodes(&policy, w, "fenland-high"));
    events.extend(support::traffic(&policy, w, "marsh-primary", 1_200, 2));
    // A network mapped to no school.
    events.extend(support::traffic(&policy, w, "", 100, 3));
    let s = support::store();
    support::insert(&s.store, &events).await;
    let period = w.period(policy.time_zone()).expect("period");

    let all = scopes(&config);
    assert_eq!(
        all,
        [
            Scope::school("fenland-high"),
            Scope::school("marsh-primary"),
            Scope::Trust
        ]
    );
    for scope in &all {
        let sum = build_summary(&s.store, &policy, w, scope, WeekExtras::default(), now())
            .await
            .expect("summary");
        let school = match scope {
            Scope::School { id } => Some(id.as_str()),
            Scope::Trust => None,
        };
        let o = Oracle::new(&events, period, school);
        assert_eq!(sum.totals.requests, o.requests(), "{scope:?}");
        assert_eq!(sum.totals.blocked, o.blocked(), "{scope:?}");
        assert_eq!(sum.totals.flagged, o.flagged(), "{scope:?}");
        // The breakdowns come from the store's aggregates, filtered to the school
        // for a school's summary: both must agree with the events.
        let mut want: Vec<(Category, u64, u64)> = o
            .categories()
            .into_iter()
            .map(|(c, (b, f))| (c, b, f))
            .collect();
        want.sort_by(|a, b| (b.1 + b.2).cmp(&(a.1 + a.2)).then(a.0.cmp(&b.0)));
        let got: Vec<(Category, u64, u64)> = sum
            .categories
            .iter()
            .map(|c| (c.category, c.blocked, c.flagged))
            .collect();
        assert_eq!(got, want, "{scope:?}");
        for r in &sum.roles {
            let (req, b, f) = o.roles()[&r.role];
            assert_eq!((r.blocked, r.flagged), (b, f), "{scope:?} role {}", r.role);
            assert_eq!(r.requests, Some(req), "{scope:?} role {}", r.role);
        }
        let top: Vec<(String, u64)> = sum
            .top_blocked
            .iter()
            .map(|h| (h.host.clone(), h.blocked))
            .collect();
        assert_eq!(top, o.top_blocked(10), "{scope:?}");
        for b in sum.bypass.iter().filter(|b| b.kind == BypassKind::Vpn) {
            assert_eq!(
                (b.attempts, b.users, b.devices),
                o.bypass(Category::Vpn),
                "{scope:?}"
            );
        }
        match scope {
            Scope::Trust => {
                assert_eq!(sum.title, "Fenland Learning Trust");
                let names: Vec<_> = sum
                    .schools
                    .iter()
                    .map(|r| (r.name.as_str(), r.requests))
                    .collect();
                assert_eq!(
                    names,
                    [
                        ("Fenland High School", 2_508),
                        ("Marsh Road Primary", 1_200),
                        ("Other networks", 100)
                    ]
                );
                assert_eq!(sum.totals.users, Some(o.users()));
            }
            Scope::School { id } if id == "fenland-high" => {
                assert_eq!((sum.safeguarding.episodes, sum.safeguarding.people), (3, 3));
                assert!(
                    sum.bypass
                        .iter()
                        .any(|b| b.kind == BypassKind::DomainFronting)
                );
                assert_eq!(
                    (sum.totals.users, sum.totals.devices),
                    (Some(o.users()), Some(o.devices())),
                    "the school's own people and devices"
                );
            }
            Scope::School { .. } => assert_eq!(sum.safeguarding.episodes, 0),
        }
    }
    assert_eq!(
        recipients(&config, &Scope::Trust),
        ["ceo@fenlandtrust.org.uk", "it@fenlandtrust.org.uk"]
    );
    assert_eq!(
        recipients(&config, &Scope::school("marsh-primary")),
        ["head@marshroad.sch.uk"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holiday_and_short_weeks_say_so() {
    let config = support::example("school.toml");
    let policy = support::policy(&config);
    let s = support::store();
    let scope = Scope::school("hillside");

    let half_term = support::week("2026-W44");
    support::insert(
        &s.store,
        &support::traffic(&policy, half_term, "hillside", 200, 9),
    )
    .await;
    let sum = build_summary(
        &s.store,
        &policy,
        half_term,
        &scope,
        WeekExtras::default(),
        now(),
    )
    .await
    .expect("summary");
    assert!(sum.term.holiday);
    assert_eq!(sum.term.school_days, 0);
    assert_eq!(sum.term.closed_days.len(), 5);
    let r = render_email(&sum);
    assert!(r.subject.contains("holiday week"), "{}", r.subject);
    assert!(
        r.text
            .contains("Holiday week: no school days (Autumn 2026 break or closure)"),
        "{}",
        r.text
    );
    assert!(r.html.contains("Holiday week"));

    let inset = support::week("2026-W48");
    let sum = build_summary(
        &s.store,
        &policy,
        inset,
        &scope,
        WeekExtras::default(),
        now(),
    )
    .await
    .expect("summary");
    assert_eq!(sum.term.school_days, 4);
    assert!(render_text(&sum).contains("Autumn 2026, 4 school days (closed Fri 27 Nov)"));

    let summer = support::week("2027-W32");
    let sum = build_summary(
        &s.store,
        &policy,
        summer,
        &scope,
        WeekExtras::default(),
        now(),
    )
    .await
    .expect("summary");
    assert!(sum.term.holiday && sum.term.term.is_none());
    assert!(render_text(&sum).contains("Holiday week: no school days\n"));
    assert_eq!(sum.totals.requests, 0);
}

#[tokio::test]
async fn an_unknown_school_is_refused() {
    let config = support::example("trust.toml");
    let policy = support::policy(&config);
    let s = support::store();
    let err = build_summary(
        &s.store,
        &policy,
        support::week("2026-W47"),
        &Scope::school("hilside"),
        WeekExtras::default(),
        now(),
    )
    .await
    .expect_err("unknown school");
    assert_eq!(
        err.to_string(),
        "school `hilside` is not in [[schools]] (known: fenland-high, marsh-primary)"
    );
    let _ = s.store.name();
}
