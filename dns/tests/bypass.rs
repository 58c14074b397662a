use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use schoolgate_classifier::{Action, Category, Severity};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_firefox_canary_says_no_to_roles_that_block_doh() {
    let school = School::start().await;
    let pupil = school.dig(PUPIL, &["use-application-dns.net", "A"]).await;
    assert_eq!(pupil.status, "NXDOMAIN", "{}", pupil.output);
    assert!(
        pupil.ede().is_some_and(|e| e.contains("encrypted DNS")),
        "{}",
        pupil.output
    );
    // Staff do not block `doh`: the name resolves as it really does.
    let staff = school.dig(STAFF, &["use-application-dns.net", "A"]).await;
    assert_eq!(staff.data("A"), ["192.0.2.53"], "{}", staff.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_relay_is_told_to_stay_off() {
    let school = School::start().await;
    for name in ["mask.icloud.com", "mask-h2.icloud.com"] {
        for qtype in ["A", "AAAA", "HTTPS"] {
            let d = school.dig(GUEST, &[name, qtype]).await;
            assert_eq!(d.status, "NXDOMAIN", "{name} {qtype}: {}", d.output);
            assert!(d.answers.is_empty());
        }
    }
    let staff = school.dig(STAFF, &["mask.icloud.com", "A"]).await;
    assert_eq!(staff.data("A"), ["192.0.2.54"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doh_resolvers_are_blocked_by_category() {
    let school = School::start().await;
    let d = school.dig(PUPIL, &["dns.google", "A"]).await;
    assert_eq!(d.data("A"), [BLOCK_V4.to_string()], "{}", d.output);
    assert!(d.ede().expect("EDE").contains("doh") || d.output.contains("Encrypted DNS"));
    let staff = school.dig(STAFF, &["dns.google", "A"]).await;
    assert_eq!(staff.data("A"), ["8.8.8.8"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnelling_at_volume_is_flagged_as_proxy() {
    let mut school = School::start().await;
    // An ordinary client asking a few odd names is not flagged...
    let odd = "8e3a01b9c47d2f6a5e0b1c3d4f5a6b7c8d9e.cdn.example.";
    let answer = raw_udp(
        school.addr,
        STAFF,
        &query(1, odd, RecordType::A, false),
        Duration::from_secs(3),
    )
    .await;
    assert!(answer.is_some());
    // ...but a stream of fresh encoded names is.
    let sock = tokio::net::UdpSocket::bind(format!("{PUPIL}:0"))
        .await
        .expect("bind");
    let mut buf = vec![0u8; 4096];
    for i in 1..=30u16 {
        let name = format!(
            "{:032x}{i:04x}.t.exfil-data.test.",
            u128::from(i).wrapping_mul(0x9e3779b97f4a7c15f39cc0605cedc835)
        );
        sock.send_to(&query(i, &name, RecordType::TXT, false), school.addr)
            .await
            .expect("send");
        let (n, _) = tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
            .await
            .expect("answered")
            .expect("recv");
        let m = Message::from_vec(&buf[..n]).expect("answer");
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NXDomain,
            "tunnel names still resolve (allowed, flagged)"
        );
    }
    let stats = school.filter.stats();
    assert_eq!(stats.tunnel_suspects, 30 - 19, "{stats:?}");
    let events = school.events_of(PUPIL).await;
    let flagged: Vec<_> = events.iter().filter(|e| e.action == Action::Flag).collect();
    assert_eq!(flagged.len(), 11, "{events:#?}");
    for e in flagged {
        assert!(e.categories.contains(Category::Proxy));
        assert_eq!(e.severity, Some(Severity::Medium));
        assert!(e.rule.contains("tunnelling"), "{}", e.rule);
        assert_eq!(e.method, "TXT");
    }
}
