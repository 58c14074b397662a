use std::collections::BTreeSet;

use schoolgate_classifier::Category;
use schoolgate_lists::{Entry, Format, curated};

#[test]
fn every_curated_list_parses_cleanly() {
    for list in curated::all() {
        let mut names = Vec::new();
        let report = list.read(&mut |entry| match entry {
            Entry::Domain(name) => names.push(name.to_owned()),
            other => panic!(
                "{}: a curated list holds names only, got {other}",
                list.name
            ),
        });
        assert_eq!(
            report.malformed, 0,
            "{}: {:#?}",
            list.name, report.first_errors
        );
        assert_eq!(report.unsupported, 0, "{}", list.name);
        assert_eq!(report.entries, names.len() as u64);
        let unique: BTreeSet<_> = names.iter().collect();
        assert_eq!(
            unique.len(),
            names.len(),
            "{}: duplicate entries",
            list.name
        );
        assert_eq!(list.format, Format::Domains);
    }
}

#[test]
fn each_list_is_big_enough_and_filed_under_its_category() {
    let expected = [
        ("doh", Category::Doh, 40),
        ("vpn", Category::Vpn, 40),
        ("proxy", Category::Proxy, 30),
        ("gambling", Category::Gambling, 40),
        ("social-networking", Category::SocialNetworking, 20),
        ("chat", Category::Chat, 15),
        ("bypass-canaries", Category::Doh, 3),
    ];
    let names: Vec<_> = curated::all().iter().map(|l| l.name).collect();
    assert_eq!(names, expected.map(|(name, _, _)| name));
    for (name, category, at_least) in expected {
        let list = curated::find(name).expect("listed");
        assert_eq!(list.category, category, "{name}");
        let entries = list.read(&mut |_| {}).entries;
        assert!(
            entries >= at_least,
            "{name}: {entries} entries, want {at_least}+"
        );
    }
}

#[test]
fn lists_hold_the_names_the_policies_rely_on() {
    let contains = |list: &str, wanted: &[&str]| {
        let mut names = BTreeSet::new();
        curated::find(list).expect("listed").read(&mut |e| {
            names.insert(e.host().to_owned());
        });
        for name in wanted {
            assert!(names.contains(*name), "{list} lacks {name}");
        }
    };
    contains(
        "bypass-canaries",
        &[
            "use-application-dns.net",
            "mask.icloud.com",
            "mask-h2.icloud.com",
        ],
    );
    contains(
        "doh",
        &[
            "dns.google",
            "cloudflare-dns.com",
            "mozilla.cloudflare-dns.com",
            "dns.quad9.net",
        ],
    );
    contains("proxy", &["torproject.org", "hide.me", "croxyproxy.com"]);
    contains(
        "social-networking",
        &["facebook.com", "instagram.com", "tiktok.com"],
    );
    contains("chat", &["whatsapp.com", "web.whatsapp.com", "discord.gg"]);
    contains("gambling", &["bet365.com", "coral.co.uk", "skybet.com"]);
    contains("vpn", &["nordvpn.com", "expressvpn.com", "protonvpn.com"]);
}

#[test]
fn each_file_says_what_it_is_who_wrote_it_and_when() {
    for list in curated::all() {
        let header: Vec<_> = list
            .text
            .lines()
            .take_while(|l| l.starts_with('#'))
            .collect();
        let header = header.join("\n");
        assert!(
            header.starts_with(&format!("# schoolgate curated list: {} ", list.name)),
            "{}",
            list.name
        );
        assert!(
            header.contains("Written by the schoolgate authors"),
            "{}",
            list.name
        );
        assert!(header.contains("Compiled: 20"), "{}: no date", list.name);
    }
}
