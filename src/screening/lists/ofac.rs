//! OFAC legacy CSV sets: the SDN list (`sdn.csv`, `alt.csv`, `add.csv`,
//! `sdn_comments.csv`) and the non-SDN consolidated list (`cons_prim.csv`,
//! `cons_alt.csv`, `cons_add.csv`, `cons_comments.csv`), which share the
//! layout. No header; `-0-` is empty; the files end with a Ctrl-Z byte.
//! Remarks carry structured facts as free text (DOB, nationality, passport,
//! IMO, weak a.k.a.s), which are lifted into fields.

use std::collections::BTreeMap;

use super::{ListFile, ParseError};
use crate::screening::model::{EntityKind, ListEntry};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Primary,
    Alt,
    Add,
    Comments,
}

fn part_of(name: &str) -> Part {
    let n = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(name)
        .to_ascii_lowercase();
    if n.contains("alt") {
        Part::Alt
    } else if n.contains("add") {
        Part::Add
    } else if n.contains("comment") {
        Part::Comments
    } else {
        Part::Primary
    }
}

fn field(s: &str) -> &str {
    let t = s.trim();
    if t == "-0-" { "" } else { t }
}

/// Reads the rows of one file: (line, fields), with `want` fields each.
fn rows(f: &ListFile, want: usize) -> Result<Vec<(u64, Vec<String>)>, ParseError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(f.data.as_slice());
    let mut out = Vec::new();
    let lines = super::Lines::new(&f.data);
    for rec in rdr.byte_records() {
        let rec = rec.map_err(|e| {
            let line = lines.of(e.position());
            ParseError::new(&f.name, format!("line {line}"), format!("malformed CSV: {e}"))
        })?;
        let line = lines.of(rec.position());
        super::row(&f.name, || format!("line {line}"))?;
        if rec.len() == 1
            && rec
                .get(0)
                .is_some_and(|v| v.trim_ascii().iter().all(|b| *b == 0x1a))
        {
            continue;
        }
        if rec.len() != want {
            return Err(ParseError::new(
                &f.name,
                format!("line {line}"),
                format!("expected {want} fields, found {}", rec.len()),
            ));
        }
        // The files are Latin-1 where not ASCII.
        let fields = rec
            .iter()
            .map(|b| match std::str::from_utf8(b) {
                Ok(s) => s.to_owned(),
                Err(_) => b.iter().map(|c| char::from(*c)).collect(),
            })
            .collect();
        out.push((line, fields));
    }
    Ok(out)
}

fn ent_num(f: &ListFile, line: u64, v: &str) -> Result<u64, ParseError> {
    v.trim().parse().map_err(|_| {
        ParseError::new(
            &f.name,
            format!("line {line}"),
            format!("ent_num {v:?} is not a number"),
        )
    })
}

/// The identifier labels OFAC writes in remarks, longest first where one
/// starts another, with the kind recorded for each.
const REMARK_IDS: &[(&str, &str)] = &[
    ("vessel registration identification imo ", "IMO"),
    ("imo ", "IMO"),
    ("mmsi ", "MMSI"),
    ("swift/bic ", "SWIFT/BIC"),
    ("legal entity number ", "Legal Entity Number"),
    ("passport ", "Passport"),
    ("national id no. ", "National ID"),
    ("cedula no. ", "Cedula No."),
    ("d.n.i. ", "D.N.I."),
    ("tax id no. ", "Tax ID No."),
    ("nit # ", "NIT #"),
    ("rfc ", "RFC"),
    ("aircraft tail number ", "Aircraft Tail Number"),
    ("previous aircraft tail number ", "Aircraft Tail Number"),
    ("company number ", "Company Number"),
    ("registration id ", "Registration ID"),
    ("registration number ", "Registration Number"),
    ("business registration number ", "Registration Number"),
    ("identification number ", "Identification Number"),
];

/// An identifier written in one remark, as `(kind, value, country)`:
/// `Passport A1234567 (Iran) expires 2020`, `alt. Passport ...`,
/// `Vessel Registration Identification IMO 9187655`. The value runs to the
/// country in brackets (or to `issued`/`expires`), the country is what the
/// brackets hold.
fn remark_identifier(p: &str) -> Option<(&'static str, &str, &str)> {
    let p = p.strip_prefix("alt. ").unwrap_or(p);
    let lower = p.to_ascii_lowercase();
    let (label, kind) = REMARK_IDS.iter().find(|(l, _)| lower.starts_with(l))?;
    let rest = p.get(label.len()..)?.trim();
    let lower_rest = rest.to_ascii_lowercase();
    let end = [" (", " issued", " expires", ";"]
        .iter()
        .filter_map(|m| lower_rest.find(m))
        .min()
        .unwrap_or(rest.len());
    let value = rest[..end].trim().trim_matches(',');
    let country = rest[end..]
        .trim_start()
        .strip_prefix('(')
        .and_then(|c| c.split_once(')'))
        .map_or("", |(c, _)| c.trim());
    (!value.is_empty()).then_some((*kind, value, country))
}

/// Lifts DOB, nationality, identifiers and weak a.k.a.s out of remarks.
fn lift_remarks(e: &mut ListEntry, remarks: &str) {
    for part in remarks.split(';') {
        let p = part.trim().trim_end_matches('.');
        let lower = p.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("dob ") {
            ListEntry::push_unique(&mut e.dates_of_birth, &p[p.len() - rest.len()..]);
        } else if let Some(rest) = lower
            .strip_prefix("nationality ")
            .or_else(|| lower.strip_prefix("citizen "))
        {
            ListEntry::push_unique(&mut e.countries, &p[p.len() - rest.len()..]);
        } else if let Some((kind, value, country)) = remark_identifier(p) {
            e.push_identifier(kind, value, country);
        }
        // Weak a.k.a.s: "a.k.a. 'NAME'" (only in remarks).
        let mut rest = p;
        while let Some(i) = rest.find("a.k.a. '").or_else(|| rest.find("f.k.a. '")) {
            let after = &rest[i + 8..];
            match after.find('\'') {
                Some(j) => {
                    e.push_alias(&after[..j], true);
                    rest = &after[j + 1..];
                }
                None => break,
            }
        }
    }
}

/// Parses an OFAC CSV set. The primary file is required; the others are
/// optional; their rows about entries missing from the primary file are
/// ignored.
pub fn parse(files: &[ListFile]) -> Result<Vec<ListEntry>, ParseError> {
    let primary: Vec<&ListFile> = files
        .iter()
        .filter(|f| part_of(&f.name) == Part::Primary)
        .collect();
    if primary.len() != 1 {
        return Err(ParseError::new(
            "",
            "files",
            format!(
                "an OFAC set needs exactly one primary file (sdn.csv or cons_prim.csv), got {}",
                primary.len()
            ),
        ));
    }
    let pf = primary[0];
    let mut entries: BTreeMap<u64, ListEntry> = BTreeMap::new();
    let mut remarks: BTreeMap<u64, String> = BTreeMap::new();
    for (line, r) in rows(pf, 12)? {
        let id = ent_num(pf, line, &r[0])?;
        let name = field(&r[1]);
        if name.is_empty() {
            return Err(ParseError::new(
                &pf.name,
                format!("line {line}"),
                "SDN_Name is empty",
            ));
        }
        let kind = match field(&r[2]).to_ascii_lowercase().as_str() {
            "individual" => EntityKind::Individual,
            "vessel" => EntityKind::Vessel,
            "aircraft" => EntityKind::Aircraft,
            "" => EntityKind::Organization,
            other => {
                return Err(ParseError::new(
                    &pf.name,
                    format!("line {line}"),
                    format!("unknown SDN_Type {other:?}"),
                ));
            }
        };
        let mut e = ListEntry {
            id: id.to_string(),
            kind,
            primary_name: name.to_owned(),
            ..Default::default()
        };
        for p in field(&r[3]).split("] [") {
            ListEntry::push_unique(&mut e.programs, p.trim_matches(['[', ']', ' ']));
        }
        ListEntry::push_unique(&mut e.countries, field(&r[9]));
        remarks.insert(id, field(&r[11]).to_owned());
        if entries.insert(id, e).is_some() {
            return Err(ParseError::new(
                &pf.name,
                format!("line {line}"),
                format!("duplicate ent_num {id}"),
            ));
        }
    }
    let mut parts: Vec<&ListFile> = files
        .iter()
        .filter(|f| part_of(&f.name) != Part::Primary)
        .collect();
    parts.sort_by_key(|f| part_of(&f.name) as u8);
    for f in parts {
        let part = part_of(&f.name);
        let width = match part {
            Part::Alt => 5,
            Part::Add => 6,
            _ => 2,
        };
        for (line, r) in rows(f, width)? {
            let id = ent_num(f, line, &r[0])?;
            // Rows about entries outside the primary file happen in real
            // subsets (the fixture set is one); they describe nothing here.
            let Some(e) = entries.get_mut(&id) else { continue };
            match part {
                Part::Alt => e.push_alias(field(&r[3]), false),
                Part::Add => ListEntry::push_unique(&mut e.countries, field(&r[4])),
                _ => remarks.entry(id).or_default().push_str(field(&r[1])),
            }
        }
    }
    Ok(entries
        .into_iter()
        .map(|(id, mut e)| {
            let r = remarks.remove(&id).unwrap_or_default();
            lift_remarks(&mut e, &r);
            e.remarks = r;
            e
        })
        .collect())
}
