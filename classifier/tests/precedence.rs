use schoolgate_classifier::{Action, Category, Request, Rule, Severity};

use crate::support::{decide, school, tuesday_lesson};

#[test]
fn a_listed_domain_and_its_subdomains_are_blocked_with_a_reason() {
    let p = school();
    let t = tuesday_lesson();
    let v = decide(p, "pupil", "https://www.bet365.com/sports", t);
    assert_eq!(v.action, Action::Block);
    assert_eq!(v.category, Some(Category::Gambling));
    assert_eq!(
        v.reason(),
        "blocked for pupil: gambling (list ut1/gambling: bet365.com)"
    );
    // Gambling is flagged low for pupils too: the block carries the severity.
    assert_eq!(v.severity, Some(Severity::Low));
    // A name that merely ends the same way is not a subdomain.
    let v = decide(p, "pupil", "wargames.example.org", t);
    assert_eq!(v.action, Action::Allow, "{}", v.reason());
    assert_eq!(v.reason(), "allowed for pupil: no restricted category");
    // Written into a reused buffer, the reason replaces what was there.
    let mut reused = String::from("blocked for pupil: something long from before");
    v.write_reason(&mut reused);
    assert_eq!(reused, "allowed for pupil: no restricted category");
    let v = decide(p, "pupil", "chess.games.example.org", t);
    assert_eq!(v.action, Action::Block, "{}", v.reason());
}

#[test]
fn illegal_beats_everything_including_local_allow() {
    let p = school();
    let t = tuesday_lesson();
    // bbc.co.uk is on the pupil allow list; a URL entry under it on an illegal list
    // still blocks, for every role.
    for role in ["pupil", "staff", "guest"] {
        let v = decide(p, role, "http://illegal.example/x", t);
        assert_eq!(v.action, Action::Block, "{role}");
        assert_eq!(v.category, Some(Category::Illegal));
        assert_eq!(v.severity, Some(Severity::Critical));
    }
    let v = decide(p, "staff", "http://bad.example/abuse/1.jpg", t);
    assert_eq!(v.action, Action::Block);
    assert_eq!(
        v.reason(),
        "blocked for staff: illegal (list iwf: bad.example/abuse)"
    );
    let v = decide(p, "staff", "http://bad.example/fine", t);
    assert_eq!(v.action, Action::Allow);
}

#[test]
fn local_allow_beats_list_categories() {
    let p = school();
    let t = tuesday_lesson();
    // bbc.co.uk/proxied is on a proxy list, but bbc.co.uk is allowed for pupils...
    let v = decide(p, "pupil", "http://www.bbc.co.uk/proxied/page", t);
    assert_eq!(v.action, Action::Allow, "{}", v.reason());
    assert_eq!(
        v.rule,
        Rule::LocalAllow {
            entry: "bbc.co.uk".into()
        }
    );
    // ...and a URL allow entry lifts a domain block below it only.
    let v = decide(p, "pupil", "http://games.example.org/maths/fractions", t);
    assert_eq!(v.action, Action::Allow, "{}", v.reason());
    let v = decide(p, "pupil", "http://games.example.org/shooter", t);
    assert_eq!(v.action, Action::Block);
    assert_eq!(v.category, Some(Category::Games));
}

#[test]
fn the_more_specific_of_allow_and_deny_wins() {
    let p = school();
    let t = tuesday_lesson();
    let v = decide(p, "pupil", "http://tricky.bbc.co.uk/", t);
    assert_eq!(v.action, Action::Block);
    assert_eq!(
        v.reason(),
        "blocked for pupil: local deny: tricky.bbc.co.uk"
    );
    let v = decide(p, "pupil", "http://news.bbc.co.uk/", t);
    assert_eq!(v.action, Action::Allow);
}

#[test]
fn roles_differ() {
    let p = school();
    let t = tuesday_lesson();
    let pupil = decide(p, "pupil", "games.example.org", t);
    let staff = decide(p, "staff", "games.example.org", t);
    assert_eq!(pupil.action, Action::Block);
    assert_eq!(staff.action, Action::Allow);
    // The guest role extends pupil and adds its own blocks.
    let guest = decide(p, "guest", "games.example.org", t);
    assert_eq!(guest.action, Action::Block);
}

#[test]
fn flagged_search_terms_with_severity() {
    let p = school();
    let t = tuesday_lesson();
    let v = decide(
        p,
        "pupil",
        "https://www.google.co.uk/search?q=how+to+kill+myself",
        t,
    );
    assert_eq!(v.action, Action::Flag, "{}", v.reason());
    assert_eq!(v.severity, Some(Severity::High));
    assert_eq!(v.category, Some(Category::Suicide));
    assert_eq!(v.search_terms.as_deref(), Some("how to kill myself"));
    // SafeSearch still applies to a flagged search.
    assert_eq!(
        v.rewrite.map(|r| r.cname),
        Some("forcesafesearch.google.com")
    );
    // An ordinary search is only rewritten.
    let v = decide(
        p,
        "pupil",
        "https://www.google.co.uk/search?q=photosynthesis",
        t,
    );
    assert_eq!(v.action, Action::Rewrite);
    assert_eq!(
        v.reason(),
        "allowed with SafeSearch for pupil: SafeSearch enforced"
    );
    // Staff have no SafeSearch in this config.
    let v = decide(
        p,
        "staff",
        "https://www.google.co.uk/search?q=photosynthesis",
        t,
    );
    assert_eq!(v.action, Action::Allow);
}

#[test]
fn keywords_catch_what_no_list_knows() {
    let p = school();
    let t = tuesday_lesson();
    let v = decide(p, "pupil", "http://free-online-casino-2026.example/", t);
    assert_eq!(v.action, Action::Block);
    assert_eq!(v.category, Some(Category::Gambling));
    assert!(matches!(v.rule, Rule::Keyword { .. }), "{:?}", v.rule);
    let v = decide(p, "pupil", "http://essex.ac.uk/", t);
    assert_eq!(v.action, Action::Allow, "{}", v.reason());
}

#[test]
fn malformed_hosts_are_blocked_not_allowed() {
    let p = school();
    let role = p.role_id("staff").unwrap();
    for host in ["", "a..b", "exa mple.com", "x\u{0}y"] {
        let v = p.decide(&Request::host(role, host, tuesday_lesson()));
        assert_eq!(v.action, Action::Block, "{host:?}");
        assert_eq!(v.rule, Rule::MalformedHost);
    }
}

#[test]
fn role_resolution_order() {
    let p = school();
    let ip = |s: &str| s.parse().unwrap();
    let name = |c: schoolgate_classifier::Client| p.role(c.role).name.to_string();
    assert_eq!(name(p.client(ip("10.20.1.1"), None)), "pupil");
    assert_eq!(name(p.client(ip("10.30.1.1"), None)), "staff");
    // A mapped device on the pupil network.
    let c = p.client(ip("10.20.9.10"), None);
    assert_eq!(c.device.as_deref(), Some("library-desk"));
    assert_eq!(name(c), "staff");
    // An authenticated user beats the network.
    assert_eq!(name(p.client(ip("10.20.1.1"), Some("j.okafor"))), "staff");
    // IPv4-mapped IPv6 from a dual-stack socket.
    assert_eq!(name(p.client(ip("::ffff:10.20.1.1"), None)), "pupil");
    // Unknown: the default role, fail closed.
    let c = p.client(ip("192.0.2.1"), None);
    assert_eq!(name(c.clone()), "guest");
    assert!(!c.known);
    assert_eq!(&*p.client(ip("10.20.1.1"), None).school, "hillside");
}

#[test]
fn a_name_on_several_lists_carries_every_category_whatever_the_order() {
    let entries = [
        ("ut1/gambling", Category::Gambling, "bet365.com"),
        ("ut1/games", Category::Games, "bet365.com"),
        ("ut1/gambling", Category::Gambling, "bet365.com"),
        ("ut1/games", Category::Games, "miniclip.com"),
    ];
    let mut reversed = entries;
    reversed.reverse();
    for entries in [&entries[..], &reversed[..]] {
        let p = crate::support::policy(crate::support::SMALL_SCHOOL, entries);
        assert_eq!(p.stats().domains, 2);
        let v = decide(&p, "pupil", "https://www.bet365.com/", tuesday_lesson());
        assert!(
            v.categories.contains(Category::Gambling),
            "{:?}",
            v.categories
        );
        assert!(v.categories.contains(Category::Games), "{:?}", v.categories);
        let v = decide(&p, "pupil", "https://miniclip.com/", tuesday_lesson());
        assert!(v.categories.contains(Category::Games), "{:?}", v.categories);
        assert!(
            !v.categories.contains(Category::Gambling),
            "{:?}",
            v.categories
        );
    }
}
