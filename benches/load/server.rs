//! A `proctor serve` child process for load runs: its own SQLite database
//! (or the URL given) in a temporary folder, the HS256 development secret,
//! development server keys, a free loopback port. Being a separate process, its memory is the
//! server's alone, read from `/proc/PID/status` (Linux).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// The server's resident memory at one moment, KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// Resident now (`VmRSS`).
    pub rss_kib: u64,
    /// Highest resident so far (`VmHWM`).
    pub peak_kib: u64,
    /// Of `rss_kib`, anonymous memory (`RssAnon`: the heap, what the
    /// server allocated), 0 where the kernel does not say.
    pub anon_kib: u64,
    /// Of `rss_kib`, file pages mapped (`RssFile`: the binary, libraries,
    /// memory-mapped database files), 0 where the kernel does not say.
    pub file_kib: u64,
}

/// A running `proctor serve`, killed when dropped.
pub struct ServerProcess {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts `bin serve`; `database_url` defaults to SQLite in the folder.
    pub fn start(bin: &Path, database_url: Option<&str>, env: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("hs256");
        std::fs::write(&secret, super::SECRET).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = database_url
            .map(str::to_owned)
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("load.db").display()));
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let mut cmd = Command::new(bin);
        cmd.current_dir(dir.path())
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--database-url", &url])
            .args(["--data-dir", &dir.path().join("data").to_string_lossy()])
            .args(["--jwt-hs256-secret-file", &secret.to_string_lossy()])
            // One replica: development keys in its folder, on PostgreSQL too.
            .arg("--dev-keys")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self {
            child: cmd.spawn().expect("proctor starts"),
            port,
            dir,
        }
    }

    /// `n` connections, once the server reports SERVING.
    pub async fn channels(&self, n: usize) -> Vec<Channel> {
        let url = format!("http://127.0.0.1:{}", self.port);
        let mut first = None;
        for _ in 0..600 {
            if let Ok(c) = Channel::from_shared(url.clone()).unwrap().connect().await {
                let serving = HealthClient::new(c.clone())
                    .check(HealthCheckRequest::default())
                    .await
                    .is_ok_and(|r| r.into_inner().status == 1);
                if serving {
                    first = Some(c);
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let first = first.unwrap_or_else(|| panic!("proctor never served on {url}: {}", self.log()));
        let mut out = vec![first];
        while out.len() < n {
            out.push(
                Channel::from_shared(url.clone())
                    .unwrap()
                    .connect()
                    .await
                    .unwrap(),
            );
        }
        out
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The server's process id, for sampling its memory from another task.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's memory now.
    pub fn memory(&self) -> Memory {
        memory_of(self.child.id())
    }
}

/// The memory of process `pid` now.
pub fn memory_of(pid: u32) -> Memory {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status is readable (Linux)");
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    let kib = |key: &str| field(key).unwrap_or_else(|| panic!("no {key} in /proc/PID/status"));
    Memory {
        rss_kib: kib("VmRSS:"),
        peak_kib: kib("VmHWM:"),
        anon_kib: field("RssAnon:").unwrap_or(0),
        file_kib: field("RssFile:").unwrap_or(0),
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
