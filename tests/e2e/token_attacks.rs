//! Token attacks over real gRPC that `auth.rs` does not cover: `alg: none`,
//! HS256 "signed" with the server's RSA public key (algorithm confusion), a
//! key the server does not trust, an unknown `kid`, an 8 KiB garbage
//! header, a tenant token without a tenant and a tenant token naming another
//! tenant. Each is refused before any handler, and each refusal is counted in
//! the audit log, with its class and never the token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{EncodePrivateKey, spki::der::pem::LineEnding};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proctor::proto::v1::{
    GetInstructionsRequest, ListAuditEventsRequest, PullRequest, VerifyAuditLogRequest,
};
use rsa::pkcs8::EncodePublicKey;
use rsa::traits::PublicKeyParts;
use serde_json::json;
use tonic::Code;
use tonic::metadata::MetadataValue;

use crate::on_both_backends;
use crate::support::{
    Backend, TestDb, TestKeys, authed, flushed_refusals, refusal_detail, refused_count, spawn_with,
    test_config,
};

/// Adds an RS256 key (`kid` "test-rsa") to the test key set and returns
/// its private and public PEM.
fn add_rsa_key(keys: &TestKeys) -> (String, String) {
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let public = key.to_public_key();
    let mut jwks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&keys.jwks_path).unwrap()).unwrap();
    jwks["keys"].as_array_mut().unwrap().push(json!({
        "kty": "RSA", "kid": "test-rsa", "alg": "RS256",
        "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
    }));
    std::fs::write(&keys.jwks_path, jwks.to_string()).unwrap();
    (
        key.to_pkcs8_pem(Default::default()).unwrap().to_string(),
        public.to_public_key_pem(Default::default()).unwrap(),
    )
}

fn sign(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &serde_json::Value) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

async fn attacks(b: Backend) {
    let db = TestDb::new(b);
    let keys = TestKeys::new();
    let (rsa_private, rsa_public) = add_rsa_key(&keys);
    let cfg = test_config(&db, &keys);
    let app = spawn_with(db, keys, cfg).await;
    let k = &app.keys;
    let now = crate::support::t0().timestamp();
    let claims = json!({
        "sub": "attacker", "roles": ["tenant"], "tenant_id": "t1",
        "iss": "https://issuer.test", "aud": "proctor", "exp": now + 600,
    });

    // The RSA key is trusted: a properly signed RS256 token passes.
    let rsa = EncodingKey::from_rsa_pem(rsa_private.as_bytes()).unwrap();
    let mut inbox = app.inbox();
    inbox
        .pull(authed(
            PullRequest::default(),
            &sign(Algorithm::RS256, "test-rsa", &rsa, &claims),
        ))
        .await
        .expect("a genuine RS256 token is accepted");

    let none_token = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let confused = sign(
        Algorithm::HS256,
        "test-rsa",
        &EncodingKey::from_secret(rsa_public.as_bytes()).unwrap(),
        &claims,
    );
    let stranger = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let stranger_pem = stranger.to_pkcs8_pem(LineEnding::LF).unwrap();
    let wrong_key = sign(
        Algorithm::EdDSA,
        "test-ed",
        &EncodingKey::from_ed_pem(stranger_pem.as_bytes()).unwrap(),
        &claims,
    );
    let unknown_kid = {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some("no-such-key".into());
        let good = k.sign(&claims);
        // Same trusted signature, header re-pointed at a key that does not exist.
        let parts: Vec<&str> = good.split('.').collect();
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&h).unwrap()),
            parts[1],
            parts[2]
        )
    };
    let garbage: String = (0..8192).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let no_tenant = k.sign(&json!({
        "sub": "attacker", "roles": ["tenant"],
        "iss": "https://issuer.test", "aud": "proctor", "exp": now + 600,
    }));

    let cases: [(&str, String, &str); 6] = [
        ("alg none", none_token, "malformed_token"),
        (
            "HS256 with the RSA public key",
            confused,
            "algorithm_not_accepted",
        ),
        ("untrusted key", wrong_key, "invalid_token"),
        ("unknown kid", unknown_kid, "unknown_key"),
        ("8 KiB garbage", garbage.clone(), "malformed_token"),
        ("tenant without tenant_id", no_tenant, "tenant_without_id"),
    ];
    for (what, token, _) in &cases {
        let e = inbox
            .pull(authed(PullRequest::default(), token))
            .await
            .expect_err(what);
        assert_eq!(e.code(), Code::Unauthenticated, "{what}: {e:?}");
        assert_eq!(
            e.message(),
            proctor::auth::jwt::UNAUTHENTICATED_MESSAGE,
            "{what}: no parser detail"
        );
    }
    // 8 KiB of garbage as the whole header, not even "Bearer".
    let mut req = tonic::Request::new(PullRequest::default());
    req.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(garbage.as_str()).unwrap(),
    );
    let e = inbox.pull(req).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "bare garbage header");

    // A genuine tenant token naming another tenant.
    let mut instr = app.instructions();
    let e = instr
        .get_instructions(authed(
            GetInstructionsRequest {
                tenant_id: "t2".into(),
                ..Default::default()
            },
            &k.tenant("t1"),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // Every refusal is counted, by class, and no token is stored.
    let refused = flushed_refusals(&app).await;
    let mut audit = app.audit();
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
    let total: u64 = refused
        .iter()
        .map(|e| refusal_detail(e)["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, cases.len() as u64 + 2, "{refused:#?}");
    for (what, _, label) in &cases {
        assert!(
            refused_count(&refused, label) > 0,
            "{what}: no refusal counted with outcome {label}: {refused:#?}"
        );
    }
    // alg none, the 8 KiB garbage token and the bare garbage header.
    assert_eq!(refused_count(&refused, "malformed_token"), 3);
    assert!(
        refused
            .iter()
            .any(|e| e.tenant_id == "t1" && refusal_detail(e)["outcomes"]["other_tenant"] == 1)
    );
    for e in &events {
        let text = format!("{e:?}");
        assert!(!text.contains("eyJ"), "a token leaked into the audit log: {text}");
        assert!(
            !text.contains(&garbage[..64]),
            "the garbage header leaked: {text}"
        );
    }
    let v = audit
        .verify_audit_log(authed(VerifyAuditLogRequest::default(), &k.sre()))
        .await
        .unwrap()
        .into_inner();
    assert!(v.ok);
    app.stop().await;
}
on_both_backends!(token_attacks_are_refused_and_audited, attacks);
