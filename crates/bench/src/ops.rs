//! `ops`: the operations figures side by side, one member of each product loaded with the
//! same keys: backup (Maintenance.Snapshot) time and size, restore time with each product's
//! own ctl, and the db file before and after defragmenting once most keys are deleted.

use crate::load::{self, LoadSpec, Op};
use crate::servers::{print_rows, start, Row};
use oxcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd_api::etcdserverpb::{
    kv_client::KvClient, CompactionRequest, DefragmentRequest, DeleteRangeRequest, SnapshotRequest,
    StatusRequest,
};
use std::io::Write;
use std::time::Instant;

struct Figures {
    save_s: f64,
    backup_mb: f64,
    restore_s: f64,
    db_full_mb: f64,
    db_deleted_mb: f64,
    db_defragged_mb: f64,
    defrag_s: f64,
}

const MB: f64 = 1024.0 * 1024.0;

async fn db_size(endpoint: &str) -> Result<f64, String> {
    let mut m = MaintenanceClient::new(load::connect(endpoint).await?);
    let st = m
        .status(StatusRequest {})
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    Ok(st.db_size as f64 / MB)
}

async fn measure(
    name: &'static str,
    program: &str,
    ctl: &str,
    keys: usize,
) -> Result<Figures, String> {
    let cluster = start(name, program, 1).await?;
    let endpoint = cluster.members[0].endpoint.clone();
    eprintln!("{name}: loading {keys} keys");
    let fill = LoadSpec {
        endpoint: endpoint.clone(),
        conns: 16,
        clients: 256,
        total: keys,
        op: Op::Put {
            key_size: 16,
            val_size: 256,
            key_space_size: 0,
            prefix: "ops-".into(),
        },
    };
    load::run(&fill).await?;
    let db_full_mb = db_size(&endpoint).await?;

    eprintln!("{name}: backup");
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let backup = dir.path().join("backup.db");
    let started = Instant::now();
    let mut m =
        MaintenanceClient::new(load::connect(&endpoint).await?).max_decoding_message_size(64 << 20);
    let mut stream = m
        .snapshot(SnapshotRequest {})
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let mut file =
        std::io::BufWriter::new(std::fs::File::create(&backup).map_err(|e| e.to_string())?);
    let mut bytes = 0u64;
    while let Some(piece) = stream.message().await.map_err(|e| e.to_string())? {
        bytes += piece.blob.len() as u64;
        file.write_all(&piece.blob).map_err(|e| e.to_string())?;
    }
    file.into_inner()
        .map_err(|e| e.to_string())?
        .sync_all()
        .map_err(|e| e.to_string())?;
    let save_s = started.elapsed().as_secs_f64();

    eprintln!("{name}: restore");
    let started = Instant::now();
    let out = std::process::Command::new(ctl)
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "restore"])
        .arg(&backup)
        .arg("--data-dir")
        .arg(dir.path().join("restored"))
        .output()
        .map_err(|e| format!("{ctl}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{ctl} snapshot restore: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let restore_s = started.elapsed().as_secs_f64();

    eprintln!("{name}: delete 90%, compact, defragment");
    let mut kv = KvClient::new(load::connect(&endpoint).await?);
    let cut = format!("ops-{:0width$}", keys / 10 * 9, width = 12);
    let resp = kv
        .delete_range(DeleteRangeRequest {
            key: b"ops-".to_vec(),
            range_end: cut.into_bytes(),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let rev = resp.header.map_or(0, |h| h.revision);
    kv.compact(CompactionRequest {
        revision: rev,
        physical: true,
    })
    .await
    .map_err(|e| e.to_string())?;
    let db_deleted_mb = db_size(&endpoint).await?;
    let started = Instant::now();
    m.defragment(DefragmentRequest {})
        .await
        .map_err(|e| e.to_string())?;
    let defrag_s = started.elapsed().as_secs_f64();
    let db_defragged_mb = db_size(&endpoint).await?;
    Ok(Figures {
        save_s,
        backup_mb: bytes as f64 / MB,
        restore_s,
        db_full_mb,
        db_deleted_mb,
        db_defragged_mb,
        defrag_s,
    })
}

pub async fn ops(
    oxcd: &str,
    etcd: &str,
    oxcdctl: &str,
    etcdctl: &str,
    keys: usize,
) -> Result<(), String> {
    let ours = measure("oxcd", oxcd, oxcdctl, keys).await?;
    let theirs = measure("etcd", etcd, etcdctl, keys).await?;
    let row = |name: &str, unit: &'static str, f: fn(&Figures) -> f64| Row {
        name: name.to_string(),
        unit,
        oxcd: f(&ours),
        etcd: f(&theirs),
        higher_is_better: false,
    };
    println!("{keys} keys x 256 B, one member each");
    print_rows(
        "oxcd",
        "etcd",
        vec![
            row("snapshot save (stream to file)", "s", |f| f.save_s),
            row("backup file size", "MiB", |f| f.backup_mb),
            row("snapshot restore (own ctl)", "s", |f| f.restore_s),
            row("db size, all keys", "MiB", |f| f.db_full_mb),
            row("db size, 90% deleted+compacted", "MiB", |f| f.db_deleted_mb),
            row("db size after defrag", "MiB", |f| f.db_defragged_mb),
            row("defrag time", "s", |f| f.defrag_s),
        ],
    );
    Ok(())
}
