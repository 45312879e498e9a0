//! Defragmentation: copy every table into a fresh file, which then replaces the old one.
//! Unlike etcd, writers do not wait for the bulk of the copy: it is taken from a snapshot,
//! and only what was written meanwhile (and the small tables) is copied with writers held
//! out. Readers go on against the old file and find the new one once it is swapped in.

use crate::backend::{CLUSTER, KV, LEASE, META, META_COMPACT_FINISHED};
use crate::error::BackendError;
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, TableDefinition, WriteTransaction,
};
use std::path::{Path, PathBuf};

/// Backend file sizes around a defragmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defragmented {
    pub size_before: u64,
    pub size_after: u64,
    /// KV records copied while writers were held out.
    pub held_records: u64,
}

/// Where the copy is made; one found on open is a copy cut short.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    path.with_extension("defrag")
}

fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    from: &ReadTransaction,
    to: &WriteTransaction,
    table: TableDefinition<K, V>,
) -> Result<(), BackendError> {
    use redb::ReadableTable;
    let src = from.open_table(table)?;
    let mut dst = to.open_table(table)?;
    for item in src.iter()? {
        let (k, v) = item?;
        dst.insert(k.value(), v.value())?;
    }
    Ok(())
}

/// A copy under way: the fresh file, and the first KV record it does not have yet.
pub(crate) struct Copy {
    fresh: Database,
    next: u128,
}

/// Bytes of records copied per transaction of the fresh file: each is made durable as it
/// ends, so dirty pages never pile up for one long fsync (which would also hold up the
/// member's own commits on a shared disk).
const COPY_CHUNK_BYTES: usize = 32 << 20;

/// Copies the KV records of `from` from `copy.next` on into the fresh file, in durable
/// chunks; returns how many it copied.
fn copy_kv(from: &ReadTransaction, copy: &mut Copy) -> Result<u64, BackendError> {
    let src = from.open_table(KV)?;
    let mut records = src.range(copy.next..)?.peekable();
    let mut copied = 0;
    while records.peek().is_some() {
        let to = copy.fresh.begin_write()?;
        {
            let mut dst = to.open_table(KV)?;
            let mut bytes = 0;
            while bytes < COPY_CHUNK_BYTES {
                let Some(item) = records.next() else { break };
                #[cfg(test)]
                crate::test_support::fire(&DURING_COPY);
                let (k, v) = item?;
                dst.insert(k.value(), v.value())?;
                bytes += v.value().len() + 16;
                copy.next = k.value() + 1;
                copied += 1;
            }
        }
        to.commit()?;
    }
    Ok(copied)
}

/// Copies the key-value history as it is now into a fresh file, without keeping writers
/// out: the bulk of a defragmentation.
pub(crate) fn start_copy(db: &Database, path: &Path) -> Result<Copy, BackendError> {
    fail::fail_point!("defragBeforeCopy");
    let tmp = temp_path(path);
    let _ = std::fs::remove_file(&tmp);
    let mut copy = Copy {
        fresh: crate::backend::open(&tmp)?,
        next: 0,
    };
    copy_kv(&db.begin_read()?, &mut copy)?;
    Ok(copy)
}

/// Copies what was written since the copy last looked, still without keeping writers out;
/// returns how many records that was.
pub(crate) fn catch_up(db: &Database, copy: &mut Copy) -> Result<u64, BackendError> {
    copy_kv(&db.begin_read()?, copy)
}

/// Completes `copy` with what was written since it last looked and the small tables, records
/// `compact_finished` (the copy may hold history compacted meanwhile), and puts the fresh
/// file in place of the one at `path`; returns it and how many KV records it copied. The
/// caller keeps writers out.
pub(crate) fn finish_copy(
    db: &Database,
    mut copy: Copy,
    compact_finished: i64,
    path: &Path,
) -> Result<(Database, u64), BackendError> {
    let held_records;
    {
        let from = db.begin_read()?;
        held_records = copy_kv(&from, &mut copy)?;
        let mut to = copy.fresh.begin_write()?;
        copy_table(&from, &to, META)?;
        copy_table(&from, &to, CLUSTER)?;
        copy_table(&from, &to, LEASE)?;
        to.open_table(META)?
            .insert(META_COMPACT_FINISHED, compact_finished as u64)?;
        to.set_durability(Durability::Immediate)?;
        to.commit()?;
    }
    let io = |e: std::io::Error| BackendError::Io {
        path: path.display().to_string(),
        source: e,
    };
    fail::fail_point!("defragBeforeRename");
    #[cfg(test)]
    if FAIL_BEFORE_RENAME.with(|f| f.get()) {
        return Err(io(std::io::Error::other(
            "injected: no space left on device",
        )));
    }
    std::fs::rename(temp_path(path), path).map_err(io)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok((copy.fresh, held_records))
}

#[cfg(test)]
thread_local! {
    /// Called before each record the bulk copy on this thread takes.
    pub(crate) static DURING_COPY: crate::test_support::Hook = const { std::cell::RefCell::new(None) };
    /// Makes the copy on this thread fail just before it would replace the backend file.
    pub(crate) static FAIL_BEFORE_RENAME: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(test)]
mod tests {
    use crate::backend::KV;
    use crate::kvstore::Store;
    use oxcd_api::etcdserverpb::{CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest};
    use oxcd_api::Revision;
    use redb::ReadableDatabase;

    #[test]
    fn defragment_shrinks_the_file_and_keeps_every_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db")).expect("open");
        for batch in 0..20 {
            let mut wb = store.begin_write().expect("write");
            for i in 0..500 {
                wb.put(&PutRequest {
                    key: format!("k{batch:02}-{i:04}").into(),
                    value: vec![b'x'; 512],
                    ..Default::default()
                })
                .expect("put");
            }
            wb.commit(true).expect("commit");
        }
        let mut wb = store.begin_write().expect("write");
        wb.delete_range(&DeleteRangeRequest {
            key: b"k0".to_vec(),
            range_end: b"k2".to_vec(),
            ..Default::default()
        })
        .expect("delete");
        let rev = store.current_revision() + 1;
        wb.compact(&CompactionRequest {
            revision: rev.0,
            physical: true,
        })
        .expect("compact");
        wb.commit(true).expect("commit");
        let hash_before = store.hash_kv(Revision(0)).expect("hash");
        let old_db = store.db();
        let reader = old_db.begin_read().expect("read before");

        let sizes = store.defragment().expect("defragment");
        assert!(
            sizes.size_after * 2 < sizes.size_before,
            "file shrinks: {sizes:?}"
        );
        assert_eq!(store.db_size(), sizes.size_after);
        assert!(store.db_size_in_use_due(), "the new file gets counted");
        let in_use = store.count_db_size_in_use().expect("count");
        assert_eq!(store.db_size_in_use(), in_use);
        assert!(
            in_use > 0 && in_use <= store.db_size(),
            "{} > {}",
            store.db_size_in_use(),
            store.db_size()
        );
        let old = reader.open_table(KV);
        assert!(old.is_ok(), "an old reader still reads: {:?}", old.err());
        assert_eq!(store.hash_kv(Revision(0)).expect("hash"), hash_before);
        let all = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            count_only: true,
            ..Default::default()
        };
        assert_eq!(store.range(&all).expect("range").count, 0);
        drop(store);
        let reopened = Store::open(&dir.path().join("db")).expect("reopen");
        assert_eq!(reopened.hash_kv(Revision(0)).expect("hash"), hash_before);
    }

    /// Writes (and a compaction with its deletions) go on while the bulk of a
    /// defragmentation copies; the swapped-in file has them all and hashes the same.
    #[test]
    fn writes_and_compaction_go_on_while_a_defragmentation_copies() {
        use std::sync::{mpsc, Arc};
        use std::time::Duration;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(&dir.path().join("db")).expect("open"));
        for i in 0..200 {
            crate::test_support::put(&store, &format!("k{}", i % 20), vec![b'x'; 100]);
        }
        let (copying_tx, copying) = mpsc::channel();
        let (go, go_rx) = mpsc::channel::<()>();
        let defrag = std::thread::spawn({
            let store = store.clone();
            move || {
                let mut first = true;
                crate::test_support::set(&super::DURING_COPY, move || {
                    if std::mem::take(&mut first) {
                        let _ = copying_tx.send(());
                        let _ = go_rx.recv_timeout(Duration::from_secs(10));
                    }
                });
                store.defragment()
            }
        });
        copying
            .recv_timeout(Duration::from_secs(10))
            .expect("the copy starts");
        let (wrote_tx, wrote) = mpsc::channel();
        std::thread::spawn({
            let store = store.clone();
            move || {
                crate::test_support::put(&store, "during", "the copy");
                for i in 0..1500 {
                    crate::test_support::put(&store, &format!("w{}", i % 50), "meanwhile");
                }
                let mut wb = store.begin_write().expect("write");
                wb.compact(&CompactionRequest {
                    revision: 150,
                    physical: false,
                })
                .expect("compact");
                wb.commit(false).expect("commit");
                let _ = store.compact_step(1000);
                let _ = wrote_tx.send(());
            }
        });
        let went_ahead = wrote.recv_timeout(Duration::from_secs(60)).is_ok();
        let _ = go.send(());
        let sizes = defrag.join().expect("defrag thread").expect("defragment");
        assert!(went_ahead, "the write waited for the copy");
        assert_eq!(
            sizes.held_records, 0,
            "the 1,500 writes made during the bulk copy were caught up with before writers were held out"
        );
        let hash = store.hash_kv(Revision(0)).expect("hash");
        store.finish_compaction().expect("finish compaction");
        assert_eq!(store.hash_kv(Revision(0)).expect("hash"), hash);
        let during = RangeRequest {
            key: b"during".to_vec(),
            ..Default::default()
        };
        assert_eq!(store.range(&during).expect("range").kvs.len(), 1);
        drop(store);
        let reopened = Store::open(&dir.path().join("db")).expect("reopen");
        assert_eq!(reopened.range(&during).expect("range").kvs.len(), 1);
        assert_eq!(reopened.hash_kv(Revision(0)).expect("hash"), hash);
    }

    #[test]
    fn a_failed_defragmentation_removes_its_copy_and_keeps_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        let store = Store::open(&path).expect("open");
        for i in 0..100 {
            crate::test_support::put(&store, &format!("k{i}"), vec![b'x'; 100]);
        }
        super::FAIL_BEFORE_RENAME.with(|f| f.set(true));
        assert!(store.defragment().is_err());
        super::FAIL_BEFORE_RENAME.with(|f| f.set(false));
        assert!(
            !super::temp_path(&path).exists(),
            "the failed copy was left on the disk"
        );
        crate::test_support::put(&store, "after", "still writable");
        let all = store
            .range(&RangeRequest {
                key: b"\0".to_vec(),
                range_end: b"\0".to_vec(),
                count_only: true,
                ..Default::default()
            })
            .expect("range");
        assert_eq!(all.count, 101);
    }
}
