//! What a list entry is once parsed, whatever its source format: one shape
//! for OFAC, UN, EU, UK, SECO, CSL and DPL, so the index, the diff and the
//! store know nothing of the formats.

use serde::{Deserialize, Serialize};

/// The kind of party a list entry (or a screened party) is; matching is
/// type aware (a person never strongly matches a company).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Default,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    /// A natural person.
    Individual,
    /// A company, organisation, group or other legal entity.
    Organization,
    /// A ship.
    Vessel,
    /// An aircraft.
    Aircraft,
    /// The list does not say.
    #[default]
    Unknown,
}

impl EntityKind {
    /// The stable name used in explanations and storage.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One name of an entry besides its primary name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    /// The name as the list writes it.
    pub name: String,
    /// A weak ("low quality") alias: the lists themselves say these are too
    /// vague to identify the party alone, so they count less.
    #[serde(default)]
    pub weak: bool,
}

/// An identifying document or number (passport, IMO, national id, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identifier {
    /// What kind of identifier, as the list names it (`Passport`, `IMO`).
    pub kind: String,
    /// Its value.
    pub value: String,
    /// The issuing country, when the list names it. Left out of the stored
    /// form when empty, so entries parsed before lists gave it keep their
    /// digests.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub country: String,
}

/// One sanctioned party as a list publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ListEntry {
    /// The list's own id (OFAC `ent_num`, UN `REFERENCE_NUMBER`, EU
    /// `logicalId`, UK unique id, SECO target id, ...): what diffs key on.
    pub id: String,
    /// Person, organisation, vessel or aircraft.
    pub kind: EntityKind,
    /// The name the list leads with.
    pub primary_name: String,
    /// Other names, strong and weak.
    #[serde(default)]
    pub aliases: Vec<Alias>,
    /// Dates of birth as written (`1971`, `1962-04-17`, `17 Apr 1962`).
    #[serde(default)]
    pub dates_of_birth: Vec<String>,
    /// Countries: nationalities, citizenships, addresses, flags.
    #[serde(default)]
    pub countries: Vec<String>,
    /// Sanctions programmes or regimes.
    #[serde(default)]
    pub programs: Vec<String>,
    /// Passports, IMO numbers and the like.
    #[serde(default)]
    pub identifiers: Vec<Identifier>,
    /// Free-text remarks.
    #[serde(default)]
    pub remarks: String,
}

impl ListEntry {
    /// Every name of the entry with its weakness, primary first.
    pub fn names(&self) -> impl Iterator<Item = (&str, bool)> {
        std::iter::once((self.primary_name.as_str(), false))
            .chain(self.aliases.iter().map(|a| (a.name.as_str(), a.weak)))
    }

    /// The birth years named by the entry, for date-of-birth agreement.
    pub fn birth_years(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self.dates_of_birth.iter().filter_map(|d| year_of(d)).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// A stable digest of the entry's content: what "changed" means in a
    /// diff, and what a cleared case remembers.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(json))
    }

    /// Adds an alias unless the entry already has that name.
    pub fn push_alias(&mut self, name: &str, weak: bool) {
        let name = name.trim();
        if name.is_empty()
            || name.eq_ignore_ascii_case(&self.primary_name)
            || self.aliases.iter().any(|a| a.name.eq_ignore_ascii_case(name))
        {
            return;
        }
        self.aliases.push(Alias {
            name: name.to_owned(),
            weak,
        });
    }

    /// The entry's identifiers typed and normalised, each once: what the
    /// index files the entry under and compares a party's identifiers with.
    pub fn typed_identifiers(&self) -> Vec<crate::screening::identifiers::TypedIdentifier> {
        let mut out: Vec<crate::screening::identifiers::TypedIdentifier> = Vec::new();
        for i in &self.identifiers {
            if let Some(t) =
                crate::screening::identifiers::TypedIdentifier::from_list(&i.kind, &i.value, &i.country)
                && !out.iter().any(|o| o.id_type == t.id_type && o.value == t.value)
            {
                out.push(t);
            }
        }
        out
    }

    /// Adds an identifier unless the entry already has it.
    pub fn push_identifier(&mut self, kind: &str, value: &str, country: &str) {
        let (kind, value, country) = (kind.trim(), value.trim(), country.trim());
        if value.is_empty()
            || self
                .identifiers
                .iter()
                .any(|i| i.kind == kind && i.value == value)
        {
            return;
        }
        self.identifiers.push(Identifier {
            kind: kind.to_owned(),
            value: value.to_owned(),
            country: country.to_owned(),
        });
    }

    /// Adds a value to a list field unless it is blank or already there.
    pub fn push_unique(list: &mut Vec<String>, value: &str) {
        let v = value.trim();
        if !v.is_empty() && !list.iter().any(|x| x == v) {
            list.push(v.to_owned());
        }
    }
}

/// The first plausible four-digit year in a free-form date.
pub fn year_of(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    (0..b.len().saturating_sub(3)).find_map(|i| {
        let w = &b[i..i + 4];
        let edge_ok =
            (i == 0 || !b[i - 1].is_ascii_digit()) && (i + 4 == b.len() || !b[i + 4].is_ascii_digit());
        if edge_ok && w.iter().all(u8::is_ascii_digit) {
            let y: i32 = std::str::from_utf8(w).ok()?.parse().ok()?;
            (1800..=2100).contains(&y).then_some(y)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn years_are_found_in_free_dates() {
        assert_eq!(year_of("17 Apr 1962"), Some(1962));
        assert_eq!(year_of("1971"), Some(1971));
        assert_eq!(year_of("dd/mm/1980"), Some(1980));
        assert_eq!(year_of("12345"), None);
        assert_eq!(year_of("circa"), None);
    }

    #[test]
    fn digest_changes_with_content() {
        let mut e = ListEntry {
            id: "1".into(),
            primary_name: "A B".into(),
            ..Default::default()
        };
        let d1 = e.digest();
        e.push_alias("C D", true);
        assert_ne!(d1, e.digest());
        e.push_alias("c d", false);
        assert_eq!(e.aliases.len(), 1);
    }

    #[test]
    fn entity_kinds_keep_their_names() {
        use strum::VariantArray;
        let all: Vec<&str> = EntityKind::VARIANTS.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            all,
            ["individual", "organization", "vessel", "aircraft", "unknown"]
        );
        for k in EntityKind::VARIANTS {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }
}
