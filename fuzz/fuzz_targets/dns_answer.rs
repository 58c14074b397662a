#![no_main]
//! Any packet from a client of each role, over UDP and TCP: an answer with a
//! header that echoes the query's ID, or silence; never a panic.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use schoolgate_dns::filter::Step;
use schoolgate_dns::{DnsFilter, Transport};
use schoolgate_events::{EventStore, Pipeline, SqliteStore};
use tokio_util::sync::CancellationToken;

#[path = "common.rs"]
mod common;

struct Setup {
    filter: Arc<DnsFilter>,
    _rt: tokio::runtime::Runtime,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("schoolgate-fuzz-dns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let policy = schoolgate_classifier::shared(common::policy(&dir));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _enter = rt.enter();
        let cfg = policy.load().config().store.clone();
        let store = Arc::new(SqliteStore::open(&cfg.path, cfg.retention.clone()).expect("store"));
        let (events, _pipeline) =
            Pipeline::start(&cfg, store as Arc<dyn EventStore>, CancellationToken::new())
                .expect("pipeline");
        let filter = DnsFilter::new(policy, events);
        drop(_enter);
        Setup { filter, _rt: rt }
    })
}

fuzz_target!(|data: &[u8]| {
    let s = setup();
    let mut out = Vec::new();
    for client in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "192.0.2.1"] {
        let ip: IpAddr = client.parse().expect("ip");
        for transport in [Transport::Udp, Transport::Tcp] {
            out.clear();
            if let Step::Reply = s.filter.answer_now(data, ip, transport, &mut out) {
                assert!(out.len() >= 12, "a reply has a header");
                assert_eq!(out[..2], data[..2], "the reply echoes the ID");
                assert!(out[2] & 0x80 != 0, "the reply is a response");
            }
        }
    }
});
