//! US trade.gov Consolidated Screening List CSV (both the 28-column layout
//! and the newer one with a leading `_id` and an `ids` column; columns are
//! found by header name) and the BIS Denied Persons List (tab-separated,
//! quoted header). Multiple values are `;`-separated. DPL rows carry no id,
//! and CSL rows from some sub-lists neither: their id is a digest of the
//! row's identifying fields, stable across versions while the row is.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::{ListFile, ParseError};
use crate::screening::model::{EntityKind, ListEntry};

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

fn insert_unique(out: &mut BTreeMap<String, ListEntry>, mut e: ListEntry) {
    let base = e.id.clone();
    let mut n = 2;
    while out.contains_key(&e.id) {
        e.id = format!("{base}#{n}");
        n += 1;
    }
    out.insert(e.id.clone(), e);
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
    let mut out = BTreeMap::new();
    let lines = super::Lines::new(&f.data);
    for rec in rdr.records() {
        let rec = rec.map_err(|e| {
            let line = lines.of(e.position());
            ParseError::new(&f.name, format!("line {line}"), format!("malformed CSV: {e}"))
        })?;
        let line = lines.of(rec.position());
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
        let mut e = ListEntry {
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
            ..Default::default()
        };
        for p in split(get(prog_c)) {
            ListEntry::push_unique(&mut e.programs, p);
        }
        if e.programs.is_empty() {
            ListEntry::push_unique(&mut e.programs, get(src_c));
        }
        for a in split(get(alt_c)) {
            e.push_alias(a, false);
        }
        for c in split(get(cit_c)).chain(split(get(nat_c))) {
            ListEntry::push_unique(&mut e.countries, c);
        }
        for d in split(get(dob_c)) {
            ListEntry::push_unique(&mut e.dates_of_birth, d);
        }
        insert_unique(&mut out, e);
    }
    Ok(out.into_values().collect())
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
    let mut out = BTreeMap::new();
    let lines = super::Lines::new(&f.data);
    for rec in rdr.records() {
        let rec = rec.map_err(|e| {
            let line = lines.of(e.position());
            ParseError::new(&f.name, format!("line {line}"), format!("malformed DPL row: {e}"))
        })?;
        let line = lines.of(rec.position());
        let get = |c: Option<usize>| c.and_then(|i| rec.get(i)).unwrap_or("").trim();
        let name = get(Some(name_c));
        if name.is_empty() {
            return Err(ParseError::new(&f.name, format!("line {line}"), "empty Name"));
        }
        let mut e = ListEntry {
            id: digest_id("dpl", &[name, get(street_c), get(eff_c)]),
            primary_name: name.to_owned(),
            programs: vec!["DPL".into()],
            remarks: get(fr_c).to_owned(),
            ..Default::default()
        };
        ListEntry::push_unique(&mut e.countries, get(country_c));
        insert_unique(&mut out, e);
    }
    Ok(out.into_values().collect())
}
