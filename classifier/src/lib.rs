//! The pure decision core of schoolgate: request facts in, [`Verdict`] out.
//!
//! No sockets, no tokio, no files opened behind the caller's back. The caller reads
//! the configuration text and the lists and hands them over; the [`Policy`] snapshot
//! it compiles is immutable and answers [`Policy::decide`] on the hot path.
//!
//! # Layout
//! - [`category`]: the taxonomy, category sets, severities, the UT1 mapping
//! - [`config`]: the school's TOML configuration, parsing and validation
//! - [`domain`]: host names and the compact index of list entries
//! - [`keywords`]: weighted keyword rules on Aho-Corasick (hosts, paths, searches)
//! - [`search`]: search-term extraction and SafeSearch hosts
//! - [`request`]: the facts about one request, URL splitting
//! - [`policy`]: the compiled snapshot, role resolution, `decide`
//! - [`verdict`]: actions, rules, reasons

pub mod category;
pub mod config;
pub mod domain;
pub mod keywords;
pub mod policy;
pub mod request;
pub mod search;
pub mod verdict;

pub use category::{Category, CategorySet, Severity};
pub use config::Config;
pub use policy::{
    Client, ListId, Policy, PolicyBuilder, PolicyError, RoleId, SharedPolicy, shared,
};
pub use request::{Request, UrlParts};
pub use verdict::{Action, Rewrite, Rule, Verdict};
