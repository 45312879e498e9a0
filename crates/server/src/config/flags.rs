//! etcd's flags: names, defaults, how each takes its value, and their `ETCD_*` variables.

use super::types::{usage_err, ConfigError};
use clap::{Arg, ArgAction, Command};

/// How a flag takes its value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    Uint,
    Int,
    Bool,
}

/// etcd's flags. `acted` is false for flags oxcd accepts but does not act on yet.
pub(crate) struct FlagSpec {
    pub(crate) name: &'static str,
    pub(crate) default: &'static str,
    pub(crate) kind: Kind,
    pub(crate) acted: bool,
}

const fn f(name: &'static str, default: &'static str, kind: Kind, acted: bool) -> FlagSpec {
    FlagSpec {
        name,
        default,
        kind,
        acted,
    }
}

use Kind::*;

/// Flags that take a Go duration. etcd's config file gives these as integer nanoseconds
/// (its YAML goes through JSON into Go's `time.Duration`).
pub(crate) const DURATIONS: &[&str] = &[
    "backend-batch-interval",
    "backup-interval",
    "experimental-compaction-sleep-interval",
    "experimental-corrupt-check-time",
    "experimental-watch-progress-notify-interval",
];

pub(crate) const FLAGS: &[FlagSpec] = &[
    f("name", "default", Str, true),
    f("data-dir", "", Str, true),
    f("wal-dir", "", Str, true),
    f("snapshot-count", "100000", Uint, true),
    f("heartbeat-interval", "100", Uint, true),
    f("election-timeout", "1000", Uint, true),
    f("listen-peer-urls", "http://localhost:2380", Str, true),
    f("listen-client-urls", "http://localhost:2379", Str, true),
    f(
        "initial-advertise-peer-urls",
        "http://localhost:2380",
        Str,
        true,
    ),
    f("initial-cluster", "", Str, true),
    f("initial-cluster-state", "new", Str, true),
    f("initial-cluster-token", "etcd-cluster", Str, true),
    f("advertise-client-urls", "http://localhost:2379", Str, true),
    f("quota-backend-bytes", "0", Int, true),
    f("max-request-bytes", "1572864", Uint, true),
    // oxcd's own: etcd's gRPC send limit (math.MaxInt32), which etcd does not let one set.
    f("max-response-bytes", "2147483647", Uint, true),
    f("max-txn-ops", "128", Uint, true),
    f("log-level", "info", Str, true),
    f("logger", "zap", Str, true),
    f("log-outputs", "default", Str, true),
    f("initial-election-tick-advance", "true", Bool, false),
    f("listen-client-http-urls", "", Str, false),
    f("max-snapshots", "5", Uint, false),
    f("max-wals", "5", Uint, false),
    f("backend-bbolt-freelist-type", "map", Str, false),
    f("backend-batch-interval", "0", Str, true),
    f("backend-batch-limit", "0", Int, true),
    f("grpc-keepalive-min-time", "5s", Str, false),
    f("grpc-keepalive-interval", "2h0m0s", Str, false),
    f("grpc-keepalive-timeout", "20s", Str, false),
    f("socket-reuse-port", "false", Bool, false),
    f("socket-reuse-address", "false", Bool, false),
    f("discovery", "", Str, false),
    f("discovery-fallback", "proxy", Str, false),
    f("discovery-proxy", "", Str, false),
    f("discovery-srv", "", Str, false),
    f("discovery-srv-name", "", Str, false),
    f("strict-reconfig-check", "true", Bool, true),
    f("pre-vote", "true", Bool, true),
    f("auto-compaction-retention", "0", Str, true),
    f("auto-compaction-mode", "periodic", Str, true),
    f("enable-v2", "false", Bool, false),
    f("v2-deprecation", "not-yet", Str, false),
    f("cert-file", "", Str, true),
    f("key-file", "", Str, true),
    f("client-cert-auth", "false", Bool, true),
    f("client-crl-file", "", Str, true),
    f("client-cert-allowed-hostname", "", Str, true),
    f("trusted-ca-file", "", Str, true),
    f("auto-tls", "false", Bool, true),
    f("self-signed-cert-validity", "1", Uint, true),
    f("peer-cert-file", "", Str, true),
    f("peer-key-file", "", Str, true),
    f("peer-client-cert-auth", "false", Bool, true),
    f("peer-trusted-ca-file", "", Str, true),
    f("peer-auto-tls", "false", Bool, true),
    f("peer-cert-allowed-cn", "", Str, true),
    f("peer-cert-allowed-hostname", "", Str, true),
    f("peer-crl-file", "", Str, true),
    f("cipher-suites", "", Str, true),
    f("cors", "*", Str, false),
    f("host-whitelist", "*", Str, true),
    f("tls-min-version", "TLS1.2", Str, true),
    f("tls-max-version", "", Str, true),
    f("auth-token", "simple", Str, true),
    f("bcrypt-cost", "10", Uint, true),
    f("auth-token-ttl", "300", Uint, true),
    f("enable-pprof", "false", Bool, false),
    f("metrics", "basic", Str, true),
    f("listen-metrics-urls", "", Str, true),
    f("enable-log-rotation", "false", Bool, false),
    f("log-rotation-config-json", "", Str, false),
    f("force-new-cluster", "false", Bool, true),
    f("unsafe-no-fsync", "false", Bool, false),
    f("experimental-initial-corrupt-check", "false", Bool, true),
    f("experimental-corrupt-check-time", "0s", Str, true),
    f("experimental-enable-v2v3", "", Str, false),
    f("experimental-enable-lease-checkpoint", "false", Bool, false),
    f(
        "experimental-enable-lease-checkpoint-persist",
        "false",
        Bool,
        false,
    ),
    f("experimental-compaction-batch-limit", "1000", Int, true),
    f("experimental-compaction-sleep-interval", "10ms", Str, true),
    f(
        "experimental-peer-skip-client-san-verification",
        "false",
        Bool,
        false,
    ),
    f(
        "experimental-watch-progress-notify-interval",
        "10m0s",
        Str,
        true,
    ),
    f("experimental-warning-apply-duration", "100ms", Str, false),
    f(
        "experimental-txn-mode-write-with-shared-buffer",
        "true",
        Bool,
        false,
    ),
    f(
        "experimental-bootstrap-defrag-threshold-megabytes",
        "0",
        Uint,
        false,
    ),
    f("experimental-memory-mlock", "false", Bool, false),
    f("experimental-max-learners", "1", Int, true),
    f("experimental-snapshot-catchup-entries", "5000", Uint, true),
    f("experimental-downgrade-check-time", "5s", Str, false),
    f(
        "experimental-stop-grpc-service-on-defrag",
        "false",
        Bool,
        false,
    ),
    f(
        "experimental-enable-distributed-tracing",
        "false",
        Bool,
        false,
    ),
    f(
        "experimental-distributed-tracing-address",
        "localhost:4317",
        Str,
        false,
    ),
    f(
        "experimental-distributed-tracing-service-name",
        "etcd",
        Str,
        false,
    ),
    f(
        "experimental-distributed-tracing-instance-id",
        "",
        Str,
        false,
    ),
    f(
        "experimental-distributed-tracing-sampling-rate",
        "0",
        Int,
        false,
    ),
    // oxcd's own: the dashboard at /ui (on, read-only, off).
    f("ui", "on", Str, true),
    // oxcd's own: scheduled backups (off without a directory).
    f("backup-dir", "", Str, true),
    f("backup-interval", "30m", Str, true),
    f("backup-retention", "24", Uint, true),
    f("proxy", "off", Str, false),
    f("proxy-failure-wait", "5000", Uint, false),
    f("proxy-refresh-interval", "30000", Uint, false),
    f("proxy-dial-timeout", "1000", Uint, false),
    f("proxy-write-timeout", "5000", Uint, false),
    f("proxy-read-timeout", "0", Uint, false),
];

pub(crate) fn env_name(flag: &str) -> String {
    format!("ETCD_{}", flag.to_uppercase().replace('-', "_"))
}

pub(crate) fn command() -> Command {
    let mut cmd = Command::new("oxcd")
        .about("oxcd: an etcd-compatible distributed key-value store")
        .disable_version_flag(true)
        // Go's flag package takes the last of a flag given twice.
        .args_override_self(true)
        .arg(
            Arg::new("version")
                .long("version")
                .action(ArgAction::SetTrue)
                .help("Print the version and exit."),
        )
        .arg(
            Arg::new("config-file")
                .long("config-file")
                .num_args(1)
                .help("Path to the server configuration file (etcd's YAML keys)."),
        );
    for spec in FLAGS {
        let mut arg = Arg::new(spec.name)
            .long(spec.name)
            .default_value(spec.default);
        arg = match spec.kind {
            Bool => arg
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true")
                .value_parser(clap::builder::BoolishValueParser::new()),
            Uint => arg.num_args(1).value_parser(clap::value_parser!(u64)),
            Int => arg.num_args(1).value_parser(clap::value_parser!(i64)),
            Str => arg.num_args(1),
        };
        if !spec.acted {
            arg = arg.hide(true);
        }
        cmd = cmd.arg(arg.help(format!(
            "etcd's --{} (env {})",
            spec.name,
            env_name(spec.name)
        )));
    }
    cmd
}

pub(crate) fn clap_to_etcd(e: clap::Error) -> ConfigError {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let ctx = |k| match e.get(k) {
        Some(ContextValue::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let flag = ctx(ContextKind::InvalidArg);
    let flag = flag
        .split(['=', ' ', '<'])
        .next()
        .unwrap_or("")
        .trim_start_matches('-')
        .to_string();
    match e.kind() {
        ErrorKind::ValueValidation | ErrorKind::InvalidValue => usage_err(format!(
            "invalid value {:?} for flag -{flag}: parse error",
            ctx(ContextKind::InvalidValue)
        )),
        ErrorKind::UnknownArgument => usage_err(format!("flag provided but not defined: -{flag}")),
        _ => usage_err(e.to_string()),
    }
}
