//! `ImportList` limits: an import over `--max-import-rows` is refused with
//! the reason, and an import whose call ends (deadline, client gone) stops
//! and writes no version.

use std::time::Duration;

use diesel::prelude::*;
use proctor::proto::v1::ImportListChunk;
use tonic::Code;

use crate::on_both_backends;
use crate::screening::{client, import, ofac_set};
use crate::screening_pool::synthetic_csl;
use crate::support::{Backend, TestApp, TestDb, TestKeys, authed, spawn_with, test_config, violated_fields};

async fn versions(app: &TestApp) -> i64 {
    app.store
        .read("test.versions", |c, _| {
            use proctor::db::schema::screening_list_versions::dsl as lv;
            Ok(lv::screening_list_versions.count().get_result(c)?)
        })
        .await
        .unwrap()
}

async fn spawn_capped(b: Backend, max_rows: u64) -> TestApp {
    let (db, keys) = (TestDb::new(b), TestKeys::new());
    let mut cfg = test_config(&db, &keys);
    cfg.max_import_rows = max_rows;
    spawn_with(db, keys, cfg).await
}

async fn over_the_row_cap(b: Backend) {
    let app = spawn_capped(b, 1000).await;
    let comp = app.keys.compliance();
    let err = import(
        &app,
        "us_csl",
        vec![("csl.csv".into(), synthetic_csl(1001))],
        &comp,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(violated_fields(&err), ["data"]);
    assert!(
        err.message().contains("more than 1000 rows") && err.message().contains("--max-import-rows"),
        "{err:?}"
    );
    assert_eq!(versions(&app).await, 0, "nothing of the refused import is stored");
    // At the cap it imports.
    let v = import(
        &app,
        "us_csl",
        vec![("csl.csv".into(), synthetic_csl(1000))],
        &comp,
    )
    .await
    .unwrap();
    assert_eq!(v.entries, 1000);
    // The OFAC CSV set counts the rows of all its files together.
    app.stop().await;
    let app = spawn_capped(b, 5).await;
    let comp = app.keys.compliance();
    let err = import(&app, "ofac_sdn", ofac_set("fixture_small", false), &comp)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    app.stop().await;
}
on_both_backends!(an_import_over_the_row_cap_is_refused, over_the_row_cap);

async fn ended_call_writes_nothing(b: Backend) {
    let app = spawn_capped(b, 2_000_000).await;
    let comp = app.keys.compliance();
    // Far more than parses, diffs and stores within the deadline here.
    let data = synthetic_csl(400_000);
    let chunks: Vec<ImportListChunk> = data
        .chunks(64 * 1024)
        .map(|part| ImportListChunk {
            source: "us_csl".into(),
            format: String::new(),
            file_name: "csl.csv".into(),
            data: part.to_vec(),
        })
        .collect();
    let mut req = authed(tokio_stream::iter(chunks), &comp);
    req.set_timeout(Duration::from_secs(2));
    let err = client(&app).import_list(req).await.unwrap_err();
    assert!(
        matches!(err.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{err:?}"
    );
    // The next import of the source is its first version: the abandoned
    // one never committed.
    let v = import(&app, "us_csl", vec![("csl.csv".into(), synthetic_csl(10))], &comp)
        .await
        .unwrap();
    assert_eq!((v.version, v.entries), (1, 10));
    assert_eq!(versions(&app).await, 1);
    app.stop().await;
}
on_both_backends!(
    an_import_whose_call_ends_writes_no_version,
    ended_call_writes_nothing
);
