//! Block lists as they are published, read into normalised entries; and
//! schoolgate's own curated default lists.
//!
//! This crate owns the list formats: plain domain lists, hosts files, Adblock-style
//! rules (`||name^`), URL lists and UT1 / squidGuard category folders. A reader
//! hands every entry to a caller-provided sink as soon as its line is read and
//! keeps nothing itself; the in-memory index is the classifier's business. Every
//! entry is already normalised (lowercase ASCII, punycode for IDN, no trailing dot,
//! no leading `*.`), so the index can compare text.
//!
//! Real lists are messy: a bad line is counted and reported with its file and line
//! number, and the read goes on. Only I/O stops a read. No input makes a reader
//! panic, buffer a line past [`MAX_LINE_BYTES`] or allocate per valid line.
//!
//! ```
//! use schoolgate_lists::{Entry, Format, read_str};
//!
//! let mut names = Vec::new();
//! let report = read_str("ads.txt", "0.0.0.0 Ads.Example\n0.0.0.0 bad..name\n", Format::Hosts,
//!     &mut |entry| if let Entry::Domain(name) = entry { names.push(name.to_owned()) });
//! assert_eq!(names, ["ads.example"]);
//! assert_eq!(report.first_errors[0].to_string(), "ads.txt:2: empty label in `bad..name`");
//! ```
//!
//! # Layout
//!
//! - `format`: [`Format`] (the configuration names) and [`Entry`].
//! - `name`: host-name normalisation and validation, shared by every format.
//! - `parse`: one line of each format into entries.
//! - `read`: files (gzip or not), byte buffers and strings into lines, with a
//!   line-length cap: [`read_file`], [`read_bytes`], [`read_str`].
//! - `ut1`: UT1 / squidGuard category folders: [`read_ut1_folder`].
//! - `report`: [`ListReport`], [`Ut1Report`], [`LineError`], [`ListError`].
//! - [`curated`]: the lists schoolgate's authors wrote, from `lists/curated/*.txt`.

pub mod curated;
mod format;
pub mod load;
mod name;
mod parse;
mod read;
mod report;
pub mod update;
mod ut1;

pub use format::{Entry, Format, UnknownFormat};
pub use name::{MAX_LABEL_LEN, MAX_NAME_LEN};
pub use read::{MAX_LINE_BYTES, read_bytes, read_file, read_str};
pub use report::{
    LineError, ListError, ListReport, MAX_REPORTED_ERRORS, Ut1CategoryReport, Ut1Report,
};
pub use ut1::read_ut1_folder;
