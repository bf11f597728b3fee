//! Scheduling priority of proctor's own background threads. Decisions are
//! the latency-sensitive path: a request thread that wakes (a check, a
//! health probe) should run almost at once, while bulk work (name
//! matching, SQLite's group-commit writer, the blocking threads that run
//! database rounds) is about throughput and can wait a scheduler slice
//! when the cores are full.

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

/// Lowers the calling thread's priority once (see [`lower_this_thread`]):
/// for pooled threads that take bulk work again and again.
pub fn lower_this_thread_once(what: &str) {
    thread_local! {
        static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    LOWERED.with(|l| {
        if !l.get() {
            lower_this_thread(what);
            l.set(true);
        }
    });
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    fn nice() -> libc::c_int {
        // SAFETY: getpriority reads the calling thread's niceness only.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    /// The niceness a new thread has after `lower` (twice), and checks the
    /// spawning thread keeps its own.
    fn lowered_by(lower: fn(&str)) -> (libc::c_int, libc::c_int) {
        let before = nice();
        let after = std::thread::spawn(move || {
            lower("test");
            let first = nice();
            lower("test");
            (first, nice())
        })
        .join()
        .unwrap();
        assert_eq!(nice(), before, "the spawning thread keeps its priority");
        after
    }

    #[test]
    fn lowers_only_the_calling_thread_and_it_stays_lowered() {
        let lowered = super::BULK_NICENESS.max(nice());
        assert_eq!(lowered_by(super::lower_this_thread), (lowered, lowered));
        assert_eq!(lowered_by(super::lower_this_thread_once), (lowered, lowered));
    }
}
