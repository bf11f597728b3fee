//! Parsers for the official list formats. Each reads its file(s) as a
//! stream (rows or XML events, never a whole DOM) and yields [`ListEntry`]s;
//! any malformed input is an error naming the file and the line or element,
//! and the caller keeps nothing of a failed import.

pub mod csl;
pub mod eu;
pub mod ofac;
pub mod ofac_xml;
pub mod seco;
pub mod uk;
pub mod un;
pub mod xml;

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::model::ListEntry;

/// Bounds of one import's parse: at most `max_rows` rows (CSV records, XML
/// entries), and a flag that stops the parse when the call that asked for
/// it has ended (the client went away or its deadline passed).
#[derive(Debug, Clone)]
pub struct Budget {
    /// Most rows the import may hold.
    pub max_rows: u64,
    /// Set when nobody waits for the result any more.
    pub cancelled: Arc<AtomicBool>,
}

impl Budget {
    /// No row cap and no cancellation (tests, benchmarks).
    pub fn unlimited() -> Self {
        Self {
            max_rows: u64::MAX,
            cancelled: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// What one parse on this thread has used of its budget.
struct Spent {
    budget: Budget,
    rows: u64,
}

thread_local! {
    /// The budget of the parse running on this thread: parsing is one
    /// synchronous call, so the row and cancellation checks deep in each
    /// format's loop reach it without every parser carrying it.
    static SPENT: RefCell<Option<Spent>> = const { RefCell::new(None) };
}

/// Why a parse stopped early because the call ended.
pub const CANCELLED: &str = "the import was cancelled: its call ended";

/// Counts one row of `file` at `location` against the budget; over the cap
/// or after cancellation the parse stops with an error.
pub(crate) fn row(file: &str, location: impl Fn() -> String) -> Result<(), ParseError> {
    SPENT.with(|s| {
        let mut s = s.borrow_mut();
        let Some(s) = s.as_mut() else { return Ok(()) };
        s.rows += 1;
        if s.rows > s.budget.max_rows {
            return Err(ParseError::new(
                file,
                location(),
                format!(
                    "the import has more than {} rows, the most one import takes (--max-import-rows)",
                    s.budget.max_rows
                ),
            ));
        }
        Ok(())
    })?;
    alive(file, location)
}

/// Stops the parse once its call has ended.
pub(crate) fn alive(file: &str, location: impl FnOnce() -> String) -> Result<(), ParseError> {
    let cancelled = SPENT.with(|s| {
        s.borrow()
            .as_ref()
            .is_some_and(|s| s.budget.cancelled.load(Ordering::Relaxed))
    });
    if cancelled {
        return Err(ParseError::new(file, location(), CANCELLED));
    }
    Ok(())
}

/// Why a list file was refused: which file, where, what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {location}: {message}")]
pub struct ParseError {
    /// The file name as sent.
    pub file: String,
    /// `line N` or `element <X> at byte N`.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

impl ParseError {
    /// An error at `location` of `file`.
    pub fn new(file: &str, location: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            location: location.into(),
            message: message.into(),
        }
    }
}

/// Line numbers of byte offsets in one file, for error messages. Built in
/// one pass over the file and answered by binary search, because the CSV
/// readers ask for every record's line: counting from the start each time
/// made parsing quadratic in the file size (the OFAC SDN set spent nearly
/// all its import time there).
pub struct Lines<'a> {
    data: &'a [u8],
    breaks: Vec<usize>,
}

impl<'a> Lines<'a> {
    /// Indexes the line breaks of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            breaks: data
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i)
                .collect(),
        }
    }

    /// The 1-based line of the record starting at `byte`. A record's
    /// reported start can sit on the line break before it, which belongs
    /// to the record.
    pub fn at(&self, byte: u64) -> u64 {
        let mut end = usize::try_from(byte).unwrap_or(usize::MAX).min(self.data.len());
        while end < self.data.len() && matches!(self.data[end], b'\r' | b'\n') {
            end += 1;
        }
        1 + self.breaks.partition_point(|&b| b < end) as u64
    }

    /// The line of a CSV record or error position (0 when it has none).
    pub fn of(&self, position: Option<&csv::Position>) -> u64 {
        position.map_or(0, |p| self.at(p.byte()))
    }
}

/// One file of an import: its name and bytes.
#[derive(Debug, Clone)]
pub struct ListFile {
    /// The name the client sent (`sdn.csv`, `alt.csv`, ...).
    pub name: String,
    /// The content.
    pub data: Vec<u8>,
}

/// Every source the service knows, as `ImportList.source` names them.
pub const SOURCES: &[&str] = &[
    "ofac_sdn",
    "ofac_cons",
    "un_sc",
    "eu_fsf",
    "uk_fcdo",
    "ch_seco",
    "us_csl",
    "us_dpl",
];

/// True when an import is a single XML file (by name, or by content when
/// the name says nothing).
fn is_xml(files: &[ListFile]) -> bool {
    match files {
        [f] => f.name.to_ascii_lowercase().ends_with(".xml") || f.data.trim_ascii_start().starts_with(b"<"),
        _ => false,
    }
}

/// What a source's file looks like, for telling a wrong source/file pair
/// apart from a damaged file before any parser runs (a parser's error on
/// the wrong format quoted the file's content back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// XML with this root element, described for people.
    Xml(&'static str, &'static str),
    /// Delimited text (CSV, or tab-separated), described for people.
    Text(&'static str),
}

/// The format each source is published in; OFAC's XML alternative is
/// handled where both are accepted.
fn expected_format(source: &str) -> Option<Format> {
    Some(match source {
        "ofac_sdn" | "ofac_cons" => Format::Text(
            "the OFAC CSV set (sdn.csv alt.csv add.csv sdn_comments.csv) or its XML file (root <sdnList>)",
        ),
        "un_sc" => Format::Xml(
            "CONSOLIDATED_LIST",
            "the UN Security Council consolidated list XML",
        ),
        "eu_fsf" => Format::Xml("export", "the EU financial sanctions (FSF) XML export"),
        "uk_fcdo" => Format::Xml("Designations", "the UK FCDO sanctions list XML"),
        "ch_seco" => Format::Xml("swiss-sanctions-list", "the Swiss SECO sanctions list XML"),
        "us_csl" => Format::Text("the US Consolidated Screening List CSV"),
        "us_dpl" => Format::Text("the US BIS Denied Persons List (tab-separated text)"),
        _ => return None,
    })
}

/// The local name of a file's root element, or `None` when it does not
/// start like XML. Reads no further than the first element.
fn xml_root(data: &[u8]) -> Option<String> {
    let body = data
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(data)
        .trim_ascii_start();
    if !body.starts_with(b"<") {
        return None;
    }
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e)) => {
                return Some(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
            }
            Ok(quick_xml::events::Event::Eof) | Err(_) => return Some(String::new()),
            Ok(_) => buf.clear(),
        }
    }
}

/// Refuses a file that is plainly not in `source`'s format, with a message
/// naming the source, the file and what was expected, and nothing of the
/// file's content (the root element's name at most).
fn check_format(source: &str, files: &[ListFile]) -> Result<(), ParseError> {
    let Some(format) = expected_format(source) else {
        return Ok(());
    };
    for f in files {
        let root = xml_root(&f.data);
        let wrong = match (format, root.as_deref()) {
            (Format::Xml(want, _), Some(got)) if got == want => None,
            (Format::Xml(_, what), Some("")) => Some(format!(
                "source {source} expects {what}; {} is not well-formed XML",
                f.name
            )),
            (Format::Xml(want, what), Some(got)) => Some(format!(
                "source {source} expects {what} (root <{want}>); {} is XML with root <{got}>, another list",
                f.name
            )),
            (Format::Xml(want, what), None) => Some(format!(
                "source {source} expects {what} (root <{want}>); {} is not XML",
                f.name
            )),
            // OFAC also publishes one XML file; its parser checks the root.
            (Format::Text(_), Some("sdnList")) if source.starts_with("ofac_") => None,
            (Format::Text(_), Some("")) => None,
            (Format::Text(what), Some(got)) => Some(format!(
                "source {source} expects {what}; {} is XML (root <{got}>), another list",
                f.name
            )),
            (Format::Text(_), None) => None,
        };
        if let Some(message) = wrong {
            return Err(ParseError::new(&f.name, "format", message));
        }
    }
    Ok(())
}

/// Parses the files of one import of `source` into entries, sorted by id,
/// within `budget`: an import of more rows than the cap, or whose call
/// ended, stops where it is.
pub fn parse_within(source: &str, files: &[ListFile], budget: &Budget) -> Result<Vec<ListEntry>, ParseError> {
    SPENT.with(|s| {
        *s.borrow_mut() = Some(Spent {
            budget: budget.clone(),
            rows: 0,
        });
    });
    let out = parse(source, files);
    let rows = SPENT.with(|s| s.borrow_mut().take()).map_or(0, |s| s.rows);
    let entries = out?;
    // XML formats count entries rather than rows: check them here.
    if rows == 0 && entries.len() as u64 > budget.max_rows {
        return Err(ParseError::new(
            "",
            "entries",
            format!(
                "the import has more than {} entries, the most one import takes (--max-import-rows)",
                budget.max_rows
            ),
        ));
    }
    Ok(entries)
}

/// Parses the files of one import of `source` into entries, sorted by id.
pub fn parse(source: &str, files: &[ListFile]) -> Result<Vec<ListEntry>, ParseError> {
    check_format(source, files)?;
    let single = || -> Result<&ListFile, ParseError> {
        match files {
            [f] => Ok(f),
            _ => Err(ParseError::new(
                "",
                "files",
                format!("source {source} takes exactly one file, got {}", files.len()),
            )),
        }
    };
    let mut entries = match source {
        // OFAC publishes both lists as a CSV set and as one XML file.
        "ofac_sdn" | "ofac_cons" if is_xml(files) => ofac_xml::parse(single()?)?,
        "ofac_sdn" | "ofac_cons" => ofac::parse(files)?,
        "un_sc" => un::parse(single()?)?,
        "eu_fsf" => eu::parse(single()?)?,
        "uk_fcdo" => uk::parse(single()?)?,
        "ch_seco" => seco::parse(single()?)?,
        "us_csl" => csl::parse_csl(single()?)?,
        "us_dpl" => csl::parse_dpl(single()?)?,
        other => {
            return Err(ParseError::new(
                "",
                "source",
                format!("unknown source {other:?}; expected one of {}", SOURCES.join(", ")),
            ));
        }
    };
    entries.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(entries)
}

#[cfg(test)]
mod tests;
