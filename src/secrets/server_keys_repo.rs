//! The key ids the database was written with (`server_keys`), checked and
//! recorded when a replica starts, so replicas with other keys refuse to
//! start instead of corrupting each other's work. The rule is pure
//! ([`crate::secrets::server_keys`]); this is its storage.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::db::schema::server_keys::dsl as k;
use crate::db::{DbConnection, to_us};
use crate::error::{Error, Result};
use crate::secrets::server_keys as rule;
use crate::secrets::server_keys::{Change, KeyIds, KeyState, Purpose, Recorded};

/// Advisory lock key that lets one replica at a time judge and record keys
/// on PostgreSQL, so two first starts cannot both record theirs.
const KEYS_LOCK_KEY: i64 = 0x7072_6f63_0003;

/// What the database recorded, per purpose.
pub fn recorded(c: &mut DbConnection) -> Result<BTreeMap<Purpose, Vec<Recorded>>> {
    let rows: Vec<(String, String, String)> = k::server_keys
        .select((k::purpose, k::key_id, k::state))
        .order((k::purpose, k::recorded_at_us, k::key_id))
        .load(c)?;
    let mut out: BTreeMap<Purpose, Vec<Recorded>> = BTreeMap::new();
    for (purpose, key_id, state) in rows {
        let (Some(p), Some(state)) = (Purpose::parse(&purpose), KeyState::parse(&state)) else {
            return Err(Error::Unexpected(format!(
                "server_keys holds an unknown purpose or state: {purpose}/{state}"
            )));
        };
        out.entry(p).or_default().push(Recorded { key_id, state });
    }
    Ok(out)
}

fn lock(c: &mut DbConnection) -> Result<()> {
    if let DbConnection::Pg(pg) = c {
        diesel::sql_query(format!("SELECT pg_advisory_xact_lock({KEYS_LOCK_KEY})")).execute(pg)?;
    }
    Ok(())
}

fn write(c: &mut DbConnection, now: DateTime<Utc>, changes: &[(Purpose, Change)]) -> Result<()> {
    // Retirements first: at most one current key per purpose at any moment.
    let (retire, rest): (Vec<_>, Vec<_>) = changes.iter().partition(|(_, ch)| {
        matches!(
            ch,
            Change::Set {
                state: KeyState::Retired,
                ..
            }
        )
    });
    for (p, ch) in retire.into_iter().chain(rest) {
        match ch {
            Change::Insert { key_id, state } => {
                diesel::insert_into(k::server_keys)
                    .values((
                        k::purpose.eq(p.as_str()),
                        k::key_id.eq(key_id),
                        k::state.eq(state.as_str()),
                        k::recorded_at_us.eq(to_us(now)),
                    ))
                    .execute(c)?;
            }
            Change::Set { key_id, state } => {
                diesel::update(k::server_keys.filter(k::purpose.eq(p.as_str()).and(k::key_id.eq(key_id))))
                    .set(k::state.eq(state.as_str()))
                    .execute(c)?;
            }
        }
    }
    Ok(())
}

/// Judges the configured key ids against the recorded ones, in the
/// caller's write transaction, and records what a first start or a
/// rotation step adds. A mismatch is FAILED_PRECONDITION naming each key
/// that differs, with nothing written.
pub fn verify_and_record(c: &mut DbConnection, now: DateTime<Utc>, ids: &KeyIds) -> Result<()> {
    lock(c)?;
    let changes = rule::judge(&recorded(c)?, ids).map_err(Error::WrongState)?;
    if !changes.is_empty() {
        tracing::info!(changes = changes.len(), "recorded server key ids");
    }
    write(c, now, &changes)
}

/// Makes the given signing keys current (the explicit rotation of a
/// signing key); returns the purposes that changed.
pub fn adopt(c: &mut DbConnection, now: DateTime<Utc>, keys: &[(Purpose, String)]) -> Result<Vec<Purpose>> {
    lock(c)?;
    let rec = recorded(c)?;
    let none = Vec::new();
    let mut changes = Vec::new();
    for (p, id) in keys {
        if !matches!(p, Purpose::ReceiptSigning | Purpose::AuditSigning) {
            return Err(Error::Unexpected(format!("{} keys are not adopted", p.as_str())));
        }
        changes.extend(
            rule::adopt(rec.get(p).unwrap_or(&none), id)
                .into_iter()
                .map(|c| (*p, c)),
        );
    }
    write(c, now, &changes)?;
    let mut changed: Vec<Purpose> = changes.iter().map(|(p, _)| *p).collect();
    changed.dedup();
    Ok(changed)
}
