//! The real etcdctl against oxcd, and oxcdctl against oxcd, give etcdctl-against-etcd's
//! output for the same commands on the same data (IDs and raft term masked).

use oxcd_tests::{bin, ctl, run_tool, run_tool_env, system_bin, Kind, Server};
use regex::Regex;

/// (command line, stdin)
const SCRIPT: &[(&str, Option<&str>)] = &[
    ("put foo bar", None),
    ("put foo2 x --prev-kv", None),
    ("put foo baz --prev-kv -w json", None),
    ("put foo3 from-stdin", None),
    ("put stdin-key", Some("piped value")),
    ("get foo -w fields", None),
    ("get f --prefix", None),
    ("get f --prefix --keys-only", None),
    ("get f --prefix --print-value-only", None),
    ("get --from-key a -w json", None),
    ("get f --prefix --limit 1 -w json", None),
    ("get f --prefix --limit 1 -w fields", None),
    ("get f --prefix --sort-by=VERSION --order=DESCEND", None),
    ("get f --prefix --sort-by=MODIFY", None),
    (
        "get f --prefix --sort-by=CREATE --order=ASCEND -w json",
        None,
    ),
    ("get f --prefix --sort-by=VALUE --order=DESCEND", None),
    ("get foo foo3", None),
    ("get foo --rev 2 --print-value-only", None),
    ("get foo --hex", None),
    ("get foo --consistency=s", None),
    ("get foo --consistency=x", None),
    ("get foo -w table", None),
    ("get foo --prefix --from-key", None),
    ("get", None),
    ("put", None),
    ("put k --ignore-value", None),
    ("put k v --ignore-value", None),
    ("put k v --lease=zz", None),
    ("put k v --lease=1234", None),
    ("get foo --rev 99", None),
    (
        "txn",
        Some("value(\"foo\") = \"baz\"\n\nput foo ok\nget foo\n\ndel foo2\n\n"),
    ),
    (
        "txn -w json",
        Some("mod(\"foo\") > \"100\"\n\nput foo ok\n\nget foo --prefix\ndel foo2 --prev-kv\n\n"),
    ),
    (
        "txn -w fields",
        Some("ver(\"foo\") = \"3\"\n\nput foo v4\n\n\n"),
    ),
    (
        "txn",
        Some("mod(\"foo\") > \"100\"\n\nput foo ok\n\nput a 1\nput a 2\n\n"),
    ),
    (
        "txn",
        Some("create(\"nope\") = \"0\"\n\nput created 1\n\n\n"),
    ),
    (
        "txn -i",
        Some("value(\"foo\") = \"ok\"\n\nget foo\n\nput foo other\n\n"),
    ),
    ("txn --interactive -w json", Some("\nget foo\n\n\n")),
    ("txn", Some("bogus\n\n\n\n")),
    ("txn", Some("value(\"foo\") = \"x\"\n")),
    ("del foo --prev-kv -w fields", None),
    ("del foo3 --prev-kv", None),
    ("del a z", None),
    ("compaction 3", None),
    ("compaction 3", None),
    ("compaction 999", None),
    ("compaction x", None),
    ("get foo --rev 2", None),
    ("get foo --rev 3", None),
    ("del \"\" --prefix", None),
    ("get \"\" --prefix -w json", None),
    ("member list -w json", None),
];

fn mask(text: &str) -> String {
    let rules = [
        (r#""(cluster_id|member_id|raft_term|ID)":\d+"#, r#""$1":N"#),
        (r#""(ClusterID|MemberID|RaftTerm|ID)" : \d+"#, r#""$1" : N"#),
        (r"\n?[^\n]*retry_interceptor[^\n]*", ""),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:PORT"),
    ];
    let mut out = text.to_string();
    for (pat, rep) in rules {
        out = Regex::new(pat)
            .expect("regex")
            .replace_all(&out, rep)
            .into_owned();
    }
    out
}

fn words(line: &str) -> Vec<String> {
    // The script has no quoting beyond "" for an empty argument.
    line.split_whitespace()
        .map(|w| {
            if w == "\"\"" {
                String::new()
            } else {
                w.to_string()
            }
        })
        .collect()
}

fn transcript(tool: &std::path::Path, endpoint: &str) -> Vec<String> {
    SCRIPT
        .iter()
        .map(|(line, stdin)| {
            let mut args = vec!["--endpoints".to_string(), endpoint.to_string()];
            args.extend(words(line));
            let (out, err, code) = run_tool(tool, &args, Some(stdin.unwrap_or("")));
            mask(&format!("$ {line}\n{out}{err}exit {code}\n"))
        })
        .collect()
}

/// etcdctl 3.4 prints a usage screen for some refusals and oxcdctl a shorter one; the first
/// line (the error) and the exit code must still agree.
fn comparable(step: &str) -> String {
    if step.contains("Error: unknown flag") || step.contains("USAGE:") {
        let first: Vec<&str> = step.lines().take(2).collect();
        let code = step.lines().last().unwrap_or_default();
        return format!("{}\n{code}", first.join("\n"));
    }
    step.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_and_oxcdctl_output_matches_etcd() {
    let etcd = Server::start(Kind::Etcd, &[]);
    let oxcd_a = Server::start(Kind::Oxcd, &[]);
    let oxcd_b = Server::start(Kind::Oxcd, &[]);
    etcd.ready().await;
    oxcd_a.ready().await;
    oxcd_b.ready().await;
    let etcdctl = system_bin("etcdctl");
    let oxcdctl = bin("oxcdctl");
    let want = transcript(&etcdctl, &etcd.endpoint());
    let real_client = transcript(&etcdctl, &oxcd_a.endpoint());
    let our_client = transcript(&oxcdctl, &oxcd_b.endpoint());
    for ((w, r), o) in want.iter().zip(&real_client).zip(&our_client) {
        assert_eq!(
            r, w,
            "real etcdctl against oxcd (left) vs against etcd (right)"
        );
        assert_eq!(
            comparable(o),
            comparable(w),
            "oxcdctl against oxcd (left) vs etcdctl against etcd (right)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_health_and_status_work_with_both_clients() {
    let oxcd = Server::start(Kind::Oxcd, &[]);
    oxcd.ready().await;
    let ep = oxcd.endpoint();
    for tool in [system_bin("etcdctl"), bin("oxcdctl")] {
        let (out, _, code) = ctl(&tool, &ep, &["member", "list"]);
        assert_eq!(code, 0);
        let id = out.split(',').next().unwrap_or_default().to_string();
        assert!(
            !id.is_empty() && id.len() <= 16 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "{out}"
        );
        assert_eq!(
            out,
            format!(
                "{id}, started, default, http://127.0.0.1:{}, {}, false\n",
                oxcd.peer_port,
                oxcd.url()
            )
        );

        let (_, err, code) = ctl(&tool, &ep, &["endpoint", "health"]);
        assert_eq!(code, 0, "{}: {err}", tool.display());
        assert!(
            err.starts_with(&format!(
                "{ep} is healthy: successfully committed proposal: took = "
            )),
            "{err}"
        );

        let (out, err, code) = ctl(&tool, &ep, &["endpoint", "status", "-w", "table"]);
        assert_eq!(code, 0, "{err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 5, "{out}");
        assert!(
            lines[1].contains("ENDPOINT") && lines[1].contains("RAFT APPLIED INDEX"),
            "{out}"
        );
        assert!(
            lines[3].contains(&ep) && lines[3].contains(&id) && lines[3].contains("true"),
            "{out}"
        );

        let (out, _, code) = ctl(&tool, &ep, &["endpoint", "status", "-w", "json"]);
        assert_eq!(code, 0);
        assert!(
            out.starts_with(&format!(
                "[{{\"Endpoint\":\"{ep}\",\"Status\":{{\"header\":{{\"cluster_id\":"
            )),
            "{out}"
        );
        assert!(out.contains("\"version\":\"3.5.13\""), "{out}");

        // etcdctl 3.4 dials a single endpoint with the whole URL as the HTTP/2 :authority
        // (`--cluster`, URL-form endpoints); oxcd must accept it as etcd does.
        let (out, err, code) = ctl(&tool, &ep, &["endpoint", "status", "--cluster"]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.starts_with(&format!("{}, {id}, 3.5.13, ", oxcd.url())),
            "{out}"
        );
        let (out, err, code) = ctl(&tool, &oxcd.url(), &["endpoint", "status"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with(&format!("{}, {id}, ", oxcd.url())), "{out}");
    }
    let dead = format!("127.0.0.1:{}", oxcd_tests::free_port());
    let (_, err, code) = ctl(
        &bin("oxcdctl"),
        &dead,
        &["--dial-timeout=300ms", "endpoint", "health"],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("{dead} is unhealthy: failed to commit proposal: "))
            && err.ends_with("Error: unhealthy cluster\n"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_only_is_for_fields_output_as_in_etcdctl_3_5() {
    let oxcd = Server::start(Kind::Oxcd, &[]);
    oxcd.ready().await;
    let oxcdctl = bin("oxcdctl");
    let ep = oxcd.endpoint();
    for k in ["a1", "a2", "b1"] {
        let (_, _, code) = ctl(&oxcdctl, &ep, &["put", k, "v"]);
        assert_eq!(code, 0);
    }
    let (out, _, code) = ctl(
        &oxcdctl,
        &ep,
        &["get", "a", "--prefix", "--count-only", "-w", "fields"],
    );
    assert_eq!(code, 0);
    assert!(out.ends_with("\"More\" : false\n\"Count\" : 2\n"), "{out}");
    assert!(!out.contains("\"Key\""), "{out}");
    let (_, err, code) = ctl(&oxcdctl, &ep, &["get", "a", "--count-only"]);
    assert_eq!(code, 128);
    assert_eq!(
        err,
        "Error: --count-only is only for `--write-out=fields`\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_variables_configure_oxcdctl_and_flags_win() {
    let oxcd = Server::start(Kind::Oxcd, &[]);
    oxcd.ready().await;
    let oxcdctl = bin("oxcdctl");
    let ep = oxcd.endpoint();
    let env = [
        ("ETCDCTL_ENDPOINTS", ep.as_str()),
        ("ETCDCTL_WRITE_OUT", "json"),
        ("ETCDCTL_COMMAND_TIMEOUT", "3s"),
    ];
    let (out, err, code) = run_tool_env(
        &oxcdctl,
        &["put".into(), "k".into(), "v".into()],
        None,
        &env,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("{\"header\":{\"cluster_id\":"), "{out}");
    let (out, _, code) = run_tool_env(
        &oxcdctl,
        &["get".into(), "k".into(), "-w".into(), "simple".into()],
        None,
        &env,
    );
    assert_eq!((out.as_str(), code), ("k\nv\n", 0));
    let (_, err, code) = run_tool_env(
        &oxcdctl,
        &["get".into(), "k".into()],
        None,
        &[("ETCDCTL_DIAL_TIMEOUT", "bogus")],
    );
    assert_eq!(code, 128, "{err}");
    assert!(
        err.contains("invalid argument \"bogus\" for \"--dial-timeout\" flag"),
        "{err}"
    );
}

/// `check datascale` as etcdctl 3.4 runs it: 10,000 puts of 1 KiB under its prefix, the
/// server's resident memory before and after from /metrics, the prefix deleted, compacted
/// and defragmented; a prefix holding keys is refused with etcdctl's words.
#[tokio::test]
async fn check_datascale_reports_memory_and_cleans_up_as_etcdctl_does() {
    let server = Server::start(Kind::Oxcd, &[]);
    server.ready().await;
    let ep = server.endpoint();
    let oxcdctl = bin("oxcdctl");
    let args = ["check", "datascale", "--auto-compact", "--auto-defrag"];
    let (out, err, code) = ctl(&oxcdctl, &ep, &args);
    assert_eq!(code, 0, "{out}{err}");
    let expected = Regex::new(&format!(
        "^Start data scale check for work load \\[10000 key-value pairs, 1024 bytes per key-value, 50 concurrent clients\\]\\.\n\
         Compacting with revision (\\d+)\nCompacted with revision (\\d+)\n\
         Defragmenting \"{ep}\"\nDefragmented \"{ep}\"\n\
         PASS: Approximate system memory used : -?\\d+\\.\\d\\d MB\\.\n$"
    ))
    .expect("regex");
    assert!(expected.is_match(&out), "{out}");
    let (left, _, _) = ctl(
        &oxcdctl,
        &ep,
        &[
            "get",
            "/etcdctl-check-datascale/",
            "--prefix",
            "--count-only",
            "-w",
            "fields",
        ],
    );
    assert!(left.contains("\"Count\" : 0"), "{left}");

    let (_, _, code) = ctl(&oxcdctl, &ep, &["put", "/etcdctl-check-datascale/x", "1"]);
    assert_eq!(code, 0);
    let ours = ctl(&oxcdctl, &ep, &["check", "datascale"]);
    let theirs = ctl(&system_bin("etcdctl"), &ep, &["check", "datascale"]);
    assert_eq!(ours, theirs);
    assert_eq!(ours.2, 3, "{ours:?}");
}

/// On a terminal, long work draws its progress (done, rate, time left) on stderr; the
/// result lines stay etcdctl's. `script` gives oxcdctl a terminal.
#[tokio::test]
async fn on_a_terminal_long_work_shows_its_progress() {
    let server = Server::start(Kind::Oxcd, &[]);
    server.ready().await;
    let command = format!(
        "{} --endpoints={} check datascale",
        bin("oxcdctl").display(),
        server.endpoint()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("script (util-linux)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("check datascale [")
            && text.contains("/10,000 keys")
            && text.contains(" left"),
        "{text}"
    );
    assert!(
        text.contains("PASS: Approximate system memory used"),
        "{text}"
    );
}
