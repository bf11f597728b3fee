//! The verifiable audit log: every event becomes a leaf of an RFC 6962
//! Merkle tree; checkpoints are C2SP signed notes; inclusion and consistency
//! proofs check with an independent implementation of the formats; a
//! rewritten, reordered, deleted or truncated log does not verify.

use proctor::audit::model::{AuditEntry, leaf_data};
use proctor::audit::repo as audit;
use proctor::proto::v1::{
    GetAuditLogKeyRequest, GetCheckpointRequest, GetConsistencyProofRequest, GetInclusionProofRequest,
    VerifyAuditLogRequest, VerifyAuditLogResponse,
};
use signed_note::{Note, StandardVerifier, VerifierList};
use tlog_tiles::{Checkpoint, Hash};
use tonic::Code;

use crate::audit::entry;
use crate::on_both_backends;
use crate::support::{
    Backend, TestApp, TestDb, TestKeys, audit_events, authed, spawn_app, spawn_with, test_config,
};

fn hashes(raw: &[Vec<u8>]) -> Vec<Hash> {
    raw.iter()
        .map(|h| Hash(h.as_slice().try_into().expect("32-byte hashes")))
        .collect()
}

async fn inclusion(
    app: &TestApp,
    event_id: &str,
    tree_size: u64,
    token: &str,
) -> Result<proctor::proto::v1::InclusionProof, tonic::Status> {
    app.audit()
        .get_inclusion_proof(authed(
            GetInclusionProofRequest {
                event_id: event_id.into(),
                tree_size,
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// Writes `n` events, alternating tenants t1 and t2, and waits until they
/// are in the tree.
async fn write(app: &TestApp, n: usize) {
    for i in 0..n {
        let e = entry(Some(if i % 2 == 0 { "t1" } else { "t2" }), &format!("test.{i}"));
        app.store
            .write("test.audit", move |c, clock| audit::append(c, clock.now(), e))
            .await
            .unwrap();
    }
    app.audit_settled().await;
}

/// The checkpoint, opened with the verifier key the log publishes, by the
/// formats' reference implementations (not proctor's own code).
async fn checkpoint(app: &TestApp) -> (String, u64, Hash) {
    let mut a = app.audit();
    let key = a
        .get_audit_log_key(authed(GetAuditLogKeyRequest {}, &app.keys.sre()))
        .await
        .unwrap()
        .into_inner()
        .verifier_key;
    let cp = a
        .get_checkpoint(authed(GetCheckpointRequest {}, &app.keys.platform("crm")))
        .await
        .unwrap()
        .into_inner();
    let note = Note::from_bytes(cp.text.as_bytes()).expect("a signed note");
    let verifier = StandardVerifier::new(&key).expect("a note verifier key");
    note.verify(&VerifierList::new(vec![Box::new(verifier)]))
        .expect("signed by the published key");
    let body = Checkpoint::from_bytes(note.text()).expect("a tlog checkpoint");
    assert_eq!(body.origin(), "proctor/audit");
    assert_eq!(body.size(), cp.tree_size);
    assert_eq!(body.hash().0.to_vec(), cp.root_hash);
    (cp.text, body.size(), *body.hash())
}

async fn verify(app: &TestApp, trusted: &str) -> VerifyAuditLogResponse {
    app.audit()
        .verify_audit_log(authed(
            VerifyAuditLogRequest {
                trusted_checkpoint: trusted.into(),
            },
            &app.keys.compliance(),
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn proofs(b: Backend) {
    let app = spawn_app(b).await;
    write(&app, 5).await;
    let (_, size1, root1) = checkpoint(&app).await;
    assert_eq!(size1, 5);
    write(&app, 7).await;
    let (_, size2, root2) = checkpoint(&app).await;
    assert_eq!(size2, 12);

    // Every event has its leaf, and each leaf's inclusion checks against
    // the signed root, its hash recomputed from the listed fields.
    let events = audit_events(&app).await;
    assert_eq!(events.len(), 12);
    let mut a = app.audit();
    for ev in &events {
        let n = ev.leaf_index.expect("sequenced");
        let tenant = ev.tenant_id.clone();
        let p = inclusion(&app, &ev.id, 0, &app.keys.tenant(&tenant))
            .await
            .unwrap();
        assert_eq!((p.leaf_index, p.tree_size), (n, 12));
        let e = AuditEntry {
            actor: ev.actor.clone(),
            role: ev.role.clone(),
            tenant_id: Some(tenant.clone()),
            action: ev.action.clone(),
            target: ev.target.clone(),
            outcome: ev.outcome.clone(),
            trace_id: ev.trace_id.clone(),
            detail: ev.detail.clone(),
        };
        let at =
            chrono::DateTime::from_timestamp(ev.at.unwrap().seconds, ev.at.unwrap().nanos as u32).unwrap();
        let leaf = tlog_tiles::record_hash(&leaf_data(&ev.id, at, &e));
        assert_eq!(
            p.leaf_hash,
            leaf.0.to_vec(),
            "the leaf hashes the event as listed"
        );
        tlog_tiles::check_record(&hashes(&p.hashes), 12, root2, n, leaf).expect("the inclusion proof checks");
        // In the older tree too, when it was there.
        if n < 5 {
            let p = inclusion(&app, &ev.id, 5, &app.keys.compliance()).await.unwrap();
            tlog_tiles::check_record(&hashes(&p.hashes), 5, root1, n, leaf).expect("in the older tree");
        }
        // Another tenant cannot learn the event exists.
        let other = if tenant == "t1" { "t2" } else { "t1" };
        let e = inclusion(&app, &ev.id, 0, &app.keys.tenant(other))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
    }

    // The newer tree extends the older one.
    let c = a
        .get_consistency_proof(authed(
            GetConsistencyProofRequest {
                from_size: 5,
                to_size: 0,
            },
            &app.keys.sre(),
        ))
        .await
        .unwrap()
        .into_inner();
    let proof = hashes(&c.hashes);
    tlog_tiles::check_tree(&proof, 12, root2, 5, root1).expect("the consistency proof checks");
    assert!(
        tlog_tiles::check_tree(&proof, 12, root2, 5, root2).is_err(),
        "and fails for another root"
    );

    // Sizes the log has not signed are refused with the field named.
    let bad = [(0, 0, "from_size"), (13, 0, "from_size"), (1, 99, "to_size")];
    for (from, to, field) in bad {
        let e = a
            .get_consistency_proof(authed(
                GetConsistencyProofRequest {
                    from_size: from,
                    to_size: to,
                },
                &app.keys.sre(),
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{from}..{to}");
        assert_eq!(crate::support::violated_fields(&e), [field]);
    }
    let e = inclusion(&app, &events[0].id, 99, &app.keys.compliance())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = inclusion(&app, &events[9].id, 5, &app.keys.compliance())
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::FailedPrecondition,
        "leaf 9 is not in the tree of 5"
    );
    let r = verify(&app, "").await;
    assert!(r.ok, "{r:?}");
    assert_eq!((r.tree_size, r.events_checked), (12, 12));
    app.stop().await;
}
on_both_backends!(checkpoints_and_proofs_check_independently, proofs);

/// A second server on the same database: no memory of earlier checks.
async fn replica_of(app: &TestApp) -> TestApp {
    let keys = TestKeys::new();
    let db = TestDb::shared_with(&app.db);
    let cfg = test_config(&db, &keys);
    spawn_with(db, keys, cfg).await
}

async fn truncation(b: Backend) {
    let app = spawn_app(b).await;
    write(&app, 10).await;
    let (saved, _, _) = checkpoint(&app).await;
    let r = verify(&app, &saved).await;
    assert!(r.ok && r.consistent_with_trusted, "{r:?}");
    // An insider removes the last three events and every trace of them:
    // their leaves' hashes and the checkpoints that counted them.
    let first_hash = tlog_tiles::stored_hash_index(0, 7);
    app.db.execute("DELETE FROM audit_events WHERE leaf_index >= 7");
    app.db.execute(&format!(
        "DELETE FROM audit_tree_hashes WHERE idx >= {first_hash}"
    ));
    app.db
        .execute("DELETE FROM audit_checkpoints WHERE tree_size > 7");
    // The replica that verified the longer tree notices at once.
    let r = verify(&app, "").await;
    assert!(!r.ok, "{r:?}");
    // One that never saw it does, given the checkpoint saved earlier.
    let fresh = replica_of(&app).await;
    let r = verify(&fresh, &saved).await;
    assert!(!r.ok && !r.consistent_with_trusted, "{r:?}");
    assert!(r.tree_size < 10, "{r:?}");
    // A checkpoint not signed by this log is refused, not trusted.
    let forged = saved.replacen("\n10\n", "\n11\n", 1);
    let e = fresh
        .audit()
        .verify_audit_log(authed(
            VerifyAuditLogRequest {
                trusted_checkpoint: forged,
            },
            &fresh.keys.sre(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    fresh.stop().await;
    app.stop().await;
}
on_both_backends!(a_truncated_log_is_not_ok, truncation);

async fn rewriting(b: Backend) {
    let app = spawn_app(b).await;
    write(&app, 6).await;
    assert!(verify(&app, "").await.ok);
    let events = audit_events(&app).await;
    let id_at = |n: u64| {
        events
            .iter()
            .find(|e| e.leaf_index == Some(n))
            .unwrap()
            .id
            .clone()
    };

    // Content rewritten after it was verified: the re-check of old leaves
    // finds it.
    app.db
        .execute("UPDATE audit_events SET detail = 'forged' WHERE leaf_index = 4");
    let r = verify(&app, "").await;
    assert!(!r.ok);
    assert_eq!(r.first_bad_event_id, id_at(4));
    app.db
        .execute("UPDATE audit_events SET detail = '' WHERE leaf_index = 4");

    // Two events swap places.
    app.db
        .execute("UPDATE audit_events SET leaf_index = -1 WHERE leaf_index = 1");
    app.db
        .execute("UPDATE audit_events SET leaf_index = 1 WHERE leaf_index = 2");
    app.db
        .execute("UPDATE audit_events SET leaf_index = 2 WHERE leaf_index = -1");
    let fresh = replica_of(&app).await;
    let r = verify(&fresh, "").await;
    assert!(!r.ok, "{r:?}");
    assert_eq!(r.first_bad_event_id, id_at(2), "the event now at leaf 1");
    fresh.stop().await;

    // A checkpoint row whose root was replaced is not what was signed.
    app.db
        .execute("UPDATE audit_events SET leaf_index = -1 WHERE leaf_index = 1");
    app.db
        .execute("UPDATE audit_events SET leaf_index = 1 WHERE leaf_index = 2");
    app.db
        .execute("UPDATE audit_events SET leaf_index = 2 WHERE leaf_index = -1");
    let fresh = replica_of(&app).await;
    assert!(verify(&fresh, "").await.ok, "restored");
    let zeros = match b {
        Backend::Postgres => "'\\x0000000000000000000000000000000000000000000000000000000000000000'::bytea",
        Backend::Sqlite => "zeroblob(32)",
    };
    app.db.execute(&format!(
        "UPDATE audit_checkpoints SET root_hash = {zeros} WHERE tree_size = 6"
    ));
    let r = verify(&replica_of(&app).await, "").await;
    assert!(!r.ok, "{r:?}");
    fresh.stop().await;
    app.stop().await;
}
on_both_backends!(rewritten_and_reordered_events_are_found, rewriting);

/// Two replicas sequencing the same PostgreSQL database at once never give
/// two events one leaf, and leave no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_never_share_a_leaf() {
    let a = spawn_app(Backend::Postgres).await;
    let b = replica_of(&a).await;
    let mut handles = Vec::new();
    for app in [&a, &b] {
        for w in 0..4 {
            let store = app.store.clone();
            handles.push(tokio::spawn(async move {
                for i in 0..25 {
                    let e = entry(Some("t1"), &format!("test.{w}.{i}"));
                    store
                        .write("test.audit", move |c, clock| audit::append(c, clock.now(), e))
                        .await
                        .unwrap();
                }
            }));
        }
    }
    for h in handles {
        h.await.unwrap();
    }
    a.audit_settled().await;
    let mut leaves: Vec<u64> = audit_events(&a)
        .await
        .iter()
        .map(|e| e.leaf_index.expect("sequenced"))
        .collect();
    leaves.sort_unstable();
    assert_eq!(leaves, (0..200).collect::<Vec<_>>());
    let r = verify(&b, "").await;
    assert!(r.ok, "{r:?}");
    assert_eq!(r.tree_size, 200);
    // One replica stops; the other carries on sequencing alone.
    b.stop().await;
    let e = entry(None, "test.after");
    a.store
        .write("test.audit", move |c, clock| audit::append(c, clock.now(), e))
        .await
        .unwrap();
    a.audit_settled().await;
    assert_eq!(checkpoint(&a).await.1, 201);
    a.stop().await;
}

/// `proctor audit verify` checks the log offline against a saved
/// checkpoint, and fails once the log no longer extends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_verifies_offline_against_a_saved_checkpoint() {
    let app = spawn_app(Backend::Sqlite).await;
    write(&app, 8).await;
    let (saved, _, _) = checkpoint(&app).await;
    let key = app
        .audit()
        .get_audit_log_key(authed(GetAuditLogKeyRequest {}, &app.keys.sre()))
        .await
        .unwrap()
        .into_inner()
        .verifier_key;
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("checkpoint.txt");
    std::fs::write(&cp, &saved).unwrap();
    let run = || {
        std::process::Command::new(crate::cli::BIN)
            .args(["audit", "verify", "--checkpoint"])
            .arg(&cp)
            .args(["--verifier-key", &key, "--database-url", &app.db.url])
            .output()
            .unwrap()
    };
    let ok = run();
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        out.contains("tree size 8") && out.trim_end().ends_with("ok"),
        "{out}"
    );
    app.db.execute("DELETE FROM audit_events WHERE leaf_index = 7");
    let bad = run();
    assert!(!bad.status.success(), "{}", String::from_utf8_lossy(&bad.stdout));
    app.stop().await;
}
