//! Identifiers of listed and screened parties: what type an identifier a
//! list writes is (its label varies by list: `Vessel Registration
//! Identification IMO`, `IMONumber`, `document-type="passport"`), and the
//! one normal form two spellings of the same number share, so that the
//! index can look a number up in a map instead of comparing strings.
//!
//! A vessel keeps its IMO number for life and a bank its BIC through every
//! rename, so an identifier that agrees is stronger evidence than any name,
//! and an identifier of the same type that differs is evidence against.

use serde::{Deserialize, Serialize};

/// The kinds of identifier screening tells apart. The wire enum
/// `IdentifierType` maps one to one.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum IdentifierType {
    /// IMO ship number: seven digits, the last a check digit.
    Imo,
    /// Maritime Mobile Service Identity: nine digits.
    Mmsi,
    /// Legal Entity Identifier (ISO 17442): twenty characters.
    Lei,
    /// SWIFT/BIC code (ISO 9362): eight or eleven characters.
    Bic,
    /// A passport number.
    Passport,
    /// A national identity number or card.
    NationalId,
    /// A tax number (NIT, RFC, INN, ...).
    TaxId,
    /// An aircraft's registration (tail) mark.
    AircraftRegistration,
    /// Any other number a list gives (company registration, ...).
    Other,
}

impl IdentifierType {
    /// The stable name used in explanations and storage.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// How people write the type in an explanation.
    pub fn label(self) -> &'static str {
        match self {
            Self::Imo => "IMO",
            Self::Mmsi => "MMSI",
            Self::Lei => "LEI",
            Self::Bic => "BIC",
            Self::Passport => "passport",
            Self::NationalId => "national id",
            Self::TaxId => "tax id",
            Self::AircraftRegistration => "aircraft registration",
            Self::Other => "identifier",
        }
    }

    /// How much a different value of this type counts against a match.
    /// The numbers a party has exactly one of (a ship's IMO number, an
    /// entity's LEI) weigh most; a person can hold several passports and a
    /// list rarely names them all, so those weigh less; `Other` covers too
    /// many kinds of number to say anything.
    pub fn mismatch_penalty(self) -> f64 {
        match self {
            Self::Imo | Self::Mmsi | Self::Lei | Self::Bic | Self::AircraftRegistration => 0.25,
            Self::Passport | Self::NationalId | Self::TaxId => 0.10,
            Self::Other => 0.0,
        }
    }

    /// The type a list's label stands for (labels as OFAC, UN, EU, UK and
    /// SECO write them, in English, Spanish or French).
    pub fn classify(label: &str) -> Self {
        let l = label.to_ascii_lowercase();
        let has = |w: &str| l.contains(w);
        let word = |w: &str| l.split(|c: char| !c.is_ascii_alphanumeric()).any(|t| t == w);
        if has("company") {
            // IMO also numbers ship-owning companies, differently checked;
            // company registers are too many kinds to compare.
            return Self::Other;
        }
        if has("imo") {
            Self::Imo
        } else if word("mmsi") {
            Self::Mmsi
        } else if word("lei") || has("legal entity") {
            Self::Lei
        } else if has("swift") || word("bic") {
            Self::Bic
        } else if has("passport") || has("pasaporte") || has("passeport") {
            Self::Passport
        } else if has("tax") || word("nit") || word("rfc") || word("inn") || word("tin") {
            Self::TaxId
        } else if has("tail number") || has("aircraft registration") {
            Self::AircraftRegistration
        } else if has("national id")
            || has("national identi")
            || has("id-card")
            || has("identity card")
            || has("cedula")
            || has("d.n.i")
            || word("dni")
            || l == "id"
        {
            Self::NationalId
        } else {
            Self::Other
        }
    }
}

/// An identifier in normal form: typed, its value as [`normalize`] left
/// it, and the issuing country as given (may be empty).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TypedIdentifier {
    /// What kind of number.
    #[serde(rename = "type")]
    pub id_type: IdentifierType,
    /// The normalised value.
    pub value: String,
    /// Issuing country, as written; empty when not known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub country: String,
}

impl TypedIdentifier {
    /// The key the index files it under: type and value.
    pub fn key(&self) -> String {
        format!("{}:{}", self.id_type.as_str(), self.value)
    }

    /// `IMO 9187655`, for explanations.
    pub fn describe(&self) -> String {
        format!("{} {}", self.id_type.label(), self.value)
    }

    /// Types and normalises a list's identifier: a value that is not what
    /// its type requires (an IMO number whose check digit fails) is kept as
    /// `Other` rather than wrongly matched or dropped; a value with nothing
    /// to compare is `None`.
    pub fn from_list(label: &str, value: &str, country: &str) -> Option<Self> {
        let t = IdentifierType::classify(label);
        let (id_type, value) = match normalize(t, value) {
            Ok(v) => (t, v),
            Err(_) => (IdentifierType::Other, compact(value)),
        };
        (!value.is_empty()).then(|| Self {
            id_type,
            value,
            country: country.trim().to_owned(),
        })
    }
}

/// Why a value is not an identifier of its type (for a screened party's
/// field violation).
pub type NotValid = &'static str;

/// Upper case, letters and digits only: `ep-mmh` and `EP MMH` are one mark.
pub fn compact(value: &str) -> String {
    value
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// True when `digits` (seven ASCII digits) carry a valid IMO check digit:
/// the first six weighted 7..2, summed, modulo 10, equal the seventh.
pub fn imo_check(digits: &str) -> bool {
    let d: Vec<u32> = digits.chars().filter_map(|c| c.to_digit(10)).collect();
    if d.len() != 7 || digits.len() != 7 {
        return false;
    }
    let sum: u32 = d[..6].iter().zip((2..=7).rev()).map(|(x, w)| x * w).sum();
    sum % 10 == d[6]
}

/// True when a 20-character LEI passes its ISO 7064 MOD 97-10 check.
pub fn lei_check(lei: &str) -> bool {
    if lei.len() != 20 {
        return false;
    }
    let mut rem: u64 = 0;
    for c in lei.chars() {
        let v = match c.to_digit(36) {
            Some(v) => u64::from(v),
            None => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// The normal form of `value` as an identifier of type `t`, or why it is
/// not one. Case and separators never matter; an IMO number may carry its
/// `IMO` prefix and must pass its check digit; an MMSI is nine digits; an
/// LEI twenty characters passing its check; a BIC is compared on its eight
/// characters naming the institution (the branch code does not make it
/// another bank).
pub fn normalize(t: IdentifierType, value: &str) -> Result<String, NotValid> {
    let c = compact(value);
    if c.is_empty() {
        return Err("is empty");
    }
    match t {
        IdentifierType::Imo => {
            let d = c.strip_prefix("IMO").unwrap_or(&c);
            if d.len() == 7 && d.chars().all(|x| x.is_ascii_digit()) && imo_check(d) {
                Ok(d.to_owned())
            } else {
                Err("is not an IMO number (seven digits, the last a valid check digit)")
            }
        }
        IdentifierType::Mmsi => {
            if c.len() == 9 && c.chars().all(|x| x.is_ascii_digit()) {
                Ok(c)
            } else {
                Err("is not an MMSI (nine digits)")
            }
        }
        IdentifierType::Lei => {
            if lei_check(&c) {
                Ok(c)
            } else {
                Err("is not an LEI (twenty characters with a valid check)")
            }
        }
        IdentifierType::Bic => {
            let letters = c
                .get(..6)
                .is_some_and(|p| p.chars().all(|x| x.is_ascii_alphabetic()));
            if (c.len() == 8 || c.len() == 11) && letters {
                Ok(c[..8].to_owned())
            } else {
                Err("is not a BIC (eight or eleven characters)")
            }
        }
        _ => Ok(c),
    }
}

/// How a party's identifiers compare with an entry's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IdentifierEvidence {
    /// Identifiers both carry.
    pub agree: Vec<TypedIdentifier>,
    /// Types both carry with no value in common.
    pub differ: Vec<IdentifierType>,
}

impl IdentifierEvidence {
    /// Compares a screened party's identifiers with a listed entry's.
    pub fn of(query: &[TypedIdentifier], listed: &[TypedIdentifier]) -> Self {
        let mut out = Self::default();
        for q in query {
            if listed
                .iter()
                .any(|l| l.id_type == q.id_type && l.value == q.value)
                && !out.agree.contains(q)
            {
                out.agree.push(q.clone());
            }
        }
        for q in query {
            let t = q.id_type;
            if t == IdentifierType::Other || out.differ.contains(&t) {
                continue;
            }
            let same_type = listed.iter().any(|l| l.id_type == t);
            let agrees = out.agree.iter().any(|a| a.id_type == t);
            if same_type && !agrees {
                out.differ.push(t);
            }
        }
        out
    }

    /// A name score moved by this evidence, and the explanation of why:
    /// an agreeing identifier lifts the score to at least
    /// [`IDENTIFIER_MATCH_SCORE`] whatever the name (a renamed ship is the
    /// same ship); a differing one of a type a party has once lowers it.
    pub fn apply(&self, score: f64) -> (f64, String) {
        let mut s = score;
        let mut notes = String::new();
        if !self.agree.is_empty() {
            s = (s + 0.1).max(IDENTIFIER_MATCH_SCORE);
            let what: Vec<String> = self.agree.iter().map(TypedIdentifier::describe).collect();
            notes.push_str(&format!(
                "; identifier agrees: {} (strong evidence, at least {IDENTIFIER_MATCH_SCORE:.2})",
                what.join(", ")
            ));
        }
        for t in &self.differ {
            let p = t.mismatch_penalty();
            if p > 0.0 {
                s -= p;
                notes.push_str(&format!("; {} differs -{p:.2}", t.label()));
            }
        }
        (s.clamp(0.0, 1.0), notes)
    }
}

/// The least score an entry whose identifier agrees with the party's gets.
pub const IDENTIFIER_MATCH_SCORE: f64 = 0.95;

#[cfg(test)]
mod tests {
    use super::*;

    fn id(t: IdentifierType, v: &str) -> TypedIdentifier {
        TypedIdentifier {
            id_type: t,
            value: v.into(),
            country: String::new(),
        }
    }

    #[test]
    fn imo_numbers_are_checked_and_normalised() {
        assert!(imo_check("9187655"));
        assert!(imo_check("9074729"));
        assert!(!imo_check("9187656"));
        assert_eq!(normalize(IdentifierType::Imo, "IMO 9187655").unwrap(), "9187655");
        assert_eq!(normalize(IdentifierType::Imo, "imo-9187655").unwrap(), "9187655");
        assert!(normalize(IdentifierType::Imo, "9187656").is_err());
        assert!(normalize(IdentifierType::Imo, "918765").is_err());
    }

    #[test]
    fn other_types_are_normalised() {
        assert_eq!(
            normalize(IdentifierType::Bic, "havi gb2l xxx").unwrap(),
            "HAVIGB2L"
        );
        assert_eq!(normalize(IdentifierType::Bic, "HAVIGB2L").unwrap(), "HAVIGB2L");
        assert!(normalize(IdentifierType::Bic, "12").is_err());
        assert_eq!(
            normalize(IdentifierType::Passport, "d 000-9720").unwrap(),
            "D0009720"
        );
        assert_eq!(
            normalize(IdentifierType::Mmsi, "572 469 210").unwrap(),
            "572469210"
        );
        assert!(normalize(IdentifierType::Mmsi, "5724692").is_err());
        assert!(lei_check("5493001KJTIIGC8Y1R12"));
        assert!(!lei_check("5493001KJTIIGC8Y1R13"));
        assert!(normalize(IdentifierType::Lei, "851683897").is_err());
        assert!(normalize(IdentifierType::Other, " - ").is_err());
    }

    #[test]
    fn list_labels_are_typed() {
        use IdentifierType::*;
        for (label, t) in [
            ("Vessel Registration Identification IMO", Imo),
            ("IMONumber", Imo),
            ("IMO", Imo),
            ("MMSI", Mmsi),
            ("SWIFT/BIC", Bic),
            ("Legal Entity Number", Lei),
            ("Passport", Passport),
            ("National passport", Passport),
            ("Número de pasaporte", Passport),
            ("National ID No.", NationalId),
            ("National Identification Number", NationalId),
            ("id-card", NationalId),
            ("Cedula No.", NationalId),
            ("Tax ID No.", TaxId),
            ("NIT #", TaxId),
            ("Aircraft Tail Number", AircraftRegistration),
            ("Company Number IMO", Other),
            ("Registration ID", Other),
        ] {
            assert_eq!(IdentifierType::classify(label), t, "{label}");
        }
    }

    #[test]
    fn list_identifiers_that_fail_their_check_are_kept_as_other() {
        let bad = TypedIdentifier::from_list("IMO", "1234568", "").unwrap();
        assert_eq!(bad.id_type, IdentifierType::Other);
        let good = TypedIdentifier::from_list("IMO", "IMO 9187655", "Panama").unwrap();
        assert_eq!(
            (good.id_type, good.value.as_str()),
            (IdentifierType::Imo, "9187655")
        );
        assert_eq!(good.key(), "imo:9187655");
        assert!(TypedIdentifier::from_list("Passport", "--", "").is_none());
    }

    #[test]
    fn agreement_lifts_and_difference_lowers() {
        use IdentifierType::*;
        let listed = [id(Imo, "9187655"), id(Mmsi, "256842000")];
        let e = IdentifierEvidence::of(&[id(Imo, "9187655")], &listed);
        assert_eq!(e.agree.len(), 1);
        let (s, why) = e.apply(0.2);
        assert!(s >= IDENTIFIER_MATCH_SCORE, "{s}");
        assert!(why.contains("IMO 9187655"), "{why}");
        let e = IdentifierEvidence::of(&[id(Imo, "9187629")], &listed);
        assert_eq!(e.differ, vec![Imo]);
        let (s, why) = e.apply(1.0);
        assert!((s - 0.75).abs() < 1e-9, "{s}");
        assert!(why.contains("IMO differs"));
        // A type the entry does not carry says nothing.
        let e = IdentifierEvidence::of(&[id(Passport, "X1")], &listed);
        assert_eq!(e, IdentifierEvidence::default());
        assert_eq!(e.apply(0.7).0, 0.7);
        // Other numbers never count against.
        let e = IdentifierEvidence::of(&[id(Other, "1")], &[id(Other, "2")]);
        assert_eq!(e.apply(0.7).0, 0.7);
    }
}
