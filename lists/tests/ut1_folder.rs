use std::fs;
use std::path::Path;

use schoolgate_classifier::Category;
use schoolgate_lists::{Entry, ListError, read_ut1_folder};

use crate::support::write_gz;

/// Reads a folder and returns `category: entry` lines, sorted.
fn read_folder(dir: &Path) -> (Vec<String>, schoolgate_lists::Ut1Report) {
    let mut got = Vec::new();
    let report = read_ut1_folder(dir, &mut |category, entry: Entry<'_>| {
        got.push(format!("{category}: {entry}"));
    })
    .expect("readable folder");
    got.sort();
    (got, report)
}

#[test]
fn the_ut1_archive_layout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    fs::create_dir(root.join("gambling")).expect("mkdir");
    fs::write(
        root.join("gambling/domains"),
        "casino.example\nbad..example\n",
    )
    .expect("write");
    write_gz(&root.join("gambling/urls.gz"), b"news.example/betting\n");
    fs::write(root.join("gambling/usage"), "black\n").expect("write");
    fs::create_dir(root.join("drogue")).expect("mkdir");
    fs::write(root.join("drogue/domains"), "weed.example\n").expect("write");
    fs::write(root.join("drogue/expressions"), "(weed|grass)\n").expect("write");
    // An allow-list: no place in the taxonomy, so not read.
    fs::create_dir(root.join("liste_blanche")).expect("mkdir");
    fs::write(root.join("liste_blanche/domains"), "school.example\n").expect("write");
    fs::write(root.join("README"), "not a list\n").expect("write");
    #[cfg(unix)]
    std::os::unix::fs::symlink("drogue", root.join("drugs")).expect("symlink");

    let (got, report) = read_folder(root);
    assert_eq!(
        got,
        [
            "drogue: weed.example",
            "gambling: casino.example",
            "gambling: news.example/betting",
        ]
    );
    assert_eq!(report.skipped_categories, ["liste_blanche"]);
    #[cfg(unix)]
    assert_eq!(report.aliases, [("drugs".to_owned(), "drogue".to_owned())]);

    let gambling = report.category("gambling").expect("gambling read");
    assert_eq!(gambling.category, Category::Gambling);
    assert_eq!(gambling.domains.entries, 1);
    assert_eq!(gambling.urls.entries, 1);
    assert_eq!(gambling.domains.malformed, 1);
    assert_eq!(
        gambling.domains.first_errors[0].to_string(),
        format!(
            "{}:2: empty label in `bad..example`",
            root.join("gambling/domains").display()
        )
    );
    assert_eq!(report.total.entries, 3);
    assert_eq!(report.total.malformed, 1);
    assert_eq!(report.total.files.len(), 3);
}

#[test]
fn the_flat_layout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write_gz(&root.join("vpn.txt.gz"), b"tunnel.example\n");
    fs::write(root.join("agressif.txt"), "fight.example\n").expect("write");
    fs::write(root.join("agressif.urls.txt"), "video.example/fight\n").expect("write");
    write_gz(&root.join("adult.urls.txt.gz"), b"blog.example/nsfw\n");
    write_gz(&root.join("bank.txt.gz"), b"bank.example\n");

    let (got, report) = read_folder(root);
    assert_eq!(
        got,
        [
            "adult: blog.example/nsfw",
            "agressif: fight.example",
            "agressif: video.example/fight",
            "vpn: tunnel.example",
        ]
    );
    assert_eq!(report.skipped_categories, ["bank"]);
    let names: Vec<_> = report.categories.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["adult", "agressif", "vpn"]);
    let adult = report.category("adult").expect("adult read");
    assert!(adult.domains.files.is_empty(), "adult has only urls here");
}

#[test]
fn not_a_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("gambling.txt");
    fs::write(&file, "x.example\n").expect("write");
    let err = read_ut1_folder(&file, &mut |_, _| {}).expect_err("a file");
    assert!(matches!(err, ListError::NotADirectory { .. }));
    let missing = dir.path().join("nowhere");
    let err = read_ut1_folder(&missing, &mut |_, _| {}).expect_err("missing");
    assert_eq!(
        err.to_string(),
        format!("{}: no such file or directory", missing.display())
    );
}
