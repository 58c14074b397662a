//! Integration tests of the classifier crate, through its public API only.

/// Shared helpers: build a policy from TOML text and a few list entries.
mod support;

/// Every configuration error is rejected with file, line, key and message.
mod config_errors;
/// The example configurations in `examples/` parse, validate and compile.
mod examples;
/// Precedence: illegal > local deny/allow > blocked > flagged > rewrite > allow.
mod precedence;
/// Property tests: decide never panics and respects the invariants.
mod properties;
/// Schedules, term dates and closures change what a role may reach.
mod schedules;
