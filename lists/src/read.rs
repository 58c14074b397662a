//! Files, byte buffers and strings into lines, lines into entries.
//!
//! Lines are read into one reused buffer with a hard length cap, so neither a
//! 5-million-line list nor a corrupt file with no line breaks costs more than a
//! few kilobytes of memory. Gzip is recognised by its magic bytes, not by the file
//! name: downloads are often saved under a name that does not say.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use flate2::bufread::MultiGzDecoder;

use crate::format::{Entry, Format};
use crate::parse::{Problem, parse_line};
use crate::report::{ListError, ListReport};

/// The longest line read as an entry. A host name is at most 253 bytes; URL lines
/// in real lists stay well under 2 KiB. Longer lines are reported as malformed and
/// skipped without being held in memory.
pub const MAX_LINE_BYTES: usize = 4096;

/// Big enough that a read call moves a useful amount of a list; small enough to
/// keep one per reader without thinking about it.
const BUFFER_BYTES: usize = 64 * 1024;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads one list file of one format, handing each entry to `sink`.
///
/// A file that starts with the gzip magic is gunzipped, whatever its name.
/// Malformed lines are counted and reported, and reading goes on; only an I/O
/// error (including a corrupt gzip stream) stops the read, after which the sink
/// has seen part of the file and the caller should discard what it built.
pub fn read_file(
    path: &Path,
    format: Format,
    sink: &mut dyn FnMut(Entry<'_>),
) -> Result<ListReport, ListError> {
    let metadata = fs::metadata(path).map_err(|e| ListError::io(path, e))?;
    if metadata.is_dir() {
        return Err(ListError::IsADirectory {
            path: path.to_path_buf(),
        });
    }
    let file = File::open(path).map_err(|e| ListError::io(path, e))?;
    let mut report = ListReport::for_file(path);
    read_maybe_gzip(path, file, format, &mut report, sink).map_err(|e| ListError::io(path, e))?;
    Ok(report)
}

/// Reads a list held in memory (a download, say), gunzipping it when it starts
/// with the gzip magic. `name` stands for the file in the report's messages. Fails
/// only on a corrupt gzip stream.
pub fn read_bytes(
    name: &str,
    bytes: &[u8],
    format: Format,
    sink: &mut dyn FnMut(Entry<'_>),
) -> Result<ListReport, ListError> {
    let path = Path::new(name);
    let mut report = ListReport::for_file(path);
    read_maybe_gzip(path, bytes, format, &mut report, sink).map_err(|e| ListError::io(path, e))?;
    Ok(report)
}

/// Reads a list held in a string (the curated lists, tests). `name` stands for the
/// file in the report's messages.
pub fn read_str(
    name: &str,
    text: &str,
    format: Format,
    sink: &mut dyn FnMut(Entry<'_>),
) -> ListReport {
    let path = Path::new(name);
    let mut report = ListReport::for_file(path);
    // Text is never gzip (the magic is not UTF-8), and a byte slice never fails a
    // read; the arm below is there so that no input can make this panic.
    if let Err(never) = read_lines(path, text.as_bytes(), format, &mut report, sink) {
        let line = report.lines;
        report.record_malformed(path, line, format!("read error: {never}"));
    }
    report
}

fn read_maybe_gzip<R: Read>(
    path: &Path,
    reader: R,
    format: Format,
    report: &mut ListReport,
    sink: &mut dyn FnMut(Entry<'_>),
) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(BUFFER_BYTES, reader);
    // A fresh BufReader's first fill asks for a whole buffer, so a file of two or
    // more bytes shows at least its first two here.
    let is_gzip = reader.fill_buf()?.starts_with(&GZIP_MAGIC);
    if is_gzip {
        // Multi-member, because concatenated .gz files are valid gzip.
        let decoder = MultiGzDecoder::new(reader);
        read_lines(
            path,
            BufReader::with_capacity(BUFFER_BYTES, decoder),
            format,
            report,
            sink,
        )
    } else {
        read_lines(path, reader, format, report, sink)
    }
}

fn read_lines<R: BufRead>(
    path: &Path,
    reader: R,
    format: Format,
    report: &mut ListReport,
    sink: &mut dyn FnMut(Entry<'_>),
) -> io::Result<()> {
    let mut lines = LineReader::new(reader);
    let mut scratch = String::new();
    while let Some(line) = lines.next_line()? {
        report.lines += 1;
        let number = report.lines;
        let bytes = match line {
            Line::Complete(bytes) => bytes,
            Line::TooLong { bytes } => {
                report.record_malformed(
                    path,
                    number,
                    format!("line is {bytes} bytes long; the limit is {MAX_LINE_BYTES}"),
                );
                continue;
            }
        };
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                report.record_malformed(
                    path,
                    number,
                    format!("not UTF-8 (invalid byte at column {})", e.valid_up_to() + 1),
                );
                continue;
            }
        };
        // Editors on Windows start UTF-8 files with a byte-order mark.
        let text = if number == 1 {
            text.strip_prefix('\u{feff}').unwrap_or(text)
        } else {
            text
        };
        let outcome = parse_line(format, text, &mut scratch, sink);
        report.entries += outcome.entries;
        match outcome.problem {
            None => {}
            Some(Problem::Unsupported) => report.unsupported += 1,
            Some(Problem::Malformed(message)) => report.record_malformed(path, number, message),
        }
    }
    Ok(())
}

/// One line as the reader found it.
enum Line<'a> {
    /// Without its `\n` or `\r\n`.
    Complete(&'a [u8]),
    /// Longer than [`MAX_LINE_BYTES`]; its bytes were skipped, not kept.
    TooLong { bytes: u64 },
}

/// Splits a reader into lines, reusing one buffer and never holding more than
/// [`MAX_LINE_BYTES`] of a line.
struct LineReader<R> {
    reader: R,
    buffer: Vec<u8>,
}

impl<R: BufRead> LineReader<R> {
    fn new(reader: R) -> Self {
        LineReader {
            reader,
            buffer: Vec::with_capacity(256),
        }
    }

    /// The next line, or `None` at the end of the input.
    fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.buffer.clear();
        let mut length: u64 = 0;
        let mut too_long = false;
        let mut read_any = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(available) => available,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                if !read_any {
                    return Ok(None);
                }
                break;
            }
            read_any = true;
            let (chunk, consumed, ended) = match memchr::memchr(b'\n', available) {
                Some(i) => (&available[..i], i + 1, true),
                None => (available, available.len(), false),
            };
            length += chunk.len() as u64;
            if !too_long {
                if self.buffer.len() + chunk.len() > MAX_LINE_BYTES {
                    too_long = true;
                    self.buffer.clear();
                } else {
                    self.buffer.extend_from_slice(chunk);
                }
            }
            self.reader.consume(consumed);
            if ended {
                break;
            }
        }
        if too_long {
            return Ok(Some(Line::TooLong { bytes: length }));
        }
        if self.buffer.last() == Some(&b'\r') {
            self.buffer.pop();
        }
        Ok(Some(Line::Complete(&self.buffer)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<Result<String, u64>> {
        let mut reader = LineReader::new(BufReader::with_capacity(7, input));
        let mut out = Vec::new();
        while let Ok(Some(line)) = reader.next_line() {
            out.push(match line {
                Line::Complete(b) => Ok(String::from_utf8_lossy(b).into_owned()),
                Line::TooLong { bytes } => Err(bytes),
            });
        }
        out
    }

    #[test]
    fn lines_split_across_small_buffers() {
        assert_eq!(
            lines(b"a.example\r\nbb.example\n\nlast"),
            [
                Ok("a.example".into()),
                Ok("bb.example".into()),
                Ok(String::new()),
                Ok("last".into())
            ]
        );
        assert!(lines(b"").is_empty());
        assert_eq!(lines(b"x\n"), [Ok("x".to_owned())]);
    }

    #[test]
    fn an_overlong_line_is_measured_not_kept() {
        let mut input = vec![b'a'; MAX_LINE_BYTES + 10];
        input.extend_from_slice(b"\nnext\n");
        let got = lines(&input);
        assert_eq!(got, [Err(MAX_LINE_BYTES as u64 + 10), Ok("next".into())]);
        let exactly = vec![b'a'; MAX_LINE_BYTES];
        assert!(matches!(lines(&exactly)[..], [Ok(_)]));
    }

    #[test]
    fn read_str_reports_line_numbers() {
        let mut got = Vec::new();
        let report = read_str(
            "t.txt",
            "\u{feff}a.example\n\nb..example\nc.example\n",
            Format::Domains,
            &mut |e| got.push(e.to_string()),
        );
        assert_eq!(got, ["a.example", "c.example"]);
        assert_eq!(report.entries, 2);
        assert_eq!(report.lines, 4);
        assert_eq!(report.malformed, 1);
        assert_eq!(
            report.first_errors[0].to_string(),
            "t.txt:3: empty label in `b..example`"
        );
    }
}
