//! `[roles.NAME]`: what one filtering level blocks, flags and allows, and when.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::category::{Category, Severity};

/// SafeSearch / YouTube restriction level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Restriction {
    /// No enforcement.
    #[default]
    Off,
    /// YouTube "restrictmoderate"; search engines' moderate level where they have one.
    Moderate,
    /// Enforced SafeSearch / YouTube Restricted Mode (strict).
    Strict,
}

/// One role (filtering level), e.g. `pupil`, `pupil-ks1`, `staff`, `guest`.
///
/// Every field is optional in the file. A role with `extends = "pupil"` starts from
/// that role and adds its own `block`, `flag`, `allow`, `deny` and `timed` entries;
/// scalar settings it leaves unset are inherited. Defaults for a role that sets
/// nothing (and extends nothing): blocks nothing beyond `illegal` (always blocked),
/// flags nothing, SafeSearch and YouTube `off`, no size caps, no HTTPS inspection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleConfig {
    /// For people reading the config and the dashboard.
    pub description: String,
    /// Another role this one starts from.
    pub extends: Option<String>,
    /// Categories refused to this role.
    pub block: Vec<Category>,
    /// Categories allowed but recorded for review, with a severity.
    pub flag: BTreeMap<Category, Severity>,
    /// Local allow entries: `domain` (and its subdomains) or `host/path-prefix`.
    /// They beat list categories, never `illegal`.
    pub allow: Vec<String>,
    /// Local deny entries, same forms. The more specific of a matching allow and deny
    /// entry wins; on a tie, deny.
    pub deny: Vec<String>,
    pub safesearch: Option<Restriction>,
    pub youtube: Option<Restriction>,
    /// Largest response body this role may download, in MB.
    pub max_download_mb: Option<u64>,
    /// Largest request body this role may upload, in MB.
    pub max_upload_mb: Option<u64>,
    /// Whether the proxy decrypts HTTPS for this role (managed devices only).
    pub https_inspection: Option<bool>,
    /// Changes that apply only while a schedule is active.
    pub timed: Vec<TimedRule>,
}

/// `[[roles.NAME.timed]]`: while any of `schedule` is active, `allow` these
/// categories (lifting a block), `block` these and `flag` these.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimedRule {
    /// The names of schedules in `[schedules]`; a single name or a list.
    #[serde(deserialize_with = "one_or_many")]
    pub schedule: Vec<String>,
    pub allow: Vec<Category>,
    pub block: Vec<Category>,
    pub flag: BTreeMap<Category, Severity>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}
