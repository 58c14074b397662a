//! How the C allocator hands memory back.
//!
//! glibc serves a large allocation with its own `mmap` and returns it on free,
//! but by default it raises that size threshold to the largest such block ever
//! freed (up to 32 MiB). Compiling a million-name list frees blocks of tens of
//! MB (the entries as read, the sorted keys and values), so every later
//! allocation up to that size comes from the heap instead, and the holes it
//! leaves there stay resident: measured with a 1 M-name list and the index
//! packed, an idle proxy held 45 MB, against 30 MB with the threshold fixed.
//! Fixing the threshold turns that adjustment off.

/// Blocks of at least this size are mapped and unmapped on their own. Nothing on
/// a hot path allocates this much at a time; batches of events and list tables do.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 1 << 20;

/// Fixes glibc's mmap threshold (see the module comment). Does nothing with
/// other C libraries, which do not adjust it.
pub fn fix_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only sets a tuning parameter of the allocator; it is
        // called once, before the program starts any thread.
        #[allow(unsafe_code)]
        let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
        if ok != 1 {
            tracing::warn!(
                "could not fix the allocator's mmap threshold; memory use may be higher"
            );
        }
    }
}
