//! Which server keys a replica may start with, judged against the key ids
//! the database recorded. Replicas that disagree on a key corrupt each
//! other's work silently (a ref one computes, the other never matches; a
//! row one seals, the other cannot open), so the first server records the
//! id of every key it runs with and later ones must agree:
//!
//! - The identifier hash key and the signing keys are single keys: the
//!   configured one must be the database's current one. A signing key
//!   changes only through `proctor keys adopt`; the hash key never does.
//! - The identifier encryption ring rotates (docs/OPERATIONS.md, "Key
//!   rotation"): it must hold the database's current key (the newest rows
//!   are sealed under it), and its first key must be one the database has
//!   already seen in a ring, so a new key reaches every replica second
//!   before any replica seals with it. A ring whose first key was only seen
//!   before (staged) makes that key current; a ring that still seals under
//!   an older key changes nothing, so a rolling restart cannot undo a
//!   rotation.
//!
//! Key ids are fingerprints (`secrets::key_id`), never the keys.

/// What a server key is for; one row set per purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Purpose {
    /// The AEAD ring that seals identifiers at rest.
    IdentifierEncryption,
    /// The HMAC key behind `subject_ref`.
    IdentifierHash,
    /// Signs receipts and deletion certificates.
    ReceiptSigning,
    /// Signs audit checkpoints.
    AuditSigning,
}

impl Purpose {
    /// Every purpose, in the order messages list them.
    pub const ALL: [Purpose; 4] = [
        Purpose::IdentifierEncryption,
        Purpose::IdentifierHash,
        Purpose::ReceiptSigning,
        Purpose::AuditSigning,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IdentifierEncryption => "identifier_encryption",
            Self::IdentifierHash => "identifier_hash",
            Self::ReceiptSigning => "receipt_signing",
            Self::AuditSigning => "audit_signing",
        }
    }

    /// The flag that configures it, so a refusal names what to change.
    pub fn setting(self) -> &'static str {
        match self {
            Self::IdentifierEncryption => "--identifier-encryption-key-file",
            Self::IdentifierHash => "--identifier-hash-key-file",
            Self::ReceiptSigning => "--receipt-signing-key-file",
            Self::AuditSigning => "--audit-signing-key-file",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// Where a recorded key stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// The key in use: the one every replica must have.
    Current,
    /// Was current once, superseded since.
    Retired,
    /// Seen in a ring behind its first key, never used to seal.
    Staged,
}

impl KeyState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Retired => "retired",
            Self::Staged => "staged",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Current, Self::Retired, Self::Staged]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// One recorded key id of a purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Its fingerprint.
    pub key_id: String,
    /// Where it stands.
    pub state: KeyState,
}

/// What to write so the records reflect the accepted keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Record a key not seen before.
    Insert {
        /// Its fingerprint.
        key_id: String,
        /// Its state.
        state: KeyState,
    },
    /// Move a recorded key to another state.
    Set {
        /// Its fingerprint.
        key_id: String,
        /// The new state.
        state: KeyState,
    },
}

fn current(recorded: &[Recorded]) -> Option<&str> {
    recorded
        .iter()
        .find(|r| r.state == KeyState::Current)
        .map(|r| r.key_id.as_str())
}

fn state_of(recorded: &[Recorded], id: &str) -> Option<KeyState> {
    recorded.iter().find(|r| r.key_id == id).map(|r| r.state)
}

/// Judges the configured encryption `ring` (key ids, the first seals)
/// against what is recorded; the changes to record, or why the replica
/// must not start.
pub fn check_ring(recorded: &[Recorded], ring: &[String]) -> Result<Vec<Change>, String> {
    let what = Purpose::IdentifierEncryption.setting();
    let Some(first) = ring.first() else {
        return Err(format!("{what}: the key ring is empty"));
    };
    let mut changes = Vec::new();
    match (current(recorded), state_of(recorded, first)) {
        (None, _) if recorded.is_empty() => changes.push(Change::Insert {
            key_id: first.clone(),
            state: KeyState::Current,
        }),
        (Some(cur), _) if !ring.iter().any(|k| k == cur) => {
            return Err(format!(
                "{what}: the ring lacks key {cur}, which this database's newest rows are sealed \
                 under (this replica would seal under {first} and fail to open them). Configure \
                 the ring the other replicas use; keep every key that sealed a row until \
                 `proctor keys status` says it can go"
            ));
        }
        (_, None) => {
            return Err(format!(
                "{what}: the ring's first key {first} is new to this database. A new key goes \
                 second in every replica's ring first, and first only once all have it \
                 (docs/OPERATIONS.md, \"Key rotation\"); if this replica should not have a new \
                 key, configure the ring the other replicas use"
            ));
        }
        (cur, Some(KeyState::Staged)) => {
            if let Some(cur) = cur {
                changes.push(Change::Set {
                    key_id: cur.to_owned(),
                    state: KeyState::Retired,
                });
            }
            changes.push(Change::Set {
                key_id: first.clone(),
                state: KeyState::Current,
            });
        }
        (_, Some(_)) => {}
    }
    for (i, k) in ring.iter().enumerate().skip(1) {
        if state_of(recorded, k).is_none() && !ring[..i].contains(k) {
            changes.push(Change::Insert {
                key_id: k.clone(),
                state: KeyState::Staged,
            });
        }
    }
    Ok(changes)
}

/// Judges a single key (`purpose` other than the ring): the configured
/// `key_id` must be the current one once any is recorded.
pub fn check_single(purpose: Purpose, recorded: &[Recorded], key_id: &str) -> Result<Vec<Change>, String> {
    match current(recorded) {
        None => Ok(vec![Change::Insert {
            key_id: key_id.to_owned(),
            state: KeyState::Current,
        }]),
        Some(cur) if cur == key_id => Ok(Vec::new()),
        Some(cur) => {
            let how = if purpose == Purpose::IdentifierHash {
                "configure the same key on every replica: this key never rotates, since every \
                 subject_ref depends on it"
                    .to_owned()
            } else {
                "configure the key the other replicas use, or, to rotate it, run `proctor keys \
                 adopt` with the new key before rolling it out"
                    .to_owned()
            };
            Err(format!(
                "{}: key {key_id} is not the one this database was written with ({cur}): {how}",
                purpose.setting()
            ))
        }
    }
}

/// What makes `key_id` the current signing key of its purpose (the
/// operator's explicit rotation, `proctor keys adopt`).
pub fn adopt(recorded: &[Recorded], key_id: &str) -> Vec<Change> {
    let mut changes = Vec::new();
    if current(recorded) == Some(key_id) {
        return changes;
    }
    if let Some(cur) = current(recorded) {
        changes.push(Change::Set {
            key_id: cur.to_owned(),
            state: KeyState::Retired,
        });
    }
    changes.push(match state_of(recorded, key_id) {
        Some(_) => Change::Set {
            key_id: key_id.to_owned(),
            state: KeyState::Current,
        },
        None => Change::Insert {
            key_id: key_id.to_owned(),
            state: KeyState::Current,
        },
    });
    changes
}

/// `recorded` with `changes` applied, as the store would hold it after.
pub fn apply(recorded: &[Recorded], changes: &[Change]) -> Vec<Recorded> {
    let mut out = recorded.to_vec();
    for c in changes {
        match c {
            Change::Insert { key_id, state } => out.push(Recorded {
                key_id: key_id.clone(),
                state: *state,
            }),
            Change::Set { key_id, state } => {
                if let Some(r) = out.iter_mut().find(|r| &r.key_id == key_id) {
                    r.state = *state;
                }
            }
        }
    }
    out
}

/// The ids of the keys a replica is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIds {
    /// The encryption ring's ids, the sealing key first.
    pub ring: Vec<String>,
    /// The identifier hash key's id.
    pub hash: String,
    /// The receipt signing key's id.
    pub receipt: String,
    /// The audit signing key's id.
    pub audit: String,
}

/// Judges every configured key against `recorded` (per purpose): the
/// changes to record, or every refusal, one per line, so an operator fixes
/// them all at once.
pub fn judge(
    recorded: &std::collections::BTreeMap<Purpose, Vec<Recorded>>,
    ids: &KeyIds,
) -> Result<Vec<(Purpose, Change)>, String> {
    let none = Vec::new();
    let mut changes = Vec::new();
    let mut refusals = Vec::new();
    for p in Purpose::ALL {
        let rec = recorded.get(&p).unwrap_or(&none);
        let verdict = match p {
            Purpose::IdentifierEncryption => check_ring(rec, &ids.ring),
            Purpose::IdentifierHash => check_single(p, rec, &ids.hash),
            Purpose::ReceiptSigning => check_single(p, rec, &ids.receipt),
            Purpose::AuditSigning => check_single(p, rec, &ids.audit),
        };
        match verdict {
            Ok(c) => changes.extend(c.into_iter().map(|c| (p, c))),
            Err(e) => refusals.push(e),
        }
    }
    if refusals.is_empty() {
        Ok(changes)
    } else {
        Err(format!(
            "this replica's keys do not match the ones the database was written with:\n  {}",
            refusals.join("\n  ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    /// Starts a replica with `ids` against `db`, recording what it accepts.
    fn start(db: &mut Vec<Recorded>, ids: &[&str]) -> Result<(), String> {
        let changes = check_ring(db, &ring(ids))?;
        *db = apply(db, &changes);
        Ok(())
    }

    fn current_of(db: &[Recorded]) -> &str {
        current(db).unwrap()
    }

    #[test]
    fn the_rotation_runbook_passes_and_a_restart_cannot_undo_it() {
        let mut db = Vec::new();
        start(&mut db, &["old"]).unwrap();
        start(&mut db, &["old"]).unwrap();
        // Step 1: the new key second.
        start(&mut db, &["old", "new"]).unwrap();
        assert_eq!(current_of(&db), "old");
        start(&mut db, &["old"]).unwrap(); // a replica not rolled yet
        // Step 2: the new key first.
        start(&mut db, &["new", "old"]).unwrap();
        assert_eq!(current_of(&db), "new");
        // A pod of the step-1 set restarting mid-roll changes nothing.
        start(&mut db, &["old", "new"]).unwrap();
        assert_eq!(current_of(&db), "new");
        // Step 4: the old key leaves.
        start(&mut db, &["new"]).unwrap();
        assert_eq!(current_of(&db), "new");
        // Going back to the old key alone would not open the new rows.
        let err = start(&mut db, &["old"]).unwrap_err();
        assert!(err.contains("lacks key new"), "{err}");
    }

    #[test]
    fn a_stranger_key_or_a_skipped_step_is_refused() {
        let mut db = Vec::new();
        start(&mut db, &["a"]).unwrap();
        let err = start(&mut db, &["b"]).unwrap_err();
        assert!(err.contains("--identifier-encryption-key-file"), "{err}");
        assert!(err.contains("lacks key a"), "{err}");
        // Step 1 skipped: the new key first although no ring had it.
        let err = start(&mut db, &["b", "a"]).unwrap_err();
        assert!(err.contains("first key b is new"), "{err}");
        assert_eq!(db.len(), 1, "refusals record nothing");
        assert!(check_ring(&db, &[]).is_err());
    }

    #[test]
    fn single_keys_must_match_and_only_adopt_moves_them() {
        let first = check_single(Purpose::IdentifierHash, &[], "h1").unwrap();
        let db = apply(&[], &first);
        assert!(
            check_single(Purpose::IdentifierHash, &db, "h1")
                .unwrap()
                .is_empty()
        );
        let err = check_single(Purpose::IdentifierHash, &db, "h2").unwrap_err();
        assert!(err.starts_with("--identifier-hash-key-file: key h2"), "{err}");
        assert!(err.contains("(h1)") && err.contains("never rotates"), "{err}");

        let db = apply(&[], &check_single(Purpose::ReceiptSigning, &[], "r1").unwrap());
        let err = check_single(Purpose::ReceiptSigning, &db, "r2").unwrap_err();
        assert!(err.contains("keys adopt"), "{err}");
        let db = apply(&db, &adopt(&db, "r2"));
        assert!(
            check_single(Purpose::ReceiptSigning, &db, "r2")
                .unwrap()
                .is_empty()
        );
        assert!(
            check_single(Purpose::ReceiptSigning, &db, "r1").is_err(),
            "retired"
        );
        let db = apply(&db, &adopt(&db, "r1"));
        assert_eq!(current_of(&db), "r1");
        assert_eq!(db.len(), 2);
        assert!(adopt(&db, "r1").is_empty());
    }

    #[test]
    fn judge_lists_every_refusal_and_records_a_first_start() {
        let ids = KeyIds {
            ring: ring(&["e1", "e2"]),
            hash: "h1".into(),
            receipt: "r1".into(),
            audit: "a1".into(),
        };
        let first = judge(&Default::default(), &ids).unwrap();
        assert_eq!(first.len(), 5, "{first:?}");
        let mut db = std::collections::BTreeMap::new();
        for (p, c) in &first {
            let rec: &mut Vec<Recorded> = db.entry(*p).or_default();
            *rec = apply(rec, std::slice::from_ref(c));
        }
        assert!(judge(&db, &ids).unwrap().is_empty());
        let other = KeyIds {
            hash: "h2".into(),
            audit: "a2".into(),
            ..ids
        };
        let err = judge(&db, &other).unwrap_err();
        assert!(err.contains("--identifier-hash-key-file") && err.contains("--audit-signing-key-file"));
        assert!(!err.contains("--receipt-signing-key-file"), "{err}");
    }

    #[test]
    fn names_round_trip() {
        for p in Purpose::ALL {
            assert_eq!(Purpose::parse(p.as_str()), Some(p));
        }
        for s in [KeyState::Current, KeyState::Retired, KeyState::Staged] {
            assert_eq!(KeyState::parse(s.as_str()), Some(s));
        }
        assert_eq!(Purpose::parse("x"), None);
    }
}
