//! oxcdctl: etcdctl v3's command tree, flags, `ETCDCTL_*` variables and output.

mod auth;
mod check;
mod client;
mod concurrency;
mod gofmt;
mod lease;
mod mirror;
mod ops;
mod printer;
mod txn;
mod watch;

use clap::{Arg, ArgMatches, Command};
use oxcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use oxcd_api::etcdserverpb::{
    AlarmRequest, AuthenticateRequest, CompactionRequest, DeleteRangeRequest, HashKvRequest,
    MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest,
    MemberUpdateRequest, MoveLeaderRequest, PutRequest, RangeRequest, RequestOp, StatusRequest,
};
use printer::{EndpointHashKv, EndpointHealth, EndpointStatus, Format, Out, Printer};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const EXIT_ERROR: i32 = 1;
/// etcdctl's code when the client cannot be set up (authentication failed, for one).
const EXIT_BAD_CONNECTION: i32 = 2;
const EXIT_INVALID_INPUT: i32 = 3;
pub(crate) const EXIT_BAD_FEATURE: i32 = 4;
const EXIT_BAD_ARGS: i32 = 128;

/// A failed command: etcdctl's message and exit code.
struct CtlError {
    code: i32,
    msg: String,
}

fn fail<T>(code: i32, msg: impl Into<String>) -> Result<T, CtlError> {
    Err(CtlError {
        code,
        msg: msg.into(),
    })
}

fn err(msg: String) -> CtlError {
    CtlError {
        code: EXIT_ERROR,
        msg,
    }
}

fn bool_flag(name: &'static str, help: &'static str) -> Arg {
    Arg::new(name)
        .long(name)
        .num_args(0..=1)
        .require_equals(true)
        .default_missing_value("true")
        .default_value("false")
        .value_parser(clap::builder::BoolishValueParser::new())
        .help(help)
}

fn global(name: &'static str, default: &'static str, help: &'static str) -> Arg {
    Arg::new(name)
        .long(name)
        .global(true)
        .default_value(default)
        .env(env_name(name))
        .help(help)
}

fn env_name(flag: &str) -> String {
    format!("ETCDCTL_{}", flag.to_uppercase().replace('-', "_"))
}

fn get_cmd() -> Command {
    Command::new("get")
        .about("Gets the key or a range of keys")
        .arg(Arg::new("args").num_args(0..))
        .arg(
            Arg::new("consistency")
                .long("consistency")
                .default_value("l")
                .help("Linearizable(l) or Serializable(s)"),
        )
        .arg(
            Arg::new("order")
                .long("order")
                .default_value("")
                .help("Order of results; ASCEND or DESCEND (ASCEND by default)"),
        )
        .arg(
            Arg::new("sort-by")
                .long("sort-by")
                .default_value("")
                .help("Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION"),
        )
        .arg(
            Arg::new("limit")
                .long("limit")
                .default_value("0")
                .value_parser(clap::value_parser!(i64))
                .help("Maximum number of results"),
        )
        .arg(bool_flag("prefix", "Get keys with matching prefix"))
        .arg(bool_flag(
            "from-key",
            "Get keys that are greater than or equal to the given key using byte compare",
        ))
        .arg(
            Arg::new("rev")
                .long("rev")
                .default_value("0")
                .value_parser(clap::value_parser!(i64))
                .help("Specify the kv revision"),
        )
        .arg(bool_flag("keys-only", "Get only the keys"))
        .arg(bool_flag("count-only", "Get only the count"))
        .arg(bool_flag(
            "print-value-only",
            "Only write values when using the \"simple\" output format",
        ))
}

fn put_cmd() -> Command {
    Command::new("put")
        .about("Puts the given key into the store")
        .arg(Arg::new("args").num_args(0..))
        .arg(
            Arg::new("lease")
                .long("lease")
                .default_value("0")
                .help("lease ID (in hexadecimal) to attach to the key"),
        )
        .arg(bool_flag(
            "prev-kv",
            "return the previous key-value pair before modification",
        ))
        .arg(bool_flag(
            "ignore-value",
            "updates the key using its current value",
        ))
        .arg(bool_flag(
            "ignore-lease",
            "updates the key using its current lease",
        ))
}

fn del_cmd() -> Command {
    Command::new("del")
        .about("Removes the specified key or range of keys [key, range_end)")
        .arg(Arg::new("args").num_args(0..))
        .arg(bool_flag("prefix", "delete keys with matching prefix"))
        .arg(bool_flag("prev-kv", "return deleted key-value pairs"))
        .arg(bool_flag(
            "from-key",
            "delete keys that are greater than or equal to the given key using byte compare",
        ))
}

fn root() -> Command {
    let endpoint = Command::new("endpoint")
        .about("Endpoint related commands")
        .subcommand_required(true)
        .arg(bool_flag("cluster", "use all endpoints from the cluster member list").global(true))
        .subcommand(
            Command::new("health")
                .about("Checks the healthiness of endpoints specified in `--endpoints` flag"),
        )
        .subcommand(
            Command::new("status")
                .about("Prints out the status of endpoints specified in `--endpoints` flag"),
        )
        .subcommand(
            Command::new("hashkv")
                .about("Prints the KV history hash for each endpoint in --endpoints")
                .arg(
                    Arg::new("rev")
                        .long("rev")
                        .default_value("0")
                        .help("maximum revision to hash (default: all revisions)"),
                ),
        );
    let peer_urls = || Arg::new("peer-urls").long("peer-urls").default_value("");
    let member = Command::new("member")
        .about("Membership related commands")
        .subcommand_required(true)
        .subcommand(
            Command::new("add")
                .about("Adds a member into the cluster")
                .arg(Arg::new("args").num_args(0..))
                .arg(peer_urls().help("comma separated peer URLs for the new member."))
                .arg(bool_flag(
                    "learner",
                    "indicates if the new member is raft learner",
                )),
        )
        .subcommand(
            Command::new("remove")
                .about("Removes a member from the cluster")
                .arg(Arg::new("args").num_args(0..)),
        )
        .subcommand(
            Command::new("update")
                .about("Updates a member in the cluster")
                .arg(Arg::new("args").num_args(0..))
                .arg(peer_urls().help("comma separated peer URLs for the updated member.")),
        )
        .subcommand(Command::new("list").about("Lists all members in the cluster"))
        .subcommand(
            Command::new("promote")
                .about("Promotes a non-voting member in the cluster")
                .arg(Arg::new("args").num_args(0..)),
        );
    Command::new("oxcdctl")
        .about("A simple command line client for etcd3 (and oxcd).")
        .subcommand_required(true)
        .disable_version_flag(true)
        .arg(global("endpoints", "127.0.0.1:2379", "gRPC endpoints").value_delimiter(','))
        .arg(global("dial-timeout", "2s", "dial timeout for client connections"))
        .arg(global("command-timeout", "5s", "timeout for short running command (excluding dial timeout)"))
        .arg(global("keepalive-time", "2s", "keepalive time for client connections"))
        .arg(global("keepalive-timeout", "6s", "keepalive timeout for client connections"))
        .arg(global("write-out", "simple", "set the output format (fields, json, protobuf, simple, table)").short('w'))
        .arg(bool_flag("hex", "print byte strings as hex encoded strings").global(true).env("ETCDCTL_HEX"))
        .arg(bool_flag("debug", "enable client-side debug logging").global(true).env("ETCDCTL_DEBUG"))
        .arg(bool_flag("insecure-transport", "disable transport security for client connections").global(true).default_value("true").env("ETCDCTL_INSECURE_TRANSPORT"))
        .arg(bool_flag("insecure-discovery", "accept insecure SRV records describing cluster endpoints").global(true).default_value("true").env("ETCDCTL_INSECURE_DISCOVERY"))
        .arg(bool_flag("insecure-skip-tls-verify", "skip server certificate verification").global(true).env("ETCDCTL_INSECURE_SKIP_TLS_VERIFY"))
        .arg(global("cert", "", "identify secure client using this TLS certificate file"))
        .arg(global("key", "", "identify secure client using this TLS key file"))
        .arg(global("cacert", "", "verify certificates of TLS-enabled secure servers using this CA bundle"))
        .arg(global("user", "", "username[:password] for authentication (prompt if password is not supplied)"))
        .arg(global("password", "", "password for authentication (if this option is used, --user option shouldn't include password)"))
        .arg(global("discovery-srv", "", "domain name to query for SRV records describing cluster endpoints").short('d'))
        .arg(global("discovery-srv-name", "", "service name to query when using DNS discovery"))
        .subcommand(get_cmd())
        .subcommand(put_cmd())
        .subcommand(del_cmd())
        .subcommand(
            Command::new("txn")
                .about("Txn processes all the requests in one transaction")
                .arg(Arg::new("args").num_args(0..))
                .arg(bool_flag("interactive", "Input transaction in interactive mode").short('i')),
        )
        .subcommand(
            Command::new("compaction")
                .about("Compacts the event history in etcd")
                .arg(Arg::new("args").num_args(0..))
                .arg(bool_flag("physical", "'true' to wait for compaction to physically remove all old revisions")),
        )
        .subcommand(Command::new("version").about("Prints the version of etcdctl"))
        .subcommand(endpoint)
        .subcommand(member)
        .subcommand(
            Command::new("lease")
                .about("Lease related commands")
                .subcommand_required(true)
                .subcommand(Command::new("grant").about("Creates leases").arg(Arg::new("args").num_args(0..).allow_negative_numbers(true)))
                .subcommand(Command::new("revoke").about("Revokes leases").arg(Arg::new("args").num_args(0..)))
                .subcommand(
                    Command::new("timetolive")
                        .about("Get lease information")
                        .arg(Arg::new("args").num_args(0..))
                        .arg(bool_flag("keys", "Get keys attached to this lease")),
                )
                .subcommand(Command::new("list").about("List all active leases"))
                .subcommand(
                    Command::new("keep-alive")
                        .about("Keeps leases alive (renew)")
                        .arg(Arg::new("args").num_args(0..))
                        .arg(bool_flag("once", "Resets the keep-alive time to its original value and exits immediately")),
                ),
        )
        .subcommand(
            Command::new("watch")
                .about("Watches events stream on keys or prefixes")
                .arg(Arg::new("args").num_args(0..))
                .arg(Arg::new("exec").num_args(0..).last(true))
                .arg(bool_flag("interactive", "Interactive mode").short('i'))
                .arg(bool_flag("prefix", "Watch on a prefix if prefix is set"))
                .arg(Arg::new("rev").long("rev").default_value("0").help("Revision to start watching"))
                .arg(bool_flag("prev-kv", "get the previous key-value pair before the event happens"))
                .arg(bool_flag("progress-notify", "get periodic watch progress notification from server")),
        )
        .subcommand(ops::snapshot_cmd())
        .subcommand(ops::alarm_cmd())
        .subcommand(auth::auth_cmd())
        .subcommand(auth::user_cmd())
        .subcommand(auth::role_cmd())
        .subcommand(ops::defrag_cmd())
        .subcommand(check::check_cmd())
        .subcommand(
            Command::new("lock")
                .about("Acquires a named lock")
                .arg(Arg::new("args").num_args(0..).trailing_var_arg(true).allow_hyphen_values(true))
                .arg(Arg::new("ttl").long("ttl").default_value("10").help("timeout for session")),
        )
        .subcommand(
            Command::new("elect")
                .about("Observes and participates in leader election")
                .arg(Arg::new("args").num_args(0..))
                .arg(bool_flag("listen", "observation mode").short('l')),
        )
        .subcommand(
            Command::new("make-mirror")
                .about("Makes a mirror at the destination etcd cluster")
                .arg(Arg::new("args").num_args(0..))
                .arg(Arg::new("prefix").long("prefix").default_value("").help("Key-value prefix to mirror"))
                .arg(Arg::new("dest-prefix").long("dest-prefix").default_value("").help("destination prefix to mirror a prefix to a different prefix in the destination cluster"))
                .arg(bool_flag("no-dest-prefix", "mirror key-values to the root of the destination cluster"))
                .arg(Arg::new("dest-cert").long("dest-cert").default_value("").help("Identify secure client using this TLS certificate file for the destination cluster"))
                .arg(Arg::new("dest-key").long("dest-key").default_value("").help("Identify secure client using this TLS key file"))
                .arg(Arg::new("dest-cacert").long("dest-cacert").default_value("").help("Verify certificates of TLS enabled secure servers using this CA bundle"))
                .arg(
                    Arg::new("dest-insecure-transport")
                        .long("dest-insecure-transport")
                        .num_args(0..=1)
                        .require_equals(true)
                        .default_value("true")
                        .default_missing_value("true")
                        .value_parser(clap::value_parser!(bool))
                        .help("Disable transport security for client connections"),
                ),
        )
        .subcommand(
            Command::new("move-leader")
                .about("Transfers leadership to another etcd cluster member.")
                .arg(Arg::new("args").num_args(0..)),
        )
}

fn args_of(m: &ArgMatches) -> Vec<String> {
    m.try_get_many::<String>("args")
        .ok()
        .flatten()
        .map(|v| v.cloned().collect())
        .unwrap_or_default()
}

fn flag(m: &ArgMatches, name: &str) -> bool {
    m.get_one::<bool>(name).copied().unwrap_or(false)
}

fn string(m: &ArgMatches, name: &str) -> String {
    m.get_one::<String>(name).cloned().unwrap_or_default()
}

/// Key and range end for get/del's `--prefix`, `--from-key` and second argument.
fn key_range(
    args: &[String],
    prefix: bool,
    from_key: bool,
) -> Result<(Vec<u8>, Vec<u8>), CtlError> {
    if prefix && from_key {
        return fail(
            EXIT_BAD_ARGS,
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        );
    }
    let mut key = args[0].as_bytes().to_vec();
    let mut end = Vec::new();
    if args.len() > 1 {
        if prefix || from_key {
            return fail(EXIT_BAD_ARGS, "too many arguments, only accept one argument when `--prefix` or `--from-key` is set");
        }
        end = args[1].as_bytes().to_vec();
    }
    if prefix {
        if key.is_empty() {
            key = vec![0];
            end = vec![0];
        } else {
            end = oxcd_api::prefix_end(&key);
        }
    }
    if from_key {
        if key.is_empty() {
            key = vec![0];
        }
        end = vec![0];
    }
    Ok((key, end))
}

fn get_request(m: &ArgMatches, format: Format) -> Result<RangeRequest, CtlError> {
    let args = args_of(m);
    if args.is_empty() {
        return fail(
            EXIT_BAD_ARGS,
            "get command needs one argument as key and an optional argument as range_end",
        );
    }
    let serializable = match string(m, "consistency").as_str() {
        "s" => true,
        "l" => false,
        other => {
            return fail(
                EXIT_BAD_FEATURE,
                format!(
                    "unknown consistency flag {}",
                    gofmt::quote(other.as_bytes())
                ),
            )
        }
    };
    let (key, range_end) = key_range(&args, flag(m, "prefix"), flag(m, "from-key"))?;
    let mut order = match string(m, "order").to_uppercase().as_str() {
        "ASCEND" => SortOrder::Ascend,
        "DESCEND" => SortOrder::Descend,
        "" => SortOrder::None,
        _ => {
            return fail(
                EXIT_BAD_FEATURE,
                format!("bad sort order {}", string(m, "order")),
            )
        }
    };
    let target = match string(m, "sort-by").to_uppercase().as_str() {
        "CREATE" => SortTarget::Create,
        "KEY" | "" => SortTarget::Key,
        "MODIFY" => SortTarget::Mod,
        "VALUE" => SortTarget::Value,
        "VERSION" => SortTarget::Version,
        _ => {
            return fail(
                EXIT_BAD_FEATURE,
                format!("bad sort target {}", string(m, "sort-by")),
            )
        }
    };
    if target == SortTarget::Key && order == SortOrder::Ascend {
        // Keys already come in ascending order; asking would make the server sort everything.
        order = SortOrder::None;
    }
    let count_only = flag(m, "count-only");
    if count_only && format != Format::Fields {
        return fail(
            EXIT_BAD_ARGS,
            "--count-only is only for `--write-out=fields`",
        );
    }
    Ok(RangeRequest {
        key,
        range_end,
        limit: m.get_one::<i64>("limit").copied().unwrap_or(0),
        revision: m.get_one::<i64>("rev").copied().unwrap_or(0).max(0),
        sort_order: order as i32,
        sort_target: target as i32,
        serializable,
        keys_only: flag(m, "keys-only"),
        count_only,
        ..Default::default()
    })
}

pub(crate) fn go_parse_int_error(s: &str) -> String {
    format!(
        "strconv.ParseInt: parsing {}: invalid syntax",
        gofmt::quote(s.as_bytes())
    )
}

fn put_request(m: &ArgMatches, stdin: &mut dyn Read) -> Result<PutRequest, CtlError> {
    let args = args_of(m);
    let usage = "put command needs 1 argument and input from stdin or 2 arguments";
    if args.is_empty() {
        return fail(EXIT_BAD_ARGS, usage);
    }
    let ignore_value = flag(m, "ignore-value");
    if ignore_value && args.len() > 1 {
        return fail(
            EXIT_BAD_ARGS,
            "put command needs only 1 argument when 'ignore-value' is set",
        );
    }
    let value = if ignore_value {
        Vec::new()
    } else if let Some(v) = args.get(1) {
        v.as_bytes().to_vec()
    } else {
        let mut buf = Vec::new();
        if stdin.read_to_end(&mut buf).is_err() || buf.is_empty() {
            return fail(EXIT_BAD_ARGS, usage);
        }
        buf
    };
    let lease_text = string(m, "lease");
    let lease = i64::from_str_radix(&lease_text, 16).map_err(|_| CtlError {
        code: EXIT_BAD_ARGS,
        msg: format!(
            "bad lease ID ({}), expecting ID in Hex",
            go_parse_int_error(&lease_text)
        ),
    })?;
    Ok(PutRequest {
        key: args[0].as_bytes().to_vec(),
        value,
        lease,
        prev_kv: flag(m, "prev-kv"),
        ignore_value,
        ignore_lease: flag(m, "ignore-lease"),
    })
}

fn del_request(m: &ArgMatches) -> Result<DeleteRangeRequest, CtlError> {
    let args = args_of(m);
    if args.is_empty() || args.len() > 2 {
        return fail(
            EXIT_BAD_ARGS,
            "del command needs one argument as key and an optional argument as range_end",
        );
    }
    let (key, range_end) = key_range(&args, flag(m, "prefix"), flag(m, "from-key"))?;
    Ok(DeleteRangeRequest {
        key,
        range_end,
        prev_kv: flag(m, "prev-kv"),
    })
}

/// One line of txn input, parsed like the get/put/del command line.
fn txn_op(words: &[String]) -> Result<RequestOp, String> {
    let cmd = Command::new("txn-op")
        .no_binary_name(true)
        .subcommand(get_cmd())
        .subcommand(put_cmd())
        .subcommand(del_cmd());
    let m = cmd.try_get_matches_from(words).map_err(|e| e.to_string())?;
    let wrap = |e: CtlError| e.msg;
    match m.subcommand() {
        Some(("get", sm)) => Ok(get_request(sm, Format::Simple).map_err(wrap)?.into()),
        Some(("put", sm)) => Ok(put_request(sm, &mut std::io::empty()).map_err(wrap)?.into()),
        Some(("del", sm)) => Ok(del_request(sm).map_err(wrap)?.into()),
        _ => Err("unknown op".into()),
    }
}

pub(crate) struct Globals {
    endpoints: Vec<String>,
    dialer: client::Dialer,
    pub(crate) command_timeout: Duration,
    printer: Printer,
    user: String,
    password: String,
}

fn globals(m: &ArgMatches) -> Result<Globals, CtlError> {
    let dur = |name: &str| {
        gofmt::parse_duration(&string(m, name)).map_err(|e| CtlError {
            code: EXIT_BAD_ARGS,
            msg: format!(
                "invalid argument {} for \"--{name}\" flag: {e}",
                gofmt::quote(string(m, name).as_bytes())
            ),
        })
    };
    let w = string(m, "write-out");
    let format = Format::parse(&w).ok_or_else(|| CtlError {
        code: EXIT_BAD_FEATURE,
        msg: format!("unknown output format {w}"),
    })?;
    Ok(Globals {
        endpoints: m
            .get_many::<String>("endpoints")
            .map(|v| v.cloned().collect())
            .unwrap_or_default(),
        dialer: dialer(m, dur("dial-timeout")?)?,
        command_timeout: dur("command-timeout")?,
        printer: Printer {
            format,
            hex: flag(m, "hex"),
            value_only: false,
        },
        user: string(m, "user"),
        password: string(m, "password"),
    })
}

/// etcdctl's TLS flags: TLS for https endpoints, and for bare ones once any TLS flag is set.
/// The CA, certificate and key files named by the flags `names` (in that order).
fn tls_files(m: &ArgMatches, names: [&str; 3]) -> oxcd_client::ClientTls {
    let path = |name: &str| {
        Some(string(m, name))
            .filter(|s| !s.is_empty())
            .map(Into::into)
    };
    oxcd_client::ClientTls {
        ca_file: path(names[0]),
        cert_file: path(names[1]),
        key_file: path(names[2]),
        skip_verify: false,
    }
}

fn any_file(settings: &oxcd_client::ClientTls) -> bool {
    settings.ca_file.is_some() || settings.cert_file.is_some() || settings.key_file.is_some()
}

fn dialer(m: &ArgMatches, timeout: Duration) -> Result<client::Dialer, CtlError> {
    let mut settings = tls_files(m, ["cacert", "cert", "key"]);
    settings.skip_verify = flag(m, "insecure-skip-tls-verify");
    let any_flag = any_file(&settings) || settings.skip_verify;
    tls_dialer(settings, any_flag, timeout)
}

fn tls_dialer(
    settings: oxcd_client::ClientTls,
    any_flag: bool,
    timeout: Duration,
) -> Result<client::Dialer, CtlError> {
    let tls = if any_flag {
        Some(
            oxcd_client::tls::client_config(&settings).map_err(|msg| CtlError {
                code: EXIT_BAD_ARGS,
                msg,
            })?,
        )
    } else {
        None
    };
    Ok(client::Dialer {
        timeout,
        tls,
        tls_by_default: any_flag,
    })
}

/// `make-mirror DEST`: the destination is dialed with the --dest-* TLS flags and no
/// credentials, as etcdctl dials it.
async fn make_mirror(g: &Globals, m: &ArgMatches) -> Result<(), CtlError> {
    let args = args_of(m);
    let [dest] = args.as_slice() else {
        return fail(EXIT_BAD_ARGS, "make-mirror takes one destination argument");
    };
    let settings = tls_files(m, ["dest-cacert", "dest-cert", "dest-key"]);
    let insecure = m
        .get_one::<bool>("dest-insecure-transport")
        .copied()
        .unwrap_or(true);
    let any_flag = any_file(&settings) || !insecure;
    let dest_dialer = tls_dialer(settings, any_flag, g.dialer.timeout)?;
    let mirror = mirror::Mirror {
        prefix: string(m, "prefix"),
        dest_prefix: string(m, "dest-prefix"),
        no_dest_prefix: flag(m, "no-dest-prefix"),
    };
    let dest = client::connect_one(dest, &dest_dialer).await.map_err(err)?;
    let src = connect(g).await?;
    mirror::make_mirror(mirror, &src, &dest)
        .await
        .or_else(|(code, msg)| fail(code, msg))
}

/// Connects to one endpoint and, with --user, authenticates there.
pub(crate) async fn connect_to(g: &Globals, ep: &str) -> Result<client::Client, String> {
    let c = client::connect_one(ep, &g.dialer).await?;
    authenticate(g, c).await
}

async fn authenticate(g: &Globals, c: client::Client) -> Result<client::Client, String> {
    if g.user.is_empty() {
        return Ok(c);
    }
    let (name, password) = match g.user.split_once(':') {
        Some((n, p)) if g.password.is_empty() => (n.to_string(), p.to_string()),
        _ if !g.password.is_empty() => (g.user.clone(), g.password.clone()),
        _ => (g.user.clone(), read_password("Password: ")?),
    };
    let resp = client::with_timeout(
        g.command_timeout,
        c.auth()
            .authenticate(AuthenticateRequest { name, password }),
    )
    .await?;
    c.with_token(&resp.token)
}

/// A password from the terminal (or stdin), as etcdctl asks for one.
fn read_password(prompt: &str) -> Result<String, String> {
    eprint!("{prompt}");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("failed to ask password: {e}"))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

async fn connect(g: &Globals) -> Result<client::Client, CtlError> {
    let c = client::connect(&g.endpoints, &g.dialer)
        .await
        .map_err(err)?;
    authenticate(g, c).await.map_err(|msg| CtlError {
        code: EXIT_BAD_CONNECTION,
        msg,
    })
}

fn printed(r: Result<(), String>) -> Result<(), CtlError> {
    r.map_err(|msg| CtlError {
        code: EXIT_BAD_FEATURE,
        msg,
    })
}

async fn run(m: &ArgMatches, out: &mut Out) -> Result<(), CtlError> {
    let mut g = globals(m)?;
    let (name, sm) = m.subcommand().ok_or_else(|| err("no command".into()))?;
    match name {
        "version" => {
            out.stdout.push_str(&format!(
                "etcdctl version: 3.5.0 (oxcdctl {})\nAPI version: 3.5\n",
                env!("CARGO_PKG_VERSION")
            ));
            Ok(())
        }
        "get" => {
            let req = get_request(sm, g.printer.format)?;
            if flag(sm, "print-value-only") {
                if g.printer.format != Format::Simple {
                    return fail(
                        EXIT_BAD_ARGS,
                        "print-value-only is only for `--write-out=simple`",
                    );
                }
                g.printer.value_only = true;
            }
            let c = connect(&g).await?;
            let resp = client::with_timeout(g.command_timeout, c.kv().range(req))
                .await
                .map_err(err)?;
            printed(g.printer.get(out, &resp))
        }
        "put" => {
            let req = put_request(sm, &mut std::io::stdin())?;
            let c = connect(&g).await?;
            let resp = client::with_timeout(g.command_timeout, c.kv().put(req))
                .await
                .map_err(err)?;
            printed(g.printer.put(out, &resp))
        }
        "del" => {
            let req = del_request(sm)?;
            let c = connect(&g).await?;
            let resp = client::with_timeout(g.command_timeout, c.kv().delete_range(req))
                .await
                .map_err(err)?;
            printed(g.printer.del(out, &resp))
        }
        "txn" => {
            if !args_of(sm).is_empty() {
                return fail(EXIT_BAD_ARGS, "txn command does not accept argument");
            }
            let c = connect(&g).await?;
            let stdin = std::io::stdin();
            let mut lock = stdin.lock();
            let req = txn::read_txn(&mut lock, flag(sm, "interactive"), &txn_op).map_err(
                |txn::TxnInputError::Invalid(msg)| CtlError {
                    code: EXIT_INVALID_INPUT,
                    msg,
                },
            )?;
            let resp = client::with_timeout(g.command_timeout, c.kv().txn(req))
                .await
                .map_err(err)?;
            printed(g.printer.txn(out, &resp))
        }
        "compaction" => {
            let args = args_of(sm);
            if args.len() != 1 {
                return fail(EXIT_BAD_ARGS, "compaction command needs 1 argument");
            }
            let rev: i64 = args[0]
                .parse()
                .map_err(|_| err(go_parse_int_error(&args[0])))?;
            let c = connect(&g).await?;
            let req = CompactionRequest {
                revision: rev,
                physical: flag(sm, "physical"),
            };
            client::with_timeout(g.command_timeout, c.kv().compact(req))
                .await
                .map_err(err)?;
            out.stdout.push_str(&format!("compacted revision {rev}\n"));
            Ok(())
        }
        "endpoint" => endpoint(&g, sm, out).await,
        "member" => member(&g, sm, out).await,
        "move-leader" => move_leader(&g, sm, out).await,
        "snapshot" => ops::snapshot(&g, sm, out).await,
        "alarm" => ops::alarm(&g, sm, out).await,
        "auth" => auth::auth(&g, sm, out).await,
        "user" => auth::user(&g, sm, out).await,
        "role" => auth::role(&g, sm, out).await,
        "defrag" => ops::defrag(&g, sm, out).await,
        "check" => check::check(&g, sm, out).await,
        "watch" => watch_cmd(&g, sm).await,
        "lock" => {
            let ttl_arg = string(sm, "ttl");
            let ttl: i64 = ttl_arg.parse().map_err(|_| CtlError {
                code: EXIT_BAD_ARGS,
                msg: format!(
                    "invalid argument {ttl_arg:?} for \"--ttl\" flag: {}",
                    go_parse_int_error(&ttl_arg)
                ),
            })?;
            let mut args = args_of(sm);
            if args.get(1).is_some_and(|a| a == "--") {
                args.remove(1);
            }
            if args.is_empty() {
                return fail(
                    EXIT_BAD_ARGS,
                    "lock takes a lock name argument and an optional command to execute",
                );
            }
            let c = connect(&g).await?;
            concurrency::lock(&g, &c, &args, ttl)
                .await
                .or_else(|(code, msg)| fail(code, msg))
        }
        "elect" => {
            let args = args_of(sm);
            let c = connect(&g).await?;
            concurrency::elect(&g, &c, &args, flag(sm, "listen"))
                .await
                .or_else(|(code, msg)| fail(code, msg))
        }
        "make-mirror" => make_mirror(&g, sm).await,
        "lease" => {
            let (sub, lm) = sm.subcommand().ok_or_else(|| err("no command".into()))?;
            let flag_of = |name: &str| {
                lm.try_get_one::<bool>(name)
                    .ok()
                    .flatten()
                    .copied()
                    .unwrap_or(false)
            };
            let args = args_of(lm);
            // Argument errors come before any connection, as in etcdctl.
            let c = connect(&g).await?;
            match lease::run(&g, &c, sub, &args, flag_of("keys"), flag_of("once")).await {
                Ok(text) => {
                    out.stdout.push_str(&text);
                    Ok(())
                }
                Err((code, msg)) => fail(code, msg),
            }
        }
        other => fail(EXIT_BAD_ARGS, format!("unknown command {other:?}")),
    }
}

/// `watch` arguments from a line of words (interactive mode), as etcdctl's flag set reads
/// them: flags anywhere before `--`, then key [range_end], then `-- command...`.
fn parse_watch_words(words: &[String]) -> Result<watch::WatchArgs, String> {
    let mut w = watch::WatchArgs::default();
    let mut positional = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let word = words[i].as_str();
        match word {
            "--" => {
                w.exec = words[i + 1..].to_vec();
                if w.exec.is_empty() {
                    return Err(
                        "bad number of arguments (found separator --, but no commands)".into(),
                    );
                }
                break;
            }
            "--prefix" => w.prefix = true,
            "--prev-kv" => w.prev_kv = true,
            "--progress-notify" => w.progress_notify = true,
            "--rev" => {
                i += 1;
                let v = words.get(i).cloned().unwrap_or_default();
                w.rev = v.parse().map_err(|_| {
                    format!(
                        "invalid argument {v:?} for \"--rev\" flag: {}",
                        go_parse_int_error(&v)
                    )
                })?;
            }
            _ if word.starts_with("--rev=") => {
                let v = &word[6..];
                w.rev = v.parse().map_err(|_| {
                    format!(
                        "invalid argument {v:?} for \"--rev\" flag: {}",
                        go_parse_int_error(v)
                    )
                })?;
            }
            _ => positional.push(words[i].clone()),
        }
        i += 1;
    }
    watch_positional(&mut w, positional)?;
    Ok(w)
}

/// Key and range end from the arguments or ETCDCTL_WATCH_KEY / ETCDCTL_WATCH_RANGE_END.
fn watch_positional(w: &mut watch::WatchArgs, positional: Vec<String>) -> Result<(), String> {
    let env_key = std::env::var("ETCDCTL_WATCH_KEY").unwrap_or_default();
    let env_range = std::env::var("ETCDCTL_WATCH_RANGE_END").unwrap_or_default();
    if !env_key.is_empty() {
        if !positional.is_empty() {
            return Err("bad number of arguments (found conflicting environment key)".into());
        }
        w.key = env_key;
        w.range_end = Some(env_range).filter(|r| !r.is_empty());
        return Ok(());
    }
    match positional.len() {
        1 => w.key = positional[0].clone(),
        2 => {
            w.key = positional[0].clone();
            w.range_end = Some(positional[1].clone());
        }
        _ => return Err("bad number of arguments".into()),
    }
    Ok(())
}

async fn watch_cmd(g: &Globals, m: &ArgMatches) -> Result<(), CtlError> {
    let env_key = std::env::var("ETCDCTL_WATCH_KEY").unwrap_or_default();
    let env_range = std::env::var("ETCDCTL_WATCH_RANGE_END").unwrap_or_default();
    if env_key.is_empty() && !env_range.is_empty() {
        return fail(
            EXIT_BAD_ARGS,
            format!("ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={env_range:?}"),
        );
    }
    if flag(m, "interactive") {
        let c = connect(g).await?;
        return watch::interactive(&c, &g.printer, parse_watch_words)
            .await
            .or_else(|(code, msg)| fail(code, msg));
    }
    let rev_arg = string(m, "rev");
    let mut w = watch::WatchArgs {
        prefix: flag(m, "prefix"),
        prev_kv: flag(m, "prev-kv"),
        progress_notify: flag(m, "progress-notify"),
        rev: rev_arg
            .parse()
            .map_err(|_| err(go_parse_int_error(&rev_arg)))?,
        exec: m
            .get_many::<String>("exec")
            .map(|v| v.cloned().collect())
            .unwrap_or_default(),
        ..Default::default()
    };
    let separator = std::env::args().any(|a| a == "--");
    if separator && w.exec.is_empty() {
        return fail(
            EXIT_BAD_ARGS,
            "bad number of arguments (found separator --, but no commands)",
        );
    }
    watch_positional(&mut w, args_of(m)).or_else(|e| fail(EXIT_BAD_ARGS, e))?;
    if w.prefix && w.range_end.is_some() {
        return fail(
            EXIT_BAD_ARGS,
            "`range_end` and `--prefix` are mutually exclusive",
        );
    }
    let c = connect(g).await?;
    watch::run(&c, &g.printer, w)
        .await
        .or_else(|e| fail(watch::EXIT_INTERRUPTED, e))
}

/// Go's strconv.ParseUint(s, 16, 64) error text.
fn parse_hex_id(s: &str) -> Result<u64, String> {
    u64::from_str_radix(s, 16).map_err(|e| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow => "value out of range",
            _ => "invalid syntax",
        };
        format!(
            "strconv.ParseUint: parsing {}: {why}",
            gofmt::quote(s.as_bytes())
        )
    })
}

fn member_id_arg(m: &ArgMatches) -> Result<u64, CtlError> {
    let args = args_of(m);
    if args.len() != 1 {
        return fail(EXIT_BAD_ARGS, "member ID is not provided");
    }
    parse_hex_id(&args[0]).or_else(|e| {
        fail(
            EXIT_BAD_ARGS,
            format!("bad member ID arg ({e}), expecting ID in Hex"),
        )
    })
}

fn peer_urls_arg(m: &ArgMatches) -> Result<Vec<String>, CtlError> {
    let urls = string(m, "peer-urls");
    if urls.is_empty() {
        return fail(EXIT_BAD_ARGS, "member peer urls not provided");
    }
    Ok(urls.split(',').map(str::to_string).collect())
}

async fn member(g: &Globals, m: &ArgMatches, out: &mut Out) -> Result<(), CtlError> {
    let (sub, sm) = m.subcommand().ok_or_else(|| err("no command".into()))?;
    match sub {
        "list" => {
            let c = connect(g).await?;
            let resp = client::with_timeout(
                g.command_timeout,
                c.cluster().member_list(MemberListRequest {
                    linearizable: false,
                }),
            )
            .await
            .map_err(err)?;
            printed(g.printer.member_list(out, &resp.header, &resp.members))
        }
        "add" => {
            let args = args_of(sm);
            if args.is_empty() {
                return fail(EXIT_BAD_ARGS, "member name not provided");
            }
            if args.len() > 1 {
                let mut msg = String::from("too many arguments");
                for a in &args {
                    if a.to_lowercase().starts_with("http") {
                        msg.push_str(&format!(", did you mean --peer-urls={a}"));
                    }
                }
                return fail(EXIT_BAD_ARGS, msg);
            }
            let name = &args[0];
            let urls = peer_urls_arg(sm)?;
            let c = connect(g).await?;
            let req = MemberAddRequest {
                peer_ur_ls: urls,
                is_learner: flag(sm, "learner"),
            };
            let resp = client::with_timeout(g.command_timeout, c.cluster().member_add(req))
                .await
                .map_err(err)?;
            let new = resp.member.clone().unwrap_or_default();
            printed(g.printer.member_changed(
                out,
                "added to",
                new.id,
                &resp.header,
                resp.member.as_ref(),
                &resp.members,
            ))?;
            if g.printer.format == Format::Simple {
                let conf: Vec<String> = resp
                    .members
                    .iter()
                    .flat_map(|mb| {
                        let n = if mb.id == new.id { name } else { &mb.name };
                        mb.peer_ur_ls.iter().map(move |u| format!("{n}={u}"))
                    })
                    .collect();
                let q = |s: &str| gofmt::quote(s.as_bytes());
                out.line("");
                out.line(format!("ETCD_NAME={}", q(name)));
                out.line(format!("ETCD_INITIAL_CLUSTER={}", q(&conf.join(","))));
                out.line(format!(
                    "ETCD_INITIAL_ADVERTISE_PEER_URLS={}",
                    q(&string(sm, "peer-urls"))
                ));
                out.line("ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
            }
            Ok(())
        }
        "remove" => {
            let id = member_id_arg(sm)?;
            let c = connect(g).await?;
            let resp = client::with_timeout(
                g.command_timeout,
                c.cluster().member_remove(MemberRemoveRequest { id }),
            )
            .await
            .map_err(err)?;
            printed(g.printer.member_changed(
                out,
                "removed from",
                id,
                &resp.header,
                None,
                &resp.members,
            ))
        }
        "update" => {
            let id = member_id_arg(sm)?;
            let urls = peer_urls_arg(sm)?;
            let c = connect(g).await?;
            let req = MemberUpdateRequest {
                id,
                peer_ur_ls: urls,
            };
            let resp = client::with_timeout(g.command_timeout, c.cluster().member_update(req))
                .await
                .map_err(err)?;
            printed(g.printer.member_changed(
                out,
                "updated in",
                id,
                &resp.header,
                None,
                &resp.members,
            ))
        }
        "promote" => {
            let id = member_id_arg(sm)?;
            let c = connect(g).await?;
            let resp = client::with_timeout(
                g.command_timeout,
                c.cluster().member_promote(MemberPromoteRequest { id }),
            )
            .await
            .map_err(err)?;
            printed(g.printer.member_changed(
                out,
                "promoted in",
                id,
                &resp.header,
                None,
                &resp.members,
            ))
        }
        other => fail(EXIT_BAD_ARGS, format!("unknown command {other:?}")),
    }
}

/// As etcdctl: find the leader among --endpoints, and ask it to hand over.
async fn move_leader(g: &Globals, m: &ArgMatches, out: &mut Out) -> Result<(), CtlError> {
    let args = args_of(m);
    if args.len() != 1 {
        return fail(EXIT_BAD_ARGS, "move-leader command needs 1 argument");
    }
    let target = parse_hex_id(&args[0]).or_else(|e| fail(EXIT_BAD_ARGS, e))?;
    for ep in &g.endpoints {
        let c = connect_to(g, ep).await.map_err(err)?;
        let status =
            client::with_timeout(g.command_timeout, c.maintenance().status(StatusRequest {}))
                .await
                .map_err(err)?;
        let member = status.header.map_or(0, |h| h.member_id);
        if member != status.leader {
            continue;
        }
        let resp = client::with_timeout(
            g.command_timeout,
            c.maintenance()
                .move_leader(MoveLeaderRequest { target_id: target }),
        )
        .await
        .map_err(err)?;
        return printed(
            g.printer
                .move_leader(out, status.leader, target, &resp.header),
        );
    }
    fail(
        EXIT_BAD_ARGS,
        format!("no leader endpoint given at [{}]", g.endpoints.join(" ")),
    )
}

async fn cluster_endpoints(g: &Globals, m: &ArgMatches) -> Result<Vec<String>, CtlError> {
    if !flag(m, "cluster") {
        return Ok(g.endpoints.clone());
    }
    let c = connect(g).await?;
    let resp = client::with_timeout(
        g.command_timeout,
        c.cluster().member_list(MemberListRequest {
            linearizable: false,
        }),
    )
    .await
    .map_err(|e| {
        err(format!(
            "failed to fetch endpoints from etcd cluster member list: {e}"
        ))
    })?;
    Ok(resp
        .members
        .into_iter()
        .flat_map(|m| m.client_ur_ls)
        .collect())
}

async fn endpoint(g: &Globals, m: &ArgMatches, out: &mut Out) -> Result<(), CtlError> {
    let (sub, _) = m.subcommand().ok_or_else(|| err("no command".into()))?;
    let eps = cluster_endpoints(g, m).await?;
    match sub {
        "health" => {
            let checks = eps.iter().map(|ep| async move {
                let start = Instant::now();
                let result = async {
                    let c = connect_to(g, ep).await?;
                    let req = RangeRequest {
                        key: b"health".to_vec(),
                        ..Default::default()
                    };
                    client::with_timeout(g.command_timeout, c.kv().range(req)).await?;
                    let alarms = client::with_timeout(
                        g.command_timeout,
                        c.maintenance().alarm(AlarmRequest::default()),
                    )
                    .await?;
                    if !alarms.alarms.is_empty() {
                        let names: Vec<String> = alarms
                            .alarms
                            .iter()
                            .map(|a| format!("{:?}", a.alarm()))
                            .collect();
                        return Err(format!(
                            "Active Alarm(s): {}",
                            names.join(" ").to_uppercase()
                        ));
                    }
                    Ok(())
                }
                .await;
                let took = gofmt::duration(start.elapsed());
                match result {
                    Ok(()) => EndpointHealth {
                        endpoint: ep.clone(),
                        health: true,
                        took,
                        error: String::new(),
                    },
                    Err(error) => EndpointHealth {
                        endpoint: ep.clone(),
                        health: false,
                        took,
                        error,
                    },
                }
            });
            // Every endpoint is checked at once, as etcdctl does; results keep the given order.
            let hs = futures::future::join_all(checks).await;
            printed(g.printer.endpoint_health(out, &hs))?;
            if hs.iter().any(|h| !h.error.is_empty()) {
                return fail(EXIT_ERROR, "unhealthy cluster");
            }
            Ok(())
        }
        "status" => {
            let mut list = Vec::new();
            let mut failed = false;
            for ep in &eps {
                let status = async {
                    let c = connect_to(g, ep).await?;
                    client::with_timeout(
                        g.command_timeout,
                        c.maintenance().status(StatusRequest {}),
                    )
                    .await
                }
                .await;
                match status {
                    Ok(status) => list.push(EndpointStatus {
                        endpoint: ep.clone(),
                        status,
                    }),
                    Err(e) => {
                        failed = true;
                        out.stderr.push_str(&format!(
                            "Failed to get the status of endpoint {ep} ({e})\n"
                        ));
                    }
                }
            }
            printed(g.printer.endpoint_status(out, &list))?;
            if failed {
                return fail(EXIT_ERROR, String::new());
            }
            Ok(())
        }
        "hashkv" => {
            let rev_arg = string(m.subcommand().map_or(m, |(_, sm)| sm), "rev");
            let revision: i64 = rev_arg
                .parse()
                .map_err(|_| err(go_parse_int_error(&rev_arg)))?;
            let mut list = Vec::new();
            let mut last_error = None;
            for ep in &eps {
                let hash = async {
                    let c = connect_to(g, ep).await?;
                    client::with_timeout(
                        g.command_timeout,
                        c.maintenance().hash_kv(HashKvRequest { revision }),
                    )
                    .await
                }
                .await;
                match hash {
                    Ok(resp) => list.push(EndpointHashKv {
                        endpoint: ep.clone(),
                        resp,
                    }),
                    Err(e) => {
                        out.stderr
                            .push_str(&format!("Failed to get the hash of endpoint {ep} ({e})\n"));
                        last_error = Some(e);
                    }
                }
            }
            printed(g.printer.endpoint_hashkv(out, &list))?;
            match last_error {
                Some(e) => fail(EXIT_ERROR, e),
                None => Ok(()),
            }
        }
        other => fail(EXIT_BAD_ARGS, format!("unknown command {other:?}")),
    }
}

fn main() {
    let matches = match root().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { EXIT_BAD_ARGS } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::exit(EXIT_ERROR);
        }
    };
    let mut out = Out::default();
    let result = runtime.block_on(run(&matches, &mut out));
    let _ = std::io::stdout().write_all(out.stdout.as_bytes());
    let _ = std::io::stderr().write_all(out.stderr.as_bytes());
    if let Err(e) = result {
        if !e.msg.is_empty() {
            eprintln!("Error: {}", e.msg);
        }
        std::process::exit(e.code);
    }
}
