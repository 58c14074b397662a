//! [`Clock`]: the wall time the scheduler and the alerter go by.
//!
//! Waiting is always done with `tokio::time`; what a wait is *for* (Monday 07:00,
//! today's alert cap) is wall time. Tests pause tokio's clock, so they need a wall
//! clock that moves with it: [`Clock::starting_at`].

use jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;

/// Where "now" comes from.
#[derive(Clone, Copy, Debug)]
pub enum Clock {
    /// The system's wall clock.
    System,
    /// `at` when `since` was tokio's now, moving with tokio's clock from there.
    Anchored { at: Timestamp, since: Instant },
}

impl Clock {
    /// A wall clock that reads `at` now and advances with `tokio::time` (so
    /// `tokio::time::pause` and `advance` move it too).
    pub fn starting_at(at: Timestamp) -> Clock {
        Clock::Anchored {
            at,
            since: Instant::now(),
        }
    }

    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp::now(),
            Clock::Anchored { at, since } => {
                let elapsed =
                    SignedDuration::try_from(since.elapsed()).unwrap_or(SignedDuration::MAX);
                at.checked_add(elapsed).unwrap_or(Timestamp::MAX)
            }
        }
    }
}
