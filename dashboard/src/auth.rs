//! Accounts, passwords, sessions, CSRF tokens, lockout and role checks.
//!
//! - Passwords are argon2id hashes (PHC strings); verification runs on the
//!   blocking pool so a burst of logins cannot stall the server.
//! - A session is a random 256-bit cookie (`HttpOnly`, `SameSite=Strict`, `Secure`
//!   over HTTPS); the database keeps only its SHA-256, so a copy of the state file
//!   holds no usable session. Sessions end after `[dashboard] session_hours`.
//! - Every state change carries the session's CSRF token (form field `csrf` or
//!   header `X-CSRF-Token`); the forms reachable without a session (login, the
//!   wrong-block report) use a double-submit cookie instead.
//! - `max_failed_logins` wrong passwords lock the account for `lockout_minutes`,
//!   even against the right password; a per-address limiter slows guessing across
//!   accounts.
//! - Roles are checked on the server for every page and API call
//!   ([`CurrentUser::require`]); the menu hiding a page is only a courtesy.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audit::{self, AuditEntry, hex};
use crate::error::{DashboardError, Result};
use crate::state::{Clock, Db, ts};

/// What a dashboard account may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Filtering policy, lists, users, health, wrong-block reports.
    NetworkManager,
    /// The designated safeguarding lead: flagged access, timelines, incidents.
    EsafetyLead,
    /// Weekly summary, incidents shared with them, the audit log.
    Headteacher,
    /// Health only (e.g. an IT technician or the MSP).
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::NetworkManager,
        Role::EsafetyLead,
        Role::Headteacher,
        Role::Viewer,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Role::NetworkManager => "network-manager",
            Role::EsafetyLead => "esafety-lead",
            Role::Headteacher => "headteacher",
            Role::Viewer => "viewer",
        }
    }

    pub const fn label(self) -> &'static str {
        match self {
            Role::NetworkManager => "Network manager",
            Role::EsafetyLead => "E-safety lead / DSL",
            Role::Headteacher => "Headteacher",
            Role::Viewer => "Viewer",
        }
    }

    /// The page a user lands on after logging in.
    pub const fn home(self) -> &'static str {
        match self {
            Role::NetworkManager => "/policy",
            Role::EsafetyLead => "/review",
            Role::Headteacher => "/summary",
            Role::Viewer => "/health",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = DashboardError;

    fn from_str(s: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| {
                DashboardError::bad_request(format!(
                    "`{s}` is not a dashboard role (network-manager, esafety-lead, headteacher, viewer)"
                ))
            })
    }
}

/// The logged-in user of a request.
#[derive(Clone, Debug, Serialize)]
pub struct CurrentUser {
    #[serde(skip)]
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// The session's CSRF token, for forms and API clients.
    pub csrf: String,
    pub expires: jiff::Timestamp,
}

impl CurrentUser {
    /// Refuses unless the user has one of `roles`; `what` names the thing for the
    /// message ("the flagged-access review").
    pub fn require(&self, roles: &[Role], what: &str) -> Result<()> {
        if roles.contains(&self.role) {
            return Ok(());
        }
        let who: Vec<&str> = roles.iter().map(|r| r.label()).collect();
        Err(DashboardError::Forbidden(format!(
            "{what} is for the {} role{}; you are logged in as {}",
            who.join(" or "),
            if who.len() > 1 { "s" } else { "" },
            self.role.label()
        )))
    }

    pub fn audit<'a>(
        &'a self,
        action: &'a str,
        target: &'a str,
        reason: &'a str,
        detail: &'a str,
    ) -> AuditEntry<'a> {
        AuditEntry {
            actor: &self.name,
            role: self.role.name(),
            action,
            target,
            reason,
            detail,
        }
    }
}

/// Password rules: long enough to resist guessing (NCSC: length over complexity),
/// short enough that hashing stays bounded.
pub fn check_password_rules(name: &str, password: &str) -> Result<()> {
    let n = password.chars().count();
    if n < 10 {
        return Err(DashboardError::bad_request(
            "the password needs at least 10 characters (three random words work well)",
        ));
    }
    if password.len() > 256 {
        return Err(DashboardError::bad_request(
            "the password is longer than 256 bytes",
        ));
    }
    if password.eq_ignore_ascii_case(name) {
        return Err(DashboardError::bad_request(
            "the password cannot be the user name",
        ));
    }
    Ok(())
}

pub fn valid_user_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(DashboardError::bad_request(format!(
            "`{name}` is not a valid user name (1-64 of a-z, 0-9, `.`, `-`, `_`, `@`)"
        )))
    }
}

pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| DashboardError::Internal(format!("hashing a password: {e}")))
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash to verify against for unknown users, so a wrong name and a wrong
/// password take the same time.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not-a-real-password").unwrap_or_default())
}

pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Creates (or, with `replace`, re-keys) an account. Audited.
pub fn insert_user(
    conn: &mut Connection,
    now_ms: i64,
    actor: &AuditEntry<'_>,
    name: &str,
    role: Role,
    hash: &str,
) -> Result<()> {
    let tx = conn.transaction()?;
    let exists: Option<i64> = tx
        .query_row("SELECT id FROM users WHERE name = ?1", [name], |r| r.get(0))
        .optional()?;
    if exists.is_some() {
        return Err(DashboardError::Conflict(format!(
            "user `{name}` already exists"
        )));
    }
    tx.execute(
        "INSERT INTO users (name, role, hash, created_ms) VALUES (?1, ?2, ?3, ?4)",
        params![name, role.name(), hash, now_ms],
    )?;
    let target = format!("account {name}");
    let detail = format!("role {role}");
    audit::append(
        &tx,
        now_ms,
        &AuditEntry {
            action: "added account",
            target: &target,
            detail: &detail,
            ..actor.clone()
        },
    )?;
    tx.commit()?;
    Ok(())
}

/// Dashboard settings read from `[dashboard]` at each use, so a reload applies.
#[derive(Clone, Copy, Debug)]
pub struct AuthSettings {
    pub session_hours: u32,
    pub max_failed_logins: u32,
    pub lockout_minutes: u32,
}

/// A new session: the cookie value and the user it logs in.
#[derive(Debug)]
pub struct NewSession {
    pub token: String,
    pub user: CurrentUser,
}

/// Checks a login and opens a session, or counts the failure. Every outcome is
/// audited.
pub async fn login(
    db: &Db,
    clock: &Clock,
    settings: AuthSettings,
    name: &str,
    password: &str,
    from: IpAddr,
) -> Result<NewSession> {
    let name = name.trim().to_owned();
    let now_ms = clock.now_ms();
    let row: Option<(i64, String, String, i64, i64, bool)> = {
        let name = name.clone();
        db.call(move |c| {
            Ok(c.query_row(
                "SELECT id, role, hash, failed, locked_until_ms, disabled FROM users WHERE name = ?1",
                [&name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            )
            .optional()?)
        })
        .await?
    };
    let from_s = from.to_string();
    let Some((id, role, hash, failed, locked_until, disabled)) = row else {
        let pw = password.to_owned();
        let _ = tokio::task::spawn_blocking(move || verify_password(&pw, dummy_hash())).await;
        let who = name.clone();
        db.call(move |c| {
            audit::append(
                c,
                now_ms,
                &AuditEntry {
                    actor: &who,
                    role: "",
                    action: "login failed",
                    target: "dashboard",
                    reason: "unknown user",
                    detail: &from_s,
                },
            )
        })
        .await?;
        return Err(DashboardError::BadCredentials);
    };
    if locked_until > now_ms {
        return Err(DashboardError::Locked {
            until: ts(locked_until).strftime("%H:%M UTC").to_string(),
        });
    }
    let ok = {
        let pw = password.to_owned();
        tokio::task::spawn_blocking(move || verify_password(&pw, &hash))
            .await
            .map_err(|e| DashboardError::Internal(e.to_string()))?
    };
    let role = Role::from_str(&role).unwrap_or(Role::Viewer);
    if !ok || disabled {
        let failed = failed + 1;
        let lock = failed >= i64::from(settings.max_failed_logins.max(1));
        let until = now_ms + i64::from(settings.lockout_minutes) * 60_000;
        let who = name.clone();
        db.call(move |c| {
            let tx = c.transaction()?;
            if lock {
                tx.execute(
                    "UPDATE users SET failed = 0, locked_until_ms = ?2 WHERE id = ?1",
                    params![id, until],
                )?;
            } else {
                tx.execute(
                    "UPDATE users SET failed = ?2 WHERE id = ?1",
                    params![id, failed],
                )?;
            }
            let reason = if disabled {
                "account disabled"
            } else {
                "wrong password"
            };
            audit::append(
                &tx,
                now_ms,
                &AuditEntry {
                    actor: &who,
                    role: role.name(),
                    action: if lock {
                        "account locked"
                    } else {
                        "login failed"
                    },
                    target: "dashboard",
                    reason,
                    detail: &from_s,
                },
            )?;
            tx.commit()?;
            Ok(())
        })
        .await?;
        if lock {
            return Err(DashboardError::Locked {
                until: ts(until).strftime("%H:%M UTC").to_string(),
            });
        }
        return Err(DashboardError::BadCredentials);
    }
    let token = random_token(32);
    let csrf = random_token(24);
    let expires_ms = now_ms + i64::from(settings.session_hours.max(1)) * 3_600_000;
    let (th, csrf2, who) = (token_hash(&token), csrf.clone(), name.clone());
    db.call(move |c| {
        let tx = c.transaction()?;
        tx.execute(
            "UPDATE users SET failed = 0, locked_until_ms = 0, last_login_ms = ?2 WHERE id = ?1",
            params![id, now_ms],
        )?;
        // Expired sessions are swept here rather than by a timer.
        tx.execute("DELETE FROM sessions WHERE expires_ms <= ?1", [now_ms])?;
        tx.execute(
            "INSERT INTO sessions (token_hash, user_id, csrf, created_ms, expires_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![th, id, csrf2, now_ms, expires_ms],
        )?;
        audit::append(
            &tx,
            now_ms,
            &AuditEntry {
                actor: &who,
                role: role.name(),
                action: "logged in",
                target: "dashboard",
                reason: "",
                detail: &from_s,
            },
        )?;
        tx.commit()?;
        Ok(())
    })
    .await?;
    Ok(NewSession {
        token,
        user: CurrentUser {
            id,
            name,
            role,
            csrf,
            expires: ts(expires_ms),
        },
    })
}

/// The user of a session cookie, if the session is live and the account enabled.
pub async fn session_user(db: &Db, now_ms: i64, token: &str) -> Result<Option<CurrentUser>> {
    let th = token_hash(token);
    db.call(move |c| {
        let row = c
            .query_row(
                "SELECT u.id, u.name, u.role, s.csrf, s.expires_ms FROM sessions s \
                 JOIN users u ON u.id = s.user_id \
                 WHERE s.token_hash = ?1 AND s.expires_ms > ?2 AND u.disabled = 0",
                params![th, now_ms],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                },
            )
            .optional()?;
        Ok(row.and_then(|(id, name, role, csrf, exp)| {
            Some(CurrentUser {
                id,
                name,
                role: Role::from_str(&role).ok()?,
                csrf,
                expires: ts(exp),
            })
        }))
    })
    .await
}

pub async fn logout(db: &Db, now_ms: i64, token: &str, user: &CurrentUser) -> Result<()> {
    let th = token_hash(token);
    let (name, role) = (user.name.clone(), user.role);
    db.call(move |c| {
        let tx = c.transaction()?;
        tx.execute("DELETE FROM sessions WHERE token_hash = ?1", [th])?;
        audit::append(
            &tx,
            now_ms,
            &AuditEntry {
                actor: &name,
                role: role.name(),
                action: "logged out",
                target: "dashboard",
                reason: "",
                detail: "",
            },
        )?;
        tx.commit()?;
        Ok(())
    })
    .await
}

/// Changes the user's own password after checking the current one; ends the
/// user's other sessions (a changed password should lock out whoever knew it).
pub async fn change_password(
    db: &Db,
    clock: &Clock,
    user: &CurrentUser,
    current: &str,
    new: &str,
    keep_token: &str,
) -> Result<()> {
    check_password_rules(&user.name, new)?;
    let id = user.id;
    let hash: String = db
        .call(move |c| Ok(c.query_row("SELECT hash FROM users WHERE id = ?1", [id], |r| r.get(0))?))
        .await?;
    let (cur, newp) = (current.to_owned(), new.to_owned());
    let new_hash = tokio::task::spawn_blocking(move || {
        if verify_password(&cur, &hash) {
            hash_password(&newp).map(Some)
        } else {
            Ok(None)
        }
    })
    .await
    .map_err(|e| DashboardError::Internal(e.to_string()))??;
    let Some(new_hash) = new_hash else {
        return Err(DashboardError::bad_request("the current password is wrong"));
    };
    let now_ms = clock.now_ms();
    let (name, role, keep) = (user.name.clone(), user.role, token_hash(keep_token));
    db.call(move |c| {
        let tx = c.transaction()?;
        tx.execute(
            "UPDATE users SET hash = ?2 WHERE id = ?1",
            params![id, new_hash],
        )?;
        tx.execute(
            "DELETE FROM sessions WHERE user_id = ?1 AND token_hash != ?2",
            params![id, keep],
        )?;
        audit::append(
            &tx,
            now_ms,
            &AuditEntry {
                actor: &name,
                role: role.name(),
                action: "changed own password",
                target: "dashboard",
                reason: "",
                detail: "other sessions ended",
            },
        )?;
        tx.commit()?;
        Ok(())
    })
    .await
}

/// An account as the Users page lists it.
#[derive(Clone, Debug, Serialize)]
pub struct Account {
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    pub locked_until: Option<jiff::Timestamp>,
    pub last_login: Option<jiff::Timestamp>,
    pub created: jiff::Timestamp,
}

pub fn accounts(conn: &Connection, now_ms: i64) -> Result<Vec<Account>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, role, disabled, locked_until_ms, last_login_ms, created_ms FROM users ORDER BY name",
    )?;
    let rows = stmt.query_map([], |r| {
        let locked: i64 = r.get(3)?;
        let role: String = r.get(1)?;
        Ok(Account {
            name: r.get(0)?,
            role: Role::from_str(&role).unwrap_or(Role::Viewer),
            disabled: r.get(2)?,
            locked_until: (locked > now_ms).then(|| ts(locked)),
            last_login: r.get::<_, Option<i64>>(4)?.map(ts),
            created: ts(r.get(5)?),
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Counts requests per client address in fixed windows. Bounded: at most
/// `MAX_TRACKED` addresses are remembered; past that the table is cleared, which
/// errs towards letting a request through rather than locking out a school.
#[derive(Debug)]
pub struct RateLimiter {
    max: u32,
    window: Duration,
    hits: Mutex<HashMap<IpAddr, (u32, i64)>>,
}

const MAX_TRACKED: usize = 10_000;

impl RateLimiter {
    pub fn new(max: u32, window: Duration) -> RateLimiter {
        RateLimiter {
            max,
            window,
            hits: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request from `ip` at `now_ms`; `Err(RateLimited)` past the limit.
    pub fn check(&self, ip: IpAddr, now_ms: i64) -> Result<()> {
        let window_ms = i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX);
        let mut hits = self
            .hits
            .lock()
            .map_err(|_| DashboardError::Internal("rate limiter lock poisoned".into()))?;
        if hits.len() >= MAX_TRACKED && !hits.contains_key(&ip) {
            hits.retain(|_, (_, start)| now_ms - *start < window_ms);
            if hits.len() >= MAX_TRACKED {
                hits.clear();
            }
        }
        let slot = hits.entry(ip).or_insert((0, now_ms));
        if now_ms - slot.1 >= window_ms {
            *slot = (0, now_ms);
        }
        slot.0 += 1;
        if slot.0 > self.max {
            Err(DashboardError::RateLimited)
        } else {
            Ok(())
        }
    }
}

/// Compares secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::from_str(r.name()).ok(), Some(r));
        }
        assert!(Role::from_str("admin").is_err());
    }

    #[test]
    fn rate_limiter_counts_per_window() {
        let rl = RateLimiter::new(2, Duration::from_secs(60));
        let ip: IpAddr = [127, 0, 0, 1].into();
        assert!(rl.check(ip, 0).is_ok());
        assert!(rl.check(ip, 1).is_ok());
        assert!(rl.check(ip, 2).is_err());
        assert!(rl.check(ip, 60_001).is_ok());
    }

    #[test]
    fn secrets_compare() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
