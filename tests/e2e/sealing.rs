//! Free text that may name people is sealed at rest: a subject request's
//! cancel, reject and extension reasons, a task's error, a screened party's
//! identity and a breach's nature and contact point. After each write the
//! raw stored row (read through diesel) holds no clear text and the API
//! still answers with it; re-screening on a new list version opens the
//! sealed parties; the audit log holds lengths only. Rows left in the clear
//! (from before sealing, or by a previous version's replica) stay readable
//! and are sealed by a server by itself. The SQLite file and the data
//! folder are private to the service's user.

use diesel::prelude::*;
use proctor::db::schema::breaches::dsl as br;
use proctor::db::schema::screening_parties::dsl as pa;
use proctor::db::schema::subject_requests::dsl as r;
use proctor::db::schema::subject_tasks::dsl as t;
use proctor::proto::v1::breach_service_client::BreachServiceClient;
use proctor::proto::v1::{self as pb, PartyType};
use proctor::secrets::reseal;

use crate::on_both_backends;
use crate::screening::{client as screening, import, ofac_set};
use crate::subject_requests::{client as requests, pull, register, submit};
use crate::support::{Backend, TestApp, TestDb, TestKeys, authed, spawn_with, test_config};

/// In every text written, so one search finds any of them in the clear.
const MARK: &str = "Quaxley";
/// The screened party's passport number: sealed with its identity.
const PASSPORT: &str = "QX7731904";
const DOB: &str = "1931-02-17";

/// A request's stored reasons: (close clear, extension clear, key, sealed).
type ReasonCols = (Option<String>, Option<String>, Option<String>, Option<String>);
/// A stored text: (clear, key, sealed).
type TextCols = (Option<String>, Option<String>, Option<String>);
/// A stored party: (name, date of birth, country, aliases, key, sealed).
type PartyCols = (String, String, String, String, Option<String>, Option<String>);

async fn raw_reasons(app: &TestApp, id: &str) -> ReasonCols {
    let id = id.to_owned();
    app.store
        .read("test.raw_reasons", move |c, _| {
            Ok(r::subject_requests
                .filter(r::id.eq(&id))
                .select((
                    r::close_reason,
                    r::extension_reason,
                    r::reasons_key_id,
                    r::reasons_sealed,
                ))
                .first(c)?)
        })
        .await
        .unwrap()
}

async fn raw_task_error(app: &TestApp, id: &str) -> TextCols {
    let id = id.to_owned();
    app.store
        .read("test.raw_task", move |c, _| {
            Ok(t::subject_tasks
                .filter(t::id.eq(&id))
                .select((t::error, t::error_key_id, t::error_sealed))
                .first(c)?)
        })
        .await
        .unwrap()
}

async fn raw_party(app: &TestApp, party_ref: &str) -> PartyCols {
    let p = party_ref.to_owned();
    app.store
        .read("test.raw_party", move |c, _| {
            Ok(pa::screening_parties
                .filter(pa::party_ref.eq(&p))
                .select((
                    pa::name,
                    pa::date_of_birth,
                    pa::country,
                    pa::aliases,
                    pa::key_id,
                    pa::sealed,
                ))
                .first(c)?)
        })
        .await
        .unwrap()
}

/// (nature, contact point) of a breach as stored.
async fn raw_breach(app: &TestApp, id: &str) -> (TextCols, TextCols) {
    let id = id.to_owned();
    app.store
        .read("test.raw_breach", move |c, _| {
            let (n, nk, ns, cp, ck, cs): (
                String,
                Option<String>,
                Option<String>,
                String,
                Option<String>,
                Option<String>,
            ) = br::breaches
                .filter(br::id.eq(&id))
                .select((
                    br::nature,
                    br::nature_key_id,
                    br::nature_sealed,
                    br::contact_point,
                    br::contact_point_key_id,
                    br::contact_point_sealed,
                ))
                .first(c)?;
            Ok(((Some(n), nk, ns), (Some(cp), ck, cs)))
        })
        .await
        .unwrap()
}

/// A sealed text column: nothing clear, a key, a ciphertext without `MARK`.
fn assert_sealed(what: &str, (clear, key, sealed): &TextCols) {
    assert!(
        clear.as_deref().unwrap_or_default().is_empty(),
        "{what} is stored in the clear: {clear:?}"
    );
    assert!(key.is_some(), "{what} names no key");
    let sealed = sealed
        .as_deref()
        .unwrap_or_else(|| panic!("{what} has no ciphertext"));
    assert!(!sealed.contains(MARK), "{what}: {sealed}");
}

fn assert_reasons_sealed((close, ext, key, sealed): &ReasonCols) {
    assert_sealed("close reason", &(close.clone(), key.clone(), sealed.clone()));
    assert_sealed("extension reason", &(ext.clone(), key.clone(), sealed.clone()));
}

fn assert_party_sealed((name, dob, country, aliases, key, sealed): &PartyCols) {
    for (what, v) in [
        ("name", name),
        ("dob", dob),
        ("country", country),
        ("aliases", aliases),
    ] {
        assert!(v.is_empty(), "party {what} is stored in the clear: {v}");
    }
    assert!(key.is_some());
    let sealed = sealed.as_deref().unwrap();
    assert!(
        !sealed.contains(MARK) && !sealed.contains(DOB) && !sealed.contains(PASSPORT),
        "{sealed}"
    );
}

fn breaches(app: &TestApp) -> BreachServiceClient<tonic::transport::Channel> {
    app.breaches()
}

async fn get_request(app: &TestApp, id: &str) -> pb::SubjectRequest {
    requests(app)
        .get_subject_request(authed(
            pb::GetSubjectRequestRequest { id: id.into() },
            &app.keys.tenant("t1"),
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn get_breach(app: &TestApp, id: &str) -> pb::Breach {
    breaches(app)
        .get_breach(authed(
            pb::GetBreachRequest { id: id.into() },
            &app.keys.compliance(),
        ))
        .await
        .unwrap()
        .into_inner()
}

/// The fixture list, plus (when `with_quaxley`) an SDN entry naming the
/// party screened below.
fn list(with_quaxley: bool) -> Vec<(String, Vec<u8>)> {
    let mut files = ofac_set("fixture_small", false);
    if with_quaxley {
        let sdn = files.iter_mut().find(|(n, _)| n == "sdn.csv").unwrap();
        sdn.1.extend_from_slice(
            b"99001,\"QUAXLEY, Zebulon\",\"individual\",\"SDNT\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,\"DOB 17 Feb 1931.\"\r\n",
        );
    }
    files
}

async fn screen_quaxley(app: &TestApp, party_ref: &str) -> pb::ScreenResponse {
    screening(app)
        .screen(authed(
            pb::ScreenRequest {
                party: Some(pb::Party {
                    name: "Zebulon Quaxley".into(),
                    r#type: PartyType::Individual as i32,
                    date_of_birth: DOB.into(),
                    country: "GB".into(),
                    aliases: vec!["Zeb Quaxley".into()],
                    identifiers: vec![pb::Identifier {
                        r#type: pb::IdentifierType::Passport as i32,
                        value: PASSPORT.into(),
                        country: "GB".into(),
                    }],
                }),
                party_ref: party_ref.into(),
                min_score: 0.0,
                limit: 5,
                ..Default::default()
            },
            &app.keys.platform("crm"),
        ))
        .await
        .unwrap()
        .into_inner()
}

fn report_request(app: &TestApp) -> pb::ReportBreachRequest {
    pb::ReportBreachRequest {
        nature: format!("Recordings of Zebulon {MARK} sent to the wrong tenant"),
        categories: vec!["recording".into()],
        became_aware_at: Some(prost_types::Timestamp {
            seconds: app.store.clock().now().timestamp() - 3600,
            nanos: 0,
        }),
        tenant_ids: vec!["t1".into()],
        contact_point: format!("Ada {MARK}, DPO"),
        ..Default::default()
    }
}

/// A server that leaves clear rows alone (no sealing pass), so a test sees
/// exactly what each write stored.
async fn spawn_quiet(b: Backend) -> TestApp {
    let db = TestDb::new(b);
    let keys = TestKeys::new();
    let mut cfg = test_config(&db, &keys);
    cfg.seal_clear_interval_seconds = 0;
    spawn_with(db, keys, cfg).await
}

async fn free_text_is_sealed_at_rest(b: Backend) {
    let app = spawn_quiet(b).await;
    let t1 = app.keys.tenant("t1");
    let crm = app.keys.platform("crm");
    register(&app, "crm", &["contact"]).await;
    let mut c = requests(&app);
    let a = c
        .submit_subject_request(authed(submit(pb::RequestType::Access, "s1", &[]), &t1))
        .await
        .unwrap()
        .into_inner();
    let e = c
        .submit_subject_request(authed(submit(pb::RequestType::Erasure, "s2", &[]), &t1))
        .await
        .unwrap()
        .into_inner();

    // A task's error.
    let tasks = pull(&app, "crm", 60).await;
    let task = tasks.iter().find(|t| t.request_id == a.id).unwrap().id.clone();
    let error = format!("no record of Zebulon {MARK} in the CRM");
    let failed = c
        .fail_task(authed(
            pb::FailTaskRequest {
                task_id: task.clone(),
                error: error.clone(),
            },
            &crm,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(failed.error, error);
    assert_sealed("task error", &raw_task_error(&app, &task).await);
    let got = get_request(&app, &a.id).await;
    assert_eq!(got.tasks[0].error, error);

    // Extension, then cancellation: both reasons, sealed as one document.
    let extension = format!("{MARK} sent three boxes of letters");
    let x = c
        .extend_deadline(authed(
            pb::ExtendDeadlineRequest {
                id: a.id.clone(),
                reason: extension.clone(),
            },
            &t1,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(x.extension_reason, extension);
    let (close, ext, key, sealed) = raw_reasons(&app, &a.id).await;
    assert!(close.is_none());
    assert_sealed("extension reason", &(ext, key, sealed));
    let cancel = format!("Zebulon {MARK} withdrew by phone");
    let cancelled = c
        .cancel_subject_request(authed(
            pb::CancelSubjectRequestRequest {
                id: a.id.clone(),
                reason: cancel.clone(),
            },
            &t1,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            cancelled.close_reason.as_str(),
            cancelled.extension_reason.as_str()
        ),
        (cancel.as_str(), extension.as_str())
    );
    assert_reasons_sealed(&raw_reasons(&app, &a.id).await);
    let got = get_request(&app, &a.id).await;
    assert_eq!(
        (got.close_reason, got.extension_reason),
        (cancel.clone(), extension)
    );
    assert_eq!(got.tasks[0].error, error, "the error outlives the cancellation");

    // Rejection on a ground, with reasons.
    let reject = format!("third identical request by {MARK} this month");
    let rejected = c
        .reject_subject_request(authed(
            pb::RejectSubjectRequestRequest {
                id: e.id.clone(),
                ground: pb::RejectionGround::Excessive as i32,
                reason: reject.clone(),
            },
            &t1,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rejected.close_reason, reject);
    assert_reasons_sealed(&raw_reasons(&app, &e.id).await);
    assert_eq!(get_request(&app, &e.id).await.close_reason, reject);

    // A screened party is kept sealed; a new list version re-screens it
    // from the sealed identity, in memory.
    let comp = app.keys.compliance();
    import(&app, "ofac_sdn", list(false), &comp).await.unwrap();
    let party_ref = "tenants/t1/contacts/q";
    let s = screen_quaxley(&app, party_ref).await;
    assert_eq!(s.outcome, pb::Outcome::Clear as i32, "{s:?}");
    assert_party_sealed(&raw_party(&app, party_ref).await);
    let v2 = import(&app, "ofac_sdn", list(true), &comp).await.unwrap();
    assert_eq!(
        (v2.rescreened_parties, v2.cases_opened),
        (1, 1),
        "the sealed party was re-screened by its name"
    );
    let case = screen_quaxley(&app, party_ref).await;
    assert_eq!(case.outcome, pb::Outcome::PossibleMatch as i32);
    assert_eq!(case.hits[0].entry_id, "99001");
    assert_party_sealed(&raw_party(&app, party_ref).await);

    // A breach's nature and contact point, on report and on update.
    let report = report_request(&app);
    let breach = breaches(&app)
        .report_breach(authed(report.clone(), &comp))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (&breach.nature, &breach.contact_point),
        (&report.nature, &report.contact_point)
    );
    let (nature, contact) = raw_breach(&app, &breach.id).await;
    assert_sealed("breach nature", &nature);
    assert_sealed("breach contact point", &contact);
    let new_nature = format!("Recordings of Zebulon {MARK} and two others exposed");
    breaches(&app)
        .update_breach(authed(
            pb::UpdateBreachRequest {
                id: breach.id.clone(),
                nature: new_nature.clone(),
                ..Default::default()
            },
            &comp,
        ))
        .await
        .unwrap();
    let (nature, contact) = raw_breach(&app, &breach.id).await;
    assert_sealed("updated breach nature", &nature);
    assert_sealed("breach contact point", &contact);
    let got = get_breach(&app, &breach.id).await;
    assert_eq!(
        (got.nature, got.contact_point),
        (new_nature.clone(), report.contact_point)
    );
    let listed = breaches(&app)
        .list_breaches(authed(pb::ListBreachesRequest::default(), &t1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.breaches[0].nature, new_nature);

    // The audit log has lengths, never the text.
    let events = crate::support::audit_events(&app).await;
    for ev in &events {
        assert!(
            !ev.detail.contains(MARK) && !ev.detail.contains(DOB),
            "{}: {}",
            ev.action,
            ev.detail
        );
    }
    let detail = |action: &str| -> serde_json::Value {
        let ev = events
            .iter()
            .find(|e| e.action == action)
            .unwrap_or_else(|| panic!("{action}"));
        serde_json::from_str(&ev.detail).unwrap()
    };
    assert_eq!(
        detail("subject_request.fail_task")["error_chars"],
        error.chars().count()
    );
    assert_eq!(
        detail("subject_request.cancel")["reason_chars"],
        cancel.chars().count()
    );
    assert_eq!(
        detail("subject_request.reject")["reason_chars"],
        reject.chars().count()
    );
    app.stop().await;
}
on_both_backends!(free_text_is_sealed_at_rest, free_text_is_sealed_at_rest);

/// What the API shows of the texts: (close reason, extension reason, task
/// error, breach nature).
async fn shows(app: &TestApp, req: &str, task: &str, breach: &str) -> (String, String, String, String) {
    let r = get_request(app, req).await;
    let error = r.tasks.into_iter().find(|t| t.id == task).unwrap().error;
    (
        r.close_reason,
        r.extension_reason,
        error,
        get_breach(app, breach).await.nature,
    )
}

async fn clear_rows_are_sealed_by_a_server(b: Backend) {
    // Two replicas share the database and the identifier key ring; the
    // first never seals clear rows by itself.
    let keys = TestKeys::new();
    let ring_file = keys.dir.path().join("ring.keys");
    std::fs::write(
        &ring_file,
        format!("{}\n", hex::encode(rand::random::<[u8; 32]>())),
    )
    .unwrap();
    let db = TestDb::new(b);
    let shared = TestDb::shared_with(&db);
    let mut cfg = test_config(&db, &keys);
    cfg.identifier_encryption_key_file = Some(ring_file.clone());
    cfg.seal_clear_interval_seconds = 0;
    let app = spawn_with(db, keys, cfg).await;
    let t1 = app.keys.tenant("t1");
    let comp = app.keys.compliance();
    register(&app, "crm", &["contact"]).await;
    let req = requests(&app)
        .submit_subject_request(authed(submit(pb::RequestType::Access, "s1", &[]), &t1))
        .await
        .unwrap()
        .into_inner();
    let task = pull(&app, "crm", 60).await[0].id.clone();
    import(&app, "ofac_sdn", list(false), &comp).await.unwrap();
    let party_ref = "tenants/t1/contacts/q";
    screen_quaxley(&app, party_ref).await;
    let breach = breaches(&app)
        .report_breach(authed(report_request(&app), &comp))
        .await
        .unwrap()
        .into_inner();

    // Rows as an older version wrote them: reasons, error and party in the
    // clear with no ciphertext; the breach's nature rewritten in the clear
    // by an old replica over the ciphertext this version stored.
    let close = format!("withdrawn by {MARK}");
    let extension = format!("{MARK} asked for paper copies");
    let error = format!("{MARK} not found");
    let nature = format!("Older replica's wording about {MARK}");
    let (rid, tid, pref, bid) = (
        req.id.clone(),
        task.clone(),
        party_ref.to_owned(),
        breach.id.clone(),
    );
    let legacy = (close.clone(), extension.clone(), error.clone(), nature.clone());
    app.store
        .write("test.legacy_rows", move |c, _| {
            let (close, extension, error, nature) = legacy;
            diesel::update(r::subject_requests.filter(r::id.eq(&rid)))
                .set((
                    r::close_reason.eq(Some(close)),
                    r::extension_reason.eq(Some(extension)),
                    r::extended.eq(true),
                ))
                .execute(c)?;
            diesel::update(t::subject_tasks.filter(t::id.eq(&tid)))
                .set((
                    t::error.eq(Some(error)),
                    t::error_sealed.eq(None::<String>),
                    t::error_key_id.eq(None::<String>),
                ))
                .execute(c)?;
            diesel::update(pa::screening_parties.filter(pa::party_ref.eq(&pref)))
                .set((
                    pa::name.eq("Zebulon Quaxley"),
                    pa::date_of_birth.eq(DOB),
                    pa::country.eq("GB"),
                    pa::aliases.eq(r#"["Zeb Quaxley"]"#),
                    pa::sealed.eq(None::<String>),
                    pa::key_id.eq(None::<String>),
                ))
                .execute(c)?;
            diesel::update(br::breaches.filter(br::id.eq(&bid)))
                .set(br::nature.eq(nature))
                .execute(c)?;
            Ok(())
        })
        .await
        .unwrap();

    // Still readable as they are, the clear text winning over a stale
    // ciphertext; `keys status` counts them as clear.
    let expected = (close.clone(), extension.clone(), error.clone(), nature.clone());
    assert_eq!(shows(&app, &req.id, &task, &breach.id).await, expected);
    let uses = app
        .store
        .read("test.keys_in_use", |c, _| reseal::keys_in_use(c))
        .await
        .unwrap();
    let clear = uses.get(&None).copied().unwrap_or_default();
    assert_eq!(
        (
            clear.request_reasons,
            clear.task_errors,
            clear.screened_parties,
            clear.breach_texts
        ),
        (1, 1, 1, 1),
        "{uses:?}"
    );

    // A replica of this version starts: its first pass seals them.
    let keys2 = TestKeys::new();
    let mut cfg2 = test_config(&shared, &keys2);
    cfg2.identifier_encryption_key_file = Some(ring_file);
    let second = spawn_with(shared, keys2, cfg2).await;
    let mut sealed = false;
    for _ in 0..200 {
        let uses = app
            .store
            .read("test.keys_in_use", |c, _| reseal::keys_in_use(c))
            .await
            .unwrap();
        if !uses.contains_key(&None) {
            sealed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(sealed, "the new replica never sealed the clear rows");
    assert_reasons_sealed(&raw_reasons(&app, &req.id).await);
    assert_sealed("task error", &raw_task_error(&app, &task).await);
    assert_party_sealed(&raw_party(&app, party_ref).await);
    let (n, cp) = raw_breach(&app, &breach.id).await;
    assert_sealed("breach nature", &n);
    assert_sealed("breach contact point", &cp);
    // Both replicas read the same text back.
    assert_eq!(shows(&app, &req.id, &task, &breach.id).await, expected);
    assert_eq!(shows(&second, &req.id, &task, &breach.id).await, expected);
    // The sealed party is still what re-screening finds.
    let v2 = import(&app, "ofac_sdn", list(true), &comp).await.unwrap();
    assert_eq!((v2.rescreened_parties, v2.cases_opened), (1, 1));

    // The pass is audited with counts only.
    let events = crate::support::audit_events(&app).await;
    let pass: Vec<_> = events.iter().filter(|e| e.action == "keys.seal_clear").collect();
    assert_eq!(pass.len(), 1, "one batch sealed everything");
    assert_eq!(pass[0].actor, "proctor");
    let d: serde_json::Value = serde_json::from_str(&pass[0].detail).unwrap();
    assert_eq!(
        (
            &d["request_reasons"],
            &d["task_errors"],
            &d["screened_parties"],
            &d["breach_texts"]
        ),
        (&1.into(), &1.into(), &1.into(), &1.into()),
        "{d}"
    );
    assert!(!pass[0].detail.contains(MARK));
    second.stop().await;
    app.stop().await;
}
on_both_backends!(
    clear_rows_are_sealed_by_a_server,
    clear_rows_are_sealed_by_a_server
);

/// The data folder (and the folders above it that the server creates) is
/// 0700 and the SQLite database, its WAL files and the development keys
/// are 0600, whatever the umask.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_and_data_folder_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("var/proctor");
    let cfg = proctor::config::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}", data.join("proctor.db").display()),
        data_dir: data.clone(),
        ..proctor::config::Config::default()
    };
    let app = proctor::app::Application::build(cfg, proctor::clock::ManualClock::new(crate::support::t0()))
        .await
        .expect("server builds");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&tmp.path().join("var")), 0o700);
    assert_eq!(mode(&data), 0o700);
    let mut private = vec![data.join("proctor.db")];
    for f in ["proctor.db-wal", "proctor.db-shm"] {
        if data.join(f).exists() {
            private.push(data.join(f));
        }
    }
    for f in [
        proctor::secrets::DEV_ENCRYPTION_KEY_FILE,
        proctor::secrets::DEV_HASH_KEY_FILE,
        proctor::secrets::DEV_RECEIPT_KEY_FILE,
        proctor::auth::keys::DEV_KEY_FILE,
    ] {
        private.push(data.join(f));
    }
    for p in &private {
        assert_eq!(mode(p), 0o600, "{}", p.display());
    }
    drop(app);
}
