//! Bearer-token verification. Keys come from a JSON Web Key Set (RS256,
//! ES256, EdDSA) and, only when explicitly configured for development, an
//! HS256 secret. The algorithm a token names must match the family of the key
//! it is checked with, so an HS256 token "signed" with a public key, or
//! `alg: none`, can never pass.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use super::Role;

/// Most clock skew tolerated on `exp` and `nbf`.
pub const MAX_LEEWAY_SECONDS: u64 = 30;

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
    /// Audience, checked when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
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
    /// audience, missing `exp`...).
    #[error("invalid token: {0}")]
    Invalid(String),
    /// A `tenant` token without a `tenant_id` claim.
    #[error("tenant token without tenant_id")]
    TenantWithoutId,
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
        }
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
    verified: quick_cache::sync::Cache<String, (Identity, i64)>,
    keys: Vec<VerifyKey>,
    hs256: Option<DecodingKey>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys.len())
            .field("hs256", &self.hs256.is_some())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
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

impl Verifier {
    /// Builds a verifier; at least one key source is required.
    pub fn new(
        jwks: Option<&JwkSet>,
        hs256_secret: Option<&[u8]>,
        issuer: Option<String>,
        audience: Option<String>,
        leeway_seconds: u64,
    ) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for jwk in jwks.map(|s| s.keys.as_slice()).unwrap_or_default() {
            let alg = jwk_algorithm(jwk)?;
            let key = DecodingKey::from_jwk(jwk).map_err(|e| KeyError(format!("bad JWKS key: {e}")))?;
            keys.push(VerifyKey {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
            });
        }
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
            keys,
            hs256,
            issuer,
            audience,
            leeway: leeway_seconds.min(MAX_LEEWAY_SECONDS),
        })
    }

    /// Verifies a compact JWT.
    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        let now = chrono::Utc::now().timestamp();
        if let Some((id, exp)) = self.verified.get(token) {
            if now <= exp.saturating_add(self.leeway as i64) {
                return Ok(id);
            }
            self.verified.remove(token);
        }
        let (id, exp) = self.verify_uncached(token)?;
        self.verified.insert(token.to_owned(), (id.clone(), exp));
        Ok(id)
    }

    fn verify_uncached(&self, token: &str) -> Result<(Identity, i64), TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let candidates: Vec<&DecodingKey> = match header.alg {
            Algorithm::HS256 => self.hs256.iter().collect(),
            Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA => {
                let same_alg = self.keys.iter().filter(|k| k.alg == header.alg);
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
        v.leeway = self.leeway;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.required_spec_claims = ["exp".to_owned()].into();
        match &self.issuer {
            Some(i) => {
                v.set_issuer(&[i]);
                v.required_spec_claims.insert("iss".into());
            }
            None => v.iss = None,
        }
        match &self.audience {
            Some(a) => {
                v.set_audience(&[a]);
                v.required_spec_claims.insert("aud".into());
            }
            None => v.validate_aud = false,
        }
        let mut last = TokenError::Invalid("signature".into());
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(token, key, &v) {
                Ok(data) => {
                    let exp = data.claims.exp;
                    return identity(data.claims).map(|id| (id, exp));
                }
                Err(e) => last = TokenError::Invalid(format!("{:?}", e.kind())),
            }
        }
        Err(last)
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
        let v = Verifier::new(
            Some(&k.jwks),
            Some(SECRET),
            Some("iss".into()),
            Some("aud".into()),
            30,
        )
        .unwrap();
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
        let v = Verifier::new(None, Some(SECRET), Some("iss".into()), Some("aud".into()), 30).unwrap();
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
        let v = Verifier::new(None, Some(SECRET), None, None, 0).unwrap();
        let hs = EncodingKey::from_secret(SECRET).unwrap();
        let t = sign(
            Algorithm::HS256,
            None,
            &hs,
            &serde_json::json!({"sub": "s", "roles": ["sre"], "exp": chrono::Utc::now().timestamp() + 1}),
        );
        assert!(v.verify(&t).is_ok());
        assert!(v.verify(&t).is_ok(), "served from the cache");
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert!(v.verify(&t).is_err(), "the cache does not outlive exp");
    }

    #[test]
    fn key_sets_are_checked() {
        assert!(Verifier::new(None, None, None, None, 30).is_err());
        assert!(Verifier::new(None, Some(b"short"), None, None, 30).is_err());
        let hmac_jwk: JwkSet = serde_json::from_value(
            serde_json::json!({"keys": [{"kty": "oct", "k": "AAAA", "alg": "HS256"}]}),
        )
        .unwrap();
        assert!(
            Verifier::new(Some(&hmac_jwk), None, None, None, 30).is_err(),
            "no symmetric keys in JWKS"
        );
    }
}
