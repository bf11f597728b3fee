//! Sanctioned-party screening end to end: list imports streamed over gRPC
//! (and by the CLI into the database of a running server), versions and
//! diffs of the real OFAC files, screenings, cases with clarification
//! requests in the right inbox, clearances remembered, confirmed matches
//! blocking, re-screening by delta, and who may do what.

use std::time::Duration;

use proctor::inbox::model::Recipient;
use proctor::inbox::repo as inbox;
use proctor::proto::v1::screening_service_client::ScreeningServiceClient;
use proctor::proto::v1::{
    CaseStatus, GetCaseRequest, ImportListChunk, ListCasesRequest, ListVersion, Outcome, Party, PartyType,
    Resolution, ResolveCaseRequest, ScoreNamesRequest, ScreenRequest, ScreenResponse,
};
use proctor::screening::repo as st;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::on_both_backends;
use crate::support::{Backend, TestApp, TestDb, TestKeys, authed, spawn_app, spawn_with, test_config};

const CHUNK: usize = 64 * 1024;

pub(crate) fn fixture(rel: &str) -> (String, Vec<u8>) {
    let path = format!("{}/tests/fixtures/sanctions/{rel}", env!("CARGO_MANIFEST_DIR"));
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"));
    (rel.rsplit('/').next().unwrap().to_owned(), data)
}

pub(crate) fn ofac_set(dir: &str, with_comments: bool) -> Vec<(String, Vec<u8>)> {
    let mut names = vec!["sdn.csv", "alt.csv", "add.csv"];
    if with_comments {
        names.push("sdn_comments.csv");
    }
    names
        .into_iter()
        .map(|n| fixture(&format!("ofac/{dir}/{n}")))
        .collect()
}

pub(crate) fn client(app: &TestApp) -> ScreeningServiceClient<Channel> {
    app.screening().max_decoding_message_size(64 << 20)
}

/// Streams `files` as `ImportList` chunks.
pub(crate) async fn import(
    app: &TestApp,
    source: &str,
    files: Vec<(String, Vec<u8>)>,
    token: &str,
) -> Result<ListVersion, Status> {
    let mut chunks = Vec::new();
    for (name, data) in files {
        for part in data.chunks(CHUNK) {
            chunks.push(ImportListChunk {
                source: source.into(),
                format: String::new(),
                file_name: name.clone(),
                data: part.to_vec(),
            });
        }
    }
    client(app)
        .import_list(authed(tokio_stream::iter(chunks), token))
        .await
        .map(|r| r.into_inner())
}

fn party(name: &str, t: PartyType) -> Party {
    Party {
        name: name.into(),
        r#type: t as i32,
        ..Default::default()
    }
}

pub(crate) async fn screen(
    app: &TestApp,
    name: &str,
    t: PartyType,
    party_ref: &str,
    token: &str,
) -> Result<ScreenResponse, Status> {
    client(app)
        .screen(authed(
            ScreenRequest {
                party: Some(party(name, t)),
                party_ref: party_ref.into(),
                min_score: 0.0,
                limit: 5,
                ..Default::default()
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

async fn versions_diff_and_rescreening(b: Backend) {
    // Two real OFAC versions in a debug build on a busy machine can outlast
    // the default 30 s call timeout; the import itself is what is tested.
    let db = TestDb::new(b);
    let keys = TestKeys::new();
    let mut cfg = test_config(&db, &keys);
    cfg.request_timeout_seconds = 600;
    let app = spawn_with(db, keys, cfg).await;
    let comp = app.keys.compliance();
    let crm = app.keys.platform("crm");

    let v1 = import(&app, "ofac_sdn", ofac_set("sdn_2019-01", false), &comp)
        .await
        .unwrap();
    assert_eq!(
        (v1.version, v1.entries, v1.added, v1.removed, v1.changed),
        (1, 7379, 7379, 0, 0)
    );
    assert_eq!(v1.sha256.len(), 64);

    // A customer added to the SDN list only after 2019-01 screens clear now.
    let r = screen(
        &app,
        "Jasmeet Hakimzada",
        PartyType::Individual,
        "tenants/t1/customers/7",
        &crm,
    )
    .await
    .unwrap();
    assert_eq!(r.outcome, Outcome::Clear as i32, "{r:?}");
    assert!(r.case_id.is_empty());

    // 2021-07: the real differences, by ent_num.
    let v2 = import(&app, "ofac_sdn", ofac_set("sdn_2021-07", true), &comp)
        .await
        .unwrap();
    assert_eq!(
        (v2.version, v2.entries, v2.added, v2.removed),
        (2, 8976, 1858, 261)
    );
    assert!(
        v2.changed >= 20,
        "at least the 20 renamed entries changed: {}",
        v2.changed
    );
    assert!(v2.changed < 8976 - 1858);
    // Re-screening by delta reached the registered party and opened a case.
    assert_eq!((v2.rescreened_parties, v2.cases_opened), (1, 1));

    // The same bytes again are the same version, not a new one.
    let again = import(&app, "ofac_sdn", ofac_set("sdn_2021-07", true), &comp)
        .await
        .unwrap();
    assert_eq!((again.version, again.sha256.clone()), (2, v2.sha256.clone()));

    // The clarification request waits in the tenant's inbox.
    let t1 = app.keys.tenant("t1");
    let envs = crate::support::pull_inbox(&app, &t1, 30).await;
    assert_eq!(envs.len(), 1);
    assert_eq!(envs[0].kind, "screening.clarification");
    let payload: serde_json::Value = serde_json::from_str(&envs[0].payload).unwrap();
    let case_id = payload["case_id"].as_str().unwrap().to_owned();

    // Screening the party again reuses the open case and names the entry.
    let r = screen(
        &app,
        "Jasmeet Hakimzada",
        PartyType::Individual,
        "tenants/t1/customers/7",
        &crm,
    )
    .await
    .unwrap();
    assert_eq!(r.outcome, Outcome::PossibleMatch as i32);
    assert_eq!(r.case_id, case_id);
    assert_eq!(r.hits[0].entry_id, "21845");
    assert_eq!(r.hits[0].source, "ofac_sdn");
    assert!(
        r.hits[0].explanation.contains("hakimzada"),
        "{}",
        r.hits[0].explanation
    );
    app.stop().await;
}
on_both_backends!(versions_diff_and_rescreening, versions_diff_and_rescreening);

async fn cases_clarification_and_blocking(b: Backend) {
    let app = spawn_app(b).await;
    let comp = app.keys.compliance();
    let crm = app.keys.platform("crm");
    let v = import(&app, "ofac_sdn", ofac_set("fixture_small", true), &comp)
        .await
        .unwrap();
    assert_eq!(v.entries, 17);
    let mut c = client(&app);

    // Without a party_ref a screening is a question only: no case.
    let r = screen(&app, "Dmitry Khoroshev", PartyType::Individual, "", &crm)
        .await
        .unwrap();
    assert_eq!(r.outcome, Outcome::PossibleMatch as i32);
    assert!(r.case_id.is_empty());
    assert_eq!(r.hits[0].entry_id, "48603");
    assert!(r.hits[0].programs.contains(&"CYBER2".to_owned()));
    let clear = screen(&app, "Maria Gonzalez", PartyType::Individual, "", &crm)
        .await
        .unwrap();
    assert_eq!(clear.outcome, Outcome::Clear as i32);

    // With a tenant's party_ref: a case, and a clarification request to t1.
    let r = screen(
        &app,
        "KHOROSHEV, Dmitriy Yurevich",
        PartyType::Individual,
        "tenants/t1/contacts/1",
        &crm,
    )
    .await
    .unwrap();
    assert_eq!(r.outcome, Outcome::PossibleMatch as i32, "{r:?}");
    let case_id = r.case_id.clone();
    assert!(!case_id.is_empty());
    let t1 = app.keys.tenant("t1");
    let t2 = app.keys.tenant("t2");
    let envs = crate::support::pull_inbox(&app, &t1, 30).await;
    assert_eq!(envs.len(), 1);
    let payload: serde_json::Value = serde_json::from_str(&envs[0].payload).unwrap();
    assert_eq!(payload["case_id"], case_id.as_str());

    // Tenants see their own parties' cases only.
    let mine = c
        .list_cases(authed(ListCasesRequest::default(), &t1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.cases.len(), 1);
    assert_eq!(mine.cases[0].tenant_id, "t1");
    let theirs = c
        .list_cases(authed(ListCasesRequest::default(), &t2))
        .await
        .unwrap()
        .into_inner();
    assert!(theirs.cases.is_empty());
    let err = c
        .get_case(authed(
            GetCaseRequest {
                case_id: case_id.clone(),
            },
            &t2,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let got = c
        .get_case(authed(
            GetCaseRequest {
                case_id: case_id.clone(),
            },
            &t1,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.status, CaseStatus::Open as i32);
    assert_eq!(got.hits[0].entry_id, "48603");

    // Tenants cannot resolve; compliance clears it as a false positive.
    let resolve = |id: &str, res: Resolution| ResolveCaseRequest {
        case_id: id.into(),
        resolution: res as i32,
        note: "different date of birth on the passport we hold".into(),
    };
    assert_eq!(
        c.resolve_case(authed(resolve(&case_id, Resolution::Cleared), &t1))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let cleared = c
        .resolve_case(authed(resolve(&case_id, Resolution::Cleared), &comp))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cleared.status, CaseStatus::Cleared as i32);
    assert_eq!(cleared.resolved_by, "compliance-officer");
    assert!(cleared.resolved_at.is_some());
    assert_eq!(
        c.resolve_case(authed(resolve(&case_id, Resolution::Confirmed), &comp))
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
    // Remembered: the same party and entry do not alert again.
    let r = screen(
        &app,
        "KHOROSHEV, Dmitriy Yurevich",
        PartyType::Individual,
        "tenants/t1/contacts/1",
        &crm,
    )
    .await
    .unwrap();
    assert_eq!(r.outcome, Outcome::Clear as i32, "{r:?}");
    assert!(r.case_id.is_empty());
    assert!(
        !r.hits.is_empty(),
        "the hit is still shown, it just does not alert"
    );

    // A tenant itself confirmed as a match is blocked.
    let r = screen(
        &app,
        "Artem Mikhaylovich Lifshits",
        PartyType::Individual,
        "tenants/t2",
        &comp,
    )
    .await
    .unwrap();
    let confirmed = c
        .resolve_case(authed(resolve(&r.case_id, Resolution::Confirmed), &comp))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(confirmed.status, CaseStatus::Confirmed as i32);
    let r = screen(&app, "Artem Lifshits", PartyType::Individual, "tenants/t2", &comp)
        .await
        .unwrap();
    assert_eq!(r.outcome, Outcome::ConfirmedMatch as i32);
    let blocked = app
        .store
        .read("t", |c, _| st::tenant_blocked(c, "t2"))
        .await
        .unwrap();
    assert!(blocked);
    let not_blocked = app
        .store
        .read("t", |c, _| st::tenant_blocked(c, "t1"))
        .await
        .unwrap();
    assert!(!not_blocked);

    // A platform party's clarification goes to the compliance queue.
    let r = screen(&app, "NS LEADER", PartyType::Vessel, "fleet/vessels/ns-1", &crm)
        .await
        .unwrap();
    assert_eq!(r.outcome, Outcome::PossibleMatch as i32);
    let queue = app
        .store
        .read("t", |c, _| {
            inbox::after(c, &Recipient::System("compliance-queue".into()), 0, 10)
        })
        .await
        .unwrap();
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].kind, "screening.clarification");

    // Every step is in the audit log, with who; no names in the details.
    let events = crate::support::audit_events(&app).await;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    for a in [
        "screening.import",
        "screening.party.register",
        "screening.case.open",
        "screening.case.cleared",
        "screening.case.confirmed",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    assert!(
        events
            .iter()
            .all(|e| !e.detail.to_lowercase().contains("khoroshev"))
    );
    assert!(
        events
            .iter()
            .any(|e| e.action == "screening.case.cleared" && e.actor == "compliance-officer")
    );

    // BatchScreen streams answers in order.
    let reqs: Vec<ScreenRequest> = ["Dmitry Khoroshev", "Maria Gonzalez", "IRIS MAKRAN"]
        .iter()
        .map(|n| ScreenRequest {
            party: Some(party(n, PartyType::Unspecified)),
            ..Default::default()
        })
        .collect();
    let mut out = c
        .batch_screen(authed(tokio_stream::iter(reqs), &crm))
        .await
        .unwrap()
        .into_inner();
    let mut outcomes = Vec::new();
    while let Some(r) = out.message().await.unwrap() {
        outcomes.push(r.outcome);
    }
    assert_eq!(
        outcomes,
        [
            Outcome::PossibleMatch as i32,
            Outcome::Clear as i32,
            Outcome::PossibleMatch as i32
        ]
    );

    // ScoreNames explains the matcher.
    let s = c
        .score_names(authed(
            ScoreNamesRequest {
                left: "Mohamed Ali".into(),
                right: "ALI, Muhammad".into(),
                r#type: PartyType::Individual as i32,
            },
            &comp,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(s.score >= 0.85, "{s:?}");
    assert!(s.explanation.contains("phonetic"), "{}", s.explanation);
    app.stop().await;
}
on_both_backends!(cases_clarification_and_blocking, cases_clarification_and_blocking);

async fn refusals(b: Backend) {
    let app = spawn_app(b).await;
    let comp = app.keys.compliance();
    let crm = app.keys.platform("crm");
    let t1 = app.keys.tenant("t1");

    // A malformed file is INVALID_ARGUMENT naming file and line; nothing kept.
    let mut files = ofac_set("fixture_small", false);
    files[1].1.extend_from_slice(b"10278,99,\"aka\"\n");
    let err = import(&app, "ofac_sdn", files, &comp).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let br = err.get_details_bad_request().expect("field violations");
    assert_eq!(br.field_violations[0].field, "data");
    assert!(
        br.field_violations[0].description.starts_with("alt.csv: line 19"),
        "{br:?}"
    );
    let versions = app.store.read("t", |c, _| st::latest_versions(c)).await.unwrap();
    assert!(versions.is_empty(), "a failed import keeps nothing");
    let mut xml = fixture("un/UN_consolidated.xml");
    xml.1.truncate(5000);
    let err = import(&app, "un_sc", vec![xml], &comp).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("UN_consolidated.xml: line "),
        "{}",
        err.message()
    );

    let err = import(&app, "nope", ofac_set("fixture_small", false), &comp)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.get_details_bad_request().unwrap().field_violations[0].field,
        "source"
    );

    // Roles: platform screens but does not import; tenants do not screen.
    let err = import(&app, "ofac_sdn", ofac_set("fixture_small", false), &crm)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = screen(&app, "Anyone", PartyType::Individual, "", &t1)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Bad input is named field by field.
    let err = client(&app)
        .screen(authed(
            ScreenRequest {
                party: Some(party(" ", PartyType::Individual)),
                min_score: 2.0,
                limit: 10_000,
                ..Default::default()
            },
            &crm,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields = crate::support::violated_fields(&err);
    assert_eq!(fields, ["party.name", "min_score", "limit"]);
    let err = client(&app)
        .get_case(authed(
            GetCaseRequest {
                case_id: "missing".into(),
            },
            &comp,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    app.stop().await;
}
on_both_backends!(refusals, refusals);

/// `proctor lists import` writes straight to the database; a running server
/// picks the new version up through its poll (about a second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_import_reaches_a_running_server() {
    let app = spawn_app(Backend::Sqlite).await;
    let crm = app.keys.platform("crm");
    // No list imported yet: nothing can be screened clear.
    let before = screen(
        &app,
        "IRIS MAKRAN",
        PartyType::Vessel,
        "tenants/t1/contacts/1",
        &crm,
    )
    .await
    .unwrap_err();
    assert_eq!(before.code(), Code::FailedPrecondition, "{before:?}");
    assert!(before.message().contains("ImportList"), "{}", before.message());
    let dir = format!(
        "{}/tests/fixtures/sanctions/ofac/fixture_small",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = std::process::Command::new(crate::cli::BIN)
        .args([
            "lists",
            "import",
            "--source",
            "ofac_sdn",
            "--database-url",
            &app.db.url,
        ])
        .args(["sdn.csv", "alt.csv", "add.csv", "sdn_comments.csv"].map(|f| format!("{dir}/{f}")))
        .env("PROCTOR_DATA_DIR", app.keys.dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ofac_sdn version 1: 17 entries (+17 added"),
        "{stdout}"
    );
    // Waits for the server's background poll, not for a deadline; until
    // then the screening is refused, never answered clear.
    let mut outcome = Err(before);
    for _ in 0..100 {
        outcome = screen(&app, "IRIS MAKRAN", PartyType::Vessel, "", &crm)
            .await
            .map(|r| r.outcome);
        match &outcome {
            Ok(o) if *o == Outcome::PossibleMatch as i32 => break,
            Ok(o) => panic!("screened {o} before the list was loaded"),
            Err(e) => assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(outcome.unwrap(), Outcome::PossibleMatch as i32);
    let bad = std::process::Command::new(crate::cli::BIN)
        .args([
            "lists",
            "import",
            "--source",
            "un_sc",
            "--database-url",
            &app.db.url,
            &format!("{dir}/sdn.csv"),
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("sdn.csv"));
    app.stop().await;
}

/// `BatchScreen` screens a stream's requests concurrently: the answers must
/// still come back one per request in request order, the ones with a
/// `party_ref` recorded (their case ids are real), and a bad request ends
/// the stream with its own error after every answer before it.
async fn batch_screen_answers_in_request_order(b: Backend) {
    let app = spawn_app(b).await;
    let comp = app.keys.compliance();
    let crm = app.keys.platform("crm");
    import(&app, "ofac_sdn", ofac_set("fixture_small", true), &comp)
        .await
        .unwrap();
    let names = ["Dmitry Khoroshev", "Maria Gonzalez", "IRIS MAKRAN", "John Smith"];
    let expected = [
        Outcome::PossibleMatch,
        Outcome::Clear,
        Outcome::PossibleMatch,
        Outcome::Clear,
    ];
    let request = move |i: usize| ScreenRequest {
        party: Some(party(names[i % names.len()], PartyType::Unspecified)),
        party_ref: if i.is_multiple_of(3) {
            format!("tenants/t1/contacts/batch-{i}")
        } else {
            String::new()
        },
        ..Default::default()
    };
    let mut out = client(&app)
        .batch_screen(authed(tokio_stream::iter((0..60).map(request)), &crm))
        .await
        .unwrap()
        .into_inner();
    let mut answers = Vec::new();
    while let Some(r) = out.message().await.unwrap() {
        answers.push(r);
    }
    assert_eq!(answers.len(), 60);
    for (i, r) in answers.iter().enumerate() {
        assert_eq!(r.party_ref, request(i).party_ref, "answer {i} out of order");
        assert_eq!(r.outcome, expected[i % names.len()] as i32, "answer {i}");
        let recorded_hit = !r.party_ref.is_empty() && r.outcome == Outcome::PossibleMatch as i32;
        assert_eq!(!r.case_id.is_empty(), recorded_hit, "answer {i}: {r:?}");
    }

    let mut reqs: Vec<ScreenRequest> = (0..30).map(request).collect();
    for r in reqs.iter_mut().filter(|r| !r.party_ref.is_empty()) {
        r.party_ref.push_str("-second");
    }
    reqs[11].party = Some(party("", PartyType::Unspecified));
    let mut out = client(&app)
        .batch_screen(authed(tokio_stream::iter(reqs), &crm))
        .await
        .unwrap()
        .into_inner();
    let mut before_error = 0;
    let err = loop {
        match out.message().await {
            Ok(Some(r)) => {
                assert!(r.party_ref.starts_with(&request(before_error).party_ref));
                before_error += 1;
            }
            Ok(None) => panic!("the bad request did not end the stream"),
            Err(e) => break e,
        }
    };
    assert_eq!(before_error, 11);
    // Nothing after the bad request was screened or recorded: of the second
    // stream's parties only those before it (0, 3, 6, 9) are registered.
    let registered: Vec<String> = app
        .store
        .read("test.parties", |c, _| {
            use diesel::prelude::*;
            use proctor::db::schema::screening_parties::dsl as pa;
            Ok(pa::screening_parties
                .filter(pa::party_ref.like("%-second"))
                .select(pa::party_ref)
                .order(pa::party_ref.asc())
                .load(c)?)
        })
        .await
        .unwrap();
    assert_eq!(
        registered,
        [0, 3, 6, 9].map(|i| format!("tenants/t1/contacts/batch-{i}-second"))
    );
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.get_details_bad_request().unwrap().field_violations[0].field,
        "party.name"
    );
    app.stop().await;
}
on_both_backends!(
    batch_screen_answers_in_request_order,
    batch_screen_answers_in_request_order
);
