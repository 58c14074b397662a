//! Every list file under `../shared/data/lists`, read and checked against the
//! table in `../shared/data/README.md` (entries per file, and literal IPv4
//! entries per domain file). The files are deduplicated upstream, so every line
//! must become exactly one entry.

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;

use schoolgate_lists::{Entry, Format, read_file, read_ut1_folder};

use crate::support::shared_data;

/// One row of the README's "Files and counts" table.
#[derive(Debug)]
struct Row {
    entries: u64,
    /// `None` for `urls` files (the column says `-`).
    ipv4: Option<u64>,
}

/// `lists/...` path -> its row.
fn readme_counts(data: &Path) -> BTreeMap<String, Row> {
    let readme = fs::read_to_string(data.join("README.md")).expect("data README");
    let mut rows = BTreeMap::new();
    for line in readme.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `path` | entries | www | IPv4 | size | ...
        let [_, path, entries, _www, ipv4, ..] = cells[..] else {
            continue;
        };
        let Some(path) = path
            .strip_prefix("`lists/")
            .and_then(|p| p.strip_suffix('`'))
        else {
            continue;
        };
        // The layout table above it has `<category>` rows with prose, not counts.
        let Ok(entries) = entries.parse() else {
            continue;
        };
        rows.insert(
            path.to_owned(),
            Row {
                entries,
                ipv4: ipv4.parse().ok(),
            },
        );
    }
    assert_eq!(rows.len(), 125, "the README table has changed shape");
    rows
}

fn format_of(file_name: &str) -> Format {
    if file_name.ends_with(".urls.txt.gz") {
        Format::Urls
    } else {
        Format::Domains
    }
}

#[test]
fn every_file_matches_the_readme() {
    let data = shared_data();
    let rows = readme_counts(&data);
    let mut checked = 0;
    for source in ["ut1", "blocklistproject", "porntop"] {
        let dir = data.join("lists").join(source);
        let mut names: Vec<_> = fs::read_dir(&dir)
            .expect("list folder")
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .into_string()
                    .expect("UTF-8 name")
            })
            .collect();
        names.sort();
        for name in names {
            let key = format!("{source}/{name}");
            let row = rows
                .get(&key)
                .unwrap_or_else(|| panic!("{key} is not in the README table"));
            let path = dir.join(&name);
            let mut ipv4 = 0;
            let report = read_file(&path, format_of(&name), &mut |entry| {
                if let Entry::Domain(host) = entry
                    && host.parse::<Ipv4Addr>().is_ok()
                {
                    ipv4 += 1;
                }
            })
            .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(report.malformed, 0, "{key}: {:#?}", report.first_errors);
            assert_eq!(report.entries, row.entries, "{key}");
            assert_eq!(report.lines, row.entries, "{key}: one entry per line");
            if let Some(expected) = row.ipv4 {
                assert_eq!(ipv4, expected, "{key}: IPv4 entries");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, rows.len(), "every README row has its file");
}

#[test]
fn spot_checks_from_the_readme() {
    let data = shared_data().join("lists");
    for (file, format, expected) in [
        ("ut1/gambling.txt.gz", Format::Domains, 25688),
        ("ut1/gambling.urls.txt.gz", Format::Urls, 5),
        ("ut1/malware.txt.gz", Format::Domains, 174532),
        ("ut1/adult.urls.txt.gz", Format::Urls, 894),
        ("blocklistproject/drugs.txt.gz", Format::Domains, 15546),
        ("blocklistproject/gambling.txt.gz", Format::Domains, 1163),
        ("porntop/adult.txt.gz", Format::Domains, 4762),
    ] {
        let report = read_file(&data.join(file), format, &mut |_| {}).expect(file);
        assert_eq!((report.entries, report.malformed), (expected, 0), "{file}");
    }
}

#[test]
fn the_ut1_folder_reads_mapped_categories_and_skips_the_rest() {
    let data = shared_data();
    let rows = readme_counts(&data);
    let mut per_category: BTreeMap<String, u64> = BTreeMap::new();
    let report = read_ut1_folder(&data.join("lists/ut1"), &mut |category, _| {
        *per_category.entry(category.to_owned()).or_default() += 1;
    })
    .expect("UT1 folder");

    assert_eq!(
        report.total.malformed, 0,
        "{:#?}",
        report.total.first_errors
    );
    for category in &report.categories {
        let count = |suffix: &str| {
            rows.get(&format!("ut1/{}{suffix}", category.name))
                .map_or(0, |r| r.entries)
        };
        assert_eq!(
            category.domains.entries,
            count(".txt.gz"),
            "{}",
            category.name
        );
        assert_eq!(
            category.urls.entries,
            count(".urls.txt.gz"),
            "{}",
            category.name
        );
        assert_eq!(
            per_category.get(&category.name).copied().unwrap_or(0),
            category.domains.entries + category.urls.entries,
            "{}: the sink got each entry under its category",
            category.name
        );
    }
    let gambling = report.category("gambling").expect("gambling");
    assert_eq!(
        (gambling.domains.entries, gambling.urls.entries),
        (25688, 5)
    );
    // UT1 `adult` here has only its urls file.
    let adult = report.category("adult").expect("adult");
    assert_eq!((adult.domains.files.len(), adult.urls.entries), (0, 894));

    // Allow-lists and categories the taxonomy has no place for.
    for skipped in [
        "bank",
        "jobsearch",
        "liste_blanche",
        "liste_bu",
        "examen_pix",
    ] {
        assert!(
            report.skipped_categories.iter().any(|s| s == skipped),
            "{skipped} should be skipped: {:?}",
            report.skipped_categories
        );
    }
    // Every UT1 file is either read or in a skipped category.
    let ut1_rows = rows.keys().filter(|k| k.starts_with("ut1/")).count();
    assert_eq!(ut1_rows, 121);
    let read_files = report.total.files.len();
    let skipped_files = rows
        .keys()
        .filter_map(|k| k.strip_prefix("ut1/"))
        .filter(|f| {
            let name = f
                .trim_end_matches(".gz")
                .trim_end_matches(".txt")
                .trim_end_matches(".urls");
            report.skipped_categories.iter().any(|s| s == name)
        })
        .count();
    assert_eq!(read_files + skipped_files, ut1_rows);
}

#[test]
fn odd_but_valid_names_in_the_real_data_are_kept() {
    // Upstream has names a strict hostname check would drop: an underscore
    // (common on hosting subdomains, and at the start of a label) and a label
    // ending in a hyphen. DNS carries both, so a block list must keep them.
    let data = shared_data().join("lists/ut1");
    let mut found = Vec::new();
    for (file, wanted) in [
        ("bank.txt.gz", "w-w-i-s-.com"),
        ("doh.txt.gz", "_214214214.xyz"),
    ] {
        read_file(&data.join(file), Format::Domains, &mut |entry| {
            if entry == Entry::Domain(wanted) {
                found.push(wanted);
            }
        })
        .expect(file);
    }
    assert_eq!(found, ["w-w-i-s-.com", "_214214214.xyz"]);
}
