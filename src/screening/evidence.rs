//! What a screening result rests on: the list versions searched, the
//! review threshold and the matcher's version, at a time. Kept with every
//! recorded result so an auditor can later ask "against which lists, at
//! which threshold, was this party screened clear on 3 May?", and signed
//! into a receipt for a clear result that a third party can check offline
//! with the receipt key (`GetReceiptKey`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The matcher's version, recorded with every result: bumped whenever
/// scoring changes what a name or identifier scores, so a result can be
/// told apart from one a different scorer produced.
pub const MATCHER_VERSION: &str = "proctor-matcher/2026.12";

/// What a receipt document says it is.
pub const RECEIPT_KIND: &str = "proctor.screening.receipt.v1";

/// One list version a screening searched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListVersionRef {
    /// The source (`ofac_sdn`, ...).
    pub source: String,
    /// Its version number.
    pub version: u64,
    /// The sha256 of the imported files.
    pub sha256: String,
}

/// The evidence of one screening.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The list versions searched, by source.
    pub lists: Vec<ListVersionRef>,
    /// The review threshold the hits were judged at.
    pub threshold: f64,
    /// [`MATCHER_VERSION`] of the scorer that ran.
    pub matcher_version: String,
    /// When it was screened.
    pub screened_at: DateTime<Utc>,
}

impl Evidence {
    /// Evidence of a screening of `lists` (any order) at `threshold` now.
    pub fn new(mut lists: Vec<ListVersionRef>, threshold: f64, screened_at: DateTime<Utc>) -> Self {
        lists.sort_by(|a, b| a.source.cmp(&b.source));
        Self {
            lists,
            threshold,
            matcher_version: MATCHER_VERSION.to_owned(),
            screened_at,
        }
    }
}

/// The document a clear result's receipt signs: JSON with its fields in a
/// fixed order, so the bytes signed are the bytes handed out. It names the
/// party by its reference only (no name, no identifier), the outcome, the
/// stored result's id and the evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiptDocument {
    /// [`RECEIPT_KIND`].
    pub kind: String,
    /// The stored result this receipt is for.
    pub result_id: String,
    /// The caller's reference of the party.
    pub party_ref: String,
    /// Always `clear`: only clear results get receipts.
    pub outcome: String,
    /// When, RFC 3339 with microseconds.
    pub screened_at: String,
    /// The review threshold.
    pub threshold: f64,
    /// The scorer's version.
    pub matcher_version: String,
    /// The list versions searched.
    pub lists: Vec<ListVersionRef>,
}

impl ReceiptDocument {
    /// The receipt document of a clear screening of `party_ref`.
    pub fn clear(result_id: &str, party_ref: &str, e: &Evidence) -> Self {
        Self {
            kind: RECEIPT_KIND.to_owned(),
            result_id: result_id.to_owned(),
            party_ref: party_ref.to_owned(),
            outcome: "clear".to_owned(),
            screened_at: e.screened_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            threshold: e.threshold,
            matcher_version: e.matcher_version.clone(),
            lists: e.lists.clone(),
        }
    }

    /// The exact text signed.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn lists() -> Vec<ListVersionRef> {
        vec![
            ListVersionRef {
                source: "un_sc".into(),
                version: 3,
                sha256: "bb".into(),
            },
            ListVersionRef {
                source: "ofac_sdn".into(),
                version: 7,
                sha256: "aa".into(),
            },
        ]
    }

    #[test]
    fn evidence_lists_are_in_source_order() {
        let at = Utc.with_ymd_and_hms(2026, 5, 3, 10, 0, 0).unwrap();
        let e = Evidence::new(lists(), 0.8, at);
        let sources: Vec<&str> = e.lists.iter().map(|l| l.source.as_str()).collect();
        assert_eq!(sources, ["ofac_sdn", "un_sc"]);
        assert_eq!(e.matcher_version, MATCHER_VERSION);
    }

    #[test]
    fn the_receipt_document_is_stable() {
        let at = Utc.with_ymd_and_hms(2026, 5, 3, 10, 0, 0).unwrap();
        let e = Evidence::new(lists(), 0.8, at);
        let d = ReceiptDocument::clear("r1", "tenants/t1/contacts/9", &e);
        assert_eq!(
            d.to_text(),
            format!(
                "{{\"kind\":\"{RECEIPT_KIND}\",\"result_id\":\"r1\",\"party_ref\":\"tenants/t1/contacts/9\",\
                 \"outcome\":\"clear\",\"screened_at\":\"2026-05-03T10:00:00.000000Z\",\"threshold\":0.8,\
                 \"matcher_version\":\"{MATCHER_VERSION}\",\"lists\":[{{\"source\":\"ofac_sdn\",\"version\":7,\
                 \"sha256\":\"aa\"}},{{\"source\":\"un_sc\",\"version\":3,\"sha256\":\"bb\"}}]}}"
            )
        );
        let back: ReceiptDocument = serde_json::from_str(&d.to_text()).unwrap();
        assert_eq!(back, d);
    }
}
