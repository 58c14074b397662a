//! The local user directory for proxy authentication (`[proxy] users_file`).
//!
//! # Format
//!
//! A TOML file with one `[[user]]` table per person, e.g. exported from the
//! school's MIS by a script:
//!
//! ```toml
//! [[user]]
//! name = "j.okafor"          # what the browser sends as the user name
//! role = "staff"             # a role defined in the school config
//! hash = "$argon2id$v=19$m=19456,t=2,p=1$..."   # from `hash_password`
//! ```
//!
//! Passwords are never stored: only argon2 PHC strings (`hash_password` makes
//! them; the binary exposes it). Unknown keys are an error, so a typo such as
//! `pasword = ...` is refused rather than silently ignored. A `[[users]]` mapping
//! in the school config for the same name overrides the file's role.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use schoolgate_classifier::Config;
use serde::Deserialize;

/// Why the users file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UsersError {
    #[error("users file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("users file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("hashing failed: {0}")]
    Hash(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    user: Vec<UserEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: String,
    role: String,
    hash: String,
}

/// One user who may authenticate to the proxy.
#[derive(Clone, Debug)]
pub struct User {
    pub name: Arc<str>,
    pub role: Arc<str>,
    hash: Arc<str>,
}

/// The loaded user directory.
#[derive(Clone, Debug, Default)]
pub struct Users {
    by_name: HashMap<Arc<str>, User>,
}

impl Users {
    /// Reads and checks a users file: every hash must be a valid argon2 PHC
    /// string, and names must be unique.
    pub fn load(path: &Path) -> Result<Users, UsersError> {
        let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Users::parse(&path.display().to_string(), &text)
    }

    pub fn parse(path: &str, text: &str) -> Result<Users, UsersError> {
        let err = |message: String| parse_error(path, message);
        let file: UsersFile = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let mut by_name = HashMap::with_capacity(file.user.len());
        for (i, u) in file.user.into_iter().enumerate() {
            if let Err(why) = check_entry(&u.name, &u.hash) {
                return Err(err(format!("user[{i}] ({}): {why}", u.name.escape_debug())));
            }
            let name: Arc<str> = u.name.as_str().into();
            let user = User {
                name: name.clone(),
                role: u.role.as_str().into(),
                hash: u.hash.as_str().into(),
            };
            if by_name.insert(name, user).is_some() {
                return Err(err(format!("user[{i}] ({}): listed twice", u.name)));
            }
        }
        Ok(Users { by_name })
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&User> {
        self.by_name.get(name)
    }

    /// Everyone, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &User> {
        self.by_name.values()
    }
}

impl User {
    /// Whether `config` gives this person a role: a `[[users]]` mapping, or
    /// the file's role being one of its roles. Otherwise the proxy uses the
    /// default role.
    pub fn has_role_in(&self, config: &Config) -> bool {
        config.users.iter().any(|m| m.name == *self.name) || config.roles.contains_key(&*self.role)
    }
}

impl User {
    /// Checks a password against the stored hash. Slow on purpose (argon2):
    /// call it off the async threads.
    pub fn verify(&self, password: &str) -> bool {
        match PasswordHash::new(&self.hash) {
            Ok(h) => Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok(),
            Err(_) => false,
        }
    }
}

/// A name a browser can send as a Basic user: non-empty, no `:`, no control
/// characters.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains(':') || name.chars().any(char::is_control) {
        return Err(format!(
            "name `{}` must be non-empty, without `:` or control characters",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// One entry of a users file: a usable name and hash.
fn check_entry(name: &str, hash: &str) -> Result<(), String> {
    check_name(name)?;
    check_hash(hash)
}

fn parse_error(path: &str, message: String) -> UsersError {
    UsersError::Parse {
        path: path.to_owned(),
        message,
    }
}

/// A users file's text, for editing with its comments and order kept.
fn document(path: &str, text: &str) -> Result<toml_edit::DocumentMut, UsersError> {
    text.parse()
        .map_err(|e: toml_edit::TomlError| parse_error(path, e.to_string()))
}

/// One person for [`upsert`]: name, role and argon2 hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewUser {
    pub name: String,
    pub role: String,
    pub hash: String,
}

/// The users file's text with `users` added, or replacing the entries of the
/// same name (their role and hash; in place, so the file keeps its order).
/// Comments and everything else are kept. Returns the new text and how many
/// entries were replaced; the result is checked as [`Users::parse`] would.
pub fn upsert(path: &str, text: &str, users: &[NewUser]) -> Result<(String, usize), UsersError> {
    let err = |message: String| parse_error(path, message);
    let mut doc = document(path, text)?;
    let list = doc
        .entry("user")
        .or_insert_with(|| toml_edit::Item::ArrayOfTables(toml_edit::ArrayOfTables::new()))
        .as_array_of_tables_mut()
        .ok_or_else(|| err("`user` is not a list of [[user]] tables".to_owned()))?;
    let mut replaced = 0;
    for u in users {
        check_entry(&u.name, &u.hash).map_err(&err)?;
        let existing = list
            .iter_mut()
            .find(|t| t.get("name").and_then(|v| v.as_str()) == Some(u.name.as_str()));
        match existing {
            Some(table) => {
                table["role"] = toml_edit::value(u.role.as_str());
                table["hash"] = toml_edit::value(u.hash.as_str());
                replaced += 1;
            }
            None => {
                let mut table = toml_edit::Table::new();
                table["name"] = toml_edit::value(u.name.as_str());
                table["role"] = toml_edit::value(u.role.as_str());
                table["hash"] = toml_edit::value(u.hash.as_str());
                list.push(table);
            }
        }
    }
    let out = doc.to_string();
    Users::parse(path, &out)?;
    Ok((out, replaced))
}

/// The users file's text without `name`'s entry; `false` when there was none.
pub fn remove(path: &str, text: &str, name: &str) -> Result<(String, bool), UsersError> {
    let mut doc = document(path, text)?;
    let Some(list) = doc.get_mut("user").and_then(|i| i.as_array_of_tables_mut()) else {
        return Ok((text.to_owned(), false));
    };
    let before = list.len();
    list.retain(|t| t.get("name").and_then(|v| v.as_str()) != Some(name));
    let removed = list.len() < before;
    Ok((doc.to_string(), removed))
}

/// Most memory one login may take (argon2's `m`, KiB): 256 MiB, thirteen times
/// what `hash_password` uses. Every login attempt costs what the hash names, so
/// a hash past these (a typo, another tool's settings) would let a few clients
/// exhaust the proxy's memory or time.
const MAX_M_COST_KIB: u32 = 256 * 1024;
/// Most passes (`t`) and lanes (`p`) a stored hash may ask for.
const MAX_T_COST: u32 = 16;
const MAX_P_COST: u32 = 16;

/// Why a stored hash cannot be used: not a PHC string, not argon2 (it would
/// never verify, a silent lockout), or costs too high to verify safely.
fn check_hash(hash: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(hash)
        .map_err(|_| "hash is not an argon2 PHC string (never a plain password)".to_owned())?;
    if argon2::Algorithm::try_from(parsed.algorithm).is_err() {
        return Err(format!(
            "hash uses `{}`, not argon2id, argon2i or argon2d: it could never verify",
            parsed.algorithm
        ));
    }
    let params = argon2::Params::try_from(&parsed)
        .map_err(|e| format!("hash has invalid argon2 parameters: {e}"))?;
    if params.m_cost() > MAX_M_COST_KIB
        || params.t_cost() > MAX_T_COST
        || params.p_cost() > MAX_P_COST
    {
        return Err(format!(
            "hash asks for m={} KiB, t={}, p={}: over the limits (m={MAX_M_COST_KIB}, \
             t={MAX_T_COST}, p={MAX_P_COST}) that keep logins from exhausting the proxy; \
             set the password again with `schoolgate proxy-user add`",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        ));
    }
    Ok(())
}

/// Hashes a password for the users file (argon2id, default parameters, random
/// salt).
pub fn hash_password(password: &str) -> Result<String, UsersError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UsersError::Hash(e.to_string()))
}

/// Splits a `Proxy-Authorization: Basic ...` value into user and password.
pub fn parse_basic(value: &[u8]) -> Option<(String, String)> {
    use base64::Engine;
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_plain_passwords_are_refused() {
        let hash = hash_password("correct horse").expect("hash");
        let text = format!("[[user]]\nname = \"amy\"\nrole = \"staff\"\nhash = \"{hash}\"\n");
        let users = Users::parse("users.toml", &text).expect("valid");
        let amy = users.get("amy").expect("amy");
        assert!(amy.verify("correct horse"));
        assert!(!amy.verify("wrong"));
        let plain = "[[user]]\nname = \"bob\"\nrole = \"staff\"\nhash = \"hunter2\"\n";
        assert!(Users::parse("users.toml", plain).is_err());
        let typo = format!("[[user]]\nname = \"c\"\nrole = \"staff\"\npasword = \"{hash}\"\n");
        assert!(Users::parse("users.toml", &typo).is_err());
    }

    /// A valid argon2id hash with the given costs (the digest is not checked
    /// until a login).
    fn hash_with(m: u32, t: u32, p: u32) -> String {
        format!(
            "$argon2id$v=19$m={m},t={t},p={p}$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA"
        )
    }

    fn users_file(name: &str, hash: &str) -> String {
        format!("[[user]]\nname = \"{name}\"\nrole = \"staff\"\nhash = \"{hash}\"\n")
    }

    #[test]
    fn hashes_another_algorithm_or_too_costly_are_refused_with_the_reason() {
        assert!(Users::parse("u.toml", &users_file("amy", &hash_with(19456, 2, 1))).is_ok());
        let pbkdf2 = "$pbkdf2-sha256$i=600000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA";
        let e = Users::parse("u.toml", &users_file("amy", pbkdf2))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("user[0] (amy)") && e.contains("pbkdf2-sha256"),
            "{e}"
        );
        let e = Users::parse("u.toml", &users_file("amy", &hash_with(4 << 20, 2, 1)))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("m=4194304 KiB") && e.contains("over the limits"),
            "{e}"
        );
        let e = Users::parse("u.toml", &users_file("amy", &hash_with(19456, 100, 1)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("t=100"), "{e}");
        let e = Users::parse("u.toml", &users_file("a\\u0007b", &hash_with(19456, 2, 1)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("control characters"), "{e}");
    }

    #[test]
    fn upsert_adds_and_replaces_in_place_keeping_comments() {
        let text = format!(
            "# exported from the MIS\n{}\n# staff\n{}",
            users_file("amy", &hash_with(19456, 2, 1)),
            users_file("ben", &hash_with(19456, 2, 1)).replace("staff", "pupil")
        );
        let new = [
            NewUser {
                name: "amy".into(),
                role: "pupil".into(),
                hash: hash_with(19456, 3, 1),
            },
            NewUser {
                name: "cat".into(),
                role: "guest".into(),
                hash: hash_with(19456, 2, 1),
            },
        ];
        let (out, replaced) = upsert("u.toml", &text, &new).expect("upsert");
        assert_eq!(replaced, 1);
        assert!(out.starts_with("# exported from the MIS\n"), "{out}");
        assert!(out.contains("# staff"), "{out}");
        let users = Users::parse("u.toml", &out).expect("valid");
        assert_eq!(users.len(), 3);
        assert_eq!(&*users.get("amy").unwrap().role, "pupil");
        assert!(users.get("amy").unwrap().hash.contains("t=3"));
        assert_eq!(&*users.get("ben").unwrap().role, "pupil");
        assert_eq!(&*users.get("cat").unwrap().role, "guest");
        // Order kept: amy, ben, then the new cat.
        let (a, b, c) = (
            out.find("amy").unwrap(),
            out.find("ben").unwrap(),
            out.find("cat").unwrap(),
        );
        assert!(a < b && b < c, "{out}");

        let (empty, n) = upsert("u.toml", "", &new[1..]).expect("into an empty file");
        assert_eq!(n, 0);
        assert_eq!(Users::parse("u.toml", &empty).expect("valid").len(), 1);

        let bad = [NewUser {
            name: "d:e".into(),
            role: "staff".into(),
            hash: hash_with(19456, 2, 1),
        }];
        let e = upsert("u.toml", &text, &bad).unwrap_err().to_string();
        assert!(e.contains("without `:`"), "{e}");
        let e = upsert("u.toml", "user = 3\n", &new)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a list of [[user]] tables"), "{e}");
    }

    #[test]
    fn remove_drops_only_that_user() {
        let text = format!(
            "{}{}",
            users_file("amy", &hash_with(19456, 2, 1)),
            users_file("ben", &hash_with(19456, 2, 1))
        );
        let (out, removed) = remove("u.toml", &text, "amy").expect("remove");
        assert!(removed);
        let users = Users::parse("u.toml", &out).expect("valid");
        assert!(users.get("amy").is_none() && users.get("ben").is_some());
        let (same, removed) = remove("u.toml", &out, "nobody").expect("remove");
        assert!(!removed);
        assert_eq!(same, out);
    }

    #[test]
    fn parses_basic_credentials() {
        assert_eq!(
            parse_basic(b"Basic YW15OnB3OmQ="),
            Some(("amy".to_owned(), "pw:d".to_owned()))
        );
        assert_eq!(parse_basic(b"Bearer x"), None);
        assert_eq!(parse_basic(b"Basic !!!"), None);
    }
}
