//! Targeted wake-ups for the streams that follow what writes change.
//!
//! A stream (an inbox `Subscribe`, a `WatchSubjectRequest`) follows one
//! [`Topic`]. A store command marks the topics it changes with [`changed`]
//! while its transaction runs; once it commits, [`Store::write`] wakes the
//! followers of exactly those topics. One broadcast per write made every
//! idle stream re-query the database on every write anywhere: 2,000 idle
//! streams of one tenant took another tenant's write from 1 ms to 177 ms.
//!
//! Marks are kept per thread because a command runs on one blocking thread
//! from begin to commit, so no command signature has to carry them.
//! Writes on other replicas are not seen here; followers also poll.
//!
//! [`Store::write`]: crate::db::Store::write

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::watch;

use crate::inbox::model::Recipient;

/// What a stream follows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Envelopes enqueued for one recipient.
    Inbox(Recipient),
    /// New versions of one subject request, by id.
    SubjectRequest(String),
    /// Audit events written and waiting for their leaf (the sequencer).
    AuditLog,
    /// Something for the webhook delivery job: an envelope for any tenant
    /// (marked by every enqueue to a tenant's inbox), a webhook set or a
    /// delivery made due again, so a push goes out at once instead of at
    /// the job's next poll.
    Webhooks,
}

thread_local! {
    /// Topics the transaction running on this thread changed; `None`
    /// outside [`collect`], so writes outside a store command mark nothing.
    static PENDING: RefCell<Option<Vec<Topic>>> = const { RefCell::new(None) };
}

/// Marks `topic` as changed by the transaction running on this thread:
/// its followers wake when (and only if) the transaction commits.
pub fn changed(topic: Topic) {
    PENDING.with(|p| {
        if let Some(v) = p.borrow_mut().as_mut() {
            v.push(topic);
        }
    });
}

/// Runs `f` (one transaction) and returns what it marked with [`changed`].
pub(super) fn collect<T>(f: impl FnOnce() -> T) -> (T, Vec<Topic>) {
    PENDING.with(|p| *p.borrow_mut() = Some(Vec::new()));
    let out = f();
    let mut topics = PENDING.with(|p| p.borrow_mut().take()).unwrap_or_default();
    topics.dedup();
    (out, topics)
}

#[derive(Debug)]
struct Entry {
    tx: watch::Sender<()>,
    /// Times a write woke this topic's followers (for tests and gauges).
    signals: AtomicU64,
}

/// The followers of every topic on this replica, cheap to share.
#[derive(Debug, Default)]
pub struct Hub {
    topics: Mutex<HashMap<Topic, Weak<Entry>>>,
}

impl Hub {
    /// Starts following `topic`; the topic is forgotten when its last
    /// follower is dropped.
    pub fn follow(self: &Arc<Self>, topic: Topic) -> Follower {
        let mut map = self
            .topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = match map.get(&topic).and_then(Weak::upgrade) {
            Some(e) => e,
            None => {
                let e = Arc::new(Entry {
                    tx: watch::channel(()).0,
                    signals: AtomicU64::new(0),
                });
                map.insert(topic.clone(), Arc::downgrade(&e));
                e
            }
        };
        let rx = entry.tx.subscribe();
        Follower {
            hub: self.clone(),
            topic,
            entry,
            rx,
        }
    }

    /// Wakes the followers of `topics` (and nobody else).
    pub fn notify(&self, topics: &[Topic]) {
        if topics.is_empty() {
            return;
        }
        let map = self
            .topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for t in topics {
            if let Some(e) = map.get(t).and_then(Weak::upgrade) {
                e.signals.fetch_add(1, Ordering::Relaxed);
                e.tx.send_replace(());
            }
        }
    }

    /// How often writes woke the followers of `topic` since it gained its
    /// first follower (0 when it has none): what proves a write wakes
    /// only the streams it concerns.
    pub fn signals(&self, topic: &Topic) -> u64 {
        let map = self
            .topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(topic)
            .and_then(Weak::upgrade)
            .map_or(0, |e| e.signals.load(Ordering::Relaxed))
    }

    /// Topics with at least one follower.
    pub fn followed(&self) -> usize {
        let map = self
            .topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.values().filter(|w| w.strong_count() > 0).count()
    }
}

/// One stream's interest in a topic.
#[derive(Debug)]
pub struct Follower {
    hub: Arc<Hub>,
    topic: Topic,
    entry: Arc<Entry>,
    rx: watch::Receiver<()>,
}

impl Follower {
    /// Resolves once a write changed the topic since the last call (or
    /// since following began): a change made between two calls is never
    /// missed.
    pub async fn changed(&mut self) {
        // The sender lives in `entry`, which this follower holds, so the
        // channel never closes under it.
        let _ = self.rx.changed().await;
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let mut map = self
            .hub
            .topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Under the lock no other follower can be created, so a count of 1
        // means this is the last one.
        if Arc::strong_count(&self.entry) == 1
            && map
                .get(&self.topic)
                .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&self.entry)))
        {
            map.remove(&self.topic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(t: &str) -> Topic {
        Topic::Inbox(Recipient::Tenant(t.into()))
    }

    #[tokio::test]
    async fn a_write_wakes_only_its_topic() {
        let hub = Arc::new(Hub::default());
        let mut a = hub.follow(tenant("a"));
        let b = hub.follow(tenant("b"));
        hub.notify(&[tenant("a")]);
        tokio::time::timeout(std::time::Duration::from_secs(5), a.changed())
            .await
            .expect("a is woken");
        assert_eq!(hub.signals(&tenant("a")), 1);
        assert_eq!(hub.signals(&tenant("b")), 0);
        assert!(!b.rx.has_changed().unwrap());
    }

    #[test]
    fn topics_are_forgotten_with_their_last_follower() {
        let hub = Arc::new(Hub::default());
        let one = hub.follow(tenant("a"));
        let two = hub.follow(tenant("a"));
        assert_eq!(hub.followed(), 1);
        drop(one);
        assert_eq!(hub.followed(), 1);
        drop(two);
        assert_eq!(hub.followed(), 0);
        assert!(hub.topics.lock().unwrap().is_empty());
    }

    #[test]
    fn marks_count_only_inside_a_transaction() {
        changed(tenant("outside"));
        let ((), topics) = collect(|| {
            changed(tenant("a"));
            changed(tenant("a"));
            changed(Topic::SubjectRequest("r1".into()));
        });
        assert_eq!(topics, vec![tenant("a"), Topic::SubjectRequest("r1".into())]);
        let ((), none) = collect(|| {});
        assert!(none.is_empty());
    }
}
