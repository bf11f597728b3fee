//! The evidence of a screening: the list versions searched, the threshold
//! and the matcher version, returned and stored with a recorded result; a
//! signed receipt for a clear result that a third party verifies offline;
//! and hits suppressed by a cleared case that say which case.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use proctor::clock::Clock;
use proctor::proto::v1::{
    GetReceiptKeyRequest, Outcome, Party, PartyType, Resolution, ResolveCaseRequest, ScreenRequest,
    ScreenResponse,
};

use crate::on_both_backends;
use crate::screening::{client, import};
use crate::support::{Backend, TestApp, authed, spawn_app};

fn row(ent: u32, name: &str, program: &str) -> String {
    format!("{ent},\"{name}\",-0- ,\"{program}\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- \n")
}

fn set(rows: &[String]) -> Vec<(String, Vec<u8>)> {
    vec![("sdn.csv".to_owned(), rows.concat().into_bytes())]
}

async fn screen(app: &TestApp, name: &str, party_ref: &str, sources: &[&str]) -> ScreenResponse {
    let req = ScreenRequest {
        party: Some(Party {
            name: name.into(),
            r#type: PartyType::Organization as i32,
            ..Default::default()
        }),
        party_ref: party_ref.into(),
        sources: sources.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    };
    client(app)
        .screen(authed(req, &app.keys.platform("crm")))
        .await
        .unwrap()
        .into_inner()
}

async fn receipt_key(app: &TestApp) -> VerifyingKey {
    let k = app
        .subject_requests()
        .get_receipt_key(authed(GetReceiptKeyRequest {}, &app.keys.platform("crm")))
        .await
        .unwrap()
        .into_inner();
    VerifyingKey::from_bytes(&k.public_key.try_into().unwrap()).unwrap()
}

async fn stored_results(app: &TestApp, party_ref: &str) -> Vec<proctor::screening::repo::ResultRow> {
    let p = party_ref.to_owned();
    app.store
        .read("test.results", move |c, _| {
            proctor::screening::repo::results_of(c, &p)
        })
        .await
        .unwrap()
}

async fn evidence_is_returned_stored_and_signed(b: Backend) {
    let app = spawn_app(b).await;
    let comp = app.keys.compliance();
    let sdn = import(
        &app,
        "ofac_sdn",
        set(&[row(1, "NORTHWIND TRADING", "IRAN")]),
        &comp,
    )
    .await
    .unwrap();
    let cons = import(&app, "ofac_cons", set(&[row(5, "SOUTHWIND MILLS", "SSI")]), &comp)
        .await
        .unwrap();

    // A clear screening of a registered party: evidence and a receipt.
    let party_ref = "tenants/t1/suppliers/1";
    let clear = screen(&app, "Quiet Meadow Bakery", party_ref, &[]).await;
    assert_eq!(clear.outcome, Outcome::Clear as i32);
    let ev = clear.evidence.clone().expect("evidence");
    let lists: Vec<(String, u64, String)> = ev
        .lists
        .iter()
        .map(|l| (l.source.clone(), l.version, l.sha256.clone()))
        .collect();
    assert_eq!(
        lists,
        [
            ("ofac_cons".to_owned(), cons.version, cons.sha256.clone()),
            ("ofac_sdn".to_owned(), sdn.version, sdn.sha256.clone())
        ]
    );
    assert_eq!(ev.threshold, app.config.screening_review_threshold);
    assert!(!ev.matcher_version.is_empty());
    assert_eq!(
        ev.screened_at.as_ref().unwrap().seconds,
        app.clock.now().timestamp()
    );

    let receipt = clear
        .receipt
        .clone()
        .expect("a clear result with a party_ref has a receipt");
    let key = receipt_key(&app).await;
    let sig = Signature::from_slice(&receipt.signature).unwrap();
    key.verify(receipt.document.as_bytes(), &sig)
        .expect("the receipt verifies");
    let tampered = receipt.document.replace("\"clear\"", "\"cleared\"");
    assert!(key.verify(tampered.as_bytes(), &sig).is_err());
    let doc: serde_json::Value = serde_json::from_str(&receipt.document).unwrap();
    assert_eq!(doc["kind"], "proctor.screening.receipt.v1");
    assert_eq!(doc["party_ref"], party_ref);
    assert_eq!(doc["outcome"], "clear");
    assert_eq!(doc["lists"][1]["sha256"], sdn.sha256);
    assert_eq!(doc["threshold"], ev.threshold);
    assert!(
        !receipt.document.contains("Meadow"),
        "the receipt names the party by reference only"
    );

    // Stored with the result, so an auditor can ask later.
    let stored = stored_results(&app, party_ref).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, doc["result_id"]);
    assert_eq!(stored[0].outcome, "clear");
    assert_eq!(stored[0].receipt_key_id.as_deref(), Some(receipt.key_id.as_str()));
    let kept: serde_json::Value = serde_json::from_str(&stored[0].evidence).unwrap();
    assert_eq!(kept["lists"][0]["source"], "ofac_cons");
    assert_eq!(kept["lists"][1]["version"], sdn.version);
    assert_eq!(kept["matcher_version"], ev.matcher_version);
    assert!(!stored[0].hits.contains("Meadow") && !stored[0].evidence.contains("Meadow"));

    // Restricted to one source, the evidence names only that one.
    let one = screen(&app, "Quiet Meadow Bakery", party_ref, &["ofac_sdn"]).await;
    let sources: Vec<&str> = one
        .evidence
        .as_ref()
        .unwrap()
        .lists
        .iter()
        .map(|l| l.source.as_str())
        .collect();
    assert_eq!(sources, ["ofac_sdn"]);

    // No party_ref: evidence, no receipt, nothing stored.
    let anonymous = screen(&app, "Quiet Meadow Bakery", "", &[]).await;
    assert!(anonymous.evidence.is_some() && anonymous.receipt.is_none());
    // A possible match has no receipt.
    let hit = screen(&app, "Northwind Trading", "tenants/t1/suppliers/2", &[]).await;
    assert_eq!(hit.outcome, Outcome::PossibleMatch as i32);
    assert!(hit.receipt.is_none());
    let stored = stored_results(&app, "tenants/t1/suppliers/2").await;
    assert_eq!(stored[0].outcome, "possible_match");
    assert_eq!(stored[0].case_id.as_deref(), Some(hit.case_id.as_str()));
    assert!(
        stored[0].hits.contains("\"entry_id\":\"1\""),
        "{}",
        stored[0].hits
    );
    app.stop().await;
}

on_both_backends!(
    evidence_is_returned_stored_and_signed,
    evidence_is_returned_stored_and_signed
);

async fn a_hit_suppressed_by_a_cleared_case_says_so(b: Backend) {
    let app = spawn_app(b).await;
    let comp = app.keys.compliance();
    import(
        &app,
        "ofac_sdn",
        set(&[row(1, "NORTHWIND TRADING", "IRAN")]),
        &comp,
    )
    .await
    .unwrap();
    let party_ref = "tenants/t1/suppliers/9";
    let first = screen(&app, "Northwind Trading", party_ref, &[]).await;
    assert_eq!(first.outcome, Outcome::PossibleMatch as i32);
    assert_eq!(first.hits[0].cleared_by_case, "", "a live hit");
    client(&app)
        .resolve_case(authed(
            ResolveCaseRequest {
                case_id: first.case_id.clone(),
                resolution: Resolution::Cleared as i32,
                note: "a different company, other registry".into(),
            },
            &comp,
        ))
        .await
        .unwrap();

    let again = screen(&app, "Northwind Trading", party_ref, &[]).await;
    assert_eq!(again.outcome, Outcome::Clear as i32);
    assert_eq!(again.hits[0].entry_id, "1");
    assert_eq!(
        again.hits[0].cleared_by_case, first.case_id,
        "the hit names the case that cleared it"
    );
    assert!(again.receipt.is_some());
    let stored = stored_results(&app, party_ref).await;
    assert_eq!(stored.len(), 2);
    let clear = stored.iter().find(|r| r.outcome == "clear").unwrap();
    assert!(clear.hits.contains(&first.case_id), "{}", clear.hits);

    // Another party with the same name is not cleared by that case.
    let other = screen(&app, "Northwind Trading", "tenants/t1/suppliers/10", &[]).await;
    assert_eq!(other.outcome, Outcome::PossibleMatch as i32);
    assert_eq!(other.hits[0].cleared_by_case, "");

    // Once the entry changes, the clearance no longer covers it.
    import(
        &app,
        "ofac_sdn",
        set(&[row(1, "NORTHWIND TRADING", "IRAN] [SDGT")]),
        &comp,
    )
    .await
    .unwrap();
    let changed = screen(&app, "Northwind Trading", party_ref, &[]).await;
    assert_eq!(changed.outcome, Outcome::PossibleMatch as i32);
    assert_eq!(changed.hits[0].cleared_by_case, "");
    app.stop().await;
}

on_both_backends!(
    a_hit_suppressed_by_a_cleared_case_says_so,
    a_hit_suppressed_by_a_cleared_case_says_so
);
