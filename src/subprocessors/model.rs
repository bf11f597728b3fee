//! The sub-processor registry's rules, with no I/O: what a valid
//! registration and change notice are, the status a sub-processor has at a
//! given instant, and whether a tenant has authorised it (GDPR Art. 28(2)
//! and (4)).
//!
//! Nothing here is flipped by a timer. Every answer is computed from the
//! notices, the tenant's answers and mode history, and the instant asked
//! about. The decision hot path gets the same answer from
//! [`SubProcessorGrants`], compiled once per write into a step function per
//! sub-processor so a check is a hash lookup and a short scan, allocation-free.
//!
//! Why the step function is exact: decisions are only ever asked about the
//! present, and every input that is not a date fixed in advance (an answer,
//! a mode change, a screening outcome) is a write that recompiles the
//! snapshot. So the only instants at which the answer changes without a write
//! are notices' `effective_at`, and those are the steps.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use crate::error::{Error, Result};
use crate::instructions::model::{Taxonomy, TaxonomyKind, valid_region};
use crate::validate::Violations;

/// Objection window when `ProposeChange` names no deadline.
pub const DEFAULT_OBJECTION_WINDOW: Duration = Duration::days(30);
/// Longest legal name.
pub const MAX_NAME: usize = 300;
/// Longest description of services.
pub const MAX_SERVICES: usize = 2_000;
/// Longest objection reason.
pub const MAX_REASON: usize = 2_000;
/// Most categories or purposes in one scope.
pub const MAX_SCOPE: usize = 100;

/// European Economic Area members (EU 27 plus Iceland, Liechtenstein,
/// Norway): data processed there is not a transfer. Source: the EEA
/// Agreement's contracting parties as listed by the EFTA Secretariat
/// (efta.int/eea/eea-agreement), current since Croatia joined in 2014; no
/// maintained crate carries the membership, so it is kept here.
pub const EEA: [&str; 30] = [
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV", "LT",
    "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
];

/// Whether `country` (ISO 3166-1 alpha-2) lies in the EEA.
pub fn in_eea(country: &str) -> bool {
    EEA.contains(&country)
}

/// Legal basis of a transfer outside the EEA. Values match the wire enum.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumString, strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferMechanism {
    /// No transfer: processing stays in the EEA.
    Eea = 1,
    /// Adequacy decision of the Commission (Art. 45).
    Adequacy = 2,
    /// Standard contractual clauses (Art. 46(2)(c)).
    Scc = 3,
    /// EU-US Data Privacy Framework.
    Dpf = 4,
    /// Binding corporate rules (Art. 47).
    Bcr = 5,
    /// A derogation for a specific situation (Art. 49), e.g. explicit
    /// consent or a contract with the data subject.
    Derogation = 6,
}

impl TransferMechanism {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }

    /// From the wire value (0 and unknown values are `None`).
    pub fn from_i32(v: i32) -> Option<Self> {
        <Self as strum::VariantArray>::VARIANTS
            .iter()
            .copied()
            .find(|m| *m as i32 == v)
    }

    /// The mechanism as one bit of a [`MechanismSet`].
    pub fn bit(self) -> u16 {
        1 << (self as u8)
    }
}

/// A set of transfer mechanisms in one word, so the decision hot path can
/// test membership without allocating; empty means "any".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MechanismSet(u16);

impl MechanismSet {
    /// The set of `ms`.
    pub fn of(ms: &[TransferMechanism]) -> Self {
        Self(ms.iter().fold(0, |acc, m| acc | m.bit()))
    }

    /// Whether `m` is permitted: always when the set is empty (the tenant
    /// restricted nothing).
    pub fn permits(self, m: TransferMechanism) -> bool {
        self.0 == 0 || self.0 & m.bit() != 0
    }
}

/// Most processing locations of one sub-processor.
pub const MAX_LOCATIONS: usize = 50;

/// What a change notice announces. Values match the wire enum.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumString, strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum ChangeKind {
    /// Engaging the sub-processor.
    Add = 1,
    /// Ending its engagement.
    Remove = 2,
    /// Changing its categories or purposes.
    ScopeChange = 3,
}

impl ChangeKind {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }

    /// From the wire value.
    pub fn from_i32(v: i32) -> Option<Self> {
        <Self as strum::VariantArray>::VARIANTS
            .iter()
            .copied()
            .find(|m| *m as i32 == v)
    }
}

/// How a tenant authorises sub-processors. Values match the wire enum.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum AuthorizationMode {
    /// General written authorisation: bound by a change unless it objects
    /// before the deadline. The default, as in most processor contracts.
    #[default]
    General = 1,
    /// Specific authorisation: bound only by changes it approves.
    Specific = 2,
}

impl AuthorizationMode {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }

    /// From the wire value.
    pub fn from_i32(v: i32) -> Option<Self> {
        <Self as strum::VariantArray>::VARIANTS
            .iter()
            .copied()
            .find(|m| *m as i32 == v)
    }
}

/// Where the screening of a legal name stands: the hook the screening
/// capability sets.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumString, strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum Screening {
    /// Not screened yet, or a possible match awaits its case.
    Pending,
    /// Screened clear, or its case was cleared: may become ACTIVE.
    Clear,
    /// A confirmed sanctions match: BLOCKED.
    Confirmed,
}

impl Screening {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Parses the stored form (unknown reads as pending: fail closed).
    pub fn parse(s: &str) -> Self {
        match s {
            "clear" => Self::Clear,
            "confirmed" => Self::Confirmed,
            _ => Self::Pending,
        }
    }
}

/// A sub-processor's status, always computed. Values match the wire enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// No ADD in effect yet (or not screened clear).
    Proposed = 1,
    /// An ADD took effect and it is screened clear.
    Active = 2,
    /// A REMOVE took effect.
    Retired = 3,
    /// A confirmed sanctions match.
    Blocked = 4,
}

/// Categories and purposes a sub-processor may process.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope {
    /// Taxonomy keys of data categories.
    pub categories: Vec<String>,
    /// Taxonomy keys of purposes.
    pub purposes: Vec<String>,
}

impl Scope {
    /// Whether `self` is no wider than `outer`.
    pub fn within(&self, outer: &Scope) -> bool {
        self.categories.iter().all(|c| outer.categories.contains(c))
            && self.purposes.iter().all(|p| outer.purposes.contains(p))
    }

    /// What both allow.
    pub fn intersect(&self, other: &Scope) -> Scope {
        Scope {
            categories: self
                .categories
                .iter()
                .filter(|c| other.categories.contains(c))
                .cloned()
                .collect(),
            purposes: self
                .purposes
                .iter()
                .filter(|p| other.purposes.contains(p))
                .cloned()
                .collect(),
        }
    }

    /// Checks both lists against the taxonomy (non-empty, known, no
    /// duplicates); fields are `{prefix}categories[i]` etc.
    pub fn validate(&self, tax: &Taxonomy, prefix: &str, v: &mut Violations) {
        for (name, list, kind) in [
            ("categories", &self.categories, TaxonomyKind::Category),
            ("purposes", &self.purposes, TaxonomyKind::Purpose),
        ] {
            let field = format!("{prefix}{name}");
            if list.is_empty() {
                v.add(&field, "at least one is required");
            }
            if list.len() > MAX_SCOPE {
                v.add(&field, format!("at most {MAX_SCOPE}"));
                continue;
            }
            for (i, k) in list.iter().enumerate() {
                if !tax.knows(kind, k) {
                    v.add(format!("{field}[{i}]"), format!("unknown {}", kind.as_str()));
                } else if list[..i].contains(k) {
                    v.add(format!("{field}[{i}]"), "duplicate");
                }
            }
        }
    }
}

/// A registered sub-processor, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubProcessor {
    /// UUID.
    pub id: String,
    /// Registered company name.
    pub legal_name: String,
    /// ISO 3166-1 alpha-2 country where it processes.
    pub country: String,
    /// Every country where it processes (`[country]` unless registered
    /// with more); a location outside the EEA relies on
    /// `transfer_mechanism`.
    pub processing_locations: Vec<String>,
    /// What it does for the platform.
    pub services: String,
    /// The scope it was registered with (notices may change it later).
    pub scope: Scope,
    /// Legal basis of the transfer, if outside the EEA.
    pub transfer_mechanism: TransferMechanism,
    /// The sub-processor that engages it, for chains.
    pub parent_id: Option<String>,
    /// When the data-processing agreement was signed.
    pub dpa_signed_at: Option<DateTime<Utc>>,
    /// When the non-disclosure agreement was signed.
    pub nda_signed_at: Option<DateTime<Utc>>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// The screening gate.
    pub screening: Screening,
    /// When the screening state last changed.
    pub screened_at: Option<DateTime<Utc>>,
}

/// A change notice, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// UUID.
    pub id: String,
    /// Registry order (ties of `effective_at` are broken by it).
    pub seq: i64,
    /// What it is about.
    pub sub_processor_id: String,
    /// What it announces.
    pub kind: ChangeKind,
    /// The scope it sets (ADD, SCOPE_CHANGE); empty for REMOVE.
    pub scope: Scope,
    /// From when it applies; nobody is bound by it before.
    pub effective_at: DateTime<Utc>,
    /// Last instant (exclusive) a tenant may object.
    pub objection_deadline: DateTime<Utc>,
    /// When it was proposed.
    pub created_at: DateTime<Utc>,
}

/// One tenant's answer to one notice.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Answer {
    /// The notice reached the tenant's inbox.
    pub notified: bool,
    /// When the tenant approved it.
    pub approved_at: Option<DateTime<Utc>>,
    /// When the tenant objected.
    pub objected_at: Option<DateTime<Utc>>,
}

/// Everything registered: sub-processors and all their notices.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// In registration order (a parent always before its children).
    pub sub_processors: Vec<SubProcessor>,
    /// In registry order.
    pub notices: Vec<Notice>,
}

/// What one tenant has said: its mode history and its answers by notice id.
#[derive(Debug, Clone, Default)]
pub struct TenantAnswers {
    /// `(since, mode)`, oldest first; GENERAL before the first entry.
    pub modes: Vec<(DateTime<Utc>, AuthorizationMode)>,
    /// Answers by notice id.
    pub answers: HashMap<String, Answer>,
}

impl TenantAnswers {
    /// The mode in force at `t`.
    pub fn mode_at(&self, t: DateTime<Utc>) -> AuthorizationMode {
        self.modes
            .iter()
            .rev()
            .find(|(since, _)| *since <= t)
            .map(|(_, m)| *m)
            .unwrap_or_default()
    }

    /// The mode in force now (the latest).
    pub fn current_mode(&self) -> AuthorizationMode {
        self.modes.last().map(|(_, m)| *m).unwrap_or_default()
    }
}

impl Registry {
    /// One sub-processor by id.
    pub fn get(&self, id: &str) -> Option<&SubProcessor> {
        self.sub_processors.iter().find(|s| s.id == id)
    }

    /// Notices of `id` in the order they take effect.
    pub fn notices_of(&self, id: &str) -> Vec<&Notice> {
        let mut v: Vec<&Notice> = self.notices.iter().filter(|n| n.sub_processor_id == id).collect();
        v.sort_by_key(|n| (n.effective_at, n.seq));
        v
    }

    /// The scope `id` is declared to have once every notice so far has
    /// taken effect (what a new child or scope change is checked against).
    pub fn declared_scope(&self, id: &str) -> Option<Scope> {
        let sp = self.get(id)?;
        Some(
            self.notices_of(id)
                .into_iter()
                .rev()
                .find(|n| n.kind != ChangeKind::Remove)
                .map_or_else(|| sp.scope.clone(), |n| n.scope.clone()),
        )
    }

    /// The scope in effect at `now`: that of the last ADD or SCOPE_CHANGE
    /// in effect, else the registered one.
    pub fn scope_at(&self, id: &str, now: DateTime<Utc>) -> Option<Scope> {
        let sp = self.get(id)?;
        Some(
            self.notices_of(id)
                .into_iter()
                .rev()
                .find(|n| n.effective_at <= now && n.kind != ChangeKind::Remove)
                .map_or_else(|| sp.scope.clone(), |n| n.scope.clone()),
        )
    }

    /// Status at `now`: BLOCKED on a confirmed match; else by the last ADD
    /// or REMOVE in effect (none: PROPOSED); an ADD in effect makes it
    /// ACTIVE only when screened clear.
    pub fn status(&self, id: &str, now: DateTime<Utc>) -> Option<Status> {
        let sp = self.get(id)?;
        if sp.screening == Screening::Confirmed {
            return Some(Status::Blocked);
        }
        let last = self
            .notices_of(id)
            .into_iter()
            .rev()
            .find(|n| n.effective_at <= now && n.kind != ChangeKind::ScopeChange)
            .map(|n| n.kind);
        Some(match last {
            Some(ChangeKind::Remove) => Status::Retired,
            Some(ChangeKind::Add) if sp.screening == Screening::Clear => Status::Active,
            _ => Status::Proposed,
        })
    }

    /// Ids of `id`'s parents, the top-level one first.
    pub fn chain(&self, id: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = self.get(id).and_then(|s| s.parent_id.clone());
        while let Some(p) = cur {
            if out.contains(&p) || out.len() > self.sub_processors.len() {
                break;
            }
            cur = self.get(&p).and_then(|s| s.parent_id.clone());
            out.push(p);
        }
        out.reverse();
        out
    }

    /// The authorisation of `id` for a tenant as a step function: from each
    /// instant, the scope it is authorised for (`None`: not authorised).
    /// Its own notices only; the chain is checked by the caller.
    pub fn timeline(&self, id: &str, t: &TenantAnswers) -> Vec<(DateTime<Utc>, Option<Scope>)> {
        let Some(sp) = self.get(id) else {
            return Vec::new();
        };
        if sp.screening != Screening::Clear {
            // The gate: never authorised before screened clear; a confirmed
            // match withdraws it for everyone.
            return Vec::new();
        }
        let mut state: Option<Scope> = None;
        let mut steps = Vec::new();
        for n in self.notices_of(id) {
            let a = t.answers.get(&n.id).cloned().unwrap_or_default();
            let objected = a.objected_at.is_some();
            // Bound once the deadline passes without objection (GENERAL,
            // judged by the mode in force at the deadline) or by approval.
            let accepted = !objected
                && (a.approved_at.is_some() || t.mode_at(n.objection_deadline) == AuthorizationMode::General);
            state = match n.kind {
                ChangeKind::Add => accepted.then(|| n.scope.clone()),
                ChangeKind::Remove => None,
                ChangeKind::ScopeChange => match state {
                    None => None,
                    Some(_) if objected => None,
                    Some(_) if accepted => Some(n.scope.clone()),
                    // Not approved (SPECIFIC): only what both scopes allow.
                    Some(old) => Some(old.intersect(&n.scope)),
                },
            };
            steps.push((n.effective_at, state.clone()));
        }
        steps
    }

    /// What a tenant sees about every sub-processor that applies to it:
    /// those it was notified of or answered, those authorised for it whose
    /// scope touches a category its instructions cover (`covered`), and
    /// their parents.
    pub fn tenant_view(&self, t: &TenantAnswers, covered: &[String], now: DateTime<Utc>) -> Vec<TenantEntry> {
        let mut own: HashMap<&str, bool> = HashMap::new();
        for sp in &self.sub_processors {
            let authorized = self
                .timeline(&sp.id, t)
                .iter()
                .rev()
                .find(|(at, _)| *at <= now)
                .is_some_and(|(_, s)| s.is_some());
            own.insert(&sp.id, authorized);
        }
        let mode = t.current_mode();
        let mut entries: Vec<TenantEntry> = self
            .sub_processors
            .iter()
            .map(|sp| {
                let chain = self.chain(&sp.id);
                let authorized = own.get(sp.id.as_str()).copied().unwrap_or(false)
                    && chain
                        .iter()
                        .all(|p| own.get(p.as_str()).copied().unwrap_or(false));
                let notices = self.notices_of(&sp.id);
                let answer = |n: &Notice| t.answers.get(&n.id).cloned().unwrap_or_default();
                let notified = notices.iter().any(|n| t.answers.contains_key(&n.id));
                let touches = self
                    .scope_at(&sp.id, now)
                    .is_some_and(|s| s.categories.iter().any(|c| covered.contains(c)));
                let objected = notices.iter().any(|n| answer(n).objected_at.is_some());
                let pending_notice = notices.iter().any(|n| {
                    let a = answer(n);
                    a.objected_at.is_none()
                        && (n.effective_at > now
                            || (mode == AuthorizationMode::Specific
                                && n.kind != ChangeKind::Remove
                                && a.approved_at.is_none()))
                });
                TenantEntry {
                    id: sp.id.clone(),
                    chain,
                    authorized,
                    objected,
                    pending_notice,
                    applies: notified || (authorized && touches),
                }
            })
            .collect();
        // A sub-processor applies when one of its children does.
        let needed: Vec<String> = entries
            .iter()
            .filter(|e| e.applies)
            .flat_map(|e| e.chain.clone())
            .collect();
        for e in &mut entries {
            if needed.contains(&e.id) {
                e.applies = true;
            }
        }
        entries.retain(|e| e.applies);
        entries
    }

    /// Compiles what the decision hot path needs for one tenant.
    pub fn grants(&self, t: &TenantAnswers) -> SubProcessorGrants {
        let index: HashMap<Box<str>, u32> = self
            .sub_processors
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str().into(), i as u32))
            .collect();
        let entries = self
            .sub_processors
            .iter()
            .map(|sp| GrantEntry {
                parent: sp.parent_id.as_deref().and_then(|p| index.get(p).copied()),
                locations: sp
                    .locations()
                    .iter()
                    .filter_map(|c| <[u8; 2]>::try_from(c.as_bytes()).ok())
                    .collect(),
                transfers: sp.locations().iter().any(|c| !in_eea(c)),
                mechanism: sp.transfer_mechanism,
                steps: self
                    .timeline(&sp.id, t)
                    .into_iter()
                    .map(|(at, s)| (at, s.map(CompiledScope::from)))
                    .collect(),
            })
            .collect();
        SubProcessorGrants { index, entries }
    }
}

/// One row of a tenant's list of sub-processors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantEntry {
    /// The sub-processor.
    pub id: String,
    /// Its parents, top first.
    pub chain: Vec<String>,
    /// Authorised now, its whole chain included.
    pub authorized: bool,
    /// The tenant objected to one of its notices.
    pub objected: bool,
    /// A notice awaits its effective date or the tenant's approval.
    pub pending_notice: bool,
    applies: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct CompiledScope {
    categories: Box<[Box<str>]>,
    purposes: Box<[Box<str>]>,
}

impl From<Scope> for CompiledScope {
    fn from(s: Scope) -> Self {
        Self {
            categories: s.categories.iter().map(|c| c.as_str().into()).collect(),
            purposes: s.purposes.iter().map(|p| p.as_str().into()).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct GrantEntry {
    parent: Option<u32>,
    /// Where it processes, as ISO 3166-1 alpha-2 bytes.
    locations: Box<[[u8; 2]]>,
    /// Some location lies outside the EEA (a transfer).
    transfers: bool,
    /// What such a transfer relies on.
    mechanism: TransferMechanism,
    /// `(from, scope)` in time order; before the first step: not authorised.
    steps: Box<[(DateTime<Utc>, Option<CompiledScope>)]>,
}

/// One tenant's sub-processor authorisations, compiled for
/// [`crate::instructions::model::decide`]: immutable, read without locks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubProcessorGrants {
    index: HashMap<Box<str>, u32>,
    entries: Box<[GrantEntry]>,
}

impl SubProcessorGrants {
    /// Whether `id`, and every parent up its chain, is authorised at `now`
    /// for `category` and `purpose`. Unknown ids are not authorised.
    /// Allocation-free.
    pub fn permits(&self, id: &str, category: &str, purpose: &str, now: DateTime<Utc>) -> bool {
        self.verdict(id, category, purpose, now, None).authorized
    }

    /// Whether `id` and every parent up its chain keep to the transfer
    /// rules: each processes only in `regions` (empty: anywhere), and each
    /// that processes outside the EEA relies on a mechanism in `permitted`.
    /// Unknown ids pass (they are refused as not authorised). Allocation-free.
    pub fn transfer_permitted(&self, id: &str, regions: &[[u8; 2]], permitted: MechanismSet) -> bool {
        // The authorisation part of the walk is not asked for: any category.
        self.verdict(id, "", "", DateTime::<Utc>::MIN_UTC, Some((regions, permitted)))
            .transfer_permitted
    }

    /// Both questions a check naming `id` asks, in one lookup and one walk
    /// up the chain (the hot path asks both): is every link authorised at
    /// `now` for `category` and `purpose`, and, when `transfer` gives the
    /// rule's regions and the permitted mechanisms, does every link keep to
    /// them. An unknown id is not authorised and passes the transfer rules;
    /// a chain longer than the registry (a corrupt cycle) fails both.
    /// Allocation-free.
    pub fn verdict(
        &self,
        id: &str,
        category: &str,
        purpose: &str,
        now: DateTime<Utc>,
        transfer: Option<(&[[u8; 2]], MechanismSet)>,
    ) -> ChainVerdict {
        let Some(mut i) = self.index.get(id).copied() else {
            return ChainVerdict {
                authorized: false,
                transfer_permitted: true,
            };
        };
        let mut v = ChainVerdict {
            authorized: true,
            transfer_permitted: true,
        };
        for _ in 0..self.entries.len() {
            let e = &self.entries[i as usize];
            if v.authorized {
                let at = e.steps.partition_point(|(from, _)| *from <= now);
                v.authorized = at > 0
                    && e.steps[at - 1].1.as_ref().is_some_and(|s| {
                        s.categories.iter().any(|c| &**c == category)
                            && s.purposes.iter().any(|p| &**p == purpose)
                    });
            }
            if let Some((regions, permitted)) = transfer
                && v.transfer_permitted
            {
                v.transfer_permitted = (regions.is_empty()
                    || e.locations.iter().all(|l| regions.contains(l)))
                    && (!e.transfers || permitted.permits(e.mechanism));
            }
            let undecided = v.authorized || (transfer.is_some() && v.transfer_permitted);
            match e.parent {
                Some(p) if undecided => i = p,
                Some(_) => return v,
                None => return v,
            }
        }
        ChainVerdict {
            authorized: false,
            transfer_permitted: false,
        }
    }
}

/// What a walk up a sub-processor's chain found (see
/// [`SubProcessorGrants::verdict`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainVerdict {
    /// Every link is authorised for the check's category and purpose.
    pub authorized: bool,
    /// Every link processes within the rule's regions on a permitted
    /// mechanism (true when the transfer rules were not asked).
    pub transfer_permitted: bool,
}

impl SubProcessor {
    /// Where it processes: its locations, or `[country]` for a row
    /// registered before locations were recorded.
    pub fn locations(&self) -> std::borrow::Cow<'_, [String]> {
        if self.processing_locations.is_empty() {
            std::borrow::Cow::Owned(vec![self.country.clone()])
        } else {
            std::borrow::Cow::Borrowed(&self.processing_locations)
        }
    }
}

/// A validated `RegisterSubProcessor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Company name, trimmed.
    pub legal_name: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    /// Every country where it processes; `[country]` when the request named
    /// none.
    pub processing_locations: Vec<String>,
    /// What it does.
    pub services: String,
    /// What it may process.
    pub scope: Scope,
    /// Transfer basis.
    pub transfer_mechanism: TransferMechanism,
    /// Parent, for chains.
    pub parent_id: Option<String>,
    /// DPA signature.
    pub dpa_signed_at: Option<DateTime<Utc>>,
    /// NDA signature.
    pub nda_signed_at: Option<DateTime<Utc>>,
}

impl Registration {
    /// Checks everything that needs no other row: texts, country, scope
    /// against the taxonomy, the EEA transfer rule, dates not in the future.
    pub fn validate(&self, tax: &Taxonomy, now: DateTime<Utc>) -> Result<()> {
        let mut v = Violations::new();
        v.required_text("legal_name", &self.legal_name, MAX_NAME);
        v.required_text("services", &self.services, MAX_SERVICES);
        v.check(
            !valid_region(&self.country),
            "country",
            "not an ISO 3166-1 alpha-2 code",
        );
        self.scope.validate(tax, "", &mut v);
        let too_many = self.processing_locations.len() > MAX_LOCATIONS;
        v.check(
            too_many,
            "processing_locations",
            format!("at most {MAX_LOCATIONS} locations"),
        );
        let listed = if too_many {
            &[][..]
        } else {
            &self.processing_locations[..]
        };
        for (i, l) in listed.iter().enumerate() {
            if !valid_region(l) {
                v.add(
                    format!("processing_locations[{i}]"),
                    format!("not an ISO 3166-1 alpha-2 code: {l:?}"),
                );
            } else if self.processing_locations[..i].contains(l) {
                v.add(format!("processing_locations[{i}]"), format!("duplicate {l:?}"));
            }
        }
        let outside = (valid_region(&self.country) && !in_eea(&self.country))
            || self
                .processing_locations
                .iter()
                .any(|l| valid_region(l) && !in_eea(l));
        v.check(
            outside && self.transfer_mechanism == TransferMechanism::Eea,
            "transfer_mechanism",
            "a sub-processor processing outside the EEA needs a transfer mechanism (ADEQUACY, SCC, DPF, BCR or DEROGATION)",
        );
        for (f, t) in [
            ("dpa_signed_at", self.dpa_signed_at),
            ("nda_signed_at", self.nda_signed_at),
        ] {
            v.check(t.is_some_and(|t| t > now), f, "lies in the future");
        }
        v.check(
            self.parent_id
                .as_ref()
                .is_some_and(|p| p.is_empty() || p.len() > 64),
            "parent_id",
            "at most 64 characters",
        );
        v.finish()
    }

    /// Checks the scope against the parent's declared scope.
    pub fn check_parent(&self, parent_scope: &Scope) -> Result<()> {
        check_within_parent(&self.scope, parent_scope, "")
    }
}

/// A child's scope may never be wider than its parent's.
pub fn check_within_parent(scope: &Scope, parent: &Scope, prefix: &str) -> Result<()> {
    let mut v = Violations::new();
    for (i, c) in scope.categories.iter().enumerate() {
        v.check(
            !parent.categories.contains(c),
            format!("{prefix}categories[{i}]"),
            "not in the parent's scope",
        );
    }
    for (i, p) in scope.purposes.iter().enumerate() {
        v.check(
            !parent.purposes.contains(p),
            format!("{prefix}purposes[{i}]"),
            "not in the parent's scope",
        );
    }
    v.finish()
}

/// Checks a notice's dates: `effective_at` in the future, the deadline
/// (default `now` + 30 days) in the future and not after `effective_at`.
/// Returns the deadline to store.
pub fn notice_dates(
    now: DateTime<Utc>,
    effective_at: Option<DateTime<Utc>>,
    deadline: Option<DateTime<Utc>>,
) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let mut v = Violations::new();
    let Some(effective_at) = effective_at else {
        return Err(Error::invalid("effective_at", "is required"));
    };
    v.check(
        effective_at <= now,
        "effective_at",
        "must lie in the future: nothing is retroactive",
    );
    let defaulted = deadline.is_none();
    let deadline = deadline.unwrap_or(now + DEFAULT_OBJECTION_WINDOW);
    v.check(deadline <= now, "objection_deadline", "must lie in the future");
    v.check(
        deadline > effective_at,
        "objection_deadline",
        if defaulted {
            "defaults to 30 days from now, which is after effective_at: set it explicitly"
        } else {
            "must not be after effective_at"
        },
    );
    v.finish()?;
    Ok((effective_at, deadline))
}

/// Whether `kind` may follow the notices `existing` (all of one
/// sub-processor, in effect order): ADD only when not engaged (none yet, or
/// the last ADD/REMOVE is a REMOVE); REMOVE and SCOPE_CHANGE only when
/// engaged; never effective before a notice already announced, so the
/// history reads in order; never for a BLOCKED one.
pub fn check_sequence(
    kind: ChangeKind,
    existing: &[&Notice],
    effective_at: DateTime<Utc>,
    screening: Screening,
) -> Result<()> {
    if screening == Screening::Confirmed {
        return Err(Error::WrongState(
            "the sub-processor is BLOCKED by a confirmed sanctions match".into(),
        ));
    }
    if let Some(last) = existing.last()
        && last.effective_at > effective_at
    {
        return Err(Error::WrongState(format!(
            "effective_at precedes notice {} already announced for this sub-processor",
            last.id
        )));
    }
    let engaged = existing
        .iter()
        .rev()
        .find(|n| n.kind != ChangeKind::ScopeChange)
        .is_some_and(|n| n.kind == ChangeKind::Add);
    match kind {
        ChangeKind::Add if engaged => Err(Error::WrongState(
            "the sub-processor is already added (or an ADD is pending)".into(),
        )),
        ChangeKind::Remove | ChangeKind::ScopeChange if !engaged => Err(Error::WrongState(
            "the sub-processor is not added (or a REMOVE is pending)".into(),
        )),
        _ => Ok(()),
    }
}

/// Whether a tenant may still object to `n` at `now`.
pub fn check_objection(n: &Notice, now: DateTime<Utc>) -> Result<()> {
    if n.kind == ChangeKind::Remove {
        return Err(Error::WrongState("a removal cannot be objected to".into()));
    }
    if now >= n.objection_deadline {
        return Err(Error::WrongState(format!(
            "the objection deadline of notice {} has passed",
            n.id
        )));
    }
    Ok(())
}

/// Longest id accepted in a request.
pub const MAX_ID: usize = 64;

/// A required id field of a request: present, not blank, at most
/// [`MAX_ID`] characters, no NUL.
pub fn required_id(field: &str, value: String) -> Result<String> {
    let mut v = Violations::new();
    v.required_text(field, &value, MAX_ID);
    v.finish().map(|()| value)
}

/// A registration as the request states it (texts trimmed), before the
/// checks that need the taxonomy as committed: [`RegistrationRequest::parse`]
/// runs inside the registration's transaction, so a key added a moment ago
/// is accepted and one being removed is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationRequest {
    /// Company name, trimmed.
    pub legal_name: String,
    /// ISO 3166-1 alpha-2, trimmed.
    pub country: String,
    /// ISO 3166-1 alpha-2 codes, trimmed; empty means `[country]`.
    pub processing_locations: Vec<String>,
    /// What it does, trimmed.
    pub services: String,
    /// What it may process.
    pub scope: Scope,
    /// Transfer basis; None when the request named none (refused).
    pub transfer_mechanism: Option<TransferMechanism>,
    /// Parent, for chains.
    pub parent_id: Option<String>,
    /// DPA signature.
    pub dpa_signed_at: Option<DateTime<Utc>>,
    /// NDA signature.
    pub nda_signed_at: Option<DateTime<Utc>>,
}

impl RegistrationRequest {
    /// The checked [`Registration`], or one INVALID_ARGUMENT naming every
    /// bad field (a missing transfer mechanism first, then what
    /// [`Registration::validate`] finds).
    pub fn parse(self, tax: &Taxonomy, now: DateTime<Utc>) -> Result<Registration> {
        let mut v = Violations::new();
        v.check(
            self.transfer_mechanism.is_none(),
            "transfer_mechanism",
            "is required",
        );
        let processing_locations = if self.processing_locations.is_empty() {
            vec![self.country.clone()]
        } else {
            self.processing_locations
        };
        let reg = Registration {
            legal_name: self.legal_name,
            country: self.country,
            processing_locations,
            services: self.services,
            scope: self.scope,
            transfer_mechanism: self.transfer_mechanism.unwrap_or(TransferMechanism::Eea),
            parent_id: self.parent_id,
            dpa_signed_at: self.dpa_signed_at,
            nda_signed_at: self.nda_signed_at,
        };
        if let Err(Error::Invalid(more)) = reg.validate(tax, now) {
            for f in more {
                v.add(f.field, f.description);
            }
        }
        v.finish().map(|()| reg)
    }
}

/// A proposed change as parsed from the request: the sub-processor, the
/// kind, and the scope only a SCOPE_CHANGE carries. The dates and the
/// scope are checked against the registry in the command's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposeChange {
    /// The sub-processor the notice is about.
    pub sub_processor_id: String,
    /// What the notice announces.
    pub kind: ChangeKind,
    /// The new scope of a SCOPE_CHANGE (empty for the other kinds).
    pub scope: Scope,
    /// When the change takes effect (required; checked against `now`).
    pub effective_at: Option<DateTime<Utc>>,
    /// The objection deadline; None = the default window.
    pub objection_deadline: Option<DateTime<Utc>>,
}

impl ProposeChange {
    /// Parses the request's fields, reporting every bad one at once: the
    /// id, a missing kind, and a scope on a kind that carries none.
    pub fn parse(
        sub_processor_id: String,
        kind: i32,
        scope: Scope,
        effective_at: Option<DateTime<Utc>>,
        objection_deadline: Option<DateTime<Utc>>,
    ) -> Result<Self> {
        let mut v = Violations::new();
        v.required_text("sub_processor_id", &sub_processor_id, MAX_ID);
        let kind = ChangeKind::from_i32(kind);
        v.check(kind.is_none(), "kind", "is required");
        if kind != Some(ChangeKind::ScopeChange) {
            for (field, list) in [("categories", &scope.categories), ("purposes", &scope.purposes)] {
                v.check(!list.is_empty(), field, "only a SCOPE_CHANGE carries a scope");
            }
        }
        v.finish()?;
        let kind = kind.ok_or_else(|| Error::invalid("kind", "is required"))?;
        Ok(Self {
            sub_processor_id,
            kind,
            scope,
            effective_at,
            objection_deadline,
        })
    }
}

/// How a tenant answers a change notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `ApproveChange`.
    Approve,
    /// `ObjectToChange`.
    Object,
}

impl Reply {
    /// The audit action of the answer.
    pub fn action(self) -> &'static str {
        match self {
            Self::Approve => "sub_processor.approve",
            Self::Object => "sub_processor.object",
        }
    }
}

/// A tenant's answer to a notice, for the tenant already scoped to the
/// caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerNotice {
    /// The notice answered.
    pub notice_id: String,
    /// The tenant answering (for itself).
    pub tenant_id: String,
    /// Approve or object.
    pub reply: Reply,
    /// Why it objects (free text, kept in the row only; empty when none).
    pub reason: String,
}

impl AnswerNotice {
    /// Checks the notice id and the reason's length, reporting both at once.
    pub fn parse(notice_id: String, tenant_id: String, reply: Reply, reason: String) -> Result<Self> {
        let mut v = Violations::new();
        v.required_text("notice_id", &notice_id, MAX_ID);
        v.max_len("reason", &reason, MAX_REASON);
        v.finish()?;
        Ok(Self {
            notice_id,
            tenant_id,
            reply,
            reason,
        })
    }
}

/// A tenant's choice of authorisation mode, from now on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetMode {
    /// The tenant (already scoped to the caller).
    pub tenant_id: String,
    /// The mode it chooses.
    pub mode: AuthorizationMode,
}

impl SetMode {
    /// Parses the wire mode; none or an unknown value is INVALID_ARGUMENT.
    pub fn parse(tenant_id: String, mode: i32) -> Result<Self> {
        let mode = AuthorizationMode::from_i32(mode).ok_or_else(|| Error::invalid("mode", "is required"))?;
        Ok(Self { tenant_id, mode })
    }
}

/// How the customer-facing list is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON document.
    Json = 1,
    /// CSV with a header row.
    Csv = 2,
}

impl ExportFormat {
    /// From the wire value: anything but JSON or CSV is INVALID_ARGUMENT.
    pub fn from_i32(v: i32) -> Result<Self> {
        [Self::Json, Self::Csv]
            .into_iter()
            .find(|f| *f as i32 == v)
            .ok_or_else(|| Error::invalid("format", "must be EXPORT_FORMAT_JSON or EXPORT_FORMAT_CSV"))
    }
}

/// A sub-processor as the registry has it at one instant: the status and
/// scope computed from its notices, beside what was registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubProcessorView {
    /// As registered.
    pub sub_processor: SubProcessor,
    /// Its status at the instant.
    pub status: Status,
    /// The scope in effect at the instant.
    pub scope: Scope,
}

impl Registry {
    /// `s` at `now`: its computed status (PROPOSED when unknown) and the
    /// scope in effect (the registered one when no notice says otherwise).
    pub fn view(&self, s: &SubProcessor, now: DateTime<Utc>) -> SubProcessorView {
        SubProcessorView {
            status: self.status(&s.id, now).unwrap_or(Status::Proposed),
            scope: self.scope_at(&s.id, now).unwrap_or_else(|| s.scope.clone()),
            sub_processor: s.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, day, 0, 0, 0).unwrap()
    }

    fn scope(c: &[&str], p: &[&str]) -> Scope {
        Scope {
            categories: c.iter().map(|s| s.to_string()).collect(),
            purposes: p.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn sp(id: &str, parent: Option<&str>, screening: Screening) -> SubProcessor {
        SubProcessor {
            id: id.into(),
            legal_name: format!("{id} Ltd"),
            country: "DE".into(),
            processing_locations: vec!["DE".into()],
            services: "hosting".into(),
            scope: scope(
                &["recording", "transcript"],
                &["service_delivery", "transcription"],
            ),
            transfer_mechanism: TransferMechanism::Eea,
            parent_id: parent.map(Into::into),
            dpa_signed_at: None,
            nda_signed_at: None,
            created_at: t(1),
            screening,
            screened_at: None,
        }
    }

    fn notice(seq: i64, id: &str, kind: ChangeKind, s: Scope, deadline: u32, eff: u32) -> Notice {
        Notice {
            id: format!("n{seq}"),
            seq,
            sub_processor_id: id.into(),
            kind,
            scope: s,
            effective_at: t(eff),
            objection_deadline: t(deadline),
            created_at: t(1),
        }
    }

    fn full() -> Scope {
        scope(
            &["recording", "transcript"],
            &["service_delivery", "transcription"],
        )
    }

    fn reg(sps: Vec<SubProcessor>, notices: Vec<Notice>) -> Registry {
        Registry {
            sub_processors: sps,
            notices,
        }
    }

    fn answers(mode: AuthorizationMode, a: &[(&str, Answer)]) -> TenantAnswers {
        TenantAnswers {
            modes: vec![(t(1), mode)],
            answers: a.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        }
    }

    fn permits(r: &Registry, a: &TenantAnswers, id: &str, cat: &str, now: DateTime<Utc>) -> bool {
        r.grants(a).permits(id, cat, "transcription", now)
    }

    #[test]
    fn general_mode_is_bound_from_effective_at_without_objection() {
        let r = reg(
            vec![sp("a", None, Screening::Clear)],
            vec![notice(1, "a", ChangeKind::Add, full(), 10, 20)],
        );
        let g = answers(AuthorizationMode::General, &[]);
        assert!(!permits(&r, &g, "a", "recording", t(15)), "before effective_at");
        assert!(permits(&r, &g, "a", "recording", t(20)));
        assert!(!permits(&r, &g, "a", "contact", t(20)), "outside its scope");
        assert!(!r.grants(&g).permits("a", "recording", "billing", t(20)));
        assert!(!permits(&r, &g, "nope", "recording", t(20)), "unknown id");
        assert_eq!(r.status("a", t(15)), Some(Status::Proposed));
        assert_eq!(r.status("a", t(20)), Some(Status::Active));
    }

    #[test]
    fn objection_withdraws_and_specific_needs_approval() {
        let r = reg(
            vec![sp("a", None, Screening::Clear)],
            vec![notice(1, "a", ChangeKind::Add, full(), 10, 20)],
        );
        let objected = Answer {
            notified: true,
            objected_at: Some(t(5)),
            ..Default::default()
        };
        let g = answers(AuthorizationMode::General, &[("n1", objected)]);
        assert!(!permits(&r, &g, "a", "recording", t(25)));
        let s = answers(AuthorizationMode::Specific, &[]);
        assert!(!permits(&r, &s, "a", "recording", t(25)));
        let approved = Answer {
            approved_at: Some(t(3)),
            ..Default::default()
        };
        let s = answers(AuthorizationMode::Specific, &[("n1", approved)]);
        assert!(
            !permits(&r, &s, "a", "recording", t(15)),
            "approval does not pre-date"
        );
        assert!(permits(&r, &s, "a", "recording", t(25)));
    }

    #[test]
    fn mode_in_force_at_the_deadline_decides() {
        let r = reg(
            vec![sp("a", None, Screening::Clear)],
            vec![notice(1, "a", ChangeKind::Add, full(), 10, 20)],
        );
        // General until day 12: bound at the deadline (day 10); switching
        // to specific afterwards does not unbind.
        let mut a = answers(AuthorizationMode::General, &[]);
        a.modes.push((t(12), AuthorizationMode::Specific));
        assert!(permits(&r, &a, "a", "recording", t(25)));
        // Switched before the deadline: not bound without approval.
        let mut a = answers(AuthorizationMode::General, &[]);
        a.modes.push((t(8), AuthorizationMode::Specific));
        assert!(!permits(&r, &a, "a", "recording", t(25)));
    }

    #[test]
    fn remove_retires_and_scope_changes_narrow() {
        let r = reg(
            vec![sp("a", None, Screening::Clear)],
            vec![
                notice(1, "a", ChangeKind::Add, full(), 2, 3),
                notice(
                    2,
                    "a",
                    ChangeKind::ScopeChange,
                    scope(&["transcript"], &["transcription"]),
                    8,
                    10,
                ),
                notice(3, "a", ChangeKind::Remove, Scope::default(), 18, 20),
            ],
        );
        let g = answers(AuthorizationMode::General, &[]);
        assert!(permits(&r, &g, "a", "recording", t(5)));
        assert!(!permits(&r, &g, "a", "recording", t(10)), "narrowed");
        assert!(permits(&r, &g, "a", "transcript", t(10)));
        assert!(!permits(&r, &g, "a", "transcript", t(20)), "removed");
        assert_eq!(r.status("a", t(10)), Some(Status::Active));
        assert_eq!(r.status("a", t(20)), Some(Status::Retired));
        assert_eq!(r.scope_at("a", t(10)).unwrap().categories, ["transcript"]);
        // SPECIFIC without approving the scope change: what both allow.
        let s = answers(
            AuthorizationMode::Specific,
            &[(
                "n1",
                Answer {
                    approved_at: Some(t(1)),
                    ..Default::default()
                },
            )],
        );
        assert!(permits(&r, &s, "a", "transcript", t(10)));
        assert!(!permits(&r, &s, "a", "recording", t(10)));
    }

    #[test]
    fn chain_needs_every_parent() {
        let r = reg(
            vec![
                sp("root", None, Screening::Clear),
                sp("mid", Some("root"), Screening::Clear),
                sp("leaf", Some("mid"), Screening::Clear),
            ],
            vec![
                notice(1, "root", ChangeKind::Add, full(), 2, 3),
                notice(2, "mid", ChangeKind::Add, full(), 2, 3),
                notice(3, "leaf", ChangeKind::Add, full(), 2, 3),
                notice(
                    4,
                    "root",
                    ChangeKind::ScopeChange,
                    scope(&["transcript"], &["transcription"]),
                    8,
                    10,
                ),
            ],
        );
        let g = answers(AuthorizationMode::General, &[]);
        assert!(permits(&r, &g, "leaf", "recording", t(5)));
        assert!(!permits(&r, &g, "leaf", "recording", t(10)), "root narrowed");
        assert!(permits(&r, &g, "leaf", "transcript", t(10)));
        let objected_mid = Answer {
            objected_at: Some(t(1)),
            ..Default::default()
        };
        let notified = Answer {
            notified: true,
            ..Default::default()
        };
        let o = answers(
            AuthorizationMode::General,
            &[("n2", objected_mid), ("n3", notified)],
        );
        assert!(permits(&r, &o, "root", "recording", t(5)));
        assert!(!permits(&r, &o, "leaf", "recording", t(5)), "mid withdrawn");
        assert_eq!(r.chain("leaf"), ["root", "mid"]);
        let view = r.tenant_view(&o, &[], t(5));
        assert_eq!(view.len(), 3, "notified (leaf), answered (mid), their parent");
        let leaf = view.iter().find(|e| e.id == "leaf").unwrap();
        assert!(!leaf.authorized);
        let mid = view.iter().find(|e| e.id == "mid").unwrap();
        assert!(mid.objected && !mid.authorized);
    }

    #[test]
    fn screening_gate() {
        let n = vec![notice(1, "a", ChangeKind::Add, full(), 2, 3)];
        let g = answers(AuthorizationMode::General, &[]);
        let pending = reg(vec![sp("a", None, Screening::Pending)], n.clone());
        assert!(!permits(&pending, &g, "a", "recording", t(5)));
        assert_eq!(pending.status("a", t(5)), Some(Status::Proposed));
        let blocked = reg(vec![sp("a", None, Screening::Confirmed)], n);
        assert!(!permits(&blocked, &g, "a", "recording", t(5)));
        assert_eq!(blocked.status("a", t(5)), Some(Status::Blocked));
    }

    #[test]
    fn notice_dates_rules() {
        let now = t(1);
        assert!(notice_dates(now, None, None).is_err());
        // Default deadline 30 days out must not pass effective_at.
        assert!(notice_dates(now, Some(t(20)), None).is_err());
        let (e, d) = notice_dates(now, Some(now + Duration::days(40)), None).unwrap();
        assert_eq!(d, now + Duration::days(30));
        assert_eq!(e, now + Duration::days(40));
        assert!(
            notice_dates(now, Some(t(20)), Some(t(21))).is_err(),
            "after effective"
        );
        assert!(notice_dates(now, Some(t(20)), Some(now)).is_err(), "not future");
        assert!(notice_dates(now, Some(now), Some(now)).is_err(), "retroactive");
        assert!(
            notice_dates(now, Some(t(20)), Some(t(20))).is_ok(),
            "equal is fine"
        );
    }

    #[test]
    fn sequence_rules() {
        let add = notice(1, "a", ChangeKind::Add, full(), 2, 3);
        let rm = notice(2, "a", ChangeKind::Remove, Scope::default(), 5, 6);
        let c = Screening::Clear;
        assert!(check_sequence(ChangeKind::Add, &[], t(3), c).is_ok());
        assert!(check_sequence(ChangeKind::Remove, &[], t(3), c).is_err());
        assert!(check_sequence(ChangeKind::Add, &[&add], t(4), c).is_err());
        assert!(check_sequence(ChangeKind::ScopeChange, &[&add], t(4), c).is_ok());
        assert!(
            check_sequence(ChangeKind::ScopeChange, &[&add], t(2), c).is_err(),
            "out of order"
        );
        assert!(check_sequence(ChangeKind::Add, &[&add, &rm], t(7), c).is_ok());
        assert!(check_sequence(ChangeKind::Add, &[], t(3), Screening::Confirmed).is_err());
        assert!(check_objection(&add, t(1)).is_ok());
        assert!(check_objection(&add, t(2)).is_err(), "at the deadline");
        assert!(check_objection(&rm, t(1)).is_err());
    }

    #[test]
    fn registration_rules() {
        let tax = Taxonomy::default();
        let _ = tax;
        let mut r = Registration {
            legal_name: "Acme".into(),
            country: "US".into(),
            processing_locations: vec![],
            services: "speech to text".into(),
            scope: Scope::default(),
            transfer_mechanism: TransferMechanism::Eea,
            parent_id: None,
            dpa_signed_at: None,
            nda_signed_at: None,
        };
        let fields = |r: &Registration| match r.validate(&Taxonomy::default(), t(1)) {
            Err(Error::Invalid(v)) => v.into_iter().map(|f| f.field).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        let f = fields(&r);
        assert!(f.contains(&"transfer_mechanism".to_string()), "{f:?}");
        assert!(f.contains(&"categories".to_string()), "{f:?}");
        r.country = "DE".into();
        assert!(!fields(&r).contains(&"transfer_mechanism".to_string()));
        r.country = "XX".into();
        assert!(fields(&r).contains(&"country".to_string()));
        r.country = "US".into();
        r.transfer_mechanism = TransferMechanism::Scc;
        r.dpa_signed_at = Some(t(2));
        let f = fields(&r);
        assert!(f.contains(&"dpa_signed_at".to_string()) && !f.contains(&"transfer_mechanism".to_string()));
        assert!(in_eea("NO") && !in_eea("CH") && !in_eea("GB"));
    }

    #[test]
    fn locations_are_checked_and_any_outside_the_eea_needs_a_mechanism() {
        let mut r = Registration {
            legal_name: "Acme".into(),
            country: "DE".into(),
            processing_locations: vec!["DE".into(), "US".into()],
            services: "speech to text".into(),
            scope: scope(&["recording"], &["transcription"]),
            transfer_mechanism: TransferMechanism::Eea,
            parent_id: None,
            dpa_signed_at: None,
            nda_signed_at: None,
        };
        let tax = Taxonomy {
            categories: ["recording".to_owned()].into(),
            purposes: ["transcription".to_owned()].into(),
        };
        assert_eq!(violations(r.validate(&tax, t(1))), ["transfer_mechanism"]);
        r.transfer_mechanism = TransferMechanism::Scc;
        assert!(r.validate(&tax, t(1)).is_ok());
        r.processing_locations = vec!["FR".into(), "us".into(), "FR".into(), "XX".into()];
        assert_eq!(
            violations(r.validate(&tax, t(1))),
            [
                "processing_locations[1]",
                "processing_locations[2]",
                "processing_locations[3]"
            ]
        );
        r.processing_locations = vec!["DE".into(); MAX_LOCATIONS + 1];
        assert_eq!(violations(r.validate(&tax, t(1))), ["processing_locations"]);
        // No locations in the request: the country.
        let mut req = request();
        req.country = "FR".into();
        assert_eq!(req.parse(&tax, t(1)).unwrap().processing_locations, ["FR"]);
    }

    #[test]
    fn transfers_walk_the_whole_chain() {
        let mut parent = sp("p", None, Screening::Clear);
        parent.processing_locations = vec!["DE".into(), "US".into()];
        parent.transfer_mechanism = TransferMechanism::Scc;
        let child = sp("c", Some("p"), Screening::Clear);
        let mut old = sp("old", None, Screening::Clear);
        old.processing_locations = vec![];
        old.country = "IE".into();
        let reg = Registry {
            sub_processors: vec![parent, child, old],
            notices: vec![],
        };
        let g = reg.grants(&TenantAnswers::default());
        let de_fr: &[[u8; 2]] = &[*b"DE", *b"FR"];
        let any = MechanismSet::default();
        // The child stays in DE, but its parent also processes in the US.
        assert!(!g.transfer_permitted("c", de_fr, any));
        assert!(g.transfer_permitted("c", &[*b"DE", *b"US"], any));
        assert!(g.transfer_permitted("c", &[], any));
        // Mechanisms: SCC permitted or not.
        assert!(g.transfer_permitted("c", &[], MechanismSet::of(&[TransferMechanism::Scc])));
        assert!(!g.transfer_permitted("c", &[], MechanismSet::of(&[TransferMechanism::Bcr])));
        // A row without locations processes in its country.
        assert!(g.transfer_permitted("old", &[*b"IE"], MechanismSet::of(&[TransferMechanism::Bcr])));
        assert!(!g.transfer_permitted("old", de_fr, any));
        // Unknown ids are left to the authorisation check.
        assert!(g.transfer_permitted("nobody", de_fr, any));
        assert!(MechanismSet::default().permits(TransferMechanism::Dpf));
        assert!(!MechanismSet::of(&[TransferMechanism::Scc]).permits(TransferMechanism::Dpf));
    }

    fn violations<T: std::fmt::Debug>(r: Result<T>) -> Vec<String> {
        match r {
            Err(Error::Invalid(v)) => v.into_iter().map(|f| f.field).collect(),
            other => panic!("{other:?}"),
        }
    }

    fn request() -> RegistrationRequest {
        RegistrationRequest {
            legal_name: "Acme".into(),
            country: "US".into(),
            processing_locations: vec![],
            services: "speech to text".into(),
            scope: scope(&["recording"], &["transcription"]),
            transfer_mechanism: Some(TransferMechanism::Scc),
            parent_id: None,
            dpa_signed_at: None,
            nda_signed_at: None,
        }
    }

    #[test]
    fn registration_request_parses_against_the_taxonomy() {
        let tax = Taxonomy {
            categories: ["recording".to_owned()].into(),
            purposes: ["transcription".to_owned()].into(),
        };
        let reg = request().parse(&tax, t(1)).unwrap();
        assert_eq!(reg.transfer_mechanism, TransferMechanism::Scc);
        assert_eq!(reg.scope, scope(&["recording"], &["transcription"]));
        // A key the taxonomy lacks is named with its index.
        let f = violations(request().parse(&Taxonomy::default(), t(1)));
        assert_eq!(f, ["categories[0]", "purposes[0]"]);
        // No mechanism: reported first, beside everything else wrong, and
        // outside the EEA the missing basis is named again.
        let mut r = request();
        r.transfer_mechanism = None;
        r.legal_name = String::new();
        let f = violations(r.parse(&tax, t(1)));
        assert_eq!(f, ["transfer_mechanism", "legal_name", "transfer_mechanism"]);
    }

    #[test]
    fn proposals_parse_every_field_at_once() {
        let s = scope(&["recording"], &[]);
        let p = ProposeChange::parse(
            "sp".into(),
            ChangeKind::ScopeChange as i32,
            s.clone(),
            Some(t(3)),
            None,
        )
        .unwrap();
        assert_eq!(
            (p.kind, p.scope, p.effective_at),
            (ChangeKind::ScopeChange, s.clone(), Some(t(3)))
        );
        let f = violations(ProposeChange::parse(" ".into(), 0, s.clone(), None, None));
        assert_eq!(f, ["sub_processor_id", "kind", "categories"]);
        let f = violations(ProposeChange::parse(
            "sp".into(),
            ChangeKind::Add as i32,
            scope(&[], &["x"]),
            None,
            None,
        ));
        assert_eq!(f, ["purposes"]);
    }

    #[test]
    fn answers_modes_ids_and_formats_parse() {
        let a = AnswerNotice::parse("n".into(), "t".into(), Reply::Object, "late".into()).unwrap();
        assert_eq!((a.reply, a.reason.as_str()), (Reply::Object, "late"));
        let f = violations(AnswerNotice::parse(
            String::new(),
            "t".into(),
            Reply::Object,
            "x".repeat(MAX_REASON + 1),
        ));
        assert_eq!(f, ["notice_id", "reason"]);
        assert_eq!(Reply::Approve.action(), "sub_processor.approve");
        assert_eq!(Reply::Object.action(), "sub_processor.object");
        assert_eq!(
            SetMode::parse("t".into(), 2).unwrap().mode,
            AuthorizationMode::Specific
        );
        assert_eq!(violations(SetMode::parse("t".into(), 0)), ["mode"]);
        assert_eq!(required_id("id", "x".into()).unwrap(), "x");
        assert_eq!(violations(required_id("id", "y".repeat(MAX_ID + 1))), ["id"]);
        assert_eq!(ExportFormat::from_i32(2).unwrap(), ExportFormat::Csv);
        assert_eq!(violations(ExportFormat::from_i32(0)), ["format"]);
    }

    #[test]
    fn parent_scope_bounds_children() {
        let parent = scope(&["recording"], &["transcription"]);
        assert!(check_within_parent(&scope(&["recording"], &["transcription"]), &parent, "").is_ok());
        match check_within_parent(&scope(&["recording", "contact"], &["billing"]), &parent, "") {
            Err(Error::Invalid(v)) => {
                let f: Vec<_> = v.iter().map(|x| x.field.as_str()).collect();
                assert_eq!(f, ["categories[1]", "purposes[0]"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stored_forms_stay_what_the_database_holds() {
        use strum::VariantArray;
        let names = |v: Vec<&'static str>| v.join(",");
        assert_eq!(
            names(TransferMechanism::VARIANTS.iter().map(|m| m.as_str()).collect()),
            "eea,adequacy,scc,dpf,bcr,derogation"
        );
        assert_eq!(
            names(ChangeKind::VARIANTS.iter().map(|m| m.as_str()).collect()),
            "add,remove,scope_change"
        );
        assert_eq!(
            names(AuthorizationMode::VARIANTS.iter().map(|m| m.as_str()).collect()),
            "general,specific"
        );
        assert_eq!(
            names(Screening::VARIANTS.iter().map(|m| m.as_str()).collect()),
            "pending,clear,confirmed"
        );
        for m in TransferMechanism::VARIANTS {
            assert_eq!(TransferMechanism::parse(m.as_str()), Some(*m));
            assert_eq!(TransferMechanism::from_i32(*m as i32), Some(*m));
        }
        assert_eq!(TransferMechanism::from_i32(0), None);
        assert_eq!(ChangeKind::from_i32(3), Some(ChangeKind::ScopeChange));
        assert_eq!(Screening::parse("nonsense"), Screening::Pending, "fails closed");
    }
}
