//! What reading a list found: counts, the first malformed lines, and the errors
//! that stop a read altogether.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use schoolgate_classifier::Category;

/// How many malformed lines a report keeps word for word. The count goes on; a
/// broken 5-million-line download must not grow the report with it.
pub const MAX_REPORTED_ERRORS: usize = 20;

/// One line that could not be read as an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    pub file: PathBuf,
    /// 1-based, as editors count.
    pub line: u64,
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// The outcome of reading one or more list files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListReport {
    /// Entries handed to the sink.
    pub entries: u64,
    /// Lines that were not blank, not a comment and not an entry.
    pub malformed: u64,
    /// Well-formed rules that are not domain or URL rules (Adblock exceptions,
    /// cosmetic and path rules). Not errors: such lists are meant for browsers.
    pub unsupported: u64,
    /// Every line read, including blanks and comments.
    pub lines: u64,
    /// The first [`MAX_REPORTED_ERRORS`] malformed lines.
    pub first_errors: Vec<LineError>,
    /// The files read, in order.
    pub files: Vec<PathBuf>,
}

impl ListReport {
    pub(crate) fn for_file(file: &Path) -> ListReport {
        ListReport {
            files: vec![file.to_path_buf()],
            ..ListReport::default()
        }
    }

    pub(crate) fn record_malformed(&mut self, file: &Path, line: u64, message: String) {
        self.malformed += 1;
        if self.first_errors.len() < MAX_REPORTED_ERRORS {
            self.first_errors.push(LineError {
                file: file.to_path_buf(),
                line,
                message,
            });
        }
    }

    /// Adds another report's counts to this one (keeping the error cap).
    pub fn merge(&mut self, other: &ListReport) {
        self.entries += other.entries;
        self.malformed += other.malformed;
        self.unsupported += other.unsupported;
        self.lines += other.lines;
        let room = MAX_REPORTED_ERRORS.saturating_sub(self.first_errors.len());
        self.first_errors
            .extend(other.first_errors.iter().take(room).cloned());
        self.files.extend(other.files.iter().cloned());
    }
}

/// The outcome of reading a UT1 / squidGuard category folder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ut1Report {
    /// All files of all categories read, added up.
    pub total: ListReport,
    /// The categories read, by UT1 name.
    pub categories: Vec<Ut1CategoryReport>,
    /// UT1 categories that have no place in the taxonomy (allow-lists such as
    /// `liste_blanche`, French exam lists, ...): not read.
    pub skipped_categories: Vec<String>,
    /// Symbolic links to another category of the same folder (`ads -> publicite`
    /// in the UT1 archive), as `(alias, target)`: not read, so that no list is
    /// read twice under two names.
    pub aliases: Vec<(String, String)>,
}

impl Ut1Report {
    /// The report of one UT1 category, if it was read.
    pub fn category(&self, name: &str) -> Option<&Ut1CategoryReport> {
        self.categories.iter().find(|c| c.name == name)
    }
}

/// One category of a UT1 folder.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ut1CategoryReport {
    /// The UT1 name (`drogue`), as handed to the sink.
    pub name: String,
    /// Where the name sits in schoolgate's taxonomy.
    pub category: Category,
    /// Its `domains` file(s); empty (no `files`) when it has none.
    pub domains: ListReport,
    /// Its `urls` file(s); empty (no `files`) when it has none.
    pub urls: ListReport,
}

/// Why a list could not be read at all. Malformed lines are not errors: they are
/// counted in the [`ListReport`] and the read goes on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListError {
    #[error("{}: no such file or directory", path.display())]
    NotFound { path: PathBuf },
    #[error("{} is not a directory (a UT1 source is a folder of categories)", path.display())]
    NotADirectory { path: PathBuf },
    #[error(
        "{} is a directory; a list is one file (for a UT1 category folder use format = \"ut1\")",
        path.display()
    )]
    IsADirectory { path: PathBuf },
    #[error("reading {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

impl ListError {
    /// An I/O error that names the path it happened on.
    pub(crate) fn io(path: &Path, source: io::Error) -> ListError {
        if source.kind() == io::ErrorKind::NotFound {
            ListError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            ListError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }

    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ListError::NotFound { path }
            | ListError::NotADirectory { path }
            | ListError::IsADirectory { path }
            | ListError::Io { path, .. } => path,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_errors_read_like_compiler_messages() {
        let e = LineError {
            file: "lists/vpn.txt".into(),
            line: 12,
            message: "empty label in `a..b`".into(),
        };
        assert_eq!(e.to_string(), "lists/vpn.txt:12: empty label in `a..b`");
    }

    #[test]
    fn merge_adds_counts_and_keeps_the_error_cap() {
        let mut a = ListReport::for_file(Path::new("a"));
        for line in 1..=15 {
            a.record_malformed(Path::new("a"), line, "bad".into());
        }
        let mut b = ListReport::for_file(Path::new("b"));
        for line in 1..=15 {
            b.record_malformed(Path::new("b"), line, "bad".into());
        }
        b.entries = 7;
        a.merge(&b);
        assert_eq!(a.malformed, 30);
        assert_eq!(a.entries, 7);
        assert_eq!(a.first_errors.len(), MAX_REPORTED_ERRORS);
        assert_eq!(a.first_errors[15].to_string(), "b:1: bad");
        assert_eq!(a.files, [PathBuf::from("a"), PathBuf::from("b")]);
    }

    #[test]
    fn io_errors_name_the_path() {
        let missing = ListError::io(
            Path::new("/nowhere/x.txt"),
            io::Error::from(io::ErrorKind::NotFound),
        );
        assert_eq!(
            missing.to_string(),
            "/nowhere/x.txt: no such file or directory"
        );
        let denied = ListError::io(
            Path::new("/root/x.txt"),
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert!(denied.to_string().starts_with("reading /root/x.txt: "));
        assert_eq!(denied.path(), Path::new("/root/x.txt"));
    }
}
