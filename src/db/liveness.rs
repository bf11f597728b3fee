//! Which pooled connections are trusted without a ping.
//!
//! r2d2 pings every connection it hands out (`SELECT 1`, one more round
//! trip per command: a tenth of a write's). A connection used a moment ago
//! is as good as a ping, so only one idle longer than [`TRUSTED_FOR`] is
//! pinged at checkout (connection pools such as HikariCP skip validation
//! the same way). What that leaves, a connection that died within the
//! window, is found by the command it fails: a lost connection is marked
//! on the thread that used it ([`lost`]) and the pool drops it at checkin
//! ([`take_lost`]) instead of handing it out again.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How long after its last use a connection is handed out unpinged.
pub const TRUSTED_FOR: Duration = Duration::from_millis(500);

/// When a pooled connection was last used by a command that did not lose
/// it: kept in the connection's r2d2 extensions.
#[derive(Debug, Clone, Copy)]
pub struct LastUsed(pub Instant);

impl LastUsed {
    /// Whether the connection is still trusted without a ping.
    pub fn trusted(self) -> bool {
        self.0.elapsed() < TRUSTED_FOR
    }
}

thread_local! {
    /// Whether the connection used on this thread was lost since the mark
    /// was last taken: a command runs on one blocking thread from checkout
    /// to checkin, so the mark and the checkin meet on that thread.
    static LOST: Cell<bool> = const { Cell::new(false) };
}

/// Marks the connection in use on this thread as lost (its socket closed,
/// a command could not be sent), so it is not pooled again.
pub fn lost() {
    LOST.with(|l| l.set(true));
}

/// Whether the connection in use on this thread was lost, keeping the
/// mark for the checkin.
pub fn is_lost() -> bool {
    LOST.with(Cell::get)
}

/// Whether the connection in use on this thread was lost, clearing the
/// mark: asked at checkin, and before a checkout so an earlier mark on this
/// thread cannot condemn the next connection.
pub fn take_lost() -> bool {
    LOST.with(|l| l.replace(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_is_taken_once_and_stays_on_its_thread() {
        assert!(!take_lost());
        lost();
        std::thread::spawn(|| assert!(!take_lost(), "another thread's mark"))
            .join()
            .unwrap();
        assert!(take_lost());
        assert!(!take_lost(), "taken once");
    }

    #[test]
    fn a_connection_is_trusted_only_just_after_its_use() {
        assert!(LastUsed(Instant::now()).trusted());
        let long_ago = Instant::now()
            .checked_sub(TRUSTED_FOR * 2)
            .expect("the monotonic clock has run for a second");
        assert!(!LastUsed(long_ago).trusted());
    }
}
