//! Reading the configuration file and compiling the policy with its lists.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use schoolgate_classifier::{Config, Policy};
use schoolgate_lists::load::{LoadReport, compile};

/// Where the configuration is read from when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/schoolgate/schoolgate.toml";

/// The configuration, parsed and validated (errors name file, line and key),
/// with its relative paths made the config folder's
/// ([`Config::resolve_paths`]).
pub fn read_config(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration {}", path.display()))?;
    match Config::parse(&path.display().to_string(), &text) {
        Ok(mut c) => {
            c.resolve_paths(&base_dir(path));
            Ok(c)
        }
        Err(e) => bail!("the configuration has errors:\n{e}"),
    }
}

/// The folder relative list paths are resolved against: the config file's.
pub fn base_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Downloaded copies of URL list sources, beside the event store.
pub fn cache_dir(config: &Config, base: &Path) -> PathBuf {
    let store = &config.store.path;
    let dir = store
        .parent()
        .map_or_else(|| PathBuf::from("var"), Path::to_path_buf);
    let dir = if dir.is_absolute() {
        dir
    } else {
        base.join(dir)
    };
    dir.join("lists")
}

/// Reads the configuration and compiles the policy with every list.
pub fn policy(path: &Path) -> Result<(Policy, LoadReport)> {
    compile_config(read_config(path)?, path)
}

/// Compiles an already-read configuration from `path` with every list.
pub fn compile_config(config: Config, path: &Path) -> Result<(Policy, LoadReport)> {
    let base = base_dir(path);
    let cache = cache_dir(&config, &base);
    compile(config, &base, &cache).context("compiling the policy")
}
