//! The one integration-test binary of `schoolgate-lists`.

/// Shared helpers: collecting entries, the real data folder, gzip fixtures.
mod support;

/// The curated default lists parse cleanly and say what they are.
mod curated;
/// Files on disk: gzip by magic, line caps, invalid UTF-8, I/O errors.
mod files;
/// Every format end to end: entries, malformed lines with file, line and message.
mod formats;
/// From a configuration to a policy; a failing reload keeps the running policy.
mod load;
/// Properties: no input panics; a valid name always round-trips.
mod properties;
/// The real lists under `../shared/data`, against the counts in its README.
mod real_data;
/// Five million lines in well under two seconds (release builds only).
mod throughput;
/// Downloading URL sources: conditional requests, refusing unsound downloads, UT1 archives.
mod update;
/// UT1 category folders, in the archive's layout and the flat one.
mod ut1_folder;
