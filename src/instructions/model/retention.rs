//! Retention cutoffs: per category, the instant before which data must be
//! gone, so platform systems can purge without knowing the rules.

use chrono::{DateTime, Duration, Utc};

use crate::instructions::model::InstructionSet;
use crate::instructions::model::holds::Held;

/// One category's cutoff; `None` keeps data until contract end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cutoff {
    /// Taxonomy key.
    pub category: String,
    /// Data created before this instant must be erased.
    pub cutoff: Option<DateTime<Utc>>,
    /// A legal hold covers the category: nothing of it may be purged (and
    /// `cutoff` is `None`).
    pub held: bool,
}

/// Cutoffs for every rule of `set` as of `as_of`.
pub fn cutoffs(set: &InstructionSet, as_of: DateTime<Utc>) -> Vec<Cutoff> {
    set.rules
        .iter()
        .map(|r| Cutoff {
            category: r.category.clone(),
            cutoff: (r.retention_days > 0).then(|| as_of - Duration::days(i64::from(r.retention_days))),
            held: false,
        })
        .collect()
}

/// Marks the categories `held` covers: held, and no cutoff while it lasts.
pub fn mark_held(cutoffs: &mut [Cutoff], held: &Held) {
    for c in cutoffs.iter_mut().filter(|c| held.covers(&c.category)) {
        c.held = true;
        c.cutoff = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instructions::model::CategoryRule;
    use chrono::TimeZone;

    #[test]
    fn zero_keeps_until_contract_end() {
        let rule = |c: &str, d| CategoryRule {
            category: c.into(),
            retention_days: d,
            purposes: vec![],
            regions: vec![],
            restricted: false,
            allow_anonymized_analytics: false,
        };
        let set = InstructionSet {
            rules: vec![rule("recording", 90), rule("contact", 0)],
            termination_grace_days: 0,
            ..Default::default()
        };
        let now = Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap();
        let c = cutoffs(&set, now);
        assert_eq!(
            c[0].cutoff,
            Some(Utc.with_ymd_and_hms(2026, 1, 31, 12, 0, 0).unwrap())
        );
        assert_eq!(c[1].cutoff, None);
        assert!(!c[0].held);
        let mut marked = c.clone();
        mark_held(
            &mut marked,
            &Held {
                all: false,
                categories: ["recording".to_string()].into(),
            },
        );
        assert!(marked[0].held && marked[0].cutoff.is_none());
        assert_eq!(marked[1], c[1], "other categories keep theirs");
    }
}
