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

impl Rule {
    /// Appends the rule's text (its `Display` form) to `out`, piece by piece
    /// rather than through the formatting machinery: every logged event carries
    /// it, and its reason repeats it.
    pub fn push_to(&self, out: &mut String) {
        let parts: [&str; 5] = match self {
            Rule::Default => ["default", "", "", "", ""],
            Rule::List { list, entry, .. } => ["list ", list, ": ", entry, ""],
            Rule::Keyword { keyword, category } => {
                ["keyword ", category.name(), ": \"", keyword, "\""]
            }
            Rule::LocalAllow { entry } => ["local allow: ", entry, "", "", ""],
            Rule::LocalDeny { entry } => ["local deny: ", entry, "", "", ""],
            Rule::MalformedHost => ["malformed host name", "", "", "", ""],
            Rule::DomainFronting { sni, host } => [
                "domain fronting: TLS name ",
                sni,
                " but HTTP host ",
                host,
                "",
            ],
        };
        out.reserve(parts.iter().map(|p| p.len()).sum());
        parts.iter().for_each(|p| out.push_str(p));
    }

    /// The rule's text, e.g. `list ut1/gambling: bet365.com`.
    pub fn text(&self) -> String {
        let mut out = String::new();
        self.push_to(&mut out);
        out
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
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
        match (self.category, &self.rule) {
            (_, Rule::Default) if self.action == Action::Rewrite => {
                out.push_str("SafeSearch enforced");
            }
            (_, Rule::Default) => out.push_str("no restricted category"),
            (Some(c), rule) => {
                out.push_str(c.name());
                out.push_str(if self.action == Action::Allow {
                    " is not restricted now ("
                } else {
                    " ("
                });
                rule.push_to(out);
                out.push(')');
            }
            (None, rule) => rule.push_to(out),
        }
    }

    pub fn is_blocked(&self) -> bool {
        self.action == Action::Block
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(action: Action, category: Option<Category>, rule: Rule) -> Verdict {
        Verdict {
            action,
            categories: CategorySet::default(),
            severity: None,
            rule,
            category,
            role: Arc::from("pupil"),
            rewrite: None,
            search_terms: None,
        }
    }

    #[test]
    fn rules_and_reasons_read_as_written() {
        let list = Rule::List {
            list: Arc::from("ut1/gambling"),
            entry: "bet365.com".into(),
            category: Category::Gambling,
        };
        let cases = [
            (Rule::Default, "default"),
            (list.clone(), "list ut1/gambling: bet365.com"),
            (
                Rule::Keyword {
                    keyword: Arc::from("casino"),
                    category: Category::Gambling,
                },
                "keyword gambling: \"casino\"",
            ),
            (
                Rule::LocalAllow {
                    entry: Arc::from("bbc.co.uk"),
                },
                "local allow: bbc.co.uk",
            ),
            (
                Rule::LocalDeny {
                    entry: Arc::from("example.com"),
                },
                "local deny: example.com",
            ),
            (Rule::MalformedHost, "malformed host name"),
            (
                Rule::DomainFronting {
                    sni: "allowed.test".into(),
                    host: "blocked.test".into(),
                },
                "domain fronting: TLS name allowed.test but HTTP host blocked.test",
            ),
        ];
        for (rule, text) in cases {
            assert_eq!(rule.text(), text);
            assert_eq!(rule.to_string(), text);
        }

        let reason = |action, category, rule| verdict(action, category, rule).reason();
        assert_eq!(
            reason(Action::Block, Some(Category::Gambling), list.clone()),
            "blocked for pupil: gambling (list ut1/gambling: bet365.com)"
        );
        assert_eq!(
            reason(Action::Allow, Some(Category::Gambling), list.clone()),
            "allowed for pupil: gambling is not restricted now (list ut1/gambling: bet365.com)"
        );
        assert_eq!(
            reason(Action::Block, None, Rule::MalformedHost),
            "blocked for pupil: malformed host name"
        );
        assert_eq!(
            reason(Action::Allow, None, Rule::Default),
            "allowed for pupil: no restricted category"
        );
        assert_eq!(
            reason(Action::Rewrite, None, Rule::Default),
            "allowed with SafeSearch for pupil: SafeSearch enforced"
        );
        assert_eq!(
            reason(Action::Flag, Some(Category::SelfHarm), list),
            "flagged for pupil: self-harm (list ut1/gambling: bet365.com)"
        );
    }
}
