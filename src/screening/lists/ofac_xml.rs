//! OFAC's XML publication of the SDN list (`sdn.xml`, schema `sdn.xsd`;
//! the non-SDN consolidated list uses the same schema): `sdnEntry` records
//! keyed by `uid` (the same number as the CSV set's `ent_num`, so diffs
//! across the two formats line up), names split into `firstName` and
//! `lastName`, `akaList` aliases with a `category` (`weak` ones count
//! less), programmes, identifiers, addresses, nationalities, citizenships,
//! dates of birth, vessel flags and remarks. Names are composed the way the
//! CSV set writes them (`LAST, First`), so an entry reads the same whichever
//! format it was imported from.

use std::collections::BTreeMap;

use super::xml::{Ev, walk};
use super::{ListFile, ParseError};
use crate::screening::model::{EntityKind, ListEntry};

/// The entry being read, with the pieces that close with their element.
#[derive(Default)]
struct Cur {
    e: ListEntry,
    first: String,
    last: String,
    kind: String,
    line: usize,
    aka_first: String,
    aka_last: String,
    aka_category: String,
    id_type: String,
    id_number: String,
    id_country: String,
}

/// `LAST, First` as the CSV set writes an individual's name; the last name
/// alone when there is no first name (entities, vessels, aircraft).
fn compose(first: &str, last: &str) -> String {
    match (first.trim(), last.trim()) {
        ("", l) => l.to_owned(),
        (f, "") => f.to_owned(),
        (f, l) => format!("{l}, {f}"),
    }
}

fn kind_of(file: &str, line: usize, t: &str) -> Result<EntityKind, ParseError> {
    match t.to_ascii_lowercase().as_str() {
        "individual" => Ok(EntityKind::Individual),
        "entity" | "" => Ok(EntityKind::Organization),
        "vessel" => Ok(EntityKind::Vessel),
        "aircraft" => Ok(EntityKind::Aircraft),
        other => Err(ParseError::new(
            file,
            format!("<sdnType> at line {line}"),
            format!("unknown sdnType {other:?}"),
        )),
    }
}

/// Parses one OFAC SDN (or consolidated) XML file.
pub fn parse(f: &ListFile) -> Result<Vec<ListEntry>, ParseError> {
    let mut out: BTreeMap<u64, ListEntry> = BTreeMap::new();
    let mut cur: Option<Cur> = None;
    let mut saw_list = false;
    walk(&f.name, &f.data, |path, ev, line| {
        match ev {
            Ev::Start { name: "sdnList", .. } => saw_list = true,
            Ev::Start { name: "sdnEntry", .. } => {
                cur = Some(Cur {
                    line,
                    ..Default::default()
                });
            }
            Ev::Text(t) => {
                let Some(c) = cur.as_mut() else { return Ok(()) };
                let (parent, el) = super::xml::parent_and_element(path);
                match (parent, el) {
                    ("sdnEntry", "uid") => c.e.id = t.to_owned(),
                    ("sdnEntry", "firstName") => c.first = t.to_owned(),
                    ("sdnEntry", "lastName") => c.last = t.to_owned(),
                    ("sdnEntry", "sdnType") => c.kind = t.to_owned(),
                    ("sdnEntry", "remarks") => c.e.remarks = t.to_owned(),
                    ("programList", "program") => ListEntry::push_unique(&mut c.e.programs, t),
                    ("aka", "firstName") => c.aka_first = t.to_owned(),
                    ("aka", "lastName") => c.aka_last = t.to_owned(),
                    ("aka", "category") => c.aka_category = t.to_owned(),
                    ("id", "idType") => c.id_type = t.to_owned(),
                    ("id", "idNumber") => c.id_number = t.to_owned(),
                    ("id", "idCountry") => c.id_country = t.to_owned(),
                    ("address" | "nationality" | "citizenship", "country") | ("vesselInfo", "vesselFlag") => {
                        ListEntry::push_unique(&mut c.e.countries, t)
                    }
                    ("dateOfBirthItem", "dateOfBirth") => ListEntry::push_unique(&mut c.e.dates_of_birth, t),
                    _ => {}
                }
            }
            Ev::End { name } => {
                let Some(c) = cur.as_mut() else { return Ok(()) };
                match name {
                    "aka" => {
                        let n = compose(
                            &std::mem::take(&mut c.aka_first),
                            &std::mem::take(&mut c.aka_last),
                        );
                        let weak = std::mem::take(&mut c.aka_category).eq_ignore_ascii_case("weak");
                        c.e.push_alias(&n, weak);
                    }
                    "id" => {
                        let kind = std::mem::take(&mut c.id_type);
                        let value = std::mem::take(&mut c.id_number);
                        let country = std::mem::take(&mut c.id_country);
                        c.e.push_identifier(&kind, &value, &country);
                    }
                    "sdnEntry" => {
                        let Some(mut c) = cur.take() else { return Ok(()) };
                        let at = format!("<sdnEntry> at line {}", c.line);
                        let uid: u64 = c.e.id.trim().parse().map_err(|_| {
                            ParseError::new(&f.name, &at, format!("uid {:?} is not a number", c.e.id))
                        })?;
                        c.e.id = uid.to_string();
                        c.e.primary_name = compose(&c.first, &c.last);
                        if c.e.primary_name.is_empty() {
                            return Err(ParseError::new(&f.name, &at, "entry has no lastName"));
                        }
                        c.e.kind = kind_of(&f.name, c.line, &c.kind)?;
                        let primary = c.e.primary_name.clone();
                        c.e.aliases.retain(|a| !a.name.eq_ignore_ascii_case(&primary));
                        if out.insert(uid, c.e).is_some() {
                            return Err(ParseError::new(&f.name, &at, format!("duplicate uid {uid}")));
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    if !saw_list {
        return Err(ParseError::new(
            &f.name,
            "document",
            "no <sdnList> root: not an OFAC SDN XML file",
        ));
    }
    if out.is_empty() {
        return Err(ParseError::new(&f.name, "<sdnList>", "no <sdnEntry> records"));
    }
    Ok(out.into_values().collect())
}
