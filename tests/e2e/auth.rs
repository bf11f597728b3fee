//! Authentication and authorisation at the edge: every refusal is the right
//! status, never reaches a handler, and is counted in the audit log (one
//! event per caller class and interval) without the token.

use proctor::proto::v1::{
    CheckProcessingRequest, ListAuditEventsRequest, PullRequest, VerifyAuditLogRequest,
};
use serde_json::json;
use tonic::{Code, Request};

use crate::on_both_backends;
use crate::support::{Backend, authed, flushed_refusals, refusal_detail, refused_count, spawn_app};

async fn refusals(b: Backend) {
    let app = spawn_app(b).await;
    let k = &app.keys;
    let mut inbox = app.inbox();
    let mut audit = app.audit();
    let now = crate::support::t0().timestamp();

    // No token at all.
    let e = inbox
        .pull(Request::new(PullRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert_eq!(e.message(), proctor::auth::jwt::UNAUTHENTICATED_MESSAGE);

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
        // No parser or validation detail for the caller to learn from.
        assert_eq!(e.message(), proctor::auth::jwt::UNAUTHENTICATED_MESSAGE, "{what}");
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
        .verify_audit_log(authed(VerifyAuditLogRequest::default(), &k.tenant("t1")))
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
    let mut instr = app.instructions();
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

    // Every refusal is counted in the audit log, per caller class, and no
    // token is.
    let refused = flushed_refusals(&app).await;
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
    assert!(
        !events.iter().any(|e| e.action == "auth.denied"),
        "no event per refused call"
    );
    // Three classes: anonymous, the sre token, the tenant t1 token.
    assert_eq!(refused.len(), 3, "{refused:#?}");
    let total: u64 = refused
        .iter()
        .map(|e| refusal_detail(e)["count"].as_u64().unwrap())
        .sum();
    // 1 missing + 6 attacks + 1 tampered + 2 roles + 1 other tenant + 1 unauthenticated
    assert_eq!(total, 12, "{refused:#?}");
    assert_eq!(refused_count(&refused, "missing_token"), 2);
    assert_eq!(refused_count(&refused, "malformed_token"), 1);
    assert_eq!(refused_count(&refused, "invalid_token"), 6);
    let anonymous = refused.iter().find(|e| e.actor == "anonymous").unwrap();
    assert_eq!(refusal_detail(anonymous)["count"], 9);
    let tenant = refused.iter().find(|e| e.tenant_id == "t1").unwrap();
    assert_eq!(tenant.role, "tenant");
    assert_eq!(refusal_detail(tenant)["outcomes"]["other_tenant"], 1);
    assert_eq!(refusal_detail(tenant)["outcomes"]["role_not_allowed"], 1);
    let sre = refused.iter().find(|e| e.role == "sre").unwrap();
    assert_eq!(refusal_detail(sre)["outcomes"]["role_not_allowed"], 1);
    for e in &events {
        let text = format!("{e:?}");
        assert!(!text.contains("eyJ"), "a token leaked into the audit log: {text}");
    }
    let v = audit
        .verify_audit_log(authed(VerifyAuditLogRequest::default(), &k.sre()))
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
        exp: crate::support::t0().timestamp() + 60,
        nbf: None,
        iat: None,
        iss: Some("https://issuer.test".into()),
        aud: Some("proctor".into()),
    };
    let token = proctor::auth::keys::mint_with_secret(b"0123456789abcdef0123456789abcdef", &claims).unwrap();
    let mut inbox = app.inbox();
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
    let mut inbox = app.inbox();
    let e = inbox
        .pull(authed(PullRequest::default(), &token))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    app.stop().await;
}

/// A flood of garbage tokens from one peer: each call is refused at once,
/// the peer is cut off before authentication once its budget of failed
/// authentications is spent (valid tokens from it too, until it refills),
/// and the whole flood adds one audit row, not one per call.
async fn garbage_flood(b: Backend) {
    let app = spawn_app(b).await;
    let mut inbox = app.inbox();
    let before = crate::support::audit_events(&app).await.len();
    let flood = 300;
    let mut exhausted = 0;
    for i in 0..flood {
        let e = inbox
            .pull(authed(PullRequest::default(), &format!("garbage.{i}.token")))
            .await
            .unwrap_err();
        match e.code() {
            Code::Unauthenticated => {}
            Code::ResourceExhausted => exhausted += 1,
            other => panic!("call {i}: {other:?} {e:?}"),
        }
    }
    // The default budget is 200 failed authentications at once.
    assert!(
        (90..=100).contains(&exhausted),
        "{exhausted} of {flood} calls refused before authentication"
    );
    let e = inbox
        .pull(authed(PullRequest::default(), &app.keys.tenant("t1")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "the peer is cut off");
    assert!(
        tonic_types::StatusExt::get_details_retry_info(&e).is_some(),
        "with a retry delay"
    );

    let refused = flushed_refusals(&app).await;
    let events = crate::support::audit_events(&app).await;
    assert_eq!(
        events.len() - before,
        1,
        "{flood} refused calls add one counted event: {refused:#?}"
    );
    let d = refusal_detail(&refused[0]);
    assert_eq!(d["count"].as_u64().unwrap(), flood + 1);
    assert_eq!(
        refused_count(&refused, "peer_rate_limited"),
        exhausted + 1,
        "refusals before authentication are counted too"
    );
    // The minute the flush waited for refilled the budget.
    inbox
        .pull(authed(PullRequest::default(), &app.keys.tenant("t1")))
        .await
        .expect("the peer's budget refilled");
    app.stop().await;
}
on_both_backends!(a_garbage_flood_adds_a_bounded_number_of_audit_rows, garbage_flood);

/// Refusals still counted when the server stops are written on the way
/// out, not lost with the process.
async fn refusals_survive_shutdown(b: Backend) {
    let mut app = spawn_app(b).await;
    // Keep the database past the server's stop.
    let shared = crate::support::TestDb::shared_with(&app.db);
    let _db = std::mem::replace(&mut app.db, shared);
    let mut inbox = app.inbox();
    for _ in 0..3 {
        let e = inbox
            .pull(Request::new(PullRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
    }
    let store = app.store.clone();
    app.stop().await;
    let (events, _) = store
        .read("test.audit", |c, _| proctor::audit::repo::list(c, None, 0, 1000))
        .await
        .unwrap();
    let refused: Vec<_> = events
        .iter()
        .filter(|e| e.entry.action == "auth.refused")
        .collect();
    assert_eq!(refused.len(), 1, "{events:#?}");
    let d: serde_json::Value = serde_json::from_str(&refused[0].entry.detail).unwrap();
    assert_eq!(d["outcomes"]["missing_token"], 3);
}
on_both_backends!(
    refusals_counted_at_shutdown_are_written,
    refusals_survive_shutdown
);

/// The per-peer limit can be turned off (a proxy that already limits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_limit_can_be_turned_off() {
    use crate::support::{TestDb, TestKeys, spawn_with, test_config};
    let db = TestDb::new(Backend::Sqlite);
    let keys = TestKeys::new();
    let mut cfg = test_config(&db, &keys);
    cfg.peer_rate_limit_per_second = 0.0;
    let app = spawn_with(db, keys, cfg).await;
    let mut inbox = app.inbox();
    for i in 0..250 {
        let e = inbox
            .pull(Request::new(PullRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "call {i}");
    }
    inbox
        .pull(authed(PullRequest::default(), &app.keys.tenant("t1")))
        .await
        .expect("no peer limit");
    app.stop().await;
}

/// A second Ed25519 key: its JWK (kid `kid`) and what signs with it.
fn ed_key(kid: &str) -> (serde_json::Value, jsonwebtoken::EncodingKey) {
    use base64::Engine;
    use ed25519_dalek::pkcs8::{EncodePrivateKey, spki::der::pem::LineEnding};
    let signing = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let pem = signing.to_pkcs8_pem(LineEnding::LF).unwrap();
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes());
    (
        json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA"}),
        jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
    )
}

fn sign_with(kid: &str, key: &jsonwebtoken::EncodingKey, claims: &serde_json::Value) -> String {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

fn claims(extra: serde_json::Value) -> serde_json::Value {
    let mut c = json!({
        "sub": "crm", "roles": ["platform"], "iss": "https://issuer.test", "aud": "proctor",
        "exp": crate::support::t0().timestamp() + 3600,
    });
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    c
}

async fn pull_code(app: &crate::support::TestApp, token: &str) -> Code {
    let mut inbox = app.inbox();
    match inbox.pull(authed(PullRequest::default(), token)).await {
        Ok(_) => Code::Ok,
        Err(e) => e.code(),
    }
}

/// `aud` as an array is accepted when it holds the audience.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audience_array_holding_ours_is_accepted() {
    let app = spawn_app(Backend::Sqlite).await;
    let k = &app.keys;
    let ours = k.sign(&claims(json!({"aud": ["billing", "proctor"]})));
    assert_eq!(pull_code(&app, &ours).await, Code::Ok);
    let theirs = k.sign(&claims(json!({"aud": ["billing", "crm"]})));
    assert_eq!(pull_code(&app, &theirs).await, Code::Unauthenticated);
    app.stop().await;
}

/// Tokens living longer than `--jwt-max-lifetime-seconds` are refused,
/// measured from `iat`, or from now without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_living_too_long_are_refused() {
    let now = crate::support::t0().timestamp();
    let day = 86_400;
    // The default: a day.
    use crate::support::{TestDb, TestKeys, spawn_with, test_config};
    let db = TestDb::new(Backend::Sqlite);
    let keys = TestKeys::short_lived();
    let mut cfg = test_config(&db, &keys);
    cfg.jwt_max_lifetime_seconds = proctor::config::Config::default().jwt_max_lifetime_seconds;
    let app = spawn_with(db, keys, cfg).await;
    let k = &app.keys;
    let cases = [
        (
            "a day from iat",
            json!({"iat": now - 60, "exp": now + day - 120}),
            Code::Ok,
        ),
        (
            "two days from iat",
            json!({"iat": now, "exp": now + 2 * day}),
            Code::Unauthenticated,
        ),
        (
            "two days, no iat",
            json!({"exp": now + 2 * day}),
            Code::Unauthenticated,
        ),
        (
            "until the year 2^62",
            json!({"exp": 1_i64 << 62}),
            Code::Unauthenticated,
        ),
        (
            "a future iat does not hide a far exp",
            json!({"iat": (1_i64 << 62) - 60, "exp": 1_i64 << 62}),
            Code::Unauthenticated,
        ),
    ];
    for (what, extra, want) in cases {
        assert_eq!(pull_code(&app, &k.sign(&claims(extra))).await, want, "{what}");
    }
    let refused = flushed_refusals(&app).await;
    assert_eq!(refused_count(&refused, "lifetime_too_long"), 4);
    app.stop().await;

    // Configured shorter.
    let db = TestDb::new(Backend::Sqlite);
    let keys = TestKeys::short_lived();
    let mut cfg = test_config(&db, &keys);
    cfg.jwt_max_lifetime_seconds = 3600;
    let app = spawn_with(db, keys, cfg).await;
    let k = &app.keys;
    let hour = k.sign(&claims(json!({"iat": now, "exp": now + 3600})));
    assert_eq!(pull_code(&app, &hour).await, Code::Ok);
    let two = k.sign(&claims(json!({"iat": now, "exp": now + 7200})));
    assert_eq!(pull_code(&app, &two).await, Code::Unauthenticated);
    app.stop().await;
}

/// The JWKS file is reread every `--jwt-jwks-refresh-seconds` (on the
/// server's clock): an added key is trusted and a removed one is not,
/// without a restart; an unusable file keeps the last good keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwks_is_reread_so_keys_rotate_without_a_restart() {
    let app = spawn_app(Backend::Sqlite).await;
    let path = app.keys.jwks_path.clone();
    let original: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let old_token = app.keys.sign(&claims(json!({})));
    let (new_jwk, new_key) = ed_key("rotated");
    let new_token = sign_with("rotated", &new_key, &claims(json!({})));
    assert_eq!(pull_code(&app, &old_token).await, Code::Ok);
    assert_eq!(pull_code(&app, &new_token).await, Code::Unauthenticated);

    // One reread by the refresher applies what the file says.
    async fn until(app: &crate::support::TestApp, token: &str, want: Code) {
        app.clock.advance_settled(chrono::Duration::seconds(301)).await;
        assert_eq!(pull_code(app, token).await, want, "after the JWKS reread");
    }

    // Step 1 of a rotation: the new key is added beside the old one.
    let mut both = original.clone();
    both["keys"].as_array_mut().unwrap().push(new_jwk.clone());
    std::fs::write(&path, both.to_string()).unwrap();
    until(&app, &new_token, Code::Ok).await;
    assert_eq!(
        pull_code(&app, &old_token).await,
        Code::Ok,
        "the old key stays meanwhile"
    );

    // An unusable file: logged, and the last good keys stay.
    std::fs::write(&path, "{not json").unwrap();
    app.clock.advance(chrono::Duration::seconds(301));
    // Step 2: the old key is removed (after the bad file was seen or not,
    // the outcome must be the same).
    let only_new = json!({"keys": [new_jwk]});
    std::fs::write(&path, only_new.to_string()).unwrap();
    until(&app, &old_token, Code::Unauthenticated).await;
    assert_eq!(pull_code(&app, &new_token).await, Code::Ok);
    app.stop().await;
}
