//! Mixed gRPC load against a separate `proctor serve` process (SQLite, HS256
//! development tokens): checks, subject-request submissions, screenings and
//! inbox pulls ([`load::mixed`]), beside the empty-RPC baseline measured in
//! the same run, with the server's resident memory after a tenth of the
//! calls and after all of them.
//!
//! `cargo bench --bench mixed_load -- [--requests N] [--concurrency C] [--tenants T] [--connections K] [--database-url URL]`

mod load;

use std::path::Path;

use load::mixed::{Options, run};
use load::server::ServerProcess;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let o = Options {
        requests: load::arg("--requests", 1_100_000),
        concurrency: load::arg("--concurrency", 32),
        tenants: load::arg("--tenants", 1_000),
        connections: load::arg("--connections", 4),
    };
    let url: String = load::arg("--database-url", String::new());
    let server = ServerProcess::start(
        Path::new(env!("CARGO_BIN_EXE_proctor")),
        Some(url.as_str()).filter(|u| !u.is_empty()),
        &[],
    );
    let outcome = run(&server, &o).await;
    outcome.print(&o);
    assert_eq!(outcome.errors(), 0, "calls failed; server log:\n{}", server.log());
}
