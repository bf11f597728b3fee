//! Metrics reach a real OTLP/gRPC receiver from a real `proctor serve`
//! process: the RPC duration histogram by service, method and status code
//! (invented paths folded into `_OTHER`), calls in flight, the database
//! pool, the sampled backlog gauges following what the calls did, and a
//! refused list download counted by source, with no tenant or personal
//! data in any attribute.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
use opentelemetry_proto::tonic::metrics::v1::{HistogramDataPoint, Metric, NumberDataPoint};
use proctor::proto::v1 as pb;
use proctor::proto::v1::inbox_service_client::InboxServiceClient;
use proctor::proto::v1::instruction_service_client::InstructionServiceClient;
use proctor::proto::v1::screening_service_client::ScreeningServiceClient;
use proctor::proto::v1::subject_request_service_client::SubjectRequestServiceClient;
use tonic::{Request, Response, Status};

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::cli::BIN;
use crate::faults::postgres_behind_proxy;
use crate::load::mixed::import_small_ofac;
use crate::load::server::ServerProcess;
use crate::load::{authed, token};
use crate::on_both_backends;
use crate::otlp::{self, text};
use crate::support::{Backend, TestDb};

const TENANT: &str = "tenant-metrics-7";
const SUBJECT_NAME: &str = "Augusta Ada King";
const SUBJECT_EMAIL: &str = "augusta.king@example.test";
const PARTY_NAME: &str = "KHOROSHEV, Dmitriy Yurevich";

#[derive(Clone, Default)]
struct Receiver {
    exports: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        req: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.exports.lock().unwrap().push(req.into_inner());
        Ok(Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    /// Every metric of the latest export that has one named `name`
    /// (exports are cumulative, so the latest holds the totals).
    fn latest(&self, name: &str) -> Option<Metric> {
        let exports = self.exports.lock().unwrap();
        exports.iter().rev().find_map(|e| {
            e.resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .find(|m| m.name == name)
                .cloned()
        })
    }

    /// The latest value of gauge or sum `name` on the point whose attributes
    /// include `with`.
    fn value(&self, name: &str, with: &[(&str, &str)]) -> Option<f64> {
        number_points(&self.latest(name)?)
            .into_iter()
            .find(|p| {
                with.iter()
                    .all(|(k, v)| attr(&p.attributes, k).as_deref() == Some(*v))
            })
            .and_then(|p| match p.value? {
                Value::AsDouble(d) => Some(d),
                Value::AsInt(i) => Some(i as f64),
            })
    }

    /// Waits until `ok` holds, re-checking as exports arrive.
    async fn wait_for(&self, what: &str, ok: impl Fn(&Self) -> bool) {
        for _ in 0..200 {
            if ok(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no export showed {what}");
    }

    /// Every attribute value of every export, resource attributes included.
    fn all_attribute_values(&self) -> Vec<String> {
        let exports = self.exports.lock().unwrap();
        let mut out = Vec::new();
        for r in exports.iter().flat_map(|e| &e.resource_metrics) {
            let resource = r.resource.iter().flat_map(|r| &r.attributes);
            let points = r.scope_metrics.iter().flat_map(|s| &s.metrics).flat_map(|m| {
                let mut a: Vec<&KeyValue> =
                    number_points(m).into_iter().flat_map(|p| &p.attributes).collect();
                a.extend(histogram_points(m).into_iter().flat_map(|p| &p.attributes));
                a
            });
            out.extend(resource.chain(points).map(|kv| text(kv.value.clone())));
        }
        out
    }
}

fn number_points(m: &Metric) -> Vec<&NumberDataPoint> {
    match &m.data {
        Some(Data::Gauge(g)) => g.data_points.iter().collect(),
        Some(Data::Sum(s)) => s.data_points.iter().collect(),
        _ => Vec::new(),
    }
}

fn histogram_points(m: &Metric) -> Vec<&HistogramDataPoint> {
    match &m.data {
        Some(Data::Histogram(h)) => h.data_points.iter().collect(),
        _ => Vec::new(),
    }
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| text(kv.value.clone()))
}

/// The histogram's call count for one RPC and status code.
fn calls(r: &Receiver, service: &str, method: &str, code: i64) -> u64 {
    r.latest("rpc.server.call.duration")
        .map(|m| {
            histogram_points(&m)
                .iter()
                .filter(|p| {
                    attr(&p.attributes, "rpc.service").as_deref() == Some(service)
                        && attr(&p.attributes, "rpc.method").as_deref() == Some(method)
                        && attr(&p.attributes, "rpc.grpc.status_code") == Some(code.to_string())
                })
                .map(|p| p.count)
                .sum()
        })
        .unwrap_or(0)
}

/// Calls a path the server does not serve.
async fn invented_rpc(ch: tonic::transport::Channel) -> Status {
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await.unwrap();
    grpc.unary::<(), (), _>(
        authed((), &token(&["platform"], None)),
        http::uri::PathAndQuery::from_static("/proctor.v1.InstructionService/Invented"),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .unwrap_err()
}

/// A metrics receiver, and a server on `db` exporting to it every 200 ms.
async fn start(db: &TestDb) -> (Receiver, ServerProcess) {
    let receiver = Receiver::default();
    let addr = otlp::serve(
        tonic::transport::Server::builder().add_service(MetricsServiceServer::new(receiver.clone())),
    )
    .await;
    // A list host whose certificate a CA the server was not told to trust
    // issued: the download at start is refused, for the failure counter.
    let (_, leaf) = crate::list_refresh::test_ca();
    let (_, eu) = crate::screening::fixture("eu/fsf_1_1_excerpt_2026-08-05.xml");
    let lists = crate::list_refresh::serve(crate::list_refresh::Served::new(eu, "\"eu-1\"", &leaf)).await;
    let server = ServerProcess::start(
        Path::new(BIN),
        Some(&db.url),
        &[
            (
                "PROCTOR_LIST_URL",
                format!("eu_fsf=https://localhost:{}/files/fsf.xml", lists.port()),
            ),
            ("PROCTOR_LIST_ALLOW_PRIVATE", "true".into()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
            ("OTEL_TRACES_EXPORTER", "none".into()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "200".into()),
            ("OTEL_SERVICE_NAME", "proctor-metrics-test".into()),
            ("PROCTOR_DB_POOL_SIZE", "5".into()),
            ("PROCTOR_DB_TIMEOUT_SECONDS", "1".into()),
        ],
    );
    (receiver, server)
}

async fn metrics_reach_the_collector(b: Backend) {
    let db = TestDb::new(b);
    let (receiver, server) = start(&db).await;
    let ch = server.channels(1).await.remove(0);
    let platform = token(&["platform"], None);
    let tenant = token(&["tenant"], Some(TENANT));

    // Nothing open yet, once the sampler has run.
    receiver
        .wait_for("the first sample", |r| {
            r.value("proctor.screening.cases.open", &[]) == Some(0.0)
                && r.value("proctor.subject_requests.open", &[]) == Some(0.0)
        })
        .await;
    receiver
        .wait_for("the refused list download counted", |r| {
            r.value("proctor.screening.list_refresh_failures", &[("source", "eu_fsf")]) == Some(1.0)
        })
        .await;

    import_small_ofac(ch.clone(), &token(&["compliance"], None))
        .await
        .unwrap();
    let screened = ScreeningServiceClient::new(ch.clone())
        .screen(authed(
            pb::ScreenRequest {
                party: Some(pb::Party {
                    name: PARTY_NAME.into(),
                    r#type: pb::PartyType::Individual as i32,
                    ..Default::default()
                }),
                party_ref: format!("tenants/{TENANT}/contacts/1"),
                min_score: 0.0,
                limit: 5,
                ..Default::default()
            },
            &platform,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!screened.case_id.is_empty(), "a case opens: {screened:?}");
    SubjectRequestServiceClient::new(ch.clone())
        .forward_to_controller(authed(
            pb::ForwardToControllerRequest {
                tenant_id: TENANT.into(),
                request_type: pb::RequestType::Access as i32,
                subject: Some(pb::Subject {
                    email: SUBJECT_EMAIL.into(),
                    name: SUBJECT_NAME.into(),
                    ..Default::default()
                }),
                channel: "email".into(),
                received_at: None,
                message: "Please send me everything".into(),
                idempotency_key: "metrics-1".into(),
            },
            &platform,
        ))
        .await
        .unwrap();
    let bad = InstructionServiceClient::new(ch.clone())
        .check_processing(authed(pb::CheckProcessingRequest::default(), &platform))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let invented = invented_rpc(ch.clone()).await;

    receiver
        .wait_for("one open case and one open request", |r| {
            r.value("proctor.screening.cases.open", &[]) == Some(1.0)
                && r.value("proctor.subject_requests.open", &[]) == Some(1.0)
                && r.value("proctor.subject_requests.overdue", &[]) == Some(0.0)
                && r.value("proctor.breaches.past_deadline", &[]) == Some(0.0)
                && r.value("proctor.breaches.near_deadline", &[]) == Some(0.0)
                && calls(r, "proctor.v1.InstructionService", "CheckProcessing", 3) == 1
        })
        .await;
    assert_eq!(
        calls(
            &receiver,
            "proctor.v1.SubjectRequestService",
            "ForwardToController",
            0
        ),
        1
    );
    assert_eq!(calls(&receiver, "proctor.v1.ScreeningService", "Screen", 0), 1);
    assert_eq!(
        calls(&receiver, "proctor.v1.ScreeningService", "ImportList", 0),
        1
    );
    assert_eq!(
        calls(
            &receiver,
            "_OTHER",
            "_OTHER",
            i64::from(i32::from(invented.code()))
        ),
        1,
        "an invented path is counted as _OTHER"
    );
    let histogram = receiver.latest("rpc.server.call.duration").unwrap();
    assert_eq!(histogram.unit, "s");
    for p in histogram_points(&histogram) {
        let keys: BTreeSet<&str> = p.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["rpc.grpc.status_code", "rpc.method", "rpc.service", "rpc.system"]),
            "histogram attributes"
        );
        assert_ne!(attr(&p.attributes, "rpc.method").as_deref(), Some("Invented"));
    }
    assert_eq!(
        receiver.value("rpc.server.active_requests", &[("rpc.method", "CheckProcessing")]),
        Some(0.0),
        "no call left in flight"
    );
    assert_eq!(receiver.value("db.client.connection.max", &[]), Some(5.0));
    let used = receiver
        .value(
            "db.client.connection.count",
            &[("db.client.connection.state", "used")],
        )
        .unwrap();
    let idle = receiver
        .value(
            "db.client.connection.count",
            &[("db.client.connection.state", "idle")],
        )
        .unwrap();
    assert!((1.0..=5.0).contains(&(used + idle)), "{used} used + {idle} idle");
    // SQLite's writer reports its groups, PostgreSQL its batched
    // statements; neither reports the other's.
    let groups = receiver.value("proctor.db.write_groups", &[]);
    let grouped = receiver.value("proctor.db.grouped_commands", &[]);
    let batches = receiver.value("proctor.db.batched_statements", &[]);
    let batched = receiver.value("proctor.db.batched_commands", &[]);
    match b {
        Backend::Sqlite => {
            let (groups, grouped) = (groups.unwrap(), grouped.unwrap());
            assert!(
                groups >= 1.0 && grouped >= groups,
                "{grouped} commands in {groups} groups"
            );
            assert!(batches.is_none() && batched.is_none());
        }
        Backend::Postgres => {
            assert!(groups.is_none() && grouped.is_none());
            let (batches, batched) = (batches.unwrap(), batched.unwrap());
            assert!(batched >= batches, "{batched} commands in {batches} statements");
        }
    }

    // The tenant's inbox backlog is what it can pull; acknowledging it all
    // brings the gauge to zero.
    let backlog = receiver
        .value(
            "proctor.inbox.unacked",
            &[("proctor.inbox.recipient_kind", "tenant")],
        )
        .unwrap();
    assert!(backlog >= 2.0, "clarification and forwarded request: {backlog}");
    assert!(receiver.value("proctor.inbox.oldest_unacked.age", &[]).unwrap() >= 0.0);
    let mut inbox = InboxServiceClient::new(ch.clone());
    let envs = inbox
        .pull(authed(
            pb::PullRequest {
                max: 100,
                lease_seconds: 30,
            },
            &tenant,
        ))
        .await
        .unwrap()
        .into_inner()
        .envelopes;
    assert_eq!(envs.len() as f64, backlog);
    inbox
        .ack(authed(
            pb::AckRequest {
                ids: envs.into_iter().map(|e| e.id).collect(),
            },
            &tenant,
        ))
        .await
        .unwrap();
    receiver
        .wait_for("an empty tenant backlog", |r| {
            r.value(
                "proctor.inbox.unacked",
                &[("proctor.inbox.recipient_kind", "tenant")],
            ) == Some(0.0)
                && r.value("proctor.inbox.oldest_unacked.age", &[]).is_some()
        })
        .await;

    // No tenant or personal data anywhere in the metrics.
    let values = receiver.all_attribute_values();
    assert!(
        values.iter().any(|v| v == "proctor-metrics-test"),
        "resource attributes read"
    );
    for v in &values {
        for secret in [
            TENANT,
            SUBJECT_NAME,
            SUBJECT_EMAIL,
            PARTY_NAME,
            "Khoroshev",
            "augusta",
        ] {
            assert!(
                !v.to_lowercase().contains(&secret.to_lowercase()),
                "{secret:?} in a metric attribute: {v}"
            );
        }
    }
}
on_both_backends!(metrics_reach_the_collector, metrics_reach_the_collector);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauges_show_their_age_while_the_database_is_away() {
    if !crate::support::postgres_available() {
        return;
    }
    let (proxy, db) = postgres_behind_proxy().await;
    let (receiver, server) = start(&db).await;
    let ch = server.channels(1).await.remove(0);
    let age = |r: &Receiver| r.value("proctor.gauges.sample.age", &[]);
    receiver
        .wait_for("a fresh sample", |r| {
            r.value("proctor.screening.cases.open", &[]) == Some(0.0) && age(r).is_some_and(|a| a < 1.0)
        })
        .await;
    assert_eq!(receiver.value("proctor.gauges.sample_failures", &[]), None);

    // Cut: samples fail (counted), the reading ages, the process lives on.
    proxy.set(false);
    receiver
        .wait_for("failed samples and an ageing reading", |r| {
            r.value("proctor.gauges.sample_failures", &[])
                .is_some_and(|n| n >= 1.0)
                && age(r).is_some_and(|a| a >= 2.0)
        })
        .await;
    let live = HealthClient::new(ch.clone())
        .check(HealthCheckRequest {
            service: "liveness".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(live.status, 1, "SERVING");
    assert_eq!(receiver.value("db.client.connection.max", &[]), Some(5.0));

    // Restored: fresh readings again, without a restart.
    proxy.set(true);
    receiver
        .wait_for("a fresh sample after the outage", |r| {
            age(r).is_some_and(|a| a < 1.0)
        })
        .await;
}
