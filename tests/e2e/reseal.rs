//! Retiring an identifier encryption key: a server seals under key 1 (a
//! request's identifiers and reasons, export chunks, a task error, a case
//! answer and notes, screened parties, a breach's nature and contact point,
//! a webhook's current and previous secrets, a legal hold's texts, a logged
//! decision's subject ref, a question to the controller and its answer, an
//! uploaded artefact's chunks, plus a note, a chunk and a task error left
//! in the clear from before they were sealed); `proctor keys reseal` with
//! the ring [2, 1] moves every row to key 2, beside the running server;
//! afterwards the ring [2] alone opens every row to the same text, a server
//! started with it reads each through its RPCs, a second run has nothing to
//! do, and the audit log records counts only.

use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use proctor::app::Application;
use proctor::clock::ManualClock;
use proctor::db::schema::breaches::dsl as br;
use proctor::db::schema::decision_log::dsl as dl;
use proctor::db::schema::legal_holds::dsl as lh;
use proctor::db::schema::screening_case_answers::dsl as ca;
use proctor::db::schema::screening_cases::dsl as sc;
use proctor::db::schema::screening_parties::dsl as pa;
use proctor::db::schema::subject_artifact_chunks::dsl as ac;
use proctor::db::schema::subject_export_chunks::dsl as x;
use proctor::db::schema::subject_questions::dsl as sq;
use proctor::db::schema::subject_requests::dsl as r;
use proctor::db::schema::subject_tasks::dsl as t;
use proctor::db::schema::webhooks::dsl as wh;
use proctor::proto::v1::{
    self as pb, PartyType, Resolution, ResolveCaseRequest, compute_subject_ref_request::Identifier,
};
use proctor::secrets::KeyRing;
use proctor::secrets::reseal;

use crate::cli::BIN;
use crate::on_both_backends;
use crate::screening::{client as screening, import, ofac_set, screen};
use crate::subject_requests::{
    client as requests, complete, contact_for_service_delivery, pull, register, submit,
};
use crate::subject_rights::upload_messages;
use crate::support::{Backend, TestApp, TestDb, TestKeys, authed, pull_inbox, spawn_with, t0, test_config};
use crate::webhooks::{Mode, Receiver};

/// Every sealed row as `(kind, binding, key id, sealed text)`; clear rows
/// have no key id.
type Sealed = Vec<(&'static str, String, Option<String>, String)>;
/// (id, clear text, key id, ciphertext) of a column pair that once was clear.
type TextRow = (String, Option<String>, Option<String>, Option<String>);
/// (id, key, ciphertext, previous key, previous ciphertext) of a webhook.
type WebhookRow = (String, String, String, Option<String>, Option<String>);
/// (id, nature key, nature ciphertext, contact key, contact ciphertext).
type BreachRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

async fn sealed_rows(app: &TestApp) -> Sealed {
    app.store
        .read("test.sealed_rows", |c, _| {
            let mut out: Sealed = Vec::new();
            let rows: Vec<(String, Option<String>, Option<String>)> = r::subject_requests
                .filter(r::subject_sealed.is_not_null())
                .select((r::id, r::subject_key_id, r::subject_sealed))
                .load(c)?;
            for (id, k, s) in rows {
                out.push(("subject", id, k, s.unwrap_or_default()));
            }
            let rows: Vec<(String, Option<String>, Vec<u8>)> = x::subject_export_chunks
                .order(x::seq.asc())
                .select((x::task_id, x::key_id, x::data))
                .load(c)?;
            for (task, k, d) in rows {
                out.push(("chunk", task, k, String::from_utf8(d).unwrap()));
            }
            let rows: Vec<(String, String, String)> = ca::screening_case_answers
                .order((ca::case_id.asc(), ca::seq.asc()))
                .select((ca::case_id, ca::key_id, ca::text))
                .load(c)?;
            for (case, k, t) in rows {
                out.push(("answer", case, Some(k), t));
            }
            let rows: Vec<(String, Option<String>, String)> = sc::screening_cases
                .filter(sc::note.ne(""))
                .order(sc::seq.asc())
                .select((sc::id, sc::note_key_id, sc::note))
                .load(c)?;
            for (case, k, n) in rows {
                out.push(("note", case, k, n));
            }
            // The newer kinds keep a clear column beside the ciphertext: a
            // row is clear when that column holds text.
            let clear_or = |clear: Option<String>, key: Option<String>, sealed: Option<String>| match clear
                .filter(|c| !c.is_empty())
            {
                Some(c) => (None, c),
                None => (key, sealed.unwrap_or_default()),
            };
            let rows: Vec<TextRow> = r::subject_requests
                .filter(r::reasons_sealed.is_not_null())
                .order(r::seq.asc())
                .select((r::id, r::close_reason, r::reasons_key_id, r::reasons_sealed))
                .load(c)?;
            for (id, clear, k, s) in rows {
                let (k, s) = clear_or(clear, k, s);
                out.push(("reasons", id, k, s));
            }
            let rows: Vec<TextRow> = t::subject_tasks
                .filter(t::error.is_not_null().or(t::error_sealed.is_not_null()))
                .order(t::seq.asc())
                .select((t::id, t::error, t::error_key_id, t::error_sealed))
                .load(c)?;
            for (id, clear, k, s) in rows {
                let (k, s) = clear_or(clear, k, s);
                out.push(("task error", id, k, s));
            }
            let rows: Vec<(String, Option<String>, Option<String>)> = pa::screening_parties
                .order(pa::party_ref.asc())
                .select((pa::party_ref, pa::key_id, pa::sealed))
                .load(c)?;
            for (p, k, s) in rows {
                out.push(("party", p, k, s.unwrap_or_default()));
            }
            let rows: Vec<BreachRow> = br::breaches
                .order(br::seq.asc())
                .select((
                    br::id,
                    br::nature_key_id,
                    br::nature_sealed,
                    br::contact_point_key_id,
                    br::contact_point_sealed,
                ))
                .load(c)?;
            for (id, nk, ns, ck, cs) in rows {
                out.push(("nature", id.clone(), nk, ns.unwrap_or_default()));
                out.push(("contact", id, ck, cs.unwrap_or_default()));
            }
            // The kinds sealed from the start: (binding, key, ciphertext).
            let rows: Vec<WebhookRow> = wh::webhooks
                .order(wh::id.asc())
                .select((
                    wh::id,
                    wh::secret_key_id,
                    wh::secret_sealed,
                    wh::previous_secret_key_id,
                    wh::previous_secret_sealed,
                ))
                .load(c)?;
            for (id, k, s, pk, ps) in rows {
                out.push(("webhook secret", id.clone(), Some(k), s));
                if let Some(ps) = ps {
                    out.push((
                        "previous secret",
                        proctor::webhooks::repo::previous_id(&id),
                        pk,
                        ps,
                    ));
                }
            }
            type Pair = (String, Option<String>, Option<String>);
            let pairs: [(&'static str, Vec<Pair>); 4] = [
                (
                    "hold",
                    lh::legal_holds
                        .order(lh::id.asc())
                        .select((lh::id, lh::texts_key_id, lh::texts_sealed))
                        .load(c)?,
                ),
                (
                    "decision",
                    dl::decision_log
                        .filter(dl::subject_sealed.is_not_null())
                        .order(dl::seq.asc())
                        .select((dl::decision_id, dl::subject_key_id, dl::subject_sealed))
                        .load(c)?,
                ),
                (
                    "controller question",
                    sq::subject_questions
                        .order(sq::id.asc())
                        .select((
                            sq::id,
                            sq::question_key_id.nullable(),
                            sq::question_sealed.nullable(),
                        ))
                        .load(c)?,
                ),
                (
                    "controller answer",
                    sq::subject_questions
                        .filter(sq::answer_sealed.is_not_null())
                        .order(sq::id.asc())
                        .select((sq::id, sq::answer_key_id, sq::answer_sealed))
                        .load(c)?,
                ),
            ];
            for (kind, rows) in pairs {
                for (id, k, s) in rows {
                    out.push((kind, id, k, s.unwrap_or_default()));
                }
            }
            let rows: Vec<(String, i64, String, String)> = ac::subject_artifact_chunks
                .order((ac::artifact_id.asc(), ac::idx.asc()))
                .select((ac::artifact_id, ac::idx, ac::key_id, ac::data))
                .load(c)?;
            for (file, idx, k, d) in rows {
                out.push(("artifact chunk", format!("{file}/{idx}"), Some(k), d));
            }
            Ok(out)
        })
        .await
        .unwrap()
}

/// The rows in the clear, opened with `ring`; panics if one does not open.
fn opened(rows: &Sealed, ring: &KeyRing) -> Vec<(&'static str, String)> {
    use proctor::screening::case_answers;
    use proctor::screening::repo::StoredNote;
    use proctor::secrets::sealed::{Field, StoredText};
    use proctor::subject_requests::repo as sr;
    let text_of = |field: Field, id: &str, key: &Option<String>, text: &str| match key {
        None => Ok(text.to_owned()),
        Some(k) => {
            StoredText::from_columns(None, Some(k.clone()), Some(text.to_owned())).open(ring, field, id)
        }
    };
    rows.iter()
        .map(|(kind, id, key, text)| {
            let plain = match (*kind, key) {
                ("reasons", Some(k)) => sr::StoredReasons {
                    key_id: Some(k.clone()),
                    sealed: Some(text.clone()),
                    ..Default::default()
                }
                .open(ring, id)
                .map(|r| format!("{} / {}", r.close, r.extension)),
                ("task error", k) => text_of(Field::TaskError, id, k, text),
                ("party", Some(k)) => text_of(Field::Party, id, &Some(k.clone()), text),
                ("nature", k) => text_of(Field::BreachNature, id, k, text),
                ("contact", k) => text_of(Field::BreachContactPoint, id, k, text),
                ("note", k) => StoredNote {
                    key_id: k.clone(),
                    body: text.clone(),
                }
                .open(ring, id),
                ("chunk", k) => sr::open_chunk(ring, id, 0, text.clone().into_bytes(), k.as_deref())
                    .map(|b| String::from_utf8(b).unwrap()),
                ("answer", Some(k)) => case_answers::open_text(ring, id, k, text),
                ("webhook secret" | "previous secret", Some(k)) => ring
                    .open(k, text, &Field::WebhookSecret.aad(id))
                    .map(|b| String::from_utf8(b).unwrap()),
                ("hold", k) => text_of(Field::LegalHoldTexts, id, k, text),
                ("decision", k) => text_of(Field::DecisionSubject, id, k, text),
                ("controller question", k) => text_of(Field::SubjectQuestion, id, k, text),
                ("controller answer", k) => text_of(Field::SubjectAnswer, id, k, text),
                ("artifact chunk", Some(k)) => {
                    let (file, idx) = id.rsplit_once('/').unwrap();
                    sr::open_artifact_chunk(ring, file, idx.parse().unwrap(), k, text).map(|b| {
                        use sha2::Digest;
                        hex::encode(sha2::Sha256::digest(b))
                    })
                }
                ("subject", Some(k)) => sr::Sealed {
                    key_id: k.clone(),
                    data: text.clone(),
                }
                .open(ring, id)
                .map(|b| String::from_utf8(b).unwrap()),
                other => panic!("unexpected row {other:?}"),
            };
            (
                *kind,
                plain.unwrap_or_else(|e| panic!("{kind} of {id} does not open: {e}")),
            )
        })
        .collect()
}

/// t2's logged decisions as compliance lists them, once the writer (off
/// the request path) stored one.
async fn decisions(app: &TestApp, token: &str) -> Vec<pb::DecisionRecord> {
    for _ in 0..200 {
        let got = app
            .instructions()
            .list_decisions(authed(
                pb::ListDecisionsRequest {
                    tenant_id: "t2".into(),
                    ..Default::default()
                },
                token,
            ))
            .await
            .unwrap()
            .into_inner()
            .decisions;
        if !got.is_empty() {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the decision log never held t2's decision");
}

fn key_text(key: &[u8; 32]) -> String {
    format!("{}\n", STANDARD.encode(key))
}

/// `proctor keys ARGS` against the test database with the key ring in
/// `ring_file`: (exit status success, stdout, stderr).
fn keys_run(db: &TestDb, ring_file: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("keys")
        .args(args)
        .env("PROCTOR_DATABASE_URL", &db.url)
        .env("PROCTOR_DATA_DIR", data.path())
        .env("PROCTOR_IDENTIFIER_ENCRYPTION_KEY_FILE", ring_file)
        .env("PROCTOR_IDENTIFIER_HASH_KEY_FILE", &db.secrets.hash)
        .env("PROCTOR_RECEIPT_SIGNING_KEY_FILE", &db.secrets.receipt)
        .env("PROCTOR_AUDIT_SIGNING_KEY_FILE", &db.secrets.audit)
        .env("USER", "sre-on-call")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// `proctor keys ARGS`, which must succeed; its stdout.
fn keys_cli(db: &TestDb, ring_file: &std::path::Path, args: &[&str]) -> String {
    let (ok, stdout, stderr) = keys_run(db, ring_file, args);
    assert!(ok, "keys {args:?}: {stdout}{stderr}");
    stdout
}

async fn reseal_retires_the_old_key(b: Backend) {
    let (k1, k2) = (rand::random::<[u8; 32]>(), rand::random::<[u8; 32]>());
    // The ring outlives the first server (a second one starts with it).
    let ring_dir = tempfile::tempdir().unwrap();
    let ring_file = ring_dir.path().join("ring.keys");
    std::fs::write(&ring_file, key_text(&k1)).unwrap();
    let db = TestDb::new(b);
    let config = |keys: &TestKeys| {
        let mut cfg = test_config(&db, keys);
        cfg.identifier_encryption_key_file = Some(ring_file.clone());
        // Clear rows stay clear until the reseal (no sealing pass).
        cfg.seal_clear_interval_seconds = 0;
        // The webhook receiver is on loopback, over http.
        cfg.webhook_allow_insecure = true;
        cfg.webhook_allow_private = true;
        cfg
    };
    let keys = TestKeys::new();
    let cfg = config(&keys);
    let app = spawn_with(TestDb::shared_with(&db), keys, cfg).await;
    let comp = app.keys.compliance();
    let t1 = app.keys.tenant("t1");

    // Sealed under key 1: a request's identifiers and an export chunk ...
    register(&app, "crm", &["contact"]).await;
    requests(&app)
        .submit_subject_request(authed(submit(pb::RequestType::Access, "a1", &[]), &t1))
        .await
        .unwrap();
    let tasks = pull(&app, "crm", 60).await;
    complete(&app, "crm", &tasks[0].id, br#"[{"contact":"Ada"}]"#, true)
        .await
        .unwrap();
    // ... a second request's reasons, and two tasks' errors (the third
    // request's is made clear below, as from before sealing) ...
    let a2 = requests(&app)
        .submit_subject_request(authed(submit(pb::RequestType::Access, "a2", &[]), &t1))
        .await
        .unwrap()
        .into_inner()
        .id;
    let a3 = requests(&app)
        .submit_subject_request(authed(submit(pb::RequestType::Access, "a3", &[]), &t1))
        .await
        .unwrap()
        .into_inner()
        .id;
    let crm_token = app.keys.platform("crm");
    for task in pull(&app, "crm", 60).await {
        requests(&app)
            .fail_task(authed(
                pb::FailTaskRequest {
                    task_id: task.id.clone(),
                    error: format!("Lovelace not found for {}", task.request_id),
                },
                &crm_token,
            ))
            .await
            .unwrap();
    }
    requests(&app)
        .extend_deadline(authed(
            pb::ExtendDeadlineRequest {
                id: a2.clone(),
                reason: "Lovelace sent three boxes".into(),
            },
            &t1,
        ))
        .await
        .unwrap();
    requests(&app)
        .cancel_subject_request(authed(
            pb::CancelSubjectRequestRequest {
                id: a2.clone(),
                reason: "Lovelace withdrew".into(),
            },
            &t1,
        ))
        .await
        .unwrap();
    // ... a breach's nature and contact point ...
    app.breaches()
        .report_breach(authed(
            pb::ReportBreachRequest {
                nature: "Lovelace's recordings exposed".into(),
                categories: vec!["recording".into()],
                became_aware_at: Some(prost_types::Timestamp {
                    seconds: crate::support::t0().timestamp() - 60,
                    nanos: 0,
                }),
                // Not t1, whose inbox is read below.
                tenant_ids: vec!["t9".into()],
                contact_point: "Lovelace's DPO".into(),
                ..Default::default()
            },
            &comp,
        ))
        .await
        .unwrap();
    // ... a case answer and two resolution notes, one of them stored in the
    // clear as notes were before they were sealed.
    import(&app, "ofac_sdn", ofac_set("fixture_small", true), &comp)
        .await
        .unwrap();
    let crm = app.keys.platform("crm");
    let mut cases = Vec::new();
    for (name, party) in [
        ("Daniel Moreno", "tenants/t1/contacts/1"),
        ("Elvis Angus Logan Morey", "tenants/t1/contacts/2"),
    ] {
        let s = screen(&app, name, PartyType::Individual, party, &crm)
            .await
            .unwrap();
        assert!(!s.case_id.is_empty(), "{name} opens a case");
        cases.push(s.case_id);
    }
    let envs = app
        .store
        .read("test.questions", |c, _| {
            proctor::inbox::repo::after(c, &proctor::inbox::model::Recipient::Tenant("t1".into()), 0, 100)
        })
        .await
        .unwrap();
    assert_eq!(envs.len(), 2, "one clarification request per case");
    app.inbox()
        .reply(authed(
            pb::ReplyRequest {
                id: envs[0].id.clone(),
                text: "Born 1985 in Madrid".into(),
            },
            &t1,
        ))
        .await
        .unwrap();
    for case in &cases {
        screening(&app)
            .resolve_case(authed(
                ResolveCaseRequest {
                    case_id: case.clone(),
                    resolution: Resolution::Cleared as i32,
                    note: format!("checked {case} against the register"),
                },
                &comp,
            ))
            .await
            .unwrap();
    }
    let legacy = cases[1].clone();
    app.store
        .write("test.legacy_rows", move |c, _| {
            diesel::update(sc::screening_cases.filter(sc::id.eq(&legacy)))
                .set((
                    sc::note.eq("a note from before sealing"),
                    sc::note_key_id.eq(None::<String>),
                ))
                .execute(c)?;
            diesel::update(x::subject_export_chunks)
                .set((
                    x::data.eq(br#"[{"contact":"Ada"}]"#.to_vec()),
                    x::key_id.eq(None::<String>),
                ))
                .execute(c)?;
            diesel::update(t::subject_tasks.filter(t::request_id.eq(&a3)))
                .set((
                    t::error.eq(Some("an error from before sealing")),
                    t::error_sealed.eq(None::<String>),
                    t::error_key_id.eq(None::<String>),
                ))
                .execute(c)?;
            Ok(())
        })
        .await
        .unwrap();

    // Sealed from the start, in tenants t2 and t3 (t1's inbox is read
    // above): a webhook's secret and, once rotated, its previous one ...
    let rx = Receiver::start(Mode::Ok).await;
    let t3 = app.keys.tenant("t3");
    let first_secret = app
        .webhooks()
        .set_webhook(authed(
            pb::SetWebhookRequest {
                url: rx.url(),
                description: "our privacy tool".into(),
                ..Default::default()
            },
            &t3,
        ))
        .await
        .unwrap()
        .into_inner()
        .secret;
    let secret = app
        .webhooks()
        .rotate_webhook_secret(authed(pb::RotateWebhookSecretRequest::default(), &t3))
        .await
        .unwrap()
        .into_inner()
        .secret;
    // ... a legal hold's texts and a logged decision's subject ref ...
    let t2 = app.keys.tenant("t2");
    contact_for_service_delivery(&app, "t2", 30).await;
    let sref = requests(&app)
        .compute_subject_ref(authed(
            pb::ComputeSubjectRefRequest {
                identifier: Some(Identifier::Email("ada.lovelace@example.org".into())),
                tenant_id: "t2".into(),
            },
            &crm_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .subject_ref;
    let hold = app
        .instructions()
        .place_legal_hold(authed(
            pb::PlaceLegalHoldRequest {
                tenant_id: "t2".into(),
                subject_ref: sref.clone(),
                categories: vec!["contact".into()],
                reason: "Litigation hold: Lovelace v. Example Ltd".into(),
                reference: "case 4711".into(),
                until: None,
            },
            &comp,
        ))
        .await
        .unwrap()
        .into_inner();
    let denied = app
        .instructions()
        .check_processing(authed(
            pb::CheckProcessingRequest {
                tenant_id: "t2".into(),
                category: "contact".into(),
                purpose: "billing".into(),
                subject_ref: sref.clone(),
                ..Default::default()
            },
            &app.keys.platform("recorder"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        denied.verdict,
        pb::Verdict::Deny as i32,
        "a DENY is always logged"
    );
    assert_eq!(decisions(&app, &comp).await[0].subject_ref, sref);
    // ... and a question to the controller with its answer, and a file
    // of two chunks (one per MiB) uploaded for the same request.
    let b1 = requests(&app)
        .submit_subject_request(authed(submit(pb::RequestType::Access, "b1", &[]), &t2))
        .await
        .unwrap()
        .into_inner()
        .id;
    let task = pull(&app, "crm", 60)
        .await
        .into_iter()
        .find(|t| t.request_id == b1)
        .expect("b1's task")
        .id;
    let recording: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let artifact = requests(&app)
        .upload_artifact(authed(
            tokio_stream::iter(upload_messages(&task, "call.wav", &recording)),
            &crm_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    let question = requests(&app)
        .ask_controller(authed(
            pb::AskControllerRequest {
                request_id: b1.clone(),
                question: "Which of Lovelace's two accounts?".into(),
            },
            &crm_token,
        ))
        .await
        .unwrap()
        .into_inner();
    let asked = pull_inbox(&app, &t2, 30)
        .await
        .into_iter()
        .find(|e| e.kind == "subject_request.question")
        .expect("the question reaches t2");
    app.inbox()
        .reply(authed(
            pb::ReplyRequest {
                id: asked.id,
                text: "The Marylebone one, says Lovelace".into(),
            },
            &t2,
        ))
        .await
        .unwrap();
    complete(&app, "crm", &task, br#"[{"contact":"Ada"}]"#, false)
        .await
        .unwrap();

    let ring1 = KeyRing::new(&[k1]).unwrap();
    let before = sealed_rows(&app).await;
    let kinds: Vec<_> = before.iter().map(|r| r.0).collect();
    assert_eq!(
        kinds,
        [
            "subject",
            "subject",
            "chunk",
            "chunk",
            "answer",
            "note",
            "note",
            "reasons",
            "task error",
            "task error",
            "party",
            "party",
            "nature",
            "contact",
            "webhook secret",
            "previous secret",
            "hold",
            "decision",
            "controller question",
            "controller answer",
            "artifact chunk",
            "artifact chunk"
        ]
    );
    assert_eq!(
        before.iter().filter(|r| r.2.is_none()).count(),
        3,
        "the legacy note, chunk and task error are clear"
    );
    let clear = opened(&before, &ring1);
    let ring2 = KeyRing::new(&[k2]).unwrap();
    let uses = app
        .store
        .read("test.keys_in_use", |c, _| reseal::keys_in_use(c))
        .await
        .unwrap();
    let pending = reseal::pending(&uses, ring2.active_id());
    assert_eq!(
        (
            pending.subject_identifiers,
            pending.export_chunks,
            pending.case_answers,
            pending.case_notes
        ),
        (2, 2, 1, 2)
    );
    assert_eq!(
        (
            pending.request_reasons,
            pending.task_errors,
            pending.screened_parties,
            pending.breach_texts
        ),
        (1, 2, 2, 2)
    );
    assert_eq!(
        (
            pending.webhook_secrets,
            pending.legal_hold_texts,
            pending.decision_subjects,
            pending.subject_questions,
            pending.subject_answers,
            pending.artifact_chunks
        ),
        (2, 1, 1, 1, 1, 2)
    );
    assert_eq!(uses.len(), 2, "key 1 and the clear rows: {uses:?}");

    // Key 2 first, key 1 still in the ring. Status fails while rows need
    // key 1, and shows each key's rows.
    std::fs::write(&ring_file, format!("{}{}", key_text(&k2), key_text(&k1))).unwrap();
    let (ok, out, err) = keys_run(&app.db, &ring_file, &["status"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "in the clear (from before sealing): 0 subject identifiers, 1 export chunks, 0 case answers, \
             1 case notes, 0 request reasons, 1 task errors, 0 screened parties, 0 breach texts"
        ),
        "{out}"
    );
    assert!(err.contains("22 row(s) are not under the active key"), "{err}");
    // No row is sealed under key 2 yet: nothing shows the server has it, so
    // a reseal is refused unless forced.
    let (ok, _, err) = keys_run(&app.db, &ring_file, &["reseal"]);
    assert!(!ok && err.contains("--force"), "{err}");

    // Beside the running server, in batches of one row per kind.
    let out = keys_cli(&app.db, &ring_file, &["reseal", "--batch", "1", "--force"]);
    assert!(
        out.contains(
            "2 subject identifiers, 2 export chunks, 1 case answers, 2 case notes, \
             1 request reasons, 2 task errors, 2 screened parties, 2 breach texts, \
             0 authority request texts, 2 webhook secrets, 1 legal hold texts, 1 decision subjects, \
             1 subject questions, 1 subject answers, 2 artifact chunks"
        ),
        "{out}"
    );
    assert!(out.contains("they can leave the ring"), "{out}");

    // Every kind is under key 2 only, as many rows as before.
    let uses = app
        .store
        .read("test.keys_in_use", |c, _| reseal::keys_in_use(c))
        .await
        .unwrap();
    assert_eq!(uses.len(), 1, "key 2 alone: {uses:?}");
    assert_eq!(uses[&Some(ring2.active_id().to_owned())], pending);

    // Key 2 alone opens everything, to the same text; nothing is clear.
    let after = sealed_rows(&app).await;
    assert!(after.iter().all(|r| r.2.as_deref() == Some(ring2.active_id())));
    assert_eq!(opened(&after, &ring2), clear);
    assert!(
        after
            .iter()
            .all(|r| !r.3.contains("Madrid") && !r.3.contains("before sealing") && !r.3.contains("Lovelace"))
    );

    // Nothing left to do (no --force needed now); status agrees.
    let out = keys_cli(&app.db, &ring_file, &["reseal"]);
    assert!(
        out.contains("resealed under key") && out.contains(": 0 subject identifiers, 0 export chunks"),
        "{out}"
    );
    let out = keys_cli(&app.db, &ring_file, &["status"]);
    assert!(out.contains("they can leave the ring"), "{out}");

    // The audit log has the batches, with counts and key ids only.
    let events = crate::support::audit_events(&app).await;
    let reseals: Vec<_> = events.iter().filter(|e| e.action == "keys.reseal").collect();
    assert_eq!(reseals.len(), 2, "two batches of at most one row per kind");
    for e in &reseals {
        assert_eq!(e.actor, "cli:sre-on-call");
        assert_eq!(e.target, format!("key/{}", ring2.active_id()));
        assert!(
            !e.detail.contains("Madrid") && !e.detail.contains("register"),
            "{}",
            e.detail
        );
        assert!(e.detail.contains(r#""artifact_chunks":1"#), "{}", e.detail);
    }

    // The old key leaves the ring: a server started with the ring [2] alone
    // (after the runbook's steps, which the key check on start asks for)
    // reads every kind through its RPCs.
    app.stop().await;
    for ring in [
        format!("{}{}", key_text(&k1), key_text(&k2)),
        format!("{}{}", key_text(&k2), key_text(&k1)),
    ] {
        std::fs::write(&ring_file, ring).unwrap();
        let keys = TestKeys::new();
        Application::build(config(&keys), ManualClock::new(t0()))
            .await
            .expect("the runbook's step starts");
    }
    std::fs::write(&ring_file, key_text(&k2)).unwrap();
    let keys = TestKeys::new();
    let cfg = config(&keys);
    let app = spawn_with(TestDb::shared_with(&db), keys, cfg).await;
    let (comp, t2) = (app.keys.compliance(), app.keys.tenant("t2"));
    // Deliveries are signed with both webhook secrets (the previous one's
    // overlap has not run out).
    let breach = app
        .breaches()
        .report_breach(authed(
            pb::ReportBreachRequest {
                nature: "Recordings readable through a misconfigured bucket".into(),
                categories: vec!["recording".into()],
                became_aware_at: Some(prost_types::Timestamp {
                    seconds: crate::support::t0().timestamp() - 60,
                    nanos: 0,
                }),
                tenant_ids: vec!["t3".into()],
                ..Default::default()
            },
            &comp,
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    let delivered = rx.wait_for(1).await.remove(0);
    assert!(
        delivered.json().to_string().contains(&breach),
        "{:?}",
        delivered.json()
    );
    assert!(delivered.signed_by(&secret), "the current secret opens");
    assert!(delivered.signed_by(&first_secret), "the previous one too");
    let holds = app
        .instructions()
        .list_legal_holds(authed(
            pb::ListLegalHoldsRequest {
                tenant_id: "t2".into(),
                active_only: false,
            },
            &comp,
        ))
        .await
        .unwrap()
        .into_inner()
        .holds;
    assert_eq!(holds, [hold]);
    assert_eq!(decisions(&app, &comp).await[0].subject_ref, sref);
    let read = requests(&app)
        .get_controller_question(authed(
            pb::GetControllerQuestionRequest {
                id: question.id.clone(),
            },
            &t2,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (read.question.as_str(), read.answer.as_str()),
        (
            "Which of Lovelace's two accounts?",
            "The Marylebone one, says Lovelace"
        )
    );
    let zip = {
        use tokio_stream::StreamExt;
        let mut s = requests(&app)
            .get_export(authed(
                pb::GetExportRequest {
                    id: b1.clone(),
                    format: pb::ExportFormat::Zip as i32,
                },
                &t2,
            ))
            .await
            .unwrap()
            .into_inner();
        let mut all = Vec::new();
        while let Some(chunk) = s.next().await {
            all.extend(chunk.unwrap().data);
        }
        all
    };
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("a valid ZIP");
    let mut file = Vec::new();
    std::io::Read::read_to_end(&mut zip.by_name("files/crm/call.wav").unwrap(), &mut file).unwrap();
    assert!(file == recording, "the artefact reads back whole");

    // A row under a key the ring lacks is reported and left as it was; the
    // run still goes through every other row, and fails.
    let (k3, lost) = (rand::random::<[u8; 32]>(), rand::random::<[u8; 32]>());
    let lost_ring = KeyRing::new(&[lost]).unwrap();
    let (lost_key, lost_text) =
        proctor::screening::case_answers::seal_text(&lost_ring, &cases[0], "sealed under a lost key")
            .unwrap();
    // A question and an artefact chunk too (kinds sealed from the start).
    let lost_question = proctor::secrets::sealed::StoredText::seal(
        &lost_ring,
        proctor::secrets::sealed::Field::SubjectQuestion,
        &question.id,
        "sealed under a lost key",
    )
    .unwrap();
    let (_, lost_chunk) =
        proctor::subject_requests::repo::seal_artifact_chunk(&lost_ring, &artifact, 0, b"lost").unwrap();
    let (case0, lk, lt) = (cases[0].clone(), lost_key.clone(), lost_text.clone());
    let (qid, aid) = (question.id.clone(), artifact.clone());
    app.store
        .write("test.lost_key_row", move |c, _| {
            diesel::update(ca::screening_case_answers.filter(ca::case_id.eq(&case0)))
                .set((ca::key_id.eq(&lk), ca::text.eq(&lt)))
                .execute(c)?;
            diesel::update(sq::subject_questions.filter(sq::id.eq(&qid)))
                .set((
                    sq::question_key_id.eq(lost_question.key_id.unwrap()),
                    sq::question_sealed.eq(lost_question.sealed.unwrap()),
                ))
                .execute(c)?;
            diesel::update(
                ac::subject_artifact_chunks
                    .filter(ac::artifact_id.eq(&aid))
                    .filter(ac::idx.eq(0)),
            )
            .set((ac::key_id.eq(&lk), ac::data.eq(&lost_chunk)))
            .execute(c)?;
            Ok(())
        })
        .await
        .unwrap();
    std::fs::write(&ring_file, format!("{}{}", key_text(&k3), key_text(&k2))).unwrap();
    let (ok, out, err) = keys_run(&app.db, &ring_file, &["reseal", "--force"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("2 subject identifiers, 2 export chunks, 0 case answers, 2 case notes"),
        "{out}"
    );
    assert!(
        out.contains("0 subject questions, 1 subject answers, 1 artifact chunks"),
        "{out}"
    );
    for left in [
        format!("did not open: case answers {}/1 (key {lost_key})", cases[0]),
        format!("did not open: subject questions {} (key {lost_key})", question.id),
        format!("did not open: artifact chunks {artifact}/0 (key {lost_key})"),
    ] {
        assert!(err.contains(&left), "{err}");
    }
    assert!(err.contains("3 row(s) did not open"), "{err}");
    let still: (String, String) = app
        .store
        .read("test.lost_row", move |c, _| {
            Ok(ca::screening_case_answers
                .select((ca::key_id, ca::text))
                .first(c)?)
        })
        .await
        .unwrap();
    assert_eq!(still, (lost_key, lost_text));
    app.stop().await;
}
on_both_backends!(reseal_retires_the_old_key, reseal_retires_the_old_key);

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// On PostgreSQL a reseal and the close of the same request can interleave:
/// the reseal reads the sealed identifiers, the close deletes them and
/// commits, then the reseal writes. Its write names the key it read under,
/// so it finds nothing to update and the identifiers stay deleted. The
/// close is held open on a second connection until the reseal is seen
/// waiting on its row lock, so the interleaving is forced, not hoped for.
/// (SQLite runs one writer at a time: there the two cannot interleave.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reseal_never_revives_identifiers_a_close_deleted() {
    if !crate::support::postgres_available() {
        return;
    }
    let (k1, k2) = (rand::random::<[u8; 32]>(), rand::random::<[u8; 32]>());
    let keys = TestKeys::new();
    let ring_file = keys.dir.path().join("ring.keys");
    std::fs::write(&ring_file, key_text(&k1)).unwrap();
    let db = TestDb::new(Backend::Postgres);
    let url = db.url.clone();
    let mut cfg = test_config(&db, &keys);
    cfg.identifier_encryption_key_file = Some(ring_file);
    let app = spawn_with(db, keys, cfg).await;
    let t1 = app.keys.tenant("t1");
    register(&app, "crm", &["contact"]).await;
    let id = requests(&app)
        .submit_subject_request(authed(submit(pb::RequestType::Access, "a1", &[]), &t1))
        .await
        .unwrap()
        .into_inner()
        .id;

    // The close: deletes the ciphertext in a transaction left open.
    let (closed_tx, closed_rx) = std::sync::mpsc::channel::<i32>();
    let (commit_tx, commit_rx) = std::sync::mpsc::channel::<()>();
    let (curl, cid) = (url.clone(), id.clone());
    let closer = std::thread::spawn(move || {
        let mut c = PgConnection::establish(&curl).unwrap();
        let pid: Vec<Count> = diesel::sql_query("SELECT pg_backend_pid()::bigint AS n")
            .load(&mut c)
            .unwrap();
        diesel::sql_query("BEGIN").execute(&mut c).unwrap();
        diesel::update(r::subject_requests.filter(r::id.eq(&cid)))
            .set((
                r::subject_sealed.eq(None::<String>),
                r::subject_key_id.eq(None::<String>),
            ))
            .execute(&mut c)
            .unwrap();
        closed_tx.send(pid[0].n as i32).unwrap();
        commit_rx.recv().unwrap();
        diesel::sql_query("COMMIT").execute(&mut c).unwrap();
    });
    let closer_pid = closed_rx.recv().unwrap();

    // The reseal reads the committed (still sealed) row, then waits on the
    // close's row lock.
    let ring = std::sync::Arc::new(KeyRing::new(&[k2, k1]).unwrap());
    let actor = proctor::audit::model::AuditEntry {
        actor: "test".into(),
        role: "sre".into(),
        tenant_id: None,
        action: String::new(),
        target: String::new(),
        outcome: "ok".into(),
        trace_id: String::new(),
        detail: String::new(),
    };
    let store = app.store.clone();
    let resealing = tokio::spawn(async move {
        store
            .write("test.reseal", move |c, clock| {
                reseal::batch(
                    c,
                    clock.now(),
                    actor,
                    &ring,
                    reseal::Scope::All,
                    10,
                    &reseal::Cursor::default(),
                )
            })
            .await
    });
    let mut watcher = PgConnection::establish(&url).unwrap();
    let mut waited = false;
    for _ in 0..200 {
        let blocked: Vec<Count> = diesel::sql_query(format!(
            "SELECT count(*)::bigint AS n FROM pg_stat_activity WHERE {closer_pid} = ANY(pg_blocking_pids(pid))"
        ))
        .load(&mut watcher)
        .unwrap();
        if blocked[0].n > 0 {
            waited = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(waited, "the reseal never waited on the close's row lock");
    commit_tx.send(()).unwrap();
    closer.join().unwrap();
    let batch = resealing.await.unwrap().unwrap();
    assert_eq!(batch.visited, 1, "the reseal read the sealed row");
    assert_eq!(batch.resealed.subject_identifiers, 0, "and wrote nothing back");
    let row: (Option<String>, Option<String>) = app
        .store
        .read("test.closed_row", move |c, _| {
            Ok(r::subject_requests
                .filter(r::id.eq(&id))
                .select((r::subject_sealed, r::subject_key_id))
                .first(c)?)
        })
        .await
        .unwrap();
    assert_eq!(row, (None, None), "the deleted identifiers stay deleted");
    app.stop().await;
}
