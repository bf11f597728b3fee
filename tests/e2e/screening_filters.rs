//! Screening restricted to some lists and programmes, and list entries
//! looked up by their list id with the versions they appeared in.

use proctor::proto::v1::{
    GetListEntryRequest, IdentifierType, Outcome, Party, PartyType, ScreenRequest, ScreenResponse,
};
use tonic::Code;

use crate::on_both_backends;
use crate::screening::{client, import};
use crate::support::{Backend, TestApp, authed, spawn_app, violated_fields};

/// An OFAC CSV row: `ent`, name, type (`vessel`, `-0- ` for an entity),
/// programme, remarks.
fn row(ent: u32, name: &str, kind: &str, program: &str, remarks: &str) -> String {
    format!("{ent},\"{name}\",{kind},\"{program}\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,\"{remarks}\"\n")
}

fn set(rows: &[String]) -> Vec<(String, Vec<u8>)> {
    vec![("sdn.csv".to_owned(), rows.concat().into_bytes())]
}

async fn screen_with(
    app: &TestApp,
    name: &str,
    sources: &[&str],
    programs: &[&str],
) -> Result<ScreenResponse, tonic::Status> {
    let req = ScreenRequest {
        party: Some(Party {
            name: name.into(),
            r#type: PartyType::Organization as i32,
            ..Default::default()
        }),
        limit: 10,
        sources: sources.iter().map(|s| (*s).to_owned()).collect(),
        programs: programs.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    };
    client(app)
        .screen(authed(req, &app.keys.platform("crm")))
        .await
        .map(|r| r.into_inner())
}

fn hit_ids(r: &ScreenResponse) -> Vec<String> {
    r.hits
        .iter()
        .map(|h| format!("{}/{}", h.source, h.entry_id))
        .collect()
}

async fn sources_and_programs_restrict_a_screening(b: Backend) {
    let app = spawn_app(b).await;
    let comp = app.keys.compliance();
    let sdn = [
        row(1, "NORTHWIND TRADING", "-0- ", "IRAN", ""),
        row(2, "NORTHWIND TRADING", "-0- ", "SDGT", ""),
    ];
    import(&app, "ofac_sdn", set(&sdn), &comp).await.unwrap();
    let cons = [row(7, "NORTHWIND TRADING", "-0- ", "SSI", "")];
    import(&app, "ofac_cons", set(&cons), &comp).await.unwrap();

    let all = screen_with(&app, "Northwind Trading", &[], &[]).await.unwrap();
    assert_eq!(hit_ids(&all), ["ofac_cons/7", "ofac_sdn/1", "ofac_sdn/2"]);
    let cons_only = screen_with(&app, "Northwind Trading", &["ofac_cons"], &[])
        .await
        .unwrap();
    assert_eq!(hit_ids(&cons_only), ["ofac_cons/7"]);
    // Programme codes compare without case, across the sources chosen.
    let sdgt = screen_with(&app, "Northwind Trading", &[], &["sdgt"])
        .await
        .unwrap();
    assert_eq!(hit_ids(&sdgt), ["ofac_sdn/2"]);
    assert_eq!(sdgt.outcome, Outcome::PossibleMatch as i32);
    let both = screen_with(&app, "Northwind Trading", &["ofac_sdn"], &["SSI", "IRAN"])
        .await
        .unwrap();
    assert_eq!(hit_ids(&both), ["ofac_sdn/1"]);
    let none = screen_with(&app, "Northwind Trading", &["ofac_cons"], &["IRAN"])
        .await
        .unwrap();
    assert_eq!(none.outcome, Outcome::Clear as i32);
    assert!(none.hits.is_empty());

    // A known source with no list loaded cannot screen anyone clear.
    let e = screen_with(&app, "Northwind Trading", &["un_sc"], &[])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("un_sc"), "{}", e.message());
    let e = screen_with(&app, "Northwind Trading", &["ofac_sdn", "nowhere"], &[""])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&e), ["sources[1]", "programs[0]"]);
    app.stop().await;
}

on_both_backends!(
    sources_and_programs_restrict_a_screening,
    sources_and_programs_restrict_a_screening
);

async fn get(
    app: &TestApp,
    source: &str,
    id: &str,
    token: &str,
) -> Result<proctor::proto::v1::ListEntry, tonic::Status> {
    client(app)
        .get_list_entry(authed(
            GetListEntryRequest {
                source: source.into(),
                entry_id: id.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

async fn list_entries_are_looked_up_with_their_versions(b: Backend) {
    let app = spawn_app(b).await;
    let comp = app.keys.compliance();
    let crm = app.keys.platform("crm");
    let kept = row(
        10,
        "ARK",
        "\"vessel\"",
        "IRAN",
        "Vessel Registration Identification IMO 9187655; MMSI 256842000.",
    );
    let v1 = [kept.clone(), row(11, "GONE LTD", "-0- ", "SDGT", "")];
    import(&app, "ofac_sdn", set(&v1), &comp).await.unwrap();
    let v2 = [
        kept,
        row(
            12,
            "NEWCO, Ivan",
            "\"individual\"",
            "UKRAINE-EO13660",
            "DOB 01 Feb 1970; Passport 7001234 (Russia).",
        ),
    ];
    import(&app, "ofac_sdn", set(&v2), &comp).await.unwrap();

    let ark = get(&app, "ofac_sdn", "10", &crm).await.unwrap();
    assert_eq!((ark.first_version, ark.last_version), (1, 2));
    assert_eq!(ark.kind, PartyType::Vessel as i32);
    assert_eq!(ark.names, ["ARK"]);
    assert_eq!(ark.programs, ["IRAN"]);
    let ids: Vec<(i32, &str)> = ark
        .identifiers
        .iter()
        .map(|i| (i.r#type, i.value.as_str()))
        .collect();
    assert_eq!(
        ids,
        [
            (IdentifierType::Imo as i32, "9187655"),
            (IdentifierType::Mmsi as i32, "256842000")
        ]
    );
    let gone = get(&app, "ofac_sdn", "11", &comp).await.unwrap();
    assert_eq!(
        (gone.first_version, gone.last_version),
        (1, 1),
        "removed in version 2"
    );
    let new = get(&app, "ofac_sdn", "12", &crm).await.unwrap();
    assert_eq!((new.first_version, new.last_version), (2, 2));
    assert_eq!(new.dates_of_birth, ["01 Feb 1970"]);
    assert_eq!(new.identifiers[0].country, "Russia");
    assert_eq!(new.kind, PartyType::Individual as i32);

    let missing = get(&app, "ofac_sdn", "99", &crm).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(missing.message().contains("ofac_sdn/99"), "{}", missing.message());
    // Another source's id space is its own.
    assert_eq!(
        get(&app, "ofac_cons", "10", &crm).await.unwrap_err().code(),
        Code::NotFound
    );
    let bad = get(&app, "nowhere", "", &crm).await.unwrap_err();
    assert_eq!(violated_fields(&bad), ["source", "entry_id"]);
    let tenant = get(&app, "ofac_sdn", "10", &app.keys.tenant("t1"))
        .await
        .unwrap_err();
    assert_eq!(tenant.code(), Code::PermissionDenied);
    app.stop().await;
}

on_both_backends!(
    list_entries_are_looked_up_with_their_versions,
    list_entries_are_looked_up_with_their_versions
);
