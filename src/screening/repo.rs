//! Screening in the database: list versions with their entries and diffs,
//! registered parties, review cases and remembered clearances. Every
//! command here runs inside the caller's one write transaction, appends its
//! audit event and enqueues its inbox envelope there, so a case, its
//! clarification request and its audit record commit together or not at
//! all. A registered party's identity (name, date of birth, country,
//! aliases) is stored sealed (see [`PartyRow::seal`]) and opened in memory
//! only to re-screen it.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::audit::model::AuditEntry;
use crate::audit::repo as audit;
use crate::db::schema::screening_cases::dsl as c;
use crate::db::schema::screening_clearances::dsl as cl;
use crate::db::schema::screening_entries::dsl as en;
use crate::db::schema::screening_list_versions::dsl as lv;
use crate::db::schema::screening_parties::dsl as pa;
use crate::db::{DbConnection, chain_lock, from_us, to_us};
use crate::error::{Error, Result};
use crate::inbox::repo as inbox;
use crate::screening::cases::{
    CLARIFICATION_KIND, CaseStatus, Outcome, PartyOf, clarification_recipient, outcome, party_of,
    party_tenant,
};
use crate::screening::index::{Hit, Index, Query};
use crate::screening::matcher::Params;
use crate::screening::model::{EntityKind, ListEntry};
use crate::screening::{case_answers, effects as screening_effects};
use crate::secrets::KeyRing;
use crate::secrets::sealed::{Field, StoredText};

/// Rows inserted per statement when storing a list version.
const INSERT_BATCH: usize = 500;

/// How re-screening judges hits: the scorer's parameters and the review
/// threshold; and the key ring that opens the registered parties.
#[derive(Debug, Clone, Copy)]
pub struct Review<'a> {
    /// Scorer parameters.
    pub params: Params,
    /// Score from which a hit is a possible match.
    pub threshold: f64,
    /// Opens the registered parties' sealed identities.
    pub ring: &'a KeyRing,
}

/// A stored list version, with what the import changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// Global sequence (what replicas poll for).
    pub seq: i64,
    /// Source key.
    pub source: String,
    /// 1, 2, ... per source.
    pub version: u64,
    /// sha256 of the imported bytes.
    pub sha256: String,
    /// Entries in this version.
    pub entries: u64,
    /// Entries new against the previous version.
    pub added: u64,
    /// Entries gone.
    pub removed: u64,
    /// Entries whose content changed.
    pub changed: u64,
    /// When it was imported.
    pub imported_at: DateTime<Utc>,
    /// Registered parties re-screened against the added and changed entries.
    pub rescreened: u64,
    /// Cases opened by that re-screening.
    pub cases_opened: u64,
    /// True when the import was byte for byte the latest version already
    /// loaded, so nothing was stored: the counts are that version's.
    pub unchanged: bool,
}

#[derive(Queryable, Insertable)]
#[diesel(table_name = crate::db::schema::screening_list_versions)]
struct VersionRow {
    seq: i64,
    source: String,
    version: i64,
    sha256: String,
    entries: i64,
    added: i64,
    removed: i64,
    changed: i64,
    imported_at_us: i64,
    imported_by: String,
}

impl From<VersionRow> for VersionInfo {
    fn from(r: VersionRow) -> Self {
        Self {
            seq: r.seq,
            source: r.source,
            version: r.version as u64,
            sha256: r.sha256,
            entries: r.entries as u64,
            added: r.added as u64,
            removed: r.removed as u64,
            changed: r.changed as u64,
            imported_at: from_us(r.imported_at_us),
            rescreened: 0,
            cases_opened: 0,
            unchanged: false,
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = crate::db::schema::screening_entries)]
struct EntryRow {
    version_seq: i64,
    entry_id: String,
    digest: String,
    change: String,
    data: String,
}

/// A party screened under a `party_ref`, kept for re-screening: the
/// identity in the clear, as it is held in memory (stored by
/// [`PartyRow::seal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartyRow {
    /// The caller's reference (`tenants/{t}/...`, `subprocessors/{id}`, ...).
    pub party_ref: String,
    /// The tenant the reference names, if any.
    pub tenant_id: Option<String>,
    /// The party's name.
    pub name: String,
    /// `individual`, `organization`, ...
    pub party_type: String,
    /// As given.
    pub date_of_birth: String,
    /// As given.
    pub country: String,
    /// JSON array of alias strings.
    pub aliases: String,
    /// Last screening.
    pub updated_at_us: i64,
}

/// What of a party is personal data, sealed as one JSON document.
#[derive(serde::Serialize, serde::Deserialize)]
struct Identity {
    name: String,
    date_of_birth: String,
    country: String,
    aliases: String,
}

/// A registered party as stored: the clear identity columns are empty once
/// sealed (see [`crate::secrets::sealed`] for when they are not).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable)]
#[diesel(table_name = crate::db::schema::screening_parties)]
pub struct StoredParty {
    /// The caller's reference (the row's id, and what the ciphertext is
    /// bound to).
    pub party_ref: String,
    /// The tenant the reference names, if any.
    pub tenant_id: Option<String>,
    /// Name in the clear: empty unless written before sealing.
    pub name: String,
    /// `individual`, `organization`, ...
    pub party_type: String,
    /// Date of birth in the clear, likewise.
    pub date_of_birth: String,
    /// Country in the clear, likewise.
    pub country: String,
    /// Aliases (JSON array) in the clear, likewise.
    pub aliases: String,
    /// Last screening.
    pub updated_at_us: i64,
    /// The sealed identity.
    pub sealed: Option<String>,
    /// Id of the key that sealed it.
    pub key_id: Option<String>,
}

impl StoredParty {
    /// True while the identity is held in the clear: what must be sealed.
    pub fn is_clear(&self) -> bool {
        !self.name.is_empty()
    }

    /// The party in the clear.
    pub fn open(&self, ring: &KeyRing) -> Result<PartyRow> {
        let mut out = PartyRow {
            party_ref: self.party_ref.clone(),
            tenant_id: self.tenant_id.clone(),
            name: self.name.clone(),
            party_type: self.party_type.clone(),
            date_of_birth: self.date_of_birth.clone(),
            country: self.country.clone(),
            aliases: self.aliases.clone(),
            updated_at_us: self.updated_at_us,
        };
        if self.is_clear() {
            return Ok(out);
        }
        let stored = StoredText::from_columns(None, self.key_id.clone(), self.sealed.clone());
        let doc = stored.open(ring, Field::Party, &self.party_ref)?;
        if doc.is_empty() {
            return Ok(out);
        }
        let id: Identity = serde_json::from_str(&doc)
            .map_err(|_| Error::Unexpected(format!("sealed party {} is corrupt", self.party_ref)))?;
        (out.name, out.date_of_birth, out.country, out.aliases) =
            (id.name, id.date_of_birth, id.country, id.aliases);
        Ok(out)
    }
}

impl PartyRow {
    /// The stored form: the identity sealed with `ring`, bound to the
    /// party's reference, and the clear columns empty.
    pub fn seal(&self, ring: &KeyRing) -> Result<StoredParty> {
        let doc = serde_json::to_string(&Identity {
            name: self.name.clone(),
            date_of_birth: self.date_of_birth.clone(),
            country: self.country.clone(),
            aliases: self.aliases.clone(),
        })
        .map_err(|e| Error::Unexpected(e.to_string()))?;
        let sealed = StoredText::seal(ring, Field::Party, &self.party_ref, &doc)?;
        Ok(StoredParty {
            party_ref: self.party_ref.clone(),
            tenant_id: self.tenant_id.clone(),
            name: String::new(),
            party_type: self.party_type.clone(),
            date_of_birth: String::new(),
            country: String::new(),
            aliases: String::new(),
            updated_at_us: self.updated_at_us,
            sealed: sealed.sealed,
            key_id: sealed.key_id,
        })
    }

    /// The screening query for this party.
    pub fn query(&self) -> Query {
        let aliases: Vec<String> = serde_json::from_str(&self.aliases).unwrap_or_default();
        let kind = match self.party_type.as_str() {
            "individual" => EntityKind::Individual,
            "organization" => EntityKind::Organization,
            "vessel" => EntityKind::Vessel,
            "aircraft" => EntityKind::Aircraft,
            _ => EntityKind::Unknown,
        };
        Query::new(&self.name, &aliases, kind, &self.date_of_birth, &self.country)
    }
}

/// A review case.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// Keyset position for paging.
    pub seq: i64,
    /// Public id.
    pub id: String,
    /// The party.
    pub party_ref: String,
    /// The party's tenant, if any.
    pub tenant_id: Option<String>,
    /// State.
    pub status: CaseStatus,
    /// The hits that opened it.
    pub hits: Vec<Hit>,
    /// When opened.
    pub opened_at: DateTime<Utc>,
    /// When resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Who resolved it.
    pub resolved_by: Option<String>,
    /// The resolver's reason, as stored (sealed).
    pub note: StoredNote,
    /// Answers to the clarification request, oldest first.
    pub answers: Vec<case_answers::SealedAnswer>,
}

#[derive(Queryable, Insertable)]
#[diesel(table_name = crate::db::schema::screening_cases)]
struct CaseRow {
    seq: i64,
    id: String,
    party_ref: String,
    tenant_id: Option<String>,
    status: String,
    hits: String,
    opened_at_us: i64,
    opened_by: String,
    resolved_at_us: Option<i64>,
    resolved_by: Option<String>,
    note: String,
    note_key_id: Option<String>,
}

/// A case's resolution note as stored. The analyst's reason may name
/// people, so it is sealed with the identifier key ring, bound to the case;
/// notes written before sealing (no key id) are read as they were.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredNote {
    /// Id of the key that sealed it; `None` for a note stored in the clear.
    pub key_id: Option<String>,
    /// Base64 of nonce and ciphertext, or the clear text.
    pub body: String,
}

impl StoredNote {
    /// What a note's ciphertext is bound to: its case, and being a note, so
    /// that no other text sealed for the case (an answer) can be passed off
    /// as its note.
    fn aad(case_id: &str) -> Vec<u8> {
        format!("case-note/{case_id}").into_bytes()
    }

    /// Seals `text` for the case `case_id`; an empty note stays empty.
    pub fn seal(ring: &KeyRing, case_id: &str, text: &str) -> Result<Self> {
        if text.is_empty() {
            return Ok(Self::default());
        }
        let (key_id, body) = ring.seal(text.as_bytes(), &Self::aad(case_id))?;
        Ok(Self {
            key_id: Some(key_id),
            body,
        })
    }

    /// The note in the clear; `case_id` must be the case it belongs to.
    pub fn open(&self, ring: &KeyRing, case_id: &str) -> Result<String> {
        match &self.key_id {
            None => Ok(self.body.clone()),
            Some(k) => String::from_utf8(ring.open(k, &self.body, &Self::aad(case_id))?)
                .map_err(|_| Error::Unexpected("case note is not UTF-8".into())),
        }
    }
}

impl TryFrom<CaseRow> for Case {
    type Error = Error;
    fn try_from(r: CaseRow) -> Result<Self> {
        Ok(Case {
            seq: r.seq,
            status: CaseStatus::parse(&r.status)
                .ok_or_else(|| Error::Unexpected(format!("bad case status {}", r.status)))?,
            hits: serde_json::from_str(&r.hits)
                .map_err(|e| Error::Unexpected(format!("bad case hits: {e}")))?,
            id: r.id,
            party_ref: r.party_ref,
            tenant_id: r.tenant_id,
            opened_at: from_us(r.opened_at_us),
            resolved_at: r.resolved_at_us.map(from_us),
            resolved_by: r.resolved_by,
            note: StoredNote {
                key_id: r.note_key_id,
                body: r.note,
            },
            answers: Vec::new(),
        })
    }
}

/// The latest version of every source: `(source, seq)`; what replicas poll.
pub fn latest_versions(conn: &mut DbConnection) -> Result<Vec<(String, i64)>> {
    let rows: Vec<(String, Option<i64>)> = lv::screening_list_versions
        .group_by(lv::source)
        .select((lv::source, diesel::dsl::max(lv::seq)))
        .load(conn)?;
    Ok(rows.into_iter().filter_map(|(s, m)| m.map(|m| (s, m))).collect())
}

/// The version row `seq`.
pub fn version(conn: &mut DbConnection, seq: i64) -> Result<VersionInfo> {
    Ok(lv::screening_list_versions
        .find(seq)
        .first::<VersionRow>(conn)?
        .into())
}

/// Every entry of version `seq`.
pub fn entries(conn: &mut DbConnection, seq: i64) -> Result<Vec<ListEntry>> {
    let rows: Vec<String> = en::screening_entries
        .filter(en::version_seq.eq(seq))
        .order(en::entry_id.asc())
        .select(en::data)
        .load(conn)?;
    rows.iter()
        .map(|d| serde_json::from_str(d).map_err(|e| Error::Unexpected(format!("bad stored entry: {e}"))))
        .collect()
}

/// Ids of the entries of version `seq` that were added or changed against
/// the version before it.
pub fn delta_ids(conn: &mut DbConnection, seq: i64) -> Result<HashSet<String>> {
    Ok(en::screening_entries
        .filter(en::version_seq.eq(seq))
        .filter(en::change.ne("same"))
        .select(en::entry_id)
        .load::<String>(conn)?
        .into_iter()
        .collect())
}

/// How an import diffed against the previous version.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diff {
    /// New ids.
    pub added: Vec<String>,
    /// Ids gone.
    pub removed: Vec<String>,
    /// Ids whose content digest changed.
    pub changed: Vec<String>,
}

/// Diffs `new` against the `(id, digest)` pairs of the previous version.
pub fn diff(prev: &HashMap<String, String>, new: &[(String, String)]) -> Diff {
    let mut d = Diff::default();
    let ids: HashSet<&str> = new.iter().map(|(i, _)| i.as_str()).collect();
    for (id, dg) in new {
        match prev.get(id) {
            None => d.added.push(id.clone()),
            Some(p) if p != dg => d.changed.push(id.clone()),
            Some(_) => {}
        }
    }
    d.removed = prev
        .keys()
        .filter(|k| !ids.contains(k.as_str()))
        .cloned()
        .collect();
    d.removed.sort();
    d
}

/// Stores a parsed import of `source` as its next version (unless its bytes
/// equal the latest version's, which is returned as it is), audits it, and
/// re-screens every registered party against the added and changed entries,
/// opening cases for new possible matches.
pub fn import(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    actor: AuditEntry,
    source: &str,
    sha256: &str,
    list: Vec<ListEntry>,
    review: Review,
) -> Result<VersionInfo> {
    let Review {
        params,
        threshold,
        ring,
    } = review;
    chain_lock(conn)?;
    let latest: Option<VersionRow> = lv::screening_list_versions
        .filter(lv::source.eq(source))
        .order(lv::version.desc())
        .first(conn)
        .optional()?;
    if let Some(l) = latest.as_ref().filter(|l| l.sha256 == sha256) {
        return Ok(VersionInfo {
            unchanged: true,
            ..version(conn, l.seq)?
        });
    }
    let prev: HashMap<String, String> = match &latest {
        Some(l) => en::screening_entries
            .filter(en::version_seq.eq(l.seq))
            .select((en::entry_id, en::digest))
            .load::<(String, String)>(conn)?
            .into_iter()
            .collect(),
        None => HashMap::new(),
    };
    let digests: Vec<(String, String)> = list.iter().map(|e| (e.id.clone(), e.digest())).collect();
    let d = diff(&prev, &digests);
    let max_seq: Option<i64> = lv::screening_list_versions
        .select(diesel::dsl::max(lv::seq))
        .first(conn)?;
    let seq = max_seq.unwrap_or(0) + 1;
    let row = VersionRow {
        seq,
        source: source.to_owned(),
        version: latest.as_ref().map_or(1, |l| l.version + 1),
        sha256: sha256.to_owned(),
        entries: list.len() as i64,
        added: d.added.len() as i64,
        removed: d.removed.len() as i64,
        changed: d.changed.len() as i64,
        imported_at_us: to_us(now),
        imported_by: actor.actor.clone(),
    };
    diesel::insert_into(lv::screening_list_versions)
        .values(&row)
        .execute(conn)?;
    let added: HashSet<&str> = d.added.iter().map(String::as_str).collect();
    let changed: HashSet<&str> = d.changed.iter().map(String::as_str).collect();
    let mut batch = Vec::with_capacity(INSERT_BATCH);
    for (e, (_, dg)) in list.iter().zip(&digests) {
        let change = if added.contains(e.id.as_str()) {
            "added"
        } else if changed.contains(e.id.as_str()) {
            "changed"
        } else {
            "same"
        };
        batch.push(EntryRow {
            version_seq: seq,
            entry_id: e.id.clone(),
            digest: dg.clone(),
            change: change.to_owned(),
            data: serde_json::to_string(e).map_err(|e| Error::Unexpected(e.to_string()))?,
        });
        if batch.len() == INSERT_BATCH {
            insert_entries(conn, &batch)?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        insert_entries(conn, &batch)?;
    }
    let mut info: VersionInfo = row.into();
    let mut entry = actor.clone();
    entry.action = "screening.import".into();
    entry.target = format!("{source}/v{}", info.version);
    entry.detail = serde_json::json!({
        "sha256": sha256, "entries": info.entries, "added": info.added, "removed": info.removed, "changed": info.changed,
    })
    .to_string();
    audit::append(conn, now, entry)?;

    // Re-screening by delta: every registered party against the added and
    // changed entries only, weighed by the whole new list.
    let delta: HashSet<String> = d.added.into_iter().chain(d.changed).collect();
    let parties: Vec<PartyRow> = if delta.is_empty() {
        Vec::new()
    } else {
        pa::screening_parties
            .order(pa::party_ref.asc())
            .load::<StoredParty>(conn)?
            .iter()
            .map(|p| p.open(ring))
            .collect::<Result<_>>()?
    };
    let pending = screening_effects::pending_sub_processors(conn)?;
    if parties.is_empty() && pending.is_empty() {
        return Ok(info);
    }
    let idx = Index::build(source, info.version, list);
    for party in parties {
        info.rescreened += 1;
        if has_open_or_confirmed(conn, &party.party_ref)? {
            continue;
        }
        let party = screening_effects::registry_party(conn, party)?;
        let hits: Vec<Hit> = idx
            .search(&party.query(), &params, threshold, 20)
            .into_iter()
            .filter(|h| delta.contains(&h.entry_id))
            .collect();
        let alerting = not_cleared(conn, &party.party_ref, hits)?;
        if !alerting.is_empty() {
            let mut who = actor.clone();
            who.tenant_id = party.tenant_id.clone();
            open_case(conn, now, who, &party, alerting, "rescreen")?;
            info.cases_opened += 1;
        }
    }
    // Sub-processors still waiting for their first screening are screened
    // against the whole new list, not only its delta.
    for sp in pending {
        let hits = idx.search(&sp.query(), &params, threshold, 20);
        if screening_effects::settle_sub_processor(conn, now, &actor, ring, &sp, Some(&hits), threshold)?
            .opened_case
        {
            info.cases_opened += 1;
        }
    }
    Ok(info)
}

/// Multi-row inserts are backend specific in diesel (the `MultiConnection`
/// backend has no batch insert), so each backend gets its own statement.
fn insert_entries(conn: &mut DbConnection, rows: &[EntryRow]) -> Result<()> {
    let q = diesel::insert_into(en::screening_entries).values(rows);
    match conn {
        DbConnection::Pg(c) => q.execute(c)?,
        DbConnection::Sqlite(c) => q.execute(c)?,
    };
    Ok(())
}

fn has_case(conn: &mut DbConnection, party_ref: &str, status: CaseStatus) -> Result<bool> {
    let n: i64 = c::screening_cases
        .filter(c::party_ref.eq(party_ref))
        .filter(c::status.eq(status.as_str()))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// The case of `party_ref` still awaiting its resolution (open or
/// answered), if any: a party has at most one.
pub fn pending_case(conn: &mut DbConnection, party_ref: &str) -> Result<Option<String>> {
    Ok(c::screening_cases
        .filter(c::party_ref.eq(party_ref))
        .filter(c::status.eq_any([CaseStatus::Open.as_str(), CaseStatus::Answered.as_str()]))
        .select(c::id)
        .first(conn)
        .optional()?)
}

/// True when `party_ref` has a confirmed case or one awaiting resolution:
/// re-screening leaves such a party alone.
pub fn has_open_or_confirmed(conn: &mut DbConnection, party_ref: &str) -> Result<bool> {
    Ok(is_blocked(conn, party_ref)? || pending_case(conn, party_ref)?.is_some())
}

/// Ids of the tenants that themselves (`tenants/{id}`) have a confirmed
/// match; decisions deny for them.
pub fn blocked_tenants(conn: &mut DbConnection) -> Result<Vec<String>> {
    let refs: Vec<String> = c::screening_cases
        .filter(c::status.eq(CaseStatus::Confirmed.as_str()))
        .filter(c::party_ref.like("tenants/%"))
        .select(c::party_ref)
        .distinct()
        .load(conn)?;
    Ok(refs
        .iter()
        .filter_map(|r| match party_of(r) {
            PartyOf::Tenant(t) => Some(t.to_owned()),
            _ => None,
        })
        .collect())
}

/// True when `party_ref` has a confirmed match: a blocked party (a
/// sub-processor becomes BLOCKED; a tenant's processing is denied).
pub fn is_blocked(conn: &mut DbConnection, party_ref: &str) -> Result<bool> {
    has_case(conn, party_ref, CaseStatus::Confirmed)
}

/// True when tenant `tenant_id` itself (`party_ref` `tenants/{id}`) has a
/// confirmed match; what `CheckProcessing` denies on.
pub fn tenant_blocked(conn: &mut DbConnection, tenant_id: &str) -> Result<bool> {
    is_blocked(conn, &format!("tenants/{tenant_id}"))
}

/// The hits that still alert for `party_ref`: those at or above the
/// threshold whose entry was not cleared for this party in its present form
/// (a cleared entry alerts again once its content changes).
fn not_cleared(conn: &mut DbConnection, party_ref: &str, hits: Vec<Hit>) -> Result<Vec<Hit>> {
    if hits.is_empty() {
        return Ok(hits);
    }
    let cleared: HashSet<(String, String, String)> = cl::screening_clearances
        .filter(cl::party_ref.eq(party_ref))
        .select((cl::source, cl::entry_id, cl::digest))
        .load::<(String, String, String)>(conn)?
        .into_iter()
        .collect();
    Ok(hits
        .into_iter()
        .filter(|h| !cleared.contains(&(h.source.clone(), h.entry_id.clone(), h.digest.clone())))
        .collect())
}

fn open_case(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    actor: AuditEntry,
    party: &PartyRow,
    hits: Vec<Hit>,
    why: &str,
) -> Result<String> {
    let max: Option<i64> = c::screening_cases.select(diesel::dsl::max(c::seq)).first(conn)?;
    let id = uuid::Uuid::new_v4().to_string();
    let row = CaseRow {
        seq: max.unwrap_or(0) + 1,
        id: id.clone(),
        party_ref: party.party_ref.clone(),
        tenant_id: party.tenant_id.clone(),
        status: CaseStatus::Open.as_str().into(),
        hits: serde_json::to_string(&hits).map_err(|e| Error::Unexpected(e.to_string()))?,
        opened_at_us: to_us(now),
        opened_by: actor.actor.clone(),
        resolved_at_us: None,
        resolved_by: None,
        note: String::new(),
        note_key_id: None,
    };
    diesel::insert_into(c::screening_cases)
        .values(&row)
        .execute(conn)?;
    inbox::enqueue(
        conn,
        now,
        &clarification_recipient(&party.party_ref),
        CLARIFICATION_KIND,
        &serde_json::json!({ "id": id, "case_id": id, "party_ref": party.party_ref, "hits": hits.len() }),
    )?;
    let mut entry = actor;
    entry.tenant_id = party.tenant_id.clone();
    entry.action = "screening.case.open".into();
    entry.target = format!("case/{id}");
    entry.detail = serde_json::json!({
        "party_ref": party.party_ref,
        "why": why,
        "entries": hits.iter().map(|h| format!("{}/{}", h.source, h.entry_id)).collect::<Vec<_>>(),
    })
    .to_string();
    audit::append(conn, now, entry)?;
    Ok(id)
}

/// What a screening under a `party_ref` concluded.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// Outcome.
    pub outcome: Outcome,
    /// The case opened now, or already open, or confirmed.
    pub case_id: Option<String>,
}

/// Registers (or updates) the party, its identity sealed with `ring`, and
/// on a possible match opens a case and asks for clarification, all in the
/// caller's transaction. Entries cleared for this party in their present
/// form do not alert again; a party with a confirmed case is a confirmed
/// match; an open case is reused.
pub fn record_screening(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    actor: AuditEntry,
    ring: &KeyRing,
    mut party: PartyRow,
    hits: &[Hit],
    threshold: f64,
) -> Result<Recorded> {
    chain_lock(conn)?;
    party.tenant_id = party_tenant(&party.party_ref).map(str::to_owned);
    party.updated_at_us = to_us(now);
    let exists: i64 = pa::screening_parties
        .filter(pa::party_ref.eq(&party.party_ref))
        .count()
        .get_result(conn)?;
    let stored = party.seal(ring)?;
    if exists > 0 {
        diesel::update(pa::screening_parties.find(&party.party_ref))
            .set((
                pa::name.eq(&stored.name),
                pa::party_type.eq(&stored.party_type),
                pa::date_of_birth.eq(&stored.date_of_birth),
                pa::country.eq(&stored.country),
                pa::aliases.eq(&stored.aliases),
                pa::updated_at_us.eq(stored.updated_at_us),
                pa::sealed.eq(&stored.sealed),
                pa::key_id.eq(&stored.key_id),
            ))
            .execute(conn)?;
    } else {
        diesel::insert_into(pa::screening_parties)
            .values(&stored)
            .execute(conn)?;
        let mut e = actor.clone();
        e.tenant_id = party.tenant_id.clone();
        e.action = "screening.party.register".into();
        e.target = party.party_ref.clone();
        audit::append(conn, now, e)?;
    }
    let confirmed: Option<String> = c::screening_cases
        .filter(c::party_ref.eq(&party.party_ref))
        .filter(c::status.eq(CaseStatus::Confirmed.as_str()))
        .order(c::seq.desc())
        .select(c::id)
        .first(conn)
        .optional()?;
    if let Some(id) = confirmed {
        return Ok(Recorded {
            outcome: Outcome::ConfirmedMatch,
            case_id: Some(id),
        });
    }
    let alerting = not_cleared(
        conn,
        &party.party_ref,
        hits.iter().filter(|h| h.score >= threshold).cloned().collect(),
    )?;
    let out = outcome(alerting.first().map(|h| h.score), threshold, false);
    if out == Outcome::Clear {
        return Ok(Recorded {
            outcome: out,
            case_id: None,
        });
    }
    let id = match pending_case(conn, &party.party_ref)? {
        Some(id) => id,
        None => open_case(conn, now, actor, &party, alerting, "screen")?,
    };
    Ok(Recorded {
        outcome: out,
        case_id: Some(id),
    })
}

/// One case, visible to `tenant` (None = every case).
pub fn get_case(conn: &mut DbConnection, id: &str, tenant: Option<&str>) -> Result<Case> {
    let row: Option<CaseRow> = c::screening_cases.filter(c::id.eq(id)).first(conn).optional()?;
    match row {
        Some(r) if tenant.is_none() || r.tenant_id.as_deref() == tenant => {
            let mut case: Case = r.try_into()?;
            case.answers = case_answers::of_cases(conn, &[case.id.clone()])?
                .remove(&case.id)
                .unwrap_or_default();
            Ok(case)
        }
        _ => Err(Error::Missing(format!("case {id}"))),
    }
}

/// A page of cases after keyset `after`, optionally of one status and one
/// tenant.
pub fn list_cases(
    conn: &mut DbConnection,
    tenant: Option<&str>,
    status: Option<CaseStatus>,
    after: i64,
    limit: i64,
) -> Result<Vec<Case>> {
    let mut q = c::screening_cases
        .filter(c::seq.gt(after))
        .order(c::seq.asc())
        .limit(limit)
        .into_boxed();
    if let Some(t) = tenant {
        q = q.filter(c::tenant_id.eq(t));
    }
    if let Some(s) = status {
        q = q.filter(c::status.eq(s.as_str()));
    }
    let mut cases: Vec<Case> = q
        .load::<CaseRow>(conn)?
        .into_iter()
        .map(TryInto::try_into)
        .collect::<Result<_>>()?;
    let ids: Vec<String> = cases.iter().map(|c| c.id.clone()).collect();
    let mut answers = case_answers::of_cases(conn, &ids)?;
    for case in &mut cases {
        case.answers = answers.remove(&case.id).unwrap_or_default();
    }
    Ok(cases)
}

/// Resolves a pending case: cleared (each hit's entry is remembered in its
/// present form for this party) or confirmed (the party is blocked), and
/// applies what that means to a sub-processor or tenant party. The note is
/// sealed with `ring` (see [`StoredNote`]).
pub fn resolve_case(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    actor: AuditEntry,
    ring: &KeyRing,
    id: &str,
    to: CaseStatus,
    note: &str,
) -> Result<Case> {
    chain_lock(conn)?;
    let case = get_case(conn, id, None)?;
    let new = case.status.resolve(to)?;
    let sealed = StoredNote::seal(ring, id, note)?;
    diesel::update(c::screening_cases.filter(c::id.eq(id)))
        .set((
            c::status.eq(new.as_str()),
            c::resolved_at_us.eq(Some(to_us(now))),
            c::resolved_by.eq(Some(actor.actor.clone())),
            c::note.eq(&sealed.body),
            c::note_key_id.eq(&sealed.key_id),
        ))
        .execute(conn)?;
    if new == CaseStatus::Cleared {
        for h in &case.hits {
            diesel::delete(
                cl::screening_clearances
                    .filter(cl::party_ref.eq(&case.party_ref))
                    .filter(cl::source.eq(&h.source))
                    .filter(cl::entry_id.eq(&h.entry_id)),
            )
            .execute(conn)?;
            diesel::insert_into(cl::screening_clearances)
                .values((
                    cl::party_ref.eq(&case.party_ref),
                    cl::source.eq(&h.source),
                    cl::entry_id.eq(&h.entry_id),
                    cl::digest.eq(&h.digest),
                    cl::case_id.eq(id),
                    cl::cleared_at_us.eq(to_us(now)),
                ))
                .execute(conn)?;
        }
    }
    screening_effects::apply_resolution(conn, now, &actor, &case.party_ref, new)?;
    let mut entry = actor;
    entry.tenant_id = case.tenant_id.clone();
    entry.action = format!("screening.case.{}", new.as_str());
    entry.target = format!("case/{id}");
    // The note is the resolver's reason; it is the analyst's text about a
    // list match, kept sealed with the case. The audit records its length.
    entry.detail =
        serde_json::json!({ "party_ref": case.party_ref, "note_chars": note.chars().count() }).to_string();
    audit::append(conn, now, entry)?;
    get_case(conn, id, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_counts_added_removed_changed() {
        let prev: HashMap<String, String> = [("1", "a"), ("2", "b"), ("3", "c")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let new = vec![
            ("1".into(), "a".into()),
            ("2".into(), "B".into()),
            ("4".into(), "d".into()),
        ];
        let d = diff(&prev, &new);
        assert_eq!(d.added, ["4"]);
        assert_eq!(d.changed, ["2"]);
        assert_eq!(d.removed, ["3"]);
    }
}
