//! The JSON export bundle, written piece by piece: a download never holds
//! the bundle, only the batch of records it is sending. The writer tracks
//! where it is in the document (which object or array is open, whether a
//! comma is due), every value is written by serde, and each system's records
//! (already checked to be a JSON array when the system sent them) are copied
//! in between their brackets, so the pieces always concatenate into one
//! valid document.

use serde::Serialize;

/// The bundle's header: what the request was.
#[derive(Debug, Clone, Serialize)]
pub struct RequestHead<'a> {
    /// Request id.
    pub id: &'a str,
    /// The controller.
    pub tenant_id: &'a str,
    /// What was asked.
    pub request_type: &'a str,
    /// Rulebook.
    pub regime: &'a str,
    /// RFC 3339.
    pub received_at: String,
    /// RFC 3339.
    pub due_at: String,
    /// RFC 3339, once completed.
    pub completed_at: Option<String>,
    /// The subject's primary ref.
    pub subject_ref: Option<&'a str>,
    /// Scope; empty = everything.
    pub categories: &'a [String],
}

/// One system's document header.
#[derive(Debug, Clone, Serialize)]
pub struct DocumentHead<'a> {
    /// The system that answered.
    pub system: &'a str,
    /// Request id.
    pub request_id: &'a str,
    /// What was asked.
    pub request_type: &'a str,
    /// The task's scope.
    pub categories: &'a [String],
    /// Records the system reported.
    pub records_affected: i64,
    /// The system holds nothing for the person (unlike 0 records acted on).
    pub no_data_held: bool,
}

/// Format name written at the top of every JSON bundle.
pub const FORMAT: &str = "proctor.export.v1";

/// Where the writer is, so each piece knows its separators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Start,
    /// In `documents`; `any` once a document was written.
    Documents {
        any: bool,
    },
    /// In a document's `records`; `any` once a record was written.
    Records {
        any: bool,
    },
    Done,
}

/// Writes a bundle as pieces: [`BundleWriter::head`], then per system
/// [`document`](BundleWriter::document), its [`records`](BundleWriter::records)
/// batches and [`end_document`](BundleWriter::end_document), then
/// [`finish`](BundleWriter::finish). Calls out of that order write nothing.
#[derive(Debug)]
pub struct BundleWriter {
    at: At,
}

impl Default for BundleWriter {
    fn default() -> Self {
        Self::new()
    }
}

fn json<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Serializing these plain structs and strings into memory cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

impl BundleWriter {
    /// A writer at the start of a bundle.
    pub fn new() -> Self {
        Self { at: At::Start }
    }

    /// Opens the bundle: its format, the request, and the documents array.
    pub fn head(&mut self, request: &RequestHead<'_>) -> Vec<u8> {
        if self.at != At::Start {
            return Vec::new();
        }
        let mut out = b"{\"format\":".to_vec();
        json(&mut out, FORMAT);
        out.extend_from_slice(b",\"request\":");
        json(&mut out, request);
        out.extend_from_slice(b",\"documents\":[");
        self.at = At::Documents { any: false };
        out
    }

    /// Opens one system's document and its records array.
    pub fn document(&mut self, doc: &DocumentHead<'_>) -> Vec<u8> {
        let At::Documents { any } = self.at else {
            return Vec::new();
        };
        let mut out = if any { b",".to_vec() } else { Vec::new() };
        out.extend_from_slice(b"{\"system\":");
        json(&mut out, doc.system);
        out.extend_from_slice(b",\"request_id\":");
        json(&mut out, doc.request_id);
        out.extend_from_slice(b",\"request_type\":");
        json(&mut out, doc.request_type);
        out.extend_from_slice(b",\"categories\":");
        json(&mut out, doc.categories);
        out.extend_from_slice(b",\"records_affected\":");
        json(&mut out, &doc.records_affected);
        out.extend_from_slice(b",\"no_data_held\":");
        json(&mut out, &doc.no_data_held);
        out.extend_from_slice(b",\"records\":[");
        self.at = At::Records { any: false };
        out
    }

    /// One batch of records: a JSON array as the system sent it. An empty
    /// array writes nothing.
    pub fn records(&mut self, array: &[u8]) -> Vec<u8> {
        let At::Records { any } = self.at else {
            return Vec::new();
        };
        let inner = super::model::array_inner(array);
        if inner.is_empty() {
            return Vec::new();
        }
        let mut out = if any { b",".to_vec() } else { Vec::new() };
        out.extend_from_slice(inner);
        self.at = At::Records { any: true };
        out
    }

    /// Closes the current document.
    pub fn end_document(&mut self) -> Vec<u8> {
        if !matches!(self.at, At::Records { .. }) {
            return Vec::new();
        }
        self.at = At::Documents { any: true };
        b"]}".to_vec()
    }

    /// Closes the bundle.
    pub fn finish(&mut self) -> Vec<u8> {
        if !matches!(self.at, At::Documents { .. }) {
            return Vec::new();
        }
        self.at = At::Done;
        b"]}".to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head<'a>(cats: &'a [String]) -> RequestHead<'a> {
        RequestHead {
            id: "r1",
            tenant_id: "t\"1",
            request_type: "access",
            regime: "gdpr",
            received_at: "2026-01-01T00:00:00+00:00".into(),
            due_at: "2026-02-01T00:00:00+00:00".into(),
            completed_at: None,
            subject_ref: Some("ref"),
            categories: cats,
        }
    }

    fn doc<'a>(system: &'a str, cats: &'a [String]) -> DocumentHead<'a> {
        DocumentHead {
            system,
            request_id: "r1",
            request_type: "access",
            categories: cats,
            records_affected: 3,
            no_data_held: system == "billing",
        }
    }

    #[test]
    fn pieces_concatenate_into_one_document() {
        let cats = vec!["contact.email".to_owned()];
        let mut w = BundleWriter::new();
        let mut all = w.head(&head(&cats));
        all.extend(w.document(&doc("crm", &cats)));
        all.extend(w.records(br#" [ {"a": 1}, {"b": "x]"} ] "#));
        all.extend(w.records(b"[]"));
        all.extend(w.records(br#"[{"c": null}]"#));
        all.extend(w.end_document());
        all.extend(w.document(&doc("billing", &cats)));
        all.extend(w.end_document());
        all.extend(w.finish());
        let v: serde_json::Value = serde_json::from_slice(&all).expect("valid JSON");
        assert_eq!(v["format"], FORMAT);
        assert_eq!(v["request"]["tenant_id"], "t\"1");
        assert_eq!(v["documents"][0]["system"], "crm");
        assert_eq!(v["documents"][0]["records"].as_array().map(Vec::len), Some(3));
        assert_eq!(v["documents"][0]["records"][1]["b"], "x]");
        assert_eq!(v["documents"][1]["records"], serde_json::json!([]));
        assert_eq!(v["documents"][0]["no_data_held"], false);
        assert_eq!(v["documents"][1]["no_data_held"], true);
    }

    #[test]
    fn a_bundle_without_documents_is_valid() {
        let cats = Vec::new();
        let mut w = BundleWriter::new();
        let mut all = w.head(&head(&cats));
        all.extend(w.finish());
        let v: serde_json::Value = serde_json::from_slice(&all).expect("valid JSON");
        assert_eq!(v["documents"], serde_json::json!([]));
    }

    #[test]
    fn calls_out_of_order_write_nothing() {
        let cats = Vec::new();
        let mut w = BundleWriter::new();
        assert!(w.records(b"[1]").is_empty());
        assert!(w.end_document().is_empty());
        assert!(w.finish().is_empty());
        assert!(!w.head(&head(&cats)).is_empty());
        assert!(w.head(&head(&cats)).is_empty());
        assert!(w.records(b"[1]").is_empty());
    }
}

/// Format name in every ZIP export's manifest.
pub const ZIP_FORMAT: &str = "proctor.export.zip.v1";

/// One file in a ZIP export's manifest.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestFile {
    /// Its path in the archive (`files/<system>/<file_name>`).
    pub path: String,
    /// The name the system gave it.
    pub file_name: String,
    /// Its media type.
    pub content_type: String,
    /// Bytes.
    pub size: i64,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
}

/// One system's part of a ZIP export.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestSystem {
    /// The system.
    pub system: String,
    /// The task's scope.
    pub categories: Vec<String>,
    /// Records the system reported.
    pub records: i64,
    /// It holds nothing for the person.
    pub no_data_held: bool,
    /// Path of its records (`records/<system>.json`, a JSON array).
    pub records_path: String,
    /// The files it attached.
    pub files: Vec<ManifestFile>,
}

/// `manifest.json`, the first entry of a ZIP export: what the request was
/// and, per system, what the archive holds, so a reader checks every file
/// against its size and checksum.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest<'a> {
    /// [`ZIP_FORMAT`].
    pub format: &'static str,
    /// Request id.
    pub request_id: &'a str,
    /// What was asked.
    pub request_type: &'a str,
    /// Rulebook.
    pub regime: &'a str,
    /// RFC 3339.
    pub received_at: String,
    /// RFC 3339, once completed.
    pub completed_at: Option<String>,
    /// Every system that answered, by name.
    pub systems: Vec<ManifestSystem>,
}

/// A [`std::io::Write`] that hands the bytes written to it on in pieces of
/// at most `piece` bytes (to a bounded channel, say): the ZIP writer writes
/// into it, so an export is never held whole. `send` returning false (the
/// reader went away) turns further writes into `BrokenPipe`.
pub struct PieceSink<F: FnMut(Vec<u8>) -> bool> {
    buf: Vec<u8>,
    piece: usize,
    send: F,
}

impl<F: FnMut(Vec<u8>) -> bool> PieceSink<F> {
    /// A sink of pieces of `piece` bytes (at least 1).
    pub fn new(piece: usize, send: F) -> Self {
        let piece = piece.max(1);
        Self {
            buf: Vec::with_capacity(piece),
            piece,
            send,
        }
    }

    fn ship(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let out = std::mem::replace(&mut self.buf, Vec::with_capacity(self.piece));
        if (self.send)(out) {
            Ok(())
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the reader went away",
            ))
        }
    }
}

impl<F: FnMut(Vec<u8>) -> bool> std::io::Write for PieceSink<F> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = self.piece - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= self.piece {
            self.ship()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.ship()
    }
}

#[cfg(test)]
mod sink_tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn pieces_are_bounded_and_complete() {
        let mut got: Vec<Vec<u8>> = Vec::new();
        {
            let mut s = PieceSink::new(4, |p| {
                got.push(p);
                true
            });
            s.write_all(b"abcdefghij").unwrap();
            s.flush().unwrap();
        }
        assert!(got.iter().all(|p| p.len() <= 4));
        assert_eq!(got.concat(), b"abcdefghij");
        let mut gone = PieceSink::new(2, |_| false);
        assert!(gone.write_all(b"abc").is_err());
    }
}
