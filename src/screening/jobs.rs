//! Lists that refresh themselves: every `--list-refresh-seconds` (on the
//! injected clock) each `--list-url` source is downloaded, conditionally
//! (If-None-Match / If-Modified-Since with what the server sent last time),
//! through the shared outbound client ([`crate::outbound`]: HTTPS, the
//! lists' address policy, redirects re-checked hop by hop), within a size
//! cap and a timeout, and imported through the same path as
//! `ImportList`, so unchanged bytes import nothing and a new version
//! re-screens the registered parties by delta. One replica at a time takes
//! a source (a lease row); a broken or truncated download imports nothing,
//! keeps the last good version, and is logged and counted
//! (`proctor.screening.list_refresh_failures`).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::db::pipeline::Actor;
use crate::error::{Error, Result};
use crate::outbound::Client;
use crate::outbound::policy::UrlPolicy;
use crate::outbound::trust::Trust;
use crate::periodic::{CancellationToken, every};
use crate::rpc::AppState;
use crate::screening::grpc::MAX_IMPORT_BYTES;
use crate::screening::lists::{Budget, ListFile};
use crate::screening::live::NameScreener;
use crate::screening::refresh::{ListUrl, Validator, Validators, file_name};
use crate::screening::service::{self, ImportList, Scoring};

/// Longest one file's download may take, redirects included.
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);
/// Redirects one download follows: publishers move their files and keep
/// the old addresses as redirects (OFAC's long-published treasury.gov
/// download URLs redirect to its Sanctions List Service); a longer chain
/// is a misconfiguration or a loop.
pub const MAX_REDIRECTS: usize = 5;
/// The user agent of every download, so a list publisher (or a proxy's
/// log) can tell who is fetching.
pub const USER_AGENT: &str = concat!("proctor/", env!("CARGO_PKG_VERSION"));
/// How long a replica holds a source while it downloads and imports: past
/// this a crashed replica's lease is taken over.
pub const REFRESH_LEASE: Duration = Duration::from_secs(1800);

/// What the refresh job needs: the server's state, the screener whose
/// indexes it swaps, and the configured sources.
#[derive(Debug, Clone)]
pub struct ListRefresh {
    /// The server's shared state.
    pub state: AppState,
    /// The screener (its indexes, parameters and threshold).
    pub screener: NameScreener,
    /// The configured sources.
    pub lists: Vec<ListUrl>,
    /// Most rows one import takes.
    pub max_import_rows: u64,
    /// Most bytes one source's files may have together.
    pub max_bytes: usize,
    /// This replica's lease holder id.
    pub holder: String,
    /// The client that downloads (the lists' address policy).
    pub client: Client,
}

/// The download client: the shared trust, [`DOWNLOAD_TIMEOUT`] per file,
/// the configured URL reached wherever it is (operator configuration) and
/// its redirects held to the lists' own address policy.
pub fn download_client(trust: Trust, policy: UrlPolicy) -> Client {
    Client::new(trust, policy, DOWNLOAD_TIMEOUT, USER_AGENT).trusting_the_configured_url()
}

impl ListRefresh {
    /// A refresh of `lists` for this replica.
    pub fn new(
        state: AppState,
        screener: NameScreener,
        lists: Vec<ListUrl>,
        max_import_rows: u64,
        client: Client,
    ) -> Self {
        Self {
            state,
            screener,
            lists,
            max_import_rows,
            max_bytes: MAX_IMPORT_BYTES,
            holder: uuid::Uuid::new_v4().to_string(),
            client,
        }
    }
}

/// Runs [`refresh_round`] at start and every `period` on the store's clock
/// until `stop`.
pub async fn refresh_lists(job: ListRefresh, period: Duration, stop: CancellationToken) {
    let clock = job.state.store.clock().clone();
    every("screening_list_refresh", period, &clock, &stop, || {
        refresh_round(job.clone())
    })
    .await;
}

/// One round: every configured source in turn; returns how many new list
/// versions were imported. A source that fails is logged (its name and
/// why, nothing of the file) and counted, and the others still run.
pub async fn refresh_round(job: ListRefresh) -> Result<usize> {
    let failures = opentelemetry::global::meter("proctor")
        .u64_counter("proctor.screening.list_refresh_failures")
        .with_description("List downloads or imports that failed; the last good version stays")
        .build();
    let mut imported = 0;
    for list in &job.lists {
        match refresh_one(&job, list).await {
            Ok(true) => imported += 1,
            Ok(false) => {}
            Err(e) => {
                failures.add(1, &[opentelemetry::KeyValue::new("source", list.source.clone())]);
                tracing::warn!(
                    job = "screening_list_refresh",
                    source = %list.source,
                    error = %e,
                    "list refresh failed; the last good version stays in use"
                );
            }
        }
    }
    Ok(imported)
}

/// Refreshes one source under its lease: true when a new version was
/// imported.
async fn refresh_one(job: &ListRefresh, list: &ListUrl) -> Result<bool> {
    let lease = chrono::Duration::from_std(REFRESH_LEASE).unwrap_or(chrono::Duration::MAX);
    let store = &job.state.store;
    let Some(known) = service::take_refresh_lease(store, &list.source, &job.holder, lease).await? else {
        tracing::debug!(source = %list.source, "another replica is refreshing this list");
        return Ok(false);
    };
    let outcome = download_and_import(job, list, known).await;
    let (validators, note, result) = match outcome {
        Ok(Done::NotModified) => (None, "not modified".to_owned(), Ok(false)),
        Ok(Done::Imported {
            validators,
            version,
            unchanged,
        }) => (
            Some(validators),
            if unchanged {
                format!("unchanged (version {version})")
            } else {
                format!("imported version {version}")
            },
            Ok(!unchanged),
        ),
        Err(e) => (None, format!("failed: {e}"), Err(e)),
    };
    service::end_refresh_lease(store, &list.source, &job.holder, validators, note).await?;
    if matches!(result, Ok(true)) {
        job.screener.live().refresh().await?;
        // Sub-processors screened clear by this version may now be active.
        job.state.follow_decisions().await;
    }
    result
}

/// How a source's refresh ended.
enum Done {
    /// Every file answered 304: nothing downloaded.
    NotModified,
    /// The files were imported (or were byte for byte the latest version).
    Imported {
        validators: Validators,
        version: u64,
        unchanged: bool,
    },
}

async fn download_and_import(job: &ListRefresh, list: &ListUrl, known: Validators) -> Result<Done> {
    // Conditional first; when only some files changed, the others are
    // fetched again in full, since an import takes every file of a set.
    let mut got = Vec::new();
    let mut all_same = true;
    for url in &list.urls {
        let r = fetch(&job.client, url, known.get(url), job.max_bytes).await?;
        all_same &= r.is_none();
        got.push(r);
    }
    if all_same {
        return Ok(Done::NotModified);
    }
    let mut files = Vec::new();
    let mut validators = Validators::new();
    let mut total = 0usize;
    for (url, r) in list.urls.iter().zip(got) {
        let (data, v) = match r {
            Some(body) => body,
            None => fetch(&job.client, url, None, job.max_bytes)
                .await?
                .ok_or_else(|| Error::Unexpected(format!("{url} answered 304 to an unconditional GET")))?,
        };
        total += data.len();
        if total > job.max_bytes {
            return Err(Error::Unexpected(format!(
                "the files of {} exceed {} bytes",
                list.source, job.max_bytes
            )));
        }
        validators.insert(url.clone(), v);
        files.push(ListFile {
            name: file_name(url),
            data,
        });
    }
    let budget = Budget {
        max_rows: job.max_import_rows,
        cancelled: Arc::new(AtomicBool::new(false)),
    };
    let scoring = Scoring {
        params: *job.screener.params(),
        threshold: job.screener.threshold(),
    };
    let info = service::import_list(
        &job.state.store,
        job.state.secrets.clone(),
        Actor::service(),
        ImportList {
            source: list.source.clone(),
            files,
        },
        scoring,
        budget,
    )
    .await?;
    Ok(Done::Imported {
        validators,
        version: info.version,
        unchanged: info.unchanged,
    })
}

/// Downloads `url`, conditionally when `known` has validators: `None` on
/// 304, else the body with its validators. Only a whole body is
/// returned: one larger than `max` bytes, or shorter than its
/// `Content-Length` (a truncated download), is an error, so a broken
/// download can never be imported as a (smaller) new version.
pub async fn fetch(
    client: &Client,
    url: &str,
    known: Option<&Validator>,
    max: usize,
) -> Result<Option<(Vec<u8>, Validator)>> {
    let bad = |what: String| Error::Unexpected(format!("{url}: {what}"));
    let mut headers = Vec::new();
    if let Some(v) = known {
        if let Some(e) = &v.etag {
            headers.push(("if-none-match", e.clone()));
        }
        if let Some(m) = &v.last_modified {
            headers.push(("if-modified-since", m.clone()));
        }
    }
    let answer = client.get(url, &headers, max, MAX_REDIRECTS).await.map_err(bad)?;
    if answer.status == http::StatusCode::NOT_MODIFIED {
        return Ok(None);
    }
    if !answer.status.is_success() {
        return Err(bad(format!("answered {}", answer.status)));
    }
    let validator = Validator {
        etag: answer.header(http::header::ETAG).map(str::to_owned),
        last_modified: answer.header(http::header::LAST_MODIFIED).map(str::to_owned),
    };
    let expected: Option<usize> = answer
        .header(http::header::CONTENT_LENGTH)
        .and_then(|l| l.parse().ok());
    let body = answer.body.map_err(|e| bad(e.to_string()))?;
    if let Some(expected) = expected.filter(|l| *l != body.len()) {
        return Err(bad(format!("truncated: {} of {expected} bytes", body.len())));
    }
    Ok(Some((body.to_vec(), validator)))
}
