use std::net::IpAddr;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use schoolgate_dns::Transport;
use schoolgate_dns::filter::Step;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const SHORT: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_get_formerr_or_silence_and_serving_goes_on() {
    let school = School::start().await;
    let good = query(0x4242, "www.school.test.", RecordType::A, false);
    // Garbage shorter than a header: silence.
    assert!(
        raw_udp(school.addr, PUPIL, &[1, 2, 3, 4, 5], SHORT)
            .await
            .is_none()
    );
    // A response sent to us: silence (no loops with a spoofed source).
    let mut response = good.clone();
    response[2] |= 0x80;
    assert!(
        raw_udp(school.addr, PUPIL, &response, SHORT)
            .await
            .is_none()
    );
    // Two questions: FORMERR, with the ID echoed.
    let mut two = good.clone();
    two[5] = 2;
    let answer = raw_udp(school.addr, PUPIL, &two, SHORT)
        .await
        .expect("FORMERR");
    let m = Message::from_vec(&answer).expect("parse");
    assert_eq!(
        (m.metadata.id, m.metadata.response_code),
        (0x4242, ResponseCode::FormErr)
    );
    // A question cut short: FORMERR.
    let answer = raw_udp(school.addr, PUPIL, &good[..good.len() - 3], SHORT)
        .await
        .expect("FORMERR");
    assert_eq!(
        Message::from_vec(&answer)
            .expect("parse")
            .metadata
            .response_code,
        ResponseCode::FormErr
    );
    // Another opcode (STATUS): NOTIMP.
    let mut status = good.clone();
    status[2] |= 2 << 3;
    let answer = raw_udp(school.addr, PUPIL, &status, SHORT)
        .await
        .expect("NOTIMP");
    assert_eq!(
        Message::from_vec(&answer)
            .expect("parse")
            .metadata
            .response_code,
        ResponseCode::NotImp
    );
    // EDNS version 1: BADVERS.
    let d = school
        .dig(PUPIL, &["+edns=1", "+noednsnegotiation", "www.school.test"])
        .await;
    assert_eq!(d.status, "BADVERS", "{}", d.output);

    assert_eq!(school.filter.stats().malformed, 6);
    let d = school.dig(PUPIL, &["www.school.test", "A"]).await;
    assert_eq!(d.data("A"), ["192.0.2.10"], "still serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_packet_makes_the_filter_panic() {
    let school = School::start().await;
    let seeds = [
        query(1, "www.school.test.", RecordType::A, true),
        query(2, "bet365.com.", RecordType::AAAA, false),
        query(3, "www.google.com.", RecordType::HTTPS, true),
    ];
    let filter = school.filter.clone();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 2_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let mutated = (
        0..seeds.len(),
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        any::<usize>(),
    )
        .prop_map(move |(seed, flips, cut)| {
            let mut p = seeds[seed].clone();
            for (at, byte) in flips {
                let i = at % p.len();
                p[i] = byte;
            }
            p.truncate(cut % (p.len() + 1));
            p
        });
    let random = proptest::collection::vec(any::<u8>(), 0..600);
    let pupil: IpAddr = PUPIL.parse().expect("ip");
    runner
        .run(&prop_oneof![mutated, random], |packet| {
            let mut out = Vec::new();
            for transport in [Transport::Udp, Transport::Tcp] {
                if let Step::Reply = filter.answer_now(&packet, pupil, transport, &mut out) {
                    prop_assert!(out.len() >= 12, "every reply has a header");
                    prop_assert!(
                        Message::from_vec(&out).is_ok(),
                        "every reply parses: {:?}",
                        out
                    );
                }
            }
            Ok(())
        })
        .expect("no panic, every reply well formed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_outside_every_network_are_refused() {
    let school = School::start().await;
    for who in [STRANGER, "127.0.0.1"] {
        let d = school.dig(who, &["www.school.test", "A"]).await;
        assert_eq!(d.status, "REFUSED", "{who}: {}", d.output);
        assert!(
            d.ede().is_some_and(|e| e.contains("18 (Prohibited)")),
            "{}",
            d.output
        );
    }
    // CHAOS queries would describe our upstream: refused too.
    let d = school.dig(PUPIL, &["version.bind", "TXT", "CH"]).await;
    assert_eq!(d.status, "REFUSED");
    assert_eq!(
        school.upstream.udp_queries(),
        0,
        "nothing of it went upstream"
    );
    assert_eq!(school.filter.stats().refused, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_is_dropped() {
    let school = School::start_with(Setup {
        rate_limit_qps: 2,
        ..Setup::default()
    })
    .await;
    let sock = tokio::net::UdpSocket::bind(format!("{PUPIL}:0"))
        .await
        .expect("bind");
    let blocked = query(7, "bet365.com.", RecordType::A, false);
    for _ in 0..40 {
        sock.send_to(&blocked, school.addr).await.expect("send");
    }
    let mut answered = 0;
    let mut buf = vec![0u8; 1024];
    while let Ok(Ok(_)) = tokio::time::timeout(SHORT, sock.recv_from(&mut buf)).await {
        answered += 1;
    }
    assert!(
        answered < 10,
        "the burst of 2 passed, the rest did not: {answered}"
    );
    assert!(school.filter.stats().rate_limited >= 30);
    // Another client is not affected.
    let d = school.dig(STAFF, &["bet365.com", "A"]).await;
    assert_eq!(d.status, "NOERROR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_clients_can_pipeline_queries() {
    let school = School::start().await;
    let d = school.dig(PUPIL, &["+tcp", "www.school.test", "A"]).await;
    assert_eq!(d.data("A"), ["192.0.2.10"]);
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{GUEST}:0").parse().expect("addr"))
        .expect("bind");
    let mut stream = socket.connect(school.addr).await.expect("connect");
    let mut frames = Vec::new();
    for (id, name) in [
        (11u16, "www.school.test."),
        (12, "bet365.com."),
        (13, "www.school.test."),
    ] {
        let q = query(id, name, RecordType::A, false);
        frames.extend_from_slice(&(q.len() as u16).to_be_bytes());
        frames.extend_from_slice(&q);
    }
    stream.write_all(&frames).await.expect("write");
    for id in [11u16, 12, 13] {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.expect("length");
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut msg).await.expect("message");
        assert_eq!(Message::from_vec(&msg).expect("parse").metadata.id, id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_client_is_answered_in_batches_and_nothing_is_lost() {
    // Any rate switches the loop to batches after its first 1,024 datagrams, so
    // the batched path is what most of this test goes through however slow the
    // machine is.
    let school = School::start_with(Setup {
        rate_limit_qps: 1_000_000,
        udp_batch_above_qps: 1,
        ..Setup::default()
    })
    .await;
    let sock = std::sync::Arc::new(
        tokio::net::UdpSocket::bind(format!("{PUPIL}:0"))
            .await
            .expect("bind"),
    );
    let total: u16 = 20_000;
    let window = std::sync::Arc::new(tokio::sync::Semaphore::new(128));
    let (addr, tx, w) = (
        school.addr,
        std::sync::Arc::clone(&sock),
        std::sync::Arc::clone(&window),
    );
    let sender = tokio::spawn(async move {
        let names = ["www.school.test.", "bet365.com.", "www.google.com."];
        for id in 0..total {
            w.acquire().await.expect("window").forget();
            let q = query(id, names[usize::from(id) % 3], RecordType::A, id % 2 == 0);
            tx.send_to(&q, addr).await.expect("send");
        }
    });
    let mut seen = vec![false; usize::from(total)];
    let mut buf = vec![0u8; 4096];
    let mut answered = 0;
    while answered < total {
        let Ok(r) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf)).await
        else {
            panic!("lost after {answered}: {:?}", school.filter.stats());
        };
        let (n, _) = r.expect("recv");
        let m = Message::from_vec(&buf[..n]).expect("parse");
        let id = usize::from(m.metadata.id);
        assert!(!seen[id], "answered twice: {id}");
        seen[id] = true;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(!m.answers.is_empty(), "{m:?}");
        answered += 1;
        window.add_permits(1);
    }
    sender.await.expect("sender");
    let stats = school.filter.stats();
    assert!(
        stats.udp_batched > 0,
        "the loop switched to batches: {stats:?}"
    );
}
