use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use schoolgate_lists::{Entry, Format, ListReport, read_file, read_str};

/// An entry as owned text: `Domain` as the name, `Url` as `host` + `path`.
pub fn text(entry: Entry<'_>) -> String {
    entry.to_string()
}

/// Reads a string and returns what the sink saw plus the report.
pub fn read(format: Format, input: &str) -> (Vec<String>, ListReport) {
    let mut got = Vec::new();
    let report = read_str("test.txt", input, format, &mut |e| got.push(text(e)));
    (got, report)
}

/// Reads a file and returns what the sink saw plus the report.
pub fn read_path(path: &Path, format: Format) -> (Vec<String>, ListReport) {
    let mut got = Vec::new();
    let report = read_file(path, format, &mut |e| got.push(text(e)))
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    (got, report)
}

/// The report's errors as `file:line: message` strings.
pub fn errors(report: &ListReport) -> Vec<String> {
    report
        .first_errors
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Gzips `bytes` into `path`.
pub fn write_gz(path: &Path, bytes: &[u8]) {
    let file = std::fs::File::create(path).expect("create gz fixture");
    let mut gz = GzEncoder::new(file, Compression::default());
    gz.write_all(bytes).expect("write gz fixture");
    gz.finish().expect("finish gz fixture");
}

/// `../shared/data` beside the workspace; a missing folder fails the test loudly
/// rather than passing on nothing.
pub fn shared_data() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    assert!(
        dir.join("lists").is_dir(),
        "the real list data is missing: expected {} (shared/data beside the workspace root)",
        dir.display()
    );
    dir
}
