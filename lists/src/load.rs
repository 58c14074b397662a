//! From a configuration to a compiled policy: reads every list source the config
//! names (and the curated lists) into a [`PolicyBuilder`] and reports what each
//! source gave.
//!
//! A source that cannot be read is reported, not fatal: on first start the filter
//! must come up with what it has. A *reload* must not silently lose a list, so
//! [`LoadReport::is_complete`] tells the caller whether to swap the new policy in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use schoolgate_classifier::config::{ListFormat, ListSource};
use schoolgate_classifier::{Category, Config, ListId, Policy, PolicyBuilder, PolicyError};
use serde::Serialize;

use crate::format::{Entry, Format};
use crate::report::{LineError, ListReport};

/// What one source gave.
#[derive(Clone, Debug, Serialize)]
pub struct SourceReport {
    /// The source's name (`ut1`, `schoolgate/doh`).
    pub name: String,
    pub format: String,
    /// The file or folder read, or the URL's cached copy.
    pub location: String,
    pub entries: u64,
    pub malformed: u64,
    /// The first malformed lines, `file:line: message`.
    pub first_errors: Vec<String>,
    /// Why the source could not be read at all.
    pub error: Option<String>,
    /// Entries per category.
    pub categories: Vec<(Category, u64)>,
    pub millis: u64,
}

/// What the whole load gave.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LoadReport {
    pub sources: Vec<SourceReport>,
    /// On a reload: changed settings that only a restart applies
    /// ([`Config::restart_needed`]).
    pub restart_needed: Vec<&'static str>,
}

impl LoadReport {
    /// Every configured source was read (malformed lines aside).
    pub fn is_complete(&self) -> bool {
        self.sources.iter().all(|s| s.error.is_none())
    }

    /// The sources that failed, as `name: error` lines.
    pub fn failures(&self) -> Vec<String> {
        self.sources
            .iter()
            .filter_map(|s| s.error.as_ref().map(|e| format!("{}: {e}", s.name)))
            .collect()
    }
}

/// Where a URL source's downloaded copy is kept, under `cache_dir`.
pub fn cached_copy(cache_dir: &Path, source: &ListSource) -> PathBuf {
    let ext = if source.format == ListFormat::Ut1 {
        ""
    } else {
        ".list"
    };
    cache_dir.join(format!("{}{ext}", source.name))
}

/// Compiles `config` with its lists. Relative list paths are resolved against
/// `base_dir` (the config file's folder); URL sources are read from their cached
/// copies in `cache_dir` (the list updater downloads them there).
pub fn compile(
    config: Config,
    base_dir: &Path,
    cache_dir: &Path,
) -> Result<(Policy, LoadReport), PolicyError> {
    let mut builder = PolicyBuilder::new(config);
    let mut report = LoadReport::default();
    if builder.config().policy.curated_lists {
        for list in crate::curated::all() {
            let started = Instant::now();
            let name = format!("schoolgate/{}", list.name);
            let id = builder.list(&name)?;
            let mut counts = Counts::default();
            let lr = list.read(&mut |e| {
                add(&mut builder, id, list.category, e);
                counts.add(list.category);
            });
            report.sources.push(source_report(
                name,
                list.format.name(),
                "built in".into(),
                &lr,
                None,
                counts,
                started,
            ));
        }
    }
    let sources = builder.config().lists.clone();
    for source in &sources {
        let started = Instant::now();
        let location = match (&source.path, &source.url) {
            (Some(p), _) if p.is_absolute() => p.clone(),
            (Some(p), _) => base_dir.join(p),
            (None, _) => cached_copy(cache_dir, source),
        };
        let shown = location.display().to_string();
        let format = format_of(source.format);
        let mut counts = Counts::default();
        let result = if source.format == ListFormat::Ut1 {
            read_ut1(&mut builder, source, &location, &mut counts)
        } else {
            read_one(&mut builder, source, &location, format, &mut counts)
        };
        let (lr, error) = match result {
            Ok(lr) => (lr, None),
            Err(e) => (ListReport::default(), Some(e)),
        };
        let error = match (&error, &source.url) {
            (Some(e), Some(url)) => Some(format!("{e} (downloaded from {url}; not fetched yet?)")),
            _ => error,
        };
        report.sources.push(source_report(
            source.name.clone(),
            format.name(),
            shown,
            &lr,
            error,
            counts,
            started,
        ));
    }
    let policy = builder.build()?;
    Ok((policy, report))
}

fn format_of(f: ListFormat) -> Format {
    match f {
        ListFormat::Domains => Format::Domains,
        ListFormat::Hosts => Format::Hosts,
        ListFormat::Adblock => Format::Adblock,
        ListFormat::Urls => Format::Urls,
        ListFormat::Ut1 => Format::Ut1,
    }
}

fn add(builder: &mut PolicyBuilder, list: ListId, category: Category, entry: Entry<'_>) {
    match entry {
        Entry::Domain(d) => builder.add_domain(list, category, d),
        Entry::Url { host, path } => builder.add_url(list, category, host, path),
    }
}

fn read_one(
    builder: &mut PolicyBuilder,
    source: &ListSource,
    location: &Path,
    format: Format,
    counts: &mut Counts,
) -> Result<ListReport, String> {
    let category = source
        .category
        .ok_or_else(|| "no category (config validation should have caught this)".to_owned())?;
    let id = builder.list(&source.name).map_err(|e| e.to_string())?;
    crate::read_file(location, format, &mut |e| {
        add(builder, id, category, e);
        counts.add(category);
    })
    .map_err(|e| e.to_string())
}

fn read_ut1(
    builder: &mut PolicyBuilder,
    source: &ListSource,
    location: &Path,
    counts: &mut Counts,
) -> Result<ListReport, String> {
    let mut ids: HashMap<String, (ListId, Category)> = HashMap::new();
    let mut failed = None;
    let ut1 = crate::read_ut1_folder(location, &mut |ut1_name, entry| {
        if !source.only.is_empty() && !source.only.iter().any(|o| o == ut1_name) {
            return;
        }
        let slot = match ids.get(ut1_name) {
            Some(slot) => *slot,
            None => {
                let Some(category) = Category::from_ut1(ut1_name) else {
                    return;
                };
                match builder.list(&format!("{}/{ut1_name}", source.name)) {
                    Ok(id) => {
                        ids.insert(ut1_name.to_owned(), (id, category));
                        (id, category)
                    }
                    Err(e) => {
                        failed = Some(e.to_string());
                        return;
                    }
                }
            }
        };
        add(builder, slot.0, slot.1, entry);
        counts.add(slot.1);
    })
    .map_err(|e| e.to_string())?;
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(ut1.total)
}

#[derive(Default)]
struct Counts(HashMap<Category, u64>);

impl Counts {
    fn add(&mut self, c: Category) {
        *self.0.entry(c).or_default() += 1;
    }
}

fn source_report(
    name: String,
    format: &str,
    location: String,
    lr: &ListReport,
    error: Option<String>,
    counts: Counts,
    started: Instant,
) -> SourceReport {
    let mut categories: Vec<(Category, u64)> = counts.0.into_iter().collect();
    categories.sort();
    SourceReport {
        name,
        format: format.to_owned(),
        location,
        // What reached the policy (a ut1 `only` filter drops the rest).
        entries: categories.iter().map(|(_, n)| n).sum(),
        malformed: lr.malformed,
        first_errors: lr.first_errors.iter().map(LineError::to_string).collect(),
        error,
        categories,
        millis: started.elapsed().as_millis() as u64,
    }
}

/// Why a reload was refused; the running policy is unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    #[error("the configuration has errors:\n{0}")]
    Config(#[from] schoolgate_classifier::config::ConfigErrors),
    #[error("the policy did not compile: {0}")]
    Policy(#[from] PolicyError),
    #[error("list sources failed, keeping the previous policy: {}", .0.join("; "))]
    Lists(Vec<String>),
}

/// Recompiles the policy from a configuration and swaps it into the shared handle,
/// or leaves the running policy untouched and says why. Used for `SIGHUP`, list
/// updates and the dashboard's saves.
#[derive(Debug, Clone)]
pub struct Reloader {
    pub shared: schoolgate_classifier::SharedPolicy,
    pub base_dir: PathBuf,
    pub cache_dir: PathBuf,
}

impl Reloader {
    /// Parses and validates `text` (named `file` in messages), compiles it with its
    /// lists and swaps it in. A list that cannot be read refuses the reload: a
    /// missing file must never quietly unblock its categories.
    pub fn reload_text(&self, file: &str, text: &str) -> Result<LoadReport, ReloadError> {
        let config = Config::parse(file, text)?;
        self.reload(config)
    }

    /// As [`Reloader::reload_text`], from a parsed configuration.
    pub fn reload(&self, mut config: Config) -> Result<LoadReport, ReloadError> {
        // As at start: a relative users file (or store) path is the config
        // folder's, not the working directory's (`/` under systemd).
        config.resolve_paths(&self.base_dir);
        let restart_needed = self.shared.load().config().restart_needed(&config);
        let (policy, mut report) = compile(config, &self.base_dir, &self.cache_dir)?;
        if !report.is_complete() {
            return Err(ReloadError::Lists(report.failures()));
        }
        self.shared.store(std::sync::Arc::new(policy));
        report.restart_needed = restart_needed;
        Ok(report)
    }
}
