//! Free text that may name people, kept sealed at rest beside the column
//! that once held it in the clear: a subject request's cancel, reject and
//! extension reasons, a fulfilment task's error, a screened party's
//! identity, a breach's nature and contact point.
//!
//! Each such field has three stored parts: the old clear column, the
//! ciphertext and the id of the key that sealed it. A write by this version
//! seals the text and empties the clear column; a non-empty clear column is
//! therefore text written before sealing came in, or by a replica of the
//! previous version still running during a rolling upgrade, and it is the
//! newest value: it wins over a ciphertext left from before. Servers seal
//! such rows themselves (`jobs::seal_clear_rows`, and `proctor keys
//! reseal`), since a migration has no key to seal with.
//!
//! Every ciphertext is bound to its row and its field (the AAD is
//! `<field>/<row id>`), so one field's ciphertext cannot be passed off as
//! another's, nor moved to another row.

use crate::error::{Error, Result};
use crate::secrets::KeyRing;

/// The sealed fields, each with its own AAD label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Why a subject request was cancelled or rejected, and why its
    /// deadline was extended (one JSON document).
    RequestReasons,
    /// What a platform system reported when a fulfilment task failed.
    TaskError,
    /// A screened party's name, date of birth, country and aliases (one
    /// JSON document), kept for re-screening.
    Party,
    /// What happened in a breach.
    BreachNature,
    /// Whom to contact about a breach (usually a named DPO).
    BreachContactPoint,
    /// A public authority's request: legal basis, reference, subject
    /// references, challenge outcome and note (one JSON document).
    AuthorityRequestTexts,
    /// A webhook's signing secret (current or previous): whoever holds it
    /// can forge deliveries to the tenant.
    WebhookSecret,
    /// A legal hold's subject ref, reason and release reason (one JSON
    /// document).
    LegalHoldTexts,
    /// The subject ref a logged decision named.
    DecisionSubject,
    /// A platform system's question to a subject request's controller.
    SubjectQuestion,
    /// The controller's answer to such a question.
    SubjectAnswer,
}

impl Field {
    /// The AAD label: what the ciphertext is, before the row it belongs to.
    fn label(self) -> &'static str {
        match self {
            Field::RequestReasons => "request-reasons",
            Field::TaskError => "task-error",
            Field::Party => "screening-party",
            Field::BreachNature => "breach-nature",
            Field::BreachContactPoint => "breach-contact-point",
            Field::AuthorityRequestTexts => "authority-request-texts",
            Field::WebhookSecret => "webhook-secret",
            Field::LegalHoldTexts => "legal-hold-texts",
            Field::DecisionSubject => "decision-subject",
            Field::SubjectQuestion => "subject-question",
            Field::SubjectAnswer => "subject-answer",
        }
    }

    /// What a ciphertext of this field for row `id` is bound to.
    pub fn aad(self, id: &str) -> Vec<u8> {
        format!("{}/{id}", self.label()).into_bytes()
    }
}

/// One sealed field as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredText {
    /// The clear column: empty (or NULL) once sealed; otherwise text from
    /// before sealing or from a previous version's replica, which wins.
    pub clear: Option<String>,
    /// Id of the key that sealed [`sealed`](Self::sealed).
    pub key_id: Option<String>,
    /// Base64 of nonce and ciphertext.
    pub sealed: Option<String>,
}

impl StoredText {
    /// Seals `text` as `field` of row `id`; an empty text stores nothing.
    pub fn seal(ring: &KeyRing, field: Field, id: &str, text: &str) -> Result<Self> {
        if text.is_empty() {
            return Ok(Self::default());
        }
        let (key_id, sealed) = ring.seal(text.as_bytes(), &field.aad(id))?;
        Ok(Self {
            clear: None,
            key_id: Some(key_id),
            sealed: Some(sealed),
        })
    }

    /// The stored parts as read from the row.
    pub fn from_columns(clear: Option<String>, key_id: Option<String>, sealed: Option<String>) -> Self {
        Self {
            clear,
            key_id,
            sealed,
        }
    }

    /// The text still held in the clear, if any: what must be sealed.
    pub fn clear_text(&self) -> Option<&str> {
        self.clear.as_deref().filter(|c| !c.is_empty())
    }

    /// The text (empty when there is none); `id` must be the row it
    /// belongs to.
    pub fn open(&self, ring: &KeyRing, field: Field, id: &str) -> Result<String> {
        if let Some(c) = self.clear_text() {
            return Ok(c.to_owned());
        }
        match (&self.key_id, &self.sealed) {
            (Some(k), Some(s)) => String::from_utf8(ring.open(k, s, &field.aad(id))?)
                .map_err(|_| Error::Unexpected(format!("sealed {} is not UTF-8", field.label()))),
            _ => Ok(String::new()),
        }
    }

    /// The text, or `None` when there is none.
    pub fn open_opt(&self, ring: &KeyRing, field: Field, id: &str) -> Result<Option<String>> {
        Ok(Some(self.open(ring, field, id)?).filter(|t| !t.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::new(&[[7u8; 32]]).unwrap()
    }

    #[test]
    fn sealed_text_opens_only_as_its_field_of_its_row() {
        let r = ring();
        let s = StoredText::seal(&r, Field::TaskError, "task-1", "Ada asked twice").unwrap();
        assert!(s.clear.is_none());
        assert!(!s.sealed.as_deref().unwrap().contains("Ada"));
        assert_eq!(s.open(&r, Field::TaskError, "task-1").unwrap(), "Ada asked twice");
        assert!(
            s.open(&r, Field::TaskError, "task-2").is_err(),
            "bound to its row"
        );
        assert!(
            s.open(&r, Field::BreachNature, "task-1").is_err(),
            "bound to its field"
        );
    }

    #[test]
    fn empty_text_stores_nothing_and_opens_empty() {
        let r = ring();
        let s = StoredText::seal(&r, Field::BreachContactPoint, "b", "").unwrap();
        assert_eq!(s, StoredText::default());
        assert_eq!(s.open(&r, Field::BreachContactPoint, "b").unwrap(), "");
        assert_eq!(s.open_opt(&r, Field::BreachContactPoint, "b").unwrap(), None);
    }

    #[test]
    fn clear_text_from_an_older_writer_wins_over_a_stale_ciphertext() {
        let r = ring();
        let mut s = StoredText::seal(&r, Field::BreachNature, "b", "old").unwrap();
        s.clear = Some("written by the previous version".into());
        assert_eq!(
            s.open(&r, Field::BreachNature, "b").unwrap(),
            "written by the previous version"
        );
        s.clear = Some(String::new());
        assert_eq!(s.open(&r, Field::BreachNature, "b").unwrap(), "old");
        assert_eq!(s.clear_text(), None);
    }
}
