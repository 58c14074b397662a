//! What the classifier decides: an [`Action`], the categories that matched, the
//! [`Rule`] that decided it and a reason a person can read.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::category::{Category, CategorySet, Severity};

/// What to do with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Action {
    /// Let it through.
    Allow = 0,
    /// Let it through, and record it for the e-safety lead's review.
    Flag = 1,
    /// Let it through with a change (SafeSearch host or parameter).
    Rewrite = 2,
    /// Refuse it, with a block page that says why.
    Block = 3,
}

impl Action {
    pub const fn name(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Flag => "flag",
            Action::Rewrite => "rewrite",
            Action::Block => "block",
        }
    }

    pub fn from_name(name: &str) -> Option<Action> {
        Some(match name {
            "allow" => Action::Allow,
            "flag" => Action::Flag,
            "rewrite" => Action::Rewrite,
            "block" => Action::Block,
            _ => return None,
        })
    }

    pub fn from_u8(v: u8) -> Option<Action> {
        Some(match v {
            0 => Action::Allow,
            1 => Action::Flag,
            2 => Action::Rewrite,
            3 => Action::Block,
            _ => return None,
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which rule of the policy decided a verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rule {
    /// Nothing matched, or nothing that matched is restricted for this role.
    Default,
    /// An entry of a list (`list` is the source name, e.g. `ut1/gambling`).
    List {
        list: Arc<str>,
        entry: String,
        category: Category,
    },
    /// A weighted keyword rule matched the host, path or search terms.
    Keyword {
        keyword: Arc<str>,
        category: Category,
    },
    /// The role's local allow list (`entry` is the matching allow entry).
    LocalAllow { entry: Arc<str> },
    /// The role's local deny list.
    LocalDeny { entry: Arc<str> },
    /// The host could not be a valid name (blocked: never a silent allow).
    MalformedHost,
    /// The CONNECT/SNI name and the HTTP Host differ (domain fronting).
    DomainFronting { sni: String, host: String },
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Default => f.write_str("default"),
            Rule::List { list, entry, .. } => write!(f, "list {list}: {entry}"),
            Rule::Keyword { keyword, category } => write!(f, "keyword {category}: \"{keyword}\""),
            Rule::LocalAllow { entry } => write!(f, "local allow: {entry}"),
            Rule::LocalDeny { entry } => write!(f, "local deny: {entry}"),
            Rule::MalformedHost => f.write_str("malformed host name"),
            Rule::DomainFronting { sni, host } => {
                write!(f, "domain fronting: TLS name {sni} but HTTP host {host}")
            }
        }
    }
}

/// A rewrite the caller applies instead of (or as well as) passing the request on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewrite {
    /// The provider's enforced host, answered as a CNAME by the DNS filter
    /// (e.g. `forcesafesearch.google.com`).
    pub cname: &'static str,
    /// A query parameter that enforces the same on plain HTTP (e.g. `safe=active`).
    pub param: Option<(&'static str, &'static str)>,
}

/// The decision for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub action: Action,
    /// Every category the request matched (not only the deciding one).
    pub categories: CategorySet,
    /// For `Flag` (and for blocked requests that are also flagged): how urgent.
    pub severity: Option<Severity>,
    /// The rule that decided.
    pub rule: Rule,
    /// The category that decided, when one did.
    pub category: Option<Category>,
    /// The role's name, for the reason text.
    pub role: Arc<str>,
    /// SafeSearch / YouTube restriction to apply.
    pub rewrite: Option<Rewrite>,
    /// Search terms found in the URL, decoded.
    pub search_terms: Option<String>,
}

impl Verdict {
    /// A human reason, e.g.
    /// `blocked for pupil: gambling (list ut1/gambling: bet365.com)`.
    pub fn reason(&self) -> String {
        let mut out = String::new();
        self.write_reason(&mut out);
        out
    }

    /// [`Verdict::reason`] into `out` (cleared first). The common case, allowed
    /// by default, is put together without the formatting machinery: it is on
    /// every proxied request.
    pub fn write_reason(&self, out: &mut String) {
        use std::fmt::Write as _;
        let what = match self.action {
            Action::Allow => "allowed",
            Action::Flag => "flagged",
            Action::Rewrite => "allowed with SafeSearch",
            Action::Block => "blocked",
        };
        out.clear();
        out.reserve(what.len() + self.role.len() + 32);
        out.push_str(what);
        out.push_str(" for ");
        out.push_str(&self.role);
        out.push_str(": ");
        let _ = match (self.category, &self.rule) {
            (_, Rule::Default) if self.action == Action::Rewrite => {
                out.push_str("SafeSearch enforced");
                Ok(())
            }
            (_, Rule::Default) => {
                out.push_str("no restricted category");
                Ok(())
            }
            (Some(c), rule) if self.action == Action::Allow => {
                write!(out, "{c} is not restricted now ({rule})")
            }
            (Some(c), rule) => write!(out, "{c} ({rule})"),
            (None, rule) => write!(out, "{rule}"),
        };
    }

    pub fn is_blocked(&self) -> bool {
        self.action == Action::Block
    }
}
