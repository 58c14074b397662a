//! Shared helpers for schoolgate's benchmarks: loading the real lists from ../shared/data.
