//! Reading the flags, `ETCD_*` variables and etcd's YAML config file into a `Config`.

use super::auto_compaction;
use super::flags::{clap_to_etcd, command, env_name, DURATIONS, FLAGS};
use super::types::{usage_err, verify_err, ClusterState, Config, ConfigError, Parsed};
use crate::duration::parse_go_duration;
use clap::ArgMatches;
use std::collections::BTreeMap;

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
    if get_str(&matches, "data-dir").is_empty()
        && config.data_dir == oxcd_storage::DataDir::legacy_default_path(&config.name)
    {
        warnings.push(format!(
            "using {}, the data dir an older oxcd made; without --data-dir oxcd now uses etcd's default, {}",
            config.data_dir,
            oxcd_storage::DataDir::default_path(&config.name)
        ));
    }
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
                    ("", "allowed-hostname") => "client-cert-allowed-hostname".to_string(),
                    ("peer-", "allowed-cn") => "peer-cert-allowed-cn".to_string(),
                    ("peer-", "allowed-hostname") => "peer-cert-allowed-hostname".to_string(),
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
            serde_yaml::Value::Number(n) if DURATIONS.contains(&key) => format!("{n}ns"),
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

fn duration_flag(m: &ArgMatches, name: &str) -> Option<std::time::Duration> {
    parse_go_duration(&get_str(m, name))
}

/// Go's flag error for a duration it cannot parse.
fn bad_duration(m: &ArgMatches, name: &str) -> ConfigError {
    let text = get_str(m, name);
    usage_err(format!(
        "invalid value {text:?} for flag -{name}: parse error"
    ))
}

/// A comma-separated flag (etcd's string lists); empty when not given.
fn list(m: &ArgMatches, name: &str) -> Vec<String> {
    let text = get_str(m, name);
    if text.is_empty() {
        return Vec::new();
    }
    text.split(',').map(str::to_string).collect()
}

/// A list as Go's `%q` prints a `[]string`.
fn go_quoted(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

fn get_u64(m: &ArgMatches, name: &str) -> u64 {
    m.get_one::<u64>(name).copied().unwrap_or_default()
}

fn get_i64(m: &ArgMatches, name: &str) -> i64 {
    m.get_one::<i64>(name).copied().unwrap_or_default()
}

fn get_bool(m: &ArgMatches, name: &str) -> bool {
    m.get_one::<bool>(name).copied().unwrap_or_default()
}

fn urls(m: &ArgMatches, name: &str) -> Result<Vec<url::Url>, ConfigError> {
    oxcd_storage::bootstrap::parse_urls(name, &get_str(m, name)).map_err(usage_err)
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
    let initial_cluster =
        oxcd_storage::InitialCluster::parse_members(&initial).map_err(verify_err)?;
    let data_dir = match get_str(m, "data-dir") {
        d if d.is_empty() => oxcd_storage::DataDir::default_path_found(&name, |p| p.exists()),
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
    let cipher_suites = list(m, "cipher-suites");
    crate::tls::cipher_suites(&cipher_suites).map_err(verify_err)?;
    if !cipher_suites.is_empty() && min_version == 13 {
        return Err(verify_err(
            "cipher suites cannot be configured when only TLS1.3 is enabled".into(),
        ));
    }
    let tls_side = |[cert, key, ca, cca, crl, auto, allowed_hostname]: [&str; 7]| {
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
            allowed_cns: Vec::new(),
            allowed_hostnames: list(m, allowed_hostname),
            cipher_suites: cipher_suites.clone(),
            min_version,
            max_version,
        })
    };
    let client_tls = tls_side([
        "cert-file",
        "key-file",
        "trusted-ca-file",
        "client-cert-auth",
        "client-crl-file",
        "auto-tls",
        "client-cert-allowed-hostname",
    ]);
    let peer_tls = tls_side([
        "peer-cert-file",
        "peer-key-file",
        "peer-trusted-ca-file",
        "peer-client-cert-auth",
        "peer-crl-file",
        "peer-auto-tls",
        "peer-cert-allowed-hostname",
    ])
    .map(|t| crate::tls::TlsConfig {
        allowed_cns: list(m, "peer-cert-allowed-cn"),
        ..t
    });
    if let Some(t) = peer_tls
        .as_ref()
        .filter(|t| !t.allowed_cns.is_empty() && !t.allowed_hostnames.is_empty())
    {
        return Err(verify_err(format!(
            "AllowedCNs and AllowedHostnames are mutually exclusive (cns={}, hostnames={})",
            go_quoted(&t.allowed_cns),
            go_quoted(&t.allowed_hostnames)
        )));
    }
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
    let backup = match path("backup-dir") {
        None => None,
        Some(dir) => Some(super::BackupSchedule {
            dir,
            interval: duration_flag(m, "backup-interval")
                .filter(|d| !d.is_zero())
                .ok_or_else(|| bad_duration(m, "backup-interval"))?,
            retention: get_u64(m, "backup-retention") as usize,
        }),
    };
    let metrics_extensive = match get_str(m, "metrics").as_str() {
        "basic" => false,
        "extensive" => true,
        other => {
            return Err(verify_err(format!(
                "unknown metrics type {other:?} (must be \"basic\" or \"extensive\")"
            )))
        }
    };
    let ui = crate::ui::Mode::parse(&get_str(m, "ui")).ok_or_else(|| {
        verify_err(format!(
            "unknown --ui {:?} (must be \"on\", \"read-only\" or \"off\")",
            get_str(m, "ui")
        ))
    })?;
    Ok(Config {
        ui,
        metrics_extensive,
        backup,
        host_whitelist: list(m, "host-whitelist"),
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
        listen_metrics_urls: if get_str(m, "listen-metrics-urls").is_empty() {
            Vec::new()
        } else {
            urls(m, "listen-metrics-urls")?
        },
        initial_advertise_peer_urls,
        advertise_client_urls: urls(m, "advertise-client-urls")?,
        initial_cluster,
        initial_cluster_state: state,
        initial_cluster_token: get_str(m, "initial-cluster-token"),
        quota_backend_bytes: get_i64(m, "quota-backend-bytes"),
        max_request_bytes,
        max_response_bytes: get_u64(m, "max-response-bytes"),
        max_txn_ops: get_u64(m, "max-txn-ops"),
        log_level,
        pre_vote: get_bool(m, "pre-vote"),
        strict_reconfig_check: get_bool(m, "strict-reconfig-check"),
        snapshot_catchup_entries: get_u64(m, "experimental-snapshot-catchup-entries"),
        watch_progress_notify_interval: duration_flag(
            m,
            "experimental-watch-progress-notify-interval",
        )
        .filter(|d| !d.is_zero())
        .ok_or_else(|| bad_duration(m, "experimental-watch-progress-notify-interval"))?,
        compaction_batch_limit: get_i64(m, "experimental-compaction-batch-limit").max(1) as usize,
        compaction_sleep_interval: duration_flag(m, "experimental-compaction-sleep-interval")
            .ok_or_else(|| bad_duration(m, "experimental-compaction-sleep-interval"))?,
        backend_batch_interval: duration_flag(m, "backend-batch-interval")
            .ok_or_else(|| bad_duration(m, "backend-batch-interval"))?,
        backend_batch_limit: get_i64(m, "backend-batch-limit").max(0) as u64,
        max_learners: get_i64(m, "experimental-max-learners").max(0) as usize,
        auto_compaction: auto_compaction::parse(
            &get_str(m, "auto-compaction-mode"),
            &get_str(m, "auto-compaction-retention"),
        )
        .map_err(verify_err)?,
        initial_corrupt_check: get_bool(m, "experimental-initial-corrupt-check"),
        force_new_cluster: get_bool(m, "force-new-cluster"),
        corrupt_check_time: duration_flag(m, "experimental-corrupt-check-time")
            .ok_or_else(|| bad_duration(m, "experimental-corrupt-check-time"))?,
    })
}
