use proptest::prelude::*;
use schoolgate_lists::{Format, read_bytes, read_str};

fn any_format() -> impl Strategy<Value = Format> {
    prop::sample::select(Format::ALL.to_vec())
}

/// A valid, already normal host name: 1-4 labels of [a-z0-9_-], then a TLD that
/// starts with a letter (an all-digit last label must be an IPv4 address).
fn valid_name() -> impl Strategy<Value = String> {
    (
        prop::collection::vec("[a-z0-9_-]{1,63}", 1..4),
        "[a-z][a-z0-9-]{0,10}",
    )
        .prop_map(|(labels, tld)| format!("{}.{tld}", labels.join(".")))
        .prop_filter("at most 253 characters", |n| n.len() <= 253)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any bytes, any format: a report, never a panic, and the counts add up.
    #[test]
    fn arbitrary_lines_never_panic(
        lines in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 0..20),
        format in any_format(),
    ) {
        let input = lines.join(&b'\n');
        let mut seen = 0u64;
        let report = read_bytes("fuzz", &input, format, &mut |_| seen += 1);
        // Random bytes could start with the gzip magic; then an error is fine.
        if let Ok(report) = report {
            prop_assert_eq!(report.entries, seen);
            prop_assert!(report.malformed + report.unsupported <= report.lines);
            prop_assert!(report.first_errors.len() as u64 <= report.malformed);
        }
    }

    /// Text shaped like list lines, with the characters that matter to the parsers.
    #[test]
    fn list_like_text_never_panics(
        text in r"([ \t#!|^$*./:@\[\]a-zA-Z0-9_é\u{fffd}-]{0,60}\n){0,10}",
        format in any_format(),
    ) {
        let mut seen = 0u64;
        let report = read_str("fuzz", &text, format, &mut |_| seen += 1);
        prop_assert_eq!(report.entries, seen);
    }

    /// A valid name comes back as itself, however a list decorates it.
    #[test]
    fn a_valid_name_round_trips_as_one_entry(name in valid_name(), upper in any::<bool>()) {
        let shown = if upper { name.to_ascii_uppercase() } else { name.clone() };
        let cases = [
            (Format::Domains, shown.clone()),
            (Format::Domains, format!("  *.{shown}.  # comment")),
            (Format::Hosts, format!("0.0.0.0 {shown}")),
            (Format::Adblock, format!("||{shown}^$third-party")),
            (Format::Urls, format!("http://{shown}/")),
            (Format::Ut1, shown.clone()),
        ];
        for (format, line) in cases {
            let mut got = Vec::new();
            let report = read_str("gen", &line, format, &mut |e| got.push(e.to_string()));
            prop_assert_eq!(report.malformed, 0, "{:?} {:?}: {:?}", format, line, report.first_errors);
            prop_assert_eq!(&got, std::slice::from_ref(&name), "{:?} {:?}", format, line);
        }
    }
}
