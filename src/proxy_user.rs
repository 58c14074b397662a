//! `schoolgate proxy-user`: the users file for proxy authentication
//! (`[proxy] users_file`), kept by the network manager from the command line or
//! from an MIS export, so no one writes an argon2 hash by hand.
//!
//! Every change is checked (names, roles of the configuration, hashes) before
//! the file is replaced, and the file is replaced whole (written beside it,
//! synced, renamed), so the proxy never reads half a file. A running
//! `schoolgate run` picks it up on SIGHUP.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use schoolgate_classifier::Config;
use schoolgate_classifier::config::services::ProxyAuth;
use schoolgate_proxy::users::{self, NewUser};

use crate::load;

/// The configuration and where its users file is.
struct Target {
    config: Config,
    config_path: PathBuf,
    file: PathBuf,
}

impl Target {
    fn load(config_path: &Path) -> Result<Target> {
        let config = load::read_config(config_path)?;
        let Some(file) = config.proxy.users_file.clone() else {
            bail!(
                "{} has no `[proxy] users_file`: set it (e.g. users_file = \"proxy-users.toml\") \
                 and `auth = \"optional\"` or `\"required\"` first",
                config_path.display()
            );
        };
        Ok(Target {
            config,
            config_path: config_path.to_owned(),
            file,
        })
    }

    /// A role people can be given: one of the configuration's roles.
    fn check_role(&self, role: &str) -> Result<(), String> {
        if self.config.roles.contains_key(role) {
            return Ok(());
        }
        let known: Vec<&str> = self.config.roles.keys().map(String::as_str).collect();
        Err(format!(
            "role `{role}` is not a role of {} ({})",
            self.config_path.display(),
            known.join(", ")
        ))
    }

    /// The file's text; empty when it does not exist yet.
    fn read(&self) -> Result<String> {
        match std::fs::read_to_string(&self.file) {
            Ok(text) => Ok(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", self.file.display())),
        }
    }

    /// Replaces the file with `text`: written beside it (owner-only), synced,
    /// then renamed over it.
    fn write(&self, text: &str) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = load::base_dir(&self.file);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let tmp = self.file.with_extension("toml.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.file)
            .with_context(|| format!("cannot replace {}", self.file.display()))
    }

    fn save(&self, new: &[NewUser]) -> Result<usize> {
        let text = self.read()?;
        let (out, replaced) = users::upsert(&self.file.display().to_string(), &text, new)?;
        self.write(&out)?;
        Ok(replaced)
    }

    /// Says so when the proxy would not ask for the credentials just saved.
    fn note_if_auth_is_off(&self) {
        if self.config.proxy.auth == ProxyAuth::Off {
            println!(
                "note: [proxy] auth is off in {}: set auth = \"optional\" or \"required\" \
                 for the proxy to ask for these credentials",
                self.config_path.display()
            );
        }
    }
}

/// `proxy-user add NAME --role ROLE`: the password from standard input.
pub fn add(config: &Path, name: &str, role: &str) -> Result<ExitCode> {
    let target = Target::load(config)?;
    target
        .check_role(role)
        .map_err(|e| anyhow::anyhow!("--role {role}: {e}"))?;
    users::check_name(name).map_err(|e| anyhow::anyhow!("{e}"))?;
    let password = crate::read_password(name)?;
    if password.is_empty() {
        bail!("the password for {name} is empty");
    }
    let hash = users::hash_password(&password)?;
    let replaced = target.save(&[NewUser {
        name: name.to_owned(),
        role: role.to_owned(),
        hash,
    }])?;
    println!(
        "proxy user {name} ({role}) {} in {}; `kill -HUP` a running schoolgate to use it",
        if replaced > 0 { "updated" } else { "added" },
        target.file.display()
    );
    target.note_if_auth_is_off();
    Ok(ExitCode::SUCCESS)
}

/// `proxy-user list [--role ROLE]`: name and role, sorted by name; a role the
/// configuration does not define is marked (those people get the default role).
pub fn list(config: &Path, role: Option<&str>) -> Result<ExitCode> {
    let target = Target::load(config)?;
    let users = schoolgate_proxy::Users::load(&target.file)?;
    let mut people: Vec<_> = users
        .iter()
        .filter(|u| role.is_none_or(|r| *u.role == *r))
        .collect();
    people.sort_by(|a, b| a.name.cmp(&b.name));
    let width = people.iter().map(|u| u.name.len()).max().unwrap_or(0);
    for u in &people {
        let unknown = if !u.has_role_in(&target.config) {
            "  (not a role of the config: gets the default role)"
        } else {
            ""
        };
        println!("{:<width$}  {}{unknown}", u.name, u.role);
    }
    println!(
        "{} of {} in {}",
        people.len(),
        users.len(),
        target.file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `proxy-user remove NAME`.
pub fn remove(config: &Path, name: &str) -> Result<ExitCode> {
    let target = Target::load(config)?;
    let text = target.read()?;
    let (out, removed) = users::remove(&target.file.display().to_string(), &text, name)?;
    if !removed {
        eprintln!(
            "schoolgate: no proxy user {name} in {}",
            target.file.display()
        );
        return Ok(ExitCode::from(1));
    }
    target.write(&out)?;
    println!(
        "proxy user {name} removed from {}; `kill -HUP` a running schoolgate to apply it",
        target.file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `proxy-user import FILE.csv`: a CSV with a header row naming at least the
/// columns `name`, `role` and `password` (any order, any case; other columns,
/// as MIS exports have, are ignored). Every row is checked before anything is
/// written: one bad row and the file is left as it was.
pub fn import(config: &Path, csv_path: &Path) -> Result<ExitCode> {
    let target = Target::load(config)?;
    let rows = read_csv(csv_path, &target)?;
    let hashes = hash_all(&rows)?;
    let new: Vec<NewUser> = rows
        .into_iter()
        .zip(hashes)
        .map(|(row, hash)| NewUser {
            name: row.name,
            role: row.role,
            hash,
        })
        .collect();
    let replaced = target.save(&new)?;
    println!(
        "{} proxy users from {} into {}: {} added, {replaced} updated; \
         `kill -HUP` a running schoolgate to use them",
        new.len(),
        csv_path.display(),
        target.file.display(),
        new.len() - replaced
    );
    target.note_if_auth_is_off();
    Ok(ExitCode::SUCCESS)
}

/// One row of an import.
struct Row {
    name: String,
    role: String,
    password: String,
}

fn read_csv(path: &Path, target: &Target) -> Result<Vec<Row>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::Headers)
        .flexible(false)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{}: no header row", path.display()))?
        .clone();
    let column = |want: &str| {
        headers
            .iter()
            .position(|h| h.eq_ignore_ascii_case(want))
            .with_context(|| {
                format!(
                    "{}: the header row has no `{want}` column (it needs name, role and password)",
                    path.display()
                )
            })
    };
    let (name_at, role_at, password_at) = (column("name")?, column("role")?, column("password")?);
    let mut rows = Vec::new();
    let mut first_line: HashMap<String, u64> = HashMap::new();
    let mut errors = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("{}", path.display()))?;
        let line = record.position().map_or(0, csv::Position::line);
        let field = |i: usize| record.get(i).unwrap_or("");
        let row = Row {
            name: field(name_at).trim().to_owned(),
            role: field(role_at).trim().to_owned(),
            password: field(password_at).to_owned(),
        };
        let problem = if let Err(e) = users::check_name(&row.name) {
            Some(e)
        } else if let Err(e) = target.check_role(&row.role) {
            Some(e)
        } else if row.password.is_empty() {
            Some(format!("{}: the password is empty", row.name))
        } else if let Some(first) = first_line.get(&row.name) {
            Some(format!("{} is already on line {first}", row.name))
        } else {
            None
        };
        match problem {
            Some(p) => errors.push(format!("{} line {line}: {p}", path.display())),
            None => {
                first_line.insert(row.name.clone(), line);
                rows.push(row);
            }
        }
    }
    if !errors.is_empty() {
        bail!(
            "nothing imported; {} rows have errors:\n{}",
            errors.len(),
            crate::first_few(&errors, 20, "\n")
        );
    }
    if rows.is_empty() {
        bail!("{}: no rows to import", path.display());
    }
    Ok(rows)
}

/// argon2 is slow on purpose (tens of milliseconds a password): a year group
/// of several hundred is hashed on every core.
fn hash_all(rows: &[Row]) -> Result<Vec<String>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = rows.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = rows
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|r| users::hash_password(&r.password))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(rows.len());
        for h in handles {
            let part = h
                .join()
                .map_err(|_| anyhow::anyhow!("a hashing thread panicked"))??;
            all.extend(part);
        }
        Ok(all)
    })
}
