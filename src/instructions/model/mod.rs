//! Controller instructions: what a tenant allows to be done with its data,
//! per data category, and the rules that check an instruction set before it
//! becomes a new immutable version.
//!
//! [`decide`] turns a stored set into the compiled, immutable snapshot the
//! hot path answers from.

pub mod decide;
pub mod holds;
pub mod retention;

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::subprocessors::model::TransferMechanism;
use crate::validate::Violations;

/// The purpose that is only allowed where a rule opts into anonymised
/// analytics, whatever its purpose list says.
pub const ANONYMIZED_ANALYTICS: &str = "analytics_anonymized";

/// Most category rules in one instruction set.
pub const MAX_RULES: usize = 200;
/// Most purposes or regions in one rule.
pub const MAX_LIST: usize = 300;
/// Longest retention: a hundred years.
pub const MAX_RETENTION_DAYS: u32 = 36_500;
/// Longest contract-end grace period: ten years.
pub const MAX_GRACE_DAYS: u32 = 3_650;
/// Longest reason text.
pub const MAX_REASON: usize = 2_000;

/// How one data category may be processed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryRule {
    /// Taxonomy key of the data category.
    pub category: String,
    /// Days data is kept; 0 keeps it until contract end.
    pub retention_days: u32,
    /// Taxonomy keys of the permitted purposes.
    pub purposes: Vec<String>,
    /// ISO 3166-1 alpha-2 codes where it may be processed; empty = anywhere.
    pub regions: Vec<String>,
    /// Processing suspended for the whole category (Art. 18-style).
    pub restricted: bool,
    /// Whether anonymised analytics may use this category.
    pub allow_anonymized_analytics: bool,
}

/// A tenant's whole instruction set, as one version stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct InstructionSet {
    /// One rule per covered category.
    pub rules: Vec<CategoryRule>,
    /// Days after contract end before all the tenant's data must be erased.
    pub termination_grace_days: u32,
    /// The mechanisms a sub-processor may rely on for a location outside
    /// the EEA (GDPR Chapter V); empty permits any. Versions written before
    /// the field existed read as empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permitted_transfer_mechanisms: Vec<TransferMechanism>,
}

/// Which taxonomy a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaxonomyKind {
    /// Data categories.
    Category,
    /// Processing purposes.
    Purpose,
}

impl TaxonomyKind {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Category => "category",
            Self::Purpose => "purpose",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "category" => Some(Self::Category),
            "purpose" => Some(Self::Purpose),
            _ => None,
        }
    }
}

/// The known category and purpose keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Taxonomy {
    /// Known data categories.
    pub categories: HashSet<String>,
    /// Known purposes.
    pub purposes: HashSet<String>,
}

impl Taxonomy {
    /// Whether `key` is a known key of `kind`.
    pub fn knows(&self, kind: TaxonomyKind, key: &str) -> bool {
        match kind {
            TaxonomyKind::Category => self.categories.contains(key),
            TaxonomyKind::Purpose => self.purposes.contains(key),
        }
    }
}

/// Whether `key` is well-formed for a new taxonomy entry: lower-case ASCII
/// letters, digits, `_` and `.`, starting with a letter, at most 64 long.
pub fn valid_taxonomy_key(key: &str) -> bool {
    let b = key.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'.')
}

/// Whether `code` is an assigned ISO 3166-1 alpha-2 country code.
pub fn valid_region(code: &str) -> bool {
    code.len() == 2
        && code.bytes().all(|c| c.is_ascii_uppercase())
        && isocountry::CountryCode::for_alpha2(code).is_ok()
}

impl InstructionSet {
    /// Checks the set against the taxonomy, reporting every problem with its
    /// field path under `prefix` (e.g. `instructions`).
    pub fn validate(&self, tax: &Taxonomy, prefix: &str, v: &mut Violations) {
        if self.rules.len() > MAX_RULES {
            v.add(format!("{prefix}.rules"), format!("at most {MAX_RULES} rules"));
        }
        if self.termination_grace_days > MAX_GRACE_DAYS {
            v.add(
                format!("{prefix}.termination_grace_days"),
                format!("must be at most {MAX_GRACE_DAYS}"),
            );
        }
        for (i, m) in self.permitted_transfer_mechanisms.iter().enumerate() {
            if self.permitted_transfer_mechanisms[..i].contains(m) {
                v.add(
                    format!("{prefix}.permitted_transfer_mechanisms[{i}]"),
                    format!("duplicate {}", m.as_str()),
                );
            }
        }
        let mut seen = HashSet::new();
        for (i, r) in self.rules.iter().enumerate().take(MAX_RULES) {
            let f = |name: &str| format!("{prefix}.rules[{i}].{name}");
            if r.category.is_empty() {
                v.add(f("category"), "is required");
            } else if !tax.knows(TaxonomyKind::Category, &r.category) {
                v.add(f("category"), format!("unknown category {:?}", r.category));
            } else if !seen.insert(r.category.as_str()) {
                v.add(
                    f("category"),
                    format!("duplicate rule for category {:?}", r.category),
                );
            }
            if r.retention_days > MAX_RETENTION_DAYS {
                v.add(
                    f("retention_days"),
                    format!("must be at most {MAX_RETENTION_DAYS}"),
                );
            }
            check_list(
                v,
                &f("purposes"),
                &r.purposes,
                |p| tax.knows(TaxonomyKind::Purpose, p),
                "unknown purpose",
            );
            check_list(
                v,
                &f("regions"),
                &r.regions,
                valid_region,
                "not an ISO 3166-1 alpha-2 code",
            );
        }
    }
}

fn check_list(v: &mut Violations, field: &str, items: &[String], ok: impl Fn(&str) -> bool, what: &str) {
    if items.len() > MAX_LIST {
        v.add(field, format!("at most {MAX_LIST} entries"));
        return;
    }
    let mut seen = HashSet::new();
    for (j, it) in items.iter().enumerate() {
        if !ok(it) {
            v.add(format!("{field}[{j}]"), format!("{what}: {it:?}"));
        } else if !seen.insert(it.as_str()) {
            v.add(format!("{field}[{j}]"), format!("duplicate {it:?}"));
        }
    }
}

/// A validated `PutInstructions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutInstructions {
    /// Tenant whose instructions change.
    pub tenant_id: String,
    /// The version the writer last saw (0 = none yet).
    pub expected_version: u64,
    /// The new set.
    pub set: InstructionSet,
    /// Why it changes, for the history.
    pub reason: String,
}

impl PutInstructions {
    /// Validates everything at once.
    pub fn parse(
        tenant_id: String,
        expected_version: u64,
        set: Option<InstructionSet>,
        reason: String,
        tax: &Taxonomy,
    ) -> Result<Self, Error> {
        let mut v = Violations::new();
        v.required_text("tenant_id", &tenant_id, 128);
        v.required_text("reason", &reason, MAX_REASON);
        v.check(
            expected_version > i64::MAX as u64,
            "expected_version",
            "is out of range",
        );
        match &set {
            None => v.add("instructions", "is required"),
            Some(s) => s.validate(tax, "instructions", &mut v),
        }
        v.finish()?;
        Ok(Self {
            tenant_id,
            expected_version,
            set: set.unwrap_or_default(),
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn tax() -> Taxonomy {
        Taxonomy {
            categories: ["contact", "recording", "transcript"].map(String::from).into(),
            purposes: ["service_delivery", "support", ANONYMIZED_ANALYTICS]
                .map(String::from)
                .into(),
        }
    }

    fn rule(cat: &str) -> CategoryRule {
        CategoryRule {
            category: cat.into(),
            retention_days: 30,
            purposes: vec!["service_delivery".into()],
            regions: vec!["DE".into(), "FR".into()],
            restricted: false,
            allow_anonymized_analytics: false,
        }
    }

    fn fields(e: Error) -> Vec<String> {
        match e {
            Error::Invalid(v) => v.into_iter().map(|f| f.field).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_good_set_passes() {
        let set = InstructionSet {
            rules: vec![rule("contact"), rule("recording")],
            termination_grace_days: 30,
            ..Default::default()
        };
        assert!(PutInstructions::parse("t1".into(), 0, Some(set), "initial".into(), &tax()).is_ok());
    }

    #[test]
    fn every_violation_is_named() {
        let mut bad = rule("contact");
        bad.purposes = vec!["marketing".into(), "support".into(), "support".into()];
        bad.regions = vec!["XX".into(), "de".into(), "DE".into()];
        bad.retention_days = MAX_RETENTION_DAYS + 1;
        let set = InstructionSet {
            rules: vec![bad, rule("contact"), rule("biometrics")],
            termination_grace_days: MAX_GRACE_DAYS + 1,
            ..Default::default()
        };
        let got =
            fields(PutInstructions::parse(String::new(), 0, Some(set), String::new(), &tax()).unwrap_err());
        assert_eq!(
            got,
            [
                "tenant_id",
                "reason",
                "instructions.termination_grace_days",
                "instructions.rules[0].retention_days",
                "instructions.rules[0].purposes[0]",
                "instructions.rules[0].purposes[2]",
                "instructions.rules[0].regions[0]",
                "instructions.rules[0].regions[1]",
                "instructions.rules[1].category",
                "instructions.rules[2].category",
            ]
        );
    }

    #[test]
    fn missing_set_is_invalid() {
        assert_eq!(
            fields(PutInstructions::parse("t".into(), 0, None, "r".into(), &tax()).unwrap_err()),
            ["instructions"]
        );
    }

    #[test]
    fn size_bounds() {
        let mut r = rule("contact");
        r.regions = vec!["DE".into(); MAX_LIST + 1];
        let set = InstructionSet {
            rules: vec![r],
            termination_grace_days: 0,
            ..Default::default()
        };
        assert_eq!(
            fields(PutInstructions::parse("t".into(), 0, Some(set), "r".into(), &tax()).unwrap_err()),
            ["instructions.rules[0].regions"]
        );
    }

    #[test]
    fn taxonomy_keys_and_regions() {
        assert!(valid_taxonomy_key("voice_biometrics"));
        assert!(valid_taxonomy_key("user.contact.email"));
        assert!(!valid_taxonomy_key("Voice"));
        assert!(!valid_taxonomy_key("1abc"));
        assert!(!valid_taxonomy_key(""));
        assert!(valid_region("US"));
        assert!(!valid_region("EU"));
        assert!(!valid_region("us"));
        assert!(!valid_region("USA"));
    }
}
