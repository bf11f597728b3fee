//! Push delivery end to end: a real HTTP receiver on 127.0.0.1 gets the
//! envelopes of real commands, signed as Standard Webhooks prescribe and
//! verified with the `standardwebhooks` crate; failures, hangs and
//! redirects are retried on the server's clock; private addresses are
//! refused; a delivery past its maximum age is FAILED with the envelope
//! still in the inbox; secrets rotate with an overlap; deliveries survive a
//! restart.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use proctor::clock::Clock;
use proctor::config::Config;
use proctor::proto::v1::{
    DeleteWebhookRequest, GetWebhookRequest, ListWebhookDeliveriesRequest, RedeliverWebhookRequest,
    ReportBreachRequest, RotateWebhookSecretRequest, SetWebhookRequest, Webhook, WebhookDelivery,
    WebhookDeliveryStatus,
};
use tonic::Code;

use crate::on_both_backends;
use crate::support::{
    Backend, TestApp, TestDb, TestKeys, audit_events, authed, pull_inbox, spawn_with, test_config,
    violated_fields,
};

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Ok,
    Fail,
    Hang,
    Redirect,
    /// 204 after 30 ms, so overlapping deliveries would show.
    SlowOk,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    path: String,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Received {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    fn header(&self, name: &str) -> String {
        self.headers[name].to_str().unwrap().to_owned()
    }

    /// Verified as a receiver does, timestamp tolerance included.
    fn verifies_now(&self, secret: &str) -> bool {
        standardwebhooks::Webhook::new(secret)
            .unwrap()
            .verify(&self.body, &self.headers)
            .is_ok()
    }

    /// Whether one of the signatures is `secret`'s, whatever the clock
    /// says (for requests sent after the test moved the server's clock).
    pub(crate) fn signed_by(&self, secret: &str) -> bool {
        let ts: i64 = self.header("webhook-timestamp").parse().unwrap();
        let expected = standardwebhooks::Webhook::new(secret)
            .unwrap()
            .sign(&self.header("webhook-id"), ts, &self.body)
            .unwrap();
        self.header("webhook-signature").split(' ').any(|s| s == expected)
    }
}

/// A webhook receiver on 127.0.0.1 that records what it gets and answers
/// as its mode says.
pub(crate) struct Receiver {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    got: Arc<Mutex<Vec<Received>>>,
    /// Most requests in progress at once.
    max_in_flight: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub(crate) async fn start(mode: Mode) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(Mutex::new(mode));
        let got = Arc::new(Mutex::new(Vec::new()));
        let max_in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (m, g, most) = (mode.clone(), got.clone(), max_in_flight.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (m, g, most, now) = (m.clone(), g.clone(), most.clone(), in_flight.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (m, g, most, now) = (m.clone(), g.clone(), most.clone(), now.clone());
                        async move {
                            use std::sync::atomic::Ordering::SeqCst;
                            most.fetch_max(now.fetch_add(1, SeqCst) + 1, SeqCst);
                            let path = req.uri().path().to_owned();
                            let headers = req.headers().clone();
                            let body = req.into_body().collect().await.unwrap().to_bytes().to_vec();
                            g.lock().unwrap().push(Received { path, headers, body });
                            let mode = *m.lock().unwrap();
                            if mode == Mode::SlowOk {
                                tokio::time::sleep(Duration::from_millis(30)).await;
                            }
                            now.fetch_sub(1, SeqCst);
                            let resp = match mode {
                                Mode::Ok | Mode::SlowOk => http::Response::builder().status(204),
                                Mode::Fail => http::Response::builder().status(500),
                                Mode::Redirect => http::Response::builder()
                                    .status(302)
                                    .header("location", format!("http://{addr}/elsewhere")),
                                Mode::Hang => {
                                    std::future::pending::<()>().await;
                                    unreachable!()
                                }
                            };
                            Ok::<_, Infallible>(resp.body(Full::new(Bytes::from_static(b"ok"))).unwrap())
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            mode,
            got,
            max_in_flight,
            task,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    fn all(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits (in real time) until `n` requests arrived.
    pub(crate) async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..500 {
            if self.count() >= n {
                return self.all();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the receiver got {} requests, not {n}", self.count());
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A test server's configuration for a receiver on loopback over http.
fn config(db: &TestDb, keys: &TestKeys) -> Config {
    Config {
        webhook_allow_insecure: true,
        webhook_allow_private: true,
        webhook_timeout_ms: 1000,
        ..test_config(db, keys)
    }
}

/// A server whose clock starts now: receivers check signature timestamps
/// against the wall clock.
async fn spawn(b: Backend, change: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDb::new(b);
    let keys = TestKeys::at(Utc::now());
    let mut cfg = config(&db, &keys);
    change(&mut cfg);
    spawn_with(db, keys, cfg).await
}

async fn set(app: &TestApp, tenant: &str, url: &str) -> Webhook {
    app.webhooks()
        .set_webhook(authed(
            SetWebhookRequest {
                url: url.into(),
                description: "our privacy tool".into(),
                ..Default::default()
            },
            &app.keys.tenant(tenant),
        ))
        .await
        .expect("the webhook is set")
        .into_inner()
}

/// Reports a breach concerning `tenant`: a real command that sends it a
/// `breach.notice` envelope. Returns the breach id.
async fn breach_for(app: &TestApp, tenant: &str) -> String {
    app.breaches()
        .report_breach(authed(
            ReportBreachRequest {
                nature: "Call recordings readable through a misconfigured bucket".into(),
                became_aware_at: Some(app.clock.now_ts()),
                tenant_ids: vec![tenant.into()],
                ..Default::default()
            },
            &app.keys.compliance(),
        ))
        .await
        .unwrap()
        .into_inner()
        .id
}

async fn deliveries(app: &TestApp, tenant: &str) -> Vec<WebhookDelivery> {
    app.webhooks()
        .list_webhook_deliveries(authed(
            ListWebhookDeliveriesRequest::default(),
            &app.keys.tenant(tenant),
        ))
        .await
        .unwrap()
        .into_inner()
        .deliveries
}

/// Waits (in real time) until `tenant`'s deliveries satisfy `ok`.
async fn wait_deliveries(
    app: &TestApp,
    tenant: &str,
    what: &str,
    ok: impl Fn(&[WebhookDelivery]) -> bool,
) -> Vec<WebhookDelivery> {
    let mut last = Vec::new();
    for _ in 0..500 {
        last = deliveries(app, tenant).await;
        if ok(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("deliveries never became {what}: {last:#?}");
}

fn status(d: &WebhookDelivery) -> WebhookDeliveryStatus {
    WebhookDeliveryStatus::try_from(d.status).unwrap()
}

async fn delivers_signed_envelopes(b: Backend) {
    let app = spawn(b, |_| {}).await;
    let rx = Receiver::start(Mode::Ok).await;
    let t1 = app.keys.tenant("t1");
    let mut wh = app.webhooks();

    let created = set(&app, "t1", &rx.url()).await;
    assert!(created.secret.starts_with("whsec_"), "{}", created.secret);
    assert_eq!(created.tenant_id, "t1");
    assert_eq!(created.url, rx.url());
    let secret = created.secret.clone();

    // The secret is shown once: not by Get, not by a Set that replaces.
    let got = wh
        .get_webhook(authed(GetWebhookRequest::default(), &t1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((got.id.as_str(), got.secret.as_str()), (created.id.as_str(), ""));
    let replaced = set(&app, "t1", &format!("{}?v=2", rx.url())).await;
    assert_eq!(replaced.id, created.id, "one webhook per tenant");
    assert_eq!(replaced.secret, "", "a replacing Set keeps and hides the secret");

    let breach = breach_for(&app, "t1").await;
    let got = rx.wait_for(1).await;
    let r = &got[0];
    assert_eq!(r.path, "/hook");
    assert!(r.verifies_now(&secret), "the standardwebhooks crate verifies it");
    assert!(!r.verifies_now(&format!("whsec_{}", "A".repeat(44))));
    let body = r.json();
    assert_eq!(body["type"], "breach.notice");
    assert_eq!(body["data"]["breach_id"], breach.as_str());
    assert!(chrono::DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).is_ok());
    assert_eq!(
        r.header("webhook-timestamp"),
        app.clock.now().timestamp().to_string()
    );
    assert_eq!(r.headers["content-type"], "application/json");

    let done = wait_deliveries(&app, "t1", "delivered", |d| {
        d.len() == 1 && status(&d[0]) == WebhookDeliveryStatus::Delivered
    })
    .await;
    let d = &done[0];
    assert_eq!(
        d.envelope_id,
        r.header("webhook-id"),
        "webhook-id is the envelope id"
    );
    assert_eq!(
        (d.attempts, d.last_status_code, d.kind.as_str()),
        (1, 204, "breach.notice")
    );
    assert!(d.delivered_at.is_some() && d.next_attempt_at.is_none());
    assert!(
        pull_inbox(&app, &t1, 30).await.is_empty(),
        "the 2xx acknowledged the envelope"
    );

    // Redelivery re-sends a delivered envelope, with the same webhook-id.
    let again = wh
        .redeliver_webhook(authed(
            RedeliverWebhookRequest {
                delivery_id: d.id.clone(),
            },
            &t1,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status(&again), WebhookDeliveryStatus::Pending);
    let got = rx.wait_for(2).await;
    assert_eq!(got[1].header("webhook-id"), d.envelope_id);
    assert!(got[1].verifies_now(&secret));
    wait_deliveries(&app, "t1", "delivered again", |d| {
        d[0].attempts == 2 && status(&d[0]) == WebhookDeliveryStatus::Delivered
    })
    .await;

    // Tenants see only their own; compliance any tenant's.
    let t2 = app.keys.tenant("t2");
    let e = wh
        .get_webhook(authed(
            GetWebhookRequest {
                tenant_id: "t1".into(),
            },
            &t2,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = wh
        .get_webhook(authed(GetWebhookRequest::default(), &t2))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = wh
        .redeliver_webhook(authed(
            RedeliverWebhookRequest {
                delivery_id: d.id.clone(),
            },
            &t2,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::NotFound,
        "another tenant's delivery does not exist"
    );
    let e = wh
        .redeliver_webhook(authed(RedeliverWebhookRequest::default(), &t1))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&e), ["delivery_id"]);
    let by_compliance = wh
        .get_webhook(authed(
            GetWebhookRequest {
                tenant_id: "t1".into(),
            },
            &app.keys.compliance(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (by_compliance.id, by_compliance.secret),
        (created.id.clone(), String::new())
    );

    // Bad input names its field and writes nothing.
    for bad in ["", "ftp://example.com/x", "http://user:pw@example.com/"] {
        let e = wh
            .set_webhook(authed(
                SetWebhookRequest {
                    url: bad.into(),
                    ..Default::default()
                },
                &t2,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}");
        assert_eq!(violated_fields(&e), ["url"], "{bad}");
    }
    let e = wh
        .list_webhook_deliveries(authed(
            ListWebhookDeliveriesRequest {
                status: 99,
                ..Default::default()
            },
            &t1,
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&e), ["status"]);

    // Delete removes the webhook and its deliveries; envelopes stay for Pull.
    wh.delete_webhook(authed(DeleteWebhookRequest::default(), &t1))
        .await
        .unwrap();
    let e = wh
        .get_webhook(authed(GetWebhookRequest::default(), &t1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    breach_for(&app, "t1").await;
    assert_eq!(pull_inbox(&app, &t1, 30).await.len(), 1);
    assert_eq!(rx.count(), 2, "a deleted webhook gets nothing");

    app.audit_settled().await;
    let events = audit_events(&app).await;
    let actions: Vec<_> = events.iter().map(|e| e.action.as_str()).collect();
    for a in ["webhook.set", "webhook.redeliver", "webhook.delete", "inbox.ack"] {
        assert!(actions.contains(&a), "{a} not audited: {actions:?}");
    }
    assert!(
        !events.iter().any(|e| e.detail.contains(&secret[6..])),
        "the secret is not in the audit log"
    );
    app.stop().await;
}
on_both_backends!(
    delivers_signed_envelopes_of_real_commands,
    delivers_signed_envelopes
);

async fn fails_then_recovers(b: Backend) {
    let app = spawn(b, |_| {}).await;
    let rx = Receiver::start(Mode::Fail).await;
    let t1 = app.keys.tenant("t1");
    let secret = set(&app, "t1", &rx.url()).await.secret;

    breach_for(&app, "t1").await;
    rx.wait_for(1).await;
    let failed = wait_deliveries(&app, "t1", "failed once", |d| d.len() == 1 && d[0].attempts == 1).await;
    let d = &failed[0];
    assert_eq!(status(d), WebhookDeliveryStatus::Pending);
    assert_eq!((d.last_status_code, d.last_error.as_str()), (500, "HTTP 500"));
    let next = d.next_attempt_at.as_ref().unwrap().seconds - app.clock.now().timestamp();
    assert!(
        (5..=6).contains(&next),
        "first retry after 5 s (+ jitter), got {next}"
    );

    // A retry does not hold back the next envelope: it goes out at once.
    breach_for(&app, "t1").await;
    rx.wait_for(2).await;
    wait_deliveries(&app, "t1", "both failed once", |d| {
        d.len() == 2 && d.iter().all(|d| d.attempts == 1)
    })
    .await;

    // Not before the backoff is over.
    app.clock.advance_settled(chrono::Duration::seconds(4)).await;
    assert_eq!(rx.count(), 2, "retried before the backoff");

    // The receiver recovers; both are retried, in inbox order.
    rx.set(Mode::Ok);
    app.clock.advance_settled(chrono::Duration::seconds(3)).await;
    let got = rx.wait_for(4).await;
    let ids: Vec<_> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids[2..], ids[..2], "the retries go out in cursor order");
    assert!(got.iter().all(|r| r.verifies_now(&secret)));
    let done = wait_deliveries(&app, "t1", "delivered", |d| {
        d.iter().all(|d| status(d) == WebhookDeliveryStatus::Delivered)
    })
    .await;
    assert!(done.iter().all(|d| d.attempts == 2 && d.last_error.is_empty()));
    assert!(pull_inbox(&app, &t1, 30).await.is_empty(), "both acknowledged");
    app.stop().await;
}
on_both_backends!(
    a_failing_receiver_is_retried_after_the_backoff,
    fails_then_recovers
);

async fn hanging_receiver(b: Backend) {
    let app = spawn(b, |_| {}).await;
    let rx = Receiver::start(Mode::Hang).await;
    set(&app, "t1", &rx.url()).await;
    breach_for(&app, "t1").await;
    rx.wait_for(1).await;
    let timed_out = wait_deliveries(&app, "t1", "timed out", |d| d.len() == 1 && d[0].attempts == 1).await;
    assert_eq!(timed_out[0].last_status_code, 0, "no answer");
    assert!(
        timed_out[0].last_error.contains("timed out"),
        "{}",
        timed_out[0].last_error
    );
    assert_eq!(status(&timed_out[0]), WebhookDeliveryStatus::Pending);

    rx.set(Mode::Ok);
    app.clock.advance_settled(chrono::Duration::seconds(6)).await;
    rx.wait_for(2).await;
    wait_deliveries(&app, "t1", "delivered", |d| {
        status(&d[0]) == WebhookDeliveryStatus::Delivered && d[0].attempts == 2
    })
    .await;
    app.stop().await;
}
on_both_backends!(a_hanging_receiver_times_out_and_is_retried, hanging_receiver);

async fn redirect(b: Backend) {
    let app = spawn(b, |_| {}).await;
    let rx = Receiver::start(Mode::Redirect).await;
    set(&app, "t1", &rx.url()).await;
    breach_for(&app, "t1").await;
    rx.wait_for(1).await;
    let d = wait_deliveries(&app, "t1", "redirected", |d| d.len() == 1 && d[0].attempts == 1).await;
    assert_eq!(d[0].last_status_code, 302);
    assert!(d[0].last_error.contains("redirect"), "{}", d[0].last_error);
    assert_eq!(
        status(&d[0]),
        WebhookDeliveryStatus::Pending,
        "a 3xx is a failure"
    );
    // Give a follower the time it would need, then check nobody followed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        rx.all().iter().all(|r| r.path == "/hook"),
        "the redirect was followed"
    );
    assert_eq!(rx.count(), 1);
    app.stop().await;
}
on_both_backends!(a_redirect_is_a_failure_and_not_followed, redirect);

async fn private_addresses(b: Backend) {
    // Plain http allowed (a test receiver has no certificate), private
    // addresses not: what a misconfigured production would look like.
    let app = spawn(b, |c| c.webhook_allow_private = false).await;
    let rx = Receiver::start(Mode::Ok).await;
    let t1 = app.keys.tenant("t1");
    for literal in [
        rx.url(),
        "http://10.0.0.7/hook".to_owned(),
        "http://[::1]:8080/hook".to_owned(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
    ] {
        let e = app
            .webhooks()
            .set_webhook(authed(
                SetWebhookRequest {
                    url: literal.clone(),
                    ..Default::default()
                },
                &t1,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{literal}");
        assert_eq!(violated_fields(&e), ["url"]);
    }
    // A host name is checked where it matters: at delivery, on the
    // addresses it resolves to.
    let by_name = format!("http://localhost:{}/hook", rx.addr.port());
    set(&app, "t1", &by_name).await;
    breach_for(&app, "t1").await;
    let d = wait_deliveries(&app, "t1", "refused", |d| d.len() == 1 && d[0].attempts == 1).await;
    assert!(
        d[0].last_error.contains("non-public address"),
        "{}",
        d[0].last_error
    );
    assert_eq!(d[0].last_status_code, 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.count(), 0, "nothing reached the private address");
    assert_eq!(
        pull_inbox(&app, &t1, 30).await.len(),
        1,
        "the envelope waits for Pull"
    );
    app.stop().await;

    // Without the insecure flag, only https is accepted.
    let strict = spawn(b, |c| {
        c.webhook_allow_private = false;
        c.webhook_allow_insecure = false;
    })
    .await;
    let e = strict
        .webhooks()
        .set_webhook(authed(
            SetWebhookRequest {
                url: "http://hooks.example.com/in".into(),
                ..Default::default()
            },
            &strict.keys.tenant("t1"),
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&e), ["url"]);
    let ok = set(&strict, "t1", "https://hooks.example.com/in").await;
    assert!(ok.secret.starts_with("whsec_"));
    strict.stop().await;
}
on_both_backends!(private_addresses_are_refused, private_addresses);

async fn max_age(b: Backend) {
    let app = spawn(b, |c| c.webhook_max_age_hours = 1).await;
    let rx = Receiver::start(Mode::Fail).await;
    let t1 = app.keys.tenant("t1");
    let secret = set(&app, "t1", &rx.url()).await.secret;
    breach_for(&app, "t1").await;
    rx.wait_for(1).await;
    wait_deliveries(&app, "t1", "failed once", |d| d.len() == 1 && d[0].attempts == 1).await;

    app.clock.advance_settled(chrono::Duration::hours(2)).await;
    let failed = wait_deliveries(&app, "t1", "FAILED", |d| {
        status(&d[0]) == WebhookDeliveryStatus::Failed
    })
    .await;
    assert!(failed[0].next_attempt_at.is_none());
    let only_failed = app
        .webhooks()
        .list_webhook_deliveries(authed(
            ListWebhookDeliveriesRequest {
                status: WebhookDeliveryStatus::Failed as i32,
                ..Default::default()
            },
            &t1,
        ))
        .await
        .unwrap()
        .into_inner()
        .deliveries;
    assert_eq!(only_failed.len(), 1);
    let pending = app
        .webhooks()
        .list_webhook_deliveries(authed(
            ListWebhookDeliveriesRequest {
                status: WebhookDeliveryStatus::Pending as i32,
                ..Default::default()
            },
            &app.keys.compliance(),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&pending),
        ["tenant_id"],
        "compliance names the tenant"
    );
    let waiting = pull_inbox(&app, &t1, 1).await;
    assert_eq!(waiting.len(), 1, "the envelope stays for Pull");
    assert_eq!(waiting[0].id, failed[0].envelope_id);

    // Redelivery (by compliance here) gives it a fresh window.
    rx.set(Mode::Ok);
    let before = rx.count();
    app.webhooks()
        .redeliver_webhook(authed(
            RedeliverWebhookRequest {
                delivery_id: failed[0].id.clone(),
            },
            &app.keys.compliance(),
        ))
        .await
        .unwrap();
    let got = rx.wait_for(before + 1).await;
    assert!(got.last().unwrap().signed_by(&secret));
    wait_deliveries(&app, "t1", "delivered", |d| {
        status(&d[0]) == WebhookDeliveryStatus::Delivered
    })
    .await;
    app.clock.advance_settled(chrono::Duration::seconds(2)).await;
    assert!(pull_inbox(&app, &t1, 1).await.is_empty(), "acknowledged at last");

    app.audit_settled().await;
    let actions: Vec<_> = audit_events(&app).await.into_iter().map(|e| e.action).collect();
    assert!(
        actions.iter().any(|a| a == "webhook.delivery_failed"),
        "{actions:?}"
    );
    app.stop().await;
}
on_both_backends!(
    past_the_maximum_age_a_delivery_fails_and_the_envelope_stays,
    max_age
);

async fn rotation(b: Backend) {
    let app = spawn(b, |_| {}).await;
    let rx = Receiver::start(Mode::Ok).await;
    let t1 = app.keys.tenant("t1");
    let old = set(&app, "t1", &rx.url()).await.secret;
    let rotated = app
        .webhooks()
        .rotate_webhook_secret(authed(RotateWebhookSecretRequest::default(), &t1))
        .await
        .unwrap()
        .into_inner();
    let new = rotated.secret.clone();
    assert!(new.starts_with("whsec_") && new != old);
    assert_eq!(
        rotated.previous_secret_expires_at.unwrap().seconds,
        (app.clock.now() + chrono::Duration::hours(24)).timestamp()
    );

    breach_for(&app, "t1").await;
    let r = rx.wait_for(1).await.remove(0);
    assert_eq!(r.header("webhook-signature").split(' ').count(), 2);
    assert!(r.verifies_now(&old), "the old secret still verifies");
    assert!(r.verifies_now(&new), "the new one does too");

    // After the overlap only the new secret signs.
    app.clock.advance_settled(chrono::Duration::hours(25)).await;
    breach_for(&app, "t1").await;
    let r = rx.wait_for(2).await.remove(1);
    assert_eq!(r.header("webhook-signature").split(' ').count(), 1);
    assert!(r.signed_by(&new));
    assert!(!r.signed_by(&old));

    app.audit_settled().await;
    let actions: Vec<_> = audit_events(&app).await.into_iter().map(|e| e.action).collect();
    assert!(actions.iter().any(|a| a == "webhook.rotate_secret"));
    app.stop().await;
}
on_both_backends!(a_rotated_secret_keeps_signing_during_the_overlap, rotation);

async fn restart(b: Backend) {
    let db = TestDb::new(b);
    let rx = Receiver::start(Mode::Fail).await;
    let keys = TestKeys::at(Utc::now());
    let cfg = config(&db, &keys);
    let first = spawn_with(TestDb::shared_with(&db), keys, cfg).await;
    set(&first, "t1", &rx.url()).await;
    breach_for(&first, "t1").await;
    rx.wait_for(1).await;
    let pending = wait_deliveries(&first, "t1", "failed once", |d| {
        d.len() == 1 && d[0].attempts == 1
    })
    .await;
    let now = first.clock.now();
    first.stop().await;

    rx.set(Mode::Ok);
    let keys = TestKeys::at(now);
    let cfg = config(&db, &keys);
    let second = spawn_with(TestDb::shared_with(&db), keys, cfg).await;
    let after = deliveries(&second, "t1").await;
    assert_eq!(
        after[0].id, pending[0].id,
        "the pending delivery survived the restart"
    );
    assert_eq!(status(&after[0]), WebhookDeliveryStatus::Pending);
    // Past the retry's time and past the lease a server stopped in the
    // middle of a round may have left behind (it expires, as a dead
    // replica's does).
    second.clock.advance_settled(chrono::Duration::seconds(40)).await;
    rx.wait_for(2).await;
    wait_deliveries(&second, "t1", "delivered", |d| {
        status(&d[0]) == WebhookDeliveryStatus::Delivered && d[0].attempts == 2
    })
    .await;
    second.stop().await;
}
on_both_backends!(pending_deliveries_survive_a_restart, restart);

async fn lease_expiry(b: Backend) {
    let app = spawn(b, |_| {}).await;
    let rx = Receiver::start(Mode::Ok).await;
    let w = set(&app, "t1", &rx.url()).await;
    // Another replica holds the lease and dies with it.
    let until = (app.clock.now() + chrono::Duration::seconds(60)).timestamp_micros();
    let sql = format!(
        "UPDATE webhooks SET lease_owner = 'a-replica-that-died', lease_until_us = {until} WHERE id = '{}'",
        w.id
    );
    // Through the server's own writer: the job writes beside the test.
    app.store
        .write("test.dead_lease", move |c, _| {
            use diesel::RunQueryDsl;
            Ok(diesel::sql_query(sql).execute(c)?)
        })
        .await
        .unwrap();
    breach_for(&app, "t1").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.count(), 0, "delivered under another replica's lease");
    app.clock.advance_settled(chrono::Duration::seconds(30)).await;
    assert_eq!(rx.count(), 0, "the lease has not expired yet");
    app.clock.advance_settled(chrono::Duration::seconds(31)).await;
    rx.wait_for(1).await;
    wait_deliveries(&app, "t1", "delivered", |d| {
        d.len() == 1 && status(&d[0]) == WebhookDeliveryStatus::Delivered
    })
    .await;
    app.stop().await;
}
on_both_backends!(a_dead_replicas_lease_expires, lease_expiry);

/// Two replicas on one PostgreSQL, both woken by the envelopes enqueued on
/// them: every envelope reaches the receiver exactly once, one request at
/// a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_never_deliver_one_envelope_concurrently() {
    if !crate::support::postgres_available() {
        return;
    }
    let db = TestDb::new(Backend::Postgres);
    let rx = Receiver::start(Mode::SlowOk).await;
    let start = Utc::now();
    let (ka, kb) = (TestKeys::at(start), TestKeys::at(start));
    let (ca, cb) = (config(&db, &ka), config(&db, &kb));
    let a = spawn_with(TestDb::shared_with(&db), ka, ca).await;
    let b = spawn_with(TestDb::shared_with(&db), kb, cb).await;
    set(&a, "t1", &rx.url()).await;
    let n = 12;
    for i in 0..n {
        breach_for(if i % 2 == 0 { &a } else { &b }, "t1").await;
    }
    // What one replica's wake-up left to the other is found at its poll.
    for _ in 0..3 {
        a.clock.advance_settled(chrono::Duration::seconds(6)).await;
        b.clock.advance_settled(chrono::Duration::seconds(6)).await;
    }
    let got = rx.wait_for(n).await;
    wait_deliveries(&a, "t1", "all delivered", |d| {
        d.len() == n && d.iter().all(|d| status(d) == WebhookDeliveryStatus::Delivered)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_now = rx.all();
    let ids: std::collections::HashSet<_> = got_now.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), n, "every envelope arrived");
    assert_eq!(
        got_now.len(),
        n,
        "no envelope arrived twice: {} requests",
        got.len()
    );
    assert_eq!(
        rx.max_in_flight.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "two requests for one tenant were in flight at once"
    );
    b.stop().await;
    a.stop().await;
}

/// Envelopes committed while rounds are turning the tenant's inbox into
/// deliveries: none is skipped. The clock moves by the poll period all the
/// while, so polled rounds start beside the commits as well as woken ones;
/// once the writes end it stands still, so an envelope the cursor passed
/// unseen would never be delivered (found in CI: a polled round read the
/// inbox, a commit landed, and the round moved the cursor past it).
async fn concurrent_enqueues(b: Backend) {
    let app = spawn(b, |_| {}).await;
    let rx = Receiver::start(Mode::Ok).await;
    set(&app, "t1", &rx.url()).await;
    let done = tokio_util::sync::CancellationToken::new();
    let ticking = {
        let (clock, done) = (app.clock.clone(), done.clone());
        let period = chrono::Duration::seconds(app.config.webhook_poll_seconds as i64);
        tokio::spawn(async move {
            while !done.is_cancelled() {
                clock.advance(period);
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    let n = 48;
    for _ in 0..n / 8 {
        futures::future::join_all((0..8).map(|_| breach_for(&app, "t1"))).await;
    }
    done.cancel();
    ticking.await.unwrap();
    let got = rx.wait_for(n).await;
    let ids: std::collections::HashSet<_> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), n, "every envelope arrived");
    app.stop().await;
}
on_both_backends!(
    envelopes_written_during_a_round_are_never_skipped,
    concurrent_enqueues
);
