//! Server secrets that protect data subjects: the AEAD key ring that
//! encrypts subject identifiers at rest (several keys so they can rotate:
//! the first encrypts, all decrypt, the key id is stored beside each
//! ciphertext), the HMAC key behind `subject_ref`, the Ed25519 key that
//! signs receipts and the one that signs audit checkpoints. Each comes from
//! a configured file. On SQLite (or with `--dev-keys`) a key not configured
//! is a development key created in the data folder, with a loud warning, as
//! for the JWT development key; on PostgreSQL, where several replicas share
//! one database and a key of one's own would make each disagree with the
//! others, every key must be configured.

pub mod reseal;
pub mod sealed;
pub mod server_keys;
pub mod server_keys_repo;

use std::io;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding};
use ed25519_dalek::{Signer as _, SigningKey};
use sha2::{Digest, Sha256};

use crate::config::{Config, is_postgres_url};
use crate::error::{Error, Result};
use crate::secrets::server_keys::KeyIds;

/// Development identifier encryption key ring (one base64 key per line).
pub const DEV_ENCRYPTION_KEY_FILE: &str = "dev-identifier-encryption.keys";
/// Development identifier hash key.
pub const DEV_HASH_KEY_FILE: &str = "dev-identifier-hash.key";
/// Development receipt signing key (PKCS#8 PEM).
pub const DEV_RECEIPT_KEY_FILE: &str = "dev-receipt-signing-key.pem";
/// Development audit checkpoint signing key (PKCS#8 PEM).
pub const DEV_AUDIT_KEY_FILE: &str = "dev-audit-signing-key.pem";

/// AEAD keys for identifiers; the first encrypts.
pub struct KeyRing {
    keys: Vec<(String, XChaCha20Poly1305)>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<_> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("KeyRing").field("key_ids", &ids).finish()
    }
}

/// A key's public id: the first 16 hex digits of SHA-256 over a label and
/// the key, so ids need no configuration and reveal nothing about the key.
pub fn key_id(key: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"proctor.key_id.v1\0");
    h.update(key);
    hex::encode(&h.finalize()[..8])
}

impl KeyRing {
    /// A ring from raw 32-byte keys, the first being the active one.
    pub fn new(keys: &[[u8; 32]]) -> Result<Self, String> {
        if keys.is_empty() {
            return Err("the identifier key ring is empty".into());
        }
        Ok(Self {
            keys: keys
                .iter()
                .map(|k| (key_id(k), XChaCha20Poly1305::new(k.into())))
                .collect(),
        })
    }

    /// Parses a key file: one key per line (base64 or hex of 32 bytes),
    /// blank lines and `#` comments ignored; the first key encrypts.
    pub fn parse(text: &str) -> Result<Self, String> {
        let keys = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .enumerate()
            .map(|(i, l)| decode_key32(l).ok_or_else(|| format!("line {}: not a 32-byte key", i + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(&keys)
    }

    /// The id of the key new ciphertexts use.
    pub fn active_id(&self) -> &str {
        &self.keys[0].0
    }

    /// Every key's id, the active one first: what the database records so
    /// replicas with another ring refuse to start.
    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(|(id, _)| id.clone()).collect()
    }

    /// Encrypts `plain` under the active key; returns (key id, base64 of
    /// nonce || ciphertext). `aad` binds the ciphertext to its row.
    pub fn seal(&self, plain: &[u8], aad: &[u8]) -> Result<(String, String)> {
        let (id, cipher) = &self.keys[0];
        let nonce_bytes: [u8; 24] = rand::random();
        let nonce = XNonce::from(nonce_bytes);
        let ct = cipher
            .encrypt(&nonce, chacha20poly1305::aead::Payload { msg: plain, aad })
            .map_err(|_| Error::Unexpected("identifier encryption failed".into()))?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&ct);
        Ok((id.clone(), STANDARD.encode(out)))
    }

    /// Decrypts what [`seal`](Self::seal) produced with the key named `id`.
    pub fn open(&self, id: &str, sealed: &str, aad: &[u8]) -> Result<Vec<u8>> {
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(k, _)| k == id)
            .ok_or_else(|| Error::Unexpected(format!("identifier key {id} is not configured")))?;
        let raw = STANDARD
            .decode(sealed)
            .map_err(|_| Error::Unexpected("corrupt identifier ciphertext".into()))?;
        if raw.len() < 24 {
            return Err(Error::Unexpected("corrupt identifier ciphertext".into()));
        }
        let (n, ct) = raw.split_at(24);
        let n: [u8; 24] = n.try_into().expect("split at 24");
        cipher
            .decrypt(&XNonce::from(n), chacha20poly1305::aead::Payload { msg: ct, aad })
            .map_err(|_| Error::Unexpected("identifier ciphertext does not authenticate".into()))
    }
}

fn decode_key32(s: &str) -> Option<[u8; 32]> {
    let raw = if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) {
        hex::decode(s).ok()?
    } else {
        STANDARD.decode(s).ok()?
    };
    raw.try_into().ok()
}

/// What an Ed25519 server key signs. Each purpose has its own key and its
/// own signer type, so a receipt key can never be handed to what signs
/// audit checkpoints, or the other way round.
pub trait SigningPurpose {
    /// Name in debug output.
    const NAME: &'static str;
}

/// Receipts and deletion certificates ([`ReceiptSigner`]).
#[derive(Debug)]
pub enum Receipts {}
impl SigningPurpose for Receipts {
    const NAME: &'static str = "ReceiptSigner";
}

/// Audit log checkpoints ([`AuditSigner`]).
#[derive(Debug)]
pub enum AuditCheckpoints {}
impl SigningPurpose for AuditCheckpoints {
    const NAME: &'static str = "AuditSigner";
}

/// An Ed25519 key of one purpose, with its public id.
pub struct Signer<P: SigningPurpose> {
    key: SigningKey,
    key_id: String,
    purpose: PhantomData<fn() -> P>,
}

/// Signs receipts and deletion certificates.
pub type ReceiptSigner = Signer<Receipts>;
/// Signs audit log checkpoints.
pub type AuditSigner = Signer<AuditCheckpoints>;

impl<P: SigningPurpose> std::fmt::Debug for Signer<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(P::NAME).field("key_id", &self.key_id).finish()
    }
}

impl<P: SigningPurpose> Signer<P> {
    /// A signer over `key`.
    pub fn new(key: SigningKey) -> Self {
        let key_id = key_id(key.verifying_key().as_bytes());
        Self {
            key,
            key_id,
            purpose: PhantomData,
        }
    }

    /// Parses a PKCS#8 PEM Ed25519 private key.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        SigningKey::from_pkcs8_pem(pem)
            .map(Self::new)
            .map_err(|e| format!("not an Ed25519 PKCS#8 PEM key: {e}"))
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.key.sign(msg).to_bytes().to_vec()
    }

    /// The key's public id (receipts carry it; the database records it).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The raw public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The public key as SubjectPublicKeyInfo PEM (what `openssl pkeyutl
    /// -verify` takes).
    pub fn public_key_pem(&self) -> String {
        self.key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }
}

/// The server's secrets: what protects identifiers and signs receipts and
/// audit checkpoints.
#[derive(Debug)]
pub struct SubjectSecrets {
    /// Encrypts identifiers at rest.
    pub ring: KeyRing,
    /// Keys `subject_ref` and request digests. Rotating it changes every
    /// ref, so it is one key, not a ring.
    pub hash_key: Vec<u8>,
    /// Signs receipts.
    pub receipt: ReceiptSigner,
    /// Signs audit checkpoints.
    pub audit: AuditSigner,
}

/// Every server secret's setting: its flag, its environment variable and
/// whether `config` sets it.
fn secret_settings(config: &Config) -> [(&'static str, &'static str, bool); 4] {
    [
        (
            "--identifier-encryption-key-file",
            "PROCTOR_IDENTIFIER_ENCRYPTION_KEY_FILE",
            config.identifier_encryption_key_file.is_some(),
        ),
        (
            "--identifier-hash-key-file",
            "PROCTOR_IDENTIFIER_HASH_KEY_FILE",
            config.identifier_hash_key_file.is_some(),
        ),
        (
            "--receipt-signing-key-file",
            "PROCTOR_RECEIPT_SIGNING_KEY_FILE",
            config.receipt_signing_key_file.is_some(),
        ),
        (
            "--audit-signing-key-file",
            "PROCTOR_AUDIT_SIGNING_KEY_FILE",
            config.audit_signing_key_file.is_some(),
        ),
    ]
}

/// Refuses a configuration that would make development keys on
/// PostgreSQL without `--dev-keys`: there several replicas share the
/// database, and each would create keys of its own. The message names
/// every missing setting.
pub fn require_configured(config: &Config) -> Result<(), String> {
    if !is_postgres_url(&config.database_url) || config.dev_keys {
        return Ok(());
    }
    let missing: Vec<String> = secret_settings(config)
        .into_iter()
        .filter(|(_, _, set)| !set)
        .map(|(flag, env, _)| format!("{flag} ({env})"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "on PostgreSQL every server secret must be configured, so that all replicas use the same \
         keys; missing: {}. For a single development replica, --dev-keys (PROCTOR_DEV_KEYS) uses \
         development keys in the data folder instead (docs/OPERATIONS.md, \"Secrets for several replicas\")",
        missing.join(", ")
    ))
}

impl SubjectSecrets {
    /// Loads the configured files, creating development keys in the data
    /// folder for any that is not configured where that is allowed
    /// ([`require_configured`]).
    pub fn load(config: &Config) -> Result<Self, String> {
        require_configured(config)?;
        if is_postgres_url(&config.database_url) && secret_settings(config).iter().any(|s| !s.2) {
            tracing::warn!(
                "--dev-keys on PostgreSQL: development keys from the data folder. Run ONE replica \
                 only: another one would need the same files, and production needs configured keys."
            );
        }
        let dir = &config.data_dir;
        let ring_text = read_or_dev(
            config.identifier_encryption_key_file.as_deref(),
            dir,
            DEV_ENCRYPTION_KEY_FILE,
            "identifier encryption",
            || format!("{}\n", STANDARD.encode(rand::random::<[u8; 32]>())),
        )?;
        let ring = KeyRing::parse(&ring_text)?;
        let hash_text = read_or_dev(
            config.identifier_hash_key_file.as_deref(),
            dir,
            DEV_HASH_KEY_FILE,
            "identifier hash",
            || format!("{}\n", STANDARD.encode(rand::random::<[u8; 32]>())),
        )?;
        let hash_key = parse_hash_key(&hash_text)?;
        let pem = read_or_dev(
            config.receipt_signing_key_file.as_deref(),
            dir,
            DEV_RECEIPT_KEY_FILE,
            "receipt signing",
            dev_signing_pem,
        )?;
        let receipt = ReceiptSigner::from_pem(&pem).map_err(|e| format!("receipt signing key: {e}"))?;
        let pem = read_or_dev(
            config.audit_signing_key_file.as_deref(),
            dir,
            DEV_AUDIT_KEY_FILE,
            "audit signing",
            dev_signing_pem,
        )?;
        let audit = AuditSigner::from_pem(&pem).map_err(|e| format!("audit signing key: {e}"))?;
        Ok(Self {
            ring,
            hash_key,
            receipt,
            audit,
        })
    }

    /// The ids of every key, as the database records them (fingerprints,
    /// never the keys).
    pub fn key_ids(&self) -> KeyIds {
        KeyIds {
            ring: self.ring.ids(),
            hash: key_id(&self.hash_key),
            receipt: self.receipt.key_id().to_owned(),
            audit: self.audit.key_id().to_owned(),
        }
    }
}

/// A fresh Ed25519 key as PKCS#8 PEM, for a development key file.
fn dev_signing_pem() -> String {
    SigningKey::from_bytes(&rand::random::<[u8; 32]>())
        .to_pkcs8_pem(LineEnding::LF)
        .map(|p| p.to_string())
        .unwrap_or_default()
}

/// Parses the hash key file: the first non-comment line, base64 or hex, at
/// least 32 bytes.
pub fn parse_hash_key(text: &str) -> Result<Vec<u8>, String> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or("the identifier hash key file is empty")?;
    let raw = if line.chars().all(|c| c.is_ascii_hexdigit()) && line.len() % 2 == 0 {
        hex::decode(line).map_err(|e| e.to_string())?
    } else {
        STANDARD
            .decode(line)
            .map_err(|_| "the identifier hash key is not base64 or hex")?
    };
    if raw.len() < 32 {
        return Err("the identifier hash key must be at least 32 bytes".into());
    }
    Ok(raw)
}

fn read_or_dev(
    configured: Option<&Path>,
    dir: &Path,
    dev_name: &str,
    what: &str,
    make: impl FnOnce() -> String,
) -> Result<String, String> {
    if let Some(p) = configured {
        return std::fs::read_to_string(p)
            .map_err(|e| format!("cannot read {what} key {}: {e}", p.display()));
    }
    let path: PathBuf = dir.join(dev_name);
    if !path.exists() {
        crate::private_fs::create_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        write_private(&path, make().as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    tracing::warn!(
        file = %path.display(),
        "NO {} KEY CONFIGURED: using a DEVELOPMENT key from the data folder. \
         Never run like this in production.",
        what.to_uppercase()
    );
    std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(data)
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};

    #[test]
    fn ring_rotates_old_keys_still_open() {
        let old = [1u8; 32];
        let new = [2u8; 32];
        let r1 = KeyRing::new(&[old]).unwrap();
        let (id, sealed) = r1.seal(b"ada@example.com", b"row-1").unwrap();
        assert!(!sealed.contains("ada"));
        let text = format!("# rotated\n{}\n{}\n", hex::encode(new), STANDARD.encode(old));
        let r2 = KeyRing::parse(&text).unwrap();
        assert_ne!(r2.active_id(), id);
        assert_eq!(r2.open(&id, &sealed, b"row-1").unwrap(), b"ada@example.com");
        assert!(r2.open(&id, &sealed, b"row-2").is_err(), "bound to its row");
        let only_new = KeyRing::new(&[new]).unwrap();
        assert!(only_new.open(&id, &sealed, b"row-1").is_err());
        assert!(KeyRing::parse("short").is_err());
    }

    #[test]
    fn dev_keys_are_created_once_and_receipts_verify() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let a = SubjectSecrets::load(&cfg).unwrap();
        let b = SubjectSecrets::load(&cfg).unwrap();
        assert_eq!(a.hash_key, b.hash_key);
        assert_eq!(a.ring.active_id(), b.ring.active_id());
        assert_eq!(a.receipt.key_id(), b.receipt.key_id());
        let sig = a.receipt.sign(b"msg");
        let vk = VerifyingKey::from_bytes(&b.receipt.public_key()).unwrap();
        vk.verify(b"msg", &Signature::from_slice(&sig).unwrap()).unwrap();
        assert!(a.receipt.public_key_pem().contains("PUBLIC KEY"));
    }

    #[test]
    fn postgres_needs_every_key_unless_dev_keys() {
        let dir = tempfile::tempdir().unwrap();
        let pg = Config {
            database_url: "postgres://db/proctor".into(),
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let err = SubjectSecrets::load(&pg).unwrap_err();
        for flag in [
            "--identifier-encryption-key-file",
            "--identifier-hash-key-file",
            "--receipt-signing-key-file",
            "--audit-signing-key-file",
        ] {
            assert!(err.contains(flag), "{flag}: {err}");
        }
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "nothing created"
        );
        let audit = dir.path().join("audit.pem");
        std::fs::write(&audit, dev_signing_pem()).unwrap();
        let partly = Config {
            audit_signing_key_file: Some(audit),
            ..pg.clone()
        };
        let err = SubjectSecrets::load(&partly).unwrap_err();
        assert!(!err.contains("--audit-signing-key-file"), "{err}");
        let dev = Config { dev_keys: true, ..pg };
        let s = SubjectSecrets::load(&dev).unwrap();
        assert_ne!(s.audit.key_id(), s.receipt.key_id(), "two keys, not one");
        assert!(dir.path().join(DEV_AUDIT_KEY_FILE).exists());
        let ids = s.key_ids();
        assert_eq!(ids.ring, [s.ring.active_id()]);
        assert_eq!(ids.hash, key_id(&s.hash_key));
        assert!(
            !ids.hash.contains(&hex::encode(&s.hash_key[..8])),
            "an id, not the key"
        );
    }

    #[test]
    fn hash_key_must_be_long_enough() {
        assert!(parse_hash_key(&STANDARD.encode([0u8; 16])).is_err());
        assert_eq!(parse_hash_key(&hex::encode([7u8; 32])).unwrap(), vec![7u8; 32]);
    }
}
