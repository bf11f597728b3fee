//! Lists that refresh themselves (`--list-url`): a real HTTPS server on a
//! local port, its certificate issued by a test CA the server is told to
//! trust (`--outbound-ca-file`), serves list files; the server downloads
//! them at start and every `--list-refresh-seconds` on its clock,
//! conditionally (a 304 imports nothing), keeps the last good version when
//! a download is truncated, refused (a certificate from another CA, a
//! redirect to plain HTTP or onto a private address the server was not
//! allowed to reach), accepts a configured plain-HTTP loopback URL (operator
//! configuration), imports nothing for unchanged bytes, and imports and
//! re-screens when the file changes. One replica at a time holds a
//! source's lease.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proctor::clock::Clock;
use proctor::config::Config;
use proctor::proto::v1::{Outcome, Party, PartyType, ScreenRequest, ScreenResponse};
use proctor::screening::repo as st;
use rcgen::ExtendedKeyUsagePurpose;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::on_both_backends;
use crate::screening::{client, fixture};
use crate::support::{Backend, TestApp, TestDb, TestKeys, authed, spawn_with, test_config};
use crate::tls::{Ca, Leaf};

/// What the test server serves, and what it was asked.
pub(crate) struct Served {
    body: Vec<u8>,
    etag: String,
    /// Send the headers of the whole body but only half of it, then close.
    truncate: bool,
    /// Where a request for `/redirect/NAME` is sent (302) : this prefix
    /// followed by NAME.
    redirect_to: String,
    /// The path and If-None-Match ("" when none) of every request.
    asked: Vec<(String, String)>,
    /// The certificate the next connections are served with; none: plain
    /// HTTP.
    tls: Option<Arc<ServerConfig>>,
}

impl Served {
    pub(crate) fn new(body: Vec<u8>, etag: &str, leaf: &Leaf) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Self {
            body,
            etag: etag.into(),
            truncate: false,
            redirect_to: "/files/".into(),
            asked: Vec::new(),
            tls: Some(server_tls(leaf)),
        }))
    }
}

/// A TLS server configuration presenting `leaf`.
fn server_tls(leaf: &Leaf) -> Arc<ServerConfig> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let cert = CertificateDer::from_pem_slice(leaf.cert.as_bytes()).unwrap();
    let key = PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap();
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    Arc::new(config)
}

/// The test CA and the certificate it issues for `localhost`.
pub(crate) fn test_ca() -> (Ca, Leaf) {
    let ca = Ca::new("proctor list test CA");
    let leaf = ca.leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth);
    (ca, leaf)
}

/// A configuration downloading `list_url` from the test server: the test
/// CA trusted, loopback allowed (the server is on it), plain HTTP not.
fn config(db: &TestDb, keys: &TestKeys, ca: &Ca, list_url: String) -> Config {
    let ca_file: PathBuf = keys.dir.path().join("outbound-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    Config {
        list_url: vec![list_url],
        list_refresh_seconds: 3600,
        list_allow_private: true,
        outbound_ca_file: Some(ca_file),
        ..test_config(db, keys)
    }
}

/// A minimal HTTPS server (HTTP/1.1, one request per connection).
pub(crate) async fn serve(state: Arc<Mutex<Served>>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let tls = state.lock().unwrap().tls.clone();
                match tls {
                    // A client that refuses the certificate ends here.
                    Some(tls) => {
                        if let Ok(stream) = TlsAcceptor::from(tls).accept(sock).await {
                            answer(stream, &state).await;
                        }
                    }
                    None => answer(sock, &state).await,
                }
            });
        }
    });
    addr
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut sock: S, state: &Mutex<Served>) {
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&req).to_lowercase();
    let path = text.split(' ').nth(1).unwrap_or_default().to_owned();
    let inm = text
        .lines()
        .find_map(|l| l.strip_prefix("if-none-match:"))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default();
    let (head, body) = {
        let mut s = state.lock().unwrap();
        s.asked.push((path.clone(), inm.clone()));
        if let Some(name) = path.strip_prefix("/redirect/") {
            (
                format!(
                    "HTTP/1.1 302 Found\r\nLocation: {}{name}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    s.redirect_to
                ),
                Vec::new(),
            )
        } else if !inm.is_empty() && inm == s.etag.to_lowercase() {
            (
                format!(
                    "HTTP/1.1 304 Not Modified\r\nETag: {}\r\nConnection: close\r\n\r\n",
                    s.etag
                ),
                Vec::new(),
            )
        } else {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nETag: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                s.etag,
                s.body.len()
            );
            let body = if s.truncate {
                s.body[..s.body.len() / 2].to_vec()
            } else {
                s.body.clone()
            };
            (head, body)
        }
    };
    let _ = sock.write_all(head.as_bytes()).await;
    let _ = sock.write_all(&body).await;
    let _ = sock.shutdown().await;
}

fn row(ent: u32, name: &str) -> String {
    format!("{ent},\"{name}\",-0- ,\"IRAN\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- \n")
}

async fn screen(app: &TestApp, name: &str, party_ref: &str) -> ScreenResponse {
    let req = ScreenRequest {
        party: Some(Party {
            name: name.into(),
            r#type: PartyType::Organization as i32,
            ..Default::default()
        }),
        party_ref: party_ref.into(),
        ..Default::default()
    };
    client(app)
        .screen(authed(req, &app.keys.platform("crm")))
        .await
        .unwrap()
        .into_inner()
}

/// Waits until the refresh of `source` has finished a round at the clock's
/// present time, and returns how it ended.
async fn refreshed(app: &TestApp, source: &str) -> String {
    let now = app.clock.now().timestamp_micros();
    for _ in 0..600 {
        let s = source.to_owned();
        let last = app
            .store
            .read("test.last_fetch", move |c, _| st::last_fetch(c, &s))
            .await
            .unwrap();
        if let Some((outcome, Some(at))) = last
            && at >= now
            && !outcome.is_empty()
        {
            // Let the round finish swapping the index in.
            tokio::time::sleep(Duration::from_millis(200)).await;
            return outcome;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the list refresh of {source} did not finish a round");
}

async fn versions(app: &TestApp) -> Vec<(String, i64)> {
    app.store
        .read("test.versions", |c, _| st::latest_versions(c))
        .await
        .unwrap()
}

async fn lists_download_and_refresh_themselves(b: Backend) {
    let (ca, leaf) = test_ca();
    let served = Served::new(row(1, "NORTHWIND TRADING").into_bytes(), "\"v1\"", &leaf);
    let addr = serve(served.clone()).await;
    let db = TestDb::new(b);
    let keys = TestKeys::new();
    let url = format!("ofac_sdn=https://localhost:{}/lists/sdn.csv", addr.port());
    let cfg = config(&db, &keys, &ca, url);
    let app = spawn_with(db, keys, cfg).await;

    // At start: downloaded, imported, screened against.
    assert_eq!(refreshed(&app, "ofac_sdn").await, "imported version 1");
    let hit = screen(&app, "Northwind Trading", "").await;
    assert_eq!(hit.outcome, Outcome::PossibleMatch as i32, "{hit:?}");
    let party_ref = "tenants/t1/suppliers/4";
    assert_eq!(
        screen(&app, "Eastwind Logistics", party_ref).await.outcome,
        Outcome::Clear as i32
    );

    // Next round: a conditional GET, answered 304, imports nothing.
    app.clock.advance_settled(chrono::Duration::seconds(3600)).await;
    assert_eq!(refreshed(&app, "ofac_sdn").await, "not modified");
    assert_eq!(served.lock().unwrap().asked.last().unwrap().1, "\"v1\"");
    let before = versions(&app).await;

    // A truncated download keeps the last good version.
    {
        let mut s = served.lock().unwrap();
        s.body = [row(1, "NORTHWIND TRADING"), row(2, "EASTWIND LOGISTICS")]
            .concat()
            .into_bytes();
        s.etag = "\"v2\"".into();
        s.truncate = true;
    }
    app.clock.advance_settled(chrono::Duration::seconds(3600)).await;
    let failed = refreshed(&app, "ofac_sdn").await;
    assert!(
        failed.starts_with("failed: ") && failed.contains("truncated"),
        "{failed}"
    );
    assert_eq!(versions(&app).await, before);
    assert_eq!(
        screen(&app, "Northwind Trading", "").await.outcome,
        Outcome::PossibleMatch as i32,
        "still screening against version 1"
    );

    // The same bytes under a new ETag: downloaded, but nothing imported.
    {
        let mut s = served.lock().unwrap();
        s.body = row(1, "NORTHWIND TRADING").into_bytes();
        s.etag = "\"v1-again\"".into();
        s.truncate = false;
    }
    app.clock.advance_settled(chrono::Duration::seconds(3600)).await;
    assert_eq!(refreshed(&app, "ofac_sdn").await, "unchanged (version 1)");
    assert_eq!(versions(&app).await, before);

    // A changed file: version 2, and the registered party re-screened.
    {
        let mut s = served.lock().unwrap();
        s.body = [row(1, "NORTHWIND TRADING"), row(2, "EASTWIND LOGISTICS")]
            .concat()
            .into_bytes();
        s.etag = "\"v2\"".into();
    }
    app.clock.advance_settled(chrono::Duration::seconds(3600)).await;
    assert_eq!(refreshed(&app, "ofac_sdn").await, "imported version 2");
    let again = screen(&app, "Eastwind Logistics", party_ref).await;
    assert_eq!(again.outcome, Outcome::PossibleMatch as i32);
    assert!(
        !again.case_id.is_empty(),
        "the import's re-screening opened a case"
    );
    assert_eq!(again.evidence.unwrap().lists[0].version, 2);
    app.stop().await;
}

on_both_backends!(
    lists_download_and_refresh_themselves,
    lists_download_and_refresh_themselves
);

/// A `--list-url` is operator configuration (API.md): plain HTTP to a
/// mirror on loopback downloads and imports with no flag set.
async fn a_configured_plain_http_url_needs_no_flag(b: Backend) {
    let (ca, leaf) = test_ca();
    let (_, eu) = fixture("eu/fsf_1_1_excerpt_2026-08-05.xml");
    let served = Served::new(eu, "\"eu-1\"", &leaf);
    served.lock().unwrap().tls = None;
    let port = serve(served.clone()).await.port();
    let db = TestDb::new(b);
    let keys = TestKeys::new();
    let cfg = Config {
        list_allow_private: false,
        list_allow_insecure: false,
        ..config(
            &db,
            &keys,
            &ca,
            format!("eu_fsf=http://127.0.0.1:{port}/files/fsf.xml"),
        )
    };
    let app = spawn_with(db, keys, cfg).await;
    assert_eq!(refreshed(&app, "eu_fsf").await, "imported version 1");
    assert!(versions(&app).await.iter().any(|(s, v)| s == "eu_fsf" && *v == 1));
    app.stop().await;
}

on_both_backends!(
    a_configured_plain_http_url_needs_no_flag,
    a_configured_plain_http_url_needs_no_flag
);

/// The real EU file over HTTPS, through a redirect (the official hosts
/// hand files out from elsewhere): imported; then a 304, a truncated
/// download, a certificate from a CA nobody configured and a redirect to
/// plain HTTP each keep version 1; and a server configured without
/// `--list-allow-private` does not follow a redirect onto loopback.
async fn https_downloads_are_verified_and_fenced(b: Backend) {
    let (ca, leaf) = test_ca();
    let (_, eu) = fixture("eu/fsf_1_1_excerpt_2026-08-05.xml");
    let served = Served::new(eu.clone(), "\"eu-1\"", &leaf);
    let addr = serve(served.clone()).await;
    let port = addr.port();
    let db = TestDb::new(b);
    let keys = TestKeys::new();
    let cfg = config(
        &db,
        &keys,
        &ca,
        format!("eu_fsf=https://localhost:{port}/redirect/fsf.xml"),
    );
    let app = spawn_with(db, keys, cfg).await;

    assert_eq!(refreshed(&app, "eu_fsf").await, "imported version 1");
    assert_eq!(
        served.lock().unwrap().asked,
        [
            ("/redirect/fsf.xml".to_owned(), String::new()),
            ("/files/fsf.xml".to_owned(), String::new())
        ],
        "the redirect was followed"
    );
    let v1 = versions(&app).await;
    assert!(v1.contains(&("eu_fsf".to_owned(), 1)), "{v1:?}");

    // Unchanged: the conditional GET (sent on through the redirect) is
    // answered 304.
    app.clock.advance_settled(chrono::Duration::seconds(3600)).await;
    assert_eq!(refreshed(&app, "eu_fsf").await, "not modified");
    assert_eq!(served.lock().unwrap().asked.last().unwrap().1, "\"eu-1\"");

    // A new file cut off halfway.
    {
        let mut s = served.lock().unwrap();
        s.body = [eu.as_slice(), b"\n<!-- republished -->\n"].concat();
        s.etag = "\"eu-2\"".into();
        s.truncate = true;
    }
    app.clock.advance_settled(chrono::Duration::seconds(3600)).await;
    let failed = refreshed(&app, "eu_fsf").await;
    assert!(
        failed.starts_with("failed: ") && failed.contains("truncated"),
        "{failed}"
    );
    assert_eq!(versions(&app).await, v1);

    // The whole file, but from a server whose certificate another CA issued.
    let asked = {
        let mut s = served.lock().unwrap();
        s.truncate = false;
        s.tls = Some(server_tls(
            &Ca::new("somebody else").leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth),
        ));
        s.asked.len()
    };
    app.clock.advance_settled(chrono::Duration::seconds(3600)).await;
    let failed = refreshed(&app, "eu_fsf").await;
    assert!(
        failed.starts_with("failed: ") && failed.contains("TLS") && failed.contains("UnknownIssuer"),
        "{failed}"
    );
    assert_eq!(versions(&app).await, v1);
    assert_eq!(served.lock().unwrap().asked.len(), asked, "no request was sent");

    // The trusted certificate again, but a redirect down to plain HTTP.
    {
        let mut s = served.lock().unwrap();
        s.tls = Some(server_tls(&leaf));
        s.redirect_to = format!("http://localhost:{port}/files/");
    }
    app.clock.advance_settled(chrono::Duration::seconds(3600)).await;
    let failed = refreshed(&app, "eu_fsf").await;
    assert!(
        failed.starts_with("failed: ") && failed.contains("must be https://"),
        "{failed}"
    );
    assert_eq!(versions(&app).await, v1);
    app.stop().await;

    // Without --list-allow-private, a redirect onto a non-public address is
    // refused before it is connected to; the configured URL itself is the
    // operator's and may be anywhere (here: loopback, over plain HTTP's
    // sibling HTTPS).
    {
        let mut s = served.lock().unwrap();
        s.redirect_to = format!("https://localhost:{port}/files/");
    }
    let asked = served.lock().unwrap().asked.len();
    let db = TestDb::new(b);
    let keys = TestKeys::new();
    let strict = Config {
        list_allow_private: false,
        ..config(
            &db,
            &keys,
            &ca,
            format!("eu_fsf=https://localhost:{port}/redirect/fsf.xml"),
        )
    };
    let app = spawn_with(db, keys, strict).await;
    let failed = refreshed(&app, "eu_fsf").await;
    assert!(
        failed.starts_with("failed: ") && failed.contains("non-public address"),
        "{failed}"
    );
    assert!(versions(&app).await.iter().all(|(s, _)| s != "eu_fsf"));
    assert_eq!(
        served.lock().unwrap().asked.len(),
        asked + 1,
        "the configured URL was asked, the redirect's target was not"
    );
    app.stop().await;
}

on_both_backends!(
    https_downloads_are_verified_and_fenced,
    https_downloads_are_verified_and_fenced
);

async fn one_replica_at_a_time_holds_a_source(b: Backend) {
    let db = TestDb::new(b);
    let keys = TestKeys::new();
    let cfg = test_config(&db, &keys);
    let app = spawn_with(db, keys, cfg).await;
    let lease = chrono::Duration::seconds(600);
    use proctor::screening::service::{end_refresh_lease, take_refresh_lease};
    let a = take_refresh_lease(&app.store, "un_sc", "replica-a", lease)
        .await
        .unwrap();
    assert!(a.is_some());
    assert!(
        take_refresh_lease(&app.store, "un_sc", "replica-b", lease)
            .await
            .unwrap()
            .is_none(),
        "held by replica a"
    );
    // Another source is free.
    assert!(
        take_refresh_lease(&app.store, "eu_fsf", "replica-b", lease)
            .await
            .unwrap()
            .is_some()
    );
    // Released, or expired (a crashed replica), it is taken again.
    end_refresh_lease(&app.store, "un_sc", "replica-a", None, "not modified".into())
        .await
        .unwrap();
    assert!(
        take_refresh_lease(&app.store, "un_sc", "replica-b", lease)
            .await
            .unwrap()
            .is_some()
    );
    app.clock.advance_settled(chrono::Duration::seconds(601)).await;
    assert!(
        take_refresh_lease(&app.store, "un_sc", "replica-c", lease)
            .await
            .unwrap()
            .is_some()
    );
    app.stop().await;
}

on_both_backends!(
    one_replica_at_a_time_holds_a_source,
    one_replica_at_a_time_holds_a_source
);
