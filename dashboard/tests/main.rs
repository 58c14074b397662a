//! The dashboard's integration tests: one binary, a module per area. Every test
//! starts a real dashboard on 127.0.0.1:0 and talks HTTP to it.

mod support;

/// Each role is refused what it must not see, with the status and the message.
mod access;
/// Login, logout, session expiry, lockout, password change, user management.
mod accounts;
/// The audit log: entries for views of individuals and for changes; append-only.
mod audit;
/// End to end in headless Chromium (chromedriver): block a category, escalate and close, read the summary.
mod browser;
/// State changes without the CSRF token are refused; public forms use double submit.
mod csrf;
/// The e-Safety Incident Log: escalation with evidence, closure, exports, the head's access.
mod incidents;
/// Health and Lists pages and their JSON.
mod pages;
/// The policy editor: matrix saves, refused reloads, comments kept, versions, Test a URL.
mod policy;
/// The DSL's review: episodes, the browsing around them, acknowledge, notes, timeline, search.
mod review;
/// The headteacher's weekly summary.
mod summary;
/// HTTPS with a certificate: TLS serving, Secure cookies, HSTS.
mod tls;
/// The public wrong-block form, its rate limit, and the network manager's queue.
mod wrong_blocks;
