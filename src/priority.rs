//! Scheduling priority of proctor's own background threads. Decisions are
//! the latency-sensitive path: a request thread that wakes (a check, a
//! health probe) should run almost at once, while bulk work (name
//! matching, SQLite's group-commit writer) is about throughput and can
//! wait a scheduler slice when the cores are full.

/// Niceness of threads doing bulk work: the scheduler then favours a
/// request thread that wakes over them, while they still get every core
/// nothing else wants.
#[cfg(target_os = "linux")]
const BULK_NICENESS: libc::c_int = 10;

/// Lowers the calling thread's scheduling priority to that of bulk work
/// (Linux keeps niceness per thread); `what` names the thread in the debug
/// log if the system refuses. Elsewhere the thread keeps normal priority.
pub fn lower_this_thread(what: &str) {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only reads its arguments; gettid cannot fail.
    unsafe {
        let tid = libc::gettid();
        if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, BULK_NICENESS) != 0 {
            tracing::debug!(thread = what, "could not lower the thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = what;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn lowers_only_the_calling_thread() {
        // SAFETY: getpriority reads the calling thread's niceness only.
        let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        let before = nice();
        let lowered = std::thread::spawn(move || {
            super::lower_this_thread("test");
            nice()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, super::BULK_NICENESS.max(before));
        assert_eq!(nice(), before, "the spawning thread keeps its priority");
    }
}
