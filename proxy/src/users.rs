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
        let err = |message: String| UsersError::Parse {
            path: path.to_owned(),
            message,
        };
        let file: UsersFile = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let mut by_name = HashMap::with_capacity(file.user.len());
        for (i, u) in file.user.into_iter().enumerate() {
            if u.name.is_empty() || u.name.contains(':') {
                return Err(err(format!(
                    "user[{i}]: name must be non-empty without `:`"
                )));
            }
            if PasswordHash::new(&u.hash).is_err() {
                return Err(err(format!(
                    "user[{i}] ({}): hash is not an argon2 PHC string (never a plain password)",
                    u.name
                )));
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
