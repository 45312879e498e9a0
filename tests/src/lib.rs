//! Helpers for tests that run oxcd and real etcd as processes on loopback: free ports,
//! processes stopped by PID, readiness waited for with a deadline.

use oxcd_api::etcdserverpb::kv_client::KvClient;
use oxcd_api::etcdserverpb::RangeRequest;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tonic::transport::Channel;

/// A free TCP port on 127.0.0.1 that no earlier call in this process returned.
///
/// Ports come from below the kernel's ephemeral range, so neither outgoing connections nor
/// another `bind(0)` can take them between this call and the server binding them; the kernel's
/// own `bind(0)` may hand the same port out twice in a row, which broke a CI run.
pub fn free_port() -> u16 {
    use rand::Rng;
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let handed_out = HANDED_OUT.get_or_init(|| Mutex::new(HashSet::new()));
    let mut rng = rand::thread_rng();
    for _ in 0..1000 {
        let port = rng.gen_range(20_000..32_000);
        let mut taken = handed_out.lock().unwrap_or_else(|e| e.into_inner());
        if taken.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        taken.insert(port);
        return port;
    }
    panic!("no free loopback port in 20000..32000")
}

pub mod certs;
pub mod cluster;
pub mod http;
pub mod k8s;
pub mod kv;
pub mod linearizability;
pub mod proxy;
pub mod tools;
pub mod wait;

pub use tools::{ctl, run_tool, run_tool_env, Tool};

/// Directory holding this workspace's built binaries (target/debug or target/release).
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("OXCD_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/it-<hash>
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --bins` first",
        p.display()
    );
    p
}

/// A program the tests need from the system (real etcd, etcdctl).
pub fn system_bin(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not installed: run ./scripts/test.sh, which installs Debian's etcd-server and etcd-client");
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Oxcd,
    Etcd,
}

/// A server process with its own data dir; killed (by PID) when dropped.
pub struct Server {
    pub kind: Kind,
    pub child: Option<Child>,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    pub extra: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The loopback address it serves clients on.
    pub host: String,
    /// The whole command line, when the caller builds it (cluster members).
    pub custom_args: Option<Vec<String>>,
    /// With TLS on the client URL: what test clients present and trust.
    pub tls: Option<oxcd_client::ClientTls>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.client_port)
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.host, self.client_port)
    }

    /// A single server with TLS on its client URL; `client` is how test clients dial it.
    pub fn start_tls(kind: Kind, extra: &[&str], client: oxcd_client::ClientTls) -> Server {
        let mut s = Self::unstarted(kind, extra, &[]);
        s.tls = Some(client);
        s.spawn();
        s
    }

    /// A gRPC channel to the client URL (TLS as the server wants it).
    pub async fn channel(&self) -> Result<Channel, String> {
        let tls = match &self.tls {
            Some(t) => Some(oxcd_client::tls::client_config(t)?),
            None => None,
        };
        oxcd_client::dial::channel(&self.url(), tls, None, |e| {
            e.connect_timeout(Duration::from_secs(2))
        })
        .await
    }

    pub fn start(kind: Kind, extra: &[&str]) -> Server {
        Self::start_with_env(kind, extra, &[])
    }

    pub fn start_with_env(kind: Kind, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut s = Self::unstarted(kind, extra, env);
        s.spawn();
        s
    }

    fn unstarted(kind: Kind, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        Server {
            kind,
            child: None,
            client_port: free_port(),
            peer_port: free_port(),
            data_dir: dir.path().join("data"),
            log_path: dir.path().join("server.log"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            host: "127.0.0.1".into(),
            custom_args: None,
            tls: None,
            _dir: Some(dir),
        }
    }

    /// A cluster member: `args` is its whole command line; nothing is started yet.
    pub fn member(
        host: &str,
        client_port: u16,
        peer_port: u16,
        data_dir: PathBuf,
        args: Vec<String>,
    ) -> Server {
        Server {
            kind: Kind::Oxcd,
            child: None,
            client_port,
            peer_port,
            log_path: data_dir.with_extension("log"),
            data_dir,
            extra: vec![],
            env: vec![],
            host: host.into(),
            custom_args: Some(args),
            tls: None,
            _dir: None,
        }
    }

    pub fn args(&self) -> Vec<String> {
        if let Some(a) = &self.custom_args {
            return a.clone();
        }
        let client = self.url();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut a = vec![
            "--name".into(),
            "default".into(),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
            "--listen-client-urls".into(),
            client.clone(),
            "--advertise-client-urls".into(),
            client,
            "--listen-peer-urls".into(),
            peer.clone(),
            "--initial-advertise-peer-urls".into(),
            peer.clone(),
            "--initial-cluster".into(),
            format!("default={peer}"),
        ];
        if self.kind == Kind::Etcd {
            a.push("--logger=zap".into());
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    /// Starts the process (again) on the same data dir and ports.
    pub fn spawn(&mut self) {
        let program = match self.kind {
            Kind::Oxcd => bin("oxcd"),
            Kind::Etcd => system_bin("etcd"),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let child = Command::new(program)
            .args(self.args())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn server");
        self.child = Some(child);
    }

    /// The process ID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// kill -9 by PID, then reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sets failpoint `name` to `actions` (the fail crate's syntax) on the running member;
    /// the binary must be built with `--features oxcd-server/failpoints`.
    pub fn failpoint(&self, name: &str, actions: &str) {
        let path = format!("/debug/failpoints/{name}");
        let reply = http::try_request(&self.endpoint(), "PUT", &path, actions, &[]);
        assert!(
            reply.as_ref().is_some_and(|r| r.status == 204),
            "failpoint {name}={actions}: {reply:?} (is oxcd built with --features oxcd-server/failpoints?)"
        );
    }

    /// Clears failpoint `name`; false if the member did not answer.
    pub fn clear_failpoint(&self, name: &str) -> bool {
        let path = format!("/debug/failpoints/{name}");
        http::try_request(&self.endpoint(), "DELETE", &path, "", &[])
            .is_some_and(|r| r.status == 204)
    }

    /// Every failpoint the running member has, by name.
    pub fn failpoint_names(&self) -> Vec<String> {
        let reply = http::request(&self.endpoint(), "GET", "/debug/failpoints", "", &[]);
        assert_eq!(
            reply.status, 200,
            "no failpoints (is oxcd built with --features oxcd-server/failpoints?)"
        );
        reply
            .body
            .lines()
            .filter_map(|l| l.split_once('=').map(|(name, _)| name.to_string()))
            .collect()
    }

    /// SIGSTOP by PID: the process holds its sockets but answers nothing.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT by PID after `pause`.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .arg(signal)
                .arg(pid.to_string())
                .status();
        }
    }

    /// SIGTERM by PID and wait (bounded) for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            if wait::wait_exit(&mut c, Duration::from_secs(10)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// Whether the process has exited (it is reaped then); never waits.
    pub fn exited(&mut self) -> bool {
        let gone = self
            .child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_some());
        if gone {
            self.child = None;
        }
        gone
    }

    /// The process's exit status if it has exited by the deadline.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let status = wait::wait_exit(self.child.as_mut()?, within)?;
        self.child = None;
        Some(status)
    }

    /// Waits (bounded) until the log contains `text`.
    pub async fn wait_for_log(&self, text: &str, within: Duration) -> bool {
        let poll = Duration::from_millis(20);
        wait::retry(within, poll, || async move {
            self.log().contains(text).then_some(()).ok_or(())
        })
        .await
        .is_ok()
    }

    /// The raft log files in the data dir.
    pub fn wal_files(&self) -> Vec<PathBuf> {
        let dir = self.data_dir.join("member").join("wal");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "wal"));
        files.sort();
        files
    }

    /// A client once the server answers a serializable read, within 30 s.
    pub async fn ready(&self) -> KvClient<Channel> {
        let probe = RangeRequest {
            key: b"ready-probe".to_vec(),
            serializable: true,
            ..Default::default()
        };
        let ready = wait::retry(Duration::from_secs(30), wait::POLL, || {
            let probe = probe.clone();
            async move {
                let mut kv = KvClient::new(self.channel().await?);
                kv.range(probe).await.map_err(|e| e.to_string())?;
                Ok::<_, String>(kv)
            }
        })
        .await;
        ready.unwrap_or_else(|_| {
            panic!("{:?} not ready within 30s; log:\n{}", self.kind, self.log())
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A counter or gauge (a histogram's `_count`, `_sum`) from a member's /metrics; None when
/// the series is absent.
pub fn metric(endpoint: &str, name: &str) -> Option<f64> {
    let (_, text) = http_get(endpoint, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// A plain HTTP/1.1 GET to `host:port` (the client port serves HTTP beside gRPC): the
/// status code and body.
pub fn http_get(host_port: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(host_port).expect("connect for HTTP");
    let _ = s.set_read_timeout(Some(Duration::from_secs(15)));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\r\n"
    )
    .expect("send HTTP request");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    http::status_and_body(&raw)
}
