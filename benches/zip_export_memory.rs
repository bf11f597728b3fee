//! The server's memory while a large ZIP export streams (issue 19, "measure
//! memory while streaming a 200 MB bundle").
//!
//! Against the release server in its own process ([`load::server`]), on a
//! fresh SQLite file or (`--database-url postgres://user@host:port`) a
//! fresh PostgreSQL database: a tenant's access request, its task leased by
//! a platform system, one artefact of `--megabytes` MiB of generated,
//! incompressible bytes uploaded with the streaming `UploadArtifact` RPC,
//! the task completed, then `GetExport{format: EXPORT_FORMAT_ZIP}` read to
//! the end into a temporary file and checked with a ZIP reader (entries,
//! sizes, the artefact's SHA-256 against what was sent). Neither side holds
//! the file: the client generates it piece by piece and spools the export
//! to disk.
//!
//! While uploading and while streaming, the server's `VmRSS` and `VmHWM`
//! are read every 50 ms. The bench prints the idle baseline, each phase's
//! peak and its growth over the baseline as a share of the bundle, and
//! FAILS when either phase grows the server by more than
//! `--max-growth-mb` (default [`MAX_GROWTH_MB`]): a server that buffers
//! the artefact or the bundle grows by the bundle's size, far beyond it.
//!
//! `cargo bench --bench zip_export_memory -- [--megabytes 200]
//! [--max-growth-mb 64] [--database-url postgres://user@host:port]`

mod load;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use proctor::proto::v1 as pb;
use proctor::proto::v1::subject_request_service_client::SubjectRequestServiceClient;
use sha2::Digest;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use load::scratch::{ScratchDb, server_of};
use load::server::{Memory, ServerProcess, memory_of};
use load::{authed, token, token_as};

/// Bytes of generated data per `UploadArtifactChunk`: a client's natural
/// write size, well under the server's message limit.
const UPLOAD_PIECE: usize = 256 * 1024;
/// How often the server's memory is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// The default bound on either phase's growth over the idle baseline, MiB.
/// What the server may hold at once while streaming: one batch of four
/// 1 MiB artefact chunks in the clear plus their sealed, base64 text as the
/// database returned it (about 10 MiB together), eight 64 KiB pieces queued
/// for the connection, the HTTP/2 send buffers, and the database's page
/// cache and the allocator's arenas warming up, which a short export on
/// a fresh server sees for the first time (a few to a few tens of MiB).
/// A server that holds the artefact or the bundle grows by the bundle's
/// size instead: 200 MiB for the issue's bundle, three times this bound.
const MAX_GROWTH_MB: u64 = 64;
/// The platform system that answers the request.
const SYSTEM: &str = "crm";
/// The artefact's name in its task, and so its path in the ZIP.
const FILE_NAME: &str = "recording.bin";
/// The scratch PostgreSQL database of a `--database-url` run.
const SCRATCH_DB: &str = "proctor_zipbench";

/// The highest reading of one phase, from the sampler.
#[derive(Debug, Clone, Copy, Default)]
struct Peak {
    /// Highest `VmRSS` seen, KiB.
    rss_kib: u64,
    /// `VmHWM` at the last reading, KiB.
    hwm_kib: u64,
    /// `VmHWM` when the phase began, KiB: if the phase raised it, the
    /// process peaked in the phase at least that high, perhaps between two
    /// readings.
    hwm_start_kib: u64,
    /// Highest `RssAnon` seen (the heap), KiB.
    anon_kib: u64,
    /// Highest `RssFile` seen (mapped files), KiB.
    file_kib: u64,
    /// Readings taken.
    samples: usize,
}

/// Reads the server's memory every [`SAMPLE_EVERY`] until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Peak>,
}

impl Sampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut peak = Peak {
                hwm_start_kib: memory_of(pid).peak_kib,
                ..Peak::default()
            };
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            loop {
                tick.tick().await;
                let m = memory_of(pid);
                peak.rss_kib = peak.rss_kib.max(m.rss_kib);
                peak.hwm_kib = m.peak_kib;
                peak.anon_kib = peak.anon_kib.max(m.anon_kib);
                peak.file_kib = peak.file_kib.max(m.file_kib);
                peak.samples += 1;
                if flag.load(Ordering::Relaxed) {
                    return peak;
                }
            }
        });
        Self { stop, task }
    }

    /// Stops after one more reading (so the phase's end is in it).
    async fn finish(self) -> Peak {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the sampler runs to its end")
    }
}

/// Piece `i` of the artefact: xorshift output seeded by its index, so the
/// file is incompressible, reproducible, and never needs to exist whole.
fn piece(i: u64, len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ i.wrapping_mul(0xBF58_476D_1CE4_E5B9) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Sets up the request and leases its task: the task id.
async fn leased_task(c: &mut SubjectRequestServiceClient<Channel>, run: &str) -> String {
    c.register_system(authed(
        pb::RegisterSystemRequest {
            name: SYSTEM.into(),
            categories: vec!["recording".into()],
        },
        &token(&["compliance"], None),
    ))
    .await
    .expect("RegisterSystem");
    let request = c
        .submit_subject_request(authed(
            pb::SubmitSubjectRequestRequest {
                request_type: pb::RequestType::Access as i32,
                subject: Some(pb::Subject {
                    email: "subject@example.org".into(),
                    ..Default::default()
                }),
                regime: pb::Regime::Gdpr as i32,
                idempotency_key: format!("zip-bench-{run}"),
                ..Default::default()
            },
            &token(&["tenant"], Some("t1")),
        ))
        .await
        .expect("SubmitSubjectRequest")
        .into_inner();
    let tasks = c
        .pull_tasks(authed(
            pb::PullTasksRequest {
                system: String::new(),
                max: 10,
                lease_seconds: 3600,
            },
            &token_as(SYSTEM, &["platform"], None),
        ))
        .await
        .expect("PullTasks")
        .into_inner()
        .tasks;
    tasks
        .into_iter()
        .find(|t| t.request_id == request.id)
        .expect("the system leases the request's task")
        .id
}

/// Uploads `bytes` generated bytes to `task`: the server's artefact and the
/// SHA-256 of what was sent.
async fn upload(
    c: &mut SubjectRequestServiceClient<Channel>,
    task: &str,
    bytes: u64,
) -> (pb::Artifact, String) {
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::UploadArtifactChunk>(4);
    let task_id = task.to_owned();
    let producer = tokio::spawn(async move {
        let mut hash = sha2::Sha256::new();
        let (mut sent, mut i) = (0u64, 0u64);
        while sent < bytes {
            let len = (bytes - sent).min(UPLOAD_PIECE as u64) as usize;
            let data = piece(i, len);
            hash.update(&data);
            let mut m = pb::UploadArtifactChunk {
                data,
                ..Default::default()
            };
            if i == 0 {
                m.task_id = task_id.clone();
                m.file_name = FILE_NAME.into();
                m.content_type = "application/octet-stream".into();
            }
            if tx.send(m).await.is_err() {
                break;
            }
            sent += len as u64;
            i += 1;
        }
        hex::encode(hash.finalize())
    });
    let artifact = c
        .upload_artifact(authed(
            ReceiverStream::new(rx),
            &token_as(SYSTEM, &["platform"], None),
        ))
        .await
        .expect("UploadArtifact")
        .into_inner();
    (artifact, producer.await.expect("the generator finishes"))
}

/// What the export stream delivered.
struct Streamed {
    file: std::fs::File,
    bytes: u64,
    frames: usize,
    largest_frame: usize,
}

/// Reads the request's ZIP export to its end into a temporary file.
async fn export(c: &mut SubjectRequestServiceClient<Channel>, request_id: &str) -> Streamed {
    let mut s = c
        .get_export(authed(
            pb::GetExportRequest {
                id: request_id.into(),
                format: pb::ExportFormat::Zip as i32,
            },
            &token(&["tenant"], Some("t1")),
        ))
        .await
        .expect("GetExport")
        .into_inner();
    let mut out = std::io::BufWriter::new(tempfile::tempfile().expect("a temporary file"));
    let (mut bytes, mut frames, mut largest_frame) = (0u64, 0, 0);
    while let Some(chunk) = s.next().await {
        let data = chunk.expect("an export frame").data;
        bytes += data.len() as u64;
        frames += 1;
        largest_frame = largest_frame.max(data.len());
        out.write_all(&data).expect("spooling the export");
    }
    Streamed {
        file: out.into_inner().expect("spooling the export"),
        bytes,
        frames,
        largest_frame,
    }
}

/// Checks the archive: a manifest naming the artefact with its size and
/// checksum, the system's records, and the artefact itself, read through
/// (the ZIP reader checks its CRC-32) and hashed.
fn verify(file: std::fs::File, artifact: &pb::Artifact, sent_sha256: &str, bytes: u64) {
    let mut zip = zip::ZipArchive::new(file).expect("the export is a readable ZIP");
    let mut names: Vec<String> = (0..zip.len())
        .map(|i| {
            zip.by_index(i)
                .expect("a ZIP entry")
                .name()
                .expect("an entry name")
                .into_owned()
        })
        .collect();
    names.sort();
    let path = format!("files/{SYSTEM}/{FILE_NAME}");
    let expected = vec![
        path.clone(),
        "manifest.json".to_owned(),
        format!("records/{SYSTEM}.json"),
    ];
    assert_eq!(names, expected, "the entries of the ZIP");
    let mut manifest = Vec::new();
    zip.by_name("manifest.json")
        .expect("manifest.json")
        .read_to_end(&mut manifest)
        .expect("manifest.json reads");
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).expect("the manifest is JSON");
    let file = &manifest["systems"][0]["files"][0];
    assert_eq!(file["path"], path.as_str(), "{manifest}");
    assert_eq!(file["size"], bytes, "{manifest}");
    assert_eq!(file["sha256"], sent_sha256, "{manifest}");
    let mut entry = zip.by_name(&path).expect("the artefact's entry");
    assert_eq!(entry.size(), bytes, "the artefact's entry size");
    let mut hash = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut read = 0u64;
    loop {
        let n = entry.read(&mut buf).expect("the artefact reads (CRC-32 checked)");
        if n == 0 {
            break;
        }
        read += n as u64;
        hash.update(&buf[..n]);
    }
    assert_eq!(read, bytes, "bytes of the artefact in the ZIP");
    let got = hex::encode(hash.finalize());
    assert_eq!(got, sent_sha256, "the artefact's SHA-256 in the ZIP");
    assert_eq!(artifact.sha256, sent_sha256, "the SHA-256 the server computed");
}

/// One phase's line of the report: its peak (the highest reading, or the
/// high-water mark where the phase raised it, so a spike between two
/// readings counts), and its growth over the baseline in MiB and as a share
/// of the bundle.
fn report(name: &str, baseline: Memory, peak: Peak, bundle_mib: f64) -> f64 {
    let top = if peak.hwm_kib > peak.hwm_start_kib {
        peak.rss_kib.max(peak.hwm_kib)
    } else {
        peak.rss_kib
    };
    let growth = mib(top.saturating_sub(baseline.rss_kib));
    println!(
        "| {name} | {:.1} | +{growth:.1} | {:.2} | {:.1} / {:.1} | {:.1} | {} |",
        mib(top),
        growth / bundle_mib,
        mib(peak.anon_kib),
        mib(peak.file_kib),
        mib(peak.hwm_kib),
        peak.samples
    );
    growth
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let megabytes: u64 = load::arg("--megabytes", 200);
    let max_growth_mb: u64 = load::arg("--max-growth-mb", MAX_GROWTH_MB);
    let database: String = load::arg("--database-url", String::new());
    assert!(megabytes > 0, "--megabytes must be at least 1");
    let bytes = megabytes * 1024 * 1024;
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_proctor"));
    let scratch = (!database.is_empty()).then(|| ScratchDb::create(&server_of(&database), SCRATCH_DB));
    let backend = if scratch.is_some() { "PostgreSQL" } else { "SQLite" };
    // The server's request timeout (30 s by default) bounds a whole
    // client-streaming call, and the upload of a bundle this size on shared
    // cores can take longer: the bench measures memory, not that limit.
    let env = [("PROCTOR_REQUEST_TIMEOUT_SECONDS", "3600".to_owned())];
    let proc = ServerProcess::start(bin, scratch.as_ref().map(|d| d.url.as_str()), &env);
    let mut c =
        SubjectRequestServiceClient::new(proc.channels(1).await.remove(0)).max_decoding_message_size(8 << 20);
    let run = uuid::Uuid::new_v4().to_string();
    println!("ZIP export memory: {megabytes} MiB artefact, {backend}, memory read every {SAMPLE_EVERY:?}");

    let task = leased_task(&mut c, &run).await;
    // Let the start-up settle (migrations, key loading) before the baseline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = proc.memory();

    let sampler = Sampler::start(proc.pid());
    let started = Instant::now();
    let (artifact, sent_sha256) = upload(&mut c, &task, bytes).await;
    let upload_time = started.elapsed();
    let upload_peak = sampler.finish().await;
    assert_eq!(artifact.size, bytes, "the artefact's size as stored");

    let done = c
        .complete_task(authed(
            pb::CompleteTaskRequest {
                task_id: task.clone(),
                records_affected: 1,
                export_data: br#"[{"recording":"recording.bin"}]"#.to_vec(),
                ..Default::default()
            },
            &token_as(SYSTEM, &["platform"], None),
        ))
        .await
        .expect("CompleteTask")
        .into_inner();
    let before_export = proc.memory();

    let sampler = Sampler::start(proc.pid());
    let started = Instant::now();
    let streamed = export(&mut c, &done.request_id).await;
    let export_time = started.elapsed();
    let export_peak = sampler.finish().await;
    let after = proc.memory();
    println!(
        "uploaded {megabytes} MiB in {:.1} s ({:.1} MiB/s); streamed a {:.1} MiB ZIP in {:.1} s \
         ({:.1} MiB/s), {} frames of at most {} KiB",
        upload_time.as_secs_f64(),
        megabytes as f64 / upload_time.as_secs_f64(),
        mib(streamed.bytes / 1024),
        export_time.as_secs_f64(),
        mib(streamed.bytes / 1024) / export_time.as_secs_f64(),
        streamed.frames,
        streamed.largest_frame / 1024
    );
    let bundle_mib = mib(streamed.bytes / 1024);
    verify(streamed.file, &artifact, &sent_sha256, bytes);
    println!("the ZIP checks out: 3 entries, the artefact's size and SHA-256 match what was sent\n");

    println!(
        "| server memory (MiB) | peak VmRSS | growth over baseline | share of the bundle | \
         peak RssAnon / RssFile | VmHWM | readings |"
    );
    println!("|---|---|---|---|---|---|---|");
    let at = |name: &str, m: Memory| {
        let growth = if m == baseline {
            String::new()
        } else {
            format!("+{:.1}", mib(m.rss_kib.saturating_sub(baseline.rss_kib)))
        };
        println!(
            "| {name} | {:.1} | {growth} | | {:.1} / {:.1} | {:.1} | 1 |",
            mib(m.rss_kib),
            mib(m.anon_kib),
            mib(m.file_kib),
            mib(m.peak_kib)
        );
    };
    at("idle baseline (request set up, task leased)", baseline);
    let up = report("uploading", baseline, upload_peak, bundle_mib);
    at("before the export (task completed)", before_export);
    let down = report("streaming the ZIP export", baseline, export_peak, bundle_mib);
    at("after the export", after);
    println!(
        "\npeak +{up:.1} MiB while uploading and +{down:.1} MiB while streaming a {bundle_mib:.1} MiB \
         bundle = {:.2} and {:.2} of the bundle (bound: +{max_growth_mb} MiB)",
        up / bundle_mib,
        down / bundle_mib
    );
    let bound = max_growth_mb as f64;
    let mut failed = Vec::new();
    if up > bound {
        failed.push(format!("uploading grew the server by {up:.1} MiB"));
    }
    if down > bound {
        failed.push(format!("streaming the export grew the server by {down:.1} MiB"));
    }
    if !failed.is_empty() {
        eprintln!(
            "FAIL: {} (over the {max_growth_mb} MiB bound: the server is holding the artefact or \
             the bundle in memory)",
            failed.join("; ")
        );
        drop(proc);
        drop(scratch);
        std::process::exit(1);
    }
}
