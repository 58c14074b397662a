//! UT1 / squidGuard category folders.
//!
//! Two layouts are read, and may be mixed in one folder:
//! - the UT1 archive's: `<dir>/<category>/domains` and `<dir>/<category>/urls`
//!   (each possibly `.gz`); other files there (`usage`, `expressions`) are ignored;
//! - a flat one: `<dir>/<category>.txt` and `<dir>/<category>.urls.txt` (each
//!   possibly `.gz`), as in the test data.
//!
//! Categories are read in name order so that reports and the order entries reach
//! the sink do not depend on the file system.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use schoolgate_classifier::Category;

use crate::format::{Entry, Format};
use crate::read::read_file;
use crate::report::{ListError, ListReport, Ut1CategoryReport, Ut1Report};

/// Which of a category's two lists a file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Domains,
    Urls,
}

impl Kind {
    const fn format(self) -> Format {
        match self {
            Kind::Domains => Format::Domains,
            Kind::Urls => Format::Urls,
        }
    }
}

/// Reads a UT1 / squidGuard category folder, handing each entry to `sink` with the
/// UT1 name of its category (`"drogue"`; map it with [`Category::from_ut1`]).
///
/// Categories that [`Category::from_ut1`] does not map are not read and are listed
/// in [`Ut1Report::skipped_categories`]. Malformed lines are reported per file and
/// the read goes on; an I/O error stops it (see [`read_file`]).
pub fn read_ut1_folder(
    dir: &Path,
    sink: &mut dyn FnMut(&str, Entry<'_>),
) -> Result<Ut1Report, ListError> {
    let metadata = fs::metadata(dir).map_err(|e| ListError::io(dir, e))?;
    if !metadata.is_dir() {
        return Err(ListError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let folder = survey(dir)?;

    let mut report = Ut1Report {
        aliases: folder.aliases,
        ..Ut1Report::default()
    };
    for (name, files) in folder.categories {
        let Some(category) = Category::from_ut1(&name) else {
            report.skipped_categories.push(name);
            continue;
        };
        let mut category_report = Ut1CategoryReport {
            name,
            category,
            domains: ListReport::default(),
            urls: ListReport::default(),
        };
        for (path, kind) in files {
            let name = category_report.name.as_str();
            let file_report = read_file(&path, kind.format(), &mut |entry| sink(name, entry))?;
            report.total.merge(&file_report);
            match kind {
                Kind::Domains => category_report.domains.merge(&file_report),
                Kind::Urls => category_report.urls.merge(&file_report),
            }
        }
        report.categories.push(category_report);
    }
    Ok(report)
}

/// What a folder holds, before anything is read.
#[derive(Default)]
struct Folder {
    /// UT1 name -> its list files, in name order.
    categories: BTreeMap<String, Vec<(PathBuf, Kind)>>,
    aliases: Vec<(String, String)>,
}

fn survey(dir: &Path) -> Result<Folder, ListError> {
    let mut folder = Folder::default();
    let canonical_dir = fs::canonicalize(dir).map_err(|e| ListError::io(dir, e))?;
    for dir_entry in fs::read_dir(dir).map_err(|e| ListError::io(dir, e))? {
        let dir_entry = dir_entry.map_err(|e| ListError::io(dir, e))?;
        let path = dir_entry.path();
        // A name that is not UTF-8 cannot be a UT1 category.
        let Some(file_name) = dir_entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if file_name.starts_with('.') {
            continue;
        }
        if let Some(target) = sibling_alias(&path, &canonical_dir)? {
            folder.aliases.push((file_name, target));
            continue;
        }
        let metadata = fs::metadata(&path).map_err(|e| ListError::io(&path, e))?;
        if metadata.is_dir() {
            let files = category_dir_files(&path)?;
            folder
                .categories
                .entry(file_name)
                .or_default()
                .extend(files);
        } else if let Some((name, kind)) = flat_file_category(&file_name) {
            folder
                .categories
                .entry(name.to_owned())
                .or_default()
                .push((path, kind));
        }
    }
    for files in folder.categories.values_mut() {
        files.sort_by(|a, b| a.0.cmp(&b.0));
    }
    folder.aliases.sort();
    Ok(folder)
}

/// The UT1 archive ships aliases as symbolic links to a sibling (`ads ->
/// publicite`); reading them would read a list twice, under a second name that
/// may even map to another category (`mail -> forums`). A link that leads out of
/// the folder is not an alias and is read like any entry.
fn sibling_alias(path: &Path, canonical_dir: &Path) -> Result<Option<String>, ListError> {
    let link = fs::symlink_metadata(path).map_err(|e| ListError::io(path, e))?;
    if !link.file_type().is_symlink() {
        return Ok(None);
    }
    let target = fs::canonicalize(path).map_err(|e| ListError::io(path, e))?;
    if target.parent() != Some(canonical_dir) {
        return Ok(None);
    }
    Ok(target
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned))
}

/// `domains[.gz]` and `urls[.gz]` inside a category folder.
fn category_dir_files(dir: &Path) -> Result<Vec<(PathBuf, Kind)>, ListError> {
    let mut files = Vec::new();
    for (file_name, kind) in [
        ("domains", Kind::Domains),
        ("domains.gz", Kind::Domains),
        ("urls", Kind::Urls),
        ("urls.gz", Kind::Urls),
    ] {
        let path = dir.join(file_name);
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => files.push((path, kind)),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ListError::io(&path, e)),
        }
    }
    Ok(files)
}

/// `<category>.txt[.gz]` or `<category>.urls.txt[.gz]`.
fn flat_file_category(file_name: &str) -> Option<(&str, Kind)> {
    let stem = file_name.strip_suffix(".gz").unwrap_or(file_name);
    let stem = stem.strip_suffix(".txt")?;
    let (name, kind) = match stem.strip_suffix(".urls") {
        Some(name) => (name, Kind::Urls),
        None => (stem, Kind::Domains),
    };
    (!name.is_empty()).then_some((name, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_names() {
        assert_eq!(
            flat_file_category("gambling.txt.gz"),
            Some(("gambling", Kind::Domains))
        );
        assert_eq!(
            flat_file_category("gambling.urls.txt"),
            Some(("gambling", Kind::Urls))
        );
        assert_eq!(
            flat_file_category("dynamic-dns.txt"),
            Some(("dynamic-dns", Kind::Domains))
        );
        assert_eq!(flat_file_category("README.md"), None);
        assert_eq!(flat_file_category(".txt"), None);
        assert_eq!(flat_file_category("blacklists.tar.gz"), None);
    }
}
