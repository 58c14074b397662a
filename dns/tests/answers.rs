use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_names_resolve_for_every_role() {
    let school = School::start().await;
    for who in [PUPIL, STAFF, GUEST] {
        let d = school.dig(who, &["www.school.test", "A"]).await;
        assert_eq!(d.status, "NOERROR", "{who}: {}", d.output);
        assert_eq!(d.data("A"), ["192.0.2.10"], "{who}");
        assert!(d.ede().is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_per_role_with_the_block_page_and_an_extended_error() {
    let school = School::start().await;
    let pupil = school.dig(PUPIL, &["bet365.com", "A"]).await;
    assert_eq!(pupil.status, "NOERROR", "{}", pupil.output);
    assert_eq!(pupil.data("A"), [BLOCK_V4.to_string()]);
    assert_eq!(pupil.answers[0].1, 60, "short block TTL");
    let ede = pupil.ede().expect("EDE option");
    assert!(ede.contains("17 (Filtered)"), "{ede}");
    assert!(ede.contains("gambling"), "{ede}");

    // Staff may see gambling sites: the real answer.
    let staff = school.dig(STAFF, &["bet365.com", "A"]).await;
    assert_eq!(staff.data("A"), ["192.0.2.66"], "{}", staff.output);

    // Subdomains are covered, and AAAA gets the IPv6 block page.
    let v6 = school.dig(GUEST, &["www.bet365.com", "AAAA"]).await;
    assert_eq!(v6.data("AAAA"), [BLOCK_V6], "{}", v6.output);

    // Security categories say Blocked rather than Filtered.
    let malware = school.dig(STAFF, &["x.malware.test", "A"]).await;
    assert!(
        malware.ede().expect("EDE").contains("15 (Blocked)"),
        "{}",
        malware.output
    );
    let illegal = school.dig(STAFF, &["illegal.test", "A"]).await;
    assert_eq!(
        illegal.data("A"),
        [BLOCK_V4.to_string()],
        "nobody may see illegal.test"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_types_of_a_blocked_name_leak_nothing() {
    let school = School::start().await;
    for qtype in ["TXT", "MX", "HTTPS", "CNAME"] {
        let d = school.dig(PUPIL, &["bet365.com", qtype]).await;
        assert_eq!(d.status, "NOERROR", "{qtype}");
        assert!(d.answers.is_empty(), "{qtype}: {}", d.output);
    }
    assert_eq!(
        school.upstream.udp_queries(),
        0,
        "a blocked name never goes upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_answer_can_be_nxdomain() {
    let school = School::start_with(Setup {
        block_answer: "nxdomain",
        ..Setup::default()
    })
    .await;
    let d = school.dig(PUPIL, &["facebook.com", "A"]).await;
    assert_eq!(d.status, "NXDOMAIN", "{}", d.output);
    assert!(d.ede().expect("EDE").contains("social-networking") || d.output.contains("social"));
    let clients_without_edns = school.dig(PUPIL, &["+noedns", "facebook.com", "A"]).await;
    assert_eq!(clients_without_edns.status, "NXDOMAIN");
    assert!(
        clients_without_edns.ede().is_none(),
        "no OPT for a client without EDNS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_reload_applies_to_the_next_query() {
    let school = School::start().await;
    let before = school.dig(STAFF, &["facebook.com", "A"]).await;
    assert_eq!(
        before.data("A"),
        ["192.0.2.77"],
        "staff may use social networks"
    );
    // The network manager blocks social networking for staff and reloads.
    let toml = school.toml.replace(
        "[roles.staff]\nblock = [\"pornography\", \"malware\"]",
        "[roles.staff]\nblock = [\"pornography\", \"malware\", \"social-networking\"]",
    );
    assert_ne!(toml, school.toml, "the test edits the staff role");
    school
        .policy
        .store(std::sync::Arc::new(build_policy(&toml)));
    let after = school.dig(STAFF, &["facebook.com", "A"]).await;
    assert_eq!(after.data("A"), [BLOCK_V4.to_string()], "{}", after.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_clients_are_served_on_an_ipv6_listener() {
    let school = School::start().await;
    // A second server for the same filter, on IPv6 loopback.
    let server =
        schoolgate_dns::DnsServer::bind(school.filter.clone(), &["[::1]:0".parse().expect("addr")])
            .expect("bind ::1");
    let addr = server.local_addrs()[0];
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(server.run(stop.clone()));
    let d = dig(addr, "::1", &["bet365.com", "AAAA"]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.output);
    assert_eq!(
        d.data("AAAA"),
        Vec::<String>::new(),
        "staff (::1) see no block page: {}",
        d.output
    );
    let d = dig(addr, "::1", &["www.school.test", "AAAA"]).await;
    assert_eq!(d.data("AAAA"), ["2001:db8::10"], "{}", d.output);
    let tcp = dig(addr, "::1", &["+tcp", "www.school.test", "A"]).await;
    assert_eq!(tcp.data("A"), ["192.0.2.10"]);
    stop.cancel();
    running.await.expect("task").expect("server stops cleanly");
}
