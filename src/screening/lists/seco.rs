//! Swiss SECO sanctions list XML: `target` records keyed by `ssid`, an
//! `individual`, `entity` or `object` with `identity` names built from
//! ordered `name-part`s, each with spelling variants (Cyrillic, other
//! transliterations) that become aliases. `modification` elements come
//! newest first; a target whose latest modification is `de-listed` is no
//! longer sanctioned and is dropped although the whole-list export keeps it.

use std::collections::BTreeMap;

use super::xml::{Ev, attr, walk};
use super::{ListFile, ParseError};
use crate::screening::model::{EntityKind, ListEntry};

/// One name part: its order, its value, and its spelling variants keyed by
/// language/script.
type NamePart = (u32, String, Vec<(String, String)>);

#[derive(Default)]
struct Cur {
    e: ListEntry,
    line: usize,
    first_modification: Option<String>,
    // Current name: (order, value, variants keyed by lang/script).
    parts: Vec<NamePart>,
    name_weak: bool,
    name_primary: bool,
    part_order: u32,
    variant_key: String,
    // The identification document being read: type, number, issuer.
    doc: (String, String, String),
}

/// Parses one SECO XML file.
pub fn parse(f: &ListFile) -> Result<Vec<ListEntry>, ParseError> {
    let mut out: BTreeMap<String, ListEntry> = BTreeMap::new();
    let mut cur: Option<Cur> = None;
    let mut saw_root = false;
    walk(&f.name, &f.data, |path, ev, line| {
        let in_mod = path.iter().any(|p| p == "modification" || p == "relation");
        match ev {
            Ev::Start {
                name: "swiss-sanctions-list",
                ..
            } => saw_root = true,
            // Modifications embed earlier states of the target (`added`,
            // `removed`), themselves `target` elements: only direct children
            // of the root are records.
            Ev::Start {
                name: "target",
                attrs,
            } if path.len() == 2 => {
                let id = attr(attrs, "ssid").unwrap_or("").trim().to_owned();
                if id.is_empty() {
                    return Err(ParseError::new(
                        &f.name,
                        format!("<target> at line {line}"),
                        "no ssid",
                    ));
                }
                cur = Some(Cur {
                    e: ListEntry {
                        id,
                        ..Default::default()
                    },
                    line,
                    ..Default::default()
                });
            }
            Ev::Start { name, attrs } => {
                let Some(c) = cur.as_mut() else { return Ok(()) };
                match name {
                    "modification" if c.first_modification.is_none() => {
                        c.first_modification =
                            Some(attr(attrs, "modification-type").unwrap_or("").to_owned());
                    }
                    _ if in_mod => {}
                    "individual" => c.e.kind = EntityKind::Individual,
                    "entity" => c.e.kind = EntityKind::Organization,
                    "object" => {
                        c.e.kind = match attr(attrs, "object-type").unwrap_or("") {
                            "vessel" => EntityKind::Vessel,
                            "aircraft" => EntityKind::Aircraft,
                            _ => EntityKind::Unknown,
                        }
                    }
                    "name" => {
                        c.parts.clear();
                        c.name_weak = attr(attrs, "quality") == Some("low");
                        c.name_primary = attr(attrs, "name-type") == Some("primary-name");
                    }
                    "name-part" => {
                        c.part_order = attr(attrs, "order").and_then(|o| o.parse().ok()).unwrap_or(0)
                    }
                    "spelling-variant" => {
                        c.variant_key = format!(
                            "{}/{}",
                            attr(attrs, "lang").unwrap_or(""),
                            attr(attrs, "script").unwrap_or("")
                        )
                    }
                    "day-month-year" => {
                        let y = attr(attrs, "year").unwrap_or("");
                        let d = match (attr(attrs, "month"), attr(attrs, "day")) {
                            (Some(m), Some(d)) if !y.is_empty() => format!("{y}-{m:0>2}-{d:0>2}"),
                            _ => y.to_owned(),
                        };
                        ListEntry::push_unique(&mut c.e.dates_of_birth, &d);
                    }
                    "identification-document" => {
                        c.doc = (
                            attr(attrs, "document-type").unwrap_or("document").to_owned(),
                            String::new(),
                            String::new(),
                        );
                    }
                    "country" => {
                        if let Some(code) = attr(attrs, "iso-code") {
                            ListEntry::push_unique(&mut c.e.countries, code);
                        }
                    }
                    _ => {}
                }
            }
            Ev::Text(t) => {
                let Some(c) = cur.as_mut() else { return Ok(()) };
                if in_mod {
                    return Ok(());
                }
                let (parent, el) = super::xml::parent_and_element(path);
                match (parent, el) {
                    ("name-part", "value") => c.parts.push((c.part_order, t.to_owned(), Vec::new())),
                    ("name-part", "spelling-variant") => {
                        if let Some(last) = c.parts.last_mut() {
                            last.2.push((c.variant_key.clone(), t.to_owned()));
                        }
                    }
                    ("target", "sanctions-set-id") => {
                        ListEntry::push_unique(&mut c.e.programs, &format!("sanctions set {t}"))
                    }
                    (_, "country") => ListEntry::push_unique(&mut c.e.countries, t),
                    ("identification-document", "number") => c.doc.1 = t.to_owned(),
                    ("identification-document", "issuer") => c.doc.2 = t.to_owned(),
                    (_, "other-information") => {
                        // Vessels' numbers are written as "IMO Number: 8405270".
                        if let Some(n) = t.trim().strip_prefix("IMO Number:") {
                            c.e.push_identifier("IMO", n, "");
                        }
                    }
                    (_, "justification") => {
                        if !c.e.remarks.is_empty() {
                            c.e.remarks.push_str("; ");
                        }
                        c.e.remarks.push_str(t);
                    }
                    _ => {}
                }
            }
            Ev::End {
                name: "identification-document",
            } if !in_mod => {
                let Some(c) = cur.as_mut() else { return Ok(()) };
                let (kind, number, issuer) = std::mem::take(&mut c.doc);
                c.e.push_identifier(&kind, &number, &issuer);
            }
            Ev::End { name: "name" } if !in_mod => {
                let Some(c) = cur.as_mut() else { return Ok(()) };
                c.parts.sort_by_key(|p| p.0);
                let main = c.parts.iter().map(|p| p.1.as_str()).collect::<Vec<_>>().join(" ");
                let mut keys: Vec<String> = c
                    .parts
                    .iter()
                    .flat_map(|p| p.2.iter().map(|v| v.0.clone()))
                    .collect();
                keys.sort();
                keys.dedup();
                let variants: Vec<String> = keys
                    .iter()
                    .map(|k| {
                        c.parts
                            .iter()
                            .map(|p| {
                                p.2.iter()
                                    .find(|v| &v.0 == k)
                                    .map_or(p.1.as_str(), |v| v.1.as_str())
                            })
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect();
                if c.name_primary && c.e.primary_name.is_empty() {
                    c.e.primary_name = main;
                } else {
                    let weak = c.name_weak;
                    c.e.push_alias(&main, weak);
                }
                let weak = c.name_weak;
                for v in variants {
                    c.e.push_alias(&v, weak);
                }
                c.parts.clear();
            }
            Ev::End { name: "target" } if path.len() == 2 => {
                let Some(mut c) = cur.take() else { return Ok(()) };
                if c.first_modification.as_deref() == Some("de-listed") {
                    return Ok(());
                }
                if c.e.primary_name.is_empty() {
                    if c.e.aliases.is_empty() {
                        return Err(ParseError::new(
                            &f.name,
                            format!("<target> at line {}", c.line),
                            format!("target {} has no name", c.e.id),
                        ));
                    }
                    c.e.primary_name = c.e.aliases.remove(0).name;
                }
                let id = c.e.id.clone();
                if out.insert(id.clone(), c.e).is_some() {
                    return Err(ParseError::new(
                        &f.name,
                        format!("line {}", c.line),
                        format!("duplicate target {id}"),
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
            "root is not a <swiss-sanctions-list>",
        ));
    }
    Ok(out.into_values().collect())
}
