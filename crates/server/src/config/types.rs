//! What the flags decide: the node's configuration, and how reading them fails.

use super::auto_compaction::AutoCompaction;
use std::collections::BTreeMap;

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
    /// `--listen-metrics-urls`: /metrics and /health on listeners of their own.
    pub listen_metrics_urls: Vec<url::Url>,
    pub initial_advertise_peer_urls: Vec<url::Url>,
    pub advertise_client_urls: Vec<url::Url>,
    /// name → peer URLs
    pub initial_cluster: BTreeMap<String, Vec<String>>,
    pub initial_cluster_state: ClusterState,
    pub initial_cluster_token: String,
    pub quota_backend_bytes: i64,
    pub max_request_bytes: u64,
    /// The most key-value bytes one read may gather before it is refused.
    pub max_response_bytes: u64,
    pub max_txn_ops: u64,
    pub log_level: String,
    pub pre_vote: bool,
    pub strict_reconfig_check: bool,
    pub snapshot_catchup_entries: u64,
    pub watch_progress_notify_interval: std::time::Duration,
    /// Records deleted per batch of a compaction, and the pause between batches.
    pub compaction_batch_limit: usize,
    pub compaction_sleep_interval: std::time::Duration,
    /// `--backend-batch-interval` (zero: oxcd's default) and `--backend-batch-limit` (zero:
    /// none): how long, and how many applied entries, the backend may go between durable
    /// commits. The raft log holds every acknowledged write meanwhile.
    pub backend_batch_interval: std::time::Duration,
    pub backend_batch_limit: u64,
    pub max_learners: usize,
    pub auto_compaction: AutoCompaction,
    pub initial_corrupt_check: bool,
    /// Zero: no periodic check.
    pub corrupt_check_time: std::time::Duration,
    /// `--ui`: the dashboard at /ui.
    pub ui: crate::ui::Mode,
    /// `--metrics=extensive`: gRPC handling-time histograms too.
    pub metrics_extensive: bool,
    /// `--backup-dir` and its interval and retention; None when no directory is given.
    pub backup: Option<BackupSchedule>,
    /// `--host-whitelist`: the Host names plain HTTP/1 requests may carry (any, when empty
    /// or holding "*").
    pub host_whitelist: Vec<String>,
    pub client_tls: Option<crate::tls::TlsConfig>,
    pub peer_tls: Option<crate::tls::TlsConfig>,
    pub self_signed_cert_validity_years: u64,
    /// `--auth-token`: `simple` or `jwt,...`.
    pub auth_token: String,
    pub auth_token_ttl: std::time::Duration,
    pub bcrypt_cost: u32,
    /// Restart an existing member as the only member of its cluster (disaster recovery).
    pub force_new_cluster: bool,
}

/// What went wrong reading the flags: the text etcd prints, and whether it is a usage error
/// (exit 2, as Go's flag package) or a validation error (exit 1).
#[derive(Debug)]
pub struct ConfigError {
    pub message: String,
    pub usage: bool,
}

pub(crate) fn usage_err(message: String) -> ConfigError {
    ConfigError {
        message,
        usage: true,
    }
}

pub(crate) fn verify_err(message: String) -> ConfigError {
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

/// Scheduled backups (oxcd's own flags, etcd-style): where, how often, how many kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSchedule {
    pub dir: std::path::PathBuf,
    pub interval: std::time::Duration,
    /// Backups kept; 0 keeps all.
    pub retention: usize,
}
