//! UK Sanctions List (FCDO) XML: `Designation` records keyed by `UniqueID`
//! (e.g. `RUS0251`), names as `Name1..Name6` (Name6 the family name) with a
//! `NameType` (casing varies in the real data) and an `AliasStrength`,
//! non-Latin names, regime, DOBs with `dd`/`mm` placeholders, passports,
//! national ids, IMO numbers and flags. A record without a UniqueID cannot
//! be diffed or cited, so it is skipped.

use std::collections::BTreeMap;

use super::xml::{Ev, walk};
use super::{ListFile, ParseError};
use crate::screening::model::{EntityKind, ListEntry};

#[derive(Default)]
struct Cur {
    e: ListEntry,
    line: usize,
    parts: [String; 6],
    name_type: String,
    strength: String,
}

/// Parses one UK FCDO XML file.
pub fn parse(f: &ListFile) -> Result<Vec<ListEntry>, ParseError> {
    let mut out: BTreeMap<String, ListEntry> = BTreeMap::new();
    let mut cur: Option<Cur> = None;
    let mut saw_root = false;
    walk(&f.name, &f.data, |path, ev, line| {
        match ev {
            Ev::Start {
                name: "Designations", ..
            } => saw_root = true,
            Ev::Start {
                name: "Designation", ..
            } => {
                cur = Some(Cur {
                    line,
                    ..Default::default()
                })
            }
            Ev::Text(t) => {
                let Some(c) = cur.as_mut() else { return Ok(()) };
                let (_, el) = super::xml::parent_and_element(path);
                match el {
                    "UniqueID" => c.e.id = t.trim().to_owned(),
                    "Name1" => c.parts[0] = t.to_owned(),
                    "Name2" => c.parts[1] = t.to_owned(),
                    "Name3" => c.parts[2] = t.to_owned(),
                    "Name4" => c.parts[3] = t.to_owned(),
                    "Name5" => c.parts[4] = t.to_owned(),
                    "Name6" => c.parts[5] = t.to_owned(),
                    "NameType" => c.name_type = t.to_ascii_lowercase(),
                    "AliasStrength" => c.strength = t.to_ascii_lowercase(),
                    "NameNonLatinScript" => c.e.push_alias(t, false),
                    "RegimeName" => ListEntry::push_unique(&mut c.e.programs, t),
                    "IndividualEntityShip" => {
                        c.e.kind = match t.to_ascii_lowercase().as_str() {
                            "individual" => EntityKind::Individual,
                            "entity" => EntityKind::Organization,
                            "ship" => EntityKind::Vessel,
                            _ => EntityKind::Unknown,
                        }
                    }
                    "DOB" => ListEntry::push_unique(&mut c.e.dates_of_birth, t),
                    "Nationality" | "AddressCountry" | "CurrentBelievedFlagOfShip" | "CountryOfBirth" => {
                        ListEntry::push_unique(&mut c.e.countries, t)
                    }
                    "PassportNumber" | "NationalIdentifierNumber" | "IMONumber" => {
                        let kind = match el {
                            "PassportNumber" => "Passport",
                            "IMONumber" => "IMO",
                            _ => "National ID",
                        };
                        c.e.push_identifier(kind, t, "");
                    }
                    "OtherInformation" => c.e.remarks = t.to_owned(),
                    _ => {}
                }
            }
            Ev::End { name: "Name" } => {
                let Some(c) = cur.as_mut() else { return Ok(()) };
                let full = c
                    .parts
                    .iter()
                    .filter(|p| !p.trim().is_empty())
                    .map(|p| p.trim())
                    .collect::<Vec<_>>()
                    .join(" ");
                c.parts = Default::default();
                let primary = c.name_type.contains("primary");
                let weak = c.strength.contains("low");
                if primary && c.e.primary_name.is_empty() {
                    c.e.primary_name = full;
                } else {
                    c.e.push_alias(&full, weak);
                }
                c.name_type.clear();
                c.strength.clear();
            }
            Ev::End { name: "Designation" } => {
                let Some(mut c) = cur.take() else { return Ok(()) };
                if c.e.id.is_empty() {
                    return Ok(());
                }
                if c.e.primary_name.is_empty() {
                    if c.e.aliases.is_empty() {
                        return Err(ParseError::new(
                            &f.name,
                            format!("<Designation> at line {}", c.line),
                            format!("{} has no name", c.e.id),
                        ));
                    }
                    c.e.primary_name = c.e.aliases.remove(0).name;
                }
                let id = c.e.id.clone();
                if out.insert(id.clone(), c.e).is_some() {
                    return Err(ParseError::new(
                        &f.name,
                        format!("line {}", c.line),
                        format!("duplicate UniqueID {id}"),
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    if !saw_root {
        return Err(ParseError::new(
            &f.name,
            "document",
            "root is not a UK <Designations>",
        ));
    }
    Ok(out.into_values().collect())
}
