//! UN Security Council Consolidated List XML: `INDIVIDUAL` and `ENTITY`
//! records with FIRST..FOURTH_NAME, aliases with a quality (`Low` ones are
//! weak), the original-script name, dates of birth, nationalities,
//! documents and addresses. Keyed by `REFERENCE_NUMBER` (e.g. `QDi.140`).

use std::collections::BTreeMap;

use super::xml::{Ev, walk};
use super::{ListFile, ParseError};
use crate::screening::model::{EntityKind, ListEntry};

#[derive(Default)]
struct Cur {
    e: ListEntry,
    parts: [String; 4],
    dataid: String,
    line: usize,
    alias_quality: String,
    alias_name: String,
    doc_type: String,
    doc_number: String,
    doc_country: String,
    dob: String,
}

/// Parses one UN consolidated XML file.
pub fn parse(f: &ListFile) -> Result<Vec<ListEntry>, ParseError> {
    let mut out: BTreeMap<String, ListEntry> = BTreeMap::new();
    let mut cur: Option<Cur> = None;
    walk(&f.name, &f.data, |path, ev, line| {
        match ev {
            Ev::Start { name, .. } if name == "INDIVIDUAL" || name == "ENTITY" => {
                let kind = if name == "INDIVIDUAL" {
                    EntityKind::Individual
                } else {
                    EntityKind::Organization
                };
                cur = Some(Cur {
                    e: ListEntry {
                        kind,
                        ..Default::default()
                    },
                    line,
                    ..Default::default()
                });
            }
            Ev::Text(t) => {
                let Some(c) = cur.as_mut() else { return Ok(()) };
                let (parent, el) = super::xml::parent_and_element(path);
                match (parent, el) {
                    (_, "FIRST_NAME") => c.parts[0] = t.to_owned(),
                    (_, "SECOND_NAME") => c.parts[1] = t.to_owned(),
                    (_, "THIRD_NAME") => c.parts[2] = t.to_owned(),
                    (_, "FOURTH_NAME") => c.parts[3] = t.to_owned(),
                    (_, "DATAID") => c.dataid = t.to_owned(),
                    (_, "REFERENCE_NUMBER") => c.e.id = t.to_owned(),
                    (_, "UN_LIST_TYPE") => ListEntry::push_unique(&mut c.e.programs, t),
                    (_, "NAME_ORIGINAL_SCRIPT") => c.e.push_alias(t, false),
                    (_, "COMMENTS1") => c.e.remarks = t.to_owned(),
                    ("INDIVIDUAL_ALIAS" | "ENTITY_ALIAS", "QUALITY") => c.alias_quality = t.to_owned(),
                    ("INDIVIDUAL_ALIAS" | "ENTITY_ALIAS", "ALIAS_NAME") => c.alias_name = t.to_owned(),
                    ("NATIONALITY", "VALUE") => ListEntry::push_unique(&mut c.e.countries, t),
                    ("INDIVIDUAL_ADDRESS" | "ENTITY_ADDRESS", "COUNTRY") => {
                        ListEntry::push_unique(&mut c.e.countries, t)
                    }
                    ("INDIVIDUAL_DATE_OF_BIRTH", "DATE" | "YEAR") => c.dob = t.to_owned(),
                    ("INDIVIDUAL_DATE_OF_BIRTH", "FROM_YEAR") if c.dob.is_empty() => c.dob = t.to_owned(),
                    ("INDIVIDUAL_DOCUMENT", "TYPE_OF_DOCUMENT") => c.doc_type = t.to_owned(),
                    ("INDIVIDUAL_DOCUMENT", "NUMBER") => c.doc_number = t.to_owned(),
                    ("INDIVIDUAL_DOCUMENT", "ISSUING_COUNTRY" | "COUNTRY_OF_ISSUE") => {
                        c.doc_country = t.to_owned()
                    }
                    _ => {}
                }
            }
            Ev::End { name } => {
                let Some(c) = cur.as_mut() else { return Ok(()) };
                match name {
                    "INDIVIDUAL_ALIAS" | "ENTITY_ALIAS" => {
                        let weak = c.alias_quality.to_ascii_lowercase().contains("low");
                        let n = std::mem::take(&mut c.alias_name);
                        c.e.push_alias(&n, weak);
                        c.alias_quality.clear();
                    }
                    "INDIVIDUAL_DATE_OF_BIRTH" => {
                        let d = std::mem::take(&mut c.dob);
                        ListEntry::push_unique(&mut c.e.dates_of_birth, &d);
                    }
                    "INDIVIDUAL_DOCUMENT" => {
                        let v = std::mem::take(&mut c.doc_number);
                        let k = std::mem::take(&mut c.doc_type);
                        let country = std::mem::take(&mut c.doc_country);
                        c.e.push_identifier(&k, &v, &country);
                    }
                    "INDIVIDUAL" | "ENTITY" => {
                        let Some(mut c) = cur.take() else { return Ok(()) };
                        let full = c
                            .parts
                            .iter()
                            .filter(|p| !p.is_empty())
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(" ");
                        if full.is_empty() {
                            return Err(ParseError::new(
                                &f.name,
                                format!("<{name}> at line {}", c.line),
                                "record has no FIRST_NAME",
                            ));
                        }
                        if c.e.id.is_empty() {
                            if c.dataid.is_empty() {
                                return Err(ParseError::new(
                                    &f.name,
                                    format!("<{name}> at line {}", c.line),
                                    "record has neither REFERENCE_NUMBER nor DATAID",
                                ));
                            }
                            c.e.id = format!("DATAID-{}", c.dataid);
                        }
                        c.e.primary_name = full;
                        let primary = c.e.primary_name.clone();
                        c.e.aliases.retain(|a| !a.name.eq_ignore_ascii_case(&primary));
                        let id = c.e.id.clone();
                        if out.insert(id.clone(), c.e).is_some() {
                            return Err(ParseError::new(
                                &f.name,
                                format!("line {}", c.line),
                                format!("duplicate REFERENCE_NUMBER {id}"),
                            ));
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    if out.is_empty() {
        return Err(ParseError::new(
            &f.name,
            "document",
            "no INDIVIDUAL or ENTITY records: not a UN consolidated list",
        ));
    }
    Ok(out.into_values().collect())
}
