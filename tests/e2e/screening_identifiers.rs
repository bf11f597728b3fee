//! Screening by identifiers end to end: IMO numbers read from OFAC remarks
//! tell two vessels of one name apart and find a renamed vessel; a party's
//! identifiers are checked, kept sealed with the party, and re-screened
//! when a new list version names them.

use proctor::proto::v1::{
    Identifier, IdentifierType, Outcome, Party, PartyType, ScreenRequest, ScreenResponse,
};
use proctor::screening::repo::StoredParty;
use tonic::Code;

use crate::on_both_backends;
use crate::screening::{client, import};
use crate::support::{Backend, TestApp, spawn_app, violated_fields};

/// An OFAC SDN CSV row of a vessel with `remarks`.
fn vessel_row(ent: u32, name: &str, remarks: &str) -> String {
    format!(
        "{ent},\"{name}\",\"vessel\",\"IRAN\",-0- ,-0- ,\"Crude/Oil Products Tanker\",-0- ,-0- ,\"Panama\",-0- ,\"{remarks}\"\n"
    )
}

/// A one-file OFAC set of `rows`.
fn sdn(rows: &[String]) -> Vec<(String, Vec<u8>)> {
    vec![("sdn.csv".to_owned(), rows.concat().into_bytes())]
}

fn base_rows() -> Vec<String> {
    vec![
        vessel_row(
            1001,
            "SNOW STORM",
            "Vessel Registration Identification IMO 9187629; MMSI 572469210; Linked To: X.",
        ),
        vessel_row(
            1002,
            "SNOW STORM",
            "Vessel Registration Identification IMO 9187655.",
        ),
        vessel_row(1003, "ARK", "Vessel Registration Identification IMO 9074729."),
    ]
}

fn imo(value: &str) -> Identifier {
    Identifier {
        r#type: IdentifierType::Imo as i32,
        value: value.into(),
        country: String::new(),
    }
}

async fn screen_vessel(
    app: &TestApp,
    name: &str,
    ids: Vec<Identifier>,
    party_ref: &str,
) -> Result<ScreenResponse, tonic::Status> {
    let req = ScreenRequest {
        party: Some(Party {
            name: name.into(),
            r#type: PartyType::Vessel as i32,
            identifiers: ids,
            ..Default::default()
        }),
        party_ref: party_ref.into(),
        limit: 5,
        ..Default::default()
    };
    client(app)
        .screen(crate::support::authed(req, &app.keys.platform("crm")))
        .await
        .map(|r| r.into_inner())
}

/// A party's row as stored.
async fn stored_party(app: &TestApp, party_ref: &str) -> StoredParty {
    use diesel::prelude::*;
    use proctor::db::schema::screening_parties::dsl as pa;
    let p = party_ref.to_owned();
    app.store
        .read("test.stored_party", move |c, _| {
            Ok(pa::screening_parties.filter(pa::party_ref.eq(&p)).first(c)?)
        })
        .await
        .unwrap()
}

async fn identifiers_tell_vessels_apart(b: Backend) {
    let app = spawn_app(b).await;
    let comp = app.keys.compliance();
    import(&app, "ofac_sdn", sdn(&base_rows()), &comp).await.unwrap();

    // By name alone the two SNOW STORMs are the same.
    let by_name = screen_vessel(&app, "Snow Storm", vec![], "").await.unwrap();
    let ids: Vec<&str> = by_name.hits.iter().map(|h| h.entry_id.as_str()).collect();
    assert_eq!(ids, ["1001", "1002"], "{by_name:?}");
    assert_eq!(by_name.hits[0].score, by_name.hits[1].score);

    // With the IMO number (written with its prefix and a space) only the
    // right one alerts; the other's IMO number differs, which counts
    // against it.
    let with_imo = screen_vessel(&app, "Snow Storm", vec![imo("imo 918-7655")], "")
        .await
        .unwrap();
    assert_eq!(with_imo.outcome, Outcome::PossibleMatch as i32);
    let right = &with_imo.hits[0];
    assert_eq!(right.entry_id, "1002", "{with_imo:?}");
    assert!(right.score >= 0.95, "{right:?}");
    assert_eq!(right.matched_identifiers, vec![imo("9187655")]);
    assert!(
        right.explanation.contains("identifier agrees: IMO 9187655"),
        "{}",
        right.explanation
    );
    let wrong = with_imo.hits.iter().find(|h| h.entry_id == "1001").unwrap();
    assert!(wrong.score < 0.8, "{wrong:?}");
    assert!(wrong.explanation.contains("IMO differs"), "{}", wrong.explanation);
    assert!(wrong.matched_identifiers.is_empty());

    // A renamed vessel: no name in common, the IMO number finds it.
    let renamed = screen_vessel(&app, "Blue Horizon", vec![imo("9074729")], "")
        .await
        .unwrap();
    assert_eq!(renamed.outcome, Outcome::PossibleMatch as i32, "{renamed:?}");
    assert_eq!(renamed.hits[0].entry_id, "1003");
    assert_eq!(renamed.hits[0].primary_name, "ARK");
    let by_new_name = screen_vessel(&app, "Blue Horizon", vec![], "").await.unwrap();
    assert_eq!(by_new_name.outcome, Outcome::Clear as i32);

    // Bad identifiers are refused by field.
    let bad = screen_vessel(&app, "Ark", vec![imo("9074728")], "")
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&bad), ["party.identifiers[0].value"]);
    assert!(bad.message().contains("check digit"), "{}", bad.message());
    let untyped = Identifier {
        r#type: 0,
        value: "X".into(),
        country: String::new(),
    };
    let bad = screen_vessel(&app, "Ark", vec![untyped], "").await.unwrap_err();
    assert_eq!(violated_fields(&bad), ["party.identifiers[0].type"]);
    app.stop().await;
}

on_both_backends!(identifiers_tell_vessels_apart, identifiers_tell_vessels_apart);

async fn a_registered_party_is_rescreened_by_its_identifiers(b: Backend) {
    let app = spawn_app(b).await;
    let comp = app.keys.compliance();
    import(&app, "ofac_sdn", sdn(&base_rows()), &comp).await.unwrap();
    let party_ref = "tenants/t1/vessels/7";
    let first = screen_vessel(&app, "Blue Horizon", vec![imo("9187667")], party_ref)
        .await
        .unwrap();
    assert_eq!(first.outcome, Outcome::Clear as i32, "{first:?}");

    // The next version lists the party's vessel under another name: the
    // re-screening finds it by the identifier kept (sealed) with the party.
    let mut rows = base_rows();
    rows.push(vessel_row(
        1004,
        "ARGO I",
        "Vessel Registration Identification IMO 9187667.",
    ));
    let v2 = import(&app, "ofac_sdn", sdn(&rows), &comp).await.unwrap();
    assert_eq!(
        (v2.added, v2.rescreened_parties, v2.cases_opened),
        (1, 1, 1),
        "{v2:?}"
    );
    let again = screen_vessel(&app, "Blue Horizon", vec![imo("9187667")], party_ref)
        .await
        .unwrap();
    assert_eq!(again.outcome, Outcome::PossibleMatch as i32);
    assert_eq!(again.hits[0].entry_id, "1004");
    assert!(!again.case_id.is_empty());

    // The party's row holds nothing of the identifier in the clear.
    let stored = stored_party(&app, party_ref).await;
    assert!(stored.sealed.is_some() && stored.key_id.is_some());
    assert!(!format!("{stored:?}").contains("9187667"), "{stored:?}");
    app.stop().await;
}

on_both_backends!(
    a_registered_party_is_rescreened_by_its_identifiers,
    a_registered_party_is_rescreened_by_its_identifiers
);
