//! `watch`: etcdctl's watch command, printing each response as it arrives; with
//! `-- command`, running the command for every event with ETCD_WATCH_* set; with `-i`,
//! reading `watch ...` and `progress` lines from stdin.

use crate::client::Client;
use crate::printer::{Out, Printer};
use crate::{gofmt, txn::argify};
use oxcd_api::etcdserverpb::watch_request::RequestUnion;
use oxcd_api::etcdserverpb::{
    WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use tokio::sync::mpsc;

pub const EXIT_BAD_ARGS: i32 = 128;
pub const EXIT_INVALID_INPUT: i32 = 3;
pub const EXIT_INTERRUPTED: i32 = 5;

#[derive(Debug, Clone, Default)]
pub struct WatchArgs {
    pub key: String,
    pub range_end: Option<String>,
    pub prefix: bool,
    pub rev: i64,
    pub prev_kv: bool,
    pub progress_notify: bool,
    pub exec: Vec<String>,
}

impl WatchArgs {
    pub fn request(&self) -> Result<WatchCreateRequest, String> {
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

/// Prints one response (and runs the exec command per event). Returns false when the
/// command failed and the watch must end.
fn show(printer: &Printer, r: &WatchResponse, exec: &[String]) -> Result<(), String> {
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
    printer.watch(&mut out, r)?;
    out.flush();
    if let Some((program, args)) = exec.split_first() {
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
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

/// Watches until the server ends the stream; returns etcdctl's final error.
pub async fn run(client: &Client, printer: &Printer, args: WatchArgs) -> Result<(), String> {
    let create = args.request()?;
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
        .map_err(|e| e.message().to_string())?
        .into_inner();
    while let Ok(Some(r)) = stream.message().await {
        show(printer, &r, &args.exec)?;
        if r.canceled {
            break;
        }
    }
    drop(tx);
    Err("watch is canceled by the server".into())
}

/// `watch -i`: `watch ...` lines start watches on one stream; `progress` asks for progress.
pub async fn interactive(
    client: &Client,
    printer: &Printer,
    parse: impl Fn(&[String]) -> Result<WatchArgs, String>,
) -> Result<(), (i32, String)> {
    let (tx, rx) = mpsc::channel::<WatchRequest>(16);
    let mut stream = client
        .watch()
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|e| (1, e.message().to_string()))?
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
                    return Err((EXIT_INVALID_INPUT, "Error reading watch request line: EOF".into()));
                };
                let line = line.trim_end_matches('\n').to_string();
                let words = argify(&line);
                match words.first().map(String::as_str) {
                    Some("watch") => {
                        if words.len() < 2 {
                            eprintln!("Invalid command {line} (command type or key is not provided)");
                            continue;
                        }
                        let w = parse(&words[1..]).map_err(|e| (EXIT_BAD_ARGS, e))?;
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
                    return Err((EXIT_INTERRUPTED, "watch is canceled by the server".into()));
                };
                if r.created {
                    let exec = pending.pop_front().unwrap_or_default();
                    execs.insert(r.watch_id, exec);
                }
                let exec = execs.get(&r.watch_id).cloned().unwrap_or_default();
                show(printer, &r, &exec).map_err(|e| (1, e))?;
            }
        }
    }
}
