//! `watch`: etcdctl's watch command, printing each response as it arrives; with
//! `-- command`, running the command for every event with ETCD_WATCH_* set; with `-i`,
//! reading `watch ...` and `progress` lines from stdin.

use crate::connect::connect;
use crate::error::{
    err, fail, CtlError, Result, EXIT_BAD_ARGS, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_INVALID_INPUT,
};
use crate::flags::{args, args_of, bool_flag, flag, string};
use crate::globals::Globals;
use crate::printer::{Out, Printer};
use crate::{gofmt, txn::argify};
use clap::{Arg, ArgMatches, Command};
use oxcd_api::etcdserverpb::watch_request::RequestUnion;
use oxcd_api::etcdserverpb::{
    WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use oxcd_client::Client;
use tokio::sync::mpsc;

pub fn watch_cmd() -> Command {
    Command::new("watch")
        .about("Watches events stream on keys or prefixes")
        .arg(args())
        .arg(Arg::new("exec").num_args(0..).last(true))
        .arg(bool_flag("interactive", "Interactive mode").short('i'))
        .arg(bool_flag("prefix", "Watch on a prefix if prefix is set"))
        .arg(
            Arg::new("rev")
                .long("rev")
                .default_value("0")
                .help("Revision to start watching"),
        )
        .arg(bool_flag(
            "prev-kv",
            "get the previous key-value pair before the event happens",
        ))
        .arg(bool_flag(
            "progress-notify",
            "get periodic watch progress notification from server",
        ))
}

/// `watch [options] [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]`, or
/// `watch -i`.
pub async fn run(g: &Globals, m: &ArgMatches) -> Result<()> {
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
        return interactive(&c, &*g.printer).await;
    }
    let rev_arg = string(m, "rev");
    let mut w = WatchArgs {
        prefix: flag(m, "prefix"),
        prev_kv: flag(m, "prev-kv"),
        progress_notify: flag(m, "progress-notify"),
        rev: rev_arg
            .parse()
            .map_err(|_| err(gofmt::parse_int_error(&rev_arg)))?,
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
    watch_positional(&mut w, args_of(m))?;
    if w.prefix && w.range_end.is_some() {
        return fail(
            EXIT_BAD_ARGS,
            "`range_end` and `--prefix` are mutually exclusive",
        );
    }
    let c = connect(g).await?;
    watch(&c, &*g.printer, w).await
}

/// `watch` arguments from a line of words (interactive mode), as etcdctl's flag set reads
/// them: flags anywhere before `--`, then key [range_end], then `-- command...`.
fn parse_watch_words(words: &[String]) -> Result<WatchArgs> {
    let mut w = WatchArgs::default();
    let mut positional = Vec::new();
    let rev = |v: &str| {
        v.parse().map_err(|_| {
            CtlError::new(
                EXIT_BAD_ARGS,
                format!(
                    "invalid argument {v:?} for \"--rev\" flag: {}",
                    gofmt::parse_int_error(v)
                ),
            )
        })
    };
    let mut i = 0;
    while i < words.len() {
        let word = words[i].as_str();
        match word {
            "--" => {
                w.exec = words[i + 1..].to_vec();
                if w.exec.is_empty() {
                    return fail(
                        EXIT_BAD_ARGS,
                        "bad number of arguments (found separator --, but no commands)",
                    );
                }
                break;
            }
            "--prefix" => w.prefix = true,
            "--prev-kv" => w.prev_kv = true,
            "--progress-notify" => w.progress_notify = true,
            "--rev" => {
                i += 1;
                w.rev = rev(words.get(i).map_or("", String::as_str))?;
            }
            _ if word.starts_with("--rev=") => w.rev = rev(&word[6..])?,
            _ => positional.push(words[i].clone()),
        }
        i += 1;
    }
    watch_positional(&mut w, positional)?;
    Ok(w)
}

/// Key and range end from the arguments or ETCDCTL_WATCH_KEY / ETCDCTL_WATCH_RANGE_END.
fn watch_positional(w: &mut WatchArgs, positional: Vec<String>) -> Result<()> {
    let env_key = std::env::var("ETCDCTL_WATCH_KEY").unwrap_or_default();
    let env_range = std::env::var("ETCDCTL_WATCH_RANGE_END").unwrap_or_default();
    if !env_key.is_empty() {
        if !positional.is_empty() {
            return fail(
                EXIT_BAD_ARGS,
                "bad number of arguments (found conflicting environment key)",
            );
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
        _ => return fail(EXIT_BAD_ARGS, "bad number of arguments"),
    }
    Ok(())
}

#[derive(Debug, Clone, Default)]
struct WatchArgs {
    key: String,
    range_end: Option<String>,
    prefix: bool,
    rev: i64,
    prev_kv: bool,
    progress_notify: bool,
    exec: Vec<String>,
}

impl WatchArgs {
    fn request(&self) -> Result<WatchCreateRequest, String> {
        let mut range_end = Vec::new();
        if let Some(end) = &self.range_end {
            if self.prefix {
                return Err("`range_end` and `--prefix` are mutually exclusive".into());
            }
            range_end = end.as_bytes().to_vec();
        }
        if self.prefix {
            range_end = if self.key.is_empty() {
                vec![0]
            } else {
                oxcd_api::prefix_end(self.key.as_bytes())
            };
        }
        Ok(WatchCreateRequest {
            key: self.key.as_bytes().to_vec(),
            range_end,
            start_revision: self.rev,
            progress_notify: self.progress_notify,
            filters: vec![],
            prev_kv: self.prev_kv,
            watch_id: 0,
            fragment: false,
        })
    }
}

fn reason(r: &WatchResponse) -> String {
    if r.compact_revision != 0 {
        oxcd_api::EtcdError::Compacted.to_string()
    } else if !r.cancel_reason.is_empty() {
        format!(
            "etcdserver: {}",
            r.cancel_reason.trim_start_matches("etcdserver: ")
        )
    } else {
        "context canceled".into()
    }
}

/// Prints one response and runs the exec command for its events. `print_failure` is the exit
/// code when the output format cannot show watch responses.
fn show(
    printer: &dyn Printer,
    r: &WatchResponse,
    exec: &[String],
    print_failure: i32,
) -> Result<()> {
    // etcd's client keeps the creation answer to itself.
    if r.created && !r.canceled {
        return Ok(());
    }
    let mut out = Out::default();
    if r.canceled {
        out.stderr
            .push_str(&format!("watch was canceled ({})\n", reason(r)));
    }
    let progress = r.events.is_empty() && !r.created && !r.canceled && r.compact_revision == 0;
    if progress {
        let rev = r.header.map_or(0, |h| h.revision);
        out.stdout.push_str(&format!("progress notify: {rev}\n"));
    }
    printer
        .watch(&mut out, r)
        .map_err(|e| e.with_code(print_failure))?;
    out.flush();
    run_exec(r, exec)
}

/// Runs `exec` once for every event, with ETCD_WATCH_* set. A command that fails ends the
/// watch with ExitError, after etcdctl's `command [...] error (...)` line.
fn run_exec(r: &WatchResponse, exec: &[String]) -> Result<()> {
    let Some((program, args)) = exec.split_first() else {
        return Ok(());
    };
    let rev = r.header.map_or(0, |h| h.revision);
    for e in &r.events {
        let kv = e.kv.clone().unwrap_or_default();
        let kind = if e.r#type == 1 { "DELETE" } else { "PUT" };
        let status = std::process::Command::new(program)
            .args(args)
            .env("ETCD_WATCH_REVISION", rev.to_string())
            .env("ETCD_WATCH_EVENT_TYPE", gofmt::quote(kind.as_bytes()))
            .env("ETCD_WATCH_KEY", gofmt::quote(&kv.key))
            .env("ETCD_WATCH_VALUE", gofmt::quote(&kv.value))
            .status();
        let failed = match status {
            Ok(s) if s.success() => None,
            Ok(s) => Some(format!("exit status {}", s.code().unwrap_or(-1))),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = failed {
            let quoted: Vec<String> = exec.iter().map(|a| gofmt::quote(a.as_bytes())).collect();
            eprintln!("command [{}] error ({why})", quoted.join(" "));
            return Err(CtlError::silent(EXIT_ERROR));
        }
    }
    Ok(())
}

/// Watches until the server ends the stream; returns etcdctl's final error.
async fn watch(client: &Client, printer: &dyn Printer, args: WatchArgs) -> Result<()> {
    let interrupted = |msg: String| CtlError::new(EXIT_INTERRUPTED, msg);
    let create = args.request().map_err(interrupted)?;
    let (tx, rx) = mpsc::channel::<WatchRequest>(4);
    let _ = tx
        .send(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(create)),
        })
        .await;
    let mut stream = client
        .watch()
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|e| interrupted(e.message().to_string()))?
        .into_inner();
    while let Ok(Some(r)) = stream.message().await {
        show(printer, &r, &args.exec, EXIT_INTERRUPTED)?;
        if r.canceled {
            break;
        }
    }
    drop(tx);
    fail(EXIT_INTERRUPTED, "watch is canceled by the server")
}

/// `watch -i`: `watch ...` lines start watches on one stream; `progress` asks for progress.
async fn interactive(client: &Client, printer: &dyn Printer) -> Result<()> {
    let (tx, rx) = mpsc::channel::<WatchRequest>(16);
    let mut stream = client
        .watch()
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|e| CtlError::new(EXIT_ERROR, e.message()))?
        .into_inner();
    let (line_tx, mut lines) = mpsc::channel::<Option<String>>(16);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        loop {
            let mut l = String::new();
            match stdin.read_line(&mut l) {
                Ok(0) | Err(_) => {
                    let _ = line_tx.blocking_send(None);
                    return;
                }
                Ok(_) => {
                    if line_tx.blocking_send(Some(l)).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut execs: std::collections::HashMap<i64, Vec<String>> = Default::default();
    let mut pending: std::collections::VecDeque<Vec<String>> = Default::default();
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(Some(line)) = line else {
                    return fail(EXIT_INVALID_INPUT, "Error reading watch request line: EOF");
                };
                let line = line.trim_end_matches('\n').to_string();
                let words = argify(&line);
                match words.first().map(String::as_str) {
                    Some("watch") => {
                        if words.len() < 2 {
                            eprintln!("Invalid command {line} (command type or key is not provided)");
                            continue;
                        }
                        let w = parse_watch_words(&words[1..])?;
                        let create = match w.request() {
                            Ok(c) => c,
                            Err(e) => {
                                eprintln!("Invalid command {line} ({e})");
                                continue;
                            }
                        };
                        pending.push_back(w.exec.clone());
                        let _ = tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await;
                    }
                    Some("progress") => {
                        let _ = tx.send(WatchRequest { request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})) }).await;
                    }
                    Some(_) => eprintln!("Invalid command {line} (only support watch)"),
                    None => eprintln!("Invalid command: {line} (watch and progress supported)"),
                }
            }
            r = stream.message() => {
                let Ok(Some(r)) = r else {
                    return fail(EXIT_INTERRUPTED, "watch is canceled by the server");
                };
                if r.created {
                    let exec = pending.pop_front().unwrap_or_default();
                    execs.insert(r.watch_id, exec);
                }
                let exec = execs.get(&r.watch_id).cloned().unwrap_or_default();
                show(printer, &r, &exec, EXIT_ERROR)?;
            }
        }
    }
}
