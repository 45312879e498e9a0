//! Running oxcd as a service: the systemd unit (checked by systemd-analyze), readiness told
//! to systemd over NOTIFY_SOCKET (Type=notify) once clients are served, and shell
//! completions for oxcdctl and oxcdutl.

use oxcd_tests::{bin, run_tool, Kind, Server};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn dist(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../dist")
        .join(file)
        .canonicalize()
        .expect("dist file")
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(dist("oxcd.service")).expect("read unit");
    // verify wants the programs and files the unit names to exist here.
    let local = unit
        .replace(
            "ExecStart=/usr/local/bin/oxcd",
            &format!("ExecStart={}", bin("oxcd").display()),
        )
        .replace(
            "EnvironmentFile=/etc/etcd.env",
            &format!("EnvironmentFile={}", dist("etcd.env").display()),
        );
    assert!(local.contains("Type=notify"), "{local}");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("oxcd.service");
    std::fs::write(&path, local).expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian's systemd package)");
    let said =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oxcd_tells_systemd_it_is_ready_once_it_serves_clients_and_when_it_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let path = socket_path.display().to_string();
    let mut server = Server::start_with_env(Kind::Oxcd, &[], &[("NOTIFY_SOCKET", path.as_str())]);
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("READY=1 within 60 s");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "READY=1");
    // Ready means clients are served now, not eventually.
    let mut kv = oxcd_api::etcdserverpb::kv_client::KvClient::new(
        server.channel().await.expect("dial right after READY=1"),
    );
    kv.put(oxcd_tests::kv::put("ready", "yes"))
        .await
        .expect("a put right after READY=1");
    server.stop();
    let n = socket.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "STOPPING=1");
}

#[test]
fn completion_scripts_load_in_bash_for_oxcdctl_and_oxcdutl() {
    for tool in ["oxcdctl", "oxcdutl"] {
        let (script, err, code) = run_tool(&bin(tool), &["completion".into(), "bash".into()], None);
        assert_eq!(code, 0, "{err}");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("completion.bash");
        std::fs::write(&file, &script).expect("write script");
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("source {} && complete -p {tool}", file.display()))
            .output()
            .expect("bash");
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success()
                && said.contains(&format!("_{tool}"))
                && said.ends_with(&format!("{tool}\n")),
            "{tool}: {said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for shell in ["zsh", "fish", "powershell"] {
            let (script, err, code) =
                run_tool(&bin(tool), &["completion".into(), shell.into()], None);
            assert!(code == 0 && script.contains(tool), "{tool} {shell}: {err}");
        }
    }
}
