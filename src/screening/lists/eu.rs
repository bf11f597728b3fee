//! EU Financial Sanctions Files (FSF) XML v1.1: `sanctionEntity` records
//! keyed by `logicalId`, where nearly everything is in attributes:
//! `nameAlias@wholeName/@strong`, `birthdate@birthdate/@year`,
//! `citizenship@countryDescription`, `regulation@programme`,
//! `identification@number`, `subjectType@code`. Records with no name are
//! dropped (nothing to screen against).

use std::collections::BTreeMap;

use super::xml::{Ev, attr, walk};
use super::{ListFile, ParseError};
use crate::screening::model::{EntityKind, ListEntry};

/// Parses one EU FSF XML file.
pub fn parse(f: &ListFile) -> Result<Vec<ListEntry>, ParseError> {
    let mut out: BTreeMap<String, ListEntry> = BTreeMap::new();
    let mut cur: Option<(ListEntry, usize)> = None;
    let mut saw_export = false;
    walk(&f.name, &f.data, |path, ev, line| {
        match ev {
            Ev::Start { name: "export", .. } => saw_export = true,
            Ev::Start {
                name: "sanctionEntity",
                attrs,
            } => {
                let id = attr(attrs, "logicalId").unwrap_or("").trim().to_owned();
                if id.is_empty() {
                    return Err(ParseError::new(
                        &f.name,
                        format!("<sanctionEntity> at line {line}"),
                        "no logicalId",
                    ));
                }
                cur = Some((
                    ListEntry {
                        id,
                        ..Default::default()
                    },
                    line,
                ));
            }
            Ev::Start { name, attrs } => {
                let Some((e, _)) = cur.as_mut() else { return Ok(()) };
                // Only direct children of the entity describe it.
                if path.len() < 2 || path[path.len() - 2] != "sanctionEntity" {
                    return Ok(());
                }
                match name {
                    "subjectType" => {
                        e.kind = match attr(attrs, "code").unwrap_or("") {
                            "person" => EntityKind::Individual,
                            "enterprise" => EntityKind::Organization,
                            _ => EntityKind::Unknown,
                        }
                    }
                    "nameAlias" => {
                        let whole = attr(attrs, "wholeName").unwrap_or("").trim().to_owned();
                        let whole = if whole.is_empty() {
                            [
                                attr(attrs, "firstName"),
                                attr(attrs, "middleName"),
                                attr(attrs, "lastName"),
                            ]
                            .into_iter()
                            .flatten()
                            .filter(|s| !s.trim().is_empty())
                            .collect::<Vec<_>>()
                            .join(" ")
                        } else {
                            whole
                        };
                        let weak = attr(attrs, "strong") == Some("false");
                        if e.primary_name.is_empty() && !weak {
                            e.primary_name = whole;
                        } else {
                            e.push_alias(&whole, weak);
                        }
                    }
                    "birthdate" => {
                        let d = attr(attrs, "birthdate").or(attr(attrs, "year")).unwrap_or("");
                        ListEntry::push_unique(&mut e.dates_of_birth, d);
                    }
                    "citizenship" | "address" => {
                        let c = attr(attrs, "countryDescription")
                            .or(attr(attrs, "countryIso2Code"))
                            .unwrap_or("");
                        if c != "UNKNOWN" && c != "00" {
                            ListEntry::push_unique(&mut e.countries, c);
                        }
                    }
                    "regulation" => {
                        ListEntry::push_unique(&mut e.programs, attr(attrs, "programme").unwrap_or(""))
                    }
                    "identification" => {
                        let v = attr(attrs, "number").unwrap_or("").trim();
                        let kind = attr(attrs, "identificationTypeDescription")
                            .filter(|d| !d.is_empty())
                            .or(attr(attrs, "identificationTypeCode"))
                            .unwrap_or("id");
                        let country = attr(attrs, "countryDescription")
                            .filter(|c| *c != "UNKNOWN")
                            .unwrap_or("");
                        e.push_identifier(kind, v, country);
                    }
                    _ => {}
                }
            }
            Ev::Text(t) => {
                if let Some((e, _)) = cur.as_mut()
                    && path.last().is_some_and(|p| p == "remark")
                    && path.len() >= 2
                    && path[path.len() - 2] == "sanctionEntity"
                {
                    if !e.remarks.is_empty() {
                        e.remarks.push_str("; ");
                    }
                    e.remarks.push_str(t);
                }
            }
            Ev::End {
                name: "sanctionEntity",
            } => {
                if let Some((mut e, l)) = cur.take() {
                    if e.primary_name.is_empty()
                        && let Some(first) = (!e.aliases.is_empty()).then(|| e.aliases.remove(0))
                    {
                        e.primary_name = first.name;
                    }
                    if e.primary_name.is_empty() {
                        return Ok(());
                    }
                    let id = e.id.clone();
                    if out.insert(id.clone(), e).is_some() {
                        return Err(ParseError::new(
                            &f.name,
                            format!("line {l}"),
                            format!("duplicate logicalId {id}"),
                        ));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    if !saw_export {
        return Err(ParseError::new(
            &f.name,
            "document",
            "root is not an EU FSF <export>",
        ));
    }
    Ok(out.into_values().collect())
}
