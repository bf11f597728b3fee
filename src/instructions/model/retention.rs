//! Retention cutoffs: per category, the instant before which data must be
//! gone, so platform systems can purge without knowing the rules.

use chrono::{DateTime, Duration, Utc};

use crate::instructions::model::InstructionSet;

/// One category's cutoff; `None` keeps data until contract end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cutoff {
    /// Taxonomy key.
    pub category: String,
    /// Data created before this instant must be erased.
    pub cutoff: Option<DateTime<Utc>>,
}

/// Cutoffs for every rule of `set` as of `as_of`.
pub fn cutoffs(set: &InstructionSet, as_of: DateTime<Utc>) -> Vec<Cutoff> {
    set.rules
        .iter()
        .map(|r| Cutoff {
            category: r.category.clone(),
            cutoff: (r.retention_days > 0).then(|| as_of - Duration::days(i64::from(r.retention_days))),
        })
        .collect()
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
        };
        let now = Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap();
        let c = cutoffs(&set, now);
        assert_eq!(
            c[0].cutoff,
            Some(Utc.with_ymd_and_hms(2026, 1, 31, 12, 0, 0).unwrap())
        );
        assert_eq!(c[1].cutoff, None);
    }
}
