//! The tamper-evident audit chain: each event's digest covers its own fields
//! and the previous event's digest, so changing, removing or reordering any
//! stored event breaks every digest after it, and verification names the
//! first event that no longer fits.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// `prev_digest` of the first event of the chain.
pub const GENESIS_DIGEST: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened, as recorded before it is chained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Token subject, or `anonymous` when no valid token was presented.
    pub actor: String,
    /// Role the caller acted in (empty when unauthenticated).
    pub role: String,
    /// Tenant concerned, when there is one; drives per-tenant export.
    pub tenant_id: Option<String>,
    /// Dotted verb, e.g. `inbox.ack`, `auth.denied`.
    pub action: String,
    /// What was acted on: an id or an RPC path, never personal data.
    pub target: String,
    /// `ok`, or the denial / failure class.
    pub outcome: String,
    /// Trace id of the call, so an auditor can jump to its trace.
    pub trace_id: String,
    /// Extra non-personal context (JSON or short text).
    pub detail: String,
}

/// A chained, stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Unique id (UUID).
    pub id: String,
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// The recorded facts.
    pub entry: AuditEntry,
    /// Digest of the event before it ([`GENESIS_DIGEST`] for the first).
    pub prev_digest: String,
    /// Digest of this event, see [`digest`].
    pub digest: String,
}

impl AuditEvent {
    /// Chains `entry` after an event whose seq and digest are `prev`.
    pub fn chain(id: String, at: DateTime<Utc>, entry: AuditEntry, prev: Option<(i64, &str)>) -> Self {
        let (seq, prev_digest) = match prev {
            Some((s, d)) => (s + 1, d.to_owned()),
            None => (1, GENESIS_DIGEST.to_owned()),
        };
        let digest = digest(&id, seq, at, &entry, &prev_digest);
        Self {
            id,
            seq,
            at,
            entry,
            prev_digest,
            digest,
        }
    }
}

/// SHA-256 over every field with length prefixes (so no two different events
/// serialise alike), hex-encoded.
pub fn digest(id: &str, seq: i64, at: DateTime<Utc>, e: &AuditEntry, prev_digest: &str) -> String {
    let mut h = Sha256::new();
    let at_us = at.timestamp_micros().to_string();
    let seq = seq.to_string();
    let tenant = e.tenant_id.as_deref().unwrap_or("");
    for part in [
        prev_digest,
        id,
        seq.as_str(),
        at_us.as_str(),
        &e.actor,
        &e.role,
        tenant,
        if e.tenant_id.is_some() { "t" } else { "-" },
        &e.action,
        &e.target,
        &e.outcome,
        &e.trace_id,
        &e.detail,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Walks a chain in seq order and keeps track of the first event that does
/// not fit; feed it in batches so the whole log never sits in memory.
#[derive(Debug)]
pub struct ChainVerifier {
    prev: Option<(i64, String)>,
    checked: u64,
    first_bad: Option<String>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainVerifier {
    /// A verifier at the start of the chain.
    pub fn new() -> Self {
        Self {
            prev: None,
            checked: 0,
            first_bad: None,
        }
    }

    /// Checks the next event. Returns false once a bad event was found.
    pub fn feed(&mut self, ev: &AuditEvent) -> bool {
        if self.first_bad.is_some() {
            return false;
        }
        self.checked += 1;
        let (want_seq, want_prev) = match &self.prev {
            Some((s, d)) => (s + 1, d.as_str()),
            None => (1, GENESIS_DIGEST),
        };
        let recomputed = digest(&ev.id, ev.seq, ev.at, &ev.entry, &ev.prev_digest);
        if ev.seq != want_seq || ev.prev_digest != want_prev || ev.digest != recomputed {
            self.first_bad = Some(ev.id.clone());
            return false;
        }
        self.prev = Some((ev.seq, ev.digest.clone()));
        true
    }

    /// Seq of the last event accepted, to resume reading after it.
    pub fn last_seq(&self) -> i64 {
        self.prev.as_ref().map_or(0, |(s, _)| *s)
    }

    /// (events checked, id of the first bad event).
    pub fn finish(self) -> (u64, Option<String>) {
        (self.checked, self.first_bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn entry(action: &str) -> AuditEntry {
        AuditEntry {
            actor: "svc".into(),
            role: "platform".into(),
            tenant_id: Some("t1".into()),
            action: action.into(),
            target: "x".into(),
            outcome: "ok".into(),
            trace_id: "abc".into(),
            detail: String::new(),
        }
    }

    fn chain(n: usize) -> Vec<AuditEvent> {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut out: Vec<AuditEvent> = Vec::new();
        for i in 0..n {
            let prev = out.last().map(|e| (e.seq, e.digest.as_str()));
            out.push(AuditEvent::chain(
                format!("e{i}"),
                at,
                entry(&format!("a{i}")),
                prev,
            ));
        }
        out
    }

    fn verify(events: &[AuditEvent]) -> (u64, Option<String>) {
        let mut v = ChainVerifier::new();
        for e in events {
            if !v.feed(e) {
                break;
            }
        }
        v.finish()
    }

    #[test]
    fn intact_chain_verifies() {
        let c = chain(5);
        assert_eq!(c[0].prev_digest, GENESIS_DIGEST);
        assert_eq!(verify(&c), (5, None));
    }

    #[test]
    fn altered_field_is_named() {
        let mut c = chain(5);
        c[2].entry.outcome = "denied".into();
        assert_eq!(verify(&c).1.as_deref(), Some("e2"));
    }

    #[test]
    fn recomputed_digest_breaks_the_next_link() {
        let mut c = chain(5);
        c[2].entry.tenant_id = None;
        c[2].digest = digest(&c[2].id, c[2].seq, c[2].at, &c[2].entry, &c[2].prev_digest);
        assert_eq!(verify(&c).1.as_deref(), Some("e3"));
    }

    #[test]
    fn removed_event_is_detected() {
        let mut c = chain(5);
        c.remove(1);
        assert_eq!(verify(&c).1.as_deref(), Some("e2"));
    }

    #[test]
    fn none_and_empty_tenant_differ() {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut a = entry("x");
        a.tenant_id = None;
        let mut b = entry("x");
        b.tenant_id = Some(String::new());
        assert_ne!(
            digest("i", 1, at, &a, GENESIS_DIGEST),
            digest("i", 1, at, &b, GENESIS_DIGEST)
        );
    }
}
