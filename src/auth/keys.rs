//! Development keys: with no key configured, `serve` creates an Ed25519
//! signing key and a matching JWKS in its data folder, and `proctor token
//! mint` signs tokens with that key, so a newcomer can call the service with
//! no setup. Production configures a JWKS of its identity provider instead.

use std::io;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{EncodePrivateKey, spki::der::pem::LineEnding};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use super::jwt::Claims;

/// File holding the development private key (PKCS#8 PEM, mode 0600).
pub const DEV_KEY_FILE: &str = "dev-signing-key.pem";
/// File holding the matching public JWKS.
pub const DEV_JWKS_FILE: &str = "dev-jwks.json";
/// `kid` of the development key.
pub const DEV_KID: &str = "proctor-dev";

/// Paths of the development key pair.
#[derive(Debug, Clone)]
pub struct DevKeyPaths {
    /// Private key.
    pub key: PathBuf,
    /// Public JWKS.
    pub jwks: PathBuf,
}

impl DevKeyPaths {
    /// Where the development key lives under `data_dir`.
    pub fn in_dir(data_dir: &Path) -> Self {
        Self {
            key: data_dir.join(DEV_KEY_FILE),
            jwks: data_dir.join(DEV_JWKS_FILE),
        }
    }
}

/// Creates the development key pair unless it exists; returns its paths and
/// whether it was created now.
pub fn ensure_dev_key(data_dir: &Path) -> io::Result<(DevKeyPaths, bool)> {
    let paths = DevKeyPaths::in_dir(data_dir);
    if paths.key.exists() && paths.jwks.exists() {
        return Ok((paths, false));
    }
    crate::private_fs::create_dir(data_dir)?;
    let signing = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let pem = signing
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| io::Error::other(format!("encode key: {e}")))?;
    write_private(&paths.key, pem.as_bytes())?;
    std::fs::write(&paths.jwks, jwks_json(&signing))?;
    Ok((paths, true))
}

/// The JWKS publishing `signing`'s public half.
pub fn jwks_json(signing: &SigningKey) -> String {
    let x = URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes());
    serde_json::json!({
        "keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": DEV_KID, "alg": "EdDSA", "use": "sig"}]
    })
    .to_string()
}

fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(data)
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, data)
    }
}

/// Signs `claims` with the development key at `key_path`.
pub fn mint_with_dev_key(key_path: &Path, claims: &Claims) -> Result<String, String> {
    let pem = std::fs::read(key_path).map_err(|e| {
        format!(
            "cannot read development key {}: {e} (start `proctor serve` once to create it)",
            key_path.display()
        )
    })?;
    let key = EncodingKey::from_ed_pem(&pem).map_err(|e| format!("bad development key: {e}"))?;
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(DEV_KID.to_owned());
    jsonwebtoken::encode(&header, claims, &key).map_err(|e| format!("cannot sign: {e}"))
}

/// Signs `claims` with an HS256 development secret.
pub fn mint_with_secret(secret: &[u8], claims: &Claims) -> Result<String, String> {
    let key = EncodingKey::from_secret(secret).map_err(|e| e.to_string())?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::Verifier;

    #[test]
    fn dev_key_mints_tokens_the_dev_jwks_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let (paths, created) = ensure_dev_key(dir.path()).unwrap();
        assert!(created);
        assert!(
            !ensure_dev_key(dir.path()).unwrap().1,
            "second call reuses the key"
        );
        let jwks: jsonwebtoken::jwk::JwkSet =
            serde_json::from_str(&std::fs::read_to_string(&paths.jwks).unwrap()).unwrap();
        let v = Verifier::new(Some(&jwks), None, crate::auth::jwt::Rules::default()).unwrap();
        let claims = Claims {
            sub: "crm".into(),
            roles: vec!["platform".into()],
            tenant_id: None,
            exp: chrono::Utc::now().timestamp() + 60,
            nbf: None,
            iat: None,
            iss: None,
            aud: None,
        };
        let token = mint_with_dev_key(&paths.key, &claims).unwrap();
        let id = v.verify(&token).unwrap();
        assert_eq!(id.sub, "crm");
        assert_eq!(id.roles, vec![crate::auth::Role::Platform]);
    }
}
