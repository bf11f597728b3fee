//! Signed checkpoints of the audit log: C2SP tlog-checkpoint bodies (origin,
//! tree size, base64 root hash) in C2SP signed notes, signed with the
//! server's audit key (Ed25519). Anyone holding the verifier key can check
//! a checkpoint offline, and keep it to demand later that the log still
//! extends it. Pure: no I/O.

use std::sync::Arc;

use signed_note::{Note, StandardVerifier, VerifierList};
use tlog_tiles::{Checkpoint, Hash};

use crate::error::{Error, Result};
use crate::secrets::SubjectSecrets;

/// Signature algorithm byte of an Ed25519 note key (C2SP signed-note).
const ALG_ED25519: u8 = 0x01;

/// Signs checkpoints of one log (its origin) with the server's audit key.
#[derive(Debug, Clone)]
pub struct CheckpointSigner {
    origin: String,
    key_id: u32,
    secrets: Arc<SubjectSecrets>,
}

impl CheckpointSigner {
    /// A signer for the log named `origin`, with the audit key of `secrets`.
    pub fn new(origin: &str, secrets: Arc<SubjectSecrets>) -> Self {
        let mut key = vec![ALG_ED25519];
        key.extend_from_slice(&secrets.audit.public_key());
        Self {
            origin: origin.to_owned(),
            key_id: signed_note::key_id(origin, &key),
            secrets,
        }
    }

    /// The log's origin line.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The C2SP note verifier key (`name+hash+base64`) that checks this
    /// log's checkpoints.
    pub fn verifier_key(&self) -> Result<String> {
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&self.secrets.audit.public_key())
            .map_err(|e| Error::Unexpected(format!("audit key: {e}")))?;
        Ok(signed_note::new_ed25519_verifier_key(&self.origin, &vk))
    }

    /// The signed checkpoint text of the tree of `size` leaves with `root`.
    pub fn sign(&self, size: u64, root: Hash) -> Result<String> {
        let body = Checkpoint::new(&self.origin, size, root, "")
            .map_err(|e| Error::Unexpected(format!("checkpoint: {e}")))?
            .to_bytes();
        let mut note = Note::new(&body, &[]).map_err(|e| Error::Unexpected(format!("note: {e:?}")))?;
        note.add_sigs(&[self as &dyn signed_note::Signer])
            .map_err(|e| Error::Unexpected(format!("note signature: {e:?}")))?;
        String::from_utf8(note.to_bytes()).map_err(|_| Error::Unexpected("note is not UTF-8".into()))
    }
}

impl signed_note::Signer for CheckpointSigner {
    fn name(&self) -> &str {
        &self.origin
    }

    fn key_id(&self) -> u32 {
        self.key_id
    }

    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, ed25519_dalek::SignatureError> {
        Ok(self.secrets.audit.sign(msg))
    }
}

/// What a verified checkpoint says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Signed {
    /// Leaves in the tree.
    pub size: u64,
    /// Its root hash.
    pub root: Hash,
}

/// Opens a checkpoint `text` signed by `verifier_key` for log `origin`:
/// its size and root, or why it cannot be trusted.
pub fn open(text: &str, verifier_key: &str, origin: &str) -> std::result::Result<Signed, String> {
    let verifier = StandardVerifier::new(verifier_key).map_err(|e| format!("verifier key: {e:?}"))?;
    let note = Note::from_bytes(text.as_bytes()).map_err(|e| format!("not a signed note: {e:?}"))?;
    note.verify(&VerifierList::new(vec![Box::new(verifier)]))
        .map_err(|e| format!("signature does not verify: {e:?}"))?;
    let cp = Checkpoint::from_bytes(note.text()).map_err(|e| format!("not a checkpoint: {e}"))?;
    if cp.origin() != origin {
        return Err(format!("checkpoint of log {:?}, not {origin:?}", cp.origin()));
    }
    Ok(Signed {
        size: cp.size(),
        root: *cp.hash(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(origin: &str) -> CheckpointSigner {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config {
            data_dir: dir.path().to_path_buf(),
            ..crate::config::Config::default()
        };
        let secrets = SubjectSecrets::load(&cfg).unwrap();
        CheckpointSigner::new(origin, Arc::new(secrets))
    }

    #[test]
    fn a_signed_checkpoint_opens_with_its_key_only() {
        let s = signer("proctor/audit");
        let root = tlog_tiles::record_hash(b"leaf");
        let text = s.sign(7, root).unwrap();
        assert!(text.starts_with("proctor/audit\n7\n"), "{text}");
        assert!(text.contains("\n\n\u{2014} proctor/audit "), "{text}");
        let vkey = s.verifier_key().unwrap();
        assert_eq!(open(&text, &vkey, "proctor/audit"), Ok(Signed { size: 7, root }));
        let other = signer("proctor/audit").verifier_key().unwrap();
        assert!(open(&text, &other, "proctor/audit").is_err(), "another key");
        assert!(open(&text, &vkey, "elsewhere").is_err(), "another origin");
        let forged = text.replacen("\n7\n", "\n8\n", 1);
        assert!(open(&forged, &vkey, "proctor/audit").is_err(), "a changed size");
    }

    #[test]
    fn the_go_reference_vector_verifies() {
        // From the C2SP signed-note specification and Go's sumdb/note tests.
        let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        let text = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n\n\
                    \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
        let verifier = StandardVerifier::new(vkey).unwrap();
        let note = Note::from_bytes(text.as_bytes()).unwrap();
        assert!(note.verify(&VerifierList::new(vec![Box::new(verifier)])).is_ok());
    }
}
