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

/// Verifies tokens against the configured keys.
pub struct Verifier {
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
            keys,
            hs256,
            issuer,
            audience,
            leeway: leeway_seconds.min(MAX_LEEWAY_SECONDS),
        })
    }

    /// Verifies a compact JWT.
    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
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
                Ok(data) => return identity(data.claims),
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
