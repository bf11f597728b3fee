//! Per-caller rate limits: one tenant hammering the server is refused
//! RESOURCE_EXHAUSTED with retry info, while other tenants and systems carry
//! on; time (the test's manual clock) refills the bucket.

use proctor::proto::v1::PullRequest;
use tonic::Code;
use tonic_types::StatusExt;

use crate::support::{Backend, TestDb, TestKeys, authed, spawn_with, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_cannot_starve_the_others() {
    let db = TestDb::new(Backend::Sqlite);
    let keys = TestKeys::new();
    let mut cfg = test_config(&db, &keys);
    cfg.rate_limit_per_second = 2.0;
    cfg.rate_limit_burst = 3.0;
    let app = spawn_with(db, keys, cfg).await;
    let k = &app.keys;
    let mut inbox = app.inbox();
    let pull = |token: String| {
        let mut c = inbox.clone();
        async move { c.pull(authed(PullRequest::default(), &token)).await }
    };

    for i in 0..3 {
        pull(k.tenant("t1"))
            .await
            .unwrap_or_else(|e| panic!("call {i} within the burst: {e:?}"));
    }
    let e = pull(k.tenant("t1")).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let retry = e.get_details_retry_info().expect("RetryInfo detail");
    let delay = retry.retry_delay.expect("a retry delay");
    assert!(
        delay > std::time::Duration::from_millis(400) && delay <= std::time::Duration::from_millis(500),
        "2 calls/s: the next token is 500 ms away, got {delay:?}"
    );
    // Every user of the tenant shares its bucket.
    let colleague = k.token("another-user", &["tenant"], Some("t1"));
    assert_eq!(pull(colleague).await.unwrap_err().code(), Code::ResourceExhausted);

    // Others are not affected.
    pull(k.tenant("t2")).await.expect("another tenant");
    pull(k.platform("crm")).await.expect("a platform system");

    // Half a second later one more call is allowed, then refused again.
    app.clock.advance(chrono::Duration::milliseconds(500));
    pull(k.tenant("t1")).await.expect("refilled");
    assert_eq!(
        pull(k.tenant("t1")).await.unwrap_err().code(),
        Code::ResourceExhausted
    );
    // Unauthenticated calls are refused by auth first, not counted.
    let e = inbox
        .pull(tonic::Request::new(PullRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    app.stop().await;
}
