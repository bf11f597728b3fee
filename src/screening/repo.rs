//! Screening in the database, rows and queries only: list versions with
//! their entries and diffs, registered parties, review cases and remembered
//! clearances. The commands that combine them, with their audit events and
//! envelopes, are in [`crate::screening::service`]. A registered party's identity (name, date of birth, country,
//! aliases) is stored sealed (see [`PartyRow::seal`]) and opened in memory
//! only to re-screen it.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::db::schema::screening_cases::dsl as c;
use crate::db::schema::screening_clearances::dsl as cl;
use crate::db::schema::screening_entries::dsl as en;
use crate::db::schema::screening_list_versions::dsl as lv;
use crate::db::schema::screening_parties::dsl as pa;
use crate::db::{DbConnection, from_us, to_us};
use crate::error::{Error, Result};
use crate::screening::case_answers;
use crate::screening::cases::{CaseStatus, PartyOf, party_of};
use crate::screening::identifiers::TypedIdentifier;
use crate::screening::index::{Hit, Query};
use crate::screening::model::{EntityKind, ListEntry};
use crate::secrets::KeyRing;
use crate::secrets::sealed::{Field, StoredText};

/// Rows inserted per statement when storing a list version.
const INSERT_BATCH: usize = 500;

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
    /// Identifiers (passport, IMO, LEI, ...), normalised.
    pub identifiers: Vec<TypedIdentifier>,
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
    /// Identifiers are subject identifiers too: sealed with the rest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    identifiers: Vec<TypedIdentifier>,
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
            identifiers: Vec::new(),
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
        (
            out.name,
            out.date_of_birth,
            out.country,
            out.aliases,
            out.identifiers,
        ) = (id.name, id.date_of_birth, id.country, id.aliases, id.identifiers);
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
            identifiers: self.identifiers.clone(),
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
            .with_identifiers(self.identifiers.clone())
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

/// Entry `entry_id` of `source` as the latest version holding it has it,
/// with the first and the latest version numbers holding it; `None` when
/// no version of the source ever held it.
pub fn entry_versions(
    conn: &mut DbConnection,
    source: &str,
    entry_id: &str,
) -> Result<Option<(ListEntry, u64, u64)>> {
    let held = || {
        en::screening_entries
            .inner_join(lv::screening_list_versions)
            .filter(lv::source.eq(source.to_owned()))
            .filter(en::entry_id.eq(entry_id.to_owned()))
    };
    let last: Option<(i64, String)> = held()
        .order(lv::version.desc())
        .select((lv::version, en::data))
        .first(conn)
        .optional()?;
    let Some((last, data)) = last else {
        return Ok(None);
    };
    let first: i64 = held().order(lv::version.asc()).select(lv::version).first(conn)?;
    let entry: ListEntry =
        serde_json::from_str(&data).map_err(|e| Error::Unexpected(format!("bad stored entry: {e}")))?;
    Ok(Some((entry, first as u64, last as u64)))
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

/// A list version just stored, with what the service needs to re-screen
/// the registered parties against it.
#[derive(Debug)]
pub struct Stored {
    /// The version as stored.
    pub info: VersionInfo,
    /// Ids of the entries added or changed against the previous version.
    pub delta: HashSet<String>,
}

/// The latest version of `source` if its sha256 is `sha256`: what an
/// import of the same bytes answers with, storing nothing.
pub fn latest_with_digest(
    conn: &mut DbConnection,
    source: &str,
    sha256: &str,
) -> Result<Option<VersionInfo>> {
    let row: Option<VersionRow> = lv::screening_list_versions
        .filter(lv::source.eq(source))
        .order(lv::version.desc())
        .first(conn)
        .optional()?;
    Ok(row.filter(|r| r.sha256 == sha256).map(Into::into))
}

/// Stores a parsed import of `source` as its next version, each entry
/// marked added, changed or the same against the latest version.
pub fn store_version(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    imported_by: &str,
    source: &str,
    sha256: &str,
    list: &[ListEntry],
) -> Result<Stored> {
    let latest: Option<VersionRow> = lv::screening_list_versions
        .filter(lv::source.eq(source))
        .order(lv::version.desc())
        .first(conn)
        .optional()?;
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
    let seq = crate::db::next_seq(conn, crate::db::Numbered::ListVersions)?;
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
        imported_by: imported_by.to_owned(),
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
    Ok(Stored {
        info: row.into(),
        delta: d.added.into_iter().chain(d.changed).collect(),
    })
}

/// Every registered party, its identity opened with `ring`, in
/// `party_ref` order: what a new list version re-screens.
pub fn parties(conn: &mut DbConnection, ring: &KeyRing) -> Result<Vec<PartyRow>> {
    pa::screening_parties
        .order(pa::party_ref.asc())
        .load::<StoredParty>(conn)?
        .iter()
        .map(|p| p.open(ring))
        .collect()
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
pub fn not_cleared(conn: &mut DbConnection, party_ref: &str, hits: Vec<Hit>) -> Result<Vec<Hit>> {
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

/// The cases that cleared `party_ref` of those of `hits` whose entries are
/// still in the form cleared, by `(source, entry_id)`: what
/// `Hit.cleared_by_case` names.
pub fn clearing_cases(
    conn: &mut DbConnection,
    party_ref: &str,
    hits: &[Hit],
) -> Result<HashMap<(String, String), String>> {
    if hits.is_empty() {
        return Ok(HashMap::new());
    }
    let cleared: HashMap<(String, String, String), String> = cl::screening_clearances
        .filter(cl::party_ref.eq(party_ref))
        .select((cl::source, cl::entry_id, cl::digest, cl::case_id))
        .load::<(String, String, String, String)>(conn)?
        .into_iter()
        .map(|(s, e, d, c)| ((s, e, d), c))
        .collect();
    Ok(hits
        .iter()
        .filter_map(|h| {
            cleared
                .get(&(h.source.clone(), h.entry_id.clone(), h.digest.clone()))
                .map(|c| ((h.source.clone(), h.entry_id.clone()), c.clone()))
        })
        .collect())
}

/// A screening result as stored (see the `screening_results` migration):
/// the party by reference, the outcome, the evidence as JSON, the hits by
/// source, entry id and score.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable)]
#[diesel(table_name = crate::db::schema::screening_results)]
pub struct ResultRow {
    /// Public id (receipts name it).
    pub id: String,
    /// The party screened.
    pub party_ref: String,
    /// The party's tenant, if any.
    pub tenant_id: Option<String>,
    /// When.
    pub screened_at_us: i64,
    /// `screen` or `rescreen`.
    pub why: String,
    /// `clear`, `possible_match`, `confirmed_match`.
    pub outcome: String,
    /// The case opened, open or confirmed, if any.
    pub case_id: Option<String>,
    /// [`crate::screening::evidence::Evidence`] as JSON.
    pub evidence: String,
    /// JSON array of `{source, entry_id, score, cleared_by_case}`.
    pub hits: String,
    /// The key that signed the receipt, for a clear result that got one.
    pub receipt_key_id: Option<String>,
}

/// Stores a screening result.
pub fn insert_result(conn: &mut DbConnection, row: &ResultRow) -> Result<()> {
    diesel::insert_into(crate::db::schema::screening_results::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// The results recorded for `party_ref`, oldest first: what an auditor
/// reads to learn what the party was screened against and when.
pub fn results_of(conn: &mut DbConnection, party_ref: &str) -> Result<Vec<ResultRow>> {
    use crate::db::schema::screening_results::dsl as sr;
    Ok(sr::screening_results
        .filter(sr::party_ref.eq(party_ref))
        .order((sr::screened_at_us.asc(), sr::id.asc()))
        .load(conn)?)
}

/// Inserts a new open case of `party` with the `hits` that opened it;
/// returns its id.
pub fn insert_case(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    opened_by: &str,
    party: &PartyRow,
    hits: &[Hit],
) -> Result<String> {
    let id = uuid::Uuid::new_v4().to_string();
    let row = CaseRow {
        seq: crate::db::next_seq(conn, crate::db::Numbered::ScreeningCases)?,
        id: id.clone(),
        party_ref: party.party_ref.clone(),
        tenant_id: party.tenant_id.clone(),
        status: CaseStatus::Open.as_str().into(),
        hits: serde_json::to_string(hits).map_err(|e| Error::Unexpected(e.to_string()))?,
        opened_at_us: to_us(now),
        opened_by: opened_by.to_owned(),
        resolved_at_us: None,
        resolved_by: None,
        note: String::new(),
        note_key_id: None,
    };
    diesel::insert_into(c::screening_cases)
        .values(&row)
        .execute(conn)?;
    Ok(id)
}

/// Registers or updates `party` (its identity sealed with `ring`; its
/// tenant and time already set); true when it was new.
pub fn upsert_party(conn: &mut DbConnection, ring: &KeyRing, party: &PartyRow) -> Result<bool> {
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
        Ok(false)
    } else {
        diesel::insert_into(pa::screening_parties)
            .values(&stored)
            .execute(conn)?;
        Ok(true)
    }
}

/// The latest confirmed case of `party_ref`, if any: such a party is a
/// confirmed match whatever a new screening finds.
pub fn confirmed_case(conn: &mut DbConnection, party_ref: &str) -> Result<Option<String>> {
    Ok(c::screening_cases
        .filter(c::party_ref.eq(party_ref))
        .filter(c::status.eq(CaseStatus::Confirmed.as_str()))
        .order(c::seq.desc())
        .select(c::id)
        .first(conn)
        .optional()?)
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
        _ => Err(Error::not_found("case", id.to_string())),
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

/// Writes a case's resolution: its new status, resolver, time and sealed
/// note; a cleared case also remembers each hit's entry in its present form
/// for the party, so it does not alert again until its content changes.
pub fn store_resolution(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    resolved_by: &str,
    case: &Case,
    to: CaseStatus,
    note: &StoredNote,
) -> Result<()> {
    diesel::update(c::screening_cases.filter(c::id.eq(&case.id)))
        .set((
            c::status.eq(to.as_str()),
            c::resolved_at_us.eq(Some(to_us(now))),
            c::resolved_by.eq(Some(resolved_by)),
            c::note.eq(&note.body),
            c::note_key_id.eq(&note.key_id),
        ))
        .execute(conn)?;
    if to == CaseStatus::Cleared {
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
                    cl::case_id.eq(&case.id),
                    cl::cleared_at_us.eq(to_us(now)),
                ))
                .execute(conn)?;
        }
    }
    Ok(())
}

/// Sets case `case_id`'s status (an answer moves it to ANSWERED).
pub fn set_case_status(conn: &mut DbConnection, case_id: &str, to: CaseStatus) -> Result<()> {
    diesel::update(c::screening_cases.filter(c::id.eq(case_id)))
        .set(c::status.eq(to.as_str()))
        .execute(conn)?;
    Ok(())
}

/// Takes the refresh lease of `source` for `holder` until `until_us` when
/// it is free (never taken, expired, or already `holder`'s), returning the
/// source's stored validators; `None` while another replica holds it. The
/// caller holds the source's key lock, so two replicas never both win.
pub fn take_fetch_lease(
    conn: &mut DbConnection,
    source: &str,
    holder: &str,
    now_us: i64,
    until_us: i64,
) -> Result<Option<String>> {
    use crate::db::schema::screening_list_fetches::dsl as lf;
    let row: Option<(String, Option<String>, Option<i64>)> = lf::screening_list_fetches
        .find(source)
        .select((lf::validators, lf::lease_holder, lf::lease_until_us))
        .first(conn)
        .optional()?;
    match row {
        None => {
            diesel::insert_into(lf::screening_list_fetches)
                .values((
                    lf::source.eq(source),
                    lf::validators.eq("{}"),
                    lf::lease_holder.eq(holder),
                    lf::lease_until_us.eq(until_us),
                    lf::outcome.eq(""),
                ))
                .execute(conn)?;
            Ok(Some("{}".to_owned()))
        }
        Some((_, Some(h), Some(u))) if h != holder && u > now_us => Ok(None),
        Some((validators, _, _)) => {
            diesel::update(lf::screening_list_fetches.find(source))
                .set((lf::lease_holder.eq(holder), lf::lease_until_us.eq(until_us)))
                .execute(conn)?;
            Ok(Some(validators))
        }
    }
}

/// Ends `holder`'s lease of `source`, recording how the attempt ended and,
/// when given, the validators of the files now imported.
pub fn end_fetch_lease(
    conn: &mut DbConnection,
    source: &str,
    holder: &str,
    now_us: i64,
    validators: Option<&str>,
    outcome: &str,
) -> Result<()> {
    use crate::db::schema::screening_list_fetches::dsl as lf;
    let mine = lf::screening_list_fetches
        .filter(lf::source.eq(source))
        .filter(lf::lease_holder.eq(holder));
    diesel::update(mine)
        .set((
            lf::lease_holder.eq(None::<String>),
            lf::lease_until_us.eq(None::<i64>),
            lf::checked_at_us.eq(now_us),
            lf::outcome.eq(outcome),
        ))
        .execute(conn)?;
    if let Some(v) = validators {
        diesel::update(lf::screening_list_fetches.find(source))
            .set(lf::validators.eq(v))
            .execute(conn)?;
    }
    Ok(())
}

/// How the last refresh of `source` ended and when (`None`: never tried).
pub fn last_fetch(conn: &mut DbConnection, source: &str) -> Result<Option<(String, Option<i64>)>> {
    use crate::db::schema::screening_list_fetches::dsl as lf;
    Ok(lf::screening_list_fetches
        .find(source)
        .select((lf::outcome, lf::checked_at_us))
        .first(conn)
        .optional()?)
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
