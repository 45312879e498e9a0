//! `make-mirror`, as etcdctl runs it: copies the keys under --prefix as of one revision to the
//! destination cluster, then replays every later change (one transaction a source revision)
//! until interrupted or the source compacts past it. Prints the count of keys copied every
//! 30 seconds.

use crate::connect::connect;
use crate::error::{err, fail, CtlError, Result, EXIT_BAD_ARGS, EXIT_ERROR};
use crate::flags::{args, args_of, bool_flag, flag, string};
use crate::globals::{any_file, tls_dialer, tls_files, Globals};
use clap::{Arg, ArgMatches, Command};
use oxcd_api::etcdserverpb::watch_request::RequestUnion;
use oxcd_api::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest,
    WatchRequest,
};
use oxcd_api::mvccpb::event::EventType;
use oxcd_api::EtcdError;
use oxcd_client::{describe, Client};
use oxcd_utl::progress::{Progress, Unit};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Keys read a request while copying the base, as etcd's mirror syncer does.
const BATCH_LIMIT: i64 = 1000;

pub fn make_mirror_cmd() -> Command {
    let text = |name: &'static str, help: &'static str| {
        Arg::new(name).long(name).default_value("").help(help)
    };
    Command::new("make-mirror")
        .about("Makes a mirror at the destination etcd cluster")
        .arg(args())
        .arg(text("prefix", "Key-value prefix to mirror"))
        .arg(text("dest-prefix", "destination prefix to mirror a prefix to a different prefix in the destination cluster"))
        .arg(bool_flag("no-dest-prefix", "mirror key-values to the root of the destination cluster"))
        .arg(text("dest-cert", "Identify secure client using this TLS certificate file for the destination cluster"))
        .arg(text("dest-key", "Identify secure client using this TLS key file"))
        .arg(text("dest-cacert", "Verify certificates of TLS enabled secure servers using this CA bundle"))
        .arg(
            Arg::new("dest-insecure-transport")
                .long("dest-insecure-transport")
                .num_args(0..=1)
                .require_equals(true)
                .default_value("true")
                .default_missing_value("true")
                .value_parser(clap::value_parser!(bool))
                .help("Disable transport security for client connections"),
        )
}

/// `make-mirror DEST`: the destination is dialed with the --dest-* TLS flags and no
/// credentials, as etcdctl dials it.
pub async fn run(g: &Globals, m: &ArgMatches) -> Result<()> {
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
    let mirror = Mirror {
        prefix: string(m, "prefix"),
        dest_prefix: string(m, "dest-prefix"),
        no_dest_prefix: flag(m, "no-dest-prefix"),
    };
    let dest = oxcd_client::connect_one(dest, &dest_dialer)
        .await
        .map_err(err)?;
    let src = connect(g).await?;
    make_mirror(mirror, &src, &dest).await
}

struct Mirror {
    prefix: String,
    dest_prefix: String,
    no_dest_prefix: bool,
}

impl Mirror {
    /// The destination key: the first occurrence of --prefix replaced by --dest-prefix.
    fn dest_key(&self, key: &[u8]) -> Vec<u8> {
        let (from, to) = (self.prefix.as_bytes(), self.dest_prefix.as_bytes());
        match key.windows(from.len().max(1)).position(|w| w == from) {
            Some(at) if !from.is_empty() => [&key[..at], to, &key[at + from.len()..]].concat(),
            _ if from.is_empty() => [to, key].concat(),
            _ => key.to_vec(),
        }
    }
}

fn failed(e: tonic::Status) -> CtlError {
    CtlError::new(EXIT_ERROR, describe(&e))
}

async fn commit(dest: &Client, ops: Vec<RequestOp>) -> Result<()> {
    let txn = TxnRequest {
        success: ops,
        ..Default::default()
    };
    dest.kv().txn(txn).await.map(|_| ()).map_err(failed)
}

async fn make_mirror(mut m: Mirror, src: &Client, dest: &Client) -> Result<()> {
    if m.no_dest_prefix && !m.dest_prefix.is_empty() {
        return fail(
            EXIT_BAD_ARGS,
            "`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one",
        );
    }
    if !m.no_dest_prefix && m.dest_prefix.is_empty() {
        m.dest_prefix = m.prefix.clone();
    }
    let total = Arc::new(AtomicU64::new(0));
    let reporter = {
        let total = total.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                println!("{}", total.load(Ordering::Relaxed));
            }
        })
    };
    let result = copy_then_follow(&m, src, dest, &total).await;
    reporter.abort();
    result
}

async fn copy_then_follow(
    m: &Mirror,
    src: &Client,
    dest: &Client,
    total: &AtomicU64,
) -> Result<()> {
    let (mut key, range_end) = if m.prefix.is_empty() {
        (vec![0], vec![0])
    } else {
        let p = m.prefix.as_bytes();
        (p.to_vec(), oxcd_api::prefix_end(p))
    };
    let probe = RangeRequest {
        key: b"foo".to_vec(),
        ..Default::default()
    };
    let revision = src
        .kv()
        .range(probe)
        .await
        .map_err(failed)?
        .into_inner()
        .header
        .map_or(0, |h| h.revision);
    // The base copy's progress: the first page's count is the whole as of `revision`.
    let progress = Progress::new("make-mirror base copy", None, Unit::Keys);
    let mut first = true;
    loop {
        let page = RangeRequest {
            key: key.clone(),
            range_end: range_end.clone(),
            limit: BATCH_LIMIT,
            revision,
            ..Default::default()
        };
        let resp = src.kv().range(page).await.map_err(failed)?.into_inner();
        if std::mem::take(&mut first) {
            progress.set_total(resp.count.max(0) as u64);
        }
        for kv in &resp.kvs {
            let put = PutRequest {
                key: m.dest_key(&kv.key),
                value: kv.value.clone(),
                ..Default::default()
            };
            dest.kv().put(put).await.map_err(failed)?;
            total.fetch_add(1, Ordering::Relaxed);
            progress.inc(1);
        }
        match resp.kvs.last() {
            Some(last) if resp.more => key = [last.key.as_slice(), &[0]].concat(),
            _ => break,
        }
    }
    progress.finish();

    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let create = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: if m.prefix.is_empty() {
                vec![0]
            } else {
                m.prefix.as_bytes().to_vec()
            },
            range_end,
            start_revision: revision + 1,
            ..Default::default()
        })),
    };
    let _ = tx.send(create).await;
    let mut stream = src
        .watch()
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(failed)?
        .into_inner();
    while let Some(resp) = stream.message().await.map_err(failed)? {
        if resp.compact_revision != 0 {
            return fail(EXIT_ERROR, EtcdError::Compacted.to_string());
        }
        // One destination transaction for each source revision, in order.
        let mut ops = Vec::new();
        let mut last_revision = 0;
        for event in resp.events {
            let Some(kv) = event.kv else { continue };
            if last_revision != 0 && kv.mod_revision > last_revision {
                commit(dest, std::mem::take(&mut ops)).await?;
            }
            last_revision = kv.mod_revision;
            let key = m.dest_key(&kv.key);
            ops.push(if event.r#type == EventType::Delete as i32 {
                DeleteRangeRequest {
                    key,
                    ..Default::default()
                }
                .into()
            } else {
                PutRequest {
                    key,
                    value: kv.value,
                    ..Default::default()
                }
                .into()
            });
            total.fetch_add(1, Ordering::Relaxed);
        }
        if !ops.is_empty() {
            commit(dest, ops).await?;
        }
    }
    drop(tx);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Mirror;

    fn mirror(prefix: &str, dest: &str) -> Mirror {
        Mirror {
            prefix: prefix.into(),
            dest_prefix: dest.into(),
            no_dest_prefix: false,
        }
    }

    #[test]
    fn dest_key_replaces_the_first_occurrence_of_the_prefix() {
        assert_eq!(mirror("a/", "b/").dest_key(b"a/x/a/"), b"b/x/a/");
        assert_eq!(mirror("a/", "").dest_key(b"a/x"), b"x");
        assert_eq!(mirror("", "m/").dest_key(b"x"), b"m/x");
        assert_eq!(mirror("", "").dest_key(b"x"), b"x");
    }
}
