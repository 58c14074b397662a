//! The pure decision core of schoolgate.
pub mod category;
pub mod verdict;
pub use category::{Category, CategorySet, Severity};
pub use verdict::{Action, Rewrite, Rule, Verdict};
