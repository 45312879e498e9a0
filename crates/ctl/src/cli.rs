//! etcdctl's command tree: the global flags (each also read from its `ETCDCTL_*` variable)
//! and the commands each group module declares.

use crate::flags::{bool_flag, last_flag_wins};
use crate::{
    alarm, auth, check, concurrency, defrag, downgrade, endpoint, kv, lease, member, mirror, role,
    snapshot, user, watch,
};
use clap::{Arg, Command};

fn global(name: &'static str, default: &'static str, help: &'static str) -> Arg {
    Arg::new(name)
        .long(name)
        .global(true)
        .default_value(default)
        .env(env_name(name))
        .help(help)
}

fn global_bool(name: &'static str, help: &'static str) -> Arg {
    bool_flag(name, help).global(true).env(env_name(name))
}

fn env_name(flag: &str) -> String {
    format!("ETCDCTL_{}", flag.to_uppercase().replace('-', "_"))
}

pub fn root() -> Command {
    last_flag_wins(tree())
}

fn tree() -> Command {
    Command::new("oxcdctl")
        .about("A simple command line client for etcd3 (and oxcd).")
        .subcommand_required(true)
        .disable_version_flag(true)
        .arg(global("endpoints", "127.0.0.1:2379", "gRPC endpoints")
                .value_delimiter(',')
                .action(clap::ArgAction::Append))
        .arg(global("dial-timeout", "2s", "dial timeout for client connections"))
        .arg(global("command-timeout", "5s", "timeout for short running command (excluding dial timeout)"))
        .arg(global("keepalive-time", "2s", "keepalive time for client connections"))
        .arg(global("keepalive-timeout", "6s", "keepalive timeout for client connections"))
        .arg(global("write-out", "simple", "set the output format (fields, json, protobuf, simple, table)").short('w'))
        .arg(global_bool("hex", "print byte strings as hex encoded strings"))
        .arg(global_bool("debug", "enable client-side debug logging"))
        .arg(global_bool("insecure-transport", "disable transport security for client connections").default_value("true"))
        .arg(global_bool("insecure-discovery", "accept insecure SRV records describing cluster endpoints").default_value("true"))
        .arg(global_bool("insecure-skip-tls-verify", "skip server certificate verification"))
        .arg(global("cert", "", "identify secure client using this TLS certificate file"))
        .arg(global("key", "", "identify secure client using this TLS key file"))
        .arg(global("cacert", "", "verify certificates of TLS-enabled secure servers using this CA bundle"))
        .arg(global("user", "", "username[:password] for authentication (prompt if password is not supplied)"))
        .arg(global("password", "", "password for authentication (if this option is used, --user option shouldn't include password)"))
        .arg(global("discovery-srv", "", "domain name to query for SRV records describing cluster endpoints").short('d'))
        .arg(global("discovery-srv-name", "", "service name to query when using DNS discovery"))
        .subcommand(kv::get_cmd())
        .subcommand(kv::put_cmd())
        .subcommand(kv::del_cmd())
        .subcommand(kv::txn_cmd())
        .subcommand(kv::compaction_cmd())
        .subcommand(Command::new("version").about("Prints the version of etcdctl"))
        .subcommand(endpoint::endpoint_cmd())
        .subcommand(member::member_cmd())
        .subcommand(lease::lease_cmd())
        .subcommand(watch::watch_cmd())
        .subcommand(snapshot::snapshot_cmd())
        .subcommand(alarm::alarm_cmd())
        .subcommand(downgrade::downgrade_cmd())
        .subcommand(auth::auth_cmd())
        .subcommand(user::user_cmd())
        .subcommand(role::role_cmd())
        .subcommand(defrag::defrag_cmd())
        .subcommand(check::check_cmd())
        .subcommand(concurrency::lock_cmd())
        .subcommand(concurrency::elect_cmd())
        .subcommand(mirror::make_mirror_cmd())
        .subcommand(member::move_leader_cmd())
        .subcommand(oxcd_utl::cli::completion_cmd())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_flag_given_twice_takes_the_last_value_and_endpoints_add_up_as_in_etcdctl() {
        let m = super::root()
            .try_get_matches_from([
                "oxcdctl",
                "--endpoints=127.0.0.1:1,127.0.0.1:2",
                "--endpoints=127.0.0.1:3",
                "--dial-timeout=1s",
                "--dial-timeout=3s",
                "get",
                "k",
                "--limit=1",
                "--limit=2",
                "--keys-only",
                "--keys-only",
            ])
            .expect("repeats parse");
        let endpoints: Vec<&String> = m.get_many("endpoints").expect("endpoints").collect();
        assert_eq!(endpoints, ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]);
        assert_eq!(
            m.get_one::<String>("dial-timeout").map(String::as_str),
            Some("3s")
        );
        let (_, get) = m.subcommand().expect("get");
        assert_eq!(get.get_one::<i64>("limit"), Some(&2));
        assert_eq!(get.get_one::<bool>("keys-only"), Some(&true));
    }
}
