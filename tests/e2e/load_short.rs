//! The short form of the mixed load benchmark (`benches/mixed_load.rs`): a
//! few thousand checks, submissions, screenings and inbox pulls against a
//! real `proctor serve` process. Every call must succeed, and the server's
//! resident memory after all calls must stay within 50% of what it was
//! after a tenth of them: a leak per call shows up even in a short run,
//! while allocator and cache warm-up stay under that bound. The long form
//! (1 million checks, growth within 10%) is recorded in docs/BENCHMARKS.md.

use std::path::Path;

use crate::cli::BIN;
use crate::load::mixed::{CHECK, Options, checks_in, kind_of, run};
use crate::load::server::ServerProcess;

#[test]
fn the_mix_counts_its_checks() {
    for n in [0, 1, 3, 4, 39, 40, 41, 1000, 12_345] {
        let direct = (0..n).filter(|i| kind_of(*i) == CHECK).count();
        assert_eq!(checks_in(n), direct, "{n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_mixed_load_has_no_errors_and_no_memory_growth() {
    let o = Options {
        requests: 4_000,
        concurrency: 16,
        tenants: 50,
        connections: 2,
    };
    let server = ServerProcess::start(Path::new(BIN), None, &[]);
    let outcome = run(&server, &o).await;
    outcome.print(&o);
    assert_eq!(outcome.errors(), 0, "calls failed; server log:\n{}", server.log());
    for r in &outcome.kinds {
        assert!(r.calls > 0, "{} never ran", r.name);
    }
    assert_eq!(outcome.kinds.iter().map(|r| r.calls).sum::<usize>(), o.requests);
    assert_eq!(outcome.tenths.len(), 10);
    assert_eq!(outcome.end().0, checks_in(o.requests));
    // The readings are the server's own (a few MiB at least, not a zero
    // from a process that had gone), and its peak stays bounded: a server
    // that balloons under this short mix fails here even if it shrinks back.
    let (rss, peak) = (outcome.end().1.rss_kib, outcome.end().1.peak_kib);
    assert!(rss > 4 * 1024, "server RSS {rss} KiB is not a live server's");
    assert!(peak < 512 * 1024, "server peak RSS {peak} KiB over 512 MiB");
    assert!(
        outcome.growth() < 1.5,
        "server RSS grew {:.0}% between a tenth of the calls and all of them",
        (outcome.growth() - 1.0) * 100.0
    );
}
