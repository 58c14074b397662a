//! Downloading list sources that have a `url` into the cache folder.
//!
//! A download replaces the cached copy only after it has been read in full and
//! found sound (entries found, not mostly malformed), so a truncated transfer or
//! an error page from a mirror can never empty a category. Conditional requests
//! (`ETag` / `Last-Modified`) keep a daily check cheap. A UT1 `.tar.gz` archive is
//! unpacked into a folder; other formats are kept as one file.
//!
//! Blocking I/O: call from a blocking thread (`tokio::task::spawn_blocking`).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use schoolgate_classifier::config::{ListFormat, ListSource};
use serde::{Deserialize, Serialize};

use crate::format::Format;
use crate::load::cached_copy;

/// The largest download accepted (the full UT1 archive is about 40 MB
/// compressed); a bigger body is refused rather than filling the disk.
pub const MAX_DOWNLOAD_BYTES: u64 = 1 << 30;

/// A download is refused if more than this share of its lines is malformed: it is
/// probably not the list (an HTML error page, say).
const MAX_MALFORMED_SHARE: f64 = 0.5;

/// What the cache knows about a source's last download.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheMeta {
    pub url: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// When the copy was last confirmed current (downloaded or 304).
    pub checked_at: Option<Timestamp>,
    /// When the copy last changed.
    pub changed_at: Option<Timestamp>,
    pub entries: u64,
}

/// The result of one update.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// A new copy is in place.
    Updated { entries: u64 },
    /// The server says nothing changed.
    Unchanged,
}

/// Why an update failed; the cached copy (if any) is untouched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    #[error("list `{0}` has no url")]
    NoUrl(String),
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{url}: larger than {MAX_DOWNLOAD_BYTES} bytes, refused")]
    TooLarge { url: String },
    #[error("{url}: not a usable list ({reason}); keeping the previous copy")]
    Unsound { url: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> UpdateError + '_ {
    move |source| UpdateError::Io {
        path: path.to_owned(),
        source,
    }
}

fn meta_path(cache_dir: &Path, source: &ListSource) -> PathBuf {
    cache_dir.join(format!("{}.meta.json", source.name))
}

/// The cache's record of a source, if it was ever downloaded.
pub fn read_meta(cache_dir: &Path, source: &ListSource) -> Option<CacheMeta> {
    let text = fs::read_to_string(meta_path(cache_dir, source)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether a source is due: never downloaded, or last checked more than
/// `update_hours` (default 24) ago.
pub fn is_due(cache_dir: &Path, source: &ListSource, now: Timestamp) -> bool {
    if source.url.is_none() {
        return false;
    }
    let hours = i64::from(source.update_hours.unwrap_or(24).max(1));
    match read_meta(cache_dir, source).and_then(|m| m.checked_at) {
        Some(t) => now.duration_since(t).as_secs() >= hours * 3600,
        None => true,
    }
}

/// Downloads `source.url` into `cache_dir` (see the module docs).
pub fn update(source: &ListSource, cache_dir: &Path) -> Result<Outcome, UpdateError> {
    let url = source
        .url
        .clone()
        .ok_or_else(|| UpdateError::NoUrl(source.name.clone()))?;
    fs::create_dir_all(cache_dir).map_err(io(cache_dir))?;
    let old = read_meta(cache_dir, source).filter(|m| m.url == url);
    let target = cached_copy(cache_dir, source);
    let http = |message: String| UpdateError::Http {
        url: url.clone(),
        message,
    };

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(600)))
        .timeout_connect(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .user_agent(concat!("schoolgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut req = agent.get(&url);
    if target.exists()
        && let Some(m) = &old
    {
        if let Some(etag) = &m.etag {
            req = req.header("If-None-Match", etag);
        }
        if let Some(lm) = &m.last_modified {
            req = req.header("If-Modified-Since", lm);
        }
    }
    let mut resp = req.call().map_err(|e| http(e.to_string()))?;
    let status = resp.status().as_u16();
    let now = Timestamp::now();
    if status == 304 {
        let meta = CacheMeta {
            checked_at: Some(now),
            ..old.unwrap_or_default()
        };
        write_meta(cache_dir, source, &meta)?;
        return Ok(Outcome::Unchanged);
    }
    if status != 200 {
        return Err(http(format!("HTTP status {status}")));
    }
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (etag, last_modified) = (header("etag"), header("last-modified"));

    // Read the body to a temporary file beside the target, bounded in size.
    let tmp = cache_dir.join(format!(".{}.download", source.name));
    let mut body = resp.body_mut().as_reader().take(MAX_DOWNLOAD_BYTES + 1);
    let mut file = fs::File::create(&tmp).map_err(io(&tmp))?;
    let copied = std::io::copy(&mut body, &mut file).map_err(|e| http(e.to_string()))?;
    file.flush().map_err(io(&tmp))?;
    drop(file);
    if copied > MAX_DOWNLOAD_BYTES {
        let _ = fs::remove_file(&tmp);
        return Err(UpdateError::TooLarge { url });
    }

    let checked = if source.format == ListFormat::Ut1 {
        install_ut1(&tmp, &target, &url)
    } else {
        install_file(&tmp, &target, source.format, &url)
    };
    let _ = fs::remove_file(&tmp);
    let entries = checked?;
    write_meta(
        cache_dir,
        source,
        &CacheMeta {
            url,
            etag,
            last_modified,
            checked_at: Some(now),
            changed_at: Some(now),
            entries,
        },
    )?;
    Ok(Outcome::Updated { entries })
}

fn write_meta(cache_dir: &Path, source: &ListSource, meta: &CacheMeta) -> Result<(), UpdateError> {
    let path = meta_path(cache_dir, source);
    let text = serde_json::to_string_pretty(meta).map_err(|e| UpdateError::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).map_err(io(&tmp))?;
    fs::rename(&tmp, &path).map_err(io(&path))
}

fn sound(report: &crate::ListReport, url: &str) -> Result<u64, UpdateError> {
    let unsound = |reason: String| UpdateError::Unsound {
        url: url.to_owned(),
        reason,
    };
    if report.entries == 0 {
        return Err(unsound("no entries".into()));
    }
    let lines = (report.entries + report.malformed).max(1);
    if report.malformed as f64 / lines as f64 > MAX_MALFORMED_SHARE {
        let first = report
            .first_errors
            .first()
            .map(|e| e.message.clone())
            .unwrap_or_default();
        return Err(unsound(format!(
            "{} of {lines} lines malformed, e.g. {first}",
            report.malformed
        )));
    }
    Ok(report.entries)
}

fn install_file(
    tmp: &Path,
    target: &Path,
    format: ListFormat,
    url: &str,
) -> Result<u64, UpdateError> {
    let format = match format {
        ListFormat::Domains => Format::Domains,
        ListFormat::Hosts => Format::Hosts,
        ListFormat::Adblock => Format::Adblock,
        ListFormat::Urls | ListFormat::Ut1 => Format::Urls,
    };
    let report = crate::read_file(tmp, format, &mut |_| {}).map_err(|e| UpdateError::Unsound {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    let entries = sound(&report, url)?;
    fs::rename(tmp, target).map_err(io(target))?;
    Ok(entries)
}

/// Unpacks a UT1 archive (`blacklists/<category>/domains`...) into a fresh folder,
/// checks it reads, then swaps it in for the old folder.
fn install_ut1(tmp: &Path, target: &Path, url: &str) -> Result<u64, UpdateError> {
    let staging = target.with_extension("staging");
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).map_err(io(&staging))?;
    let file = fs::File::open(tmp).map_err(io(tmp))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    // `unpack` refuses paths that escape the folder (`..`, absolute paths).
    archive.unpack(&staging).map_err(|e| UpdateError::Unsound {
        url: url.to_owned(),
        reason: format!("not a tar.gz archive: {e}"),
    })?;
    // The archive holds one top folder (`blacklists/`); use it if so.
    let root = single_subfolder(&staging).unwrap_or_else(|| staging.clone());
    let report =
        crate::read_ut1_folder(&root, &mut |_, _| {}).map_err(|e| UpdateError::Unsound {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    let entries = sound(&report.total, url)?;
    let old = target.with_extension("old");
    let _ = fs::remove_dir_all(&old);
    if target.exists() {
        fs::rename(target, &old).map_err(io(target))?;
    }
    fs::rename(&root, target).map_err(io(target))?;
    let _ = fs::remove_dir_all(&old);
    let _ = fs::remove_dir_all(&staging);
    Ok(entries)
}

fn single_subfolder(dir: &Path) -> Option<PathBuf> {
    let mut entries = fs::read_dir(dir).ok()?.filter_map(Result::ok);
    let first = entries.next()?;
    if entries.next().is_some() || !first.path().is_dir() {
        return None;
    }
    // Only descend if the folder is not itself a category folder.
    let inner = first.path();
    let has_lists = inner.join("domains").exists() || inner.join("domains.gz").exists();
    (!has_lists).then_some(inner)
}
