//! Tracing and OpenTelemetry: one subscriber for logs and spans, OTLP/gRPC
//! export of spans and metrics configured by the standard `OTEL_*`
//! variables, W3C trace-context propagation, the per-RPC server span and
//! metrics layer ([`layer`], [`rpc_metrics`]) and the sampled SRE gauges
//! ([`gauges`]).
//!
//! Export is batched on the SDK's own workers, so a slow or absent collector
//! never blocks a request. Without an endpoint, spans still get trace ids
//! (logs carry them) but go nowhere, and metric instruments are no-ops.

pub mod gauges;
pub mod layer;
pub mod rpc_metrics;

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Default `service.name` when `OTEL_SERVICE_NAME` is not set.
pub const DEFAULT_SERVICE_NAME: &str = "proctor";

/// Log line format.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Keeps the tracer and meter providers alive; [`Telemetry::shutdown`]
/// flushes spans still in the batch queue and the last metric values.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    meters: Option<SdkMeterProvider>,
    exporting: bool,
}

/// Telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built from the `OTEL_*` settings.
    #[error("OTLP exporter: {0}")]
    Exporter(String),
    /// A global subscriber was already installed.
    #[error("tracing subscriber: {0}")]
    Subscriber(String),
}

/// A kind of telemetry with its own OTLP settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Traces,
    Metrics,
}

/// Whether `signal` is exported, by the standard variables read through
/// `env`: an endpoint (the shared `OTEL_EXPORTER_OTLP_ENDPOINT` or the
/// signal's own) must be set, and `OTEL_{TRACES,METRICS}_EXPORTER=none`
/// turns the signal off on its own.
fn otlp_enabled(signal: Signal, env: impl Fn(&str) -> Option<String>) -> bool {
    let (own, exporter) = match signal {
        Signal::Traces => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"),
        Signal::Metrics => ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_METRICS_EXPORTER"),
    };
    let set = |k: &str| env(k).is_some_and(|v| !v.trim().is_empty());
    let off = env(exporter).is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    !off && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set(own))
}

fn process_env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// Default `OTEL_METRIC_EXPORT_INTERVAL`, as the SDK applies it.
const DEFAULT_METRIC_INTERVAL: Duration = Duration::from_secs(60);
/// Shortest sampling interval, so a mistyped interval cannot turn the gauge
/// sampler into a busy loop against the database.
const MIN_METRIC_INTERVAL: Duration = Duration::from_millis(100);

/// The metric export interval: `OTEL_METRIC_EXPORT_INTERVAL` milliseconds
/// (the SDK's own reading of it), at least [`MIN_METRIC_INTERVAL`].
fn metric_interval(env: impl Fn(&str) -> Option<String>) -> Duration {
    env("OTEL_METRIC_EXPORT_INTERVAL")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map_or(DEFAULT_METRIC_INTERVAL, Duration::from_millis)
        .max(MIN_METRIC_INTERVAL)
}

/// Set once by [`init`] when metrics are exported.
static METRICS_INTERVAL: OnceLock<Duration> = OnceLock::new();

/// How often the gauges that need a database query are sampled: the metric
/// export interval when metrics are exported (a sample taken more often
/// would never be sent), `None` when they are not (then nobody reads them).
pub fn metrics_sample_interval() -> Option<Duration> {
    METRICS_INTERVAL.get().copied()
}

/// Installs the global subscriber and propagator. Call once, from `main`.
pub fn init(format: LogFormat) -> Result<Telemetry, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    // The SDK reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG itself.
    let mut builder = SdkTracerProvider::builder().with_resource(resource_from_env());
    let exporting = otlp_enabled(Signal::Traces, process_env);
    if exporting {
        // with_tonic() reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, headers,
        // timeout and compression from the environment.
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("proctor"))
        .with_tracked_inactivity(false);
    // The SDK announces its own set-up at info; that is noise on every CLI run.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,opentelemetry=warn,opentelemetry_sdk=warn"));
    // Logs are diagnostics: stderr, so a command's stdout carries only its
    // own output, and colour only when a person watches stderr (a file or a
    // log pipeline gets no escape codes).
    let ansi = std::io::stderr().is_terminal();
    let fmt = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_target(false)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| TelemetryError::Subscriber(e.to_string()))?;
    opentelemetry::global::set_tracer_provider(provider.clone());
    let meters = if otlp_enabled(Signal::Metrics, process_env) {
        // with_tonic() reads OTEL_EXPORTER_OTLP_(METRICS_)ENDPOINT and the
        // rest; the reader reads OTEL_METRIC_EXPORT_INTERVAL and runs on its
        // own thread.
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let meters = SdkMeterProvider::builder()
            .with_resource(resource_from_env())
            .with_reader(PeriodicReader::builder(exporter).build())
            .build();
        opentelemetry::global::set_meter_provider(meters.clone());
        let _ = METRICS_INTERVAL.set(metric_interval(process_env));
        Some(meters)
    } else {
        None
    };
    Ok(Telemetry {
        provider,
        meters,
        exporting,
    })
}

/// `service.name` and the attributes of `OTEL_RESOURCE_ATTRIBUTES`, with
/// [`DEFAULT_SERVICE_NAME`] when `OTEL_SERVICE_NAME` is not set.
fn resource_from_env() -> Resource {
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(DEFAULT_SERVICE_NAME);
    }
    resource.build()
}

impl Telemetry {
    /// True when spans are exported over OTLP.
    pub fn exporting(&self) -> bool {
        self.exporting
    }

    /// Flushes queued spans and the last metric values and stops the
    /// exporters; an unreachable collector is logged, never fatal.
    pub fn shutdown(self) {
        if let Some(meters) = &self.meters {
            // Shutting the reader down exports once more, so the calls of the
            // last interval are not lost.
            if let Err(e) = meters.shutdown() {
                tracing::warn!(error = %e, "stopping the metric exporter failed");
            }
        }
        if let Err(e) = self.provider.force_flush() {
            tracing::warn!(error = %e, "flushing spans failed");
        }
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "stopping the span exporter failed");
        }
    }
}

/// Hex trace id of the current span, or empty when there is none; recorded
/// in audit events so an auditor can find the call's trace.
pub fn current_trace_id() -> String {
    current_trace_id_of(&tracing::Span::current())
}

/// Hex trace id of `span`, or empty.
pub fn current_trace_id_of(span: &tracing::Span) -> String {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        sc.trace_id().to_string()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn a_signal_is_exported_with_an_endpoint_unless_its_exporter_is_none() {
        assert!(!otlp_enabled(Signal::Metrics, env(&[])));
        assert!(!otlp_enabled(
            Signal::Metrics,
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])
        ));
        let shared = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")];
        assert!(otlp_enabled(Signal::Metrics, env(&shared)));
        assert!(otlp_enabled(Signal::Traces, env(&shared)));
        let own = [("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://c:4317")];
        assert!(otlp_enabled(Signal::Metrics, env(&own)));
        assert!(!otlp_enabled(Signal::Traces, env(&own)));
        let off = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_METRICS_EXPORTER", "None"),
        ];
        assert!(!otlp_enabled(Signal::Metrics, env(&off)));
        assert!(otlp_enabled(Signal::Traces, env(&off)));
    }

    #[test]
    fn metric_interval_follows_the_sdk_variable_with_a_floor() {
        assert_eq!(metric_interval(env(&[])), Duration::from_secs(60));
        let v = [("OTEL_METRIC_EXPORT_INTERVAL", "15000")];
        assert_eq!(metric_interval(env(&v)), Duration::from_secs(15));
        let zero = [("OTEL_METRIC_EXPORT_INTERVAL", "0")];
        assert_eq!(metric_interval(env(&zero)), Duration::from_secs(60));
        let tiny = [("OTEL_METRIC_EXPORT_INTERVAL", "1")];
        assert_eq!(metric_interval(env(&tiny)), MIN_METRIC_INTERVAL);
        let junk = [("OTEL_METRIC_EXPORT_INTERVAL", "soon")];
        assert_eq!(metric_interval(env(&junk)), Duration::from_secs(60));
    }
}
