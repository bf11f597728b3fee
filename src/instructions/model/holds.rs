//! Legal holds: data a tenant must keep because litigation or an
//! investigation needs it (GDPR Art. 17(3)(e)), whatever an erasure request
//! or a retention period says. A hold covers one data subject (by
//! `subject_ref`) or the whole tenant, and some categories or all; it lasts
//! until released or until its `until` passes.
//!
//! Pure rules only: what a valid hold is, whether one is active at an
//! instant, which categories the active holds cover for a set of subject
//! refs, and how a task's categories split into what may be erased now and
//! what is withheld.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use sha2::Digest;

use crate::error::Result;
use crate::validate::Violations;

/// Longest reason text of a placement or release.
pub const MAX_HOLD_REASON: usize = 2_000;
/// Longest case reference.
pub const MAX_REFERENCE: usize = 200;
/// Longest subject ref (as `CheckProcessing` takes it).
pub const MAX_SUBJECT_REF: usize = 256;
/// Most categories one hold names.
pub const MAX_HOLD_CATEGORIES: usize = 100;

/// What the store keeps to find the holds of a subject: a hash of the
/// tenant and ref (the ref itself is sealed with the hold's texts); empty
/// for a hold over the whole tenant.
pub fn subject_hash(tenant_id: &str, subject_ref: &str) -> String {
    if subject_ref.is_empty() {
        return String::new();
    }
    hex::encode(sha2::Sha256::digest(format!(
        "proctor.legal_hold.v1\0{tenant_id}\0{subject_ref}"
    )))
}

/// One hold as the rules need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldScope {
    /// [`subject_hash`] of the subject; empty = the whole tenant.
    pub subject_hash: String,
    /// Categories held; empty = all.
    pub categories: Vec<String>,
    /// It ends by itself at this instant, if set.
    pub until: Option<DateTime<Utc>>,
    /// When it was released or ended; `None` while it has not.
    pub ended_at: Option<DateTime<Utc>>,
}

impl HoldScope {
    /// Whether the hold holds at `now`: not released, `until` not reached.
    pub fn active(&self, now: DateTime<Utc>) -> bool {
        self.ended_at.is_none() && self.until.is_none_or(|u| u > now)
    }

    /// Whether it covers data of a subject with any of `hashes` (every
    /// subject for a whole-tenant hold).
    pub fn covers_subject(&self, hashes: &[String]) -> bool {
        self.subject_hash.is_empty() || hashes.contains(&self.subject_hash)
    }
}

/// The categories held for some data: all, some, or none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Held {
    /// Every category is held.
    pub all: bool,
    /// The categories held (when not `all`).
    pub categories: BTreeSet<String>,
}

impl Held {
    /// The categories the active holds among `holds` cover for a subject
    /// with `hashes` at `now` (`hashes` empty: only whole-tenant holds).
    pub fn of<'a>(
        holds: impl IntoIterator<Item = &'a HoldScope>,
        hashes: &[String],
        now: DateTime<Utc>,
    ) -> Self {
        let mut h = Held::default();
        for hold in holds {
            if !hold.active(now) || !hold.covers_subject(hashes) {
                continue;
            }
            if hold.categories.is_empty() {
                h.all = true;
            }
            h.categories.extend(hold.categories.iter().cloned());
        }
        h
    }

    /// The categories any active hold covers, whoever its subject: what a
    /// retention cutoff over all of a category's data must respect.
    pub fn of_any_subject<'a>(holds: impl IntoIterator<Item = &'a HoldScope>, now: DateTime<Utc>) -> Self {
        let all_subjects: Vec<HoldScope> = holds
            .into_iter()
            .map(|h| HoldScope {
                subject_hash: String::new(),
                ..h.clone()
            })
            .collect();
        Self::of(&all_subjects, &[], now)
    }

    /// Nothing is held.
    pub fn is_empty(&self) -> bool {
        !self.all && self.categories.is_empty()
    }

    /// Whether `category` is held.
    pub fn covers(&self, category: &str) -> bool {
        self.all || self.categories.contains(category)
    }

    /// Splits a task's categories into (erase now, withheld).
    pub fn split(&self, categories: &[String]) -> (Vec<String>, Vec<String>) {
        categories.iter().cloned().partition(|c| !self.covers(c))
    }
}

/// A validated `PlaceLegalHold`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceHold {
    /// The tenant whose data is held (already scoped to the caller).
    pub tenant_id: String,
    /// The data subject; empty = the whole tenant.
    pub subject_ref: String,
    /// Categories held (checked against the taxonomy in the command);
    /// empty = all.
    pub categories: Vec<String>,
    /// Why (sealed at rest: it may name people).
    pub reason: String,
    /// The matter or case number it is for.
    pub reference: String,
    /// When it ends by itself, if ever.
    pub until: Option<DateTime<Utc>>,
}

impl PlaceHold {
    /// Checks every field at once; `until` must lie after `now`.
    pub fn parse(
        tenant_id: String,
        subject_ref: String,
        mut categories: Vec<String>,
        reason: String,
        reference: String,
        until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Self> {
        let mut v = Violations::new();
        v.required_text("tenant_id", &tenant_id, 128);
        v.max_len("subject_ref", &subject_ref, MAX_SUBJECT_REF);
        v.check(
            categories.len() > MAX_HOLD_CATEGORIES,
            "categories",
            format!("at most {MAX_HOLD_CATEGORIES} categories"),
        );
        for (i, c) in categories.iter().enumerate().take(MAX_HOLD_CATEGORIES) {
            v.check(
                categories[..i].contains(c),
                format!("categories[{i}]"),
                format!("duplicate {c:?}"),
            );
        }
        v.required_text("reason", &reason, MAX_HOLD_REASON);
        v.max_len("reference", &reference, MAX_REFERENCE);
        v.check(until.is_some_and(|u| u <= now), "until", "must lie in the future");
        v.finish()?;
        categories.sort();
        Ok(Self {
            tenant_id,
            subject_ref,
            categories,
            reason,
            reference,
            until,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use chrono::{Duration, TimeZone};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()
    }

    fn hold(subject: &str, cats: &[&str], until: Option<i64>, ended: bool) -> HoldScope {
        HoldScope {
            subject_hash: subject_hash("acme", subject),
            categories: cats.iter().map(|c| c.to_string()).collect(),
            until: until.map(|d| now() + Duration::days(d)),
            ended_at: ended.then(now),
        }
    }

    #[test]
    fn active_holds_cover_their_subject_and_categories() {
        let me = vec![subject_hash("acme", "ref-1")];
        let holds = [
            hold("ref-1", &["recording"], None, false),
            hold("ref-2", &[], None, false),
            hold("", &["transcript"], Some(3), false),
            hold("", &["contact"], Some(-1), false),
            hold("ref-1", &["agent"], None, true),
        ];
        let h = Held::of(&holds, &me, now());
        assert!(!h.all);
        assert_eq!(
            h.categories.iter().map(String::as_str).collect::<Vec<_>>(),
            ["recording", "transcript"]
        );
        assert!(h.covers("recording") && !h.covers("contact") && !h.covers("agent"));
        // Without a subject only whole-tenant holds count.
        let tenant_only = Held::of(&holds, &[], now());
        assert!(tenant_only.covers("transcript") && !tenant_only.covers("recording"));
        // `until` reached: no longer active.
        assert!(Held::of(&holds, &[], now() + Duration::days(3)).is_empty());
        // A hold of all categories for the other subject holds all of theirs.
        let other = Held::of(&holds, &[subject_hash("acme", "ref-2")], now());
        assert!(other.all && other.covers("anything"));
        // Whoever the subject, for retention.
        assert!(Held::of_any_subject(&holds, now()).all);
        assert!(Held::of_any_subject(&holds[..1], now()).covers("recording"));
        assert_eq!(
            h.split(&["contact".into(), "recording".into()]),
            (vec!["contact".into()], vec!["recording".into()])
        );
    }

    #[test]
    fn hashes_are_per_tenant_and_empty_for_the_whole_tenant() {
        assert_eq!(subject_hash("acme", ""), "");
        assert_ne!(subject_hash("acme", "r"), subject_hash("other", "r"));
        assert_eq!(subject_hash("acme", "r").len(), 64);
    }

    #[test]
    fn placement_names_every_bad_field() {
        let fields = |r: Result<PlaceHold>| match r {
            Err(Error::Invalid(v)) => v.into_iter().map(|f| f.field).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        let got = fields(PlaceHold::parse(
            String::new(),
            "x".repeat(MAX_SUBJECT_REF + 1),
            vec!["recording".into(), "recording".into()],
            String::new(),
            "r".repeat(MAX_REFERENCE + 1),
            Some(now()),
            now(),
        ));
        assert_eq!(
            got,
            [
                "tenant_id",
                "subject_ref",
                "categories[1]",
                "reason",
                "reference",
                "until"
            ]
        );
        let ok = PlaceHold::parse(
            "acme".into(),
            String::new(),
            vec!["transcript".into(), "recording".into()],
            "Litigation hold, case 4711".into(),
            "4711".into(),
            Some(now() + Duration::days(1)),
            now(),
        )
        .unwrap();
        assert_eq!(ok.categories, ["recording", "transcript"]);
    }
}
