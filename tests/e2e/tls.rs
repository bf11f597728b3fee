//! gRPC over TLS (`--tls-cert`/`--tls-key`) and mutual TLS
//! (`--tls-client-ca`), with real certificates generated in the test by a
//! throw-away CA: the right client gets through, a plaintext client, a
//! client trusting another CA, a client without a certificate and a client
//! with a certificate from another CA do not.

use std::path::PathBuf;

use proctor::app::Application;
use proctor::proto::v1::PullRequest;
use proctor::proto::v1::inbox_service_client::InboxServiceClient;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use tokio::sync::oneshot;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::support::{Backend, TestDb, TestKeys, authed, test_config};

/// A CA able to sign leaf certificates (also the test CA of the list
/// downloads' HTTPS server).
pub(crate) struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate and its key, PEM.
pub(crate) struct Leaf {
    pub(crate) cert: String,
    pub(crate) key: String,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Self {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    pub(crate) fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub(crate) fn leaf(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// A TLS server; dropping the sender stops it.
struct TlsServer {
    port: u16,
    _stop: oneshot::Sender<()>,
    _db: TestDb,
    keys: TestKeys,
}

async fn serve(server: &Leaf, client_ca: Option<&Ca>) -> TlsServer {
    let db = TestDb::new(Backend::Sqlite);
    let keys = TestKeys::new();
    let write = |name: &str, text: &str| -> PathBuf {
        let p = keys.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let mut cfg = test_config(&db, &keys);
    cfg.tls_cert = Some(write("server.pem", &server.cert));
    cfg.tls_key = Some(write("server.key", &server.key));
    cfg.tls_client_ca = client_ca.map(|ca| write("client-ca.pem", &ca.pem()));
    let app = Application::build(cfg, proctor::clock::ManualClock::new(crate::support::t0()))
        .await
        .unwrap();
    let port = app.local_addr().port();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        app.run_until(async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    TlsServer {
        port,
        _stop: tx,
        _db: db,
        keys,
    }
}

/// Connects with `trust` as the only root and an optional client identity,
/// and asks health; the error text when the connection or call fails.
async fn health(port: u16, trust: Option<&Ca>, identity: Option<&Leaf>) -> Result<(), String> {
    let scheme = if trust.is_some() { "https" } else { "http" };
    let mut ep = Channel::from_shared(format!("{scheme}://localhost:{port}")).unwrap();
    if let Some(ca) = trust {
        let mut tls = ClientTlsConfig::new()
            .domain_name("localhost")
            .ca_certificate(Certificate::from_pem(ca.pem()));
        if let Some(id) = identity {
            tls = tls.identity(Identity::from_pem(&id.cert, &id.key));
        }
        ep = ep.tls_config(tls).unwrap();
    }
    let channel = ep.connect().await.map_err(|e| format!("connect: {e:?}"))?;
    let mut h = HealthClient::new(channel);
    // The server starts NOT_SERVING until its first health round; any answer
    // proves the TLS session works.
    h.check(HealthCheckRequest {
        service: "liveness".into(),
    })
    .await
    .map(|_| ())
    .map_err(|e| format!("call: {e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_only_tls_clients_that_trust_the_ca() {
    let ca = Ca::new("proctor test CA");
    let other = Ca::new("somebody else");
    let server = serve(&ca.leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth), None).await;

    health(server.port, Some(&ca), None)
        .await
        .expect("TLS client trusting the CA");
    assert!(
        health(server.port, None, None).await.is_err(),
        "a plaintext client must not get an answer from a TLS server"
    );
    assert!(
        health(server.port, Some(&other), None).await.is_err(),
        "a client trusting another CA must refuse the server certificate"
    );

    // Authentication still applies on top of TLS.
    let channel = Channel::from_shared(format!("https://localhost:{}", server.port))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .domain_name("localhost")
                .ca_certificate(Certificate::from_pem(ca.pem())),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut inbox = InboxServiceClient::new(channel);
    inbox
        .pull(authed(PullRequest::default(), &server.keys.tenant("t1")))
        .await
        .expect("an authenticated call over TLS");
    let e = inbox
        .pull(tonic::Request::new(PullRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_requires_a_client_certificate_from_the_client_ca() {
    let server_ca = Ca::new("proctor server CA");
    let client_ca = Ca::new("platform client CA");
    let rogue_ca = Ca::new("rogue CA");
    let server = serve(
        &server_ca.leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth),
        Some(&client_ca),
    )
    .await;
    let good = client_ca.leaf("crm", ExtendedKeyUsagePurpose::ClientAuth);
    let rogue = rogue_ca.leaf("crm", ExtendedKeyUsagePurpose::ClientAuth);

    health(server.port, Some(&server_ca), Some(&good))
        .await
        .expect("client with a certificate from the client CA");
    assert!(
        health(server.port, Some(&server_ca), None).await.is_err(),
        "a client without a certificate must be refused"
    );
    assert!(
        health(server.port, Some(&server_ca), Some(&rogue)).await.is_err(),
        "a client certificate from another CA must be refused"
    );
}
