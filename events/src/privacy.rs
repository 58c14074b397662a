//! Pseudonymising guests (`[store.retention] pseudonymise_guests`).
//!
//! A guest on the visitor network has not agreed to be monitored the way staff and
//! pupils have (their AUPs say so), so what identifies them (user name, device and
//! address) is replaced by a keyed hash before the event reaches the spool or the
//! store. The same guest keeps the same pseudonym, so "this guest tried 40 proxy
//! sites" still shows; without the key file nobody can go back from it, and
//! deleting the key file unlinks all pseudonyms from then on.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};

use rand::RngCore;

use crate::event::AccessEvent;

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "pseudonym.key";

/// Errors reading or creating the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PseudonymError {
    #[error("pseudonymisation key {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pseudonymisation key {path} is {len} bytes, expected 32")]
    BadKey { path: PathBuf, len: usize },
}

/// Replaces a guest's identifiers with keyed hashes.
#[derive(Clone)]
pub struct Pseudonymiser {
    key: [u8; 32],
    guest_roles: Vec<String>,
}

impl std::fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Pseudonymiser")
            .field("guest_roles", &self.guest_roles)
            .finish_non_exhaustive()
    }
}

impl Pseudonymiser {
    pub fn new(key: [u8; 32], guest_roles: Vec<String>) -> Pseudonymiser {
        Pseudonymiser { key, guest_roles }
    }

    /// Reads the key from `dir/pseudonym.key`, creating it (32 random bytes, mode
    /// 0600) on first use.
    pub fn load_or_create(
        dir: &Path,
        guest_roles: Vec<String>,
    ) -> Result<Pseudonymiser, PseudonymError> {
        let path = dir.join(KEY_FILE);
        let err = |source| PseudonymError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(dir).map_err(err)?;
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(&path) {
            Ok(mut file) => {
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                file.write_all(&key).map_err(err)?;
                file.sync_all().map_err(err)?;
                return Ok(Pseudonymiser::new(key, guest_roles));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(e)),
        }
        let mut bytes = Vec::new();
        fs::File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(err)?;
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| PseudonymError::BadKey {
                path: path.clone(),
                len: bytes.len(),
            })?;
        Ok(Pseudonymiser::new(key, guest_roles))
    }

    pub fn is_guest(&self, role: &str) -> bool {
        self.guest_roles
            .iter()
            .any(|g| g.eq_ignore_ascii_case(role))
    }

    /// The event as it may be stored: unchanged unless its role is a guest role.
    pub fn apply(&self, mut event: AccessEvent) -> AccessEvent {
        if !self.is_guest(&event.role) {
            return event;
        }
        event.user = event.user.map(|u| self.token("user", u.as_bytes()));
        event.device = event.device.map(|d| self.token("device", d.as_bytes()));
        event.client_ip = self.address(event.client_ip);
        event
    }

    fn hash(&self, domain: &str, value: &[u8]) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        // The domain keeps a user name and a device name that happen to be equal
        // from getting the same pseudonym.
        hasher.update(domain.as_bytes());
        hasher.update(&[0]);
        hasher.update(value);
        *hasher.finalize().as_bytes()
    }

    fn token(&self, domain: &str, value: &[u8]) -> String {
        let h = self.hash(domain, value);
        let mut out = String::from("guest-");
        for b in &h[..8] {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// An address in `100::/64` (RFC 6666, discard-only): it can never be a real
    /// client, and distinct guests stay distinct in "distinct clients" counts.
    fn address(&self, ip: IpAddr) -> IpAddr {
        let h = self.hash("ip", ip.to_string().as_bytes());
        let mut octets = [0u8; 16];
        octets[0] = 0x01;
        octets[8..].copy_from_slice(&h[..8]);
        IpAddr::V6(Ipv6Addr::from(octets))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::event::Source;

    #[test]
    fn guests_are_pseudonymised_consistently_others_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Pseudonymiser::load_or_create(dir.path(), vec!["guest".into()]).expect("key");
        let ip = IpAddr::V4(Ipv4Addr::new(192, 168, 9, 9));
        let guest = AccessEvent::new(Source::Proxy, ip, "a.example")
            .with_role("guest")
            .with_user("visitor@example.org")
            .with_device("phone");
        let a = p.apply(guest.clone());
        let b = p.apply(guest.clone());
        assert_eq!(a, b, "same guest, same pseudonym");
        assert_ne!(a.user, guest.user);
        assert!(a.user.as_deref().is_some_and(|u| u.starts_with("guest-")));
        assert_ne!(a.client_ip, ip);
        assert!(matches!(a.client_ip, IpAddr::V6(v6) if v6.segments()[0] == 0x0100));
        assert_ne!(a.device, guest.device);

        let pupil = guest.clone().with_role("pupil");
        assert_eq!(p.apply(pupil.clone()), pupil);

        // The key persists: a second load gives the same pseudonyms.
        let again = Pseudonymiser::load_or_create(dir.path(), vec!["guest".into()]).expect("key");
        assert_eq!(again.apply(guest), a);
    }

    #[test]
    fn a_short_key_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(KEY_FILE), b"short").expect("write");
        assert!(matches!(
            Pseudonymiser::load_or_create(dir.path(), vec![]),
            Err(PseudonymError::BadKey { len: 5, .. })
        ));
    }
}
