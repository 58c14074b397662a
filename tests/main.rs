//! End-to-end tests of the `schoolgate` binary, run as a network manager runs it.

/// Shared helpers: free ports, a school config in a temp dir, the running binary.
mod support;

/// `schoolgate check` and `schoolgate config check` on real configs and lists.
mod cli;
/// `schoolgate run`: proxy and DNS answer per role, SIGHUP reloads (a bad config
/// keeps the old policy), SIGTERM drains every event into the store.
mod run;
