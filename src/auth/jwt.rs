//! Bearer-token verification. Keys come from a JSON Web Key Set (RS256,
//! ES256, EdDSA) and, only when explicitly configured for development, an
//! HS256 secret. The algorithm a token names must match the family of the key
//! it is checked with, so an HS256 token "signed" with a public key, or
//! `alg: none`, can never pass.

use std::sync::Arc;

use arc_swap::ArcSwap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use super::Role;

/// Most clock skew tolerated on `exp` and `nbf`.
pub const MAX_LEEWAY_SECONDS: u64 = 30;

/// The one message every unauthenticated caller gets, whatever was wrong
/// with its token: parser and validation details would tell an attacker
/// which part of a forgery to fix next. The class of failure goes to the
/// audit counts and, with the reason, to the server's debug log.
pub const UNAUTHENTICATED_MESSAGE: &str = "a valid bearer token is required";

/// The `aud` claim, which RFC 7519 allows as one string or an array of
/// them; a token is for this server when any of them is its audience.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    /// `"aud": "proctor"`.
    One(String),
    /// `"aud": ["proctor", "other"]`.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `audience` is among the token's audiences.
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Self::One(a) => a == audience,
            Self::Many(all) => all.iter().any(|a| a == audience),
        }
    }
}

impl From<&str> for Audience {
    fn from(a: &str) -> Self {
        Self::One(a.to_owned())
    }
}

impl From<String> for Audience {
    fn from(a: String) -> Self {
        Self::One(a)
    }
}

/// What the verifier enforces besides keys: who issues, for whom, how much
/// skew and how long a token may live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud` (one of the token's audiences), when set.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp`/`nbf`, capped at [`MAX_LEEWAY_SECONDS`].
    pub leeway_seconds: u64,
    /// Longest lifetime accepted (`exp - iat`, or `exp - now` without
    /// `iat`), so a stolen token cannot be valid for decades; 0 = no limit.
    pub max_lifetime_seconds: u64,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            leeway_seconds: MAX_LEEWAY_SECONDS,
            max_lifetime_seconds: 86_400,
        }
    }
}

/// The claims proctor reads. Unknown claims are ignored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Subject: system name or user id.
    pub sub: String,
    /// Role names; unknown names are ignored.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Tenant of a `tenant` token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Expiry, seconds since the epoch; required.
    pub exp: i64,
    /// Not-before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Issued-at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Issuer, checked when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience (one string or an array), checked when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
}

/// A verified token, reduced to what authorisation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Token subject.
    pub sub: String,
    /// Recognised roles.
    pub roles: Vec<Role>,
    /// Token tenant.
    pub tenant_id: Option<String>,
}

/// Why a token was refused; the class is recorded in the audit log, the token
/// never is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `authorization: Bearer` metadata.
    #[error("missing bearer token")]
    Missing,
    /// Not a JWT, or a header that cannot be read.
    #[error("malformed token")]
    Malformed,
    /// The token's `alg` is not one this server accepts.
    #[error("algorithm not accepted")]
    AlgorithmNotAccepted,
    /// The `kid` names no configured key.
    #[error("unknown key id")]
    UnknownKey,
    /// Signature or a claim failed (expired, not yet valid, issuer,
    /// audience, missing `exp`...); the reason is a fixed word, never text
    /// taken from the token.
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    /// A `tenant` token without a `tenant_id` claim.
    #[error("tenant token without tenant_id")]
    TenantWithoutId,
    /// `exp` lies further from `iat` (or now) than the configured maximum.
    #[error("token lifetime exceeds the maximum")]
    LifetimeTooLong,
}

impl TokenError {
    /// Short stable label for audit events and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Missing => "missing_token",
            Self::Malformed => "malformed_token",
            Self::AlgorithmNotAccepted => "algorithm_not_accepted",
            Self::UnknownKey => "unknown_key",
            Self::Invalid(_) => "invalid_token",
            Self::TenantWithoutId => "tenant_without_id",
            Self::LifetimeTooLong => "lifetime_too_long",
        }
    }
}

/// A fixed word for a validation failure: enough for an operator's debug
/// log, and free of anything the token contained (serde messages quote
/// claim values).
fn reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidSignature => "signature",
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::ImmatureSignature => "not_yet_valid",
        ErrorKind::InvalidIssuer => "issuer",
        ErrorKind::InvalidAudience => "audience",
        ErrorKind::InvalidSubject => "subject",
        ErrorKind::MissingRequiredClaim(c) if c == "exp" => "missing_exp",
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => "missing_iss",
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => "missing_aud",
        ErrorKind::MissingRequiredClaim(_) => "missing_claim",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => "algorithm",
        ErrorKind::Json(_) | ErrorKind::Base64(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => {
            "encoding"
        }
        _ => "other",
    }
}

struct VerifyKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// Tokens remembered as verified; platform services send the same token on
/// every call until it expires, and a signature check costs more than the
/// decision they ask for.
const VERIFIED_CACHE_SIZE: usize = 10_000;

/// Verifies tokens against the configured keys.
pub struct Verifier {
    /// token -> (identity, exp): a hit is re-checked against `exp` only,
    /// the signature, issuer, audience and nbf having passed already.
    /// Emptied when the key set changes, so a key taken out of the JWKS
    /// stops its tokens at once.
    verified: quick_cache::sync::Cache<String, (Identity, i64)>,
    /// The JWKS keys; swapped whole by [`Verifier::replace_jwks`] so a
    /// rotation needs no restart and a verification never sees half a set.
    keys: ArcSwap<Vec<VerifyKey>>,
    hs256: Option<DecodingKey>,
    rules: Rules,
    /// What `exp`, `nbf`, `iat` and the lifetime cap are judged against:
    /// the server's clock, so tests move time instead of sleeping.
    clock: crate::clock::SharedClock,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys.load().len())
            .field("hs256", &self.hs256.is_some())
            .field("rules", &self.rules)
            .finish()
    }
}

/// A key set that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

fn jwk_algorithm(jwk: &Jwk) -> Result<Algorithm, KeyError> {
    let from_params = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
        _ => return Err(KeyError("JWKS key is not RSA, EC P-256 or Ed25519".into())),
    };
    match jwk.common.key_algorithm {
        None => Ok(from_params),
        Some(KeyAlgorithm::RS256) if from_params == Algorithm::RS256 => Ok(from_params),
        Some(KeyAlgorithm::ES256) if from_params == Algorithm::ES256 => Ok(from_params),
        Some(KeyAlgorithm::EdDSA) if from_params == Algorithm::EdDSA => Ok(from_params),
        Some(other) => Err(KeyError(format!(
            "JWKS key algorithm {other:?} is not accepted (RS256, ES256, EdDSA)"
        ))),
    }
}

/// The usable keys of a JWKS; any key proctor cannot use makes the whole
/// set unusable, so a typo is noticed rather than half applied.
fn jwks_keys(jwks: &JwkSet) -> Result<Vec<VerifyKey>, KeyError> {
    jwks.keys
        .iter()
        .map(|jwk| {
            let alg = jwk_algorithm(jwk)?;
            let key = DecodingKey::from_jwk(jwk).map_err(|e| KeyError(format!("bad JWKS key: {e}")))?;
            Ok(VerifyKey {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
            })
        })
        .collect()
}

impl Verifier {
    /// Builds a verifier; at least one key source is required.
    pub fn new(jwks: Option<&JwkSet>, hs256_secret: Option<&[u8]>, rules: Rules) -> Result<Self, KeyError> {
        let keys = match jwks {
            Some(set) => jwks_keys(set)?,
            None => Vec::new(),
        };
        let hs256 = match hs256_secret {
            Some(s) if s.len() < 32 => {
                return Err(KeyError("HS256 secret must be at least 32 bytes".into()));
            }
            Some(s) => Some(DecodingKey::from_secret(s).map_err(|e| KeyError(e.to_string()))?),
            None => None,
        };
        if keys.is_empty() && hs256.is_none() {
            return Err(KeyError("no verification key configured".into()));
        }
        Ok(Self {
            verified: quick_cache::sync::Cache::new(VERIFIED_CACHE_SIZE),
            keys: ArcSwap::from_pointee(keys),
            hs256,
            rules: Rules {
                leeway_seconds: rules.leeway_seconds.min(MAX_LEEWAY_SECONDS),
                ..rules
            },
            clock: std::sync::Arc::new(crate::clock::SystemClock),
        })
    }

    /// The verifier judging token times by `clock` instead of the wall clock.
    pub fn with_clock(self, clock: crate::clock::SharedClock) -> Self {
        Self { clock, ..self }
    }

    /// Replaces the JWKS keys (a reread of the key file). A set that cannot
    /// be used, or that would leave no key at all, is refused and the
    /// current keys stay. Returns how many keys are now trusted.
    pub fn replace_jwks(&self, jwks: &JwkSet) -> Result<usize, KeyError> {
        let keys = jwks_keys(jwks)?;
        if keys.is_empty() && self.hs256.is_none() {
            return Err(KeyError("the JWKS has no key".into()));
        }
        let n = keys.len();
        self.keys.store(Arc::new(keys));
        self.verified.clear();
        Ok(n)
    }

    /// Verifies a compact JWT.
    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        let now = self.clock.now().timestamp();
        if let Some((id, exp)) = self.verified.get(token) {
            if now <= exp.saturating_add(self.rules.leeway_seconds as i64) {
                return Ok(id);
            }
            self.verified.remove(token);
        }
        let (id, exp) = self.verify_uncached(token, now)?;
        self.verified.insert(token.to_owned(), (id.clone(), exp));
        Ok(id)
    }

    fn verify_uncached(&self, token: &str, now: i64) -> Result<(Identity, i64), TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let keys = self.keys.load();
        let candidates: Vec<&DecodingKey> = match header.alg {
            Algorithm::HS256 => self.hs256.iter().collect(),
            Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA => {
                let same_alg = keys.iter().filter(|k| k.alg == header.alg);
                match &header.kid {
                    Some(kid) => {
                        let found: Vec<_> = same_alg
                            .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
                            .map(|k| &k.key)
                            .collect();
                        if found.is_empty() {
                            return Err(TokenError::UnknownKey);
                        }
                        found
                    }
                    None => same_alg.map(|k| &k.key).collect(),
                }
            }
            _ => Vec::new(),
        };
        if candidates.is_empty() {
            return Err(TokenError::AlgorithmNotAccepted);
        }
        let mut v = Validation::new(header.alg);
        v.leeway = self.rules.leeway_seconds;
        // `exp` and `nbf` are judged below against the server's clock, not
        // the library's reading of the wall clock.
        v.validate_exp = false;
        v.validate_nbf = false;
        v.required_spec_claims = ["exp".to_owned()].into();
        match &self.rules.issuer {
            Some(i) => {
                v.set_issuer(&[i]);
                v.required_spec_claims.insert("iss".into());
            }
            None => v.iss = None,
        }
        match &self.rules.audience {
            Some(a) => {
                v.set_audience(&[a]);
                v.required_spec_claims.insert("aud".into());
            }
            None => v.validate_aud = false,
        }
        let mut last = TokenError::Invalid("signature");
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(token, key, &v) {
                Ok(data) => {
                    let exp = data.claims.exp;
                    self.check_times(&data.claims, now)?;
                    self.check_lifetime(&data.claims, now)?;
                    return identity(data.claims).map(|id| (id, exp));
                }
                Err(e) => last = TokenError::Invalid(reason(e.kind())),
            }
        }
        Err(last)
    }

    /// Refuses a token past its `exp` or before its `nbf`, by the server's
    /// clock and with the leeway.
    fn check_times(&self, c: &Claims, now: i64) -> Result<(), TokenError> {
        let leeway = i64::try_from(self.rules.leeway_seconds).unwrap_or(i64::MAX);
        if c.exp < now.saturating_sub(leeway) {
            return Err(TokenError::Invalid("expired"));
        }
        if c.nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(TokenError::Invalid("not_yet_valid"));
        }
        Ok(())
    }

    /// Refuses a token whose `exp` lies further than the maximum lifetime
    /// from its `iat` or, without `iat`, from now (with the leeway).
    fn check_lifetime(&self, c: &Claims, now: i64) -> Result<(), TokenError> {
        let max = self.rules.max_lifetime_seconds;
        if max == 0 {
            return Ok(());
        }
        // An `iat` in the future would shorten the apparent lifetime of a
        // token valid for ever: count from now at the latest.
        let from = c.iat.map_or(now, |iat| iat.min(now));
        let allowed = i64::try_from(max.saturating_add(self.rules.leeway_seconds)).unwrap_or(i64::MAX);
        if c.exp.saturating_sub(from) > allowed {
            return Err(TokenError::LifetimeTooLong);
        }
        Ok(())
    }
}

fn identity(c: Claims) -> Result<Identity, TokenError> {
    let roles: Vec<Role> = c.roles.iter().filter_map(|r| Role::parse(r)).collect();
    let tenant_id = c.tenant_id.filter(|t| !t.is_empty());
    if roles.contains(&Role::Tenant) && tenant_id.is_none() {
        return Err(TokenError::TenantWithoutId);
    }
    Ok(Identity {
        sub: c.sub,
        roles,
        tenant_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{EncodingKey, Header};
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};
    use rsa::traits::PublicKeyParts;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn rules() -> Rules {
        Rules {
            issuer: Some("iss".into()),
            audience: Some("aud".into()),
            ..Rules::default()
        }
    }

    fn claims(extra: serde_json::Value) -> serde_json::Value {
        let mut c = serde_json::json!({
            "sub": "svc", "roles": ["platform"], "exp": chrono::Utc::now().timestamp() + 600,
            "iss": "iss", "aud": "aud"
        });
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    }

    struct Keys {
        rsa_private_pem: String,
        rsa_public_pem: String,
        ec_private_pem: String,
        jwks: JwkSet,
    }

    fn keys() -> Keys {
        let rsa_key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let rsa_pub = rsa_key.to_public_key();
        let ec_key = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let ec_point = ec_key.public_key().to_encoded_point(false);
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let jwks = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "r1", "alg": "RS256", "n": b64(&rsa_pub.n().to_bytes_be()), "e": b64(&rsa_pub.e().to_bytes_be())},
            {"kty": "EC", "kid": "e1", "crv": "P-256", "x": b64(ec_point.x().unwrap()), "y": b64(ec_point.y().unwrap())}
        ]});
        Keys {
            rsa_private_pem: rsa_key.to_pkcs8_pem(Default::default()).unwrap().to_string(),
            rsa_public_pem: rsa_pub.to_public_key_pem(Default::default()).unwrap(),
            ec_private_pem: ec_key.to_pkcs8_pem(Default::default()).unwrap().to_string(),
            jwks: serde_json::from_value(jwks).unwrap(),
        }
    }

    fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, c: &serde_json::Value) -> String {
        let mut h = Header::new(alg);
        h.kid = kid.map(Into::into);
        jsonwebtoken::encode(&h, c, key).unwrap()
    }

    #[test]
    fn rs256_es256_and_hs256_verify_and_attacks_fail() {
        let k = keys();
        let v = Verifier::new(Some(&k.jwks), Some(SECRET), rules()).unwrap();
        let rsa = EncodingKey::from_rsa_pem(k.rsa_private_pem.as_bytes()).unwrap();
        let ec = EncodingKey::from_ec_pem(k.ec_private_pem.as_bytes()).unwrap();
        let hs = EncodingKey::from_secret(SECRET).unwrap();
        let good = claims(serde_json::json!({}));
        assert!(v.verify(&sign(Algorithm::RS256, Some("r1"), &rsa, &good)).is_ok());
        assert!(v.verify(&sign(Algorithm::ES256, Some("e1"), &ec, &good)).is_ok());
        assert!(
            v.verify(&sign(Algorithm::ES256, None, &ec, &good)).is_ok(),
            "no kid: try same-alg keys"
        );
        assert!(v.verify(&sign(Algorithm::HS256, None, &hs, &good)).is_ok());

        // Algorithm confusion: HS256 "signed" with the RSA public key.
        let confused = EncodingKey::from_secret(k.rsa_public_pem.as_bytes()).unwrap();
        assert!(
            v.verify(&sign(Algorithm::HS256, Some("r1"), &confused, &good))
                .is_err()
        );
        // alg: none.
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(good.to_string());
        assert!(v.verify(&format!("{header}.{body}.")).is_err());
        // Unknown kid, wrong key for the kid.
        assert_eq!(
            v.verify(&sign(Algorithm::RS256, Some("r9"), &rsa, &good)),
            Err(TokenError::UnknownKey)
        );
        let other = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let other =
            EncodingKey::from_rsa_pem(other.to_pkcs8_pem(Default::default()).unwrap().as_bytes()).unwrap();
        assert!(
            v.verify(&sign(Algorithm::RS256, Some("r1"), &other, &good))
                .is_err()
        );
        // An 8 KiB garbage header.
        assert_eq!(v.verify(&"x".repeat(8192)), Err(TokenError::Malformed));
    }

    #[test]
    fn claims_are_enforced() {
        let v = Verifier::new(None, Some(SECRET), rules()).unwrap();
        let hs = EncodingKey::from_secret(SECRET).unwrap();
        let now = chrono::Utc::now().timestamp();
        let cases = [
            (
                "expired beyond leeway",
                claims(serde_json::json!({"exp": now - 31})),
            ),
            ("nbf in the future", claims(serde_json::json!({"nbf": now + 120}))),
            ("wrong iss", claims(serde_json::json!({"iss": "other"}))),
            ("wrong aud", claims(serde_json::json!({"aud": "other"}))),
            (
                "tenant without tenant_id",
                claims(serde_json::json!({"roles": ["tenant"]})),
            ),
        ];
        for (what, c) in cases {
            assert!(
                v.verify(&sign(Algorithm::HS256, None, &hs, &c)).is_err(),
                "{what}"
            );
        }
        let mut no_exp = claims(serde_json::json!({}));
        no_exp.as_object_mut().unwrap().remove("exp");
        assert!(
            v.verify(&sign(Algorithm::HS256, None, &hs, &no_exp)).is_err(),
            "missing exp"
        );
        let within_leeway = claims(serde_json::json!({"exp": now - 10}));
        assert!(
            v.verify(&sign(Algorithm::HS256, None, &hs, &within_leeway))
                .is_ok()
        );
    }

    #[test]
    fn cached_tokens_still_expire() {
        let v = Verifier::new(
            None,
            Some(SECRET),
            Rules {
                leeway_seconds: 0,
                ..Rules::default()
            },
        )
        .unwrap();
        use crate::clock::Clock;
        let clock = crate::clock::ManualClock::new(chrono::Utc::now());
        let v = v.with_clock(clock.clone());
        let hs = EncodingKey::from_secret(SECRET).unwrap();
        let t = sign(
            Algorithm::HS256,
            None,
            &hs,
            &serde_json::json!({"sub": "s", "roles": ["sre"], "exp": clock.now().timestamp() + 1}),
        );
        assert!(v.verify(&t).is_ok());
        assert!(v.verify(&t).is_ok(), "served from the cache");
        clock.advance(chrono::Duration::seconds(1));
        assert!(v.verify(&t).is_ok(), "valid through its exp second");
        clock.advance(chrono::Duration::seconds(1));
        assert!(v.verify(&t).is_err(), "the cache does not outlive exp");
    }

    #[test]
    fn key_sets_are_checked() {
        assert!(Verifier::new(None, None, Rules::default()).is_err());
        assert!(Verifier::new(None, Some(b"short"), Rules::default()).is_err());
        let hmac_jwk: JwkSet = serde_json::from_value(
            serde_json::json!({"keys": [{"kty": "oct", "k": "AAAA", "alg": "HS256"}]}),
        )
        .unwrap();
        assert!(
            Verifier::new(Some(&hmac_jwk), None, Rules::default()).is_err(),
            "no symmetric keys in JWKS"
        );
    }

    #[test]
    fn audience_may_be_an_array_holding_ours() {
        let v = Verifier::new(None, Some(SECRET), rules()).unwrap();
        let hs = EncodingKey::from_secret(SECRET).unwrap();
        let ok = claims(serde_json::json!({"aud": ["other", "aud"]}));
        assert!(v.verify(&sign(Algorithm::HS256, None, &hs, &ok)).is_ok());
        let not_ours = claims(serde_json::json!({"aud": ["other", "another"]}));
        assert_eq!(
            v.verify(&sign(Algorithm::HS256, None, &hs, &not_ours)),
            Err(TokenError::Invalid("audience"))
        );
    }

    #[test]
    fn lifetime_is_capped() {
        let v = Verifier::new(None, Some(SECRET), rules()).unwrap();
        let hs = EncodingKey::from_secret(SECRET).unwrap();
        let now = chrono::Utc::now().timestamp();
        let token = |c: serde_json::Value| sign(Algorithm::HS256, None, &hs, &claims(c));
        let day = 86_400;
        assert!(
            v.verify(&token(serde_json::json!({"iat": now, "exp": now + day})))
                .is_ok()
        );
        for (what, c) in [
            (
                "exp - iat too long",
                serde_json::json!({"iat": now, "exp": now + day + 31}),
            ),
            ("no iat, exp far away", serde_json::json!({"exp": now + 2 * day})),
            ("year 2^62", serde_json::json!({"exp": 1_i64 << 62})),
            (
                "iat in the future hides nothing",
                serde_json::json!({"iat": (1_i64 << 62) - 10, "exp": 1_i64 << 62}),
            ),
        ] {
            assert_eq!(v.verify(&token(c)), Err(TokenError::LifetimeTooLong), "{what}");
        }
    }

    #[test]
    fn reasons_carry_no_token_content() {
        let v = Verifier::new(None, Some(SECRET), rules()).unwrap();
        let hs = EncodingKey::from_secret(SECRET).unwrap();
        let odd = claims(serde_json::json!({"sub": 12345, "roles": "secret-value"}));
        let e = v.verify(&sign(Algorithm::HS256, None, &hs, &odd)).unwrap_err();
        assert_eq!(e, TokenError::Invalid("encoding"));
        assert!(!e.to_string().contains("secret-value"));
    }

    #[test]
    fn a_bad_jwks_replacement_keeps_the_keys() {
        let k = keys();
        let v = Verifier::new(Some(&k.jwks), None, rules()).unwrap();
        let ec = EncodingKey::from_ec_pem(k.ec_private_pem.as_bytes()).unwrap();
        let t = sign(Algorithm::ES256, Some("e1"), &ec, &claims(serde_json::json!({})));
        assert!(v.verify(&t).is_ok());
        let hmac_jwk: JwkSet = serde_json::from_value(
            serde_json::json!({"keys": [{"kty": "oct", "k": "AAAA", "alg": "HS256"}]}),
        )
        .unwrap();
        assert!(v.replace_jwks(&hmac_jwk).is_err());
        assert!(v.replace_jwks(&JwkSet { keys: Vec::new() }).is_err());
        assert!(v.verify(&t).is_ok(), "the last good keys stay");
        let only_rsa = JwkSet {
            keys: vec![k.jwks.keys[0].clone()],
        };
        assert_eq!(v.replace_jwks(&only_rsa).unwrap(), 1);
        assert_eq!(
            v.verify(&t),
            Err(TokenError::UnknownKey),
            "a key taken out stops its tokens, cached or not"
        );
    }
}
