//! Which certificate authorities outbound TLS trusts: the system's, plus
//! those of `--outbound-ca-file` (a proxy that inspects TLS, a mirror of
//! the lists signed by an internal CA, a test CA). It is loaded once at
//! start and shared by every outbound client, so webhooks and list
//! downloads verify servers the same way and a bad file stops the start
//! instead of failing every call later.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// The verified-TLS side of outbound calls: the trusted roots, with ring's
/// cryptography (the one provider the server uses) and HTTP/1.1 offered
/// in ALPN (the only protocol the clients speak).
#[derive(Clone)]
pub struct Trust {
    connector: TlsConnector,
    roots: usize,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust").field("roots", &self.roots).finish()
    }
}

impl Trust {
    /// The system's CA certificates and every certificate of
    /// `extra_ca_file` (PEM), which must hold at least one: a file that
    /// adds nothing is a mistake the operator should hear about at start.
    pub fn load(extra_ca_file: Option<&Path>) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(path) = extra_ca_file {
            let named = |e: String| format!("--outbound-ca-file {}: {e}", path.display());
            let pem = std::fs::read(path).map_err(|e| named(e.to_string()))?;
            add_pem(&mut roots, &pem).map_err(named)?;
        }
        if roots.is_empty() {
            tracing::warn!(
                "no CA certificates found (system or --outbound-ca-file): https webhooks and list downloads will fail to verify"
            );
        }
        Ok(Self::from_roots(roots))
    }

    fn from_roots(roots: RootCertStore) -> Self {
        let count = roots.len();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self {
            connector: TlsConnector::from(Arc::new(config)),
            roots: count,
        }
    }

    /// The connector that verifies servers against these roots.
    pub(crate) fn connector(&self) -> &TlsConnector {
        &self.connector
    }
}

/// Adds every `CERTIFICATE` block of `pem` as a root; other blocks (a key
/// kept in the same file) are skipped. Returns how many were added.
fn add_pem(roots: &mut RootCertStore, pem: &[u8]) -> Result<usize, String> {
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("cannot read the PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("not a usable CA certificate: {e}"))?;
        added += 1;
    }
    if added == 0 {
        return Err("holds no CERTIFICATE block".into());
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem() -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn a_ca_file_adds_each_of_its_certificates() {
        let mut roots = RootCertStore::empty();
        let two = format!("{}{}", ca_pem(), ca_pem());
        assert_eq!(add_pem(&mut roots, two.as_bytes()), Ok(2));
        assert_eq!(roots.len(), 2);
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let mut roots = RootCertStore::empty();
        let key_only = rcgen::KeyPair::generate().unwrap().serialize_pem();
        for bad in ["", "not pem at all", key_only.as_str()] {
            assert!(add_pem(&mut roots, bad.as_bytes()).is_err(), "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.pem");
        let e = Trust::load(Some(&missing)).unwrap_err();
        assert!(e.contains("--outbound-ca-file"), "{e}");
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, ca_pem()).unwrap();
        let system = Trust::load(None).unwrap().roots;
        assert_eq!(Trust::load(Some(&file)).unwrap().roots, system + 1);
    }
}
