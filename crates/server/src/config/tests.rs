use super::*;

fn run(args: &[&str], env: &[(&str, &str)]) -> Result<(Config, Vec<String>), ConfigError> {
    let mut argv = vec!["oxcd".to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match parse(argv, &env)? {
        Parsed::Run { config, warnings } => Ok((*config, warnings)),
        Parsed::Version | Parsed::Help(_) => panic!("unexpected --version or --help"),
    }
}

#[test]
fn defaults_match_etcd() {
    let (c, _) = run(&[], &[]).expect("defaults parse");
    assert_eq!(c.name, "default");
    assert_eq!(c.data_dir, "default.etcd");
    assert_eq!(c.heartbeat_interval_ms, 100);
    assert_eq!(c.election_timeout_ms, 1000);
    assert_eq!(c.max_txn_ops, 128);
    assert_eq!(c.max_request_bytes, 1572864);
    assert_eq!(
        c.initial_cluster.get("default"),
        Some(&vec!["http://localhost:2380".to_string()])
    );
}

#[test]
fn flag_wins_over_env_with_a_warning() {
    let (c, w) = run(
        &["--name", "bar"],
        &[("ETCD_NAME", "foo"), ("ETCD_SNAPSHOT_COUNT", "7")],
    )
    .expect("parse");
    assert_eq!(c.name, "bar");
    assert_eq!(c.snapshot_count, 7);
    assert!(
        w.iter().any(|m| m.contains("\"ETCD_NAME\" is shadowed")),
        "{w:?}"
    );
}

#[test]
fn bad_values_get_etcds_messages() {
    let e = run(&["--heartbeat-interval=abc"], &[]).expect_err("must fail");
    assert_eq!(
        e.message,
        "invalid value \"abc\" for flag -heartbeat-interval: parse error"
    );
    assert!(e.usage);
    let e =
        run(&["--election-timeout=100", "--heartbeat-interval=100"], &[]).expect_err("must fail");
    assert!(e.message.contains(
        "--election-timeout[100ms] should be at least as 5 times as --heartbeat-interval[100ms]"
    ));
    let e = run(&["--initial-cluster-state=bogus"], &[]).expect_err("must fail");
    assert!(e.message.contains("valid values are \"new\", \"existing\""));
}

#[test]
fn unacted_flags_are_accepted_with_a_warning() {
    let (c, w) = run(
        &[
            "--enable-pprof",
            "--experimental-memory-mlock=true",
            "--experimental-compaction-batch-limit=500",
            "--experimental-compaction-sleep-interval=20ms",
            "--strict-reconfig-check=false",
        ],
        &[],
    )
    .expect("parse");
    assert!(w.iter().any(|m| m.contains("--enable-pprof")), "{w:?}");
    assert!(
        w.iter().any(|m| m.contains("--experimental-memory-mlock")),
        "{w:?}"
    );
    assert!(
        !w.iter().any(|m| m.contains("compaction")),
        "acted on: {w:?}"
    );
    assert_eq!(c.compaction_batch_limit, 500);
    assert_eq!(
        c.compaction_sleep_interval,
        std::time::Duration::from_millis(20)
    );
}

#[test]
fn the_backend_batch_flags_set_when_the_backend_is_made_durable() {
    let (c, w) = run(
        &["--backend-batch-interval=250ms", "--backend-batch-limit=40"],
        &[],
    )
    .expect("parse");
    assert!(
        !w.iter().any(|m| m.contains("backend-batch")),
        "acted on: {w:?}"
    );
    assert_eq!(
        c.backend_batch_interval,
        std::time::Duration::from_millis(250)
    );
    assert_eq!(c.backend_batch_limit, 40);
    let (c, _) = run(&[], &[]).expect("parse");
    assert_eq!(c.backend_batch_interval, std::time::Duration::ZERO);
    assert_eq!(c.backend_batch_limit, 0);
    let e = run(&["--backend-batch-interval=soon"], &[]).expect_err("not a duration");
    assert!(
        e.message
            .contains("invalid value \"soon\" for flag -backend-batch-interval"),
        "{}",
        e.message
    );
}

#[test]
fn config_file_uses_etcds_yaml_keys() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("etcd.yaml");
    std::fs::write(&p, "name: y1\nsnapshot-count: 5\nlisten-client-urls: http://127.0.0.1:4001\nmax-txn-ops: 9\nbackend-batch-interval: 100000000\nexperimental-compaction-sleep-interval: 20000000\nclient-transport-security:\n  cert-file: ''\n").expect("write");
    let (c, _) = run(
        &[
            "--config-file",
            p.to_str().expect("utf8"),
            "--name",
            "ignored",
        ],
        &[],
    )
    .expect("parse");
    assert_eq!(c.name, "y1");
    assert_eq!(c.snapshot_count, 5);
    assert_eq!(c.max_txn_ops, 9);
    assert_eq!(c.listen_client_urls[0].port(), Some(4001));
    // Durations as etcd's file holds them: nanoseconds.
    assert_eq!(
        c.backend_batch_interval,
        std::time::Duration::from_millis(100)
    );
    assert_eq!(
        c.compaction_sleep_interval,
        std::time::Duration::from_millis(20)
    );
}

#[test]
fn force_new_cluster_is_acted_on() {
    let (c, _) = run(&[], &[]).expect("defaults parse");
    assert!(!c.force_new_cluster);
    let (c, w) = run(&["--force-new-cluster"], &[]).expect("parse");
    assert!(c.force_new_cluster);
    assert!(
        !w.iter().any(|m| m.contains("force-new-cluster")),
        "acted on: {w:?}"
    );
    let (c, _) = run(&[], &[("ETCD_FORCE_NEW_CLUSTER", "true")]).expect("parse env");
    assert!(c.force_new_cluster);
}

#[test]
fn a_flag_given_twice_takes_the_last_value_as_gos_flag_package_does() {
    let (c, _) = run(
        &[
            "--name",
            "first",
            "--name=second",
            "--client-cert-auth",
            "--client-cert-auth",
            "--pre-vote=false",
            "--pre-vote",
            "--snapshot-count=5",
            "--snapshot-count=6",
        ],
        &[],
    )
    .expect("repeats parse");
    assert_eq!(c.name, "second");
    assert_eq!(c.snapshot_count, 6);
    assert!(c.pre_vote);
}

#[test]
fn cipher_suites_are_checked_at_start_with_etcds_messages() {
    let tls = ["--cert-file=c.pem", "--key-file=k.pem"];
    let with = |extra: &[&str]| {
        let mut args = tls.to_vec();
        args.extend(extra);
        run(&args, &[])
    };
    let (c, _) = with(&[
        "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,TLS_AES_128_GCM_SHA256",
    ])
    .expect("parse");
    let suites = c.client_tls.expect("client tls").cipher_suites;
    assert_eq!(suites.len(), 3);
    assert_eq!(
        crate::tls::cipher_suites(&suites).expect("known").len(),
        2,
        "TLS 1.3 names choose nothing"
    );
    let e = with(&["--cipher-suites=TLS_FOO"]).expect_err("unknown");
    assert!(
        e.message
            .contains("unexpected TLS cipher suite \"TLS_FOO\""),
        "{}",
        e.message
    );
    let e = with(&["--cipher-suites=TLS_RSA_WITH_AES_128_CBC_SHA"]).expect_err("unsupported");
    assert!(e.message.contains("cannot be honoured"), "{}", e.message);
    let e = with(&[
        "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "--tls-min-version=TLS1.3",
    ])
    .expect_err("1.3 only");
    assert!(
        e.message
            .contains("cipher suites cannot be configured when only TLS1.3 is enabled"),
        "{}",
        e.message
    );
}

#[test]
fn allowed_names_come_from_flags_and_the_config_file_and_cn_excludes_hostname() {
    let (c, _) = run(
        &[
            "--cert-file=c.pem",
            "--key-file=k.pem",
            "--client-cert-allowed-hostname=a.example,b.example",
            "--peer-cert-file=c.pem",
            "--peer-key-file=k.pem",
            "--peer-cert-allowed-cn=m1,m2",
        ],
        &[],
    )
    .expect("parse");
    let client = c.client_tls.expect("client tls");
    assert_eq!(client.allowed_hostnames, ["a.example", "b.example"]);
    assert_eq!(c.peer_tls.expect("peer tls").allowed_cns, ["m1", "m2"]);
    let e = run(
        &[
            "--peer-cert-file=c.pem",
            "--peer-key-file=k.pem",
            "--peer-cert-allowed-cn=m1",
            "--peer-cert-allowed-hostname=h.example",
        ],
        &[],
    )
    .expect_err("exclusive");
    assert!(
        e.message.contains(
            "AllowedCNs and AllowedHostnames are mutually exclusive (cns=[\"m1\"], hostnames=[\"h.example\"])"
        ),
        "{}",
        e.message
    );
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("etcd.yaml");
    std::fs::write(&p, "host-whitelist: a.example\nclient-transport-security:\n  cert-file: c.pem\n  key-file: k.pem\n  allowed-hostname: c.example\n").expect("write");
    let (c, w) = run(&["--config-file", p.to_str().expect("utf8")], &[]).expect("parse");
    assert_eq!(c.client_tls.expect("tls").allowed_hostnames, ["c.example"]);
    assert_eq!(c.host_whitelist, ["a.example"]);
    assert!(!w.iter().any(|m| m.contains("does not act")), "{w:?}");
}

#[test]
fn a_flag_not_acted_on_is_named_from_variables_and_the_config_file_too() {
    let warned = |w: &[String]| w.iter().any(|m| m.contains("--enable-pprof is accepted"));
    let (_, w) = run(&[], &[("ETCD_ENABLE_PPROF", "true")]).expect("parse env");
    assert!(warned(&w), "{w:?}");
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("etcd.yaml");
    std::fs::write(&p, "enable-pprof: true\n").expect("write");
    let (_, w) = run(&["--config-file", p.to_str().expect("utf8")], &[]).expect("parse file");
    assert!(warned(&w), "{w:?}");
}

#[test]
fn the_shipped_environment_file_is_read_whole_and_acted_on() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../dist/etcd.env");
    let text = std::fs::read_to_string(path).expect("dist/etcd.env");
    let env: Vec<(&str, &str)> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    assert!(env.len() > 10, "{env:?}");
    let (c, w) = run(&[], &env).expect("the file's settings parse");
    assert_eq!(
        (c.heartbeat_interval_ms, c.election_timeout_ms),
        (250, 5000)
    );
    assert!(c.client_tls.is_some() && c.peer_tls.is_some());
    assert!(
        !w.iter()
            .any(|m| m.contains("unrecognized") || m.contains("does not act")),
        "{w:?}"
    );
}
