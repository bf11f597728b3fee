//! A small streaming walker over quick-xml events shared by the XML list
//! parsers: element names without namespace prefixes, attributes decoded,
//! text unescaped and trimmed, the current element path, and the line of
//! every event for error messages. Memory stays bounded by the nesting depth.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::ParseError;

/// One event of the walk.
#[derive(Debug)]
pub enum Ev<'a> {
    /// An element opens (also reported for empty elements, followed by End).
    Start {
        /// Local name.
        name: &'a str,
        /// Decoded attributes (local names).
        attrs: &'a [(String, String)],
    },
    /// Non-blank text inside the innermost open element.
    Text(&'a str),
    /// An element closes.
    End {
        /// Local name.
        name: &'a str,
    },
}

fn local(name: &[u8]) -> String {
    let s = String::from_utf8_lossy(name);
    match s.rsplit_once(':') {
        Some((_, l)) => l.to_owned(),
        None => s.into_owned(),
    }
}

fn attrs_of(file: &str, line: usize, e: &BytesStart<'_>) -> Result<Vec<(String, String)>, ParseError> {
    let mut out = Vec::new();
    for a in e.attributes() {
        let a =
            a.map_err(|err| ParseError::new(file, format!("line {line}"), format!("bad attribute: {err}")))?;
        let v = a.unescape_value().map_err(|err| {
            ParseError::new(
                file,
                format!("line {line}"),
                format!("bad attribute value: {err}"),
            )
        })?;
        out.push((local(a.key.as_ref()), v.into_owned()));
    }
    Ok(out)
}

/// Walks `data`, calling `f(path, event, line)` where `path` holds the
/// names of the open elements (the innermost last, the current one
/// included for Start and End). Any XML error names its line.
pub fn walk(
    file: &str,
    data: &[u8],
    mut f: impl FnMut(&[String], Ev<'_>, usize) -> Result<(), ParseError>,
) -> Result<(), ParseError> {
    let mut reader = Reader::from_reader(data);
    reader.config_mut().check_end_names = true;
    let mut buf = Vec::new();
    let mut stack: Vec<String> = Vec::new();
    let mut line = 1usize;
    let mut counted = 0usize;
    let mut text = String::new();
    let mut saw_root = false;
    loop {
        let pos = reader.buffer_position() as usize;
        if pos > counted {
            line += data[counted..pos.min(data.len())]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            counted = pos.min(data.len());
        }
        super::alive(file, || format!("line {line}"))?;
        let ev = reader.read_event_into(&mut buf).map_err(|e| {
            let at = reader.error_position() as usize;
            let l = 1 + data[..at.min(data.len())].iter().filter(|b| **b == b'\n').count();
            ParseError::new(file, format!("line {l}"), format!("malformed XML: {e}"))
        })?;
        match ev {
            Event::Start(e) => {
                flush(&stack, &mut text, line, &mut f)?;
                saw_root = true;
                let name = local(e.local_name().as_ref());
                let attrs = attrs_of(file, line, &e)?;
                stack.push(name.clone());
                f(
                    &stack,
                    Ev::Start {
                        name: &name,
                        attrs: &attrs,
                    },
                    line,
                )?;
            }
            Event::Empty(e) => {
                flush(&stack, &mut text, line, &mut f)?;
                saw_root = true;
                let name = local(e.local_name().as_ref());
                let attrs = attrs_of(file, line, &e)?;
                stack.push(name.clone());
                f(
                    &stack,
                    Ev::Start {
                        name: &name,
                        attrs: &attrs,
                    },
                    line,
                )?;
                f(&stack, Ev::End { name: &name }, line)?;
                stack.pop();
            }
            Event::End(_) => {
                flush(&stack, &mut text, line, &mut f)?;
                let name = stack.last().cloned().unwrap_or_default();
                f(&stack, Ev::End { name: &name }, line)?;
                stack.pop();
            }
            Event::Text(t) => {
                let s = t
                    .decode()
                    .map_err(|e| ParseError::new(file, format!("line {line}"), format!("bad text: {e}")))?;
                let s = quick_xml::escape::unescape(&s)
                    .map_err(|e| ParseError::new(file, format!("line {line}"), format!("bad entity: {e}")))?;
                text.push_str(&s);
            }
            Event::GeneralRef(r) => {
                let name = r.decode().map_err(|e| {
                    ParseError::new(file, format!("line {line}"), format!("bad reference: {e}"))
                })?;
                let raw = format!("&{name};");
                let s = quick_xml::escape::unescape(&raw)
                    .map_err(|e| ParseError::new(file, format!("line {line}"), format!("bad entity: {e}")))?;
                text.push_str(&s);
            }
            Event::CData(c) => text.push_str(&String::from_utf8_lossy(&c)),
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !stack.is_empty() {
        return Err(ParseError::new(
            file,
            format!("line {line}"),
            format!(
                "unexpected end of file inside <{}>",
                stack.last().cloned().unwrap_or_default()
            ),
        ));
    }
    if !saw_root {
        return Err(ParseError::new(file, "line 1", "no XML document"));
    }
    Ok(())
}

fn flush(
    stack: &[String],
    text: &mut String,
    line: usize,
    f: &mut impl FnMut(&[String], Ev<'_>, usize) -> Result<(), ParseError>,
) -> Result<(), ParseError> {
    let t = text.trim();
    if !t.is_empty() {
        f(stack, Ev::Text(t), line)?;
    }
    text.clear();
    Ok(())
}

/// The parent and the name of the innermost element of `path` ("" where
/// there is none): what a text event belongs to.
pub fn parent_and_element(path: &[String]) -> (&str, &str) {
    let el = path.last().map_or("", String::as_str);
    let parent = path.len().checked_sub(2).map_or("", |i| path[i].as_str());
    (parent, el)
}

/// The value of attribute `key`.
pub fn attr<'a>(attrs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}
