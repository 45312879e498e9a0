//! `oxcd`'s flags: etcd's names, defaults and `ETCD_*` variables, and etcd's YAML config file.

use clap::{Arg, ArgAction, ArgMatches, Command};
use std::collections::BTreeMap;

/// How a flag takes its value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Uint,
    Int,
    Bool,
}

/// etcd's flags. `acted` is false for flags oxcd accepts but does not act on yet.
struct FlagSpec {
    name: &'static str,
    default: &'static str,
    kind: Kind,
    acted: bool,
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

const FLAGS: &[FlagSpec] = &[
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
    f("max-txn-ops", "128", Uint, true),
    f("log-level", "info", Str, true),
    f("logger", "zap", Str, true),
    f("log-outputs", "default", Str, true),
    f("initial-election-tick-advance", "true", Bool, false),
    f("listen-client-http-urls", "", Str, false),
    f("max-snapshots", "5", Uint, false),
    f("max-wals", "5", Uint, false),
    f("backend-bbolt-freelist-type", "map", Str, false),
    f("backend-batch-interval", "0", Str, false),
    f("backend-batch-limit", "0", Int, false),
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
    f("client-cert-allowed-hostname", "", Str, false),
    f("trusted-ca-file", "", Str, true),
    f("auto-tls", "false", Bool, true),
    f("self-signed-cert-validity", "1", Uint, true),
    f("peer-cert-file", "", Str, true),
    f("peer-key-file", "", Str, true),
    f("peer-client-cert-auth", "false", Bool, true),
    f("peer-trusted-ca-file", "", Str, true),
    f("peer-auto-tls", "false", Bool, true),
    f("peer-cert-allowed-cn", "", Str, true),
    f("peer-cert-allowed-hostname", "", Str, false),
    f("peer-crl-file", "", Str, true),
    f("cipher-suites", "", Str, false),
    f("cors", "*", Str, false),
    f("host-whitelist", "*", Str, false),
    f("tls-min-version", "TLS1.2", Str, true),
    f("tls-max-version", "", Str, true),
    f("auth-token", "simple", Str, true),
    f("bcrypt-cost", "10", Uint, true),
    f("auth-token-ttl", "300", Uint, true),
    f("enable-pprof", "false", Bool, false),
    f("metrics", "basic", Str, false),
    f("listen-metrics-urls", "", Str, false),
    f("enable-log-rotation", "false", Bool, false),
    f("log-rotation-config-json", "", Str, false),
    f("force-new-cluster", "false", Bool, false),
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
    f("experimental-compaction-batch-limit", "1000", Int, false),
    f("experimental-compaction-sleep-interval", "10ms", Str, false),
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
    f("proxy", "off", Str, false),
    f("proxy-failure-wait", "5000", Uint, false),
    f("proxy-refresh-interval", "30000", Uint, false),
    f("proxy-dial-timeout", "1000", Uint, false),
    f("proxy-write-timeout", "5000", Uint, false),
    f("proxy-read-timeout", "0", Uint, false),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterState {
    New,
    Existing,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub data_dir: String,
    pub wal_dir: Option<String>,
    pub snapshot_count: u64,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    pub listen_peer_urls: Vec<url::Url>,
    pub listen_client_urls: Vec<url::Url>,
    pub initial_advertise_peer_urls: Vec<url::Url>,
    pub advertise_client_urls: Vec<url::Url>,
    /// name → peer URLs
    pub initial_cluster: BTreeMap<String, Vec<String>>,
    pub initial_cluster_state: ClusterState,
    pub initial_cluster_token: String,
    pub quota_backend_bytes: i64,
    pub max_request_bytes: u64,
    pub max_txn_ops: u64,
    pub log_level: String,
    pub pre_vote: bool,
    pub strict_reconfig_check: bool,
    pub snapshot_catchup_entries: u64,
    pub watch_progress_notify_interval: std::time::Duration,
    pub max_learners: usize,
    pub auto_compaction: crate::compactor::AutoCompaction,
    pub initial_corrupt_check: bool,
    /// Zero: no periodic check.
    pub corrupt_check_time: std::time::Duration,
    pub client_tls: Option<crate::tls::TlsConfig>,
    pub peer_tls: Option<crate::tls::TlsConfig>,
    pub self_signed_cert_validity_years: u64,
    /// `--auth-token`: `simple` or `jwt,...`.
    pub auth_token: String,
    pub auth_token_ttl: std::time::Duration,
    pub bcrypt_cost: u32,
}

/// What went wrong reading the flags: the text etcd prints, and whether it is a usage error
/// (exit 2, as Go's flag package) or a validation error (exit 1).
#[derive(Debug)]
pub struct ConfigError {
    pub message: String,
    pub usage: bool,
}

fn usage_err(message: String) -> ConfigError {
    ConfigError {
        message,
        usage: true,
    }
}

fn verify_err(message: String) -> ConfigError {
    ConfigError {
        message: format!("error verifying flags, {message}. See 'oxcd --help'."),
        usage: false,
    }
}

/// What parsing decided beyond the config: `--version`, and warnings to log once logging is up.
pub enum Parsed {
    Version,
    /// `--help`: the text to print on stdout.
    Help(String),
    Run {
        config: Box<Config>,
        warnings: Vec<String>,
    },
}

fn env_name(flag: &str) -> String {
    format!("ETCD_{}", flag.to_uppercase().replace('-', "_"))
}

fn command() -> Command {
    let mut cmd = Command::new("oxcd")
        .about("oxcd: an etcd-compatible distributed key-value store")
        .disable_version_flag(true)
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

fn clap_to_etcd(e: clap::Error) -> ConfigError {
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

/// Reads the flags, then `ETCD_*` variables for flags not given (a flag wins, with a warning),
/// or only the config file when `--config-file` is given, as etcd does.
pub fn parse(args: Vec<String>, env: &BTreeMap<String, String>) -> Result<Parsed, ConfigError> {
    let mut warnings = Vec::new();
    let first = match command().try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => {
            return Ok(Parsed::Help(e.render().to_string()))
        }
        Err(e) => return Err(clap_to_etcd(e)),
    };
    if first.get_flag("version") {
        return Ok(Parsed::Version);
    }
    let config_file = first
        .get_one::<String>("config-file")
        .cloned()
        .or_else(|| env.get("ETCD_CONFIG_FILE").cloned());
    let matches = if let Some(path) = config_file {
        warnings.push(format!(
            "loaded server configuration from {path:?}; other command line flags and environment variables are ignored"
        ));
        let mut argv = vec!["oxcd".to_string()];
        argv.extend(yaml_args(&path)?);
        command().try_get_matches_from(argv).map_err(clap_to_etcd)?
    } else {
        let mut argv = args.clone();
        for spec in FLAGS {
            let var = env_name(spec.name);
            let Some(value) = env.get(&var) else { continue };
            if first.value_source(spec.name) == Some(clap::parser::ValueSource::CommandLine) {
                warnings.push(format!(
                    "conflicting environment variable {var:?} is shadowed by corresponding command-line flag (either unset environment variable or disable flag)"
                ));
            } else {
                warnings.push(format!(
                    "recognized and used environment variable {var}={value}"
                ));
                argv.push(format!("--{}={value}", spec.name));
            }
        }
        for var in env.keys() {
            let known = var == "ETCD_CONFIG_FILE" || FLAGS.iter().any(|s| &env_name(s.name) == var);
            if var.starts_with("ETCD_") && !known && !var.starts_with("ETCD_UNSUPPORTED") {
                warnings.push(format!("unrecognized environment variable {var}"));
            }
        }
        command().try_get_matches_from(argv).map_err(clap_to_etcd)?
    };
    for spec in FLAGS.iter().filter(|s| !s.acted) {
        if matches.value_source(spec.name) == Some(clap::parser::ValueSource::CommandLine) {
            warnings.push(format!(
                "flag --{} is accepted for etcd compatibility but oxcd does not act on it yet",
                spec.name
            ));
        }
    }
    let config = build(&matches)?;
    Ok(Parsed::Run {
        config: Box::new(config),
        warnings,
    })
}

fn yaml_args(path: &str) -> Result<Vec<String>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| verify_err(format!("cannot read config file {path:?}: {e}")))?;
    let doc: serde_yaml::Value = serde_yaml::from_str(&text)
        .map_err(|e| verify_err(format!("cannot parse config file {path:?}: {e}")))?;
    let mut out = Vec::new();
    let Some(map) = doc.as_mapping() else {
        return Ok(out);
    };
    for (k, v) in map {
        let Some(key) = k.as_str() else { continue };
        if let (Some(prefix), Some(section)) = (
            match key {
                "client-transport-security" => Some(""),
                "peer-transport-security" => Some("peer-"),
                _ => None,
            },
            v.as_mapping(),
        ) {
            for (k, v) in section {
                let flag = match (prefix, k.as_str().unwrap_or_default()) {
                    ("", "crl-file") => "client-crl-file".to_string(),
                    ("peer-", "allowed-cn") => "peer-cert-allowed-cn".to_string(),
                    (p, name) => format!("{p}{name}"),
                };
                let value = match v {
                    serde_yaml::Value::Bool(b) => b.to_string(),
                    serde_yaml::Value::String(s) if !s.is_empty() => s.clone(),
                    _ => continue,
                };
                if FLAGS.iter().any(|s| s.name == flag) {
                    out.push(format!("--{flag}={value}"));
                }
            }
            continue;
        }
        if !FLAGS.iter().any(|s| s.name == key) {
            // etcd's file also holds nested TLS sections and keys oxcd has no flag for.
            continue;
        }
        let value = match v {
            serde_yaml::Value::Null => continue,
            serde_yaml::Value::Bool(b) => b.to_string(),
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::String(s) => s.clone(),
            serde_yaml::Value::Sequence(items) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect::<Vec<_>>()
                .join(","),
            _ => continue,
        };
        out.push(format!("--{key}={value}"));
    }
    Ok(out)
}

// Every flag has its etcd default in clap, so a value is always there.
fn get_str(m: &ArgMatches, name: &str) -> String {
    m.get_one::<String>(name).cloned().unwrap_or_default()
}

fn get_u64(m: &ArgMatches, name: &str) -> u64 {
    m.get_one::<u64>(name).copied().unwrap_or_default()
}

fn get_bool(m: &ArgMatches, name: &str) -> bool {
    m.get_one::<bool>(name).copied().unwrap_or_default()
}

fn urls(m: &ArgMatches, name: &str) -> Result<Vec<url::Url>, ConfigError> {
    get_str(m, name)
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let u = url::Url::parse(s).map_err(|e| usage_err(format!("invalid value {s:?} for flag -{name}: {e}")))?;
            if u.scheme() != "http" && u.scheme() != "https" {
                return Err(usage_err(format!(
                    "invalid value {s:?} for flag -{name}: URL scheme must be http, https, unix, or unixs: {s}"
                )));
            }
            if u.port().is_none() {
                return Err(usage_err(format!("invalid value {s:?} for flag -{name}: missing port in address")));
            }
            Ok(u)
        })
        .collect()
}

fn build(m: &ArgMatches) -> Result<Config, ConfigError> {
    let name = get_str(m, "name");
    let heartbeat = get_u64(m, "heartbeat-interval");
    let election = get_u64(m, "election-timeout");
    if heartbeat == 0 || election < 5 * heartbeat {
        return Err(verify_err(format!(
            "--election-timeout[{election}ms] should be at least as 5 times as --heartbeat-interval[{heartbeat}ms]"
        )));
    }
    if election > 50000 {
        return Err(verify_err(format!(
            "--election-timeout[{election}ms] is too long, and should be set less than 50000ms"
        )));
    }
    let state = match get_str(m, "initial-cluster-state").as_str() {
        "new" => ClusterState::New,
        "existing" => ClusterState::Existing,
        other => {
            return Err(usage_err(format!(
                "invalid value {other:?} for flag -initial-cluster-state: valid values are \"new\", \"existing\""
            )))
        }
    };
    let log_level = get_str(m, "log-level");
    if !["debug", "info", "warn", "error", "dpanic", "panic", "fatal"].contains(&log_level.as_str())
    {
        return Err(verify_err(format!("unknown log-level {log_level:?}")));
    }
    let initial_advertise_peer_urls = urls(m, "initial-advertise-peer-urls")?;
    let mut initial = get_str(m, "initial-cluster");
    if initial.is_empty() {
        initial = initial_advertise_peer_urls
            .iter()
            .map(|u| format!("{name}={}", u.as_str().trim_end_matches('/')))
            .collect::<Vec<_>>()
            .join(",");
    }
    let mut initial_cluster: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for part in initial.split(',').filter(|s| !s.is_empty()) {
        let (n, u) = part.split_once('=').ok_or_else(|| {
            verify_err(format!(
                "--initial-cluster has an entry without '=': {part:?}"
            ))
        })?;
        initial_cluster
            .entry(n.to_string())
            .or_default()
            .push(u.to_string());
    }
    let data_dir = match get_str(m, "data-dir") {
        d if d.is_empty() => format!("{name}.oxcd"),
        d => d,
    };
    let wal_dir = Some(get_str(m, "wal-dir")).filter(|s| !s.is_empty());
    let max_request_bytes = get_u64(m, "max-request-bytes");
    let tls_version = |flag: &str, default: u8| {
        crate::tls::parse_version(&get_str(m, flag), default)
            .map_err(|e| verify_err(format!("--{flag}: {e}")))
    };
    let (min_version, max_version) = (
        tls_version("tls-min-version", 12)?,
        tls_version("tls-max-version", 13)?,
    );
    if min_version > max_version {
        return Err(verify_err(
            "min version (--tls-min-version) is greater than max version (--tls-max-version)"
                .into(),
        ));
    }
    let path = |flag: &str| {
        Some(std::path::PathBuf::from(get_str(m, flag))).filter(|p| !p.as_os_str().is_empty())
    };
    let tls_side = |cert: &str, key: &str, ca: &str, cca: &str, crl: &str, auto: &str| {
        let auto_tls = get_bool(m, auto) && path(cert).is_none();
        if path(cert).is_none() && !auto_tls {
            return None;
        }
        Some(crate::tls::TlsConfig {
            cert_file: path(cert).unwrap_or_default(),
            key_file: path(key).unwrap_or_default(),
            trusted_ca_file: path(ca),
            client_cert_auth: get_bool(m, cca),
            crl_file: path(crl),
            auto_tls,
            allowed_cn: None,
            min_version,
            max_version,
        })
    };
    let client_tls = tls_side(
        "cert-file",
        "key-file",
        "trusted-ca-file",
        "client-cert-auth",
        "client-crl-file",
        "auto-tls",
    );
    let peer_tls = tls_side(
        "peer-cert-file",
        "peer-key-file",
        "peer-trusted-ca-file",
        "peer-client-cert-auth",
        "peer-crl-file",
        "peer-auto-tls",
    )
    .map(|t| crate::tls::TlsConfig {
        allowed_cn: Some(get_str(m, "peer-cert-allowed-cn")).filter(|s| !s.is_empty()),
        ..t
    });
    let auth_token = get_str(m, "auth-token");
    if !auth_token.starts_with("simple") && !auth_token.starts_with("jwt") {
        return Err(verify_err(format!("unknown token type: {auth_token}")));
    }
    let bcrypt_cost = get_u64(m, "bcrypt-cost");
    if !(4..=31).contains(&bcrypt_cost) {
        return Err(verify_err(format!(
            "invalid bcrypt-cost: {bcrypt_cost} (must be between 4 and 31)"
        )));
    }
    Ok(Config {
        client_tls,
        peer_tls,
        self_signed_cert_validity_years: get_u64(m, "self-signed-cert-validity"),
        auth_token,
        auth_token_ttl: std::time::Duration::from_secs(get_u64(m, "auth-token-ttl")),
        bcrypt_cost: bcrypt_cost as u32,
        name,
        data_dir,
        wal_dir,
        snapshot_count: get_u64(m, "snapshot-count"),
        heartbeat_interval_ms: heartbeat,
        election_timeout_ms: election,
        listen_peer_urls: urls(m, "listen-peer-urls")?,
        listen_client_urls: urls(m, "listen-client-urls")?,
        initial_advertise_peer_urls,
        advertise_client_urls: urls(m, "advertise-client-urls")?,
        initial_cluster,
        initial_cluster_state: state,
        initial_cluster_token: get_str(m, "initial-cluster-token"),
        quota_backend_bytes: m
            .get_one::<i64>("quota-backend-bytes")
            .copied()
            .unwrap_or(0),
        max_request_bytes,
        max_txn_ops: get_u64(m, "max-txn-ops"),
        log_level,
        pre_vote: get_bool(m, "pre-vote"),
        strict_reconfig_check: get_bool(m, "strict-reconfig-check"),
        snapshot_catchup_entries: get_u64(m, "experimental-snapshot-catchup-entries"),
        watch_progress_notify_interval: {
            let text = get_str(m, "experimental-watch-progress-notify-interval");
            parse_go_duration(&text).filter(|d| !d.is_zero()).ok_or_else(|| {
                usage_err(format!(
                    "invalid value {text:?} for flag -experimental-watch-progress-notify-interval: parse error"
                ))
            })?
        },
        max_learners: m
            .get_one::<i64>("experimental-max-learners")
            .copied()
            .unwrap_or(1)
            .max(0) as usize,
        auto_compaction: crate::compactor::parse(
            &get_str(m, "auto-compaction-mode"),
            &get_str(m, "auto-compaction-retention"),
        )
        .map_err(verify_err)?,
        initial_corrupt_check: get_bool(m, "experimental-initial-corrupt-check"),
        corrupt_check_time: {
            let text = get_str(m, "experimental-corrupt-check-time");
            parse_go_duration(&text).ok_or_else(|| {
                usage_err(format!(
                    "invalid value {text:?} for flag -experimental-corrupt-check-time: parse error"
                ))
            })?
        },
    })
}

/// A Go duration ("10m0s", "1h30m", "250ms"), as etcd's duration flags take.
pub fn parse_go_duration(text: &str) -> Option<std::time::Duration> {
    let mut total = 0f64;
    let mut rest = text.trim();
    if rest == "0" {
        return Some(std::time::Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Some(std::time::Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
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
        assert_eq!(c.data_dir, "default.oxcd");
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
        let e = run(&["--election-timeout=100", "--heartbeat-interval=100"], &[])
            .expect_err("must fail");
        assert!(e.message.contains("--election-timeout[100ms] should be at least as 5 times as --heartbeat-interval[100ms]"));
        let e = run(&["--initial-cluster-state=bogus"], &[]).expect_err("must fail");
        assert!(e.message.contains("valid values are \"new\", \"existing\""));
    }

    #[test]
    fn unacted_flags_are_accepted_with_a_warning() {
        let (_, w) = run(
            &[
                "--enable-pprof",
                "--experimental-compaction-batch-limit=500",
                "--strict-reconfig-check=false",
            ],
            &[],
        )
        .expect("parse");
        assert!(w.iter().any(|m| m.contains("--enable-pprof")), "{w:?}");
        assert!(
            w.iter()
                .any(|m| m.contains("--experimental-compaction-batch-limit")),
            "{w:?}"
        );
    }

    #[test]
    fn config_file_uses_etcds_yaml_keys() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("etcd.yaml");
        std::fs::write(&p, "name: y1\nsnapshot-count: 5\nlisten-client-urls: http://127.0.0.1:4001\nmax-txn-ops: 9\nclient-transport-security:\n  cert-file: ''\n").expect("write");
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
    }
}
