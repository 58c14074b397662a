use std::fs;

use schoolgate_lists::{Format, ListError, MAX_LINE_BYTES, read_bytes, read_file};

use crate::support::{errors, read_path, write_gz};

#[test]
fn gzip_is_recognised_by_its_magic_not_its_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A gzip file with no `.gz` in its name, as downloads are often saved.
    let gz = dir.path().join("list.txt");
    write_gz(&gz, b"one.example\ntwo..example\nthree.example\n");
    let (got, report) = read_path(&gz, Format::Domains);
    assert_eq!(got, ["one.example", "three.example"]);
    assert_eq!(
        errors(&report),
        [format!("{}:2: empty label in `two..example`", gz.display())]
    );
    assert_eq!(report.files, std::slice::from_ref(&gz));

    // And a plain file named `.gz` is read as the text it is.
    let plain = dir.path().join("plain.txt.gz");
    fs::write(&plain, "plain.example\n").expect("write");
    assert_eq!(read_path(&plain, Format::Domains).0, ["plain.example"]);
}

#[test]
fn concatenated_gzip_members_are_all_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.gz");
    let b = dir.path().join("b.gz");
    write_gz(&a, b"a.example\n");
    write_gz(&b, b"b.example\n");
    let mut both = fs::read(&a).expect("read a");
    both.extend(fs::read(&b).expect("read b"));
    let mut got = Vec::new();
    let report = read_bytes("both.gz", &both, Format::Domains, &mut |e| {
        got.push(e.to_string());
    })
    .expect("valid gzip");
    assert_eq!(got, ["a.example", "b.example"]);
    assert_eq!(report.entries, 2);
}

#[test]
fn a_corrupt_gzip_stream_is_an_error_naming_the_file() {
    let mut bytes = vec![0x1f, 0x8b, 0x08, 0x00];
    bytes.extend_from_slice(&[0xff; 32]);
    let err =
        read_bytes("broken.gz", &bytes, Format::Domains, &mut |_| {}).expect_err("corrupt gzip");
    assert!(matches!(err, ListError::Io { .. }), "{err:?}");
    assert!(err.to_string().starts_with("reading broken.gz: "), "{err}");
}

#[test]
fn overlong_lines_and_invalid_utf8_are_malformed_and_reading_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mixed.txt");
    let mut bytes = b"first.example\n".to_vec();
    bytes.extend(std::iter::repeat_n(b'a', 1_000_000));
    bytes.extend_from_slice(b"\nbad\xff\xfe.example\r\nlast.example\r\n");
    fs::write(&path, &bytes).expect("write");
    let (got, report) = read_path(&path, Format::Domains);
    assert_eq!(got, ["first.example", "last.example"]);
    assert_eq!(
        errors(&report),
        [
            format!(
                "{}:2: line is 1000000 bytes long; the limit is {MAX_LINE_BYTES}",
                path.display()
            ),
            format!("{}:3: not UTF-8 (invalid byte at column 4)", path.display()),
        ]
    );
}

#[test]
fn missing_files_and_directories_are_errors_that_name_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.txt");
    let err = read_file(&missing, Format::Domains, &mut |_| {}).expect_err("missing");
    assert!(matches!(err, ListError::NotFound { .. }));
    assert_eq!(
        err.to_string(),
        format!("{}: no such file or directory", missing.display())
    );
    let err = read_file(dir.path(), Format::Domains, &mut |_| {}).expect_err("a directory");
    assert!(matches!(err, ListError::IsADirectory { .. }));
    assert_eq!(err.path(), dir.path());
}

#[test]
fn an_empty_file_is_an_empty_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("empty.txt");
    fs::write(&path, "").expect("write");
    let (got, report) = read_path(&path, Format::Hosts);
    assert!(got.is_empty());
    assert_eq!((report.lines, report.entries, report.malformed), (0, 0, 0));
}
