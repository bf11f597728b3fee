//! Per-RPC metrics: the call duration histogram by `rpc.service`,
//! `rpc.method` and `rpc.grpc.status_code`, and the calls in flight. The
//! labels come from the server's own table of RPCs ([`crate::auth::policy`]),
//! never from the request as sent, so a client inventing paths cannot grow
//! the number of series: an unknown path counts as `_OTHER`. No tenant, role
//! or other caller detail is a label; traces carry those.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter, UpDownCounter};

/// Label value of a path the server does not serve.
pub const OTHER: &str = "_OTHER";
/// gRPC CANCELLED: the client went away before the status was sent.
const CANCELLED: i64 = 1;

/// Histogram bucket bounds, seconds: `CheckProcessing` answers in well under
/// a millisecond, imports and exports take seconds.
const BOUNDS: [f64; 16] = [
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Reflection RPCs the server answers besides the table's (no token needed).
const REFLECTION: [&str; 2] = [
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// Path -> (service, method), built once from the RPC table.
static KNOWN: LazyLock<HashMap<&'static str, (&'static str, &'static str)>> = LazyLock::new(|| {
    crate::auth::policy::RULES
        .iter()
        .map(|r| r.path)
        .chain(REFLECTION)
        .filter_map(|p| Some((p, p.trim_start_matches('/').split_once('/')?)))
        .collect()
});

/// The `(rpc.service, rpc.method)` labels of `path`: the served RPC's names,
/// or [`OTHER`] twice for anything else.
pub fn labels(path: &str) -> (&'static str, &'static str) {
    KNOWN.get(path).copied().unwrap_or((OTHER, OTHER))
}

/// The RPC instruments, cheap to clone (one per server).
#[derive(Clone)]
pub struct RpcMetrics {
    inner: Arc<Instruments>,
}

struct Instruments {
    duration: Histogram<f64>,
    active: UpDownCounter<i64>,
}

impl std::fmt::Debug for RpcMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RpcMetrics")
    }
}

impl RpcMetrics {
    /// Creates the instruments on `meter` (a no-op meter when metrics are not
    /// exported, so recording then costs next to nothing).
    pub fn new(meter: &Meter) -> Self {
        let duration = meter
            .f64_histogram("rpc.server.call.duration")
            .with_unit("s")
            .with_description("Time from a call's arrival to its final status, by RPC and gRPC status code")
            .with_boundaries(BOUNDS.to_vec())
            .build();
        let active = meter
            .i64_up_down_counter("rpc.server.active_requests")
            .with_unit("{request}")
            .with_description("Calls received and not yet answered with a status")
            .build();
        Self {
            inner: Arc::new(Instruments { duration, active }),
        }
    }

    /// Counts a call of `path` in flight until the returned record is
    /// finished or dropped; `system` is `grpc`, or `connect_rpc` for a call
    /// that arrived as Connect JSON.
    pub fn start(&self, path: &str, system: &'static str) -> CallRecord {
        let (service, method) = labels(path);
        let attrs = [
            KeyValue::new("rpc.system", system),
            KeyValue::new("rpc.service", service),
            KeyValue::new("rpc.method", method),
        ];
        self.inner.active.add(1, &attrs);
        CallRecord {
            metrics: self.inner.clone(),
            attrs,
            started: Instant::now(),
            code: None,
        }
    }
}

/// One call in flight. Dropping it records the duration under the status
/// set by [`CallRecord::finish`], or CANCELLED when the call ended without
/// one (the client hung up, the stream was dropped).
pub struct CallRecord {
    metrics: Arc<Instruments>,
    attrs: [KeyValue; 3],
    started: Instant,
    code: Option<i64>,
}

impl CallRecord {
    /// Ends the call with gRPC status `code`.
    pub fn finish(mut self, code: i64) {
        self.code = Some(code);
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        self.metrics.active.add(-1, &self.attrs);
        let [system, service, method] = self.attrs.clone();
        self.metrics.duration.record(
            self.started.elapsed().as_secs_f64(),
            &[
                system,
                service,
                method,
                KeyValue::new("rpc.grpc.status_code", self.code.unwrap_or(CANCELLED)),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_paths_are_labelled_by_their_names_and_others_are_other() {
        assert_eq!(
            labels("/proctor.v1.InstructionService/CheckProcessing"),
            ("proctor.v1.InstructionService", "CheckProcessing")
        );
        assert_eq!(
            labels("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            ("grpc.reflection.v1.ServerReflection", "ServerReflectionInfo")
        );
        for invented in [
            "/proctor.v1.InstructionService/CheckProcessingX",
            "/proctor.v1.Nope/CheckProcessing",
            "/grpc.reflection.v1.ServerReflection/anything-else",
            "/",
            "",
        ] {
            assert_eq!(labels(invented), (OTHER, OTHER), "{invented}");
        }
    }

    #[test]
    fn every_rule_has_labels() {
        for path in crate::auth::policy::RULES.iter().map(|r| r.path) {
            assert_ne!(labels(path).0, OTHER, "{path}");
        }
    }
}
