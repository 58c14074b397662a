//! The SQLite writer's share of the CPU: in the background while it keeps up,
//! at nice 10 when it falls behind.
//!
//! A batch insert is milliseconds of CPU on one core. Even at nice 10 the writer
//! takes its core whenever it runs, and on a small box the threads the proxy and
//! DNS filter wake (clients, origins) then queue beside the proxy thread instead.
//! Under `SCHED_IDLE` the kernel runs the writer only on a core with nothing else
//! to do, which is where a writer that keeps up belongs.
//!
//! Under a flood that leaves no core idle, an idle-class writer would hardly run:
//! the queue would fill and events would go to the disk spool, which costs the
//! hot paths more than the insert would have. So a write that has waited
//! [`CpuPolicy::hurry_after`] moves the writer back to `SCHED_OTHER` (still at
//! nice 10), where it stays for at least [`CpuPolicy::hurried_for`] and until its
//! queue is empty; then it goes back to the background.
//!
//! Leaving `SCHED_IDLE` needs `CAP_SYS_NICE` (root has it) or an `RLIMIT_NICE`
//! that allows nice 10 (`LimitNICE=10` in a systemd unit). That is tried once
//! a process, on a throwaway thread, when a store first opens; a writer that
//! could not come back never enters `SCHED_IDLE` and runs at nice 10 throughout.
//!
//! Measured by hand (`benches/RESULTS.md`, 2026-11-24): wrk through the proxy,
//! 1 KiB pages, every request stored: 36.1–37.3k req/s at 25.2–26.1 µs of CPU a
//! request, against 27.2–35.2k at 26.5–34.6 µs with the writer at nice 10 alone.

// Scheduling classes are set and read with `sched_setscheduler` and
// `sched_getscheduler`, which rustix does not wrap: the calls into libc here take
// integers and a pointer to a local.
#![allow(unsafe_code)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// The writer thread's nice value (0 is the default, 19 the lowest priority),
/// kept under both scheduling classes.
pub const WRITER_NICE: i32 = 10;

/// When the writer is moved out of the background and for how long.
#[derive(Debug, Clone, Copy)]
pub struct CpuPolicy {
    /// A write waiting this long moves the writer to `SCHED_OTHER` (50 ms: a
    /// 2,000-event batch is about 6 ms of CPU, and the event queue holds 16,384
    /// events, 0.4 s of a flood of 40,000 a second, which the writer must still
    /// drain at nice 10 behind the busy threads; with 100 ms, a DNS flood of
    /// 45,000 events a second overflowed 14,380 events into the spool).
    pub hurry_after: Duration,
    /// The least time the writer then stays out of the background (5 s), so a
    /// flood costs one late batch every five seconds, not every batch.
    pub hurried_for: Duration,
}

impl Default for CpuPolicy {
    fn default() -> Self {
        CpuPolicy {
            hurry_after: Duration::from_millis(50),
            hurried_for: Duration::from_secs(5),
        }
    }
}

/// The writer thread's scheduling, shared by the thread and the callers waiting
/// on it.
#[derive(Debug)]
pub struct WriterCpu {
    policy: CpuPolicy,
    /// Whether the writer may enter `SCHED_IDLE` (it could leave it again).
    background_allowed: bool,
    /// The writer thread's id, once it has started.
    tid: AtomicI32,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Under `SCHED_IDLE` now.
    background: bool,
    /// When a caller last moved it out.
    hurried_at: Option<Instant>,
}

impl WriterCpu {
    /// Knows (probing once a process) whether a thread can leave `SCHED_IDLE`.
    pub fn new(policy: CpuPolicy) -> WriterCpu {
        WriterCpu {
            policy,
            background_allowed: can_leave_background(),
            tid: AtomicI32::new(0),
            state: Mutex::new(State::default()),
        }
    }

    pub fn policy(&self) -> CpuPolicy {
        self.policy
    }

    /// The writer thread's id (0 before it started).
    pub fn tid(&self) -> i32 {
        self.tid.load(Ordering::Acquire)
    }

    /// Whether the writer goes to the background when it keeps up.
    pub fn background_allowed(&self) -> bool {
        self.background_allowed
    }

    /// Called once on the writer thread as it starts: nice 10, then the
    /// background if it may come back from it.
    pub fn start_on_this_thread(&self) {
        let me = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(me), WRITER_NICE) {
            tracing::warn!(error = %e, "sqlite writer: cannot lower its CPU priority");
        }
        self.tid.store(me.as_raw_nonzero().get(), Ordering::Release);
        self.settle();
    }

    /// A write has waited too long: out of the background, if it was there.
    pub fn hurry(&self) {
        let mut state = self.lock();
        state.hurried_at = Some(Instant::now());
        if state.background {
            match set_class(self.tid.load(Ordering::Acquire), Class::Normal) {
                Ok(()) => {
                    state.background = false;
                    tracing::debug!("sqlite writer: behind, out of the background");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "sqlite writer: cannot leave the background")
                }
            }
        }
    }

    /// Called on the writer thread when its queue is empty: back to the
    /// background unless a caller hurried it within `hurried_for`.
    pub fn settle(&self) {
        if !self.background_allowed {
            return;
        }
        let mut state = self.lock();
        let recently = state
            .hurried_at
            .is_some_and(|t| t.elapsed() < self.policy.hurried_for);
        if state.background || recently {
            return;
        }
        match set_class(self.tid.load(Ordering::Acquire), Class::Background) {
            Ok(()) => state.background = true,
            Err(e) => tracing::warn!(error = %e, "sqlite writer: cannot enter the background"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug, Clone, Copy)]
enum Class {
    Normal,
    Background,
}

/// Sets thread `tid`'s scheduling class (0: the calling thread); the nice value
/// is kept.
fn set_class(tid: i32, class: Class) -> std::io::Result<()> {
    let policy = match class {
        Class::Normal => libc::SCHED_OTHER,
        Class::Background => libc::SCHED_IDLE,
    };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid `sched_param` that outlives the call, which only
    // reads it; a bad `tid` is an error return, not undefined behaviour.
    let rc = unsafe { libc::sched_setscheduler(tid, policy, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether a thread of this process that enters `SCHED_IDLE` at nice 10 can
/// leave it again: tried once a process, on a throwaway thread, which is left
/// as it ends.
fn can_leave_background() -> bool {
    static PROBED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PROBED.get_or_init(probe_background)
}

fn probe_background() -> bool {
    std::thread::Builder::new()
        .name("sqlite-probe".into())
        .spawn(|| {
            let me = rustix::thread::gettid();
            rustix::process::setpriority_process(Some(me), WRITER_NICE).is_ok()
                && set_class(0, Class::Background).is_ok()
                && set_class(0, Class::Normal).is_ok()
        })
        .ok()
        .and_then(|probe| probe.join().ok())
        .unwrap_or(false)
}

/// The scheduling policy of thread `tid` of this process (`libc::SCHED_*`; 0:
/// the calling thread).
pub fn class_of(tid: i32) -> std::io::Result<i32> {
    // SAFETY: takes and returns integers only.
    let rc = unsafe { libc::sched_getscheduler(tid) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a thread standing in for the writer: into the background at start,
    /// out when hurried, back only once `hurried_for` has passed.
    #[test]
    fn hurried_out_of_the_background_and_back_after_a_while() {
        let cpu = std::sync::Arc::new(WriterCpu::new(CpuPolicy {
            hurry_after: Duration::from_millis(10),
            // Long enough that a busy test machine cannot stall the checks
            // after `hurry` past it.
            hurried_for: Duration::from_secs(2),
        }));
        let writer = std::sync::Arc::clone(&cpu);
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let (told, heard) = std::sync::mpsc::channel::<i32>();
        let thread = std::thread::spawn(move || {
            writer.start_on_this_thread();
            // Each message: settle, then report the class.
            while wait.recv().is_ok() {
                writer.settle();
                told.send(class_of(0).expect("class")).expect("send");
            }
        });
        let settle = || {
            go.send(()).expect("go");
            heard.recv().expect("class")
        };
        let background = if cpu.background_allowed() {
            libc::SCHED_IDLE
        } else {
            eprintln!("this process cannot leave SCHED_IDLE: the writer stays at nice 10");
            libc::SCHED_OTHER
        };
        assert_eq!(settle(), background, "at rest");
        cpu.hurry();
        assert_eq!(
            class_of(cpu.tid()).expect("class"),
            libc::SCHED_OTHER,
            "hurried"
        );
        let pid = rustix::process::Pid::from_raw(cpu.tid()).expect("tid");
        assert_eq!(
            rustix::process::getpriority_process(Some(pid)).expect("nice"),
            WRITER_NICE,
            "the nice value is kept"
        );
        assert_eq!(settle(), libc::SCHED_OTHER, "hurried moments ago");
        std::thread::sleep(Duration::from_millis(2_100));
        assert_eq!(settle(), background, "after hurried_for");
        drop(go);
        thread.join().expect("writer");
    }
}
