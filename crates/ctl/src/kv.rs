//! `get`, `put`, `del`, `txn` and `compaction` (etcdctl's get_command.go, put_command.go,
//! del_command.go, txn_command.go, compaction_command.go).

use crate::connect::connect;
use crate::error::{err, fail, CtlError, Result, EXIT_BAD_ARGS, EXIT_BAD_FEATURE};
use crate::flags::{args, args_of, bool_flag, flag, string};
use crate::globals::Globals;
use crate::gofmt;
use crate::printer::{Format, Out, Printer, Simple};
use crate::txn;
use clap::{Arg, ArgMatches, Command};
use oxcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use oxcd_api::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
};
use oxcd_client::with_timeout;
use std::io::Read;

pub fn get_cmd() -> Command {
    Command::new("get")
        .about("Gets the key or a range of keys")
        .arg(args())
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

pub fn put_cmd() -> Command {
    Command::new("put")
        .about("Puts the given key into the store")
        .arg(args())
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

pub fn del_cmd() -> Command {
    Command::new("del")
        .about("Removes the specified key or range of keys [key, range_end)")
        .arg(args())
        .arg(bool_flag("prefix", "delete keys with matching prefix"))
        .arg(bool_flag("prev-kv", "return deleted key-value pairs"))
        .arg(bool_flag(
            "from-key",
            "delete keys that are greater than or equal to the given key using byte compare",
        ))
}

pub fn txn_cmd() -> Command {
    Command::new("txn")
        .about("Txn processes all the requests in one transaction")
        .arg(args())
        .arg(bool_flag("interactive", "Input transaction in interactive mode").short('i'))
}

pub fn compaction_cmd() -> Command {
    Command::new("compaction")
        .about("Compacts the event history in etcd")
        .arg(args())
        .arg(bool_flag(
            "physical",
            "'true' to wait for compaction to physically remove all old revisions",
        ))
}

/// Runs `get`, `put`, `del`, `txn` or `compaction`.
pub async fn run(g: &Globals, cmd: &str, m: &ArgMatches, out: &mut Out) -> Result<()> {
    match cmd {
        "get" => get(g, m, out).await,
        "put" => {
            let req = put_request(m, &mut std::io::stdin())?;
            let c = connect(g).await?;
            let resp = with_timeout(g.command_timeout, c.kv().put(req))
                .await
                .map_err(err)?;
            g.printer.put(out, &resp)
        }
        "del" => {
            let req = del_request(m)?;
            let c = connect(g).await?;
            let resp = with_timeout(g.command_timeout, c.kv().delete_range(req))
                .await
                .map_err(err)?;
            g.printer.del(out, &resp)
        }
        "txn" => txn(g, m, out).await,
        _ => compaction(g, m, out).await,
    }
}

async fn get(g: &Globals, m: &ArgMatches, out: &mut Out) -> Result<()> {
    let req = get_request(m, g.printer.format())?;
    // etcdctl swaps in a simple printer that leaves the keys out.
    let value_only;
    let printer: &dyn Printer = if flag(m, "print-value-only") {
        if g.printer.format() != Format::Simple {
            return fail(
                EXIT_BAD_ARGS,
                "print-value-only is only for `--write-out=simple`",
            );
        }
        value_only = Simple {
            hex: g.printer.hex,
            value_only: true,
        };
        &value_only
    } else {
        &*g.printer
    };
    let c = connect(g).await?;
    let resp = with_timeout(g.command_timeout, c.kv().range(req))
        .await
        .map_err(err)?;
    printer.get(out, &resp)
}

async fn txn(g: &Globals, m: &ArgMatches, out: &mut Out) -> Result<()> {
    if !args_of(m).is_empty() {
        return fail(EXIT_BAD_ARGS, "txn command does not accept argument");
    }
    let c = connect(g).await?;
    let stdin = std::io::stdin();
    let mut lock = stdin.lock();
    let req = txn::read_txn(&mut lock, flag(m, "interactive"), &txn_op)?;
    let resp = with_timeout(g.command_timeout, c.kv().txn(req))
        .await
        .map_err(err)?;
    g.printer.txn(out, &resp)
}

async fn compaction(g: &Globals, m: &ArgMatches, out: &mut Out) -> Result<()> {
    let args = args_of(m);
    if args.len() != 1 {
        return fail(EXIT_BAD_ARGS, "compaction command needs 1 argument");
    }
    let rev: i64 = args[0]
        .parse()
        .map_err(|_| err(gofmt::parse_int_error(&args[0])))?;
    let c = connect(g).await?;
    let req = CompactionRequest {
        revision: rev,
        physical: flag(m, "physical"),
    };
    with_timeout(g.command_timeout, c.kv().compact(req))
        .await
        .map_err(err)?;
    out.line(format!("compacted revision {rev}"));
    Ok(())
}

/// Key and range end for get/del's `--prefix`, `--from-key` and second argument.
fn key_range(args: &[String], prefix: bool, from_key: bool) -> Result<(Vec<u8>, Vec<u8>)> {
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

fn get_request(m: &ArgMatches, format: Format) -> Result<RangeRequest> {
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

fn put_request(m: &ArgMatches, stdin: &mut dyn Read) -> Result<PutRequest> {
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
    let lease = i64::from_str_radix(&lease_text, 16).map_err(|_| {
        CtlError::new(
            EXIT_BAD_ARGS,
            format!(
                "bad lease ID ({}), expecting ID in Hex",
                gofmt::parse_int_error(&lease_text)
            ),
        )
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

fn del_request(m: &ArgMatches) -> Result<DeleteRangeRequest> {
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
fn txn_op(words: &[String]) -> Result<RequestOp> {
    let cmd = Command::new("txn-op")
        .no_binary_name(true)
        .subcommand(get_cmd())
        .subcommand(put_cmd())
        .subcommand(del_cmd());
    let m = cmd
        .try_get_matches_from(words)
        .map_err(|e| CtlError::new(EXIT_BAD_ARGS, e.to_string()))?;
    match m.subcommand() {
        Some(("get", sm)) => get_request(sm, Format::Simple).map(RequestOp::from),
        Some(("put", sm)) => put_request(sm, &mut std::io::empty()).map(RequestOp::from),
        Some(("del", sm)) => del_request(sm).map(RequestOp::from),
        _ => fail(EXIT_BAD_ARGS, "unknown op"),
    }
}
