//! Audit events and how each becomes a leaf of the log's Merkle tree: the
//! leaf hashes every recorded fact of the event, so changing a stored event
//! no longer matches its leaf, and the tree (see [`super::tree`]) makes a
//! removed, reordered or truncated event show against any checkpoint signed
//! before.

use chrono::{DateTime, Utc};

/// What happened, as a command records it.
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
    /// Order of writing (unique; gaps and commit order not promised).
    pub seq: i64,
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// The recorded facts.
    pub entry: AuditEntry,
    /// The previous event's digest in the hash chain of events written
    /// before the tree; empty for events written since.
    pub prev_digest: String,
    /// Hex of this event's leaf hash (chain digest for older events).
    pub digest: String,
    /// Its leaf in the log's Merkle tree, once the sequencer placed it.
    pub leaf_index: Option<i64>,
}

/// Appends `parts` to `out`, each with its length before it, so no two
/// different field lists encode alike.
fn length_prefixed<'a>(out: &mut Vec<u8>, parts: impl IntoIterator<Item = &'a str>) {
    for part in parts {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
}

/// The recorded facts of an entry, in their fixed order (the tenant twice:
/// its value, and whether there is one, so "none" and "empty" differ).
fn facts(e: &AuditEntry) -> [&str; 9] {
    [
        &e.actor,
        &e.role,
        e.tenant_id.as_deref().unwrap_or(""),
        if e.tenant_id.is_some() { "t" } else { "-" },
        &e.action,
        &e.target,
        &e.outcome,
        &e.trace_id,
        &e.detail,
    ]
}

/// The bytes an event's leaf in the Merkle tree hashes: every recorded fact
/// (not its position, which the tree gives), length-prefixed so no two
/// different events encode alike, after a version tag so a later encoding
/// can never be confused with this one.
pub fn leaf_data(id: &str, at: DateTime<Utc>, e: &AuditEntry) -> Vec<u8> {
    let at_us = at.timestamp_micros().to_string();
    let mut out = Vec::with_capacity(256);
    length_prefixed(&mut out, ["proctor.audit.leaf.v1", id, at_us.as_str()]);
    length_prefixed(&mut out, facts(e));
    out
}

impl AuditEvent {
    /// This event's leaf bytes (see [`leaf_data`]).
    pub fn leaf_data(&self) -> Vec<u8> {
        leaf_data(&self.id, self.at, &self.entry)
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
            trace_id: String::new(),
            detail: String::new(),
        }
    }

    #[test]
    fn leaf_data_tells_every_field_apart() {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let base = entry("a.b");
        let one = leaf_data("id", at, &base);
        assert_eq!(one, leaf_data("id", at, &base), "stable");
        let mut moved = base.clone();
        moved.actor = "sv".into();
        moved.role = "cplatform".into();
        assert_ne!(
            one,
            leaf_data("id", at, &moved),
            "length prefixes keep fields apart"
        );
        let empty = AuditEntry {
            tenant_id: Some(String::new()),
            ..base.clone()
        };
        let none = AuditEntry {
            tenant_id: None,
            ..base.clone()
        };
        assert_ne!(
            leaf_data("id", at, &empty),
            leaf_data("id", at, &none),
            "no tenant is not an empty one"
        );
        assert_ne!(one, leaf_data("id2", at, &base));
        assert_ne!(
            one,
            leaf_data("id", at + chrono::Duration::microseconds(1), &base)
        );
    }
}
