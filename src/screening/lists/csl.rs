//! US trade.gov Consolidated Screening List CSV (both the 28-column layout
//! and the newer one with a leading `_id` and an `ids` column; columns are
//! found by header name) and the BIS Denied Persons List (tab-separated,
//! quoted header). Multiple values are `;`-separated. DPL rows carry no id,
//! and CSL rows from some sub-lists neither: their id is a digest of the
//! row's identifying fields, stable across versions while the row is.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashSet};

use sha2::{Digest, Sha256};

use super::{ListFile, ParseError};
use crate::screening::model::{Alias, EntityKind, ListEntry};

fn reader(f: &ListFile, delim: u8) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .delimiter(delim)
        .has_headers(true)
        .flexible(false)
        .from_reader(f.data.as_slice())
}

fn digest_id(prefix: &str, parts: &[&str]) -> String {
    let h = Sha256::digest(parts.join("\u{1f}").as_bytes());
    format!("{prefix}-{}", &hex::encode(h)[..16])
}

/// The entries of one file by id. Rows that share an id are one listed
/// party (the same `_id`/`entity_number`, or the same identifying fields
/// for a digest id), so they merge into one entry: the union of their
/// names, programmes, countries and dates of birth, first seen first.
/// Every value is checked against a set, so merging is linear in the rows
/// and values, however many rows repeat an id (renaming each duplicate
/// `id#2`, `id#3`... probed every earlier suffix: quadratic, and 8,000
/// identical rows took 9 s).
#[derive(Default)]
struct Merged {
    entries: BTreeMap<String, ListEntry>,
    /// Per id, what the entry already holds: (field, value), names folded
    /// to ASCII lowercase as [`ListEntry::push_alias`] compares them.
    seen: std::collections::HashMap<String, HashSet<(u8, String)>>,
}

impl Merged {
    /// Adds a row's entry, whose lists may repeat values.
    fn add(&mut self, row: ListEntry) {
        let seen = self.seen.entry(row.id.clone()).or_default();
        let have = match self.entries.entry(row.id.clone()) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                seen.insert((0, row.primary_name.to_ascii_lowercase()));
                v.insert(ListEntry {
                    id: row.id.clone(),
                    kind: row.kind,
                    primary_name: row.primary_name.clone(),
                    remarks: row.remarks.clone(),
                    ..Default::default()
                })
            }
        };
        for (name, weak) in row.names() {
            if !name.is_empty() && seen.insert((0, name.to_ascii_lowercase())) {
                have.aliases.push(Alias {
                    name: name.to_owned(),
                    weak,
                });
            }
        }
        let lists = [
            (1, &mut have.programs, row.programs),
            (2, &mut have.countries, row.countries),
            (3, &mut have.dates_of_birth, row.dates_of_birth),
        ];
        for (field, list, values) in lists {
            for v in values {
                if !v.is_empty() && seen.insert((field, v.clone())) {
                    list.push(v);
                }
            }
        }
        if have.remarks != row.remarks && !row.remarks.is_empty() && seen.insert((4, row.remarks.clone())) {
            if !have.remarks.is_empty() {
                have.remarks.push_str("; ");
            }
            have.remarks.push_str(&row.remarks);
        }
    }

    fn into_entries(self) -> Vec<ListEntry> {
        self.entries.into_values().collect()
    }
}

fn owned<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    values.map(str::to_owned).collect()
}

fn split(s: &str) -> impl Iterator<Item = &str> {
    s.split(';').map(str::trim).filter(|v| !v.is_empty())
}

fn headers(f: &ListFile, rdr: &mut csv::Reader<&[u8]>) -> Result<Vec<String>, ParseError> {
    Ok(rdr
        .headers()
        .map_err(|e| ParseError::new(&f.name, "line 1", format!("malformed header: {e}")))?
        .iter()
        .map(|h| h.trim().trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect())
}

/// Parses a CSL CSV file.
pub fn parse_csl(f: &ListFile) -> Result<Vec<ListEntry>, ParseError> {
    let mut rdr = reader(f, b',');
    let h = headers(f, &mut rdr)?;
    let col = |n: &str| h.iter().position(|x| x == n);
    let Some(name_c) = col("name") else {
        return Err(ParseError::new(
            &f.name,
            "line 1",
            "no `name` column: not a CSL file",
        ));
    };
    let (id_c, eid_c, src_c, type_c, prog_c, alt_c) = (
        col("_id"),
        col("entity_number"),
        col("source"),
        col("type"),
        col("programs"),
        col("alt_names"),
    );
    let (cit_c, nat_c, dob_c, addr_c, rem_c) = (
        col("citizenships"),
        col("nationalities"),
        col("dates_of_birth"),
        col("addresses"),
        col("remarks"),
    );
    let mut out = Merged::default();
    let lines = super::Lines::new(&f.data);
    for rec in rdr.records() {
        let rec = rec.map_err(|e| {
            let line = lines.of(e.position());
            ParseError::new(&f.name, format!("line {line}"), format!("malformed CSV: {e}"))
        })?;
        let line = lines.of(rec.position());
        super::row(&f.name, || format!("line {line}"))?;
        let get = |c: Option<usize>| c.and_then(|i| rec.get(i)).unwrap_or("").trim();
        let name = get(Some(name_c));
        if name.is_empty() {
            return Err(ParseError::new(&f.name, format!("line {line}"), "empty name"));
        }
        let id = match (get(id_c), get(eid_c)) {
            (i, _) if !i.is_empty() => i.to_owned(),
            (_, e) if !e.is_empty() => e.to_owned(),
            _ => digest_id("csl", &[get(src_c), name, get(addr_c)]),
        };
        let mut programs = owned(split(get(prog_c)));
        if programs.is_empty() {
            programs = owned(std::iter::once(get(src_c)));
        }
        out.add(ListEntry {
            id,
            kind: match get(type_c).to_ascii_lowercase().as_str() {
                "individual" => EntityKind::Individual,
                "entity" => EntityKind::Organization,
                "vessel" => EntityKind::Vessel,
                "aircraft" => EntityKind::Aircraft,
                _ => EntityKind::Unknown,
            },
            primary_name: name.to_owned(),
            remarks: get(rem_c).to_owned(),
            programs,
            aliases: split(get(alt_c))
                .map(|a| Alias {
                    name: a.to_owned(),
                    weak: false,
                })
                .collect(),
            countries: owned(split(get(cit_c)).chain(split(get(nat_c)))),
            dates_of_birth: owned(split(get(dob_c))),
            ..Default::default()
        });
    }
    Ok(out.into_entries())
}

/// Parses the BIS Denied Persons List (tab-separated).
pub fn parse_dpl(f: &ListFile) -> Result<Vec<ListEntry>, ParseError> {
    let mut rdr = reader(f, b'\t');
    let h = headers(f, &mut rdr)?;
    let col = |n: &str| h.iter().position(|x| x == n);
    let Some(name_c) = col("name") else {
        return Err(ParseError::new(
            &f.name,
            "line 1",
            "no `Name` column: not a DPL file",
        ));
    };
    let (street_c, country_c, eff_c, fr_c) = (
        col("street_address"),
        col("country"),
        col("effective_date"),
        col("fr_citation"),
    );
    let mut out = Merged::default();
    let lines = super::Lines::new(&f.data);
    for rec in rdr.records() {
        let rec = rec.map_err(|e| {
            let line = lines.of(e.position());
            ParseError::new(&f.name, format!("line {line}"), format!("malformed DPL row: {e}"))
        })?;
        let line = lines.of(rec.position());
        super::row(&f.name, || format!("line {line}"))?;
        let get = |c: Option<usize>| c.and_then(|i| rec.get(i)).unwrap_or("").trim();
        let name = get(Some(name_c));
        if name.is_empty() {
            return Err(ParseError::new(&f.name, format!("line {line}"), "empty Name"));
        }
        out.add(ListEntry {
            id: digest_id("dpl", &[name, get(street_c), get(eff_c)]),
            primary_name: name.to_owned(),
            programs: vec!["DPL".into()],
            remarks: get(fr_c).to_owned(),
            countries: owned(std::iter::once(get(country_c))),
            ..Default::default()
        });
    }
    Ok(out.into_entries())
}
