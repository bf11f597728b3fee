//! The candidate index of one list version: every name of every entry,
//! folded once, with postings from retrieval features (exact tokens,
//! phonetic keys, three-letter prefixes and suffixes of longer tokens) to
//! names. A query looks up its own features, ranks the names they reach by
//! the rarity of what they share, and fully scores only the best few
//! ([`CANDIDATES`]): never a scan of every name. Token rarity (inverse
//! document frequency over the list's names) is also what the scorer weighs
//! tokens by.
//!
//! Indexes are immutable; a new list version builds a new one, swapped in
//! whole, so a screening never sees half a list.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::evidence::ListVersionRef;
use super::identifiers::{IdentifierEvidence, TypedIdentifier};
use super::matcher::{Params, PreparedName, TokenWeights, score, weights_of};
use super::model::{EntityKind, ListEntry};
use super::normalize::fold_text;

/// Names fully scored per query and list; the rest are ranked out by the
/// features they share with the query.
pub const CANDIDATES: usize = 96;
/// A feature shared by more names than this is too common to retrieve by
/// (e.g. the `mhmd` phonetic key); rarer features of the query do the work.
const MAX_POSTING: usize = 3000;

/// What the index keeps of an entry: only what hits and score adjustments
/// need, to stay small.
#[derive(Debug, Clone)]
pub struct IndexedEntry {
    /// The list's own id.
    pub id: String,
    /// Person, organisation, vessel, aircraft.
    pub kind: EntityKind,
    /// The name the list leads with.
    pub primary_name: String,
    /// Programmes.
    pub programs: Vec<String>,
    /// Birth years.
    pub birth_years: Vec<i32>,
    /// Countries, folded.
    pub countries: Vec<String>,
    /// Content digest (what cleared cases remember).
    pub digest: String,
    /// Identifiers, typed and normalised.
    pub identifiers: Vec<TypedIdentifier>,
    /// The entry's names: `names[first..end]` (an entry's names are
    /// indexed together), so an identifier lookup reaches them.
    pub names: (u32, u32),
}

#[derive(Debug, Clone)]
struct IndexedName {
    entry: u32,
    weak: bool,
    display: String,
    prepared: PreparedName,
    // Token weights, filled once the whole list is counted.
    weights: Vec<f64>,
}

/// A party to screen, prepared once for every list.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// The party's names (its name first, then aliases).
    pub names: Vec<PreparedName>,
    /// The party's type, `Unknown` when not given.
    pub kind: EntityKind,
    /// Birth year, when given.
    pub birth_year: Option<i32>,
    /// Country, folded, when given.
    pub country: Option<String>,
    /// Identifiers, typed and normalised.
    pub identifiers: Vec<TypedIdentifier>,
}

impl Query {
    /// Prepares a query from the party's fields.
    pub fn new(name: &str, aliases: &[String], kind: EntityKind, dob: &str, country: &str) -> Self {
        let names = std::iter::once(name)
            .chain(aliases.iter().map(String::as_str))
            .map(PreparedName::new)
            .filter(|n| !n.is_empty())
            .collect();
        let country = fold_text(country.trim());
        Self {
            names,
            kind,
            birth_year: super::model::year_of(dob),
            country: (!country.is_empty()).then_some(country),
            identifiers: Vec::new(),
        }
    }

    /// The same query carrying the party's identifiers (already checked
    /// and normalised).
    pub fn with_identifiers(mut self, identifiers: Vec<TypedIdentifier>) -> Self {
        self.identifiers = identifiers;
        self
    }
}

/// Which lists and programmes a screening is restricted to
/// (`ScreenRequest.sources` and `.programs`); empty means all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Sources to search; empty = every loaded source.
    pub sources: Vec<String>,
    /// Programme codes, folded by [`ListFilter::program_key`]; empty = all.
    pub programs: Vec<String>,
}

impl ListFilter {
    /// A filter of `sources` and `programs` as a caller wrote them.
    pub fn new(sources: &[String], programs: &[String]) -> Self {
        let mut programs: Vec<String> = programs.iter().map(|p| Self::program_key(p)).collect();
        programs.sort();
        programs.dedup();
        let mut sources: Vec<String> = sources.iter().map(|s| s.trim().to_owned()).collect();
        sources.sort();
        sources.dedup();
        Self { sources, programs }
    }

    /// How programme codes compare: trimmed, case ignored (`sdgt` = `SDGT`).
    pub fn program_key(p: &str) -> String {
        p.trim().to_uppercase()
    }

    /// True when `source` is searched.
    pub fn has_source(&self, source: &str) -> bool {
        self.sources.is_empty() || self.sources.iter().any(|s| s == source)
    }
}

/// One list entry a query reached.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Hit {
    /// The list it is on.
    pub source: String,
    /// The list's id for it.
    pub entry_id: String,
    /// Its primary name.
    pub primary_name: String,
    /// The list name that matched best.
    pub matched_name: String,
    /// 0..=1.
    pub score: f64,
    /// Which tokens agreed, and how DOB, country, type and alias strength
    /// moved the score.
    pub explanation: String,
    /// Programmes.
    pub programs: Vec<String>,
    /// Content digest of the entry.
    pub digest: String,
    /// The party's identifiers the entry carries too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matched_identifiers: Vec<TypedIdentifier>,
}

/// The index of one source's list version.
#[derive(Debug)]
pub struct Index {
    source: String,
    version: u64,
    sha256: String,
    entries: Vec<IndexedEntry>,
    names: Vec<IndexedName>,
    postings: HashMap<String, Vec<u32>>,
    /// Entries by identifier key ([`TypedIdentifier::key`]).
    by_identifier: HashMap<String, Vec<u32>>,
    /// Entries by programme ([`ListFilter::program_key`]).
    by_program: HashMap<String, Vec<u32>>,
    df: HashMap<String, u32>,
    max_idf: f64,
}

fn features(p: &PreparedName, out: &mut Vec<(String, f64)>) {
    for t in &p.tokens {
        out.push((format!("t:{}", t.text), 1.0));
        if t.key.len() >= 2 {
            out.push((format!("k:{}", t.key), 0.8));
        }
        if t.text.len() >= 5 {
            out.push((format!("p:{}", &t.text[..3]), 0.3));
            out.push((format!("s:{}", &t.text[t.text.len() - 3..]), 0.3));
        }
        if t.text.len() >= 7 {
            out.push((format!("p4:{}", &t.text[..4]), 0.3));
            out.push((format!("s4:{}", &t.text[t.text.len() - 4..]), 0.3));
        }
    }
    if p.tokens.len() > 1 && p.compact.len() >= 5 {
        out.push((format!("p:{}", &p.compact[..3]), 0.2));
    }
}

/// The retrieval features of every name of `q`, each once at its highest
/// weight: computed once per screening and looked up in every list.
fn query_features(q: &Query) -> Vec<(String, f64)> {
    let mut feats = Vec::new();
    for n in &q.names {
        features(n, &mut feats);
        // A nickname also retrieves by its formal names (Bob reaches Robert).
        for t in &n.tokens {
            for f in super::names::formal_names(&t.text) {
                feats.push((format!("t:{f}"), 0.8));
            }
        }
    }
    feats.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
    feats.dedup_by(|a, b| a.0 == b.0);
    feats
}

/// An entry's best name for a query, scored (rounded as hits are) but not
/// yet explained.
#[derive(Debug, Clone, Copy)]
struct Ranked {
    score: f64,
    entry: u32,
    name: u32,
    query_name: u8,
}

impl TokenWeights for Index {
    fn weight(&self, token: &str) -> f64 {
        match self.df.get(token) {
            Some(df) => (1.0 + self.names.len() as f64 / f64::from(*df)).ln(),
            None => self.max_idf,
        }
    }
}

impl Index {
    /// Builds the index of `source` version `version`.
    pub fn build(source: &str, version: u64, entries: impl IntoIterator<Item = ListEntry>) -> Self {
        let mut idx = Index {
            source: source.to_owned(),
            version,
            sha256: String::new(),
            entries: Vec::new(),
            names: Vec::new(),
            postings: HashMap::new(),
            by_identifier: HashMap::new(),
            by_program: HashMap::new(),
            df: HashMap::new(),
            max_idf: 1.0,
        };
        let mut feats = Vec::new();
        for e in entries {
            let eid = idx.entries.len() as u32;
            let digest = e.digest();
            let identifiers = e.typed_identifiers();
            for i in &identifiers {
                let ids = idx.by_identifier.entry(i.key()).or_default();
                if ids.last() != Some(&eid) {
                    ids.push(eid);
                }
            }
            for prog in &e.programs {
                let ids = idx.by_program.entry(ListFilter::program_key(prog)).or_default();
                if ids.last() != Some(&eid) {
                    ids.push(eid);
                }
            }
            let first_name = idx.names.len() as u32;
            let mut seen: Vec<String> = Vec::new();
            for (name, weak) in e.names() {
                let prepared = PreparedName::new(name);
                if prepared.is_empty() || seen.contains(&prepared.compact) {
                    continue;
                }
                seen.push(prepared.compact.clone());
                let nid = idx.names.len() as u32;
                feats.clear();
                features(&prepared, &mut feats);
                feats.sort_by(|a, b| a.0.cmp(&b.0));
                feats.dedup_by(|a, b| a.0 == b.0);
                for (f, _) in &feats {
                    idx.postings.entry(f.clone()).or_default().push(nid);
                }
                let mut toks: Vec<&str> = prepared.tokens.iter().map(|t| t.text.as_str()).collect();
                toks.sort_unstable();
                toks.dedup();
                for t in toks {
                    *idx.df.entry(t.to_owned()).or_default() += 1;
                }
                idx.names.push(IndexedName {
                    entry: eid,
                    weak,
                    display: name.to_owned(),
                    prepared,
                    weights: Vec::new(),
                });
            }
            idx.entries.push(IndexedEntry {
                birth_years: e.birth_years(),
                countries: e.countries.iter().map(|c| fold_text(c)).collect(),
                id: e.id,
                kind: e.kind,
                primary_name: e.primary_name,
                programs: e.programs,
                digest,
                identifiers,
                names: (first_name, idx.names.len() as u32),
            });
        }
        idx.max_idf = (1.0 + idx.names.len() as f64).ln();
        let weights: Vec<Vec<f64>> = idx.names.iter().map(|n| weights_of(&n.prepared, &idx)).collect();
        for (n, w) in idx.names.iter_mut().zip(weights) {
            n.weights = w;
        }
        for p in idx.postings.values_mut() {
            p.shrink_to_fit();
        }
        idx
    }

    /// The same index knowing the sha256 of the import it was built from,
    /// which screening evidence names.
    pub fn with_sha256(mut self, sha256: &str) -> Self {
        sha256.clone_into(&mut self.sha256);
        self
    }

    /// The list version this index is, as evidence names it.
    pub fn version_ref(&self) -> ListVersionRef {
        ListVersionRef {
            source: self.source.clone(),
            version: self.version,
            sha256: self.sha256.clone(),
        }
    }

    /// The source this index is of.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The list version it was built from.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Entries indexed.
    pub fn entries(&self) -> usize {
        self.entries.len()
    }

    /// Names indexed (primary names and aliases).
    pub fn names(&self) -> usize {
        self.names.len()
    }

    /// The entries under one of `programs` (looked up by programme), or
    /// `None` when every entry is allowed.
    fn allowed(&self, programs: &[String]) -> Option<HashSet<u32>> {
        if programs.is_empty() {
            return None;
        }
        Some(
            programs
                .iter()
                .filter_map(|p| self.by_program.get(p))
                .flatten()
                .copied()
                .collect(),
        )
    }

    /// Entries carrying one of the query's identifiers: looked up by key,
    /// never by a scan.
    fn identified(&self, q: &Query) -> Vec<u32> {
        let mut out: Vec<u32> = q
            .identifiers
            .iter()
            .filter_map(|i| self.by_identifier.get(&i.key()))
            .flatten()
            .copied()
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The names to score for `q`: those its name features rank best, and
    /// every name of an entry that carries one of its identifiers (a
    /// renamed vessel shares no name feature with its old name).
    fn candidates_for(&self, q: &Query, feats: &[(String, f64)], allowed: Option<&HashSet<u32>>) -> Vec<u32> {
        let mut names = self.candidates(feats, allowed);
        for e in self.identified(q) {
            if allowed.is_some_and(|a| !a.contains(&e)) {
                continue;
            }
            let (a, b) = self.entries[e as usize].names;
            names.extend((a..b).filter(|n| !names.contains(n)).collect::<Vec<_>>());
        }
        names
    }

    /// Identifier evidence of entry `entry` for `q`.
    fn identifier_evidence(&self, q: &Query, entry: u32) -> IdentifierEvidence {
        if q.identifiers.is_empty() {
            return IdentifierEvidence::default();
        }
        IdentifierEvidence::of(&q.identifiers, &self.entries[entry as usize].identifiers)
    }

    /// Ids of the names worth scoring for a query with retrieval features
    /// `feats` ([`query_features`]), best first.
    fn candidates(&self, feats: &[(String, f64)], allowed: Option<&HashSet<u32>>) -> Vec<u32> {
        // A dense accumulator (one slot per name) with the list of touched
        // slots: cheaper than hashing for the thousands of postings a query
        // walks. It is kept per thread and only touched slots are cleared,
        // so a query does not zero one slot per name of every list.
        thread_local! {
            static ACC: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        ACC.with_borrow_mut(|acc| {
            if acc.len() < self.names.len() {
                acc.resize(self.names.len(), 0.0);
            }
            self.accumulate(feats, &mut acc[..self.names.len()], allowed)
        })
    }

    /// Sums the rarity of the features each name shares with the query into
    /// `acc` (all zeros on entry and again on return) and keeps the best
    /// [`CANDIDATES`].
    fn accumulate(
        &self,
        feats: &[(String, f64)],
        acc: &mut [f32],
        allowed: Option<&HashSet<u32>>,
    ) -> Vec<u32> {
        let total = self.names.len().max(1) as f64;
        let mut touched: Vec<u32> = Vec::with_capacity(1024);
        let mut skipped: Option<&Vec<u32>> = None;
        for (f, w) in feats {
            let Some(post) = self.postings.get(f) else {
                continue;
            };
            // Affixes are weak evidence: too common ones are not worth walking.
            let cap = if f.starts_with("t:") || f.starts_with("k:") {
                MAX_POSTING
            } else {
                MAX_POSTING / 3
            };
            if post.len() > cap {
                skipped = Some(post);
                continue;
            }
            let idf = ((1.0 + total / post.len() as f64).ln() * w) as f32;
            for &nid in post {
                if let Some(a) = allowed
                    && !a.contains(&self.names[nid as usize].entry)
                {
                    continue;
                }
                let slot = &mut acc[nid as usize];
                if *slot == 0.0 {
                    touched.push(nid);
                }
                *slot += idf;
            }
        }
        if touched.is_empty()
            && let Some(post) = skipped
        {
            // Only very common features: score a bounded slice of them.
            return post
                .iter()
                .copied()
                .filter(|n| allowed.is_none_or(|a| a.contains(&self.names[*n as usize].entry)))
                .take(CANDIDATES)
                .collect();
        }
        let mut ranked: Vec<(f32, u32)> = touched
            .iter()
            .map(|&nid| (std::mem::take(&mut acc[nid as usize]), nid))
            .collect();
        let by_score = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if ranked.len() > CANDIDATES {
            ranked.select_nth_unstable_by(CANDIDATES, by_score);
            ranked.truncate(CANDIDATES);
        }
        ranked.sort_by(by_score);
        ranked.into_iter().map(|(_, nid)| nid).collect()
    }

    /// Hits of `q` on this list scoring at least `min_score`, best first,
    /// one per entry, at most `limit`.
    pub fn search(&self, q: &Query, p: &Params, min_score: f64, limit: usize) -> Vec<Hit> {
        self.search_in(q, p, min_score, limit, &[])
    }

    /// [`Index::search`] among the entries under one of `programs` (folded
    /// by [`ListFilter::program_key`]; empty = all).
    pub fn search_in(
        &self,
        q: &Query,
        p: &Params,
        min_score: f64,
        limit: usize,
        programs: &[String],
    ) -> Vec<Hit> {
        let allowed = self.allowed(programs);
        let cands = self.candidates_for(q, &query_features(q), allowed.as_ref());
        self.hits(q, p, min_score, limit, cands.into_iter())
    }

    /// The same answer as [`Index::search`] by scoring every name: the
    /// baseline the benchmark measures the index against, and what tests
    /// compare retrieval with. Never used to serve.
    pub fn search_exhaustive(&self, q: &Query, p: &Params, min_score: f64, limit: usize) -> Vec<Hit> {
        self.hits(q, p, min_score, limit, 0..self.names.len() as u32)
    }

    /// The explained hits of the best `limit` entries among `names`.
    fn hits(
        &self,
        q: &Query,
        p: &Params,
        min_score: f64,
        limit: usize,
        names: impl Iterator<Item = u32>,
    ) -> Vec<Hit> {
        self.rank(q, p, min_score, limit, names)
            .iter()
            .map(|r| self.hit(q, p, r))
            .collect()
    }

    /// The best `limit` entries among `names` for `q`, scored but not yet
    /// explained: explaining costs more than scoring, so only the hits that
    /// are finally returned are explained ([`Index::hit`]).
    fn rank(
        &self,
        q: &Query,
        p: &Params,
        min_score: f64,
        limit: usize,
        names: impl Iterator<Item = u32>,
    ) -> Vec<Ranked> {
        let qw: Vec<Vec<f64>> = q.names.iter().map(|n| weights_of(n, self)).collect();
        // Every name that scored, as (entry, adjusted score, order seen,
        // name, query name); an entry's best is its first at the top score.
        let mut scored: Vec<(u32, f64, u32, u32, u8)> = Vec::new();
        for nid in names {
            let n = &self.names[nid as usize];
            for (qi, qn) in q.names.iter().enumerate() {
                let c = score(qn, &qw[qi], &n.prepared, &n.weights, p);
                if c.score <= 0.0
                    && (q.identifiers.is_empty() || self.identifier_evidence(q, n.entry).agree.is_empty())
                {
                    continue;
                }
                let adjusted = self.adjust(q, n, c.score, false).0;
                scored.push((n.entry, adjusted, scored.len() as u32, nid, qi as u8));
            }
        }
        scored.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)).then(a.2.cmp(&b.2)));
        scored.dedup_by_key(|s| s.0);
        let mut ranked: Vec<Ranked> = scored
            .into_iter()
            .filter(|s| s.1 >= min_score)
            .map(|(entry, score, _, name, query_name)| Ranked {
                score: (score * 1000.0).round() / 1000.0,
                entry,
                name,
                query_name,
            })
            .collect();
        ranked.sort_by(|a, b| {
            b.score.total_cmp(&a.score).then_with(|| {
                self.entries[a.entry as usize]
                    .id
                    .cmp(&self.entries[b.entry as usize].id)
            })
        });
        ranked.truncate(limit);
        ranked
    }

    /// The hit a ranked entry stands for, with its explanation.
    fn hit(&self, q: &Query, p: &Params, r: &Ranked) -> Hit {
        let e = &self.entries[r.entry as usize];
        let n = &self.names[r.name as usize];
        let qn = &q.names[usize::from(r.query_name)];
        let c = score(qn, &weights_of(qn, self), &n.prepared, &n.weights, p).explain(qn, &n.prepared);
        let notes = self.adjust(q, n, c.score, true).1;
        let mut explanation = format!(
            "{} name \"{}\": {} (name score {:.3})",
            if n.weak {
                "weak alias"
            } else if n.display == e.primary_name {
                "primary"
            } else {
                "alias"
            },
            n.display,
            c.explain(),
            c.score
        );
        explanation.push_str(&notes);
        Hit {
            source: self.source.clone(),
            entry_id: e.id.clone(),
            primary_name: e.primary_name.clone(),
            matched_name: n.display.clone(),
            score: r.score,
            explanation,
            programs: e.programs.clone(),
            digest: e.digest.clone(),
            matched_identifiers: self.identifier_evidence(q, n.entry).agree,
        }
    }

    /// Moves a name score by alias strength, type, date of birth and country
    /// agreement; returns the score and what moved it.
    fn adjust(&self, q: &Query, n: &IndexedName, name_score: f64, explain: bool) -> (f64, String) {
        let e = &self.entries[n.entry as usize];
        let mut s = name_score;
        let mut notes = String::new();
        if n.weak {
            s *= 0.9;
            notes.push_str("; weak alias x0.90");
        }
        let clash = match (q.kind, e.kind) {
            (EntityKind::Unknown, _) | (_, EntityKind::Unknown) => false,
            (a, b) => a != b,
        };
        if clash {
            let person = |k| k == EntityKind::Individual;
            let f = if person(q.kind) || person(e.kind) {
                0.8
            } else {
                0.92
            };
            s *= f;
            if explain {
                notes.push_str(&format!(
                    "; type {} vs listed {} x{f:.2}",
                    q.kind.as_str(),
                    e.kind.as_str()
                ));
            }
        }
        if let (Some(y), false) = (q.birth_year, e.birth_years.is_empty()) {
            let d = e
                .birth_years
                .iter()
                .map(|ey| (ey - y).abs())
                .min()
                .unwrap_or(i32::MAX);
            if d == 0 {
                s += 0.05;
                notes.push_str("; birth year agrees +0.05");
            } else if d == 1 {
                s += 0.02;
                notes.push_str("; birth year within one +0.02");
            } else {
                s -= 0.15;
                notes.push_str("; birth year differs -0.15");
            }
        }
        if let (Some(c), false) = (&q.country, e.countries.is_empty()) {
            if e.countries.iter().any(|ec| ec == c || ec.contains(c.as_str())) {
                s += 0.03;
                notes.push_str("; country agrees +0.03");
            } else {
                s -= 0.05;
                notes.push_str("; country differs -0.05");
            }
        }
        let s = s.clamp(0.0, 1.0);
        if q.identifiers.is_empty() {
            return (s, notes);
        }
        let (s, id_notes) = self.identifier_evidence(q, n.entry).apply(s);
        notes.push_str(&id_notes);
        (s, notes)
    }
}

/// Every source's current index; what `Screen` consults. Cloned cheaply.
#[derive(Debug, Clone, Default)]
pub struct IndexSet {
    /// By source.
    pub by_source: HashMap<String, Arc<Index>>,
}

impl IndexSet {
    /// Hits across every list, best first, at most `limit`. Each list ranks
    /// its own best; only the overall best `limit` are explained.
    pub fn search(&self, q: &Query, p: &Params, min_score: f64, limit: usize) -> Vec<Hit> {
        self.search_in(q, p, min_score, limit, &ListFilter::default())
    }

    /// The list versions a screening with `filter` searches.
    pub fn versions(&self, filter: &ListFilter) -> Vec<ListVersionRef> {
        let mut v: Vec<ListVersionRef> = self
            .by_source
            .values()
            .filter(|i| filter.has_source(&i.source))
            .map(|i| i.version_ref())
            .collect();
        v.sort_by(|a, b| a.source.cmp(&b.source));
        v
    }

    /// [`IndexSet::search`] restricted to the sources and programmes of
    /// `filter`.
    pub fn search_in(
        &self,
        q: &Query,
        p: &Params,
        min_score: f64,
        limit: usize,
        filter: &ListFilter,
    ) -> Vec<Hit> {
        let feats = query_features(q);
        let mut ranked: Vec<(&Index, Ranked)> = self
            .by_source
            .values()
            .filter(|i| filter.has_source(&i.source))
            .flat_map(|i| {
                let allowed = i.allowed(&filter.programs);
                let cands = i.candidates_for(q, &feats, allowed.as_ref());
                i.rank(q, p, min_score, limit, cands.into_iter())
                    .into_iter()
                    .map(move |r| (i.as_ref(), r))
            })
            .collect();
        ranked.sort_by(|(ia, a), (ib, b)| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| ia.source.cmp(&ib.source))
                .then_with(|| {
                    ia.entries[a.entry as usize]
                        .id
                        .cmp(&ib.entries[b.entry as usize].id)
                })
        });
        ranked.truncate(limit);
        ranked.iter().map(|(i, r)| i.hit(q, p, r)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::screening::model::Alias;

    fn entry(id: &str, kind: EntityKind, name: &str, aliases: &[(&str, bool)]) -> ListEntry {
        ListEntry {
            id: id.into(),
            kind,
            primary_name: name.into(),
            aliases: aliases
                .iter()
                .map(|(n, w)| Alias {
                    name: (*n).into(),
                    weak: *w,
                })
                .collect(),
            dates_of_birth: vec!["1951".into()],
            countries: vec!["Iraq".into()],
            ..Default::default()
        }
    }

    fn idx() -> Index {
        Index::build(
            "test",
            1,
            vec![
                entry(
                    "1",
                    EntityKind::Individual,
                    "AL-ZAWAHIRI, Ayman",
                    &[("Abu Fatima", true)],
                ),
                entry(
                    "2",
                    EntityKind::Organization,
                    "BANK MELLI IRAN",
                    &[("Melli Bank PLC", false)],
                ),
                entry("3", EntityKind::Individual, "HUSSEIN, Saddam", &[]),
                entry("4", EntityKind::Individual, "SMITH, John Robert", &[]),
            ],
        )
    }

    fn q(name: &str, kind: EntityKind) -> Query {
        Query::new(name, &[], kind, "", "")
    }

    #[test]
    fn finds_reordered_and_transliterated_names() {
        let i = idx();
        let p = Params::default();
        let h = i.search(&q("Aiman Zawahiri", EntityKind::Individual), &p, 0.5, 5);
        assert_eq!(h[0].entry_id, "1", "{h:?}");
        let h = i.search(&q("Saddam Husayn", EntityKind::Individual), &p, 0.5, 5);
        assert_eq!(h[0].entry_id, "3");
        assert!(h[0].explanation.contains("phonetic"), "{}", h[0].explanation);
    }

    #[test]
    fn weak_aliases_and_type_clashes_count_less() {
        let i = idx();
        let p = Params::default();
        let weak = i.search(&q("Abu Fatima", EntityKind::Individual), &p, 0.0, 5);
        assert!((weak[0].score - 0.9).abs() < 1e-9, "{weak:?}");
        let as_org = i.search(&q("Ayman al Zawahiri", EntityKind::Organization), &p, 0.0, 5);
        assert!(as_org[0].score < 0.85);
        assert!(
            as_org[0]
                .explanation
                .contains("type organization vs listed individual")
        );
    }

    #[test]
    fn birth_year_and_country_move_the_score() {
        let i = idx();
        let p = Params::default();
        let base = i.search(&q("John Smith", EntityKind::Individual), &p, 0.0, 5)[0].score;
        let agree = i.search(
            &Query::new("John Smith", &[], EntityKind::Individual, "1951-02-03", "Iraq"),
            &p,
            0.0,
            5,
        );
        let differ = i.search(
            &Query::new("John Smith", &[], EntityKind::Individual, "1990", "France"),
            &p,
            0.0,
            5,
        );
        assert!(agree[0].score > base);
        assert!(differ[0].score < base);
        assert!(agree[0].explanation.contains("birth year agrees"));
    }

    #[test]
    fn index_agrees_with_exhaustive_scan() {
        let i = idx();
        let p = Params::default();
        for name in ["Bank Melli", "Melli Bank", "Zawahiri", "Jon Smith", "Nobody Here"] {
            let a = i.search(&q(name, EntityKind::Unknown), &p, 0.3, 5);
            let b = i.search_exhaustive(&q(name, EntityKind::Unknown), &p, 0.3, 5);
            assert_eq!(a, b, "{name}");
        }
    }

    #[test]
    fn token_weights_follow_rarity() {
        let i = idx();
        assert!(i.weight("zawahiri") > 0.0);
        assert!(i.weight("never-seen") >= i.weight("zawahiri"));
    }

    fn vessel(id: &str, name: &str, imo: &str) -> ListEntry {
        ListEntry {
            id: id.into(),
            kind: EntityKind::Vessel,
            primary_name: name.into(),
            identifiers: vec![crate::screening::model::Identifier {
                kind: "Vessel Registration Identification IMO".into(),
                value: imo.into(),
                country: String::new(),
            }],
            ..Default::default()
        }
    }

    fn imo(v: &str) -> TypedIdentifier {
        TypedIdentifier {
            id_type: crate::screening::identifiers::IdentifierType::Imo,
            value: v.into(),
            country: String::new(),
        }
    }

    #[test]
    fn vessels_of_one_name_are_told_apart_by_imo() {
        let i = Index::build(
            "test",
            1,
            vec![
                vessel("1", "SNOW STORM", "IMO 9187629"),
                vessel("2", "SNOW STORM", "IMO 9187655"),
            ],
        );
        let p = Params::default();
        let q =
            Query::new("Snow Storm", &[], EntityKind::Vessel, "", "").with_identifiers(vec![imo("9187655")]);
        let h = i.search(&q, &p, 0.0, 5);
        assert_eq!(h[0].entry_id, "2", "{h:?}");
        assert!(h[0].score >= 0.95);
        assert_eq!(h[0].matched_identifiers, vec![imo("9187655")]);
        assert!(
            h[0].explanation.contains("identifier agrees: IMO 9187655"),
            "{}",
            h[0].explanation
        );
        let other = h.iter().find(|x| x.entry_id == "1").unwrap();
        assert!(other.score <= 0.75, "{other:?}");
        assert!(other.explanation.contains("IMO differs"));
        assert!(other.matched_identifiers.is_empty());
    }

    #[test]
    fn a_renamed_vessel_is_found_by_its_imo_number() {
        let mut entries = vec![vessel("7", "ARK", "9187655")];
        entries.extend((0..200).map(|n| vessel(&format!("x{n}"), &format!("OCEAN TRADER {n}"), "")));
        let i = Index::build("test", 1, entries);
        let p = Params::default();
        let q = Query::new("Blue Horizon", &[], EntityKind::Vessel, "", "")
            .with_identifiers(vec![imo("9187655")]);
        let h = i.search(&q, &p, 0.5, 5);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h[0].entry_id, "7");
        assert!(h[0].score >= 0.95);
        // The lookup is by key: a number nobody carries reaches nothing.
        assert!(
            i.identified(&Query::default().with_identifiers(vec![imo("9187629")]))
                .is_empty()
        );
        assert_eq!(
            i.identified(&Query::default().with_identifiers(vec![imo("9187655")])),
            vec![0]
        );
    }
}
