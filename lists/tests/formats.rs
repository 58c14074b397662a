use schoolgate_lists::{Entry, Format, read_str};

use crate::support::{errors, read};

#[test]
fn domains_list_reports_each_bad_line_and_reads_on() {
    let input = "\
# School extra blocks
Games.Example.
*.chat.example
http://x.example/y
.tracker.example

bad_label..example
b\u{fc}cher.example
1.2.3
192.0.2.7
after.example # the line after the bad ones still counts
";
    let (got, report) = read(Format::Domains, input);
    assert_eq!(
        got,
        [
            "games.example",
            "chat.example",
            "tracker.example",
            "xn--bcher-kva.example",
            "192.0.2.7",
            "after.example"
        ]
    );
    assert_eq!(report.entries, 6);
    assert_eq!(report.malformed, 3);
    assert_eq!(report.lines, 11);
    assert_eq!(
        errors(&report),
        [
            "test.txt:4: a URL in a domain list; use format = \"urls\"",
            "test.txt:7: empty label in `bad_label..example`",
            "test.txt:9: `1.2.3` ends in a numeric label but is not an IPv4 address",
        ]
    );
}

#[test]
fn domains_length_limits() {
    let long_label = "a".repeat(64);
    let long_name = vec!["abcdefghij"; 24].join("."); // 263 characters
    let input = format!("{long_label}.example\n{long_name}\nok.example\n");
    let (got, report) = read(Format::Domains, &input);
    assert_eq!(got, ["ok.example"]);
    assert_eq!(
        errors(&report),
        [
            format!(
                "test.txt:1: label `{long_label}` is 64 characters long; a label is at most 63"
            ),
            format!(
                "test.txt:2: `{}…` is 263 characters long; a host name is at most 253",
                &long_name[..80]
            ),
        ]
    );
}

#[test]
fn hosts_file() {
    let input = "\
# Title: some hosts file
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
0.0.0.0 0.0.0.0
0.0.0.0 ads.example Track.Example # inline comment
ads2.example
0.0.0.0 good.example bad!.example
:: v6.example
";
    let (got, report) = read(Format::Hosts, input);
    assert_eq!(
        got,
        ["ads.example", "track.example", "good.example", "v6.example"]
    );
    assert_eq!(report.entries, 4);
    assert_eq!(
        errors(&report),
        [
            "test.txt:6: `ads2.example` is not an IP address; a hosts line is `<address> <name>...`",
            "test.txt:7: character `!` in `bad!.example` is not allowed in a host name (a-z, 0-9, `-`, `_`, `.`)",
        ]
    );
}

#[test]
fn adblock_list() {
    let input = "\
[Adblock Plus 2.0]
! Title: test
||ads.example^
||tracker.example^$third-party
@@||allowed.example^
||cdn.example/ads/*
example.org##.banner
||bad..example^
||late.example^$important
";
    let (got, report) = read(Format::Adblock, input);
    assert_eq!(got, ["ads.example", "tracker.example", "late.example"]);
    assert_eq!(report.unsupported, 3);
    assert_eq!(report.malformed, 1);
    assert_eq!(
        errors(&report),
        ["test.txt:8: empty label in `bad..example`"]
    );
}

#[test]
fn urls_list_yields_urls_and_domains() {
    let input = "\
adult.example/videos/
http://Mixed.Example/Path/Kept?As=Is
https://whole-site.example/
ftp://files.example/x
bad host.example/x
last.example/p
";
    let mut got = Vec::new();
    let report = read_str("urls.txt", input, Format::Urls, &mut |e| {
        got.push(match e {
            Entry::Domain(d) => format!("domain {d}"),
            Entry::Url { host, path } => format!("url {host} {path}"),
            other => format!("{other:?}"),
        });
    });
    assert_eq!(
        got,
        [
            "url adult.example /videos/",
            "url mixed.example /Path/Kept?As=Is",
            "domain whole-site.example",
            "url last.example /p",
        ]
    );
    assert_eq!(
        errors(&report),
        [
            "urls.txt:4: scheme `ftp` in a URL list; only http and https URLs are understood",
            "urls.txt:5: blank inside `bad host.example/x`; a URL list has one URL per line",
        ]
    );
}

#[test]
fn a_single_ut1_file_takes_domains_and_urls() {
    let (got, report) = read(Format::Ut1, "casino.example\ncasino2.example/poker\n");
    assert_eq!(got, ["casino.example", "casino2.example/poker"]);
    assert_eq!(report.malformed, 0);
}

#[test]
fn only_the_first_errors_are_kept_but_all_are_counted() {
    let input = "bad..example\n".repeat(50) + "good.example\n";
    let (got, report) = read(Format::Domains, &input);
    assert_eq!(got, ["good.example"]);
    assert_eq!(report.malformed, 50);
    assert_eq!(
        report.first_errors.len(),
        schoolgate_lists::MAX_REPORTED_ERRORS
    );
    assert_eq!(report.first_errors[19].line, 20);
}
