//! Authentication and authorisation at the edge: every refusal is the right
//! status, never reaches a handler, and lands in the audit log without the
//! token.

use proctor::proto::v1::audit_service_client::AuditServiceClient;
use proctor::proto::v1::inbox_service_client::InboxServiceClient;
use proctor::proto::v1::instruction_service_client::InstructionServiceClient;
use proctor::proto::v1::{
    CheckProcessingRequest, ListAuditEventsRequest, PullRequest, VerifyAuditLogRequest,
};
use serde_json::json;
use tonic::{Code, Request};

use crate::on_both_backends;
use crate::support::{Backend, authed, spawn_app};

async fn refusals(b: Backend) {
    let app = spawn_app(b).await;
    let k = &app.keys;
    let mut inbox = InboxServiceClient::new(app.channel.clone());
    let mut audit = AuditServiceClient::new(app.channel.clone());
    let now = chrono::Utc::now().timestamp();

    // No token at all.
    let e = inbox
        .pull(Request::new(PullRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    let base = json!({"sub": "x", "roles": ["tenant"], "tenant_id": "t1", "iss": "https://issuer.test", "aud": "proctor"});
    let with = |extra: serde_json::Value| {
        let mut c = base.clone();
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    };
    let attacks = [
        ("expired", k.sign(&with(json!({"exp": now - 120})))),
        ("missing exp", k.sign(&base)),
        (
            "not yet valid",
            k.sign(&with(json!({"exp": now + 600, "nbf": now + 300}))),
        ),
        (
            "wrong issuer",
            k.sign(&with(json!({"exp": now + 600, "iss": "https://evil.test"}))),
        ),
        (
            "wrong audience",
            k.sign(&with(json!({"exp": now + 600, "aud": "other"}))),
        ),
        ("garbage", "not.a.jwt".to_string()),
    ];
    for (what, token) in &attacks {
        let e = inbox
            .pull(authed(PullRequest::default(), token))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{what}");
    }
    // Tampered payload: valid signature of other claims.
    let good = k.tenant("t1");
    let mut parts: Vec<&str> = good.split('.').collect();
    let forged = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        with(json!({"exp": now + 600, "tenant_id": "t2"})).to_string(),
    );
    parts[1] = &forged;
    let e = inbox
        .pull(authed(PullRequest::default(), &parts.join(".")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "tampered");

    // Valid token, wrong role: PERMISSION_DENIED.
    let e = inbox
        .pull(authed(PullRequest::default(), &k.sre()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = audit
        .verify_audit_log(authed(VerifyAuditLogRequest {}, &k.tenant("t1")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // Right role, other tenant: PERMISSION_DENIED.
    let e = audit
        .list_audit_events(authed(
            ListAuditEventsRequest {
                tenant_id: "t2".into(),
                ..Default::default()
            },
            &k.tenant("t1"),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // Authorised calls reach the handler (here: refused for bad input);
    // unauthenticated callers learn nothing beyond UNAUTHENTICATED.
    let mut instr = InstructionServiceClient::new(app.channel.clone());
    let e = instr
        .check_processing(authed(CheckProcessingRequest::default(), &k.platform("crm")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = instr
        .check_processing(Request::new(CheckProcessingRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    // Every refusal is in the audit log, and no token is.
    let events = audit
        .list_audit_events(authed(
            ListAuditEventsRequest {
                page_size: 1000,
                ..Default::default()
            },
            &k.compliance(),
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    let denied: Vec<_> = events.iter().filter(|e| e.action == "auth.denied").collect();
    // 1 missing + 6 attacks + 1 tampered + 2 roles + 1 other tenant + 1 unauthenticated
    assert_eq!(denied.len(), 12, "{denied:#?}");
    assert!(
        denied
            .iter()
            .any(|e| e.outcome == "other_tenant" && e.tenant_id == "t1")
    );
    assert!(
        denied
            .iter()
            .any(|e| e.outcome == "role_not_allowed" && e.role == "sre")
    );
    for e in &events {
        let text = format!("{e:?}");
        assert!(!text.contains("eyJ"), "a token leaked into the audit log: {text}");
    }
    let v = audit
        .verify_audit_log(authed(VerifyAuditLogRequest {}, &k.sre()))
        .await
        .unwrap()
        .into_inner();
    assert!(v.ok);
    assert_eq!(v.events_checked as usize, events.len());
    app.stop().await;
}
on_both_backends!(token_attacks_and_scope_are_refused_and_audited, refusals);

#[tokio::test]
async fn hs256_secret_is_accepted_only_when_configured() {
    use crate::support::{TestDb, TestKeys, spawn_with, test_config};
    let db = TestDb::new(Backend::Sqlite);
    let keys = TestKeys::new();
    let secret_file = keys.dir.path().join("hs.secret");
    std::fs::write(&secret_file, "0123456789abcdef0123456789abcdef\n").unwrap();
    let mut cfg = test_config(&db, &keys);
    cfg.jwt_hs256_secret_file = Some(secret_file);
    let app = spawn_with(db, keys, cfg).await;
    let claims = proctor::auth::jwt::Claims {
        sub: "dev".into(),
        roles: vec!["tenant".into()],
        tenant_id: Some("t1".into()),
        exp: chrono::Utc::now().timestamp() + 60,
        nbf: None,
        iat: None,
        iss: Some("https://issuer.test".into()),
        aud: Some("proctor".into()),
    };
    let token = proctor::auth::keys::mint_with_secret(b"0123456789abcdef0123456789abcdef", &claims).unwrap();
    let mut inbox = InboxServiceClient::new(app.channel.clone());
    inbox.pull(authed(PullRequest::default(), &token)).await.unwrap();
    let wrong = proctor::auth::keys::mint_with_secret(b"another-secret-another-secret-xx", &claims).unwrap();
    let e = inbox
        .pull(authed(PullRequest::default(), &wrong))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    app.stop().await;

    // The default test server has no HS256 secret: the same token is refused.
    let app = spawn_app(Backend::Sqlite).await;
    let mut inbox = InboxServiceClient::new(app.channel.clone());
    let e = inbox
        .pull(authed(PullRequest::default(), &token))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    app.stop().await;
}
