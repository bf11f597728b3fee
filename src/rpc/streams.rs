//! The cap on server streams a caller holds open at once
//! (`--max-streams-per-caller`): `Subscribe`, `WatchSubjectRequest`,
//! `GetExport`, `ExportAuditLog` and `BatchScreen` each hold a slot from
//! the call until the stream ends or the client goes away. Without it one
//! tenant could open thousands of idle streams and hold server memory and
//! tasks for all of them.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::Stream;
use tonic::Status;

use crate::auth::{Caller, Role};

/// Who a slot is counted for: a tenant token counts for its tenant (all
/// its users share the cap), any other token for its subject in its role.
pub fn caller_key(c: &Caller) -> String {
    match (c.role, &c.tenant_id) {
        (Role::Tenant, Some(t)) => format!("tenant:{t}"),
        (role, _) => format!("{role}:{}", c.sub),
    }
}

/// Open streams per caller on this replica.
#[derive(Debug)]
pub struct StreamSlots {
    max: usize,
    open: Mutex<HashMap<String, usize>>,
}

impl StreamSlots {
    /// At most `max` open streams per caller; 0 means no cap.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one of `who`'s slots, or RESOURCE_EXHAUSTED when all are held.
    pub fn open(self: &Arc<Self>, who: &Caller) -> Result<StreamSlot, Status> {
        let key = caller_key(who);
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(key.clone()).or_insert(0);
        if self.max > 0 && *n >= self.max {
            return Err(Status::resource_exhausted(format!(
                "this caller already holds {} open streams (--max-streams-per-caller); close one first",
                self.max
            )));
        }
        *n += 1;
        Ok(StreamSlot {
            slots: self.clone(),
            key,
        })
    }

    /// Streams `key` (see [`caller_key`]) holds open now.
    pub fn held(&self, key: &str) -> usize {
        let open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        open.get(key).copied().unwrap_or(0)
    }
}

/// One held slot, given back when dropped.
#[derive(Debug)]
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    key: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// A response stream boxed with the slot it holds: tonic drops the stream
/// when it ends or when the client resets or disconnects, and the slot
/// goes with it.
pub type Held<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Ties `slot` to `stream`'s lifetime.
pub fn hold<T, S>(slot: StreamSlot, stream: S) -> Held<T>
where
    S: Stream<Item = Result<T, Status>> + Send + 'static,
    T: 'static,
{
    Box::pin(Holding {
        inner: Box::pin(stream),
        _slot: slot,
    })
}

struct Holding<T> {
    inner: Held<T>,
    _slot: StreamSlot,
}

impl<T> Stream for Holding<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(role: Role, sub: &str, tenant: Option<&str>) -> Caller {
        Caller {
            sub: sub.into(),
            role,
            tenant_id: tenant.map(Into::into),
        }
    }

    #[test]
    fn a_tenants_users_share_its_slots() {
        let slots = StreamSlots::new(2);
        let a = slots.open(&who(Role::Tenant, "alice", Some("t1"))).unwrap();
        let _b = slots.open(&who(Role::Tenant, "bob", Some("t1"))).unwrap();
        let refused = slots.open(&who(Role::Tenant, "carol", Some("t1"))).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        // Another tenant and a system of the same name are other callers.
        let _c = slots.open(&who(Role::Tenant, "alice", Some("t2"))).unwrap();
        let _d = slots.open(&who(Role::Platform, "t1", None)).unwrap();
        drop(a);
        assert_eq!(slots.held("tenant:t1"), 1);
        let _e = slots.open(&who(Role::Tenant, "carol", Some("t1"))).unwrap();
    }

    #[test]
    fn the_same_subject_in_another_role_is_another_caller() {
        assert_ne!(
            caller_key(&who(Role::Compliance, "x", None)),
            caller_key(&who(Role::Sre, "x", None))
        );
    }

    #[test]
    fn zero_means_no_cap() {
        let slots = StreamSlots::new(0);
        let held: Vec<_> = (0..100)
            .map(|_| slots.open(&who(Role::Sre, "x", None)).unwrap())
            .collect();
        assert_eq!(slots.held("sre:x"), 100);
        drop(held);
        assert_eq!(slots.held("sre:x"), 0);
    }

    #[tokio::test]
    async fn the_slot_goes_with_the_stream() {
        use futures::StreamExt;
        let slots = StreamSlots::new(1);
        let c = who(Role::Sre, "x", None);
        let mut s = hold(
            slots.open(&c).unwrap(),
            futures::stream::iter([Ok::<_, Status>(1)]),
        );
        assert!(slots.open(&c).is_err());
        assert_eq!(s.next().await.unwrap().unwrap(), 1);
        drop(s);
        assert!(slots.open(&c).is_ok());
    }
}
